//! The hardware model: chips, flash modes, and the boards (hardware variants) a factory makes.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::nvs::Setting;
use crate::partitions::{PartitionTable, Region};
use crate::serial::{BoardType, Revision};

/// ESP32 family chips a board can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chip {
    Esp32,
    Esp32s2,
    Esp32s3,
    Esp32c2,
    Esp32c3,
    Esp32c6,
    Esp32h2,
}

impl fmt::Display for Chip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Chip::Esp32 => "esp32",
            Chip::Esp32s2 => "esp32s2",
            Chip::Esp32s3 => "esp32s3",
            Chip::Esp32c2 => "esp32c2",
            Chip::Esp32c3 => "esp32c3",
            Chip::Esp32c6 => "esp32c6",
            Chip::Esp32h2 => "esp32h2",
        };
        f.write_str(name)
    }
}

impl Chip {
    pub const ALL: [Chip; 7] = [
        Chip::Esp32,
        Chip::Esp32s2,
        Chip::Esp32s3,
        Chip::Esp32c2,
        Chip::Esp32c3,
        Chip::Esp32c6,
        Chip::Esp32h2,
    ];
}

/// A chip by its name as displayed (`esp32s3`), the name configuration and PlatformIO use.
impl std::str::FromStr for Chip {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Chip::ALL.into_iter().find(|c| c.to_string() == s).ok_or(())
    }
}

/// SPI flash modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashMode {
    Qio,
    Qout,
    Dio,
    Dout,
}

impl FlashMode {
    pub const ALL: [FlashMode; 4] = [
        FlashMode::Qio,
        FlashMode::Qout,
        FlashMode::Dio,
        FlashMode::Dout,
    ];
}

/// The name configuration and PlatformIO use: `qio`, `qout`, `dio`, `dout`.
impl fmt::Display for FlashMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlashMode::Qio => "qio",
            FlashMode::Qout => "qout",
            FlashMode::Dio => "dio",
            FlashMode::Dout => "dout",
        })
    }
}

impl std::str::FromStr for FlashMode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        FlashMode::ALL
            .into_iter()
            .find(|m| m.to_string() == s)
            .ok_or(())
    }
}

/// One hardware variant (a PlatformIO environment in the customer's firmware repository).
#[derive(Debug, Clone)]
pub struct Board {
    /// Environment name, e.g. `bellcore-v2`; also the OTA folder name.
    pub name: String,
    pub hw_type: BoardType,
    pub hw_version: Revision,
    pub chip: Chip,
    /// Flash size in bytes.
    pub flash_size: u64,
    pub flash_mode: FlashMode,
    /// Resolved path of the partition table.
    pub partition_table: PathBuf,
    pub table: PartitionTable,
    /// Name of the provisioning NVS partition in the table (normally `nvs`).
    pub nvs_name: String,
    /// Where the provisioning NVS partition is, from the table.
    pub nvs: Region,
    /// Extra NVS keys written after the standard ones.
    pub nvs_extra: Vec<(String, Setting)>,
}
