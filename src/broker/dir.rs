//! The broker's directory `pgfresh-<uid>-broker-<key>` (made by [`crate::server`], private
//! to the user) and the files in it: the socket, the broker's alive lock and the spawn lock.
//! Shared by both sides: the client ([`super::client`]) and the broker ([`super::serve`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::error::BrokerError;

/// The broker's socket, in its directory.
pub(crate) const SOCKET: &str = "socket";
/// Held by the live broker for as long as it runs.
pub(crate) const ALIVE_LOCK: &str = "alive.lock";
/// Held by the process starting a broker, so that processes starting together start one.
pub(super) const SPAWN_LOCK: &str = "spawn.lock";
/// The line a broker prints on its standard output once it accepts connections.
pub(crate) const READY_LINE: &str = "ready";

/// Locks the file `name` of the broker's directory `dir` without waiting, making both if need
/// be; `None` while another process holds it. A broker that leaves removes its directory
/// ([`remove_dir`]): a lock taken on a file that is gone by then is no lock, and is taken again
/// on the file there now.
pub(super) fn try_lock_in(dir: &Path, name: &str) -> Result<Option<File>, BrokerError> {
    for _ in 0..100 {
        crate::server::make_broker_dir(dir).map_err(|e| BrokerError::Private(Box::new(e)))?;
        let path = dir.join(name);
        let file = private_file(&path)?;
        match file.try_lock() {
            Ok(()) if is_at(&file, &path) => return Ok(Some(file)),
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(BrokerError::dir("cannot lock", path, e));
            }
        }
    }
    Err(BrokerError::KeepsVanishing(dir.join(name)))
}

/// Whether `file` is the file at `path` (not one removed from there since it was opened).
fn is_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(there)) => open.dev() == there.dev() && open.ino() == there.ino(),
        _ => false,
    }
}

/// Removes the broker's directory `dir` unless a broker serves it or a process is starting one
/// in it: with both its locks held here, no process can be about to start a broker in it nor be
/// served by one. A process that opened a lock file before it went finds that out when it
/// locks it ([`try_lock_in`]) and makes the directory again. `false` when the directory stays.
pub(crate) fn remove_dir(dir: &Path) -> bool {
    lock_at(dir, SPAWN_LOCK).is_some_and(|spawn| remove_holding(dir, &spawn))
}

/// [`remove_dir`], for a process that holds the spawn lock `_spawn` already.
pub(super) fn remove_holding(dir: &Path, _spawn: &File) -> bool {
    let Some(_alive) = lock_at(dir, ALIVE_LOCK) else {
        return false;
    };
    // A socket left here is a dead broker's: nothing answers on it.
    for name in [SOCKET, ALIVE_LOCK, SPAWN_LOCK] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    std::fs::remove_dir(dir).is_ok()
}

/// The lock file `name` of the existing directory `dir`, locked, unless another process holds
/// it (or it is not the file there any more).
fn lock_at(dir: &Path, name: &str) -> Option<File> {
    let path = dir.join(name);
    let file = private_file(&path).ok()?;
    (file.try_lock().is_ok() && is_at(&file, &path)).then_some(file)
}

/// Whether a broker serves the broker's directory `dir`, or a process is starting one there
/// (for `pgfresh gc`).
#[cfg(feature = "cli")]
pub(crate) fn in_use(dir: &Path) -> bool {
    [SPAWN_LOCK, ALIVE_LOCK].iter().any(|name| {
        File::open(dir.join(name))
            .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
    })
}

/// Opens (creating, mode `0600`) a lock file of the broker's directory.
pub(crate) fn private_file(path: &Path) -> Result<File, BrokerError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| BrokerError::dir("cannot open", path, e))
}

#[cfg(all(test, any(feature = "docker", feature = "local")))]
mod tests {
    use super::*;

    #[test]
    fn a_leaving_broker_removes_its_directory_and_a_lock_on_a_removed_file_is_taken_again() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("pgfresh-broker");
        // A process opens the spawn lock; the broker, leaving, removes the directory first.
        let stale = try_lock_in(&dir, SPAWN_LOCK).unwrap().expect("free");
        drop(stale);
        let opened = private_file(&dir.join(SPAWN_LOCK)).unwrap();
        assert!(remove_dir(&dir));
        assert!(!dir.exists());
        // The process's lock is on a file that is gone: no lock.
        opened.try_lock().unwrap();
        assert!(!is_at(&opened, &dir.join(SPAWN_LOCK)));
        drop(opened);
        // Taken again, the directory made again.
        let lock = try_lock_in(&dir, SPAWN_LOCK).unwrap().expect("free");
        assert!(is_at(&lock, &dir.join(SPAWN_LOCK)));
        assert!(try_lock_in(&dir, SPAWN_LOCK).unwrap().is_none(), "held");
        // While a process starts a broker there, or a broker serves it, the directory stays.
        assert!(!remove_dir(&dir));
        drop(lock);
        let alive = private_file(&dir.join(ALIVE_LOCK)).unwrap();
        alive.try_lock().unwrap();
        assert!(!remove_dir(&dir));
        assert!(dir.exists());
        drop(alive);
        assert!(remove_dir(&dir));
        assert!(!dir.exists());
    }
}
