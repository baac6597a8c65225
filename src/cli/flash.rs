//! `vesper flash`, `vesper sim`, `vesper ports`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use vesper::files::write_private;
use vesper::flashing::{self, Bundle, FlashEvent, FlashOptions, FlashPlan, PortChange};
use vesper::partitions::parse_size;
use vesper::sim::{self, Fault, SimBoard, SimConfig, SimEvent};
use vesper::station::provision;

use super::Outcome;

#[derive(Args)]
#[command(after_help = "\
Examples:
  vesper flash --port /dev/ttyUSB0 --board bellcore-v2 --bundle ota/bellcore-v2/v1.0.1 --nvs PV-26A18-BC02R-X7KQA.nvs.bin
  vesper flash --port /dev/ttyUSB0 --nvs a.bin --port /dev/ttyUSB1 --nvs b.bin --board bellcore-v2 --bundle ota/bellcore-v2/v1.0.1
Each board gets its own NVS image (--nvs once per --port, in the same order): one identity is never
written to two boards. Simulated boards (`vesper sim`) are pseudo-terminals: add --no-reset.")]
pub struct FlashArgs {
    /// Serial port of a board; repeat for several boards flashed in parallel.
    #[arg(long = "port", required = true, value_name = "PORT")]
    ports: Vec<String>,
    /// Board name from the configuration (partition table, chip, flash size).
    #[arg(long)]
    board: String,
    /// Firmware bundle: a release folder with manifest.json, a manifest (ours or a plain ESP Web
    /// Tools one), or a PlatformIO build folder (.pio/build/ENV).
    #[arg(long, value_name = "DIR_OR_MANIFEST")]
    bundle: PathBuf,
    /// The device's NVS image (`vesper nvs device`, or the backend's nvs.bin); once per --port.
    #[arg(long = "nvs", required = true, value_name = "NVS.bin")]
    nvs: Vec<PathBuf>,
    /// No DTR/RTS reset (pseudo-terminals, boards already in download mode).
    #[arg(long)]
    no_reset: bool,
    /// Baud rate after connecting.
    #[arg(long, default_value_t = 921_600)]
    baud: u32,
    /// Write through the ROM loader only, without the faster flasher stub.
    #[arg(long)]
    no_stub: bool,
    /// Attempts after a transient failure.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// One JSON event per line on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(after_help = "\
Prints the pseudo-terminal's path on the first line, then what the board does. Flash it like a real
board (vesper flash --no-reset, espflash, or esptool --before no-reset --after no-reset); it boots
what was written when the flasher ends with a reboot or closes the port. Stop with Ctrl-C.
Faults (--fail, repeatable): no-sync, write-error@N, md5-mismatch, bad-app, wrong-password,
no-heartbeat, unplug@N (N: the Nth flash data block).
Factory mode, for the end-of-line test (when the station wrote NVS factory_test = 1): the board
answers `vesper test PHASE` on its console with `vesper: phase PHASE begin`, a `vesper: meas
NAME=VALUE` line for every --measure, and `vesper: phase PHASE end`. --fail PHASE (any name that
is not a fault above) ends that phase with an error and no measurements; --hang PHASE never ends it.
  vesper sim --broker 127.0.0.1:1883 --measure vbus=5.02 --measure rssi=-55~5 --hang radio")]
pub struct SimArgs {
    #[arg(long, default_value = "4MB")]
    flash_size: String,
    /// Factory MAC address.
    #[arg(long, default_value = "24:0A:C4:00:00:01")]
    mac: String,
    /// Write the flash image here on exit.
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
    /// Start from this flash image instead of an erased chip.
    #[arg(long, value_name = "FILE")]
    load: Option<PathBuf>,
    /// MQTT broker the booted firmware connects to (credentials come from its NVS).
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    /// Pace the serial line like a real UART at this baud rate.
    #[arg(long)]
    baud: Option<u32>,
    /// Make the board fail like real boards do (a fault below), or fail an end-of-line phase.
    #[arg(long = "fail", value_name = "MODE|PHASE")]
    fail: Vec<FailArg>,
    /// In factory mode, report this measurement in every phase: NAME=VALUE, or NAME=NUMBER~SPREAD
    /// for a value drawn per board within NUMBER ± SPREAD.
    #[arg(long = "measure", value_name = "NAME=VALUE[~SPREAD]")]
    measures: Vec<sim::Measure>,
    /// In factory mode, begin this phase and never end it.
    #[arg(long = "hang", value_name = "PHASE", value_parser = phase_name)]
    hang: Vec<String>,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 5)]
    heartbeat_every: u64,
    /// Erase and program in no time, instead of a real flash chip's times (W25Q32JV).
    #[arg(long)]
    instant_flash: bool,
    /// Data topic template.
    #[arg(long, default_value = "vesper/{sn}/data")]
    topic: String,
}

#[derive(Args)]
pub struct PortsArgs {
    /// Keep watching and print boards being plugged in and pulled out.
    #[arg(long)]
    watch: bool,
    /// JSON lines.
    #[arg(long)]
    json: bool,
}

fn print_event(event: &FlashEvent, json: bool, tty: bool) {
    if json {
        println!("{}", serde_json::to_string(event).unwrap_or_default());
        return;
    }
    let line = match event {
        FlashEvent::PartProgress {
            port,
            part,
            done,
            total,
        } if tty => format!("{port}: {part} {:3}%", done * 100 / (*total).max(1)),
        other => match provision::describe_flash(other) {
            Some(line) => line,
            None => return,
        },
    };
    println!("{line}");
}

pub fn flash(args: FlashArgs, config_path: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = vesper::config::discover(config_path)?;
    let board = config.board(&args.board)?;
    if args.nvs.len() != args.ports.len() {
        bail!(
            "{} ports but {} NVS images: give --nvs once per --port (each board needs its own identity)",
            args.ports.len(),
            args.nvs.len()
        );
    }
    let bundle = Bundle::load_for(&args.bundle, board)?;
    let mut plans = Vec::new();
    for path in &args.nvs {
        let nvs = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        plans.push(
            FlashPlan::new(board, &bundle, nvs).with_context(|| format!("{}", path.display()))?,
        );
    }
    let options = FlashOptions {
        baud: args.baud,
        reset: !args.no_reset,
        use_stub: !args.no_stub,
        retries: args.retries,
        chip: flashing::espflash_chip(board.chip),
    };
    let tty = std::io::stdout().is_terminal();
    let print = |event: FlashEvent| print_event(&event, args.json, tty);
    let failures = std::thread::scope(|s| {
        let jobs: Vec<_> = args
            .ports
            .iter()
            .zip(&plans)
            .map(|(port, plan)| {
                let options = &options;
                s.spawn(move || {
                    provision::flash_step(port, plan, options, flashing::ANY_BOARD, print).is_err()
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join())
            .filter(|r| !matches!(r, Ok(false)))
            .count()
    });
    if failures > 0 {
        eprintln!("{failures} of {} boards failed", args.ports.len());
        return Ok(Outcome::Problems);
    }
    Ok(Outcome::Success)
}

pub fn sim(args: SimArgs) -> anyhow::Result<Outcome> {
    let flash_size = parse_size(&args.flash_size)
        .filter(|s| s.is_power_of_two() && (1 << 20..=16 << 20).contains(s))
        .ok_or_else(|| anyhow::anyhow!("--flash-size `{}` is not 1MB..16MB", args.flash_size))?
        as usize;
    let mac = sim::parse_mac(&args.mac)
        .ok_or_else(|| anyhow::anyhow!("--mac `{}` is not like 24:0A:C4:12:34:56", args.mac))?;
    let broker = match &args.broker {
        None => None,
        Some(b) => {
            let (host, port) = b
                .rsplit_once(':')
                .ok_or_else(|| anyhow::anyhow!("--broker `{b}` is not HOST:PORT"))?;
            Some((
                host.to_owned(),
                port.parse()
                    .with_context(|| format!("--broker `{b}`: bad port"))?,
            ))
        }
    };
    let (faults, failed_phases) = split_fail(args.fail);
    let config = SimConfig {
        flash_size,
        mac,
        baud: args.baud,
        faults,
        factory: sim::FactoryScript {
            measures: args.measures,
            fail: failed_phases,
            hang: args.hang,
        },
        broker,
        flash_timing: (!args.instant_flash).then_some(sim::FlashTiming::W25Q32JV),
        data_topic: args.topic,
        heartbeat_every: Duration::from_secs(args.heartbeat_every.max(1)),
        ..SimConfig::default()
    };
    let board = SimBoard::spawn(config)?;
    if let Some(image) = &args.load {
        board.set_flash(
            &std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?,
        );
    }
    println!("{}", board.path().display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut shown = 0;
        let mut stop = std::pin::pin!(vesper::server::shutdown_signal());
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let events = board.events();
            for line in events[shown..].iter().filter_map(describe) {
                println!("{line}");
            }
            shown = events.len();
            if events.iter().any(|e| matches!(e, SimEvent::Unplugged)) {
                break;
            }
        }
    });
    let flash = board.stop();
    if let Some(path) = &args.dump {
        write_private(path, &flash).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("flash written to {}", path.display());
    }
    Ok(Outcome::Success)
}

/// A `--fail` value: a board fault, or an end-of-line phase to fail.
#[derive(Debug, Clone)]
enum FailArg {
    Fault(Fault),
    Phase(String),
}

impl std::str::FromStr for FailArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<Fault>() {
            Ok(fault) => Ok(FailArg::Fault(fault)),
            Err(_) if !s.contains('@') && sim::factory::is_name(s) => Ok(FailArg::Phase(s.into())),
            Err(e) => Err(e),
        }
    }
}

fn phase_name(s: &str) -> Result<String, String> {
    if sim::factory::is_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a phase name (1 to 64 of A-Z a-z 0-9 _ - .)"
        ))
    }
}

/// The faults, and the phases to fail.
fn split_fail(fail: Vec<FailArg>) -> (Vec<Fault>, Vec<String>) {
    let (mut faults, mut phases) = (Vec::new(), Vec::new());
    for f in fail {
        match f {
            FailArg::Fault(fault) => faults.push(fault),
            FailArg::Phase(phase) => phases.push(phase),
        }
    }
    (faults, phases)
}

/// What `vesper sim` prints for an event: the firmware's console lines as the firmware prints
/// them, and what the board does around them (heartbeats and refusals are in the console lines).
fn describe(e: &SimEvent) -> Option<String> {
    Some(match e {
        SimEvent::HostConnected => "host connected".into(),
        SimEvent::HostClosed => "host closed the port".into(),
        SimEvent::Booted(r) if r.ok => format!(
            "booted {} (app at 0x{:x}, firmware {})",
            r.serial_number().unwrap_or("?"),
            r.app_offset.unwrap_or(0),
            r.firmware_version.as_deref().unwrap_or("unknown")
        ),
        SimEvent::Booted(r) => format!("boot failed: {}", r.error.as_deref().unwrap_or("?")),
        SimEvent::Console(line) => line.clone(),
        SimEvent::HeartbeatSent { .. } | SimEvent::MqttRefused { .. } => return None,
        SimEvent::Unplugged => "unplugged".into(),
    })
}

pub fn ports(args: PortsArgs) -> anyhow::Result<Outcome> {
    let ports = flashing::list_ports();
    for p in &ports {
        if args.json {
            println!("{}", serde_json::to_string(p)?);
        } else {
            let ids = match (p.vid, p.pid) {
                (Some(v), Some(d)) => format!("{v:04x}:{d:04x}"),
                _ => "-".into(),
            };
            println!(
                "{:<20} {:<14} {ids:<10} {}",
                p.path,
                format!("{:?}", p.kind),
                p.product.as_deref().unwrap_or("")
            );
        }
    }
    if ports.is_empty() && !args.json {
        eprintln!("no serial ports (plug a board in, or start `vesper sim`)");
    }
    if args.watch {
        flashing::watch_ports(Duration::from_millis(500), |change| {
            match &change {
                _ if args.json => {
                    println!("{}", serde_json::to_string(&change).unwrap_or_default())
                }
                PortChange::Plugged(p) => println!("plugged   {} ({:?})", p.path, p.kind),
                PortChange::Unplugged { path } => println!("unplugged {path}"),
            }
            true
        });
    }
    Ok(Outcome::Success)
}
