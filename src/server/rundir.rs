//! The run directory where the processes sharing one server meet.
//!
//! Under `cargo nextest run` every test is a process of its own; they must share one server and
//! one template. The first process starts the server; the others find it here:
//!
//! - `lock`: held exclusively while a process looks for the server or starts one, and by the
//!   guardian while it stops it, so processes starting at the same moment never start two.
//! - `lease`: every process using the server holds a shared lock on it until it exits. The
//!   kernel releases it however the process ends (also `SIGKILL`).
//! - `state`: the port, password and generation of the running server.
//!
//! A guardian ([`super::guardian`], detached from the test run) polls the lease every second;
//! once no process has held it for more than the linger time, it takes `lock`, checks again,
//! removes `state` and stops the server. A process that starts within the linger time simply
//! reuses the server.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use sqlx::postgres::PgConnectOptions;

use super::Started;
use super::private::{self, Owner};
use crate::config::{Config, ServerSource};
use crate::error::Result;

/// The running server's record (see the module docs).
pub(crate) const STATE_FILE: &str = "state";

/// The start/stop lock, held exclusively ([`RunDir::lock`]).
pub(crate) const LOCK_FILE: &str = "lock";

/// The processes' leases on the server, held shared ([`RunDir::lease`]).
pub(crate) const LEASE_FILE: &str = "lease";

/// The directory and who owns it (the server's user when this process is root).
#[derive(Debug)]
pub(super) struct RunDir {
    path: PathBuf,
    owner: Owner,
}

/// What the process that started the server records for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub port: u16,
    pub password: String,
    /// What stops the server: the container id (docker), or the `pg_ctl` to run (local).
    pub handle: String,
    /// Changes with every start, so that a guardian of an earlier server never stops this one.
    pub generation: String,
}

impl Record {
    pub fn new(port: u16, password: String, handle: String) -> Self {
        let generation = uuid::Uuid::new_v4().simple().to_string();
        Self {
            port,
            password,
            handle,
            generation,
        }
    }

    /// The recorded server's superuser `postgres` on 127.0.0.1.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .password(&self.password)
            .database("postgres")
    }

    /// What a source hands back for the recorded server (the password is pgfresh's own, so it
    /// may be shown).
    pub fn started(
        &self,
        source: ServerSource,
        hint: String,
        keepalive: Box<dyn std::any::Any + Send + Sync>,
    ) -> Started {
        let url = url::Url::parse(&format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        ))
        .expect("a valid URL");
        Started {
            source,
            options: self.options(),
            url,
            password_from_user: false,
            password: Some(self.password.clone()),
            hint,
            data_dir: None,
            keepalive,
            connection: None,
        }
    }

    fn render(&self) -> String {
        format!(
            "port={}\npassword={}\nhandle={}\ngeneration={}\n",
            self.port, self.password, self.handle, self.generation
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        Some(Self {
            port: get("port")?.parse().ok()?,
            password: get("password")?,
            handle: get("handle")?,
            generation: get("generation")?,
        })
    }
}

/// The least room `/dev/shm` must have for pgfresh to put a new run directory there: a
/// cluster takes ~40 MB after `initdb`, and every database ~8 MB more (15 MB at 50 migrations);
/// a suite with one migration set, its 4 ready clones and 16 tests at a time peaks near
/// 300 MB, and this crate's own suite near 1.6 GB. Docker's default 64 MB `/dev/shm`
/// (GitLab's docker executor, GitHub's container jobs, devcontainers) is far below it.
pub(crate) const SHM_ROOM: u64 = 1 << 30;

/// Where run directories go: `PGFRESH_RUN_DIR`, else `/dev/shm` and the temporary directory;
/// on Windows the user's own temporary directory (`%LOCALAPPDATA%\Temp`, in the profile).
pub(crate) fn base_dirs(config: &Config) -> Vec<PathBuf> {
    match &config.run_dir {
        Some(dir) => vec![dir.clone()],
        None if cfg!(windows) => vec![std::env::temp_dir()],
        None => vec![PathBuf::from("/dev/shm"), std::env::temp_dir()],
    }
}

/// A run directory's name, `pgfresh-<uid>-<what>` (`what`: the kind of server and its key):
/// the user id keeps users apart in a shared `/tmp`. Windows' base is the user's own, so the
/// name there is `pgfresh-<what>`.
fn dir_name(what: &str) -> String {
    #[cfg(unix)]
    return format!("pgfresh-{}-{what}", crate::os::euid());
    #[cfg(not(unix))]
    format!("pgfresh-{what}")
}

/// The directory the run directory `name` goes in: `PGFRESH_RUN_DIR`; else the one it is in
/// already (so that processes of one run meet whatever the room left); else `/dev/shm` when
/// it is a writable directory with [`SHM_ROOM`] free (tmpfs: data never touches a disk);
/// else the temporary directory.
fn base_for(config: &Config, name: &str) -> PathBuf {
    let bases = base_dirs(config);
    if let Some(existing) = bases.iter().find(|b| b.join(name).exists()) {
        return existing.clone();
    }
    let roomy = |dir: &Path| {
        std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && !m.permissions().readonly())
            && crate::os::file_system_room(dir).is_some_and(|(free, _)| free >= SHM_ROOM)
    };
    match bases.as_slice() {
        [shm, tmp] if !roomy(shm) => tmp.clone(),
        _ => bases[0].clone(),
    }
}

/// The broker's directory `pgfresh-<uid>-broker-<key>` (see [`crate::broker`]), in the base a
/// run directory would go in.
#[cfg(unix)]
pub(crate) fn broker_dir(config: &Config, key: &str) -> PathBuf {
    let name = dir_name(&format!("broker-{key}"));
    base_for(config, &name).join(name)
}

/// Creates the broker's directory `path` unless it exists, private to this process's user
/// (who also runs the broker), and checks it and its base (see [`super::private`]).
#[cfg(unix)]
pub(crate) fn make_broker_dir(path: &Path) -> Result<()> {
    if let Some(base) = path.parent() {
        private::base(base)?;
    }
    private::directory(path, Owner::of(None))
}

/// Whether `dir` is a run directory pgfresh could have made for this process (see
/// [`super::private`]), for `pgfresh gc`.
#[cfg(all(unix, feature = "cli"))]
pub(crate) fn trusted_run_dir(dir: &Path) -> bool {
    private::existing(dir).is_some()
}

/// What stops the server recorded in the run directory `dir`, if one is recorded there and
/// the directory can be trusted (for `pgfresh gc`).
#[cfg(all(unix, feature = "cli"))]
pub(crate) fn recorded_handle(dir: &Path) -> Option<String> {
    let owner = private::existing(dir)?;
    let mut file = private::file(&dir.join(STATE_FILE), owner, false).ok()??;
    let mut text = String::new();
    io::Read::read_to_string(&mut file, &mut text).ok()?;
    Record::parse(&text).map(|r| r.handle)
}

/// A short stable key for `text` (8 hex digits), for directory names.
pub(super) fn key(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl RunDir {
    /// Opens (creating if needed) `pgfresh-<uid>-<kind>-<key>` ([`dir_name`]) in [`base_for`],
    /// private to the server's user (see [`super::private`]).
    pub fn open(
        config: &Config,
        kind: ServerSource,
        key: &str,
        server_user: Option<(u32, u32)>,
    ) -> Result<Self> {
        let name = dir_name(&format!("{kind}-{key}"));
        let base = base_for(config, &name);
        private::base(&base)?;
        let owner = Owner::of(server_user);
        private::reachable(&base, owner)?;
        let path = base.join(name);
        private::directory(&path, owner)?;
        let dir = Self { path, owner };
        for file in [LOCK_FILE, LEASE_FILE] {
            private::file(&dir.path.join(file), owner, true)?;
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file `name` of the directory, checked (see [`super::private`]).
    fn file(&self, name: &str) -> Result<File> {
        let path = self.path.join(name);
        private::file(&path, self.owner, false)?
            .ok_or_else(|| private::failed(&path, "cannot open it", io::ErrorKind::NotFound.into()))
    }

    /// Waits for the exclusive start/stop lock; released when the file is dropped.
    pub fn lock(&self) -> Result<File> {
        let file = self.file(LOCK_FILE)?;
        file.lock()
            .map_err(|e| private::failed(&self.path, "cannot lock it", e))?;
        Ok(file)
    }

    /// [`lock`](Self::lock) without blocking the runtime.
    pub async fn lock_async(self: &std::sync::Arc<Self>) -> Result<File> {
        let dir = self.clone();
        tokio::task::spawn_blocking(move || dir.lock())
            .await
            .map_err(|e| private::failed(&self.path, "cannot lock it", io::Error::other(e)))?
    }

    /// Takes this process's shared lease on the server; held until the file is dropped, that is
    /// until the process exits.
    pub fn lease(&self) -> Result<File> {
        let file = self.file(LEASE_FILE)?;
        file.lock_shared()
            .map_err(|e| private::failed(&self.path, "cannot take the lease", e))?;
        Ok(file)
    }

    /// The recorded server, if any; a record pgfresh did not write is refused.
    pub fn record(&self) -> Result<Option<Record>> {
        Ok(self.read(STATE_FILE)?.as_deref().and_then(Record::parse))
    }

    pub fn write_record(&self, record: &Record) -> Result<()> {
        private::write(&self.path.join(STATE_FILE), &record.render(), self.owner)
    }

    pub fn clear_record(&self) {
        let _ = std::fs::remove_file(self.path.join(STATE_FILE));
    }

    /// Writes the secret `text` to the file `name` (mode `0600`, for the server's user).
    #[cfg(all(unix, feature = "local"))]
    pub fn write_secret(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.path.join(name);
        private::write(&path, text, self.owner)?;
        Ok(path)
    }

    /// The secret in the file `name` (see [`write_secret`](Self::write_secret)), if there is one.
    #[cfg(all(unix, feature = "local"))]
    pub fn read_secret(&self, name: &str) -> Result<Option<String>> {
        self.read(name)
    }

    /// The text of the file `name`, if there is one; one pgfresh did not write is refused.
    fn read(&self, name: &str) -> Result<Option<String>> {
        let path = self.path.join(name);
        let Some(mut file) = private::file(&path, self.owner, false)? else {
            return Ok(None);
        };
        let mut text = String::new();
        io::Read::read_to_string(&mut file, &mut text)
            .map_err(|e| private::failed(&path, "cannot read it", e))?;
        Ok(Some(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let r = Record::new(5432, "pw".into(), "abc".into());
        assert_eq!(Record::parse(&r.render()), Some(r));
        assert_eq!(Record::parse("port=x\n"), None);
    }
}
