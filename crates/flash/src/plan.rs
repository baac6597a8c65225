//! A flash plan: every byte that goes to one board, checked before anything is sent.
//!
//! A blank chip needs the whole bundle (bootloader, partition table, otadata, app) plus the
//! device's own NVS image at the `nvs` offset of the board's partition table.

use std::path::{Path, PathBuf};

use vesper_core::firmware::{self, BundleManifest};
use vesper_core::model::Board;
use vesper_core::partitions::Region;

/// One region to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPart {
    /// Shown in progress, e.g. `bootloader.bin` or `nvs`.
    pub name: String,
    pub offset: u32,
    pub data: Vec<u8>,
}

impl PlannedPart {
    pub fn region(&self) -> Region {
        Region {
            offset: self.offset,
            size: self.data.len() as u32,
        }
    }
}

/// Everything one board receives.
#[derive(Debug, Clone)]
pub struct FlashPlan {
    pub parts: Vec<PlannedPart>,
    pub board: String,
    pub firmware_version: String,
}

/// Why a plan cannot be flashed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read the bundle: {0}")]
    Bundle(String),
    #[error("bundle part `{name}`: {reason}")]
    Part { name: String, reason: String },
    #[error("the bundle is for {bundle}, but board {board} has an {chip} chip")]
    ChipFamily {
        bundle: String,
        board: String,
        chip: String,
    },
    #[error("the NVS image is {len} bytes, but partition `nvs` of board {board} is {size} bytes")]
    NvsSize {
        len: usize,
        size: u32,
        board: String,
    },
    #[error("parts `{0}` and `{1}` overlap")]
    Overlap(String, String),
    #[error("part `{name}` ends at 0x{end:x}, beyond the {flash_mb} MB flash")]
    BeyondFlash {
        name: String,
        end: u64,
        flash_mb: u64,
    },
    #[error("part `{0}` overwrites the NVS partition, which holds the device's own data")]
    OverNvs(String),
    #[error(
        "the manifest has no part at an app partition of board {board} ({apps}): which part is the application?"
    )]
    NoApp { board: String, apps: String },
    #[error("the bundle is a release of {bundle}, not of board {board}")]
    WrongBoard { bundle: String, board: String },
    #[error(
        "the bundle's partition table puts `nvs` at 0x{offset:x}+0x{size:x}, but board {board} has it at 0x{board_offset:x}+0x{board_size:x}"
    )]
    TableMismatch {
        offset: u32,
        size: u32,
        board: String,
        board_offset: u32,
        board_size: u32,
    },
}

/// A bundle read from disk: its manifest and the folder its parts are in. The manifest is ours
/// (`vesper firmware publish`) or a plain ESP Web Tools manifest from another tool.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: BundleManifest,
    pub dir: PathBuf,
    /// Parts kept outside `dir` (a PlatformIO build's boot_app0.bin in the framework package).
    pub elsewhere: Vec<(String, PathBuf)>,
}

impl Bundle {
    /// Reads a bundle from a release folder (with `manifest.json`) or a manifest file: ours, or a
    /// plain ESP Web Tools manifest (parts with `path` and `offset`; `size` and `sha256` are
    /// checked when present).
    pub fn load(path: &Path) -> Result<Bundle, PlanError> {
        let manifest_path = if path.is_dir() {
            path.join("manifest.json")
        } else {
            path.to_owned()
        };
        let text = std::fs::read(&manifest_path)
            .map_err(|e| PlanError::Bundle(format!("{}: {e}", manifest_path.display())))?;
        let manifest: BundleManifest = serde_json::from_slice(&text).map_err(|e| {
            PlanError::Bundle(format!(
                "{}: not a bundle manifest: {e}",
                manifest_path.display()
            ))
        })?;
        let dir = manifest_path.parent().unwrap_or(Path::new(".")).to_owned();
        Ok(Bundle {
            manifest,
            dir,
            elsewhere: Vec::new(),
        })
    }

    /// Reads a bundle for `board`: a release folder or manifest as [`Bundle::load`] does, or a
    /// PlatformIO build folder (`.pio/build/ENV`), its parts placed by the board's table.
    pub fn load_for(path: &Path, board: &Board) -> Result<Bundle, PlanError> {
        if !(path.is_dir() && crate::pio::is_build_dir(path)) {
            return Self::load(path);
        }
        let parts =
            crate::pio::parts(board, path, None).map_err(|e| PlanError::Bundle(e.to_string()))?;
        let manifest = BundleManifest {
            name: Some(board.name.clone()),
            version: None,
            builds: vec![firmware::BundleBuild {
                chip_family: Some(firmware::chip_family(board.chip).to_owned()),
                parts: parts
                    .iter()
                    .map(|p| firmware::BundlePart {
                        path: p.name.to_owned(),
                        offset: firmware::Offset(p.offset),
                        size: None,
                        sha256: None,
                    })
                    .collect(),
            }],
            app: None,
        };
        Ok(Bundle {
            manifest,
            dir: path.to_owned(),
            elsewhere: parts
                .into_iter()
                .filter(|p| p.path.parent() != Some(path))
                .map(|p| (p.name.to_owned(), p.path))
                .collect(),
        })
    }

    /// The build for `board`'s chip: the one whose `chipFamily` matches (the only one of our
    /// bundles).
    fn build(&self, board: &Board) -> Result<&firmware::BundleBuild, PlanError> {
        if self.manifest.builds.is_empty() {
            return Err(PlanError::Bundle("the manifest has no build".into()));
        }
        self.manifest.build_for(board.chip).ok_or_else(|| {
            let families: Vec<&str> = self
                .manifest
                .builds
                .iter()
                .map(|b| b.chip_family.as_deref().unwrap_or("no chipFamily"))
                .collect();
            PlanError::ChipFamily {
                bundle: families.join(", "),
                board: board.name.clone(),
                chip: board.chip.to_string(),
            }
        })
    }

    /// The parts' bytes for `board`, each checked against its size and SHA-256 when the
    /// manifest gives them.
    pub fn parts(&self, board: &Board) -> Result<Vec<PlannedPart>, PlanError> {
        self.build(board)?
            .parts
            .iter()
            .map(|p| {
                let bad = |reason: String| PlanError::Part {
                    name: p.path.clone(),
                    reason,
                };
                if p.path.contains('/') || p.path.contains("..") {
                    return Err(bad("paths must be plain file names".into()));
                }
                let file = match self.elsewhere.iter().find(|(name, _)| *name == p.path) {
                    Some((_, path)) => path.clone(),
                    None => self.dir.join(&p.path),
                };
                let data = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
                if let Some(size) = p.size.filter(|&size| size != data.len() as u64) {
                    return Err(bad(format!(
                        "is {} bytes, the manifest says {size}",
                        data.len(),
                    )));
                }
                let digest = firmware::sha256_hex(&data);
                if p.sha256
                    .as_deref()
                    .is_some_and(|sum| !sum.is_empty() && !sum.eq_ignore_ascii_case(&digest))
                {
                    return Err(bad(
                        "SHA-256 does not match the manifest (corrupt download?)".into(),
                    ));
                }
                Ok(PlannedPart {
                    name: p.path.clone(),
                    offset: p.offset.0,
                    data,
                })
            })
            .collect()
    }
}

impl FlashPlan {
    /// The bundle plus this device's NVS image, checked against the board.
    pub fn new(board: &Board, bundle: &Bundle, nvs: Vec<u8>) -> Result<FlashPlan, PlanError> {
        // Our bundles name their board; a plain manifest's name is a product label.
        if let (Some(_), Some(name)) = (&bundle.manifest.app, &bundle.manifest.name)
            && name != &board.name
        {
            return Err(PlanError::WrongBoard {
                bundle: name.clone(),
                board: board.name.clone(),
            });
        }
        if nvs.len() != board.nvs.size as usize {
            return Err(PlanError::NvsSize {
                len: nvs.len(),
                size: board.nvs.size,
                board: board.name.clone(),
            });
        }
        let mut parts = bundle.parts(board)?;
        let apps = board.table.apps();
        if bundle.manifest.app.is_none()
            && !parts
                .iter()
                .any(|p| apps.iter().any(|a| a.offset == p.offset))
        {
            return Err(PlanError::NoApp {
                board: board.name.clone(),
                apps: apps
                    .iter()
                    .map(|a| format!("0x{:x}", a.offset))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some(table) = parts
            .iter()
            .find(|p| p.offset == vesper_core::partitions::TABLE_OFFSET)
        {
            let bad = |reason: String| PlanError::Part {
                name: table.name.clone(),
                reason,
            };
            let parsed = vesper_core::partitions::PartitionTable::parse(&table.data, &table.name)
                .map_err(|e| bad(e.to_string()))?;
            let region = parsed
                .nvs(&board.nvs_name)
                .map_err(|e| bad(e.to_string()))?;
            if region != board.nvs {
                return Err(PlanError::TableMismatch {
                    offset: region.offset,
                    size: region.size,
                    board: board.name.clone(),
                    board_offset: board.nvs.offset,
                    board_size: board.nvs.size,
                });
            }
        }
        for p in &parts {
            if p.region().overlaps(&board.nvs) {
                return Err(PlanError::OverNvs(p.name.clone()));
            }
        }
        // A plain manifest may name no version: the app image's own description does.
        let firmware_version = match &bundle.manifest.version {
            Some(version) => version.clone(),
            None => parts
                .iter()
                .find(|p| apps.iter().any(|a| a.offset == p.offset))
                .and_then(|p| firmware::app_version(&p.data))
                .unwrap_or_else(|| "unknown".into()),
        };
        parts.push(PlannedPart {
            name: "nvs".into(),
            offset: board.nvs.offset,
            data: nvs,
        });
        parts.sort_by_key(|p| p.offset);
        for (i, a) in parts.iter().enumerate() {
            if a.region().end() > board.flash_size {
                return Err(PlanError::BeyondFlash {
                    name: a.name.clone(),
                    end: a.region().end(),
                    flash_mb: board.flash_size >> 20,
                });
            }
            if let Some(b) = parts[i + 1..]
                .iter()
                .find(|b| a.region().overlaps(&b.region()))
            {
                return Err(PlanError::Overlap(a.name.clone(), b.name.clone()));
            }
        }
        Ok(FlashPlan {
            parts,
            board: board.name.clone(),
            firmware_version,
        })
    }

    /// Bytes to write in all.
    pub fn total_bytes(&self) -> usize {
        self.parts.iter().map(|p| p.data.len()).sum()
    }

    /// The flash image this plan produces on an erased chip of `size` bytes (for checks).
    pub fn image(&self, size: usize) -> Vec<u8> {
        let mut image = vec![0xFF; size];
        for p in &self.parts {
            image[p.offset as usize..p.offset as usize + p.data.len()].copy_from_slice(&p.data);
        }
        image
    }
}
