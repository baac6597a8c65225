//! `vesper firmware publish|list`: releases in the OTA layout.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use vesper::firmware::{self, PartSpec};

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
Example (PlatformIO output, named file by file or as the build folder):
  vesper firmware publish bellcore-v2 1.0.1 bootloader.bin partitions.bin boot_app0.bin firmware.bin
  vesper firmware publish bellcore-v2 1.0.1 --pio firmware/.pio/build/bellcore-v2
With --pio, boot_app0.bin (needed when the table has otadata) comes from --boot-app0, the build
folder, or PlatformIO's Arduino framework package ($PLATFORMIO_CORE_DIR or ~/.platformio).
Refused: overlapping parts, a part over the NVS partition or beyond the flash, an app that is not
an ESP image (0xE9) or larger than its partition, a partition table whose NVS differs from the
board's, a version that already exists.")]
    Publish {
        /// Board name from the configuration.
        board: String,
        /// Release version, e.g. 1.0.1.
        version: String,
        /// Parts: FILE or FILE@OFFSET.
        #[arg(
            required_unless_present = "pio",
            conflicts_with = "pio",
            value_name = "FILE[@OFFSET]"
        )]
        parts: Vec<PartSpec>,
        /// A PlatformIO build folder (.pio/build/ENV): its bootloader.bin, partitions.bin and
        /// firmware.bin, plus the framework's boot_app0.bin.
        #[arg(long, value_name = "DIR")]
        pio: Option<PathBuf>,
        /// boot_app0.bin for --pio, when it is not in PlatformIO's framework package here.
        #[arg(long, value_name = "FILE", requires = "pio")]
        boot_app0: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
        /// Upload to a backend's API instead of writing the OTA folder here (from a firmware CI):
        /// POST URL/manufacturing/firmware/BOARD/VERSION, checked and published there.
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// The backend's token for --to: a `publisher` token (vesper token create ci --role publisher).
        #[arg(long, env = "VESPER_TOKEN", hide_env_values = true, requires = "to")]
        token: Option<String>,
    },
    /// List the published versions of every board.
    List,
}

pub fn run(cmd: FirmwareCommand, config_path: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = vesper::config::discover(config_path)?;
    let cmd = with_pio_parts(cmd, &config)?;
    match cmd {
        FirmwareCommand::Publish {
            board,
            version,
            parts,
            to: Some(url),
            token,
            ..
        } => {
            let board = config.board(&board)?;
            let token = token.context("--to needs --token (or VESPER_TOKEN): a publisher token")?;
            let manifest = tokio::runtime::Runtime::new()?
                .block_on(upload(&url, &token, board, &version, &parts))?;
            print_parts(&manifest);
            println!("published {} v{version} at {url}", board.name);
        }
        FirmwareCommand::Publish {
            board,
            version,
            parts,
            data,
            to: None,
            ..
        } => {
            let board = config.board(&board)?;
            let manifest = firmware::publish(&config.serve.ota_root, board, &version, &parts)?;
            let store = data.open_store(config_path)?;
            let (actor, subject) = (local_actor(), format!("{}/v{version}", board.name));
            let record = serde_json::to_value(&manifest)?;
            store
                .run(|s| s.record(&actor, "firmware.publish", Some(&subject), &record))
                .context("the release is published, but its audit row could not be written")?;
            print_parts(&manifest);
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

/// A `publish --pio DIR` with the build folder's files as its parts.
fn with_pio_parts(
    cmd: FirmwareCommand,
    config: &vesper::config::Config,
) -> anyhow::Result<FirmwareCommand> {
    match cmd {
        FirmwareCommand::Publish {
            board,
            version,
            pio: Some(dir),
            boot_app0,
            data,
            to,
            token,
            ..
        } => {
            let parts = firmware::pio::parts(config.board(&board)?, &dir, boot_app0.as_deref())?
                .into_iter()
                .map(|p| PartSpec {
                    path: p.path,
                    offset: Some(p.offset),
                })
                .collect();
            Ok(FirmwareCommand::Publish {
                board,
                version,
                parts,
                pio: None,
                boot_app0: None,
                data,
                to,
                token,
            })
        }
        other => Ok(other),
    }
}

fn print_parts(manifest: &firmware::Manifest) {
    for part in manifest.builds.iter().flat_map(|b| &b.parts) {
        println!(
            "  0x{:06x}  {:>8} bytes  {}  {}",
            part.offset,
            part.size,
            &part.sha256[..16],
            part.path
        );
    }
}

/// Uploads a release to a backend: an ESP Web Tools manifest (offsets as `publish` places them,
/// sizes and SHA-256 sums) and the parts, as one multipart request.
async fn upload(
    url: &str,
    token: &str,
    board: &vesper::model::Board,
    version: &str,
    parts: &[PartSpec],
) -> anyhow::Result<firmware::Manifest> {
    let mut form = reqwest::multipart::Form::new();
    let mut listed = Vec::new();
    for (path, offset) in firmware::offsets(board, parts)? {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("a part needs a file name")?
            .to_owned();
        let sha256 = firmware::sha256_hex(&bytes);
        listed.push(serde_json::json!({ "path": name, "offset": offset, "size": bytes.len(), "sha256": sha256 }));
        form = form.part(
            name.clone(),
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
    }
    let manifest = serde_json::json!({
        "name": board.name,
        "version": version,
        "builds": [{ "chipFamily": firmware::chip_family(board.chip), "parts": listed }],
    });
    form = form.text("manifest", manifest.to_string());
    let target = format!(
        "{}/manufacturing/firmware/{}/{version}",
        url.trim_end_matches('/'),
        board.name
    );
    let response = reqwest::Client::new()
        .post(&target)
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .with_context(|| format!("cannot reach {target}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let said = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        anyhow::bail!("{target} refused the release ({status}): {said}");
    }
    serde_json::from_str(&body).context("the backend's answer is not a release manifest")
}
