//! The data folder's lock: `vesper serve` holds it while it runs (an advisory lock on
//! `DATA_DIR/serve.lock`, released by the kernel if the process dies), so that a second backend,
//! or `vesper restore`, refuses to work on a registry in use.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// File name of the lock inside the data dir.
pub const LOCK_FILE: &str = "serve.lock";

/// The data folder is in use.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "a vesper serve is running on {dir} ({holder}); stop it first (systemctl stop vesper-serve)"
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held while a backend serves a data folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

impl DataLock {
    /// Takes the lock of `data_dir` (created if missing), recording this process's id in it.
    pub fn acquire(data_dir: &Path) -> Result<DataLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        crate::private::create_private_dir(data_dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("pid {pid}"),
                };
                return Err(LockError::InUse {
                    dir: data_dir.to_owned(),
                    holder,
                });
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataLock { _file: file })
    }

    /// Whether a backend holds `data_dir`'s lock now (without taking it for long).
    pub fn is_held(data_dir: &Path) -> bool {
        matches!(DataLock::acquire(data_dir), Err(LockError::InUse { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataLock::acquire(dir.path()).unwrap();
        let err = DataLock::acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(DataLock::is_held(dir.path()));
        drop(held);
        assert!(!DataLock::is_held(dir.path()));
        DataLock::acquire(dir.path()).unwrap();
    }
}
