//! A simulated ESP32 on a pseudo-terminal: the ROM serial bootloader (and the flasher stub once
//! uploaded), a flash chip, and, after a reset, a boot that reads the partition table and NVS
//! from that flash and phones home over MQTT like the real firmware.
//!
//! There is no ESP32 on the build machines, so every flashing test, benchmark and the demo runs
//! against this board; it must be faithful: espflash and esptool flash it unmodified.
//! Usable in-process ([`SimBoard::spawn`]) or as `vesper sim`.
//!
//! It reads what was flashed with its own [`readers`], never with the product's NVS, partition or
//! firmware code, and depends on `vesper-core` for serial numbers only: a board that boots is a
//! judge of the product, not its echo.

pub mod app;
mod boot;
pub mod factory;
pub mod readers;
pub mod rom;
pub mod slip;
pub mod timing;

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serialport::TTYPort;

pub use app::realistic_app;
pub use boot::{BootReport, boot};
pub use factory::{FactoryScript, Measure};
use rom::{Action, Rom};
pub use timing::FlashTiming;

/// Ways the board can fail, like real boards do. Transient ones fire once, so a retry succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Never answers SYNC (not in download mode, bad cable).
    NoSync,
    /// The Nth flash data block fails to write.
    WriteError(u32),
    /// The first MD5 verification reports a wrong digest.
    Md5Mismatch,
    /// The app in flash does not boot (bad image header).
    BadApp,
    /// The firmware logs in to MQTT with a wrong password.
    WrongPassword,
    /// The firmware boots and connects but never sends a heartbeat.
    NoHeartbeat,
    /// The board is pulled out after the Nth flash data block.
    Unplug(u32),
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |t: &str| {
            t.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`{s}`: N must be a block number from 1"))
        };
        match s.split_once('@') {
            None => match s {
                "no-sync" => Ok(Fault::NoSync),
                "md5-mismatch" => Ok(Fault::Md5Mismatch),
                "bad-app" => Ok(Fault::BadApp),
                "wrong-password" => Ok(Fault::WrongPassword),
                "no-heartbeat" => Ok(Fault::NoHeartbeat),
                _ => Err(format!(
                    "`{s}` is not a fault: no-sync, write-error@N, md5-mismatch, bad-app, wrong-password, no-heartbeat, unplug@N"
                )),
            },
            Some(("write-error", n)) => Ok(Fault::WriteError(number(n)?)),
            Some(("unplug", n)) => Ok(Fault::Unplug(number(n)?)),
            Some(_) => Err(format!(
                "`{s}` is not a fault: write-error@N or unplug@N take a block number"
            )),
        }
    }
}

/// How a simulated board is built.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub flash_size: usize,
    pub mac: [u8; 6],
    /// Pace the serial line like a UART at this baud rate (changed by the host's CHANGE_BAUDRATE);
    /// `None`: as fast as the pseudo-terminal goes.
    pub baud: Option<u32>,
    pub faults: Vec<Fault>,
    /// Where the firmware connects after boot (`None`: no network).
    pub broker: Option<(String, u16)>,
    /// How long the flash chip takes to erase and program (`None`: no time, for unit tests;
    /// benchmarks and the demo use [`FlashTiming::W25Q32JV`]).
    pub flash_timing: Option<FlashTiming>,
    /// The data topic template (`{sn}` replaced by the serial number from NVS).
    pub data_topic: String,
    /// The status topic template: the retained online status and the last will.
    pub status_topic: String,
    /// The control topic template the firmware subscribes to.
    pub control_topic: String,
    pub heartbeat_every: Duration,
    /// What the firmware does in factory mode (NVS `factory_test` = 1): see [`factory`].
    pub factory: FactoryScript,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            flash_size: 4 << 20,
            mac: [0x24, 0x0A, 0xC4, 0x00, 0x00, 0x01],
            baud: None,
            faults: Vec::new(),
            broker: None,
            flash_timing: None,
            data_topic: "vesper/{sn}/data".into(),
            status_topic: "vesper/{sn}/status".into(),
            control_topic: "vesper/{sn}/control".into(),
            heartbeat_every: Duration::from_secs(5),
            factory: FactoryScript::default(),
        }
    }
}

/// Parses `AA:BB:CC:DD:EE:FF`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

/// Something the board did, for tests and the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    HostConnected,
    HostClosed,
    Booted(BootReport),
    HeartbeatSent {
        serial_number: String,
    },
    MqttRefused {
        serial_number: String,
        reason: String,
    },
    /// A `vesper: ...` line the firmware printed on the serial console (DESIGN.md section 3).
    Console(String),
    Unplugged,
}

/// Serial traffic of a board, for benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LineStats {
    /// Bytes the host sent.
    pub bytes_in: u64,
    /// Bytes the board sent.
    pub bytes_out: u64,
    /// The time these bytes take on the wire at the baud rates in force (10 bits a byte): the
    /// lower bound of any flashing over this line.
    pub line_time: Duration,
}

/// A running simulated board.
pub struct SimBoard {
    path: PathBuf,
    stats: Arc<Mutex<LineStats>>,
    rom: Arc<Mutex<Rom>>,
    events: Arc<Mutex<Vec<(Instant, SimEvent)>>>,
    worker: Background,
}

/// A thread that runs until it is halted (or dropped): it watches the flag it is given.
pub struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Starts `run` on a thread called `name`; `run` ends when its flag is raised.
    pub fn spawn(
        name: &str,
        run: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> std::io::Result<Background> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(flag))?;
        Ok(Background {
            stop,
            thread: Some(thread),
        })
    }

    /// Raises the flag and waits for the thread to end.
    pub fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.halt();
    }
}

impl SimBoard {
    /// Opens a pseudo-terminal and serves the bootloader on it from a background thread.
    pub fn spawn(config: SimConfig) -> std::io::Result<SimBoard> {
        let (mut master, slave) = TTYPort::pair().map_err(std::io::Error::other)?;
        let path = PathBuf::from(serialport::SerialPort::name(&slave).unwrap_or_default());
        // The host opens the slave itself; keeping it open here would hide its closing.
        drop(slave);
        serialport::SerialPort::set_timeout(&mut master, Duration::from_millis(20))
            .map_err(std::io::Error::other)?;
        let mut rom = Rom::new(config.flash_size, config.mac, config.faults.clone());
        rom.timing = config.flash_timing;
        let rom = Arc::new(Mutex::new(rom));
        let events = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(Mutex::new(LineStats::default()));
        let (rom_, events_, stats_) = (rom.clone(), events.clone(), stats.clone());
        let worker = Background::spawn("sim-board", move |stop| {
            Worker {
                master: Some(master),
                rom: rom_,
                stop,
                events: events_,
                stats: stats_,
                config,
            }
            .run()
        })?;
        Ok(SimBoard {
            path,
            stats,
            rom,
            events,
            worker,
        })
    }

    /// The serial port to open (`/dev/pts/N`).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// A copy of the flash.
    pub fn flash(&self) -> Vec<u8> {
        self.rom
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flash
            .clone()
    }

    /// Replaces the flash contents (e.g. a board that was flashed before).
    pub fn set_flash(&self, image: &[u8]) {
        let mut rom = self.rom.lock().unwrap_or_else(|e| e.into_inner());
        let n = image.len().min(rom.flash.len());
        rom.flash[..n].copy_from_slice(&image[..n]);
    }

    /// Serial traffic so far.
    pub fn line_stats(&self) -> LineStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn events(&self) -> Vec<SimEvent> {
        self.timed_events().into_iter().map(|(_, e)| e).collect()
    }

    /// What happened, with when (for benchmarks that separate the board's time from the host's).
    pub fn timed_events(&self) -> Vec<(Instant, SimEvent)> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until an event matches, or `None` after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        matches: impl Fn(&SimEvent) -> bool,
    ) -> Option<SimEvent> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(e) = self.events().into_iter().find(&matches) {
                return Some(e);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Stops the board (closing its port) and returns its flash.
    pub fn stop(mut self) -> Vec<u8> {
        self.worker.halt();
        self.flash()
    }
}

/// A UART's pace: 10 bits per byte at the current baud rate (115200 until the host changes it).
struct Pacer {
    baud: Option<u32>,
    /// The line's rate for the statistics, paced or not.
    rate: u32,
    debt: Duration,
    stats: Arc<Mutex<LineStats>>,
}

impl Pacer {
    fn pay(&mut self, bytes: usize, from_host: bool) {
        {
            let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            if from_host {
                s.bytes_in += bytes as u64;
            } else {
                s.bytes_out += bytes as u64;
            }
            s.line_time += Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(self.rate));
        }
        let Some(baud) = self.baud else { return };
        self.debt += Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(baud));
        if self.debt >= Duration::from_millis(2) {
            std::thread::sleep(self.debt);
            self.debt = Duration::ZERO;
        }
    }
}

struct Worker {
    master: Option<TTYPort>,
    rom: Arc<Mutex<Rom>>,
    stop: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<(Instant, SimEvent)>>>,
    stats: Arc<Mutex<LineStats>>,
    config: SimConfig,
}

impl Worker {
    fn event(&self, e: SimEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Instant::now(), e));
    }

    fn run(mut self) {
        let mut decoder = slip::Decoder::default();
        let mut pacer = Pacer {
            baud: self.config.baud,
            rate: 115_200,
            debt: Duration::ZERO,
            stats: self.stats.clone(),
        };
        let mut connected = false;
        let mut firmware: Option<boot::Firmware> = None;
        // The station's console commands to the running firmware (`vesper test PHASE`).
        let mut commands = factory::CommandLines::default();
        let mut buf = [0u8; 4096];
        while !self.stop.load(Ordering::Relaxed) {
            let Some(master) = self.master.as_mut() else {
                break;
            };
            match master.read(&mut buf) {
                Ok(0) => continue,
                Ok(n) => {
                    // Text without a SLIP frame to a running firmware is console input (the
                    // station's `vesper test PHASE`), not a flasher: the board keeps running.
                    let console_input = firmware.is_some() && !buf[..n].contains(&slip::END);
                    if !connected {
                        connected = true;
                        if !console_input {
                            // A flasher plugging in (opening the port) resets the board into
                            // the bootloader.
                            if let Some(f) = firmware.take() {
                                f.stop();
                            }
                            self.rom.lock().unwrap_or_else(|e| e.into_inner()).reset();
                            self.event(SimEvent::HostConnected);
                        }
                    }
                    pacer.pay(n, true);
                    if let Some(f) = firmware.as_ref() {
                        for phase in commands.feed(&buf[..n]) {
                            f.command(phase);
                        }
                    }
                    for frame in decoder.feed(&buf[..n]) {
                        let (actions, hold) = {
                            let mut rom = self.rom.lock().unwrap_or_else(|e| e.into_inner());
                            let actions = rom.handle(&frame);
                            (actions, rom.take_hold())
                        };
                        // The answer waits for the flash chip, as a real board's does.
                        if !hold.is_zero() {
                            std::thread::sleep(hold);
                        }
                        for action in actions {
                            match action {
                                Action::Send(reply) => {
                                    let encoded = slip::encode(&reply);
                                    pacer.pay(encoded.len(), false);
                                    if let Some(m) = self.master.as_mut() {
                                        let _ = write_all(m, &encoded);
                                    }
                                }
                                Action::ChangeBaud(baud) => {
                                    pacer.rate = baud;
                                    if pacer.baud.is_some() {
                                        pacer.baud = Some(baud);
                                    }
                                }
                                Action::Reboot => firmware = self.boot(),
                                Action::Unplug => {
                                    self.master = None;
                                    self.event(SimEvent::Unplugged);
                                }
                            }
                        }
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    // No host has the port open (EIO on the master side).
                    if connected {
                        connected = false;
                        decoder = slip::Decoder::default();
                        self.event(SimEvent::HostClosed);
                        let written = self.rom.lock().unwrap_or_else(|e| e.into_inner()).dirty;
                        if written && firmware.is_none() {
                            firmware = self.boot();
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        if let Some(f) = firmware {
            f.stop();
        }
    }

    /// Runs what is in flash: the boot log on the serial port, then the firmware.
    fn boot(&mut self) -> Option<boot::Firmware> {
        let (report, log) = {
            let mut rom = self.rom.lock().unwrap_or_else(|e| e.into_inner());
            rom.dirty = false;
            rom.reset();
            let bad_app = rom.has_fault(Fault::BadApp);
            boot::boot(&rom.flash, rom.mac(), bad_app)
        };
        if let Some(m) = self.master.as_mut() {
            let _ = write_all(m, log.as_bytes());
        }
        self.event(SimEvent::Booted(report.clone()));
        for line in log.lines().filter(|l| l.starts_with("vesper: ")) {
            self.event(SimEvent::Console(line.trim_end().to_owned()));
        }
        let rom = self.rom.lock().unwrap_or_else(|e| e.into_inner());
        let faults = [Fault::WrongPassword, Fault::NoHeartbeat]
            .into_iter()
            .filter(|f| rom.has_fault(*f))
            .collect();
        drop(rom);
        // The firmware prints its own lines on the same serial port, after the boot log.
        let console = self.master.as_ref().and_then(|m| m.try_clone_native().ok());
        boot::Firmware::start(&report, &self.config, faults, self.events.clone(), console)
    }
}

fn write_all(port: &mut TTYPort, mut bytes: &[u8]) -> std::io::Result<()> {
    // A pseudo-terminal write can be partial: loop until everything is written.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bytes.is_empty() {
        match port.write(bytes) {
            Ok(0) => return Err(std::io::Error::other("port closed")),
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if (e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::WouldBlock)
                    && Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
    }
    port.flush()
}
