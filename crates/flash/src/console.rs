//! The board's serial console after flashing: its boot log and the firmware's `vesper: ...`
//! lines (DESIGN.md section 3), read line by line without resetting the board, and, for the
//! end-of-line test, a [`ConsoleSession`] that also writes commands to it. A board can send
//! anything (noise at the wrong baud, a crash dump without a newline), so a line is bounded:
//! past `vesper_core::device::MAX_CONSOLE_LINE` bytes it is cut and handed over as it is.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Opens a board's console at 115200 baud with EN and IO0 released (opening it does not reset
/// the board).
fn open(port: &str) -> Result<serialport::TTYPort, serialport::Error> {
    let mut serial = serialport::new(port, 115_200)
        .timeout(Duration::from_millis(100))
        .open_native()?;
    let _ = serialport::SerialPort::write_data_terminal_ready(&mut serial, false);
    let _ = serialport::SerialPort::write_request_to_send(&mut serial, false);
    Ok(serial)
}

/// A board's console held open for a conversation: its lines read one at a time, commands
/// written to it.
pub struct ConsoleSession {
    serial: serialport::TTYPort,
    lines: vesper_core::device::ConsoleLines,
    ready: VecDeque<String>,
}

impl ConsoleSession {
    pub fn open(port: &str) -> Result<ConsoleSession, String> {
        let serial = open(port).map_err(|e| format!("cannot open the console {port}: {e}"))?;
        Ok(ConsoleSession {
            serial,
            lines: Default::default(),
            ready: VecDeque::new(),
        })
    }

    /// Writes `text` (a command with its newline) to the board.
    pub fn send(&mut self, text: &str) -> Result<(), String> {
        self.serial
            .write_all(text.as_bytes())
            .and_then(|()| self.serial.flush())
            .map_err(|e| format!("cannot write to the console: {e}"))
    }

    /// The next whole line the board prints, or `None` when none comes by `until` (or the
    /// port is gone).
    pub fn next_line(&mut self, until: Instant) -> Option<String> {
        let mut chunk = [0u8; 512];
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some(line);
            }
            if Instant::now() >= until {
                return None;
            }
            match std::io::Read::read(&mut self.serial, &mut chunk) {
                Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                Ok(n) => {
                    let ready = &mut self.ready;
                    self.lines.feed(&chunk[..n], &mut |l| ready.push_back(l));
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return None,
            }
        }
    }
}

/// Reads the board's serial console (115200 baud) line by line until `stop`.
pub fn read_console(port: &str, stop: &AtomicBool, mut line: impl FnMut(String)) {
    // A simulated board boots when the flasher closes its port: give it time to notice.
    std::thread::sleep(Duration::from_millis(300));
    let Ok(mut serial) = open(port) else {
        return;
    };
    let mut chunk = [0u8; 512];
    let mut lines = vesper_core::device::ConsoleLines::default();
    while !stop.load(Ordering::Relaxed) {
        match std::io::Read::read(&mut serial, &mut chunk) {
            Ok(0) => std::thread::sleep(Duration::from_millis(50)),
            Ok(n) => lines.feed(&chunk[..n], &mut line),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}
