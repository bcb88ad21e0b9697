//! Who may run jobs on a database, with file locks beside it (`flock`, released by the
//! kernel when a process dies):
//!
//! - `<db>.lock`: one gateway per database.  `serve` holds it exclusively for its whole
//!   life, from before start-up recovery, and writes its pid and address in it.
//! - `<db>.apply.lock`: held shared by every `apply` run while its job may exist.  Jobs
//!   of `apply` runs are interrupted by recovery only under the exclusive lock, that is
//!   when no `apply` is alive, so a gateway starting never frees a live `apply`'s lock.
//!
//! Errors are one [`LockError`]: another gateway holds the database, or a file could not
//! be made, opened, locked or written.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Why a lock beside the database was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another gateway serves the database; `holder` is what its lock file says.
    #[error(
        "{holder} already serves {}: its lock file {} is held; one gateway per database",
        db.display(),
        path.display()
    )]
    Held {
        holder: String,
        db: PathBuf,
        path: PathBuf,
    },
    /// A file operation failed: `cannot <action> <what>: <source>`.
    #[error("cannot {action} {what}: {source}")]
    Io {
        action: &'static str,
        what: String,
        source: std::io::Error,
    },
}

impl LockError {
    fn io(
        action: &'static str,
        what: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> LockError {
        let what = what.into();
        move |source| LockError::Io {
            action,
            what,
            source,
        }
    }
}

fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
}

fn open(path: &Path) -> Result<File, LockError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LockError::io("create", dir.display().to_string()))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(LockError::io("open", path.display().to_string()))
}

/// The exclusive lock of the one gateway serving a database.
pub struct GatewayLock {
    file: File,
    path: PathBuf,
}

impl GatewayLock {
    /// Takes `<db>.lock`, or says which gateway holds it.
    pub fn acquire(db: &Path) -> Result<GatewayLock, LockError> {
        let path = beside(db, ".lock");
        let mut file = open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another gateway".to_string(),
                    h => format!("another gateway ({h})"),
                };
                return Err(LockError::Held {
                    holder,
                    db: db.to_path_buf(),
                    path,
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(LockError::io("lock", path.display().to_string())(e));
            }
        }
        let mut lock = GatewayLock { file, path };
        lock.write(&format!("pid {}", std::process::id()))?;
        Ok(lock)
    }

    /// Records the address the gateway listens on, for the message a second one prints.
    pub fn announce(&mut self, addr: &str) -> Result<(), LockError> {
        self.write(&format!(
            "pid {}, listening on http://{addr}",
            std::process::id()
        ))
    }

    fn write(&mut self, text: &str) -> Result<(), LockError> {
        let fail = |e| LockError::io("write", self.path.display().to_string())(e);
        self.file.set_len(0).map_err(fail)?;
        self.file.rewind().map_err(fail)?;
        writeln!(self.file, "{text}").map_err(fail)
    }
}

/// The exclusive hold on `<db>.apply.lock`: no `apply` is alive while it is held.
pub struct NoApplyAlive(#[allow(dead_code)] File);

impl NoApplyAlive {
    /// Some when no `apply` holds the lock now (and none can start until it is dropped).
    pub fn check(db: &Path) -> Result<Option<NoApplyAlive>, LockError> {
        let path = beside(db, ".apply.lock");
        let file = open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(NoApplyAlive(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(LockError::io("lock", path.display().to_string())(e))
            }
        }
    }

    /// Lets `apply` runs start again (and keeps this one's share): the lock of an `apply`.
    pub fn share(self) -> Result<ApplyAlive, LockError> {
        let file = self.0;
        file.unlock()
            .map_err(LockError::io("unlock", "the apply lock"))?;
        ApplyAlive::hold(file)
    }
}

/// A shared hold on `<db>.apply.lock`, for as long as an `apply` run's job may exist.
pub struct ApplyAlive(#[allow(dead_code)] File);

impl ApplyAlive {
    /// Waits (briefly: a gateway holds it exclusively only during its recovery) for a share.
    pub fn acquire(db: &Path) -> Result<ApplyAlive, LockError> {
        ApplyAlive::hold(open(&beside(db, ".apply.lock"))?)
    }

    fn hold(file: File) -> Result<ApplyAlive, LockError> {
        file.lock_shared()
            .map_err(LockError::io("lock", "the apply lock"))?;
        Ok(ApplyAlive(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_gateway_lock_on_one_database_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state/gateway.db");
        let mut first = GatewayLock::acquire(&db).unwrap();
        first.announce("127.0.0.1:8700").unwrap();
        let err = GatewayLock::acquire(&db).err().unwrap();
        assert!(matches!(&err, LockError::Held { path, .. } if path.ends_with("gateway.db.lock")));
        let err = err.to_string();
        let pid = std::process::id();
        assert!(
            err.contains(&format!(
                "another gateway (pid {pid}, listening on http://127.0.0.1:8700)"
            )) && err.contains(&format!("{}.lock", db.display())),
            "{err}"
        );
        drop(first);
        assert!(
            GatewayLock::acquire(&db).is_ok(),
            "free once the first is gone"
        );
    }

    #[test]
    fn applies_are_seen_alive_while_they_hold_their_share() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gateway.db");
        let apply = ApplyAlive::acquire(&db).unwrap();
        assert!(NoApplyAlive::check(&db).unwrap().is_none());
        drop(apply);
        let alone = NoApplyAlive::check(&db).unwrap().expect("no apply alive");
        let shared = alone.share().unwrap();
        assert!(NoApplyAlive::check(&db).unwrap().is_none());
        assert!(
            ApplyAlive::acquire(&db).is_ok(),
            "shares do not exclude each other"
        );
        drop(shared);
    }
}
