//! `vesper doctor`: one line per check of a deployment, with how to fix each failure.

use std::path::{Path, PathBuf};

use clap::Args;

use vesper::doctor::{self, Verdict};

use super::Outcome;

#[derive(Args)]
#[command(after_help = "\
Checks, in order: the configuration; the master secret (owner-only, at least 32 bytes); the data
folder (writable, free space); the registry (integrity_check); that each board's partition table
equals the one in its latest release; the API and the broker's auth listener answering; the broker
logging in the service account (so the plugin answers); the heartbeat listener connected; and, if
deploy.public_url is set, /ota/ through it with its CORS header and the TLS certificate's days left.
Exit 1 when any check fails. Run it on the server, as the service's user:
  sudo -u vesper vesper doctor --config /etc/vesper/config.toml")]
pub struct DoctorArgs {
    /// One JSON object per check instead of lines.
    #[arg(long)]
    json: bool,
    /// The data folder (default: serve.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn doctor(args: DoctorArgs, config: Option<&Path>) -> anyhow::Result<Outcome> {
    let loaded = vesper::config::discover(config).map_err(|e| e.to_string());
    let runtime = tokio::runtime::Runtime::new()?;
    let checks = runtime.block_on(doctor::run(loaded, args.data_dir));
    for check in &checks {
        if args.json {
            println!("{}", serde_json::to_string(check)?);
            continue;
        }
        let mark = match check.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        };
        println!("{mark}  {:<18} {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("      {:<18} fix: {fix}", "");
        }
    }
    Ok(if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Outcome::Problems
    } else {
        Outcome::Success
    })
}
