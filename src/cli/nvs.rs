//! `vesper nvs generate|dump|device`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;

use vesper::credentials::MasterSecret;
use vesper::files::write_private;
use vesper::nvs::{self, Version, dump};
use vesper::partitions::parse_number;
use vesper::serial::SerialNumber;

use super::Outcome;

#[derive(Subcommand)]
pub enum NvsCommand {
    /// Generate an NVS partition image from CSV: a drop-in for Espressif's
    /// `nvs_partition_gen.py generate INPUT.csv OUTPUT.bin SIZE`, byte for byte.
    #[command(after_help = "\
Arguments: INPUT.csv [MORE.csv ...] OUTPUT.bin SIZE
  SIZE is the partition size in bytes, hex (0x6000) or decimal (24576): take it from the
  board's partition table (`vesper partitions show TABLE.csv`).

CSV format (first row is the header):
  key,type,encoding,value
  vesper,namespace,,
  serial_number,data,string,PV-26A18-BC02R-X7KQA
  mqtt_port,data,u16,1883
  cert,file,binary,device.der      (file rows are relative to the CSV's folder)
Encodings: u8 i8 u16 i16 u32 i32 u64 i64 string hex2bin base64 binary.
On any error nothing is written and the message names the file, line and key.")]
    Generate {
        /// INPUT.csv [MORE.csv ...] OUTPUT.bin SIZE
        #[arg(required = true, num_args = 3.., value_name = "INPUT.csv... OUTPUT.bin SIZE")]
        args: Vec<String>,
        /// NVS format version: 2 (default, multi-page blobs) or 1.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
        version: u8,
    },
    /// Decode an image back to CSV (stdout), with its page states and any CRC errors.
    #[command(
        after_help = "The CSV regenerates the image: vesper nvs generate dump.csv again.bin SIZE.\n\
        Page states and damage are written as `#` comment lines, which the generator skips.\n\
        Exit status 1 when the image is damaged."
    )]
    Dump {
        image: PathBuf,
        /// Write the CSV to a file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Build one device's provisioning image from the configuration (needs MQTT_SECRET).
    #[command(
        after_help = "Writes serial_number, hw_type, hw_version, mqtt_user, mqtt_pass, mqtt_host,\n\
        mqtt_port (namespace `vesper`) and the board's extra keys, sized for the board's nvs\n\
        partition. The backend (`vesper serve`) makes the same image at /manufacturing/devices/SN/nvs.bin."
    )]
    Device {
        sn: SerialNumber,
        /// Board name from the configuration (default: the one matching the SN's type and revision).
        #[arg(long)]
        board: Option<String>,
        /// Where to write the image.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

pub fn run(cmd: NvsCommand, config: Option<&Path>) -> anyhow::Result<Outcome> {
    match cmd {
        NvsCommand::Generate { args, version } => generate(&args, version),
        NvsCommand::Dump { image, output } => dump_image(&image, output.as_deref()),
        NvsCommand::Device { sn, board, output } => device(config, &sn, board.as_deref(), &output),
    }
}

fn generate(args: &[String], version: u8) -> anyhow::Result<Outcome> {
    let [inputs @ .., output, size] = args else {
        bail!("expected INPUT.csv... OUTPUT.bin SIZE")
    };
    let output = Path::new(output);
    // Every argument is checked before anything is written: a forgotten SIZE shifts the
    // arguments, and the last CSV would be taken for the output.
    let size = parse_number(size).with_context(|| {
        if Path::new(size).extension().is_some() {
            format!(
                "SIZE `{size}` is not a number: did you forget SIZE? usage: INPUT.csv... OUTPUT.bin SIZE (hex 0x6000 or decimal 24576)"
            )
        } else {
            format!("SIZE `{size}` is not a number (hex 0x6000 or decimal 24576)")
        }
    })?;
    let inputs: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
    if output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        || inputs.iter().any(|i| i == output)
    {
        bail!(
            "OUTPUT.bin `{}` is a CSV or one of the inputs; usage: INPUT.csv... OUTPUT.bin SIZE",
            output.display()
        );
    }
    let result = (|| {
        let version = Version::from_number(version).expect("clap checked 1..=2");
        let image = nvs::csv::generate_files(&inputs, size, version, &|p| std::fs::read(p))?;
        write_private(output, &image)
            .with_context(|| format!("cannot write {}", output.display()))?;
        Ok::<_, anyhow::Error>(image.len())
    })();
    match result {
        Ok(len) => {
            eprintln!(
                "created {} ({len} bytes, NVS format version {version})",
                output.display()
            );
            Ok(Outcome::Success)
        }
        Err(e) => {
            // No file is removed that this run did not write: an earlier image stays, and the
            // operator is told it is not this run's.
            if output.is_file() {
                eprintln!(
                    "the earlier {} is left as it was: it is not this run's image",
                    output.display()
                );
            }
            Err(e)
        }
    }
}

fn dump_image(path: &Path, output: Option<&Path>) -> anyhow::Result<Outcome> {
    let image = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let decoded = dump::decode(&image);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let csv = dump::to_csv(&decoded, &name);
    match output {
        Some(file) => write_private(file, csv.csv.as_bytes())
            .with_context(|| format!("cannot write {}", file.display()))?,
        None => print!("{}", csv.csv),
    }
    for warning in &csv.warnings {
        eprintln!("warning: {warning}");
    }
    for error in &decoded.errors {
        eprintln!("damaged: {error}");
    }
    if decoded.errors.is_empty() {
        match dump::round_trip_difference(&image, &decoded, &csv.csv) {
            None => eprintln!("round trip: regenerating this CSV reproduces {name} byte for byte"),
            Some(difference) => eprintln!("round trip: {difference}"),
        }
        Ok(Outcome::Success)
    } else {
        eprintln!("{} problem(s) found in {name}", decoded.errors.len());
        Ok(Outcome::Problems)
    }
}

fn device(
    config: Option<&Path>,
    sn: &SerialNumber,
    board: Option<&str>,
    output: &Path,
) -> anyhow::Result<Outcome> {
    let config = vesper::config::discover(config)?;
    let board = match board {
        Some(name) => config.board(name)?,
        None => config
            .board_for(sn.board_type(), sn.revision())
            .with_context(|| {
                format!(
                    "no board in {} has hw_type {} and hw_version {}; pass --board",
                    config.path.display(),
                    sn.board_type(),
                    sn.revision()
                )
            })?,
    };
    if (board.hw_type, board.hw_version) != (sn.board_type(), sn.revision()) {
        bail!(
            "{sn} is a {}{} board, but board `{}` is {}{}",
            sn.board_type(),
            sn.revision(),
            board.name,
            board.hw_type,
            board.hw_version
        );
    }
    let password = MasterSecret::from_env_value(std::env::var_os(vesper::credentials::SECRET_ENV))?
        .device_password(sn);
    let device = nvs::DeviceNvs {
        serial_number: sn,
        hw_type: board.hw_type.as_str(),
        hw_version: board.hw_version.as_str(),
        mqtt_pass: &password,
        mqtt_host: &config.mqtt.host,
        mqtt_port: config.mqtt.port,
        network: config.network.nvs(),
        extra: &board.nvs_extra,
    };
    let image = nvs::device_image(u64::from(board.nvs.size), &device)?;
    write_private(output, &image).with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!(
        "created {} ({} bytes) for {sn}: flash it at 0x{:x} (partition `nvs` of board {})",
        output.display(),
        image.len(),
        board.nvs.offset,
        board.name
    );
    Ok(Outcome::Success)
}
