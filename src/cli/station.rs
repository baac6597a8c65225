//! `vesper` / `vesper station` and `vesper demo`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use vesper::client::ApiClient;
use vesper::demo::{Demo, DemoOptions};
use vesper::station::headless::{self, HeadlessOptions};
use vesper::station::provision::Pipeline;
use vesper::station::{self, Screen, StationOptions};

use super::Outcome;

/// The screen to start on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StartScreen {
    Dashboard,
    Batches,
    Devices,
    Wizard,
    Bench,
}

impl From<StartScreen> for Screen {
    fn from(s: StartScreen) -> Screen {
        match s {
            StartScreen::Dashboard => Screen::Dashboard,
            StartScreen::Batches => Screen::Batches,
            StartScreen::Devices => Screen::Devices,
            StartScreen::Wizard => Screen::Wizard,
            StartScreen::Bench => Screen::Bench,
        }
    }
}

#[derive(Args)]
#[command(after_help = "\
Keys: Tab or h b d w e switch screens (dashboard, batches, devices, wizard, bench), n makes a
batch, ? lists the keys of the screen you are on, q goes back. The station talks to the backend
at backend.url with the token in VESPER_TOKEN (or backend.token_file). Bench slots are the
station.slots ports; without them, USB serial adapters fill four slots as they are plugged in.
Set NO_COLOR for a monochrome screen. Try it all without hardware: vesper demo")]
pub struct StationArgs {
    /// The screen to start on.
    #[arg(long, value_enum, default_value = "dashboard")]
    start: StartScreen,
    /// Folder for saved label PDFs.
    #[arg(long, value_name = "DIR", default_value = ".")]
    labels_dir: PathBuf,
    /// Log to this file (the screen is the station's; nothing is logged by default).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

#[derive(Args)]
#[command(after_help = "\
Everything on one machine, no hardware, no services: the backend on loopback, an embedded MQTT
broker that asks the backend about every login and topic, four simulated ESP32 boards on
pseudo-terminals in the bench's slots, and the station on the bench screen.
Press n, type a quantity, Enter, then e: the boards are flashed, verified and recorded. A board
that has sent its first heartbeat is swapped for a fresh one a few seconds later.
The embedded broker is for the demo; deploy mosquitto with the plugin (mosquitto/README.md).")]
pub struct DemoArgs {
    /// Keep the data (registry, firmware, labels, log, demo.json with the API token) in DIR;
    /// running again with the same DIR continues where it stopped.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Bench slots, each with a simulated board.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=8))]
    boards: u8,
    /// Seconds a provisioned board stays plugged in before the next one replaces it.
    #[arg(long, default_value_t = 3.0)]
    swap_after: f64,
    /// Flash as fast as the machine can, instead of pacing the simulated lines like real UARTs.
    #[arg(long)]
    unpaced: bool,
}

#[derive(Args)]
#[command(after_help = "\
With --headless (for a factory jig with no screen): watches the configured bench slots
(station.slots; without them, the first four USB serial adapters that appear), and provisions each
board plugged in: claim the batch's next serial number, flash firmware and NVS, record the flash,
wait for the first heartbeat. One line per step (--json: one JSON object per line). A finished
board stays in its slot until pulled out; the next one plugged in gets the next serial number.
Exits 0 when every device of the batch is provisioned, or on SIGTERM/Ctrl-C after finishing the
boards in flight; 1 if it cannot start. Without --headless: the station, on the bench screen.
Example:
  VESPER_TOKEN=vst_... vesper bench --headless --batch B-0042 --json >> bench-1.log")]
pub struct BenchArgs {
    /// Run without a screen: provision boards as they are plugged in, print each step.
    #[arg(long, requires = "batch")]
    headless: bool,
    /// The batch to provision, e.g. B-0042 (headless).
    #[arg(long, value_name = "ID")]
    batch: Option<String>,
    /// One JSON object per line on stdout (headless).
    #[arg(long, requires = "headless")]
    json: bool,
    /// Log to this file.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

fn log_to(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log {}", path.display()))?;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn station(args: StationArgs, config_path: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = vesper::config::discover(config_path)?;
    let client = ApiClient::from_config(&config)?;
    if let Some(path) = &args.log {
        log_to(path)?;
    }
    let options = StationOptions {
        start: args.start.into(),
        labels_dir: args.labels_dir,
    };
    runtime()?.block_on(station::run(config, client, options))?;
    Ok(Outcome::Success)
}

pub fn bench(args: BenchArgs, config_path: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = vesper::config::discover(config_path)?;
    let client = ApiClient::from_config(&config)?;
    if let Some(path) = &args.log {
        log_to(path)?;
    }
    if !args.headless {
        if args.batch.is_some() {
            anyhow::bail!("--batch goes with --headless; on the screen, pick the batch with e");
        }
        let options = StationOptions {
            start: Screen::Bench,
            labels_dir: PathBuf::from("."),
        };
        runtime()?.block_on(station::run(config, client, options))?;
        return Ok(Outcome::Success);
    }
    let options = HeadlessOptions {
        batch: args.batch.context("--headless needs --batch ID")?,
        json: args.json,
    };
    let pipeline = Pipeline::new(client, std::sync::Arc::new(config));
    let summary = runtime()?.block_on(headless::run(
        pipeline,
        options,
        Box::new(std::io::stdout()),
        stop_signal(),
    ))?;
    tracing::info!(?summary, "headless bench ended");
    Ok(Outcome::Success)
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub fn demo(args: DemoArgs) -> anyhow::Result<Outcome> {
    if !(0.0..=3600.0).contains(&args.swap_after) {
        anyhow::bail!("--swap-after must be 0 to 3600 seconds");
    }
    let options = DemoOptions {
        keep: args.keep.clone(),
        boards: usize::from(args.boards),
        paced: !args.unpaced,
        swap_after: Duration::from_secs_f64(args.swap_after),
        ..DemoOptions::default()
    };
    let runtime = runtime()?;
    runtime.block_on(async {
        let demo = Demo::start(options)
            .await
            .context("cannot start the demo")?;
        log_to(&demo.dir.join("vesper.log"))?;
        let station_options = StationOptions {
            start: Screen::Bench,
            labels_dir: demo.dir.clone(),
        };
        let result = station::run(demo.config.clone(), demo.client(), station_options).await;
        let dir = demo.dir.clone();
        demo.stop().await;
        result?;
        if args.keep.is_some() {
            eprintln!("demo data kept in {}", dir.display());
        }
        Ok(Outcome::Success)
    })
}
