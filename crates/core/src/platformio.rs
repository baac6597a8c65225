//! The firmware team's `platformio.ini` read as boards: one ESP32 environment per hardware
//! variant (the customer's phase 1), so the station's `[[boards]]` and FIRMWARE_VARIANTS.md come
//! from the file the firmware is built with instead of being typed twice.
//!
//! Read as PlatformIO reads it: INI sections with indented continuation lines and `;` comments,
//! `[env]` shared by every environment, `extends = SECTION`, and `${section.key}` interpolation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use configparser::ini::Ini;

use crate::model::{Chip, FlashMode};

/// How deep `${section.key}` may refer to values that refer again.
const MAX_INTERPOLATION: usize = 8;
/// How long one value may grow through its references (a few nested `${...}` that each repeat
/// the one below double at every level: 868 bytes of ini once ran for minutes).
const MAX_VALUE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PlatformioError {
    #[error("{path} is not a PlatformIO project file: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: [env:{env}]: {message}")]
    Env {
        path: PathBuf,
        env: String,
        message: String,
    },
    #[error("{0}: no ESP32 environment ([env:NAME] with platform = espressif32)")]
    NoEsp32(PathBuf),
}

/// One ESP32 environment, with what the station needs to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// PlatformIO's board id, e.g. `esp32dev`.
    pub board: String,
    pub chip: Chip,
    /// From `-DBOARD_TYPE="BC"` and `-DBOARD_VERSION="02"`.
    pub hw_type: String,
    pub hw_version: String,
    /// As written, e.g. `4MB`.
    pub flash_size: String,
    pub flash_mode: FlashMode,
    /// `board_build.partitions` as written, and resolved from the project folder.
    pub partitions: String,
    pub partitions_path: PathBuf,
    /// Every `-DNAME[=VALUE]` of `build_flags`, quotes removed.
    pub defines: BTreeMap<String, String>,
    pub build_flags: String,
}

/// The project file: its ESP32 environments in file order, and the others it skipped (name and
/// platform, e.g. `native`).
#[derive(Debug, Clone)]
pub struct Project {
    pub path: PathBuf,
    pub environments: Vec<Environment>,
    pub skipped: Vec<(String, String)>,
}

impl Project {
    /// Reads `text` as the project file at `path` (partition tables are found beside it).
    pub fn parse(text: &str, path: &Path) -> Result<Project, PlatformioError> {
        let mut ini = Ini::new_cs();
        ini.set_multiline(true);
        ini.set_comment_symbols(&[';', '#']);
        let sections = ini
            .read(text.to_owned())
            .map_err(|message| PlatformioError::Read {
                path: path.to_owned(),
                message,
            })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut project = Project {
            path: path.to_owned(),
            environments: Vec::new(),
            skipped: Vec::new(),
        };
        for section in sections.keys() {
            let Some(name) = section.strip_prefix("env:") else {
                continue;
            };
            let values = Values {
                ini: &sections,
                env: section,
                overflow: std::cell::Cell::new(None),
            };
            let platform = values.get("platform").unwrap_or_default();
            if !platform.starts_with("espressif32") && !platform.contains("platform-espressif32") {
                project.skipped.push((name.to_owned(), platform));
                continue;
            }
            let env =
                environment(name, &values, dir).and_then(|env| match values.overflow.take() {
                    Some(key) => Err(format!(
                        "`{key}` grows past {} KiB through its ${{...}} references",
                        MAX_VALUE_BYTES / 1024
                    )),
                    None => Ok(env),
                });
            let env = env.map_err(|message| PlatformioError::Env {
                path: path.to_owned(),
                env: name.to_owned(),
                message,
            })?;
            project.environments.push(env);
        }
        if project.environments.is_empty() {
            return Err(PlatformioError::NoEsp32(path.to_owned()));
        }
        Ok(project)
    }
}

type Sections = indexmap::IndexMap<String, indexmap::IndexMap<String, Option<String>>>;

/// An environment's values: its own, then its `extends` sections', then `[env]`'s.
struct Values<'a> {
    ini: &'a Sections,
    env: &'a str,
    /// Set when a value outgrew [`MAX_VALUE_BYTES`]; the environment is then refused.
    overflow: std::cell::Cell<Option<String>>,
}

impl Values<'_> {
    fn get(&self, key: &str) -> Option<String> {
        let mut budget = MAX_VALUE_BYTES;
        let value = self.raw(key).map(|v| self.interpolate(&v, 0, &mut budget));
        if budget == 0 {
            self.overflow.set(Some(key.to_owned()));
        }
        value
    }

    fn raw(&self, key: &str) -> Option<String> {
        let own = |section: &str| self.ini.get(section)?.get(key).cloned().flatten();
        if let Some(v) = own(self.env) {
            return Some(v);
        }
        let extends = own_value(self.ini, self.env, "extends").unwrap_or_default();
        for parent in extends.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(v) = own(parent) {
                return Some(v);
            }
        }
        own("env")
    }

    /// Replaces `${section.key}` (and `${env.key}`, `${this.key}`) up to a few levels deep, in
    /// at most `budget` bytes of output all told (0 left: it stopped there).
    fn interpolate(&self, value: &str, depth: usize, budget: &mut usize) -> String {
        let mut out = String::new();
        let mut rest = value;
        let push = |out: &mut String, text: &str, budget: &mut usize| {
            let wanted = text.len().min(*budget);
            let mut n = wanted;
            while !text.is_char_boundary(n) {
                n -= 1;
            }
            out.push_str(&text[..n]);
            *budget -= wanted;
        };
        while let Some(start) = rest.find("${") {
            if *budget == 0 {
                return out;
            }
            push(&mut out, &rest[..start], budget);
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            let reference = &rest[start + 2..start + end];
            let replaced = match reference.split_once('.') {
                _ if depth >= MAX_INTERPOLATION => None,
                Some(("this", key)) => self.raw(key),
                Some((section, key)) => own_value(self.ini, section, key),
                None => None,
            };
            match replaced {
                Some(v) => {
                    let nested = self.interpolate(&v, depth + 1, budget);
                    out.push_str(&nested);
                }
                None => push(&mut out, &rest[start..start + end + 1], budget),
            }
            rest = &rest[start + end + 1..];
        }
        push(&mut out, rest, budget);
        out
    }
}

fn own_value(ini: &Sections, section: &str, key: &str) -> Option<String> {
    ini.get(section)?.get(key).cloned().flatten()
}

fn environment(name: &str, values: &Values, dir: &Path) -> Result<Environment, String> {
    let board = values
        .get("board")
        .ok_or("no `board` (e.g. board = esp32dev)")?;
    let chip = match values.get("board_build.mcu") {
        Some(mcu) => mcu
            .to_ascii_lowercase()
            .parse()
            .map_err(|()| format!("board_build.mcu `{mcu}` is not an ESP32 chip"))?,
        None => chip_of_board(&board).ok_or(format!(
            "PlatformIO board `{board}` is not one this tool knows; add board_build.mcu (e.g. esp32s3)"
        ))?,
    };
    let build_flags = values
        .get("build_flags")
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let defines = defines(&build_flags);
    let define = |key: &str| {
        defines.get(key).cloned().ok_or(format!(
            "build_flags has no -D{key}=\"...\" (the hardware the firmware is for)"
        ))
    };
    let flash_size = values
        .get("board_upload.flash_size")
        .or_else(|| (chip_of_board(&board).is_some()).then(|| "4MB".to_owned()))
        .ok_or("no board_upload.flash_size")?;
    let mode_text = values
        .get("board_build.flash_mode")
        .unwrap_or_else(|| "dio".into());
    let flash_mode: FlashMode = mode_text.parse().map_err(|()| {
        format!("board_build.flash_mode `{mode_text}` is not qio, qout, dio or dout")
    })?;
    let partitions = values
        .get("board_build.partitions")
        .ok_or("no board_build.partitions (the station needs the table to place NVS)")?;
    Ok(Environment {
        name: name.to_owned(),
        board,
        chip,
        hw_type: define("BOARD_TYPE")?,
        hw_version: define("BOARD_VERSION")?,
        flash_size,
        flash_mode,
        partitions_path: dir.join(&partitions),
        partitions,
        defines,
        build_flags,
    })
}

/// `-DNAME=VALUE` and `-D NAME=VALUE` of a flags line, values without their quotes.
fn defines(flags: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut tokens = flags.split_whitespace().peekable();
    while let Some(token) = tokens.next() {
        let define = match token.strip_prefix("-D") {
            Some("") => tokens.next().unwrap_or_default(),
            Some(define) => define,
            None => continue,
        };
        let (name, value) = define.split_once('=').unwrap_or((define, "1"));
        let value = value.replace("\\\"", "\"");
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(&value);
        out.insert(name.to_owned(), value.to_owned());
    }
    out
}

/// The chip of PlatformIO's common ESP32 board ids (platform-espressif32's boards/*.json).
fn chip_of_board(board: &str) -> Option<Chip> {
    Some(match board {
        "esp32dev"
        | "esp32doit-devkit-v1"
        | "nodemcu-32s"
        | "lolin32"
        | "lolin_d32"
        | "esp-wrover-kit"
        | "esp32-devkitlipo"
        | "featheresp32"
        | "wemos_d1_mini32"
        | "m5stack-core-esp32"
        | "az-delivery-devkit-v4" => Chip::Esp32,
        "esp32-s2-saola-1" | "esp32-s2-kaluga-1" | "lolin_s2_mini" => Chip::Esp32s2,
        "esp32-s3-devkitc-1" | "esp32-s3-devkitm-1" | "lolin_s3" => Chip::Esp32s3,
        "esp32-c3-devkitm-1" | "esp32-c3-devkitc-02" | "lolin_c3_mini" => Chip::Esp32c3,
        "esp32-c6-devkitc-1" | "esp32-c6-devkitm-1" => Chip::Esp32c6,
        "esp32-h2-devkitm-1" => Chip::Esp32h2,
        "esp32-c2-devkitm-1" => Chip::Esp32c2,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(text: &str) -> Result<Project, PlatformioError> {
        Project::parse(text, Path::new("/fw/platformio.ini"))
    }

    #[test]
    fn the_seeds_environments_with_shared_sections() {
        let p = project(
            "[env]\nmonitor_speed = 115200\n\n[common]\nflags = -DPSRAM_ENABLED=1\n\n\
             [env:bellcore-v2]\nextends = common\nplatform = espressif32\nboard = esp32dev\n\
             board_build.partitions = partitions/custom_4mb.csv ; the 4 MB table\n\
             board_build.flash_mode = dio\nboard_upload.flash_size = 4MB\n\
             build_flags =\n    -DBOARD_TYPE=\"BC\"\n    -D BOARD_VERSION=\\\"02\\\"\n    ${common.flags}\n\n\
             [env:native]\nplatform = native\n",
        )
        .unwrap();
        assert_eq!(p.skipped, [("native".to_owned(), "native".to_owned())]);
        let e = &p.environments[0];
        assert_eq!(
            (
                e.name.as_str(),
                e.board.as_str(),
                e.chip,
                e.hw_type.as_str(),
                e.hw_version.as_str()
            ),
            ("bellcore-v2", "esp32dev", Chip::Esp32, "BC", "02")
        );
        assert_eq!(
            (e.flash_size.as_str(), e.flash_mode),
            ("4MB", FlashMode::Dio)
        );
        assert_eq!(e.partitions, "partitions/custom_4mb.csv");
        assert_eq!(
            e.partitions_path,
            Path::new("/fw/partitions/custom_4mb.csv")
        );
        assert_eq!(e.defines["PSRAM_ENABLED"], "1");
        assert_eq!(
            e.build_flags,
            "-DBOARD_TYPE=\"BC\" -D BOARD_VERSION=\\\"02\\\" -DPSRAM_ENABLED=1"
        );
    }

    #[test]
    fn what_is_missing_is_named_with_its_environment() {
        let base =
            "[env:x]\nplatform = espressif32\nboard = esp32dev\nboard_build.partitions = p.csv\n";
        let err = project(&format!("{base}build_flags = -DBOARD_TYPE=BC\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/fw/platformio.ini: [env:x]: build_flags has no -DBOARD_VERSION=\"...\" (the hardware the firmware is for)"
        );
        let err = project("[env:y]\nplatform = espressif32\nboard = mystery\n").unwrap_err();
        assert!(err.to_string().contains("add board_build.mcu"), "{err}");
        let err = project("[env:z]\nplatform = native\n").unwrap_err();
        assert!(err.to_string().contains("no ESP32 environment"), "{err}");
        let s3 = project(&format!(
            "{base}board_build.mcu = esp32s3\nboard_build.flash_mode = qspi\nbuild_flags = -DBOARD_TYPE=BC -DBOARD_VERSION=01\n"
        ))
        .unwrap_err();
        assert!(s3.to_string().contains("`qspi` is not qio"), "{s3}");
    }

    /// Issue 25, finding 10: nested references that each repeat the one below double at every
    /// level (868 bytes of ini ran for more than 30 s); the total size is bounded, not just the
    /// depth, and the environment is refused with the key named.
    #[test]
    fn references_that_multiply_are_refused_quickly() {
        let mut ini = String::from(
            "[a]\nv0 = xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
        );
        for i in 1..=8 {
            let previous = format!("${{a.v{}}}", i - 1);
            ini.push_str(&format!("v{i} = {}\n", previous.repeat(16)));
        }
        ini.push_str(
            "[env:x]\nplatform = espressif32\nboard = esp32dev\nboard_build.partitions = p.csv\n\
             build_flags = -DBOARD_TYPE=BC -DBOARD_VERSION=01 ${a.v8}\n",
        );
        assert!(ini.len() < 1200, "{}", ini.len());
        let started = std::time::Instant::now();
        let err = project(&ini).unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            err.to_string(),
            "/fw/platformio.ini: [env:x]: `build_flags` grows past 64 KiB through its ${...} references"
        );
        // A value within the bound still interpolates.
        let fine = ini.replace("${a.v8}", "${a.v1}");
        assert!(project(&fine).is_ok());
    }
}
