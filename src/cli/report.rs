//! `vesper report`: a batch's end-of-line results from the backend, as JSON (the summary and
//! every record) or JUnit XML (for a CI dashboard), to a file or standard output.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use vesper::client::ApiClient;
use vesper::eol::report::ReportFormat;
use vesper::files::write_atomic;

use super::Outcome;

#[derive(Subcommand)]
pub enum ReportCommand {
    /// One batch: first-pass yield, retests, marginal passes, the measurements that fail most,
    /// and every unit's record.
    #[command(after_help = "\
Reads the backend at backend.url (token in VESPER_TOKEN). JUnit XML has one test suite (the
batch) and one test case per unit, attempt and phase; a failure names the measurement, its value
and its limits. Examples:
  vesper report batch B-0001 --format junit --output B-0001.xml
  vesper report batch B-0001 | jq .summary.first_pass_yield")]
    Batch(BatchArgs),
}

#[derive(Args)]
pub struct BatchArgs {
    /// The batch (B-0001).
    batch: String,
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Junit,
}

pub fn run(command: ReportCommand, config: Option<&std::path::Path>) -> anyhow::Result<Outcome> {
    let ReportCommand::Batch(args) = command;
    let config = vesper::config::discover(config)?;
    let client = ApiClient::from_config(&config)?;
    let format = match args.format {
        Format::Json => ReportFormat::Json,
        Format::Junit => ReportFormat::Junit,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = runtime
        .block_on(client.batch_report(&args.batch, format))
        .with_context(|| format!("cannot read the report of {}", args.batch))?;
    match &args.output {
        Some(path) => {
            write_atomic(path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote the report of {} to {}", args.batch, path.display());
        }
        None => print!("{text}"),
    }
    Ok(Outcome::Success)
}
