//! `vesper demo`: the whole line on one machine with no hardware and no services. A data
//! folder, the backend in-process on loopback, the embedded MQTT broker (logins and topic ACLs
//! answered by the backend's own code), a generated demo firmware release for every configured
//! board, and simulated boards on pseudo-terminals plugged into the bench's slots. A feeder plays
//! the operator's hands: once a board has sent its first heartbeat it is pulled out and a fresh
//! one is plugged in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::client::ApiClient;
use crate::config::{Board, Config, ConfigError};
use crate::credentials::MasterSecret;
use crate::files::{write_atomic, write_private};
use crate::firmware::{self, PartSpec};
use crate::registry::Role;
use crate::serial::SerialNumber;
use crate::server::{self, BackendGate, Running, ServeOptions};
use crate::sim::{Background, FlashTiming, LineStats, SimBoard, SimConfig, SimEvent};

/// Version of the generated demo firmware.
pub const DEMO_VERSION: &str = "1.0.0-demo";
/// File the demo writes its API address and token to (owner-only), for scripts and tests.
pub const DEMO_FILE: &str = "demo.json";

/// Errors starting the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot publish the demo firmware: {0}")]
    Firmware(#[from] firmware::FirmwareError),
    #[error("cannot start the backend: {0}")]
    Backend(#[from] server::ServeError),
    #[error("cannot make the demo token: {0}")]
    Token(#[from] crate::registry::RegistryError),
    #[error("cannot start a simulated board: {0}")]
    Sim(std::io::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Keep the data here (a second run reuses it); `None`: a temporary folder.
    pub keep: Option<PathBuf>,
    /// Bench slots, each with a simulated board.
    pub boards: usize,
    /// Pace the simulated serial lines like real UARTs at the baud rate the flasher sets.
    pub paced: bool,
    /// How long a provisioned board stays plugged in before the feeder swaps it.
    pub swap_after: Duration,
    /// Size of the demo app image.
    pub app_size: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            keep: None,
            boards: 4,
            paced: true,
            swap_after: Duration::from_secs(3),
            app_size: 192 * 1024,
        }
    }
}

/// A running demo.
pub struct Demo {
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub config: Config,
    pub api: SocketAddr,
    pub broker_addr: SocketAddr,
    pub token: String,
    backend: Running,
    broker: Broker,
    pub feeder: Feeder,
}

/// An ESP-IDF app image: magic byte, an `esp_app_desc_t` with its version, and a body that
/// deflates like real firmware (55-65 %), from the simulator's one generator.
pub fn app_image(len: usize, version: &str) -> Vec<u8> {
    crate::sim::realistic_app(len, version)
}

/// A device's NVS image for `board`, as the backend makes it, with a broker on loopback: for
/// benchmarks and tests that flash boards without a backend.
pub fn device_image(board: &Board, secret: &MasterSecret, sn: &SerialNumber) -> Vec<u8> {
    let password = secret.device_password(sn);
    let device = crate::nvs::DeviceNvs {
        serial_number: sn,
        hw_type: board.hw_type.as_str(),
        hw_version: board.hw_version.as_str(),
        mqtt_pass: &password,
        mqtt_host: "127.0.0.1",
        mqtt_port: 1883,
        network: Default::default(),
        extra: &board.nvs_extra,
    };
    crate::nvs::device_image(u64::from(board.nvs.size), &device)
        .expect("the configuration checked that a device image fits")
}

/// Publishes a demo release of `board` into the OTA root, unless one is there already.
pub fn publish_demo_firmware(
    config: &Config,
    board: &Board,
    app_size: usize,
) -> Result<(), DemoError> {
    let ota = &config.serve.ota_root;
    if firmware::versions(ota, &board.name).is_empty() {
        publish_release(ota, board, DEMO_VERSION, app_image(app_size, DEMO_VERSION))?;
    }
    Ok(())
}

/// Publishes `version` of `board` built around `app` as an ESP-IDF build lays it out: a
/// bootloader, the board's partition table, `boot_app0` and the app.
pub fn publish_release(
    ota: &Path,
    board: &Board,
    version: &str,
    app: Vec<u8>,
) -> Result<firmware::Manifest, DemoError> {
    let build = tempfile::tempdir().map_err(io(Path::new("build")))?;
    let mut bootloader = app_image(0x4200, "bootloader");
    bootloader[32..36].fill(0);
    let table = board
        .table
        .to_bin()
        .map_err(|e| firmware::FirmwareError::Part("partitions.bin".into(), e.to_string()))?;
    let files = [
        ("bootloader.bin", bootloader),
        ("partitions.bin", table),
        ("boot_app0.bin", vec![0xFF; 0x2000]),
        ("firmware.bin", app),
    ];
    let mut specs = Vec::new();
    for (name, bytes) in files {
        let path = build.path().join(name);
        std::fs::write(&path, bytes).map_err(io(&path))?;
        specs.push(PartSpec { path, offset: None });
    }
    Ok(firmware::publish(ota, board, version, &specs)?)
}

/// The demo's configuration: demo station and slots, loopback backend and broker, and the
/// example's boards.
fn demo_config(broker_port: u16, slots: usize, api: Option<SocketAddr>) -> String {
    let boards = crate::config::EXAMPLE
        .find("\n[[boards]]")
        .map(|i| &crate::config::EXAMPLE[i..])
        .unwrap_or("");
    let slot_list: Vec<String> = (1..=slots).map(|i| format!("\"ports/slot-{i}\"")).collect();
    format!(
        "# Written by `vesper demo`; rewritten on every run.\n\
         [station]\nname = \"demo-bench\"\nslots = [{}]\nverify_timeout = 30\nfirmware_cache = \"cache\"\n\n\
         [backend]\nurl = \"http://{}\"\n\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {broker_port}\n\n\
         [serve]\ndata_dir = \"data\"\nsecret_file = \"mqtt_secret\"\nservice_account = \"vesper-backend\"\n\n\
         [serve.broker]\nhost = \"127.0.0.1\"\nport = {broker_port}\n\n\
         [labels]\nstock = \"a4-l7160\"\n\n{boards}",
        slot_list.join(", "),
        api.map_or_else(|| "127.0.0.1:8080".to_owned(), |a| a.to_string())
    )
}

impl Demo {
    /// Starts everything but the station.
    pub async fn start(options: DemoOptions) -> Result<Demo, DemoError> {
        let (temp, dir) = match &options.keep {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                (None, std::fs::canonicalize(dir).map_err(io(dir))?)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("vesper-demo-")
                    .tempdir()
                    .map_err(io(Path::new("temporary folder")))?;
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
        };
        // Bound before the backend starts, so its heartbeat listener's first connection waits
        // in the backlog instead of failing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io(&dir))?;
        let broker_addr = listener.local_addr().map_err(io(&dir))?;
        let secret_path = dir.join("mqtt_secret");
        if !secret_path.exists() {
            let secret = crate::credentials::MasterSecret::generate_hex();
            write_private(&secret_path, secret.as_bytes()).map_err(io(&secret_path))?;
        }
        for (path, text) in crate::config::EXAMPLE_TABLES {
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            write_atomic(&target, text.as_bytes()).map_err(io(&target))?;
        }
        let config_path = dir.join("config.toml");
        write_atomic(
            &config_path,
            demo_config(broker_addr.port(), options.boards, None).as_bytes(),
        )
        .map_err(io(&config_path))?;
        let ports = dir.join("ports");
        std::fs::create_dir_all(&ports).map_err(io(&ports))?;
        let config = crate::config::load(&config_path)?;
        for board in &config.boards {
            publish_demo_firmware(&config, board, options.app_size)?;
        }
        let secret = server::read_secret_file(&secret_path)?;
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
        let serve = ServeOptions {
            data_dir: config.serve.data_dir.clone(),
            listen: loopback,
            auth_listen: loopback,
        };
        let backend = server::start(config.clone(), secret, &serve).await?;
        let token_name = format!("demo-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S-%3f"));
        let token = backend
            .state
            .store
            .create_token(&token_name, Role::Admin, "demo")
            .await?;
        listener.set_nonblocking(true).map_err(io(&dir))?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(io(&dir))?;
        let broker = Broker::serve(listener, Arc::new(BackendGate(backend.state.clone())));
        // Now that the API has its port, the config names it: another terminal can run a
        // station (`vesper --config DIR/config.toml bench --headless ...`) against this demo.
        let text = demo_config(broker_addr.port(), options.boards, Some(backend.api_addr));
        write_private(&config_path, text.as_bytes()).map_err(io(&config_path))?;
        let mut config = config;
        config.backend.url = format!("http://{}", backend.api_addr);
        let info = serde_json::json!({
            "api": format!("http://{}", backend.api_addr),
            "token": token,
            "broker": broker_addr.to_string(),
            "config": config_path,
        });
        let info_path = dir.join(DEMO_FILE);
        write_private(&info_path, info.to_string().as_bytes()).map_err(io(&info_path))?;
        let template = SimConfig {
            flash_size: 4 << 20,
            mac: [0x24, 0x0A, 0xC4, 0xD3, 0x00, 0x00],
            baud: options.paced.then_some(115_200),
            faults: Vec::new(),
            broker: Some(("127.0.0.1".into(), broker_addr.port())),
            // Paced boards are real boards in time: UART and flash chip.
            flash_timing: options.paced.then_some(FlashTiming::W25Q32JV),
            data_topic: config.mqtt.topics.data.to_string(),
            status_topic: config.mqtt.topics.status.to_string(),
            control_topic: config.mqtt.topics.control.to_string(),
            heartbeat_every: Duration::from_secs(5),
            factory: Default::default(),
        };
        let feeder = Feeder::start(&config.station_settings.slots, template, options.swap_after)?;
        Ok(Demo {
            dir,
            _temp: temp,
            config,
            api: backend.api_addr,
            broker_addr,
            token,
            backend,
            broker,
            feeder,
        })
    }

    /// A client of the demo's backend.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(&format!("http://{}", self.api), &self.token)
    }

    /// Stops the boards, the broker and the backend (the data folder goes too unless kept).
    pub async fn stop(self) {
        self.feeder.stop();
        self.broker.stop().await;
        if let Err(e) = self.backend.stop().await {
            tracing::warn!(error = %e, "backend did not stop cleanly");
        }
    }
}

/// Simulated boards in the bench's slots, swapped for fresh ones once provisioned.
pub struct Feeder {
    thread: Background,
    stats: Arc<Mutex<FeederStats>>,
}

/// What the feeder saw, for benchmarks.
#[derive(Debug, Clone, Default)]
pub struct FeederStats {
    /// Boards plugged in so far.
    pub plugged: usize,
    /// Every board swapped out after its heartbeat.
    pub boards: Vec<BoardStats>,
}

/// One simulated board's share of the time: what a real board would spend too.
#[derive(Debug, Clone, Copy)]
pub struct BoardStats {
    /// Serial traffic, and its time at the line's baud rate.
    pub line: LineStats,
    /// From the board's boot after flashing to its first heartbeat.
    pub boot_to_heartbeat: Duration,
}

fn board_stats(board: &SimBoard) -> BoardStats {
    let events = board.timed_events();
    let heartbeat = events
        .iter()
        .find(|(_, e)| matches!(e, SimEvent::HeartbeatSent { .. }))
        .map(|(t, _)| *t);
    let booted = events
        .iter()
        .filter(|(t, e)| matches!(e, SimEvent::Booted(_)) && heartbeat.is_none_or(|h| *t <= h))
        .map(|(t, _)| *t)
        .next_back();
    BoardStats {
        line: board.line_stats(),
        boot_to_heartbeat: match (booted, heartbeat) {
            (Some(b), Some(h)) => h.saturating_duration_since(b),
            _ => Duration::ZERO,
        },
    }
}

/// A slot's board.
struct Plugged {
    board: SimBoard,
    heartbeat: Option<Instant>,
}

impl Feeder {
    pub fn start(
        slots: &[PathBuf],
        template: SimConfig,
        swap_after: Duration,
    ) -> Result<Feeder, DemoError> {
        let stats = Arc::new(Mutex::new(FeederStats::default()));
        // A random start: boards of a kept demo's earlier runs keep their MACs in the registry,
        // and the station refuses a board whose MAC already belongs to another serial number.
        let mut next_mac = rand::random::<u32>() & 0x00FF_FFFF;
        let mut plugged = Vec::new();
        for slot in slots {
            plugged.push(Some(plug(slot, &template, &mut next_mac, &stats)?));
        }
        let thread = {
            let (stats, slots) = (stats.clone(), slots.to_vec());
            Background::spawn("demo-feeder", move |stop| {
                feed(
                    &slots, plugged, &template, swap_after, &stop, &stats, next_mac,
                )
            })
            .map_err(DemoError::Sim)?
        };
        Ok(Feeder { thread, stats })
    }

    pub fn stats(&self) -> FeederStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn stop(mut self) {
        self.thread.halt();
    }
}

/// Starts a fresh board and points the slot at it.
fn plug(
    slot: &Path,
    template: &SimConfig,
    next_mac: &mut u32,
    stats: &Mutex<FeederStats>,
) -> Result<Plugged, DemoError> {
    let mut config = template.clone();
    config.mac[3..6].copy_from_slice(&next_mac.to_be_bytes()[1..]);
    *next_mac = next_mac.wrapping_add(1) & 0x00FF_FFFF;
    let board = SimBoard::spawn(config).map_err(DemoError::Sim)?;
    let _ = std::fs::remove_file(slot);
    std::os::unix::fs::symlink(board.path(), slot).map_err(io(slot))?;
    stats.lock().unwrap_or_else(|e| e.into_inner()).plugged += 1;
    Ok(Plugged {
        board,
        heartbeat: None,
    })
}

/// How long a slot stays empty while a hand swaps the board.
const SWAP_HAND: Duration = Duration::from_millis(400);

fn feed(
    slots: &[PathBuf],
    mut plugged: Vec<Option<Plugged>>,
    template: &SimConfig,
    swap_after: Duration,
    stop: &AtomicBool,
    stats: &Mutex<FeederStats>,
    mut next_mac: u32,
) {
    // When an empty slot gets its next board.
    let mut refill: Vec<Option<Instant>> = vec![None; slots.len()];
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        for ((slot, entry), refill) in slots.iter().zip(plugged.iter_mut()).zip(refill.iter_mut()) {
            if let Some(p) = entry {
                if p.heartbeat.is_none()
                    && p.board
                        .events()
                        .iter()
                        .any(|e| matches!(e, SimEvent::HeartbeatSent { .. }))
                {
                    p.heartbeat = Some(Instant::now());
                }
                if p.heartbeat.is_some_and(|t| t.elapsed() >= swap_after) {
                    // Pull the board out; a hand plugs the next one in a moment later.
                    let _ = std::fs::remove_file(slot);
                    if let Some(old) = entry.take() {
                        let board = board_stats(&old.board);
                        stats
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .boards
                            .push(board);
                        drop(old.board.stop());
                    }
                    *refill = Some(Instant::now() + SWAP_HAND);
                }
            } else if refill.is_some_and(|t| Instant::now() >= t) {
                *refill = None;
                match plug(slot, template, &mut next_mac, stats) {
                    Ok(p) => *entry = Some(p),
                    Err(e) => tracing::warn!(error = %e, "cannot plug in the next simulated board"),
                }
            }
        }
    }
    for (slot, entry) in slots.iter().zip(plugged) {
        let _ = std::fs::remove_file(slot);
        drop(entry);
    }
}
