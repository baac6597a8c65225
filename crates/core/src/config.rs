//! Configuration: boards, backend, MQTT. One TOML file, validated on load.
//!
//! Found at `--config FILE`, else `$VESPER_CONFIG`, else `./config.toml`, else the user's config
//! folder (`~/.config/vesper/config.toml` on Linux). Relative paths inside it are relative to the
//! file's own folder, so a folder made by `vesper init` works wherever it is run from. Every
//! error names the file and the key (`boards[1].hw_type`), because a technician fixing a config
//! on a bench has no debugger.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod broker;
mod deploy;
mod mail;
mod network;
pub use broker::Broker;
use broker::RawBroker;
pub use deploy::Deploy;
pub use mail::{
    Alerts, Mail, MailProvider, RESEND_BASE_URL, RESEND_KEY_ENV, Resend, SMTP_PASSWORD_ENV, Smtp,
    SmtpTls,
};
pub use network::{DeviceNetworkConfig, WIFI_PASSWORD_ENV, Wifi};

use crate::ReadFile;
use crate::acl::Topics;
use crate::goauth::ResponseMode;
use crate::model::{Board, Chip, FlashMode};
use crate::nvs::{self, DEVICE_KEYS, Setting};
use crate::partitions::{self, DEFAULT_NVS_PARTITION, PartitionTable};
use crate::serial::{BoardType, Revision};
use crate::stock::Stock;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "VESPER_CONFIG";
/// File name looked for in the current folder and the user's config folder.
pub const FILE_NAME: &str = "config.toml";

/// The example configuration, also what `vesper init` writes.
pub const EXAMPLE: &str = include_str!("../../../config.toml.example");

/// The partition tables the example configuration references, as (relative path, content).
pub const EXAMPLE_TABLES: [(&str, &str); 2] = [
    (
        "partitions/custom_4mb.csv",
        include_str!("../../../partitions/custom_4mb.csv"),
    ),
    (
        "partitions/custom_2mb.csv",
        include_str!("../../../partitions/custom_2mb.csv"),
    ),
];

/// Errors finding, reading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no configuration found (looked at {}); run `vesper init` to write one here, or pass --config FILE", list(.searched))]
    NotFound { searched: Vec<PathBuf> },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

/// How user tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersConfig {
    /// The `iss` claim, e.g. `https://securetoken.google.com/PROJECT`.
    pub issuer: String,
    /// The `aud` claim, e.g. the Firebase project id.
    pub audience: String,
    pub jwks: JwksSource,
}

/// Where the station finds the backend.
#[derive(Debug, Clone, Default)]
pub struct Backend {
    pub url: String,
    /// Bearer token; `VESPER_TOKEN` overrides it. Never printed.
    pub token: Option<String>,
}

/// Where devices find the broker, and their topics.
#[derive(Debug, Clone)]
pub struct Mqtt {
    pub host: String,
    pub port: u16,
    pub topics: Topics,
}

/// The sync backend's settings (`vesper serve`).
#[derive(Debug, Clone)]
pub struct Serve {
    /// Folder of the registry database (and, by default, the OTA files).
    pub data_dir: PathBuf,
    /// The public API listener.
    pub listen: SocketAddr,
    /// The broker-facing MQTT auth listener (keep it on loopback or a private network).
    pub auth_listen: SocketAddr,
    /// Base URL for download links in API answers (default: `http://` + the request's Host).
    pub public_url: Option<String>,
    /// Root of the OTA layout `{ota_root}/{board}/v{version}.bin`.
    pub ota_root: PathBuf,
    /// A file holding the MQTT master secret (else the `MQTT_SECRET` environment variable).
    pub secret_file: Option<PathBuf>,
    /// MQTT username of the backend's own service account: it reads every device's data and
    /// status and publishes only on `$CONTROL/vesper/v1`. Not a superuser.
    pub service_account: String,
    /// Usernames the superuser route grants (they skip every ACL check). Empty by default.
    pub superusers: Vec<String>,
    /// Answer format of the MQTT auth routes; must match the broker's `http_response_mode`.
    pub auth_response_mode: ResponseMode,
    /// How phone-app users' ID tokens are checked; `None`: user logins are refused.
    pub users: Option<UsersConfig>,
    /// The broker the heartbeat listener subscribes to; `None`: no listener.
    pub broker: Option<Broker>,
    /// Where the registry is (`serve.database`, or `$VESPER_DATABASE_URL` at the edge);
    /// `None`: SQLite in the data folder.
    pub database: Option<Database>,
}

/// The environment variable that names the registry database, over `serve.database`.
pub const DATABASE_ENV: &str = "VESPER_DATABASE_URL";

/// Where the registry is: a SQLite file (`sqlite:PATH`, a data folder or its registry file) or
/// a PostgreSQL database (`postgres://user:password@host:port/db`).
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::str::FromStr for Database {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(Database::Postgres(text.to_owned()))
        } else if let Some(path) = text.strip_prefix("sqlite:").filter(|p| !p.is_empty()) {
            Ok(Database::Sqlite(PathBuf::from(path)))
        } else {
            Err(format!(
                "`{}` is not a database: use postgres://user:password@host:port/db or sqlite:PATH",
                Database::redact(text)
            ))
        }
    }
}

impl Database {
    /// The URL with its password replaced by `***`, for messages and logs.
    pub fn redact(url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_owned();
        };
        let Some((credentials, host)) = rest.split_once('@') else {
            return url.to_owned();
        };
        match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Database::Postgres(url) => f.write_str(&Database::redact(url)),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// How the station flashes and verifies boards (`[station]`).
#[derive(Debug, Clone, PartialEq)]
pub struct StationSettings {
    /// Bench slots, one serial port path each, in slot order. Prefer stable names such as
    /// `/dev/serial/by-path/...` so a slot is a physical USB socket. Empty: the first USB serial
    /// adapters that appear fill up to four slots.
    pub slots: Vec<PathBuf>,
    /// Wait for Enter before flashing each board plugged into a bench slot.
    pub confirm_each_board: bool,
    /// Baud rate after connecting.
    pub baud: u32,
    /// How long to wait for a flashed board's first heartbeat.
    pub verify_timeout: std::time::Duration,
    /// Where firmware bundles fetched from the backend are kept.
    pub firmware_cache: PathBuf,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Station name, recorded with every flash (defaults to the host name).
    pub station: String,
    pub station_settings: StationSettings,
    pub backend: Backend,
    pub mqtt: Mqtt,
    pub boards: Vec<Board>,
    pub serve: Serve,
    pub labels: Labels,
    /// Outgoing e-mail (`[mail]`): the outbox's provider, templates' product name, alerts.
    pub mail: Mail,
    /// The deploy webhook and the public address (`[deploy]`).
    pub deploy: Deploy,
    /// What devices are told besides their identity: Wi-Fi and CAs (`[wifi]`, `[ota]`).
    pub network: DeviceNetworkConfig,
}

/// Label printing.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// Default stock (`a4-l7160` unless set).
    pub stock: String,
    /// CUPS printer for PDF labels (`lp -d PRINTER`).
    pub printer: Option<String>,
    /// Raw TCP address of a ZPL printer (`HOST:9100`).
    pub zpl_printer: Option<String>,
    /// Custom stocks, besides the presets.
    pub stocks: Vec<Stock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    station: RawStation,
    #[serde(default)]
    backend: RawBackend,
    mqtt: RawMqtt,
    #[serde(default)]
    boards: Vec<RawBoard>,
    #[serde(default)]
    serve: RawServe,
    #[serde(default)]
    labels: RawLabels,
    #[serde(default)]
    mail: mail::RawMail,
    #[serde(default)]
    deploy: deploy::RawDeploy,
    wifi: Option<network::RawWifi>,
    #[serde(default)]
    ota: network::RawOta,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    stock: Option<String>,
    printer: Option<String>,
    zpl_printer: Option<String>,
    #[serde(default)]
    stocks: Vec<Stock>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServe {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    auth_listen: Option<String>,
    public_url: Option<String>,
    ota_root: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    service_account: Option<String>,
    #[serde(default)]
    superusers: Vec<String>,
    auth_response_mode: Option<ResponseMode>,
    users: Option<RawUsers>,
    broker: Option<RawBroker>,
    database: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    jwks_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStation {
    name: Option<String>,
    #[serde(default)]
    slots: Vec<PathBuf>,
    #[serde(default)]
    confirm_each_board: bool,
    baud: Option<u32>,
    verify_timeout: Option<u64>,
    firmware_cache: Option<PathBuf>,
}

fn validate_station(
    raw: &RawStation,
    base: &Path,
    machine: &Machine,
) -> Result<StationSettings, Invalid> {
    let baud = raw.baud.unwrap_or(921_600);
    if !(9600..=3_000_000).contains(&baud) {
        return Err((
            "station.baud".into(),
            format!("{baud} is not a baud rate between 9600 and 3000000"),
        ));
    }
    let verify_timeout = raw.verify_timeout.unwrap_or(60);
    if !(1..=600).contains(&verify_timeout) {
        return Err((
            "station.verify_timeout".into(),
            format!("{verify_timeout} s is not between 1 and 600 seconds"),
        ));
    }
    if raw.slots.len() > 16 {
        return Err(("station.slots".into(), "at most 16 slots".into()));
    }
    let firmware_cache = match &raw.firmware_cache {
        Some(p) => base.join(p),
        None => machine.firmware_cache.clone(),
    };
    Ok(StationSettings {
        slots: raw.slots.iter().map(|p| base.join(p)).collect(),
        confirm_each_board: raw.confirm_each_board,
        baud,
        verify_timeout: std::time::Duration::from_secs(verify_timeout),
        firmware_cache,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    #[serde(default = "default_backend_url")]
    url: String,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

impl Default for RawBackend {
    fn default() -> Self {
        Self {
            url: default_backend_url(),
            token: None,
            token_file: None,
        }
    }
}

fn default_backend_url() -> String {
    "http://127.0.0.1:8080".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    host: String,
    #[serde(default = "default_mqtt_port")]
    port: u16,
    #[serde(default)]
    topics: Option<Topics>,
    ca_file: Option<PathBuf>,
}

fn default_mqtt_port() -> u16 {
    8883
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    name: String,
    hw_type: String,
    hw_version: String,
    chip: Chip,
    flash_size: String,
    flash_mode: FlashMode,
    partition_table: PathBuf,
    #[serde(default)]
    nvs_partition: Option<String>,
    #[serde(default)]
    nvs_extra: Vec<RawSetting>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSetting {
    key: String,
    #[serde(rename = "type")]
    ty: String,
    value: toml::Value,
}

impl Config {
    /// Validates configuration text; `path` is where it lives (relative paths start from its
    /// folder). The files it names (partition tables, a token file) are read through `read`; the
    /// defaults that depend on the machine come in `machine`. Nothing else is looked at.
    pub fn parse(
        text: &str,
        path: &Path,
        read: &ReadFile,
        machine: &Machine,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };

        let network =
            network::validate_network(raw.wifi, raw.mqtt.ca_file.clone(), raw.ota, base, read)
                .map_err(|(k, m)| invalid(k, m))?;
        let mqtt = validate_mqtt(raw.mqtt).map_err(|(k, m)| invalid(k, m))?;
        let backend = validate_backend(raw.backend, base, read).map_err(|(k, m)| invalid(k, m))?;
        let mut boards: Vec<Board> = Vec::with_capacity(raw.boards.len());
        for (i, raw_board) in raw.boards.into_iter().enumerate() {
            let board = validate_board(raw_board, base, &mqtt, &network, read)
                .map_err(|(k, m)| invalid(format!("boards[{i}].{k}"), m))?;
            if let Some(other) = boards.iter().find(|b| b.name == board.name) {
                return Err(invalid(
                    format!("boards[{i}].name"),
                    format!("`{}` is used twice", other.name),
                ));
            }
            if let Some(other) = boards
                .iter()
                .find(|b| (b.hw_type, b.hw_version) == (board.hw_type, board.hw_version))
            {
                return Err(invalid(
                    format!("boards[{i}].hw_version"),
                    format!(
                        "{}{} is already board `{}`",
                        board.hw_type, board.hw_version, other.name
                    ),
                ));
            }
            boards.push(board);
        }
        let serve = validate_serve(raw.serve, base).map_err(|(k, m)| invalid(k, m))?;
        let labels = validate_labels(raw.labels).map_err(|(k, m)| invalid(k, m))?;
        let mail = mail::validate_mail(raw.mail, base).map_err(|(k, m)| invalid(k, m))?;
        let deploy = deploy::validate_deploy(raw.deploy, base).map_err(|(k, m)| invalid(k, m))?;
        let station_settings =
            validate_station(&raw.station, base, machine).map_err(|(k, m)| invalid(k, m))?;
        let station = raw
            .station
            .name
            .unwrap_or_else(|| machine.station_name.clone());
        if station.trim().is_empty() {
            return Err(invalid("station.name".into(), "must not be empty".into()));
        }
        Ok(Self {
            path: path.to_owned(),
            station,
            station_settings,
            backend,
            mqtt,
            boards,
            serve,
            labels,
            mail,
            deploy,
            network,
        })
    }

    /// The example configuration as if it were written at `path` with its partition tables
    /// beside it (what `vesper init` writes), read from memory: for tests and the demo.
    pub fn example_at(path: &Path, machine: &Machine) -> Self {
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        let read = move |wanted: &Path| {
            EXAMPLE_TABLES
                .iter()
                .find(|(name, _)| base.join(name) == wanted)
                .map(|(_, text)| text.as_bytes().to_vec())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        Self::parse(EXAMPLE, path, &read, machine).expect("the example configuration is valid")
    }

    /// The board called `name`, or an error listing the known boards.
    pub fn board(&self, name: &str) -> Result<&Board, ConfigError> {
        self.boards
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| ConfigError::Invalid {
                path: self.path.clone(),
                key: "boards".into(),
                message: format!(
                    "no board named `{name}` (known: {})",
                    self.boards
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// The board with a hardware type and version.
    pub fn board_for(&self, hw_type: BoardType, hw_version: Revision) -> Option<&Board> {
        self.boards
            .iter()
            .find(|b| b.hw_type == hw_type && b.hw_version == hw_version)
    }
}

/// The defaults that depend on the machine, found by the caller (the edge that reads files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The station name when `station.name` is not set (the host name).
    pub station_name: String,
    /// Where fetched firmware is cached when `station.firmware_cache` is not set.
    pub firmware_cache: PathBuf,
}

type Invalid = (String, String);

/// The example configuration's commented block that starts with `# [header]`, uncommented (for
/// the tests that check the documented keys parse).
#[cfg(test)]
pub(crate) fn documented_block(header: &str) -> String {
    EXAMPLE
        .lines()
        .skip_while(|l| !l.starts_with(&format!("# [{header}]")))
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
        .collect()
}

fn validate_mqtt(raw: RawMqtt) -> Result<Mqtt, Invalid> {
    if raw.host.trim().is_empty() || raw.host.contains(char::is_whitespace) {
        return Err((
            "mqtt.host".into(),
            format!("`{}` is not a host name", raw.host),
        ));
    }
    if raw.port == 0 {
        return Err(("mqtt.port".into(), "must be 1..65535".into()));
    }
    let topics = raw.topics.unwrap_or_default();
    topics
        .validate()
        .map_err(|e| ("mqtt.topics".into(), e.to_string()))?;
    Ok(Mqtt {
        host: raw.host,
        port: raw.port,
        topics,
    })
}

fn validate_labels(raw: RawLabels) -> Result<Labels, Invalid> {
    for (i, stock) in raw.stocks.iter().enumerate() {
        stock
            .validate()
            .map_err(|e| (format!("labels.stocks[{i}]"), e.to_string()))?;
    }
    let stock = raw.stock.unwrap_or_else(|| "a4-l7160".into());
    Stock::find(&stock, &raw.stocks).map_err(|e| ("labels.stock".to_owned(), e.to_string()))?;
    if let Some(addr) = &raw.zpl_printer
        && addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err((
            "labels.zpl_printer".into(),
            format!("`{addr}` is not HOST:PORT (e.g. 192.168.1.50:9100)"),
        ));
    }
    Ok(Labels {
        stock,
        printer: raw.printer,
        zpl_printer: raw.zpl_printer,
        stocks: raw.stocks,
    })
}

fn validate_serve(raw: RawServe, base: &Path) -> Result<Serve, Invalid> {
    let addr = |key: &str, value: Option<String>, default: &str| -> Result<SocketAddr, Invalid> {
        let text = value.unwrap_or_else(|| default.to_owned());
        text.parse().map_err(|_| {
            (
                format!("serve.{key}"),
                format!("`{text}` is not an address like 127.0.0.1:8080"),
            )
        })
    };
    let listen = addr("listen", raw.listen, "127.0.0.1:8080")?;
    let auth_listen = addr("auth_listen", raw.auth_listen, "127.0.0.1:8081")?;
    if listen == auth_listen && listen.port() != 0 {
        return Err((
            "serve.auth_listen".into(),
            "must differ from serve.listen: the broker's auth routes get their own socket".into(),
        ));
    }
    if let Some(url) = &raw.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err((
            "serve.public_url".into(),
            format!("`{url}` must start with http:// or https://"),
        ));
    }
    let data_dir = base.join(raw.data_dir.unwrap_or_else(|| PathBuf::from("data")));
    let ota_root = raw
        .ota_root
        .map(|p| base.join(p))
        .unwrap_or_else(|| data_dir.join("ota"));
    let service_account = raw
        .service_account
        .unwrap_or_else(|| "vesper-backend".into());
    let valid_account = (1..=64).contains(&service_account.len())
        && service_account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && service_account
            .parse::<crate::serial::SerialNumber>()
            .is_err();
    if !valid_account {
        return Err((
            "serve.service_account".into(),
            format!(
                "`{service_account}` must be 1..64 letters, digits, `-`, `_` or `.`, and not a serial number"
            ),
        ));
    }
    if let Some(bad) = raw
        .superusers
        .iter()
        .find(|u| u.is_empty() || u.len() > 64 || u.contains(['+', '#', '\0']))
    {
        return Err((
            "serve.superusers".into(),
            format!("`{bad}` must be 1..64 bytes without `+`, `#` or NUL"),
        ));
    }
    let users = match raw.users {
        None => None,
        Some(u) => {
            let jwks = match (u.jwks_url, u.jwks_file) {
                (Some(url), None) if url.starts_with("https://") || url.starts_with("http://") => {
                    JwksSource::Url(url)
                }
                (Some(url), None) => {
                    return Err((
                        "serve.users.jwks_url".into(),
                        format!("`{url}` is not an http(s) URL"),
                    ));
                }
                (None, Some(file)) => JwksSource::File(base.join(file)),
                _ => {
                    return Err((
                        "serve.users".into(),
                        "set exactly one of jwks_url or jwks_file".into(),
                    ));
                }
            };
            if u.issuer.is_empty() || u.audience.is_empty() {
                return Err((
                    "serve.users".into(),
                    "issuer and audience must not be empty".into(),
                ));
            }
            Some(UsersConfig {
                issuer: u.issuer,
                audience: u.audience,
                jwks,
            })
        }
    };
    let broker = raw.broker.map(RawBroker::check).transpose()?;
    let database = raw
        .database
        .map(|text| text.parse::<Database>())
        .transpose()
        .map_err(|e| ("serve.database".to_owned(), e))?
        .map(|db| match db {
            Database::Sqlite(path) => Database::Sqlite(base.join(path)),
            other => other,
        });
    Ok(Serve {
        broker,
        database,
        data_dir,
        listen,
        auth_listen,
        public_url: raw.public_url.map(|u| u.trim_end_matches('/').to_owned()),
        ota_root,
        secret_file: raw.secret_file.map(|p| base.join(p)),
        service_account,
        superusers: raw.superusers,
        auth_response_mode: raw.auth_response_mode.unwrap_or_default(),
        users,
    })
}

fn validate_backend(raw: RawBackend, base: &Path, read: &ReadFile) -> Result<Backend, Invalid> {
    if !(raw.url.starts_with("http://") || raw.url.starts_with("https://")) {
        return Err((
            "backend.url".into(),
            format!("`{}` must start with http:// or https://", raw.url),
        ));
    }
    let token = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            return Err((
                "backend.token".into(),
                "set token or token_file, not both".into(),
            ));
        }
        (Some(token), None) => Some(token),
        (None, Some(file)) => {
            let path = base.join(file);
            let bytes = read(&path).map_err(|e| {
                (
                    "backend.token_file".to_owned(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Some(String::from_utf8_lossy(&bytes).trim().to_owned())
        }
        (None, None) => None,
    };
    Ok(Backend {
        url: raw.url.trim_end_matches('/').to_owned(),
        token,
    })
}

fn validate_board(
    raw: RawBoard,
    base: &Path,
    mqtt: &Mqtt,
    network: &DeviceNetworkConfig,
    read: &ReadFile,
) -> Result<Board, Invalid> {
    let bad = |key: &str, message: String| (key.to_owned(), message);
    let name_ok = !raw.name.is_empty()
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && !raw.name.starts_with('.');
    if !name_ok {
        return Err(bad(
            "name",
            format!(
                "`{}` must be lower-case letters, digits, `-`, `_` or `.`",
                raw.name
            ),
        ));
    }
    let hw_type: BoardType = raw
        .hw_type
        .parse()
        .map_err(|e: crate::serial::InputError| bad("hw_type", e.to_string()))?;
    let hw_version: Revision = raw
        .hw_version
        .parse()
        .map_err(|e: crate::serial::InputError| bad("hw_version", e.to_string()))?;
    let flash_size = partitions::parse_size(&raw.flash_size)
        .filter(|s| s.is_power_of_two() && (1 << 20..=128 << 20).contains(s))
        .ok_or_else(|| {
            bad(
                "flash_size",
                format!(
                    "`{}` is not a flash size such as 2MB, 4MB, 8MB or 16MB",
                    raw.flash_size
                ),
            )
        })?;
    let partition_table = base.join(&raw.partition_table);
    let table_bytes = read(&partition_table).map_err(|e| {
        bad(
            "partition_table",
            format!(
                "cannot read partition table {}: {e}",
                partition_table.display()
            ),
        )
    })?;
    let table = PartitionTable::parse(&table_bytes, &partition_table.display().to_string())
        .map_err(|e| bad("partition_table", e.to_string()))?;
    table
        .check_fits(flash_size)
        .map_err(|e| bad("partition_table", e.to_string()))?;
    let nvs_name = raw
        .nvs_partition
        .unwrap_or_else(|| DEFAULT_NVS_PARTITION.into());
    let nvs = table
        .nvs(&nvs_name)
        .map_err(|e| bad("nvs_partition", e.to_string()))?;
    if nvs.size < 0x3000 {
        return Err(bad(
            "nvs_partition",
            format!(
                "`{nvs_name}` is 0x{:x} bytes; a device NVS partition needs at least 0x3000",
                nvs.size
            ),
        ));
    }
    let mut nvs_extra = Vec::with_capacity(raw.nvs_extra.len());
    let mut keys: HashSet<String> = DEVICE_KEYS.iter().map(|k| k.to_string()).collect();
    for (i, setting) in raw.nvs_extra.into_iter().enumerate() {
        let key = format!("nvs_extra[{i}]");
        nvs::check_key(&setting.key).map_err(|e| bad(&format!("{key}.key"), e.to_string()))?;
        if nvs::NETWORK_KEYS.contains(&setting.key.as_str()) {
            return Err(bad(
                &format!("{key}.key"),
                format!(
                    "`{}` comes from [wifi], mqtt.ca_file or [ota] ca_file, not from nvs_extra",
                    setting.key
                ),
            ));
        }
        if let Some((_, ty)) = nvs::DEVICE_OPTIONAL_KEYS
            .iter()
            .find(|(name, _)| *name == setting.key)
            && setting.ty != *ty
        {
            return Err(bad(
                &format!("{key}.type"),
                format!(
                    "the firmware reads `{}` as a {ty}, not a {}",
                    setting.key, setting.ty
                ),
            ));
        }
        if !keys.insert(setting.key.clone()) {
            return Err(bad(
                &format!("{key}.key"),
                format!(
                    "`{}` is already written (standard keys: {})",
                    setting.key,
                    DEVICE_KEYS.join(", ")
                ),
            ));
        }
        let value = parse_setting(&setting.ty, &setting.value)
            .map_err(|m| bad(&format!("{key}.value"), m))?;
        nvs_extra.push((setting.key, value));
    }
    let board = Board {
        name: raw.name,
        hw_type,
        hw_version,
        chip: raw.chip,
        flash_size,
        flash_mode: raw.flash_mode,
        partition_table,
        table,
        nvs_name,
        nvs,
        nvs_extra,
    };
    check_device_image_fits(&board, mqtt, network).map_err(|m| bad("nvs_extra", m))?;
    Ok(board)
}

/// Builds a sample image so that a board whose extra keys overflow its partition fails at load.
fn check_device_image_fits(
    board: &Board,
    mqtt: &Mqtt,
    network: &DeviceNetworkConfig,
) -> Result<(), String> {
    let sn = crate::serial::generate(
        board.hw_type,
        board.hw_version,
        chrono::Utc::now().date_naive(),
        &mut rand::rng(),
    )
    .map_err(|e| e.to_string())?;
    // Only the password's length matters here; any secret gives a full-length one.
    let password = crate::credentials::MasterSecret::new([0u8; 32], "sample")
        .map_err(|e| e.to_string())?
        .device_password(&sn);
    let device = nvs::DeviceNvs {
        serial_number: &sn,
        hw_type: board.hw_type.as_str(),
        hw_version: board.hw_version.as_str(),
        mqtt_pass: &password,
        mqtt_host: &mqtt.host,
        mqtt_port: mqtt.port,
        network: network.nvs(),
        extra: &board.nvs_extra,
    };
    nvs::device_image(u64::from(board.nvs.size), &device)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Converts a TOML value to a typed NVS setting, with a message naming what is wrong.
fn parse_setting(ty: &str, value: &toml::Value) -> Result<Setting, String> {
    let int = || -> Result<i128, String> {
        match value {
            toml::Value::Integer(i) => Ok(i128::from(*i)),
            toml::Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not an integer")),
            other => Err(format!("{other} is not an integer")),
        }
    };
    let text = || -> Result<String, String> {
        match value {
            toml::Value::String(s) => Ok(s.clone()),
            other => Err(format!("{other} is not a string (quote it)")),
        }
    };
    macro_rules! ranged {
        ($t:ty, $variant:ident) => {{
            let v = int()?;
            <$t>::try_from(v).map(Setting::$variant).map_err(|_| {
                format!(
                    "{v} is out of range for {} ({}..={})",
                    ty,
                    <$t>::MIN,
                    <$t>::MAX
                )
            })
        }};
    }
    match ty {
        "u8" => ranged!(u8, U8),
        "i8" => ranged!(i8, I8),
        "u16" => ranged!(u16, U16),
        "i16" => ranged!(i16, I16),
        "u32" => ranged!(u32, U32),
        "i32" => ranged!(i32, I32),
        "u64" => ranged!(u64, U64),
        "i64" => ranged!(i64, I64),
        "string" => Ok(Setting::Str(text()?.into())),
        "hex2bin" => {
            let t = text()?;
            let bytes = nvs::decode_hex(t.trim().as_bytes()).map_err(|e| format!("`{t}`: {e}"))?;
            Ok(Setting::Blob(bytes.into()))
        }
        other => Err(format!(
            "type `{other}` is not one of u8, i8, u16, i16, u32, i32, u64, i64, string, hex2bin"
        )),
    }
}
