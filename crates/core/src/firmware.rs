//! Firmware bundles as ESP Web Tools manifests describe them, and the facts about ESP images and
//! chips that every reader of a bundle needs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Chip;

/// First byte of every ESP application and bootloader image.
pub const IMAGE_MAGIC: u8 = 0xE9;

/// One part of a bundle, as the manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Part {
    /// File name, relative to the manifest (or an absolute URL in API answers).
    pub path: String,
    pub offset: u32,
    pub size: u64,
    pub sha256: String,
}

/// One chip family's parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Build {
    #[serde(rename = "chipFamily")]
    pub chip_family: String,
    pub parts: Vec<Part>,
}

/// An ESP Web Tools manifest with a size and SHA-256 for every part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub builds: Vec<Build>,
    /// Which part is the application (also published as `v{version}.bin`).
    pub app: String,
}

/// ESP Web Tools' name for a chip.
pub fn chip_family(chip: Chip) -> &'static str {
    match chip {
        Chip::Esp32 => "ESP32",
        Chip::Esp32s2 => "ESP32-S2",
        Chip::Esp32s3 => "ESP32-S3",
        Chip::Esp32c2 => "ESP32-C2",
        Chip::Esp32c3 => "ESP32-C3",
        Chip::Esp32c6 => "ESP32-C6",
        Chip::Esp32h2 => "ESP32-H2",
    }
}

/// Where the second-stage bootloader goes on a chip.
pub fn bootloader_offset(chip: Chip) -> u32 {
    match chip {
        Chip::Esp32 | Chip::Esp32s2 => 0x1000,
        _ => 0x0,
    }
}
