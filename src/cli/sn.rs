//! `vesper sn new|check`.

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::Subcommand;

use vesper::serial::{self, BoardType, Revision, SerialNumber};

use super::Outcome;

#[derive(Subcommand)]
pub enum SnCommand {
    /// Print new serial numbers, one per line, distinct within the run (cryptographically random).
    #[command(after_help = "Example: vesper sn new --type BC --rev 02 --count 15\n\
        The registry (`vesper serve`) checks numbers against existing devices; this command only\n\
        guarantees they are distinct among themselves.")]
    New {
        /// Board type code: two upper-case letters (BC = BellCore, BP = BellPRO, ...).
        #[arg(long = "type", value_name = "BB")]
        board_type: BoardType,
        /// Board revision: two digits.
        #[arg(long, value_name = "TT")]
        rev: Revision,
        /// How many serial numbers to make.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
        /// Manufacturing date encoded in the number (default: today, UTC).
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
        date: Option<NaiveDate>,
    },
    /// Check serial numbers: exit 0 if all are valid, else print one line per bad one and exit 1.
    Check {
        /// Serial numbers to check.
        #[arg(required = true, value_name = "SN")]
        serials: Vec<String>,
    },
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("`{text}` is not a date YYYY-MM-DD ({e})"))
}

pub fn run(cmd: SnCommand) -> anyhow::Result<Outcome> {
    match cmd {
        SnCommand::New {
            board_type,
            rev,
            count,
            date,
        } => {
            let date = date.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let serials = serial::generate_distinct(
                board_type,
                rev,
                date,
                count as usize,
                &mut rand::rng(),
                |_| false,
            )
            .context("cannot generate serial numbers")?;
            let mut out = String::with_capacity(serials.len() * (serial::LENGTH + 1));
            for sn in serials {
                out.push_str(sn.as_str());
                out.push('\n');
            }
            print!("{out}");
            Ok(Outcome::Success)
        }
        SnCommand::Check { serials } => {
            let mut bad = 0;
            for text in &serials {
                if let Err(e) = text.parse::<SerialNumber>() {
                    println!("{e}");
                    bad += 1;
                }
            }
            if bad == 0 {
                Ok(Outcome::Success)
            } else {
                eprintln!("{bad} of {} serial numbers are invalid", serials.len());
                Ok(Outcome::Problems)
            }
        }
    }
}
