//! `vesper firmware publish|list`: releases in the OTA layout.

use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;

use vesper::firmware::{self, PartSpec};
use vesper::registry::Registry;

use super::Outcome;
use super::serve::{DataDir, local_actor};

#[derive(Subcommand)]
pub enum FirmwareCommand {
    /// Publish a release: its parts are checked against the board's partition table and written
    /// atomically as {ota_root}/{board}/v{VERSION}/, then made the latest by swapping one `latest` link.
    #[command(after_help = "\
Each FILE may carry its offset as FILE@0xOFFSET; without one it is inferred from the name:
  *bootloader*  -> 0x1000 (esp32, esp32s2) or 0x0      *partition*  -> 0x8000
  *boot_app0* / *otadata* -> the otadata partition      anything else -> the first app partition
Example (PlatformIO output):
  vesper firmware publish bellcore-v2 1.0.1 bootloader.bin partitions.bin boot_app0.bin firmware.bin
Refused: overlapping parts, a part over the NVS partition or beyond the flash, an app that is not
an ESP image (0xE9) or larger than its partition, a partition table whose NVS differs from the
board's, a version that already exists.")]
    Publish {
        /// Board name from the configuration.
        board: String,
        /// Release version, e.g. 1.0.1.
        version: String,
        /// Parts: FILE or FILE@OFFSET.
        #[arg(required = true, value_name = "FILE[@OFFSET]")]
        parts: Vec<PartSpec>,
        #[command(flatten)]
        data: DataDir,
    },
    /// List the published versions of every board.
    List,
}

pub fn run(cmd: FirmwareCommand, config_path: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = vesper::config::discover(config_path)?;
    match cmd {
        FirmwareCommand::Publish {
            board,
            version,
            parts,
            data,
        } => {
            let board = config.board(&board)?;
            let manifest = firmware::publish(&config.serve.ota_root, board, &version, &parts)?;
            let registry = Registry::open(&data.resolve(config_path)?)?;
            registry
                .record(
                    &local_actor(),
                    "firmware.publish",
                    Some(&format!("{}/v{version}", board.name)),
                    &serde_json::to_value(&manifest)?,
                )
                .context("the release is published, but its audit row could not be written")?;
            for part in &manifest.builds[0].parts {
                println!(
                    "  0x{:06x}  {:>8} bytes  {}  {}",
                    part.offset,
                    part.size,
                    &part.sha256[..16],
                    part.path
                );
            }
            println!(
                "published {} v{version} in {}",
                board.name,
                firmware::board_dir(&config.serve.ota_root, &board.name).display()
            );
        }
        FirmwareCommand::List => {
            for board in &config.boards {
                let versions = firmware::versions(&config.serve.ota_root, &board.name);
                let latest = firmware::manifest(&config.serve.ota_root, &board.name, None)
                    .ok()
                    .map(|m| m.version);
                println!(
                    "{:<16} {} (latest: {})",
                    board.name,
                    if versions.is_empty() {
                        "-".into()
                    } else {
                        versions.join(", ")
                    },
                    latest.unwrap_or_else(|| "none".into())
                );
            }
        }
    }
    Ok(Outcome::Success)
}
