//! The station's boards from the firmware's `platformio.ini`: `vesper boards import` merges its
//! ESP32 environments into config.toml's `[[boards]]` (shown as a diff, written only when asked),
//! and `vesper boards doc` writes FIRMWARE_VARIANTS.md from the same file.

use std::path::{Path, PathBuf};

use vesper_core::partitions::PartitionTable;
use vesper_core::platformio::{Environment, PlatformioError, Project};

/// The document's file name, written beside platformio.ini.
pub const VARIANTS_FILE: &str = "FIRMWARE_VARIANTS.md";

#[derive(Debug, thiserror::Error)]
pub enum BoardsError {
    #[error(transparent)]
    Platformio(#[from] PlatformioError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("`boards` in {0} is not an array of tables ([[boards]])")]
    BoardsShape(PathBuf),
    #[error("[env:{env}]: partition table {path}: {message}")]
    Table {
        env: String,
        path: PathBuf,
        message: String,
    },
    #[error("the imported configuration does not load: {0}")]
    Invalid(String),
}

/// Reads a `platformio.ini`.
pub fn read_project(path: &Path) -> Result<Project, BoardsError> {
    let text = std::fs::read_to_string(path).map_err(|source| BoardsError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(Project::parse(&text, path)?)
}

/// The configuration text with the project's environments merged in.
#[derive(Debug)]
pub struct Import {
    pub before: String,
    pub after: String,
    /// Boards of the configuration that platformio.ini does not have (kept as they are).
    pub kept: Vec<String>,
    /// Environments that are not ESP32 ones (name, platform), e.g. `native`.
    pub skipped: Vec<(String, String)>,
}

impl Import {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }

    /// A unified diff of the configuration, `config` naming the file.
    pub fn diff(&self, config: &Path) -> String {
        let name = config.display().to_string();
        similar::TextDiff::from_lines(&self.before, &self.after)
            .unified_diff()
            .context_radius(3)
            .header(&name, &format!("{name} (imported)"))
            .to_string()
    }
}

/// Merges the ESP32 environments of `ini` into the `[[boards]]` of the configuration at
/// `config`: a board of the same name gets the environment's name, hardware, chip, flash and
/// partition table (its other keys, such as `nvs_extra`, stay); a new one is appended. Comments
/// and every other table stay as written. The result is checked to load.
pub fn import(ini: &Path, config: &Path) -> Result<Import, BoardsError> {
    let project = read_project(ini)?;
    let before = std::fs::read_to_string(config).map_err(|source| BoardsError::Read {
        path: config.to_owned(),
        source,
    })?;
    let mut doc: toml_edit::DocumentMut =
        before
            .parse()
            .map_err(|e: toml_edit::TomlError| BoardsError::Toml {
                path: config.to_owned(),
                message: e.to_string(),
            })?;
    let base = config.parent().unwrap_or(Path::new(""));
    let boards = doc
        .entry("boards")
        .or_insert(toml_edit::Item::ArrayOfTables(Default::default()))
        .as_array_of_tables_mut()
        .ok_or_else(|| BoardsError::BoardsShape(config.to_owned()))?;
    for env in &project.environments {
        let found = boards
            .iter()
            .position(|t| t.get("name").and_then(|n| n.as_str()) == Some(env.name.as_str()));
        let table = match found {
            Some(i) => boards.get_mut(i).expect("found above"),
            None => {
                boards.push(toml_edit::Table::new());
                boards.get_mut(boards.len() - 1).expect("just pushed")
            }
        };
        set_board(table, env, &relative_to(base, &env.partitions_path));
    }
    let kept = boards
        .iter()
        .filter_map(|t| t.get("name").and_then(|n| n.as_str()))
        .filter(|name| !project.environments.iter().any(|e| e.name == *name))
        .map(str::to_owned)
        .collect();
    let after = doc.to_string();
    crate::config::parse(&after, config).map_err(|e| BoardsError::Invalid(e.to_string()))?;
    Ok(Import {
        before,
        after,
        kept,
        skipped: project.skipped,
    })
}

/// Sets the keys an environment decides, each only when its value differs (so an unchanged
/// board keeps its formatting).
fn set_board(table: &mut toml_edit::Table, env: &Environment, partition_table: &str) {
    let values = [
        ("name", env.name.clone()),
        ("hw_type", env.hw_type.clone()),
        ("hw_version", env.hw_version.clone()),
        ("chip", env.chip.to_string()),
        ("flash_size", env.flash_size.clone()),
        ("flash_mode", env.flash_mode.to_string()),
        ("partition_table", partition_table.to_owned()),
    ];
    for (key, value) in values {
        if table.get(key).and_then(|v| v.as_str()) != Some(value.as_str()) {
            table.insert(key, toml_edit::value(value));
        }
    }
}

/// `path` as the configuration at `base` names it: relative when it can be (links resolved, so
/// firmware/partitions -> ../partitions becomes partitions/...), else absolute.
fn relative_to(base: &Path, path: &Path) -> String {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let base = std::fs::canonicalize(if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    })
    .unwrap_or_else(|_| base.to_owned());
    match real.strip_prefix(&base) {
        Ok(relative) => relative.display().to_string(),
        Err(_) => real.display().to_string(),
    }
}

/// FIRMWARE_VARIANTS.md for the project at `ini`: one row per ESP32 environment, then each
/// environment's flags and partition layout (read from its table).
pub fn variants_doc(ini: &Path) -> Result<String, BoardsError> {
    let project = read_project(ini)?;
    let file = ini.file_name().map_or_else(
        || ini.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let mut out = format!(
        "# Firmware variants\n\n\
         Generated by `vesper boards doc` from `{file}`: edit that file and run it again (a test\n\
         fails when this file is stale). `vesper boards import {file}` brings the same\n\
         environments into the station's configuration.\n\n\
         | Environment | Hardware | Serial numbers | PlatformIO board | Chip | Flash | Mode | Partition table |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for e in &project.environments {
        out.push_str(&format!(
            "| `{}` | {} {} | `PV-YYMDD-{}{}R-XXXXX` | `{}` | {} | {} | {} | `{}` |\n",
            e.name,
            e.hw_type,
            e.hw_version,
            e.hw_type,
            e.hw_version,
            e.board,
            e.chip,
            e.flash_size,
            e.flash_mode,
            e.partitions
        ));
    }
    for e in &project.environments {
        out.push_str(&format!(
            "\n## {}\n\n\
             - Build: `pio run -e {0}`; publish: `vesper firmware publish {0} VERSION --pio .pio/build/{0}`\n\
             - Updates: `/ota/{0}/latest.json`\n\
             - Build flags: `{}`\n",
            e.name, e.build_flags
        ));
        let defines: Vec<String> = e
            .defines
            .iter()
            .map(|(k, v)| format!("`{k}` = `{v}`"))
            .collect();
        out.push_str(&format!("- Defines: {}\n\n", defines.join(", ")));
        out.push_str(&partition_rows(e)?);
    }
    if !project.skipped.is_empty() {
        out.push_str("\nNot boards (no ESP32 platform): ");
        let skipped: Vec<String> = project
            .skipped
            .iter()
            .map(|(name, platform)| format!("`{name}` ({platform})"))
            .collect();
        out.push_str(&skipped.join(", "));
        out.push('\n');
    }
    Ok(out)
}

/// The environment's partition table as a Markdown table.
fn partition_rows(e: &Environment) -> Result<String, BoardsError> {
    let bad = |message: String| BoardsError::Table {
        env: e.name.clone(),
        path: e.partitions_path.clone(),
        message,
    };
    let bytes = std::fs::read(&e.partitions_path).map_err(|err| bad(err.to_string()))?;
    let table = PartitionTable::parse(&bytes, &e.partitions).map_err(|err| bad(err.to_string()))?;
    let mut out =
        "| Partition | Type | Subtype | Offset | Size |\n|---|---|---|---|---|\n".to_owned();
    for p in table.partitions() {
        out.push_str(&format!(
            "| {} | {} | {} | 0x{:x} | 0x{:x} ({} KiB) |\n",
            p.name(),
            p.ty(),
            p.subtype(),
            p.offset(),
            p.size(),
            p.size() / 1024
        ));
    }
    Ok(out)
}
