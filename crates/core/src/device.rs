//! What a device prints and publishes (DESIGN.md section 3): for `vesper sim`, the same console
//! lines and payloads as the firmware's core (firmware/lib/vesper_core), held to the same vector
//! file (tests/vectors/device/messages.tsv) on both sides; for the station, [`ConsoleLines`],
//! which splits what a board sends on its console into bounded lines.

use std::fmt;

/// One line of the device's serial console, printed as `vesper: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleLine<'a> {
    Boot {
        serial_number: &'a str,
        hw_type: &'a str,
        hw_version: &'a str,
        firmware: &'a str,
        /// The factory MAC as AA:BB:CC:DD:EE:FF.
        mac: &'a str,
        /// The chip as esptool names it (esp32, esp32s3, ...).
        chip: &'a str,
    },
    WifiConnected {
        ip: &'a str,
    },
    WifiFailed {
        reason: &'a str,
    },
    MqttConnected,
    HeartbeatSent,
    Error {
        what: &'a str,
    },
    /// The broker refused the login with this CONNACK return code (MQTT 3.1.1 section 3.2.2.3).
    MqttRefused {
        code: u8,
    },
    OtaUpdate {
        from: &'a str,
        to: &'a str,
    },
    OtaDone {
        firmware: &'a str,
    },
    OtaSkipped {
        offered: &'a str,
        reason: &'a str,
    },
    Reboot,
    /// The updated image logged in and had a heartbeat acknowledged: it is kept.
    OtaConfirmed {
        firmware: &'a str,
    },
    /// The updated image could not prove itself in time: back to the previous one.
    OtaRollback {
        firmware: &'a str,
        reason: &'a str,
    },
    /// A control message not obeyed (a retained one).
    ControlIgnored {
        reason: &'a str,
    },
    /// The device restarts itself (offline too long).
    Restart {
        reason: &'a str,
    },
}

/// A value inside a line, as the firmware prints it: printable ASCII, at most 240 bytes.
struct Clean<'a>(&'a str);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0.as_bytes().iter().take(240) {
            let c = if (0x20..0x7F).contains(&b) {
                b as char
            } else {
                '?'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ConsoleLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("vesper: ")?;
        match *self {
            ConsoleLine::Boot {
                serial_number,
                hw_type,
                hw_version,
                firmware,
                mac,
                chip,
            } => write!(
                f,
                "boot sn={} hw={}{} fw={} mac={} chip={}",
                Clean(serial_number),
                Clean(hw_type),
                Clean(hw_version),
                Clean(firmware),
                Clean(mac),
                Clean(chip)
            ),
            ConsoleLine::WifiConnected { ip } => write!(f, "wifi connected ip={}", Clean(ip)),
            ConsoleLine::WifiFailed { reason } => write!(f, "wifi failed reason={}", Clean(reason)),
            ConsoleLine::MqttConnected => f.write_str("mqtt connected"),
            ConsoleLine::HeartbeatSent => f.write_str("heartbeat sent"),
            ConsoleLine::Error { what } => write!(f, "error what={}", Clean(what)),
            ConsoleLine::MqttRefused { code } => {
                let words = match code {
                    1 => "unacceptable protocol version",
                    2 => "identifier rejected",
                    3 => "server unavailable",
                    4 => "bad user name or password",
                    5 => "not authorised",
                    other => return write!(f, "error what=mqtt refused (code {other})"),
                };
                write!(f, "error what=mqtt refused ({words})")
            }
            ConsoleLine::OtaUpdate { from, to } => {
                write!(f, "ota update from={} to={}", Clean(from), Clean(to))
            }
            ConsoleLine::OtaDone { firmware } => write!(f, "ota done fw={}", Clean(firmware)),
            ConsoleLine::OtaSkipped { offered, reason } => write!(
                f,
                "ota skipped offered={} reason={}",
                Clean(offered),
                Clean(reason)
            ),
            ConsoleLine::Reboot => f.write_str("reboot"),
            ConsoleLine::OtaConfirmed { firmware } => {
                write!(f, "ota confirmed fw={}", Clean(firmware))
            }
            ConsoleLine::OtaRollback { firmware, reason } => write!(
                f,
                "ota rollback fw={} reason={}",
                Clean(firmware),
                Clean(reason)
            ),
            ConsoleLine::ControlIgnored { reason } => {
                write!(f, "control ignored reason={}", Clean(reason))
            }
            ConsoleLine::Restart { reason } => write!(f, "restart reason={}", Clean(reason)),
        }
    }
}

/// `text` as a JSON string literal (what the firmware's `json_quote` writes).
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Why the board last started, as the heartbeat reports it (from ESP-IDF's `esp_reset_reason()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    PowerOn,
    Software,
    Panic,
    Watchdog,
    Brownout,
    Other,
}

impl ResetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::PowerOn => "poweron",
            ResetReason::Software => "sw",
            ResetReason::Panic => "panic",
            ResetReason::Watchdog => "wdt",
            ResetReason::Brownout => "brownout",
            ResetReason::Other => "other",
        }
    }
}

/// What a heartbeat reports about the board besides its firmware and uptime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vitals {
    /// dBm of the access point.
    pub rssi: i32,
    /// Free heap in bytes.
    pub heap_free: u32,
    pub reset_reason: ResetReason,
}

/// `{"type":"heartbeat","fw":"VERSION","uptime":SECONDS,"rssi":DBM,"heap_free":BYTES,"reset_reason":"..."}`
/// on the data topic.
pub fn heartbeat_payload(firmware: &str, uptime_s: u64, vitals: Vitals) -> String {
    format!(
        r#"{{"type":"heartbeat","fw":{},"uptime":{uptime_s},"rssi":{},"heap_free":{},"reset_reason":{}}}"#,
        quoted(firmware),
        vitals.rssi,
        vitals.heap_free,
        quoted(vitals.reset_reason.as_str())
    )
}

/// Retained on the status topic after connecting.
pub fn status_online_payload(firmware: &str) -> String {
    format!(r#"{{"online":true,"fw":{}}}"#, quoted(firmware))
}

/// The last will, retained on the status topic.
pub const STATUS_OFFLINE_PAYLOAD: &str = r#"{"online":false}"#;

/// The MQTT keepalive a device uses.
pub const KEEPALIVE_SECONDS: u64 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    /// The text for one row of the vector file, as `vesper sim` makes it.
    fn render(row: &[&str]) -> String {
        match row {
            ["boot", sn, t, v, fw, mac, chip, _] => ConsoleLine::Boot {
                serial_number: sn,
                hw_type: t,
                hw_version: v,
                firmware: fw,
                mac,
                chip,
            }
            .to_string(),
            ["wifi_connected", ip, _] => ConsoleLine::WifiConnected { ip }.to_string(),
            ["wifi_failed", reason, _] => ConsoleLine::WifiFailed { reason }.to_string(),
            ["mqtt_connected", _] => ConsoleLine::MqttConnected.to_string(),
            ["heartbeat_sent", _] => ConsoleLine::HeartbeatSent.to_string(),
            ["error", what, _] => ConsoleLine::Error { what }.to_string(),
            ["mqtt_refused", code, _] => ConsoleLine::MqttRefused {
                code: code.parse().unwrap(),
            }
            .to_string(),
            ["ota_update", from, to, _] => ConsoleLine::OtaUpdate { from, to }.to_string(),
            ["ota_done", fw, _] => ConsoleLine::OtaDone { firmware: fw }.to_string(),
            ["ota_skipped", offered, reason, _] => {
                ConsoleLine::OtaSkipped { offered, reason }.to_string()
            }
            ["reboot", _] => ConsoleLine::Reboot.to_string(),
            ["ota_confirmed", fw, _] => ConsoleLine::OtaConfirmed { firmware: fw }.to_string(),
            ["ota_rollback", fw, reason, _] => ConsoleLine::OtaRollback {
                firmware: fw,
                reason,
            }
            .to_string(),
            ["control_ignored", reason, _] => ConsoleLine::ControlIgnored { reason }.to_string(),
            ["restart", reason, _] => ConsoleLine::Restart { reason }.to_string(),
            ["heartbeat_json", fw, uptime, rssi, heap, reason, _] => {
                let reset_reason = [
                    ResetReason::PowerOn,
                    ResetReason::Software,
                    ResetReason::Panic,
                    ResetReason::Watchdog,
                    ResetReason::Brownout,
                    ResetReason::Other,
                ]
                .into_iter()
                .find(|r| r.as_str() == *reason)
                .unwrap();
                let vitals = Vitals {
                    rssi: rssi.parse().unwrap(),
                    heap_free: heap.parse().unwrap(),
                    reset_reason,
                };
                heartbeat_payload(fw, uptime.parse().unwrap(), vitals)
            }
            ["status_online_json", fw, _] => status_online_payload(fw),
            ["status_offline_json", _] => STATUS_OFFLINE_PAYLOAD.to_owned(),
            other => panic!("unknown row {other:?}"),
        }
    }

    /// The rows the firmware core checks too (firmware/test/test_core/test_messages.cpp).
    #[test]
    fn the_vectors_shared_with_the_firmware() {
        let vectors = include_str!("../../../tests/vectors/device/messages.tsv");
        let mut count = 0;
        for line in vectors.lines().filter(|l| !l.starts_with('#')) {
            let row: Vec<&str> = line.split('\t').collect();
            assert_eq!(&render(&row), row.last().unwrap(), "{line}");
            count += 1;
        }
        assert!(count >= 20, "only {count} rows");
    }

    #[test]
    fn values_stay_on_one_printable_line() {
        let what = "bad\r\nline\u{1}";
        assert_eq!(
            ConsoleLine::Error { what }.to_string(),
            "vesper: error what=bad??line?"
        );
        assert_eq!(
            heartbeat_payload(
                "1.0\"x",
                1,
                Vitals {
                    rssi: -1,
                    heap_free: 2,
                    reset_reason: ResetReason::Other
                }
            ),
            r#"{"type":"heartbeat","fw":"1.0\"x","uptime":1,"rssi":-1,"heap_free":2,"reset_reason":"other"}"#
        );
    }
}

/// The longest console line the station keeps, in bytes; the rest of a longer one is dropped.
pub const MAX_CONSOLE_LINE: usize = 1024;

/// Splits a board's serial console (a byte stream a board can fill with anything) into lines: at most [`MAX_CONSOLE_LINE`] bytes each (a longer one is cut and
/// the rest of it dropped up to its newline), trailing whitespace and carriage returns removed,
/// invalid UTF-8 replaced, empty lines skipped.
#[derive(Debug, Default)]
pub struct ConsoleLines {
    buf: Vec<u8>,
    /// The current line passed MAX_CONSOLE_LINE: drop bytes until its newline.
    overlong: bool,
}

impl ConsoleLines {
    /// Feeds bytes as they arrive (in any chunks); calls `line` for each complete line.
    pub fn feed(&mut self, bytes: &[u8], line: &mut impl FnMut(String)) {
        for &b in bytes {
            if b == b'\n' {
                if !self.overlong {
                    let text = String::from_utf8_lossy(&self.buf).trim_end().to_owned();
                    if !text.is_empty() {
                        line(text);
                    }
                }
                self.buf.clear();
                self.overlong = false;
            } else if self.buf.len() < MAX_CONSOLE_LINE {
                self.buf.push(b);
            } else if !self.overlong {
                let text = String::from_utf8_lossy(&self.buf).trim_end().to_owned();
                line(text);
                self.buf.clear();
                self.overlong = true;
            }
        }
    }
}

#[cfg(test)]
mod console_lines_tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = ConsoleLines::default();
        let mut out = Vec::new();
        for chunk in chunks {
            lines.feed(chunk, &mut |l| out.push(l));
        }
        out
    }

    #[test]
    fn lines_in_any_chunks_and_bounded() {
        assert_eq!(
            split(&[
                b"vesper: boot sn=PV",
                b"-1\r\n\r\nvesper: mqtt",
                b" connected\n"
            ]),
            ["vesper: boot sn=PV-1", "vesper: mqtt connected"]
        );
        assert_eq!(split(&[b"no newline yet"]), Vec::<String>::new());
        assert_eq!(split(&[b"\xff\xfeok\n"]), ["\u{fffd}\u{fffd}ok"]);
        let long = vec![b'x'; 5 * MAX_CONSOLE_LINE];
        let got = split(&[&long, b"\nafter\n"]);
        assert_eq!(got.len(), 2, "a long line is one line, cut");
        assert_eq!(got[0].len(), MAX_CONSOLE_LINE);
        assert_eq!(got[1], "after");
    }
}
