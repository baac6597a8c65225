//! Firmware releases in the customer's OTA layout, each a flashable bundle.
//!
//! ```text
//! {ota_root}/{board}/v{version}/             one release, written whole before it is visible:
//! {ota_root}/{board}/v{version}/manifest.json   ESP Web Tools manifest of the whole bundle
//! {ota_root}/{board}/v{version}/*.bin        bootloader, partition table, otadata, app
//! {ota_root}/{board}/v{version}/ota.bin      the application image (a hard link to the app part)
//! {ota_root}/{board}/v{version}.bin          -> v{version}/ota.bin (what OTA downloads)
//! {ota_root}/{board}/latest                  -> v{version}: the one pointer to the newest release
//! {ota_root}/{board}/latest.bin              -> latest/ota.bin
//! {ota_root}/{board}/latest.json             -> latest/manifest.json
//! ```
//!
//! A blank chip needs every part, not just the app: a release is checked against the board's
//! partition table when it is published (no overlaps, nothing over the NVS partition, the app in
//! an app partition and within its size), and written atomically. `latest.bin` and
//! `latest.json` both go through the one `latest` symlink, which is swapped with a rename: a
//! crash leaves the old release or the new one whole, never the app of one and the manifest of
//! the other. (NGINX serving the folder follows the links.)

use std::path::{Path, PathBuf};

use vesper_core::firmware::sha256_hex;
pub use vesper_core::firmware::{Build, IMAGE_MAGIC, Manifest, Part, chip_family};
use vesper_core::model::Board;
use vesper_core::partitions::{PartitionTable, Region, TABLE_OFFSET, region};

/// Errors of firmware releases.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("{0}")]
    BadVersion(String),
    #[error(
        "board {board} already has version {version}; versions are never overwritten, publish a new one"
    )]
    Exists { board: String, version: String },
    #[error("board {board} has no release{}", .version.as_ref().map(|v| format!(" {v}")).unwrap_or_default())]
    NoRelease {
        board: String,
        version: Option<String>,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("part `{0}`: {1}")]
    Part(String, String),
    #[error("parts `{0}` (0x{1:x}..0x{2:x}) and `{3}` overlap")]
    Overlap(String, u64, u64, String),
    #[error(
        "a release needs exactly one application part (at an app partition's offset); found {0}"
    )]
    AppCount(usize),
    #[error("manifest {path} is unreadable: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(
        "the app says it is version `{image}` (its esp_app_desc_t), not {release}: boards refuse such an update; build it as {release}"
    )]
    AppVersion { image: String, release: String },
    #[error(
        "the app is project `{image}`, but board {board}'s releases are project `{current}`: is it another board's build?"
    )]
    AppProject {
        image: String,
        board: String,
        current: String,
    },
}

/// A part to publish: a file and where it goes (`None`: inferred from its name).
#[derive(Debug, Clone)]
pub struct PartSpec {
    pub path: PathBuf,
    pub offset: Option<u32>,
}

impl std::str::FromStr for PartSpec {
    type Err = String;
    /// `FILE` or `FILE@OFFSET` (hex `0x1000` or decimal).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.rsplit_once('@') {
            Some((path, offset)) => {
                let offset = vesper_core::partitions::parse_number(offset)
                    .and_then(|o| u32::try_from(o).ok())
                    .ok_or_else(|| format!("`{offset}` is not an offset like 0x10000"))?;
                Ok(Self {
                    path: path.into(),
                    offset: Some(offset),
                })
            }
            None => Ok(Self {
                path: s.into(),
                offset: None,
            }),
        }
    }
}

fn check_version(version: &str) -> Result<(), FirmwareError> {
    match vesper_core::firmware::release_version_problem(version) {
        None => Ok(()),
        Some(problem) => Err(FirmwareError::BadVersion(problem)),
    }
}

/// Whether `name -> target` (in a board's folder) is one of the links this layout makes:
/// `latest -> v{version}`, `latest.bin -> latest/ota.bin`, `latest.json -> latest/manifest.json`
/// and `v{version}.bin -> v{version}/ota.bin`, with a semantic version. A backup restores no
/// other link, and nothing else is served.
pub fn layout_link(name: &str, target: &Path) -> bool {
    let Some(target) = target.to_str() else {
        return false;
    };
    let version_folder = |folder: &str| {
        folder
            .strip_prefix('v')
            .is_some_and(|v| check_version(v).is_ok())
    };
    match name {
        "latest" => version_folder(target),
        "latest.bin" => target == format!("latest/{OTA_FILE}"),
        "latest.json" => target == "latest/manifest.json",
        _ => name.strip_suffix(".bin").is_some_and(|folder| {
            version_folder(folder) && target == format!("{folder}/{OTA_FILE}")
        }),
    }
}

/// Names the release tree gives its own files: a part may not take one.
fn reserved_name(name: &str) -> bool {
    name == "manifest.json" || name == "latest" || name.starts_with("latest.")
}

/// A part read from disk and placed.
struct Placed {
    name: String,
    offset: u32,
    bytes: Vec<u8>,
}

impl Placed {
    fn region(&self) -> Region {
        Region {
            offset: self.offset,
            size: self.bytes.len() as u32,
        }
    }
}

/// Reads and checks the parts of a release against a board; returns them and the app's index.
fn place(board: &Board, specs: &[PartSpec]) -> Result<(Vec<Placed>, usize), FirmwareError> {
    let mut placed = Vec::with_capacity(specs.len());
    for spec in specs {
        let file_name = spec
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let plain = !file_name.is_empty()
            && file_name.len() <= 128
            && file_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !file_name.starts_with('.');
        if !plain {
            return Err(FirmwareError::Part(
                file_name,
                "file names must be letters, digits, `.`, `_` or `-`".into(),
            ));
        }
        if reserved_name(&file_name) {
            return Err(FirmwareError::Part(
                file_name,
                "is a name the release folder uses for itself (manifest.json, latest.*): rename the part".into(),
            ));
        }
        let name = file_name;
        let bytes = std::fs::read(&spec.path).map_err(|source| FirmwareError::Read {
            path: spec.path.clone(),
            source,
        })?;
        if bytes.is_empty() {
            return Err(FirmwareError::Part(name, "is empty".into()));
        }
        let offset = spec
            .offset
            .or_else(|| vesper_core::firmware::offset_by_name(board, &name))
            .ok_or_else(|| {
                FirmwareError::Part(
                    name.clone(),
                    "no offset given and none can be inferred; write FILE@0xOFFSET".into(),
                )
            })?;
        if placed.iter().any(|p: &Placed| p.name == name) {
            return Err(FirmwareError::Part(name, "is given twice".into()));
        }
        placed.push(Placed {
            name,
            offset,
            bytes,
        });
    }
    for (i, a) in placed.iter().enumerate() {
        let ra = a.region();
        if ra.end() > board.flash_size {
            return Err(FirmwareError::Part(
                a.name.clone(),
                format!(
                    "ends at 0x{:x}, beyond the {} MB flash",
                    ra.end(),
                    board.flash_size >> 20
                ),
            ));
        }
        if ra.overlaps(&board.nvs) {
            return Err(FirmwareError::Part(
                a.name.clone(),
                format!(
                    "0x{:x}..0x{:x} overlaps the NVS partition 0x{:x}..0x{:x}, which holds each device's own data",
                    ra.offset,
                    ra.end(),
                    board.nvs.offset,
                    board.nvs.end()
                ),
            ));
        }
        for b in &placed[i + 1..] {
            if ra.overlaps(&b.region()) {
                return Err(FirmwareError::Overlap(
                    a.name.clone(),
                    u64::from(ra.offset),
                    ra.end(),
                    b.name.clone(),
                ));
            }
        }
        if a.offset == TABLE_OFFSET {
            let table = PartitionTable::parse(&a.bytes, &a.name)
                .map_err(|e| FirmwareError::Part(a.name.clone(), e.to_string()))?;
            let nvs = table
                .nvs(&board.nvs_name)
                .map_err(|e| FirmwareError::Part(a.name.clone(), e.to_string()))?;
            if nvs != board.nvs {
                return Err(FirmwareError::Part(
                    a.name.clone(),
                    format!(
                        "puts `{}` at 0x{:x}+0x{:x}, but board {} has it at 0x{:x}+0x{:x}",
                        board.nvs_name,
                        nvs.offset,
                        nvs.size,
                        board.name,
                        board.nvs.offset,
                        board.nvs.size
                    ),
                ));
            }
        }
    }
    let apps: Vec<usize> = placed
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            board
                .table
                .partitions()
                .iter()
                .any(|t| t.ty() == esp_idf_part::Type::App && t.offset() == p.offset)
        })
        .map(|(i, _)| i)
        .collect();
    let [app] = apps[..] else {
        return Err(FirmwareError::AppCount(apps.len()));
    };
    let app_part = &placed[app];
    let partition = board
        .table
        .partitions()
        .iter()
        .find(|t| t.offset() == app_part.offset)
        .map(region)
        .expect("app partition");
    if app_part.bytes[0] != IMAGE_MAGIC {
        return Err(FirmwareError::Part(
            app_part.name.clone(),
            format!(
                "is not an ESP application image (first byte 0x{:02x}, expected 0xE9)",
                app_part.bytes[0]
            ),
        ));
    }
    if app_part.bytes.len() as u64 > u64::from(partition.size) {
        return Err(FirmwareError::Part(
            app_part.name.clone(),
            format!(
                "is {} bytes, larger than its 0x{:x}-byte app partition",
                app_part.bytes.len(),
                partition.size
            ),
        ));
    }
    Ok((placed, app))
}

/// Where each part goes (the offsets given, or inferred from the names as `publish` does),
/// checked against the board's partition table: `(file, offset)` in the order given.
pub fn offsets(board: &Board, specs: &[PartSpec]) -> Result<Vec<(PathBuf, u32)>, FirmwareError> {
    let (placed, _) = place(board, specs)?;
    Ok(specs
        .iter()
        .map(|s| s.path.clone())
        .zip(placed.iter().map(|p| p.offset))
        .collect())
}

/// The folder of one board's releases.
pub fn board_dir(ota_root: &Path, board: &str) -> PathBuf {
    ota_root.join(board)
}

/// Publishes a release: checks the parts, writes the bundle folder atomically (temporary
/// folder + rename), then `v{version}.bin`, `latest.bin` and `latest.json`.
pub fn publish(
    ota_root: &Path,
    board: &Board,
    version: &str,
    specs: &[PartSpec],
) -> Result<Manifest, FirmwareError> {
    check_version(version)?;
    let (placed, app) = place(board, specs)?;
    let dir = board_dir(ota_root, &board.name);
    check_app_identity(&dir, &board.name, version, &placed[app].bytes)?;
    let release = dir.join(format!("v{version}"));
    if release.exists() {
        return Err(FirmwareError::Exists {
            board: board.name.clone(),
            version: version.to_owned(),
        });
    }
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| FirmwareError::Write { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&dir)
        .map_err(write_err(&dir))?;
    let mut parts: Vec<Part> = placed
        .iter()
        .map(|p| Part {
            path: p.name.clone(),
            offset: p.offset,
            size: p.bytes.len() as u64,
            sha256: sha256_hex(&p.bytes),
        })
        .collect();
    parts.sort_by_key(|p| p.offset);
    let manifest = Manifest {
        name: board.name.clone(),
        version: version.to_owned(),
        builds: vec![Build {
            chip_family: chip_family(board.chip).to_owned(),
            parts,
        }],
        app: placed[app].name.clone(),
        size: placed[app].bytes.len() as u64,
        sha256: sha256_hex(&placed[app].bytes),
        url: format!("v{version}.bin"),
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    for p in &placed {
        let path = staging.path().join(&p.name);
        write_atomic(&path, &p.bytes).map_err(write_err(&path))?;
    }
    let manifest_path = staging.path().join("manifest.json");
    write_atomic(&manifest_path, &manifest_json).map_err(write_err(&manifest_path))?;
    let app_name = &placed[app].name;
    if let Some(p) = placed
        .iter()
        .find(|p| p.name == OTA_FILE && p.name != *app_name)
    {
        return Err(FirmwareError::Part(
            p.name.clone(),
            "is the name of the release's application image; only the app part may have it".into(),
        ));
    }
    let ota_link = staging.path().join(OTA_FILE);
    if app_name != OTA_FILE {
        std::fs::hard_link(staging.path().join(app_name), &ota_link)
            .map_err(write_err(&ota_link))?;
    }
    sync_dir(staging.path()).map_err(write_err(staging.path()))?;
    let staged = staging.keep();
    if let Err(source) = std::fs::rename(&staged, &release) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(FirmwareError::Write {
            path: release,
            source,
        });
    }
    let folder = format!("v{version}");
    let links = [
        (format!("v{version}.bin"), format!("{folder}/{OTA_FILE}")),
        ("latest.bin".to_owned(), format!("latest/{OTA_FILE}")),
        ("latest.json".to_owned(), "latest/manifest.json".to_owned()),
        // Last: the one pointer that makes the release the latest.
        ("latest".to_owned(), folder.clone()),
    ];
    // Whole or nothing: a link that cannot be made takes the release back out, so the same
    // version can be published again once the cause is fixed.
    let own_link = dir.join(format!("v{version}.bin"));
    for (name, target) in links {
        let path = dir.join(name);
        if let Err(source) = swap_symlink(&dir, &path, Path::new(&target)) {
            if std::fs::read_link(&own_link)
                .is_ok_and(|t| t == Path::new(&format!("{folder}/{OTA_FILE}")))
            {
                let _ = std::fs::remove_file(&own_link);
            }
            let _ = std::fs::remove_dir_all(&release);
            return Err(FirmwareError::Write { path, source });
        }
    }
    sync_dir(&dir).map_err(write_err(&dir))?;
    Ok(manifest)
}

/// The bytes of an app image that hold its `esp_app_desc_t` (image and segment header, then 256).
const APP_HEAD: usize = 32 + 256;

/// A board checks an update's own `esp_app_desc_t` before it switches to it (DESIGN.md section
/// 3): an app whose description names another version, or another project than the board's
/// releases so far, would be downloaded by every board and refused by each. Refused here first.
fn check_app_identity(
    board_dir: &Path,
    board: &str,
    version: &str,
    app: &[u8],
) -> Result<(), FirmwareError> {
    let Some(described) = vesper_core::firmware::app_description(app) else {
        return Ok(());
    };
    if described.version != version {
        return Err(FirmwareError::AppVersion {
            image: described.version,
            release: version.to_owned(),
        });
    }
    // Only the head of the current app holds its description (not the whole image).
    let latest = std::fs::File::open(board_dir.join("latest").join(OTA_FILE))
        .ok()
        .map(|file| {
            let mut head = Vec::with_capacity(APP_HEAD);
            let _ = std::io::Read::read_to_end(
                &mut std::io::Read::take(file, APP_HEAD as u64),
                &mut head,
            );
            head
        });
    if let Some(current) = latest
        .as_deref()
        .and_then(vesper_core::firmware::app_description)
        && current.project_name != described.project_name
    {
        return Err(FirmwareError::AppProject {
            image: described.project_name,
            board: board.to_owned(),
            current: current.project_name,
        });
    }
    Ok(())
}

/// Writes one file of a staged release: a temporary file, synced, renamed into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.commit()
}

/// The application image's name inside a release folder (what OTA serves).
pub const OTA_FILE: &str = "ota.bin";

/// Points `link` at `target` atomically: a new symlink under a temporary name, renamed over
/// whatever `link` was (a file of an older layout, or a link).
fn swap_symlink(dir: &Path, link: &Path, target: &Path) -> std::io::Result<()> {
    let temp = dir.join(format!(
        ".link-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    #[cfg(unix)]
    std::os::unix::fs::symlink(target, &temp)?;
    #[cfg(not(unix))]
    return Err(std::io::Error::other("releases need a Unix file system"));
    std::fs::rename(&temp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Flushes a folder's entries (new names, renames) to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The manifest of a release (`None`: the latest one).
pub fn manifest(
    ota_root: &Path,
    board: &str,
    version: Option<&str>,
) -> Result<Manifest, FirmwareError> {
    if let Some(v) = version {
        check_version(v)?;
    }
    let dir = board_dir(ota_root, board);
    let path = match version {
        Some(v) => dir.join(format!("v{v}")).join("manifest.json"),
        None => dir.join("latest.json"),
    };
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FirmwareError::NoRelease {
                board: board.to_owned(),
                version: version.map(str::to_owned),
            });
        }
        Err(source) => return Err(FirmwareError::Read { path, source }),
    };
    serde_json::from_slice(&text).map_err(|e| FirmwareError::Manifest {
        path,
        message: e.to_string(),
    })
}

/// Every published version of a board, oldest first by name.
pub fn versions(ota_root: &Path, board: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(board_dir(ota_root, board))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('v'))
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}
