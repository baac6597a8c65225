//! `vesper backup DEST` and `vesper restore SRC`: the registry, the OTA tree and the
//! configuration, while serving; restore only onto a data folder no backend holds.

use std::path::{Path, PathBuf};

use clap::Args;

use vesper::backup::{self, Sources};

use super::Outcome;
use super::serve::DataDir;

#[derive(Args)]
#[command(after_help = "\
Makes DEST/vesper-backup-YYYYMMDDTHHMMSSZ/ with registry.sqlite3 (SQLite's online backup: the
backend keeps serving, the copy is one consistent point), ota/ (links kept), config/ and
MANIFEST.sha256 (check it with `sha256sum -c MANIFEST.sha256` inside the folder).
Restore with `vesper restore FOLDER` after stopping the backend.")]
pub struct BackupArgs {
    /// Folder to write the dated backup folder into.
    dest: PathBuf,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Args)]
#[command(after_help = "\
Checks every file against MANIFEST.sha256 and the registry's integrity first, refuses while a
vesper serve runs on the data folder, and keeps what it replaces beside it (*.before-restore-*).
The configuration is not copied back: it is in FOLDER/config/.")]
pub struct RestoreArgs {
    /// A folder written by `vesper backup`.
    src: PathBuf,
    #[command(flatten)]
    data: DataDir,
    /// Replace the registry the data folder already has.
    #[arg(long)]
    force: bool,
}

/// The data folder, its OTA root and the configuration files, from the flag and the config.
fn sources(data: &DataDir, config: Option<&Path>, command: &str) -> anyhow::Result<Sources> {
    let data_dir = data.sqlite_folder(config, command)?;
    let found = vesper::config::discover(config).ok();
    let ota_root = match &found {
        Some(c) if c.serve.ota_root != c.serve.data_dir.join("ota") => c.serve.ota_root.clone(),
        _ => data_dir.join("ota"),
    };
    let mut files = Vec::new();
    if let Some(c) = &found {
        let base = c.path.parent().unwrap_or(Path::new(""));
        files.push((
            c.path.clone(),
            PathBuf::from(c.path.file_name().unwrap_or_default()),
        ));
        for board in &c.boards {
            let inside = board
                .partition_table
                .strip_prefix(base)
                .unwrap_or(&board.partition_table);
            let inside = if inside.is_absolute() {
                PathBuf::from(inside.file_name().unwrap_or_default())
            } else {
                inside.to_owned()
            };
            if !files.iter().any(|(_, i)| *i == inside) {
                files.push((board.partition_table.clone(), inside));
            }
        }
    }
    Ok(Sources {
        data_dir,
        ota_root,
        config: files,
    })
}

pub fn backup(args: BackupArgs, config: Option<&Path>) -> anyhow::Result<Outcome> {
    let sources = sources(&args.data, config, "vesper backup")?;
    let report = backup::backup(&sources, &args.dest)?;
    println!(
        "backed up {} devices in {} batches, {} files ({} KB) into {}",
        report.devices,
        report.batches,
        report.files,
        report.bytes / 1000,
        report.folder.display()
    );
    Ok(Outcome::Success)
}

pub fn restore(args: RestoreArgs, config: Option<&Path>) -> anyhow::Result<Outcome> {
    let sources = sources(&args.data, config, "vesper restore")?;
    let files = backup::verify(&args.src)?;
    println!(
        "{}: {files} files match {}",
        args.src.display(),
        backup::MANIFEST
    );
    let report = backup::restore(&args.src, &sources.data_dir, &sources.ota_root, args.force)?;
    println!(
        "restored {} devices in {} batches into {}; integrity_check ok",
        report.devices,
        report.batches,
        sources.data_dir.display()
    );
    for kept in &report.kept {
        println!("kept the replaced {}", kept.display());
    }
    Ok(Outcome::Success)
}
