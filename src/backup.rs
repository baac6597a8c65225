//! `vesper backup` and `vesper restore`: a dated folder holding the registry (copied through
//! SQLite's online backup API, so a running backend keeps serving and the copy is one consistent
//! point), the OTA tree and the configuration, with a manifest of SHA-256 sums that restore checks
//! before it touches anything. Restore refuses while a backend holds the data folder.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use vesper_store::{DB_FILE, DataLock, LockError, Registry, RegistryError};

/// The manifest: `<sha256>  <path>` per regular file, as `sha256sum -c` reads it.
pub const MANIFEST: &str = "MANIFEST.sha256";
/// Symbolic links of the OTA tree (`latest -> v1.2.0`), one `path -> target` per line.
pub const SYMLINKS: &str = "SYMLINKS";

/// Why a backup or a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no registry in {0} (is --data-dir the backend's data folder?)")]
    NoRegistry(PathBuf),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0} is not a vesper backup (no {MANIFEST})")]
    NotABackup(PathBuf),
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error(
        "{0} already holds a registry; pass --force to replace it (the current one is kept beside it as *.before-restore-*)"
    )]
    Exists(PathBuf),
    #[error(
        "{path} -> {target} is not a link of the OTA layout (latest -> vX.Y.Z, latest.bin, latest.json, vX.Y.Z.bin of the same board): nothing was restored"
    )]
    ForeignLink { path: String, target: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub folder: PathBuf,
    pub files: usize,
    pub bytes: u64,
    pub devices: i64,
    pub batches: i64,
}

/// Where a backend's data lives.
#[derive(Debug, Clone)]
pub struct Sources {
    pub data_dir: PathBuf,
    pub ota_root: PathBuf,
    /// Configuration files to keep, as (file, path inside `config/`).
    pub config: Vec<(PathBuf, PathBuf)>,
}

/// Writes `DEST/vesper-backup-YYYYMMDDTHHMMSSZ/`: `registry.sqlite3`, `ota/`, `config/`, the
/// manifest. Safe while `vesper serve` runs on the data folder.
pub fn backup(sources: &Sources, dest: &Path) -> Result<BackupReport, BackupError> {
    let live = sources.data_dir.join(DB_FILE);
    if !live.exists() {
        return Err(BackupError::NoRegistry(sources.data_dir.clone()));
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let folder = dest.join(format!("vesper-backup-{stamp}"));
    // A backup holds the registry (customers' addresses) and the config (a token, maybe): the
    // owner's alone whatever the umask.
    crate::files::create_private_dir(&folder).map_err(io(&folder))?;
    Registry::open(&sources.data_dir)?.backup_to(&folder.join(DB_FILE))?;
    let mut links = Vec::new();
    if sources.ota_root.exists() {
        copy_tree(
            &sources.ota_root,
            &folder.join("ota"),
            Path::new("ota"),
            &mut links,
        )?;
    }
    for (file, inside) in &sources.config {
        let target = folder.join("config").join(inside);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::copy(file, &target).map_err(io(file))?;
        crate::files::make_private(&target).map_err(io(&target))?;
    }
    crate::files::write_private(&folder.join(SYMLINKS), links.join("").as_bytes())
        .map_err(io(&folder))?;
    let (files, bytes) = write_manifest(&folder)?;
    let (integrity, devices, batches) = vesper_store::inspect(&folder.join(DB_FILE))?;
    if integrity != "ok" {
        return Err(BackupError::Damaged(format!(
            "the registry copy fails integrity_check: {integrity}"
        )));
    }
    Ok(BackupReport {
        folder,
        files,
        bytes,
        devices,
        batches,
    })
}

/// Copies a tree, keeping symbolic links as links (listed in `links` for the manifest).
fn copy_tree(
    from: &Path,
    to: &Path,
    shown: &Path,
    links: &mut Vec<String>,
) -> Result<(), BackupError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .map_err(io(from))?
        .collect::<Result<_, _>>()
        .map_err(io(from))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let name = shown.join(entry.file_name());
        let kind = entry.file_type().map_err(io(&source))?;
        if kind.is_symlink() {
            let points_to = std::fs::read_link(&source).map_err(io(&source))?;
            check_link(&name, &points_to)?;
            std::os::unix::fs::symlink(&points_to, &target).map_err(io(&target))?;
            links.push(format!("{} -> {}\n", name.display(), points_to.display()));
        } else if kind.is_dir() {
            copy_tree(&source, &target, &name, links)?;
        } else {
            std::fs::copy(&source, &target).map_err(io(&source))?;
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, total))
}

/// Every entry below `folder/inside` that is not a folder (folders are walked, links are not
/// followed), with its path relative to `folder` and its type.
fn visit_below(
    folder: &Path,
    inside: &Path,
    visit: &mut impl FnMut(PathBuf, std::fs::FileType, &Path) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let dir = folder.join(inside);
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let kind = entry.file_type().map_err(io(&dir))?;
        let path = inside.join(entry.file_name());
        if kind.is_dir() {
            visit_below(folder, &path, visit)?;
        } else {
            visit(path, kind, &entry.path())?;
        }
    }
    Ok(())
}

/// Every regular file under `folder` (not links, not the manifest), as relative paths, sorted.
fn regular_files(folder: &Path, inside: &Path, out: &mut Vec<PathBuf>) -> Result<(), BackupError> {
    visit_below(folder, inside, &mut |path, kind, _| {
        if kind.is_file() && path != Path::new(MANIFEST) {
            out.push(path);
        }
        Ok(())
    })?;
    out.sort();
    Ok(())
}

/// A link is kept only where the OTA tree's layout puts it: `ota/{board}/{name}` with a target
/// the release writer makes (`crate::firmware::layout_link`), inside the same board's folder.
fn check_link(shown: &Path, target: &Path) -> Result<(), BackupError> {
    let foreign = || BackupError::ForeignLink {
        path: shown.display().to_string(),
        target: target.display().to_string(),
    };
    let parts: Vec<&str> = shown.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        ["ota", board, name]
            if !board.starts_with('.') && crate::firmware::layout_link(name, target) =>
        {
            Ok(())
        }
        _ => Err(foreign()),
    }
}

/// Every link of a backup is one `SYMLINKS` lists (a file the manifest covers), with the same
/// target, of the OTA layout, pointing at what the backup holds: checked before a byte is
/// restored.
fn verify_links(folder: &Path) -> Result<(), BackupError> {
    let listed_text = std::fs::read_to_string(folder.join(SYMLINKS)).unwrap_or_default();
    let mut listed: Vec<(PathBuf, PathBuf)> = Vec::new();
    for line in listed_text.lines() {
        let (path, target) = line.split_once(" -> ").ok_or_else(|| {
            BackupError::Damaged(format!("{SYMLINKS}: `{line}` is not `<path> -> <target>`"))
        })?;
        listed.push((PathBuf::from(path), PathBuf::from(target)));
    }
    let mut found = Vec::new();
    links_below(folder, Path::new(""), &mut found)?;
    for (path, target) in &found {
        check_link(path, target)?;
        if !listed.contains(&(path.clone(), target.clone())) {
            return Err(BackupError::Damaged(format!(
                "the link {} -> {} is not in {SYMLINKS}",
                path.display(),
                target.display()
            )));
        }
        let resolved = folder
            .join(path.parent().unwrap_or(Path::new("")))
            .join(target);
        if !resolved.exists() {
            return Err(BackupError::Damaged(format!(
                "the link {} -> {} points at nothing in the backup",
                path.display(),
                target.display()
            )));
        }
    }
    if let Some((path, _)) = listed.iter().find(|l| !found.contains(l)) {
        return Err(BackupError::Damaged(format!(
            "{} is missing",
            path.display()
        )));
    }
    Ok(())
}

/// Every symbolic link below `folder/inside` (not followed), as (path, target).
fn links_below(
    folder: &Path,
    inside: &Path,
    out: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), BackupError> {
    visit_below(folder, inside, &mut |path, kind, full| {
        if kind.is_symlink() {
            out.push((path, std::fs::read_link(full).map_err(io(full))?));
        }
        Ok(())
    })
}

fn write_manifest(folder: &Path) -> Result<(usize, u64), BackupError> {
    let mut files = Vec::new();
    regular_files(folder, Path::new(""), &mut files)?;
    let mut text = String::new();
    let mut bytes = 0;
    for file in &files {
        let (hex, size) = sha256_file(&folder.join(file))?;
        text.push_str(&format!("{hex}  {}\n", file.display()));
        bytes += size;
    }
    let manifest = folder.join(MANIFEST);
    crate::files::write_private(&manifest, text.as_bytes()).map_err(io(&manifest))?;
    Ok((files.len(), bytes))
}

/// Checks every file against the manifest (and that no file was added); the number of files.
pub fn verify(folder: &Path) -> Result<usize, BackupError> {
    let manifest = folder.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest)
        .map_err(|_| BackupError::NotABackup(folder.to_owned()))?;
    let mut listed = Vec::new();
    for line in text.lines() {
        let (hex, file) = line.split_once("  ").ok_or_else(|| {
            BackupError::Damaged(format!("{MANIFEST}: `{line}` is not `<sha256>  <file>`"))
        })?;
        let path = folder.join(file);
        if !path.is_file() {
            return Err(BackupError::Damaged(format!("{file} is missing")));
        }
        if sha256_file(&path)?.0 != hex {
            return Err(BackupError::Damaged(format!(
                "{file} does not match its SHA-256 in {MANIFEST}"
            )));
        }
        listed.push(PathBuf::from(file));
    }
    let mut present = Vec::new();
    regular_files(folder, Path::new(""), &mut present)?;
    listed.sort();
    if let Some(extra) = present.iter().find(|p| !listed.contains(p)) {
        return Err(BackupError::Damaged(format!(
            "{} is not in {MANIFEST}",
            extra.display()
        )));
    }
    verify_links(folder)?;
    Ok(listed.len())
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    pub devices: i64,
    pub batches: i64,
    /// Where the registry and OTA tree that were replaced now are.
    pub kept: Vec<PathBuf>,
}

/// Puts a backup's registry and OTA tree in place. Refuses a damaged backup, a data folder a
/// backend holds, and (without `force`) a data folder that already has a registry.
pub fn restore(
    folder: &Path,
    data_dir: &Path,
    ota_root: &Path,
    force: bool,
) -> Result<RestoreReport, BackupError> {
    verify(folder)?;
    let copy = folder.join(DB_FILE);
    let (integrity, devices, batches) = vesper_store::inspect(&copy)?;
    if integrity != "ok" {
        return Err(BackupError::Damaged(format!(
            "the registry fails integrity_check: {integrity}"
        )));
    }
    let _lock = DataLock::acquire(data_dir)?;
    let live = data_dir.join(DB_FILE);
    if live.exists() && !force {
        return Err(BackupError::Exists(data_dir.to_owned()));
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut kept = Vec::new();
    let staged = data_dir.join(format!("{DB_FILE}.restoring"));
    std::fs::copy(&copy, &staged).map_err(io(&staged))?;
    std::fs::File::open(&staged)
        .and_then(|f| f.sync_all())
        .map_err(io(&staged))?;
    // The old database's WAL must never meet the new file: move all three aside together.
    for suffix in ["", "-wal", "-shm"] {
        let old = data_dir.join(format!("{DB_FILE}{suffix}"));
        if old.exists() {
            let aside = data_dir.join(format!("{DB_FILE}.before-restore-{stamp}{suffix}"));
            std::fs::rename(&old, &aside).map_err(io(&old))?;
            kept.push(aside);
        }
    }
    std::fs::rename(&staged, &live).map_err(io(&live))?;
    let ota_copy = folder.join("ota");
    if ota_copy.exists() {
        if ota_root.exists() {
            let aside = ota_root.with_file_name(format!(
                "{}.before-restore-{stamp}",
                ota_root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "ota".into())
            ));
            std::fs::rename(ota_root, &aside).map_err(io(ota_root))?;
            kept.push(aside);
        }
        copy_tree(&ota_copy, ota_root, Path::new("ota"), &mut Vec::new())?;
    }
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io(data_dir))?;
    Ok(RestoreReport {
        devices,
        batches,
        kept,
    })
}
