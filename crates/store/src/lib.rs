//! The device registry: one SQLite file in the data dir (WAL, foreign keys, full sync).
//!
//! This crate is storage only: it depends on `vesper-core` (whose model it stores and re-exports)
//! and on SQLite, never on HTTP, MQTT, the station or the labels.
//!
//! The registry is the backend's source of truth. Every change runs in one transaction together
//! with its audit row, so a crash (even SIGKILL) leaves either the whole change or none of it.
//! One connection writes; a small pool of connections reads concurrently (WAL allows it).

mod audit;
mod batches;
mod claims;
mod deploys;
mod devices;
mod engine;
mod eol;
mod listing;
mod lock;
pub mod migrate;
mod outbox;
pub mod postgres;
pub mod private;
mod rows;
mod schema;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

pub use deploys::DEPLOY_ACTOR;
pub use engine::{Delivery, Engine, SqliteStore, Store};
pub use lock::{DataLock, LOCK_FILE, LockError};
pub use outbox::{MAIL_ACTOR, MAIL_LEASE};
pub use postgres::PgStore;
pub use tokens::TOKEN_PREFIX;
pub use vesper_core::config::Database;
pub use vesper_core::model::*;

/// File name of the registry database inside the data dir.
pub const DB_FILE: &str = "registry.sqlite3";

/// Most reader connections kept open.
const MAX_READERS: usize = 8;

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("registry database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot reach the registry database: {0}")]
    Pool(String),
    #[error("registry task failed: {0}")]
    Task(String),
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the registry's schema version {found} is newer than this vesper supports ({supported}); upgrade vesper"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("no device {0}")]
    NoDevice(String),
    #[error("no batch {0}")]
    NoBatch(String),
    #[error("no token named `{0}`")]
    NoToken(String),
    #[error("a token named `{0}` already exists")]
    TokenExists(String),
    #[error("device {sn} is {from}; it cannot move to {to} (status only moves forward: {order}; revoked from anywhere)", order = Status::ORDER_TEXT)]
    IllegalTransition {
        sn: String,
        from: Status,
        to: Status,
    },
    #[error("device {0} is revoked")]
    Revoked(String),
    #[error("MAC {mac} already belongs to {other}; report with force=true to move it to {sn}")]
    MacInUse {
        mac: String,
        other: String,
        sn: String,
    },
    #[error(
        "batch {batch} has no device left to flash ({in_progress} being flashed at other slots or stations)"
    )]
    BatchDone { batch: String, in_progress: i64 },
    #[error(
        "device {sn} is already on the board with MAC {mac}; give it back and take a new serial number, or report with force=true to move the identity to this board"
    )]
    AlreadyFlashed { sn: String, mac: String },
    #[error("device {sn} is being flashed by {by} (claim held until {until})")]
    ClaimedElsewhere {
        sn: String,
        by: String,
        until: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl RegistryError {
    /// Whether the error is the caller's (bad input, conflict) rather than the database's.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            RegistryError::Sqlite(_)
                | RegistryError::Postgres(_)
                | RegistryError::Pool(_)
                | RegistryError::Task(_)
                | RegistryError::DataDir { .. }
                | RegistryError::SchemaTooNew { .. }
        )
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;

/// The registry database.
pub struct Registry {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish()
    }
}

impl Registry {
    /// Opens (creating if needed) the registry in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Self> {
        private::create_private_dir(data_dir).map_err(|source| RegistryError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        Self::open_file(&data_dir.join(DB_FILE))
    }

    /// Opens (creating if needed) the registry file at `path` and brings its schema up to date.
    pub fn open_file(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        let created = !path.exists();
        let mut writer = open_connection(&path)?;
        if created {
            // The registry holds customers' addresses: the owner's alone (its -wal and -shm
            // files take the same mode from SQLite).
            private::make_private(&path).map_err(|source| RegistryError::DataDir {
                path: path.clone(),
                source,
            })?;
        }
        // Writes take the write lock when they begin (BEGIN IMMEDIATE), so a second process
        // writing at the same time (a CLI on the same data folder) waits for the busy timeout
        // instead of failing with SQLITE_BUSY halfway through a deferred transaction.
        writer.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        schema::migrate(&mut writer)?;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on a pooled connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.path)?,
        };
        let result = f(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.len() < MAX_READERS {
            readers.push(conn);
        }
        result
    }

    /// Runs a write on the single writer connection.
    fn write<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn)
    }

    /// Copies the registry to `dest` (a new SQLite file) through SQLite's online backup API, in
    /// one step, so the copy is one consistent point even while others write.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        self.read(|c| {
            let mut target = Connection::open(dest)?;
            private::make_private(dest).map_err(|e| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_PERM),
                    Some(format!("cannot make {} private: {e}", dest.display())),
                )
            })?;
            {
                let backup = rusqlite::backup::Backup::new(c, &mut target)?;
                backup.step(-1)?;
            }
            // One self-contained file (the copy took the source's WAL mode with its pages).
            target.pragma_update(None, "journal_mode", "DELETE")?;
            Ok(())
        })
    }

    /// SQLite's `PRAGMA integrity_check`: `ok`, or the problems it found.
    pub fn integrity_check(&self) -> Result<String> {
        self.read(|c| {
            let mut stmt = c.prepare("PRAGMA integrity_check")?;
            let lines: Vec<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(lines.join("; "))
        })
    }

    /// Checks that the database answers (for health checks).
    pub fn ping(&self) -> Result<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Opens the registry where `database` says (`None`: SQLite in `data_dir`), its schema
/// brought up to date. A `sqlite:` path may be a data folder or a registry file.
pub async fn open_store(
    database: Option<&vesper_core::config::Database>,
    data_dir: &Path,
) -> Result<std::sync::Arc<dyn Store>> {
    use vesper_core::config::Database;
    let open: Box<dyn FnOnce() -> Result<Registry> + Send> = match database {
        Some(Database::Postgres(url)) => {
            return Ok(std::sync::Arc::new(PgStore::connect(url).await?));
        }
        Some(Database::Sqlite(path)) => {
            let file = registry_file(path);
            Box::new(move || Registry::open_file(&file))
        }
        None => {
            let dir = data_dir.to_owned();
            Box::new(move || Registry::open(&dir))
        }
    };
    let registry = tokio::task::spawn_blocking(open)
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))??;
    Ok(std::sync::Arc::new(SqliteStore::new(registry)))
}

/// The registry file a `sqlite:` path names: a data folder's `registry.sqlite3`, or the file.
pub fn registry_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(DB_FILE)
    } else {
        path.to_owned()
    }
}

/// Opens a registry file read-only (a backup's copy) and answers `PRAGMA integrity_check` and
/// its numbers of devices and batches; nothing is written to it.
pub fn inspect(db: &Path) -> Result<(String, i64, i64)> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let count =
        |table: &str| conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0));
    Ok((lines.join("; "), count("devices")?, count("batches")?))
}

/// The current time as stored in the registry: RFC 3339, UTC, milliseconds.
pub fn now() -> String {
    stamp(chrono::Utc::now())
}

/// A time as stored in the registry (so that stored times compare as text).
pub fn stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
