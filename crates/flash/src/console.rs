//! The board's serial console after flashing: its boot log and the firmware's `vesper: ...`
//! lines (DESIGN.md section 3), read line by line without resetting the board.

use std::io::BufRead as _;
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
    let mut reader = std::io::BufReader::new(serial);
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(50)),
            Ok(_) => {
                if buf.ends_with(b"\n") {
                    let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    if !text.is_empty() {
                        line(text);
                    }
                    buf.clear();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}
