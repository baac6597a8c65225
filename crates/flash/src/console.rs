//! The board's serial console after flashing: its boot log and the firmware's `vesper: ...`
//! lines (DESIGN.md section 3), read line by line without resetting the board. A board can send
//! anything (noise at the wrong baud, a crash dump without a newline), so a line is bounded:
//! past `vesper_core::device::MAX_CONSOLE_LINE` bytes it is cut and handed over as it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Reads the board's serial console (115200 baud) line by line until `stop`.
pub fn read_console(port: &str, stop: &AtomicBool, mut line: impl FnMut(String)) {
    // A simulated board boots when the flasher closes its port: give it time to notice.
    std::thread::sleep(Duration::from_millis(300));
    let Ok(mut serial) = serialport::new(port, 115_200)
        .timeout(Duration::from_millis(100))
        .open_native()
    else {
        return;
    };
    // Keep EN and IO0 released, so opening the console does not reset the board.
    let _ = serialport::SerialPort::write_data_terminal_ready(&mut serial, false);
    let _ = serialport::SerialPort::write_request_to_send(&mut serial, false);
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
