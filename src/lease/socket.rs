//! The broker's client over a Unix socket in the broker's directory (Linux, macOS): finding
//! and starting the broker, a claim, and the [`Lease`] and [`Turn`] a test process holds.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream as StdStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::claim::{Claim, Granted, Lease, SUPPORTED, Turn, this_run};
use crate::config::{Config, Source};
use crate::server;

pub(crate) use crate::config::SERVE_VAR;
/// The broker's socket, in its directory.
pub(crate) const SOCKET: &str = "socket";
/// Held by the live broker for as long as it runs.
pub(crate) const ALIVE_LOCK: &str = "alive.lock";
/// Held by the process starting a broker, so that processes starting together start one.
const SPAWN_LOCK: &str = "spawn.lock";
/// The line a broker prints on its standard output once it accepts connections.
pub(crate) const READY_LINE: &str = "ready";

/// How long a process waits for a broker it started to accept connections (it finds the server
/// the process has just found or started), and for another process that is starting one.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long a process waits for the broker's answer to a claim (it may have to clone the
/// template) before doing the work itself. A claim waiting for another process's build of the
/// template is told so every [`STILL_WAITING`], and waits on.
const CLAIM_WAIT: Duration = Duration::from_secs(60);
/// How often the broker tells a claim waiting for a build that it still waits.
pub(crate) const STILL_WAITING: Duration = Duration::from_secs(10);
/// How long a process waits for the broker to keep or drop a database.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// The broker of this process's environment.
#[derive(Debug)]
pub(crate) struct Broker {
    dir: PathBuf,
}

/// The spawn lock, held: see [`Broker::starting`]. Dropped without a broker started (say,
/// the server could not be had), it removes the broker's directory.
#[derive(Debug)]
pub(crate) struct Starting {
    dir: PathBuf,
    lock: File,
}

impl Drop for Starting {
    fn drop(&mut self) {
        remove_holding(&self.dir, &self.lock);
    }
}

impl Starting {
    /// Starts the broker: the test binary itself, run again with [`SERVE_VAR`] (see
    /// [`crate::broker`]). The spawn lock is released when it answers, or failed to.
    pub async fn start(self) -> Result<(), String> {
        tokio::task::spawn_blocking(move || start(&self.dir))
            .await
            .map_err(|e| format!("starting the broker: {e}"))?
    }
}

impl Broker {
    /// The broker of this environment, unless `PGFRESH_BROKER=off`, this process is a broker,
    /// or there is no directory for one (a build without the docker and local sources).
    pub fn find(config: &Config) -> Option<Self> {
        if !config.broker || !SUPPORTED || std::env::var_os(SERVE_VAR).is_some() {
            return None;
        }
        let dir = server::broker_dir(config, &environment_key())?;
        Some(Self { dir })
    }

    /// A clone of the template `hash` (of `suite`) from the broker.
    pub async fn claim(&self, hash: &str, suite: &str) -> Claim {
        let Ok(stream) = UnixStream::connect(self.dir.join(SOCKET)).await else {
            return Claim::NotRunning;
        };
        match self.try_claim(stream, hash, suite).await {
            Ok(claim) => claim,
            Err(why) => {
                tracing::debug!("the broker handed out no database: {why}");
                Claim::Declined
            }
        }
    }

    /// The right to start the broker, once this process holds the spawn lock; `None` when a
    /// broker answers by then (another process started it meanwhile). Processes starting
    /// together wait here, holding no connection to the server, while one of them finds (or
    /// starts) the server and then the broker; for at most [`START_WAIT`], so that where the
    /// server cannot be had (say, every connection slot is taken) each process says so in
    /// its own time instead of one after another.
    pub async fn starting(&self) -> Result<Option<Starting>, String> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let since = std::time::Instant::now();
            let lock = loop {
                if let Some(lock) = try_lock_in(&dir, SPAWN_LOCK)? {
                    break lock;
                }
                if StdStream::connect(dir.join(SOCKET)).is_ok() {
                    return Ok(None);
                }
                if since.elapsed() > START_WAIT {
                    return Err(format!(
                        "another process has been starting the broker for {} s",
                        START_WAIT.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            if StdStream::connect(dir.join(SOCKET)).is_ok() {
                return Ok(None);
            }
            Ok(Some(Starting { dir, lock }))
        })
        .await
        .map_err(|e| format!("starting the broker: {e}"))?
    }

    async fn try_claim(
        &self,
        mut stream: UnixStream,
        hash: &str,
        suite: &str,
    ) -> Result<Claim, String> {
        let request = json!({ "claim": { "hash": hash, "suite": suite, "run": this_run() } });
        stream
            .write_all(format!("{request}\n").as_bytes())
            .await
            .map_err(|e| format!("sending the claim: {e}"))?;
        // The broker writes nothing after its answer until asked again: the reader, dropped
        // then, holds nothing the lease would miss.
        let mut reader = tokio::io::BufReader::new(&mut stream);
        let answer = loop {
            let mut line = String::new();
            match tokio::time::timeout(CLAIM_WAIT, reader.read_line(&mut line)).await {
                Err(_) => return Err(format!("no answer within {} s", CLAIM_WAIT.as_secs())),
                Ok(Err(e)) => return Err(format!("reading the answer: {e}")),
                Ok(Ok(_)) => {}
            }
            let answer: Value =
                serde_json::from_str(&line).map_err(|e| format!("{e}: {line:?}"))?;
            if answer.get("waiting").is_none() {
                break answer;
            }
        };
        drop(reader);
        if answer.get("build").is_some() {
            return Ok(Claim::Build(Turn { _stream: stream }));
        }
        let Some(granted) = answer.get("granted") else {
            return Err(answer["none"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned());
        };
        // What the broker's sweep would have told the user, had it run here.
        for notice in granted["notices"].as_array().into_iter().flatten() {
            eprintln!("{}", notice.as_str().unwrap_or_default());
        }
        let text = |key: &str| granted[key].as_str().unwrap_or_default().to_owned();
        let name = text("name");
        let url = url::Url::parse(&text("url")).map_err(|e| format!("the URL: {e}"))?;
        let options = PgConnectOptions::from_str(url.as_str())
            .map_err(|e| format!("the URL: {e}"))?
            .application_name("pgfresh-test");
        let source = match text("source").as_str() {
            "url" => Source::Url,
            "docker" => Source::Docker,
            "local" => Source::Local,
            other => return Err(format!("an unknown source {other:?}")),
        };
        let stream = stream
            .into_std()
            .and_then(|s| s.set_nonblocking(false).map(|()| s))
            .map_err(|e| format!("keeping the connection: {e}"))?;
        Ok(Claim::Granted(Box::new(Granted {
            lease: Lease { stream },
            name,
            url,
            options,
            source,
            password_from_user: granted["password_from_user"].as_bool().unwrap_or(true),
        })))
    }
}

/// See [`Starting::start`].
fn start(dir: &Path) -> Result<(), String> {
    // A broker that holds its lock but does not answer is leaving (idle) or stuck: this
    // process does without it rather than wait.
    let alive = private_file(&dir.join(ALIVE_LOCK))?;
    if alive.try_lock().is_err() {
        return Err("the broker is leaving".into());
    }
    drop(alive);
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let mut child = Command::new(exe)
        .env(SERVE_VAR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Out of the test run's process group: a Ctrl-C meant for the tests does not reach it.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the broker: {e}"))?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout.take(64)).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx
        .recv_timeout(START_WAIT)
        .is_ok_and(|line| line.trim_end() == READY_LINE);
    if !ready {
        let _ = child.kill();
    }
    // Reaps it when it exits, so that a long-lived process does not collect a zombie.
    std::thread::spawn(move || child.wait());
    if ready {
        Ok(())
    } else {
        Err(format!(
            "the broker did not start within {} s",
            START_WAIT.as_secs()
        ))
    }
}

/// Locks the file `name` of the broker's directory `dir` without waiting, making both if need
/// be; `None` while another process holds it. A broker that leaves removes its directory
/// ([`remove_dir`]): a lock taken on a file that is gone by then is no lock, and is taken again
/// on the file there now.
fn try_lock_in(dir: &Path, name: &str) -> Result<Option<File>, String> {
    for _ in 0..100 {
        server::make_broker_dir(dir).map_err(|e| e.to_string())?;
        let path = dir.join(name);
        let file = private_file(&path)?;
        match file.try_lock() {
            Ok(()) if is_at(&file, &path) => return Ok(Some(file)),
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(format!("locking {name}: {e}")),
        }
    }
    Err(format!("{} keeps being removed", dir.join(name).display()))
}

/// Whether `file` is the file at `path` (not one removed from there since it was opened).
fn is_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
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
fn remove_holding(dir: &Path, _spawn: &File) -> bool {
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
pub(crate) fn private_file(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

/// A key for everything in the environment that chooses or configures the server, and the
/// working directory (relative paths in it mean another place elsewhere).
fn environment_key() -> String {
    use sha2::{Digest, Sha256};
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| {
            (k.starts_with("PG") || k == "DB_URL" || k == "DATABASE_URL") && k != SERVE_VAR
        })
        .collect();
    vars.sort();
    let mut hash = Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION"));
    for (k, v) in vars {
        hash.update(format!("\0{k}={v}"));
    }
    if let Ok(dir) = std::env::current_dir() {
        hash.update(format!("\0{}", dir.display()));
    }
    hash.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Lease {
    /// Gives the database back for the broker to drop. `false` when the broker is gone: the
    /// caller drops it.
    pub fn release(mut self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        // The broker never writes unasked: readable means closed.
        // (`Ok(0)` is the close, `Ok(n)` a broken protocol: either way the caller drops it.)
        match self.stream.read(&mut [0]) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(0 | 1..) => false,
        }
    }

    /// Asks the broker to keep the database for run `run` of `suite`.
    pub fn keep(self, run: &str, suite: &str) -> Result<(), String> {
        self.ask(&json!({ "keep": { "run": run, "suite": suite } }))
    }

    /// Asks the broker to drop the database now, and waits for it.
    pub fn drop_now(self) -> Result<(), String> {
        self.ask(&json!({ "drop": {} }))
    }

    fn ask(mut self, request: &Value) -> Result<(), String> {
        let stream = &mut self.stream;
        stream
            .set_read_timeout(Some(ANSWER_WAIT))
            .map_err(|e| e.to_string())?;
        writeln!(stream, "{request}").map_err(|e| format!("asking the broker: {e}"))?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .map_err(|e| format!("reading the broker's answer: {e}"))?;
        let answer: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line:?}"))?;
        match answer.get("error") {
            None if answer.get("ok").is_some() => Ok(()),
            None => Err(format!("an unexpected answer {line:?}")),
            Some(e) => Err(e.as_str().unwrap_or_default().to_owned()),
        }
    }
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

    #[test]
    fn a_process_that_started_no_broker_removes_the_directory_it_made() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("pgfresh-broker");
        let starting = |dir: &Path| Starting {
            dir: dir.to_owned(),
            lock: try_lock_in(dir, SPAWN_LOCK).unwrap().expect("free"),
        };
        // Say, the server could not be had.
        drop(starting(&dir));
        assert!(!dir.exists());
        // A broker it started serves the directory: it stays.
        let started = starting(&dir);
        let alive = private_file(&dir.join(ALIVE_LOCK)).unwrap();
        alive.try_lock().unwrap();
        drop(started);
        assert!(dir.join(ALIVE_LOCK).exists());
    }
}
