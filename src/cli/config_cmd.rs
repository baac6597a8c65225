//! `vesper init` and `vesper config check`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use vesper::config::{self, Config};
use vesper::files::{write_atomic, write_private};

use super::Outcome;

#[derive(Args)]
pub struct InitArgs {
    /// Folder to write into.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the boards it resolves (NVS offsets and sizes).
    Check,
    /// Print the example configuration with every key explained.
    Example,
}

/// Writes config.toml and the partition tables it references; refuses to overwrite without --force.
pub fn init(args: InitArgs) -> anyhow::Result<Outcome> {
    let files: Vec<(PathBuf, &str)> =
        std::iter::once((args.dir.join(config::FILE_NAME), config::EXAMPLE))
            .chain(
                config::EXAMPLE_TABLES
                    .iter()
                    .map(|(path, text)| (args.dir.join(path), *text)),
            )
            .collect();
    if !args.force {
        let existing: Vec<String> = files
            .iter()
            .filter(|(p, _)| p.exists())
            .map(|(p, _)| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            bail!(
                "{} already exist(s); pass --force to overwrite",
                existing.join(", ")
            );
        }
    }
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // config.toml may come to hold a token: the owner's alone; the tables are plain files.
        if path == &files[0].0 {
            write_private(path, text.as_bytes())
        } else {
            write_atomic(path, text.as_bytes())
        }
        .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let config = vesper::config::load(&files[0].0)?;
    println!(
        "{} boards: {}; next: edit mqtt.host and wifi.ssid, put the Wi-Fi password in a file named \
         by wifi.password_file (or $VESPER_WIFI_PASSWORD), then `vesper config check`",
        config.boards.len(),
        board_names(&config)
    );
    Ok(Outcome::Success)
}

fn board_names(config: &Config) -> String {
    config
        .boards
        .iter()
        .map(|b| b.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(cmd: ConfigCommand, explicit: Option<&Path>) -> anyhow::Result<Outcome> {
    match cmd {
        ConfigCommand::Example => print!("{}", config::EXAMPLE),
        ConfigCommand::Check => {
            let config = vesper::config::discover(explicit)?;
            println!("{}: ok", config.path.display());
            println!("station  {}", config.station);
            println!(
                "backend  {}{}",
                config.backend.url,
                if config.backend.token.is_some() {
                    " (token set)"
                } else {
                    ""
                }
            );
            println!(
                "mqtt     {}:{}  topics {} | {} | {}",
                config.mqtt.host,
                config.mqtt.port,
                config.mqtt.topics.data,
                config.mqtt.topics.status,
                config.mqtt.topics.control
            );
            let network = &config.network;
            match network.problem() {
                Some(problem) => {
                    println!("wifi     PROBLEM: {problem}");
                    return Ok(Outcome::Problems);
                }
                None => println!(
                    "wifi     {} (password set)  mqtt ca {}  ota ca {}",
                    network.wifi.as_ref().map_or("", |w| w.ssid.as_str()),
                    if network.mqtt_ca.is_some() {
                        "from mqtt.ca_file"
                    } else {
                        "built-in bundle"
                    },
                    if network.ota_ca.is_some() {
                        "from ota.ca_file"
                    } else {
                        "built-in bundle"
                    },
                ),
            }
            for b in &config.boards {
                println!(
                    "board    {:<14} {}{} {} {} MB {:?}  nvs 0x{:x}+0x{:x}  table {}{}",
                    b.name,
                    b.hw_type,
                    b.hw_version,
                    b.chip,
                    b.flash_size >> 20,
                    b.flash_mode,
                    b.nvs.offset,
                    b.nvs.size,
                    b.partition_table.display(),
                    if b.nvs_extra.is_empty() {
                        String::new()
                    } else {
                        format!("  +{} nvs keys", b.nvs_extra.len())
                    },
                );
            }
            // The provider is set up as `vesper serve` would: its secret must be readable (on a
            // runtime, where the SMTP transport's connection pool lives).
            let runtime = tokio::runtime::Runtime::new()?;
            let _inside = runtime.enter();
            match vesper::server::mail::Mailer::new(&config.mail, &config.serve.data_dir) {
                Ok(mailer) => println!(
                    "mail     {} from {}  alerts to {}",
                    mailer.describe(),
                    config.mail.from,
                    if config.mail.alerts.to.is_empty() {
                        "nobody".to_owned()
                    } else {
                        config.mail.alerts.to.join(", ")
                    }
                ),
                Err(e) => {
                    println!("mail     PROBLEM: {e}");
                    return Ok(Outcome::Problems);
                }
            }
        }
    }
    Ok(Outcome::Success)
}
