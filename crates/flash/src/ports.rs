//! Serial ports a board can be on, by USB bridge, and noticing boards being plugged in and
//! pulled out (polling sysfs through `serialport`; no libudev needed).

use std::collections::BTreeMap;
use std::time::Duration;

/// Which USB bridge a port is, from its vendor and product ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    Cp210x,
    Ch340,
    Ch9102,
    Ftdi,
    EspressifUsb,
    OtherUsb,
    /// Not USB (a built-in UART or a pseudo-terminal).
    Other,
}

impl PortKind {
    /// Identifies the USB-to-serial bridges ESP32 boards use.
    pub fn from_ids(vid: u16, pid: u16) -> PortKind {
        match (vid, pid) {
            (0x10C4, 0xEA60 | 0xEA70) => PortKind::Cp210x,
            (0x1A86, 0x7523 | 0x5523) => PortKind::Ch340,
            (0x1A86, 0x55D4) => PortKind::Ch9102,
            (0x0403, _) => PortKind::Ftdi,
            (0x303A, _) => PortKind::EspressifUsb,
            _ => PortKind::OtherUsb,
        }
    }

    /// Whether an ESP32 board is likely on it.
    pub fn is_candidate(self) -> bool {
        !matches!(self, PortKind::OtherUsb | PortKind::Other)
    }
}

/// One serial port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortInfo {
    pub path: String,
    pub kind: PortKind,
    pub vid: Option<u16>,
    pub pid: Option<u16>,
    pub serial_number: Option<String>,
    pub product: Option<String>,
}

/// The serial ports present now, candidates first.
pub fn list_ports() -> Vec<PortInfo> {
    let mut ports: Vec<PortInfo> = serialport::available_ports()
        .unwrap_or_default()
        .into_iter()
        .map(|p| match p.port_type {
            serialport::SerialPortType::UsbPort(usb) => PortInfo {
                path: p.port_name,
                kind: PortKind::from_ids(usb.vid, usb.pid),
                vid: Some(usb.vid),
                pid: Some(usb.pid),
                serial_number: usb.serial_number,
                product: usb.product,
            },
            _ => PortInfo {
                path: p.port_name,
                kind: PortKind::Other,
                vid: None,
                pid: None,
                serial_number: None,
                product: None,
            },
        })
        .collect();
    ports.sort_by_key(|p| (!p.kind.is_candidate(), p.path.clone()));
    ports
}

/// A port that appeared or went away.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum PortChange {
    Plugged(PortInfo),
    Unplugged { path: String },
}

/// Polls the ports every `every` and reports changes until `on_change` returns false.
pub fn watch_ports(every: Duration, mut on_change: impl FnMut(PortChange) -> bool) {
    let index = |ports: Vec<PortInfo>| {
        ports
            .into_iter()
            .map(|p| (p.path.clone(), p))
            .collect::<BTreeMap<_, _>>()
    };
    let mut known = index(list_ports());
    loop {
        std::thread::sleep(every);
        let now = index(list_ports());
        for (path, port) in &now {
            if !known.contains_key(path) && !on_change(PortChange::Plugged(port.clone())) {
                return;
            }
        }
        for path in known.keys() {
            if !now.contains_key(path) && !on_change(PortChange::Unplugged { path: path.clone() }) {
                return;
            }
        }
        known = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridges_by_usb_ids() {
        assert_eq!(PortKind::from_ids(0x10C4, 0xEA60), PortKind::Cp210x);
        assert_eq!(PortKind::from_ids(0x1A86, 0x7523), PortKind::Ch340);
        assert_eq!(PortKind::from_ids(0x1A86, 0x55D4), PortKind::Ch9102);
        assert_eq!(PortKind::from_ids(0x0403, 0x6001), PortKind::Ftdi);
        assert_eq!(PortKind::from_ids(0x303A, 0x1001), PortKind::EspressifUsb);
        assert_eq!(PortKind::from_ids(0x046D, 0xC52B), PortKind::OtherUsb);
        assert!(!PortKind::OtherUsb.is_candidate());
    }
}
