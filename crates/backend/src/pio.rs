//! A PlatformIO build folder (`.pio/build/ENV/`) as the parts of a release, so a firmware team
//! publishes what `pio run` made without naming each file: `bootloader.bin`, `partitions.bin`,
//! `firmware.bin`, and the Arduino framework's `boot_app0.bin` for boards with OTA slots.

use std::path::{Path, PathBuf};

use vesper_core::model::Board;

use crate::releases::{FirmwareError, PartSpec};

/// The files `pio run` writes into a build folder, in flash order.
const BUILT: [&str; 3] = ["bootloader.bin", "partitions.bin", "firmware.bin"];

/// Where the Arduino-ESP32 framework keeps `boot_app0.bin` inside PlatformIO's core folder.
const BOOT_APP0_IN_CORE: &str =
    "packages/framework-arduinoespressif32/tools/partitions/boot_app0.bin";

/// The parts of a PlatformIO build for `board`. `boot_app0` is used when given; otherwise it is
/// taken from the build folder or PlatformIO's framework package (`$PLATFORMIO_CORE_DIR`, or
/// `~/.platformio`), and it is needed only when the board's table has an `otadata` partition.
pub fn parts(
    board: &Board,
    build_dir: &Path,
    boot_app0: Option<&Path>,
) -> Result<Vec<PartSpec>, FirmwareError> {
    let mut parts = Vec::new();
    for name in BUILT {
        let path = build_dir.join(name);
        if !path.is_file() {
            return Err(FirmwareError::Part(
                name.into(),
                format!(
                    "not in {} (run `pio run -e {}` first; a PlatformIO build folder has {})",
                    build_dir.display(),
                    board.name,
                    BUILT.join(", ")
                ),
            ));
        }
        parts.push(PartSpec { path, offset: None });
    }
    if has_otadata(board) {
        let found = match boot_app0 {
            Some(given) => Some(given.to_owned()).filter(|p| p.is_file()),
            None => boot_app0_candidates(build_dir)
                .into_iter()
                .find(|p| p.is_file()),
        };
        let path = found.ok_or_else(|| {
            let looked: Vec<String> = match boot_app0 {
                Some(given) => vec![given.display().to_string()],
                None => boot_app0_candidates(build_dir)
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            };
            FirmwareError::Part(
                "boot_app0.bin".into(),
                format!(
                    "board {}'s partition table has otadata, which needs boot_app0.bin; looked in {} (give it with --boot-app0 FILE)",
                    board.name,
                    looked.join(", ")
                ),
            )
        })?;
        parts.insert(2, PartSpec { path, offset: None });
    }
    Ok(parts)
}

fn has_otadata(board: &Board) -> bool {
    board
        .table
        .partitions()
        .iter()
        .any(|p| p.subtype() == esp_idf_part::SubType::Data(esp_idf_part::DataType::Ota))
}

/// Where `boot_app0.bin` may be, in the order they are tried.
fn boot_app0_candidates(build_dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![build_dir.join("boot_app0.bin")];
    if let Some(core) = std::env::var_os("PLATFORMIO_CORE_DIR") {
        out.push(PathBuf::from(core).join(BOOT_APP0_IN_CORE));
    }
    if let Some(home) = dirs::home_dir() {
        out.push(home.join(".platformio").join(BOOT_APP0_IN_CORE));
    }
    out
}
