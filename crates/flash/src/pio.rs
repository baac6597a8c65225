//! A PlatformIO build folder (`.pio/build/ENV/`) read as a board's parts, so what `pio run` made
//! is published or flashed without naming each file: `bootloader.bin`, `partitions.bin`,
//! `firmware.bin`, and the Arduino framework's `boot_app0.bin` for tables with OTA slots.

use std::path::{Path, PathBuf};

use vesper_core::firmware::offset_by_name;
use vesper_core::model::Board;

/// Where the Arduino-ESP32 framework keeps `boot_app0.bin` inside PlatformIO's core folder.
const BOOT_APP0_IN_CORE: &str =
    "packages/framework-arduinoespressif32/tools/partitions/boot_app0.bin";

/// One file of a build and where it goes on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PioPart {
    /// The name in flash order: bootloader.bin, partitions.bin, boot_app0.bin, firmware.bin.
    pub name: &'static str,
    pub path: PathBuf,
    pub offset: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PioError {
    #[error(
        "{file} is not in {dir} (run `pio run -e {board}` first; a PlatformIO build folder has bootloader.bin, partitions.bin and firmware.bin)"
    )]
    Missing {
        file: &'static str,
        dir: PathBuf,
        board: String,
    },
    #[error(
        "board {board}'s partition table has otadata, which needs boot_app0.bin; looked in {looked} (give it with --boot-app0 FILE)"
    )]
    NoBootApp0 { board: String, looked: String },
    #[error("board {0}'s partition table has no app partition")]
    NoApp(String),
}

/// The parts of a PlatformIO build for `board`, placed by the board's partition table.
/// `boot_app0` is used when given; otherwise it is taken from the build folder or PlatformIO's
/// framework package (`$PLATFORMIO_CORE_DIR`, or `~/.platformio`); it is needed only when the
/// table has an `otadata` partition.
pub fn parts(
    board: &Board,
    build_dir: &Path,
    boot_app0: Option<&Path>,
) -> Result<Vec<PioPart>, PioError> {
    let built = |file: &'static str| {
        let path = build_dir.join(file);
        if !path.is_file() {
            return Err(PioError::Missing {
                file,
                dir: build_dir.to_owned(),
                board: board.name.clone(),
            });
        }
        let offset =
            offset_by_name(board, file).ok_or_else(|| PioError::NoApp(board.name.clone()))?;
        Ok(PioPart {
            name: file,
            path,
            offset,
        })
    };
    let mut parts = vec![
        built("bootloader.bin")?,
        built("partitions.bin")?,
        built("firmware.bin")?,
    ];
    if let Some(otadata) = offset_by_name(board, "boot_app0.bin") {
        let candidates = match boot_app0 {
            Some(given) => vec![given.to_owned()],
            None => boot_app0_candidates(build_dir),
        };
        let path = candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| PioError::NoBootApp0 {
                board: board.name.clone(),
                looked: candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        parts.insert(
            2,
            PioPart {
                name: "boot_app0.bin",
                path,
                offset: otadata,
            },
        );
    }
    Ok(parts)
}

/// Is `dir` a PlatformIO build folder (it has the app `pio run` writes, and no manifest)?
pub fn is_build_dir(dir: &Path) -> bool {
    dir.join("firmware.bin").is_file() && !dir.join("manifest.json").exists()
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
