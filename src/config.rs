//! The configuration at the edge: where the file is, reading it and the files it names, and the
//! machine's defaults (host name, cache folder). Parsing itself is pure, in `vesper-core`.
//!
//! Found at `--config FILE`, else `$VESPER_CONFIG`, else `./config.toml`, else the user's config
//! folder (`~/.config/vesper/config.toml` on Linux).

use std::path::{Path, PathBuf};

pub use vesper_core::config::*;
pub use vesper_core::model::{Board, Chip, FlashMode};

/// Finds the config file: `explicit`, else `$VESPER_CONFIG`, else `./config.toml`, else the
/// user's config folder.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let mut searched = vec![PathBuf::from(FILE_NAME)];
    if let Some(dir) = dirs::config_dir() {
        searched.push(dir.join("vesper").join(FILE_NAME));
    }
    searched
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(ConfigError::NotFound { searched })
}

/// Locates and loads the configuration.
pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    load(&locate(explicit)?)
}

/// Reads and validates one file; `$VESPER_DATABASE_URL`, when set, names the registry
/// database over `serve.database`, and `$VESPER_WIFI_PASSWORD` gives the Wi-Fi password when no
/// `wifi.password_file` does.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut config = parse(&text, path)?;
    if let Some(database) = database_from_env(path)? {
        config.serve.database = Some(database);
    }
    let password = std::env::var(vesper_core::config::WIFI_PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty());
    config.network = config.network.with_password_from_env(password);
    Ok(config)
}

/// `$VESPER_DATABASE_URL`, when set (errors name `path`, the configuration it overrides).
fn database_from_env(path: &Path) -> Result<Option<Database>, ConfigError> {
    let Some(url) = std::env::var(vesper_core::config::DATABASE_ENV)
        .ok()
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    url.parse()
        .map(Some)
        .map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            key: format!("${}", vesper_core::config::DATABASE_ENV),
            message,
        })
}

/// The registry database named for this run: the configuration's `serve.database` (with
/// `$VESPER_DATABASE_URL` over it), or without any configuration file `$VESPER_DATABASE_URL`
/// alone; `None` means SQLite in the data folder. Every command that opens the registry asks
/// this, so none writes where `vesper serve` does not read.
pub fn database(explicit: Option<&Path>) -> Result<Option<Database>, ConfigError> {
    match locate(explicit) {
        Ok(path) => Ok(load(&path)?.serve.database),
        Err(ConfigError::NotFound { .. }) => {
            database_from_env(Path::new("(no configuration file)"))
        }
        Err(e) => Err(e),
    }
}

/// Validates configuration text that lives at `path`, reading the files it names from disk.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    Config::parse(text, path, &|p: &Path| std::fs::read(p), &machine())
}

/// This machine's defaults: the host name as the station name, the user's cache folder.
pub fn machine() -> Machine {
    let station_name = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "station".into());
    let firmware_cache = dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("vesper/firmware");
    Machine {
        station_name,
        firmware_cache,
    }
}
