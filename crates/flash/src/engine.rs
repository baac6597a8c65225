//! Flashing one board on one port with espflash, as a blocking job that reports typed events.
//! Run one per port in its own thread; the events are all a user interface ever sees.

use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use espflash::connection::{Connection, ResetAfterOperation, ResetBeforeOperation};
use espflash::flasher::Flasher;
use espflash::image_format::Segment;
use espflash::target::{Chip, ProgressCallbacks};
use serialport::UsbPortInfo;

use super::FlashPlan;

/// How to talk to the board.
#[derive(Debug, Clone)]
pub struct FlashOptions {
    /// Baud rate after connecting (real ports: 921600).
    pub baud: u32,
    /// Real boards: DTR/RTS reset into the bootloader and a hard reset after. Pseudo-terminals
    /// have no modem lines: no reset before, stay in the stub after (closing the port resets).
    pub reset: bool,
    /// Upload the flasher stub (faster, compressed writes).
    pub use_stub: bool,
    /// Attempts after a transient failure (no sync, write error, verify mismatch).
    pub retries: u32,
    /// The chip the board must have.
    pub chip: Chip,
}

impl Default for FlashOptions {
    fn default() -> Self {
        Self {
            baud: 921_600,
            reset: true,
            use_stub: true,
            retries: 2,
            chip: Chip::Esp32,
        }
    }
}

/// The espflash chip of a configured board.
pub fn espflash_chip(chip: vesper_core::model::Chip) -> Chip {
    use vesper_core::model::Chip as C;
    match chip {
        C::Esp32 => Chip::Esp32,
        C::Esp32s2 => Chip::Esp32s2,
        C::Esp32s3 => Chip::Esp32s3,
        C::Esp32c2 => Chip::Esp32c2,
        C::Esp32c3 => Chip::Esp32c3,
        C::Esp32c6 => Chip::Esp32c6,
        C::Esp32h2 => Chip::Esp32h2,
    }
}

/// What happened, as it happens.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FlashEvent {
    Connecting {
        port: String,
        attempt: u32,
    },
    Connected {
        port: String,
        chip: String,
        mac: String,
        flash_size: String,
    },
    PartStarted {
        port: String,
        part: String,
        offset: u32,
        bytes: usize,
    },
    PartProgress {
        port: String,
        part: String,
        done: usize,
        total: usize,
    },
    PartVerifying {
        port: String,
        part: String,
    },
    PartDone {
        port: String,
        part: String,
    },
    Retrying {
        port: String,
        attempt: u32,
        reason: String,
    },
    Done {
        port: String,
        mac: String,
        chip: String,
        seconds: f64,
        bytes: usize,
    },
    Failed {
        port: String,
        error: String,
    },
}

/// Failures a technician can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlashError {
    #[error("no sync: hold BOOT and press EN, or check the cable")]
    NoSync,
    #[error("wrong chip: the board is an {found}, this board type needs an {expected}")]
    WrongChip { expected: String, found: String },
    #[error(
        "flash write error: the board's flash did not take the data; retry, and if it repeats set the board aside"
    )]
    WriteFailed,
    #[error(
        "verify failed: what was written does not read back the same; retry, and if it repeats set the board aside"
    )]
    VerifyMismatch,
    #[error("the board was unplugged (the port vanished)")]
    PortVanished,
    /// The board was identified and must not be written (it already carries another identity).
    #[error("{0}")]
    Refused(String),
    #[error("port busy: another program has {0} open; close it")]
    PortBusy(String),
    #[error("cannot open {port}: {reason}")]
    Open { port: String, reason: String },
    #[error("{0}")]
    Other(String),
}

impl FlashError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FlashError::NoSync
                | FlashError::WriteFailed
                | FlashError::VerifyMismatch
                | FlashError::Other(_)
        )
    }
}

/// What a successful flash found out about the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashOutcome {
    pub chip: String,
    pub mac: String,
    pub attempts: u32,
}

/// The error chain as one text, for classification.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{e} {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(" | {s} {s:?}"));
        source = s.source();
    }
    text
}

/// Maps espflash's errors to what a technician can do about them.
fn classify(e: &espflash::Error, port: &str) -> FlashError {
    if let espflash::Error::ChipMismatch(expected, found) = e {
        return FlashError::WrongChip {
            expected: expected.clone(),
            found: found.clone(),
        };
    }
    if matches!(e, espflash::Error::VerifyFailed) {
        return FlashError::VerifyMismatch;
    }
    let text = chain(e);
    if text.contains("FlashWriteError") || text.contains("Flash write error") {
        FlashError::WriteFailed
    } else if text.contains("Input/output error")
        || text.contains("No such file")
        || text.contains("NoDevice")
        || text.contains("os error 5")
        || text.contains("Broken pipe")
        // tcdrain on a hung-up line: the other end of the port is gone.
        || text.contains("flush failed")
        || !std::path::Path::new(port).exists()
    {
        FlashError::PortVanished
    } else if text.contains("busy") {
        FlashError::PortBusy(port.to_owned())
    } else if text.contains("ConnectionFailed")
        || text.contains("NoSyncReply")
        || text.contains("WrongBootMode")
    {
        FlashError::NoSync
    } else {
        let mut root: &dyn std::error::Error = e;
        while let Some(next) = root.source() {
            root = next;
        }
        FlashError::Other(
            if std::ptr::eq(root as *const _ as *const u8, e as *const _ as *const u8) {
                e.to_string()
            } else {
                format!("{e}: {root}")
            },
        )
    }
}

/// Forwards espflash's progress as events.
struct Progress<'a> {
    port: &'a str,
    tx: &'a Sender<FlashEvent>,
    parts: &'a [super::PlannedPart],
    current: usize,
    total: usize,
}

impl Progress<'_> {
    fn part(&self) -> String {
        self.parts
            .get(self.current)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }
}

impl ProgressCallbacks for Progress<'_> {
    fn init(&mut self, addr: u32, total: usize) {
        if let Some(i) = self.parts.iter().position(|p| p.offset == addr) {
            self.current = i;
        }
        self.total = total;
        let p = &self.parts[self.current];
        let _ = self.tx.send(FlashEvent::PartStarted {
            port: self.port.into(),
            part: p.name.clone(),
            offset: p.offset,
            bytes: p.data.len(),
        });
    }

    fn update(&mut self, current: usize) {
        let _ = self.tx.send(FlashEvent::PartProgress {
            port: self.port.into(),
            part: self.part(),
            done: current,
            total: self.total,
        });
    }

    fn verifying(&mut self) {
        let _ = self.tx.send(FlashEvent::PartVerifying {
            port: self.port.into(),
            part: self.part(),
        });
    }

    fn finish(&mut self, _skipped: bool) {
        let _ = self.tx.send(FlashEvent::PartDone {
            port: self.port.into(),
            part: self.part(),
        });
    }
}

fn open(port: &str, reset: bool) -> Result<Connection, FlashError> {
    let serial = serialport::new(port, 115_200)
        .timeout(Duration::from_secs(3))
        .open_native()
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("busy") || text.contains("Resource temporarily unavailable") {
                FlashError::PortBusy(port.into())
            } else if matches!(e.kind, serialport::ErrorKind::NoDevice)
                || text.contains("No such file")
            {
                FlashError::PortVanished
            } else {
                FlashError::Open {
                    port: port.into(),
                    reason: text,
                }
            }
        })?;
    // Pseudo-terminals have no USB identity; pid 0 keeps espflash off the USB-JTAG reset path.
    let usb = UsbPortInfo {
        vid: 0,
        pid: 0,
        serial_number: None,
        manufacturer: None,
        product: None,
    };
    let (before, after) = if reset {
        (
            ResetBeforeOperation::DefaultReset,
            ResetAfterOperation::HardReset,
        )
    } else {
        (
            ResetBeforeOperation::NoReset,
            ResetAfterOperation::NoResetNoStub,
        )
    };
    Ok(Connection::new(serial, usb, after, before, 115_200))
}

/// Decides, from the MAC read off a connected board, whether it may be written.
pub type BoardCheck<'a> = &'a (dyn Fn(&str) -> Result<(), String> + Sync);

/// A [`BoardCheck`] that lets every board be written (flashing files, tests).
pub const ANY_BOARD: BoardCheck<'static> = &|_| Ok(());

/// One attempt: connect, identify, ask `check`, write every part with verification.
fn attempt(
    port: &str,
    plan: &FlashPlan,
    options: &FlashOptions,
    tx: &Sender<FlashEvent>,
    check: BoardCheck,
) -> Result<FlashOutcome, FlashError> {
    let connection = open(port, options.reset)?;
    let baud = (options.baud != 115_200).then_some(options.baud);
    let mut flasher = Flasher::connect(
        connection,
        options.use_stub,
        true,
        false,
        Some(options.chip),
        baud,
    )
    .map_err(|e| classify(&e, port))?;
    let info = flasher.device_info().map_err(|e| classify(&e, port))?;
    let revision = info
        .revision
        .map(|(a, b)| format!(" rev v{a}.{b}"))
        .unwrap_or_default();
    let chip_name = format!("{}{revision}", info.chip);
    let mac = info.mac_address.unwrap_or_default().to_uppercase();
    let _ = tx.send(FlashEvent::Connected {
        port: port.into(),
        chip: chip_name.clone(),
        mac: mac.clone(),
        flash_size: info.flash_size.to_string(),
    });
    check(&mac).map_err(FlashError::Refused)?;
    let segments: Vec<Segment> = plan
        .parts
        .iter()
        .map(|p| Segment::new(p.offset, &p.data))
        .collect();
    let mut progress = Progress {
        port,
        tx,
        parts: &plan.parts,
        current: 0,
        total: 0,
    };
    flasher
        .write_bins_to_flash(&segments, &mut progress)
        .map_err(|e| classify(&e, port))?;
    Ok(FlashOutcome {
        chip: chip_name,
        mac,
        attempts: 0,
    })
}

/// Flashes `plan` onto the board at `port`, reporting every step on `tx`, retrying transient
/// failures; once the board is connected and its MAC read, `check` may refuse it before a byte
/// is written (the station refuses a board that already carries another serial number;
/// [`ANY_BOARD`] refuses none).
pub fn flash(
    port: &str,
    plan: &FlashPlan,
    options: &FlashOptions,
    tx: &Sender<FlashEvent>,
    check: BoardCheck,
) -> Result<FlashOutcome, FlashError> {
    let start = Instant::now();
    let mut attempt_no = 1;
    loop {
        let _ = tx.send(FlashEvent::Connecting {
            port: port.into(),
            attempt: attempt_no,
        });
        match attempt(port, plan, options, tx, check) {
            Ok(mut outcome) => {
                outcome.attempts = attempt_no;
                let _ = tx.send(FlashEvent::Done {
                    port: port.into(),
                    mac: outcome.mac.clone(),
                    chip: outcome.chip.clone(),
                    seconds: start.elapsed().as_secs_f64(),
                    bytes: plan.total_bytes(),
                });
                return Ok(outcome);
            }
            Err(e) if e.is_transient() && attempt_no <= options.retries => {
                let _ = tx.send(FlashEvent::Retrying {
                    port: port.into(),
                    attempt: attempt_no + 1,
                    reason: e.to_string(),
                });
                attempt_no += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                let _ = tx.send(FlashEvent::Failed {
                    port: port.into(),
                    error: e.to_string(),
                });
                return Err(e);
            }
        }
    }
}
