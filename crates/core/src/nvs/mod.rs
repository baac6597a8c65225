//! NVS partition images, byte-identical to Espressif's `esp-idf-nvs-partition-gen` 0.3.0.
//!
//! - [`Writer`] builds an image in memory from key/values (the backend calls it per device,
//!   through [`device_image`]);
//! - [`csv`] reads the generator's CSV dialect (`vesper nvs generate`);
//! - [`dump`] decodes an image back to that CSV and reports page states and damage
//!   (`vesper nvs dump`).
//!
//! The format is summarised in `vectors/nvs/FORMAT.md`; every vector there is a test.

pub mod csv;
pub mod dump;
mod format;
mod pycompat;
mod writer;

pub use format::{ItemType, PAGE_SIZE, PageState, Version, crc32};
pub use pycompat::a2b_hex as decode_hex;
pub use writer::{Geometry, Value, Writer, check_key};

use crate::credentials::DevicePassword;
use crate::serial::SerialNumber;

/// The namespace that holds a device's provisioning keys.
pub const DEVICE_NAMESPACE: &str = "vesper";

/// The keys every device image holds, in the order they are written.
pub const DEVICE_KEYS: [&str; 7] = [
    "serial_number",
    "hw_type",
    "hw_version",
    "mqtt_user",
    "mqtt_pass",
    "mqtt_host",
    "mqtt_port",
];

/// The keys written from `[wifi]`, `mqtt.ca_file` and `[ota] ca_file` (not from `nvs_extra`).
pub const NETWORK_KEYS: [&str; 4] = ["wifi_ssid", "wifi_pass", "mqtt_ca", "ota_ca"];

/// The optional keys the firmware reads, with the one type it reads each as (DESIGN.md
/// section 3; `offline_reset_s` is the 15-character NVS name of `offline_restart_s`). A board's
/// `nvs_extra` may set them, with that type only.
pub const DEVICE_OPTIONAL_KEYS: [(&str, &str); 4] = [
    ("ota_confirm_s", "u32"),
    ("offline_reset_s", "u32"),
    ("heartbeat_s", "u32"),
    ("factory_test", "u8"),
];

/// Errors building an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvsError {
    #[error("partition size {0} (0x{0:x}) is not a multiple of 4096 bytes")]
    SizeNotPageMultiple(u64),
    #[error(
        "partition size {0} (0x{0:x}) is below the minimum: 0x3000 for read/write NVS, 0x1000 for read-only"
    )]
    SizeTooSmall(u64),
    #[error("partition size {0} (0x{0:x}) is larger than any ESP32 flash")]
    SizeTooLarge(u64),
    #[error("key `{0}` is longer than 15 characters")]
    KeyTooLong(String),
    #[error("key `{0}` must be ASCII without NUL")]
    KeyNotAscii(String),
    #[error("namespace `{0}` would be the 256th; an image holds at most 255 namespaces")]
    TooManyNamespaces(String),
    #[error("value of `{key}` is {len} bytes, more than the {max} bytes allowed")]
    ValueTooLong { key: String, len: usize, max: usize },
    #[error(
        "string `{key}` is {len} bytes (NUL included) and cannot fit in one page: at most 3968 bytes fit \
         (Espressif's tool crashes here)"
    )]
    ValueExceedsPage { key: String, len: usize },
    #[error(
        "the data needs more than the {data_pages} data pages of a {size}-byte (0x{size:x}) partition; \
         use a larger partition or less data"
    )]
    InsufficientSize { size: usize, data_pages: usize },
}

/// A typed value kept in configuration (a per-board extra NVS key).
pub type Setting = Value<'static>;

/// What goes into one device's NVS partition.
#[derive(Debug, Clone, Copy)]
pub struct DeviceNvs<'a> {
    pub serial_number: &'a SerialNumber,
    pub hw_type: &'a str,
    pub hw_version: &'a str,
    /// The derived MQTT password (never the master secret).
    pub mqtt_pass: &'a DevicePassword,
    pub mqtt_host: &'a str,
    pub mqtt_port: u16,
    /// The bench network and CAs, written after the standard keys when set.
    pub network: DeviceNetwork<'a>,
    /// Per-board extra keys from configuration, written last.
    pub extra: &'a [(String, Setting)],
}

/// What a device is told besides its identity (DESIGN.md section 3): `wifi_ssid`, `wifi_pass`,
/// `mqtt_ca`, `ota_ca`, each written when set.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceNetwork<'a> {
    pub wifi_ssid: Option<&'a str>,
    pub wifi_pass: Option<&'a str>,
    pub mqtt_ca: Option<&'a str>,
    pub ota_ca: Option<&'a str>,
}

/// Builds the NVS image of one device for a partition of `size` bytes (format version 2).
///
/// The image equals what Espressif's generator makes from the CSV
/// `vesper,namespace,,` followed by the keys of [`DEVICE_KEYS`], the network keys that are set
/// and the extras.
pub fn device_image(size: u64, device: &DeviceNvs) -> Result<Vec<u8>, NvsError> {
    let mut w = Writer::new(size, Version::V2)?;
    w.namespace(DEVICE_NAMESPACE)?;
    w.put("serial_number", &Value::str(device.serial_number.as_str()))?;
    w.put("hw_type", &Value::str(device.hw_type))?;
    w.put("hw_version", &Value::str(device.hw_version))?;
    w.put("mqtt_user", &Value::str(device.serial_number.as_str()))?;
    w.put("mqtt_pass", &Value::str(device.mqtt_pass.expose()))?;
    w.put("mqtt_host", &Value::str(device.mqtt_host))?;
    w.put("mqtt_port", &Value::U16(device.mqtt_port))?;
    let network = device.network;
    for (key, value) in [
        ("wifi_ssid", network.wifi_ssid),
        ("wifi_pass", network.wifi_pass),
        ("mqtt_ca", network.mqtt_ca),
        ("ota_ca", network.ota_ca),
    ] {
        if let Some(value) = value {
            w.put(key, &Value::str(value))?;
        }
    }
    for (key, setting) in device.extra {
        w.put(key, setting)?;
    }
    Ok(w.finish())
}
