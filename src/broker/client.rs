//! The broker's client over a Unix socket in the broker's directory (Linux, macOS): finding
//! and starting the broker, a claim, and the [`Lease`] and [`Turn`] a test process holds.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::claim::{Claim, Granted, Lease, Turn, this_run};
use super::dir::{
    ALIVE_LOCK, READY_LINE, SOCKET, SPAWN_LOCK, private_file, remove_holding, try_lock_in,
};
use super::error::BrokerError;
use super::protocol::{self, Grant, Reply, Request};
use crate::address::Address;
use crate::config::{Config, SERVE_VAR, ServerSource};
use crate::server;

/// How long a process waits for a broker it started to accept connections (it finds the server
/// the process has just found or started), and for another process that is starting one.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long a process waits for the broker's answer to a claim (it may have to clone the
/// template) before doing the work itself. A claim waiting for another process's build of the
/// template is told so every [`STILL_WAITING`](protocol::STILL_WAITING), and waits on.
const CLAIM_WAIT: Duration = Duration::from_secs(60);
/// How long a process waits for the broker to keep or drop a database.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long a process waits for the broker to check its server (see `Server::gone`: up to
/// twice its own 5 s) after the process could not reach the database it was handed.
const CHECK_WAIT: Duration = Duration::from_secs(15);
/// How long a process starting a broker waits for the one leaving to let go of the directory.
const LEAVING_WAIT: Duration = Duration::from_secs(5);
/// How long `pgfresh gc` waits for a broker it asked to leave.
#[cfg(feature = "cli")]
const LEAVE_WAIT: Duration = Duration::from_secs(10);

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
    pub async fn start(self) -> Result<(), BrokerError> {
        tokio::task::spawn_blocking(move || start(&self.dir))
            .await
            .map_err(|e| BrokerError::Start(std::io::Error::other(e)))?
    }
}

impl Broker {
    /// The broker of this environment, unless `PGFRESH_BROKER=off`, this process is a broker,
    /// or there is no directory for one (a build without the docker and local sources).
    pub fn find(config: &Config) -> Option<Self> {
        // A broker is the executable run again: it needs pgfresh's constructor (`crate::hook`).
        if !config.broker || !crate::os::RUNS_CONSTRUCTORS || std::env::var_os(SERVE_VAR).is_some()
        {
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
            // This broker is gone, or going: the normal path starts a fresh one.
            Err(why @ (BrokerError::Ended | BrokerError::ServerGone(_))) => {
                tracing::info!("asking a fresh broker: {why}");
                Claim::NotRunning
            }
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
    pub async fn starting(&self) -> Result<Option<Starting>, BrokerError> {
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
                    return Err(BrokerError::StartedElsewhere(START_WAIT.as_secs()));
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            if StdStream::connect(dir.join(SOCKET)).is_ok() {
                return Ok(None);
            }
            Ok(Some(Starting { dir, lock }))
        })
        .await
        .map_err(|e| BrokerError::Io(std::io::Error::other(e)))?
    }

    async fn try_claim(
        &self,
        mut stream: UnixStream,
        hash: &str,
        suite: &str,
    ) -> Result<Claim, BrokerError> {
        let claim = Request::Claim {
            hash: hash.to_owned(),
            suite: suite.to_owned(),
            run: this_run(),
        };
        stream.write_all(protocol::line(&claim).as_bytes()).await?;
        // The broker writes nothing after its answer until asked again: the reader, dropped
        // then, holds nothing the lease would miss.
        let mut reader = tokio::io::BufReader::new(&mut stream);
        let reply = loop {
            let mut line = String::new();
            let read = tokio::time::timeout(CLAIM_WAIT, reader.read_line(&mut line))
                .await
                .map_err(|_| BrokerError::NoAnswer(CLAIM_WAIT.as_secs()))?;
            if read? == 0 {
                return Err(BrokerError::Ended);
            }
            match protocol::parse(&line)? {
                Reply::Waiting => {}
                reply => break reply,
            }
        };
        drop(reader);
        match reply {
            Reply::Build => Ok(Claim::Build(Turn { _stream: stream })),
            Reply::Granted(grant) => {
                let stream = stream.into_std()?;
                stream.set_nonblocking(false)?;
                Ok(Claim::Granted(Box::new(granted(grant, Lease { stream })?)))
            }
            Reply::Declined { reason } => Err(BrokerError::Refused(reason)),
            Reply::ServerGone { reason } => Err(BrokerError::ServerGone(reason)),
            other => Err(BrokerError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// The database of `grant`, held by `lease`; the notices of the broker's sweep are shown here,
/// as they would have been had it run in this process.
fn granted(grant: Grant, lease: Lease) -> Result<Granted, BrokerError> {
    for notice in &grant.notices {
        eprintln!("{notice}");
    }
    let address = |e: &dyn std::fmt::Display| BrokerError::Address(e.to_string());
    let url = url::Url::parse(&grant.url).map_err(|e| address(&e))?;
    let options = PgConnectOptions::from_str(url.as_str())
        .map_err(|e| address(&e))?
        .application_name("pgfresh-test");
    let source = match grant.source.as_str() {
        "url" => ServerSource::Url,
        "docker" => ServerSource::Docker,
        "local" => ServerSource::Local,
        "embedded" => ServerSource::Embedded,
        other => return Err(address(&format!("an unknown source {other:?}"))),
    };
    Ok(Granted {
        address: Address {
            name: grant.name,
            options,
            url,
            source,
            password_from_user: grant.password_from_user,
        },
        lease,
    })
}

/// Ends the broker serving `dir` (for `pgfresh gc`, before it removes the servers): asks it to
/// leave at once ([`Request::Leave`]), then removes its directory once it has, waiting at most
/// [`LEAVE_WAIT`].
#[cfg(feature = "cli")]
pub(crate) fn end(dir: &Path) -> Result<(), BrokerError> {
    // No socket: the broker is starting, or leaving already.
    if let Ok(mut stream) = StdStream::connect(dir.join(SOCKET)) {
        stream.set_read_timeout(Some(ANSWER_WAIT))?;
        stream.write_all(protocol::line(&Request::Leave).as_bytes())?;
        // `done`, or the end of the connection: either way it is leaving.
        let _ = BufReader::new(&stream).read_line(&mut String::new());
    }
    let since = std::time::Instant::now();
    // The broker removes its directory as it leaves; else it is removed here.
    while dir.exists() && !super::dir::remove_dir(dir) {
        if since.elapsed() > LEAVE_WAIT {
            return Err(BrokerError::StillServing(LEAVE_WAIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// See [`Starting::start`].
fn start(dir: &Path) -> Result<(), BrokerError> {
    // A broker that holds its lock but does not answer is leaving (idle, or its server is
    // gone) or stuck: this process waits a moment for it, then does without it.
    let alive = private_file(&dir.join(ALIVE_LOCK))?;
    let since = std::time::Instant::now();
    while alive.try_lock().is_err() {
        if since.elapsed() > LEAVING_WAIT {
            return Err(BrokerError::Leaving);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(alive);
    let exe = std::env::current_exe().map_err(BrokerError::Start)?;
    let mut cmd = Command::new(exe);
    cmd.env(SERVE_VAR, dir).stdin(Stdio::null());
    let mut child =
        crate::os::start_helper(cmd, READY_LINE, START_WAIT).map_err(BrokerError::Start)?;
    // Reaps it when it exits, so that a long-lived process does not collect a zombie.
    std::thread::spawn(move || child.wait());
    Ok(())
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
    pub fn keep(self, run: &str, suite: &str) -> Result<(), BrokerError> {
        let keep = Request::Keep {
            run: run.to_owned(),
            suite: suite.to_owned(),
        };
        self.ask(&keep, ANSWER_WAIT)
    }

    /// Asks the broker to drop the database now, and waits for it.
    pub fn drop_now(self) -> Result<(), BrokerError> {
        self.ask(&Request::Drop, ANSWER_WAIT)
    }

    /// Tells the broker that the database could not be reached (`reason`): it checks its
    /// server, then drops the database (`None`), or says why its server is gone and hands
    /// nothing more out (`Some`, that reason; also when the broker itself ended).
    pub fn unreachable(self, reason: String) -> Option<String> {
        match self.ask(&Request::Unreachable { reason }, CHECK_WAIT) {
            Ok(()) => None,
            Err(gone @ (BrokerError::ServerGone(_) | BrokerError::Ended)) => Some(gone.to_string()),
            Err(why) => {
                tracing::debug!("the broker did not check its server: {why}");
                None
            }
        }
    }

    fn ask(mut self, request: &Request, wait: Duration) -> Result<(), BrokerError> {
        let stream = &mut self.stream;
        stream.set_read_timeout(Some(wait))?;
        stream.write_all(protocol::line(request).as_bytes())?;
        let mut line = String::new();
        if BufReader::new(stream).read_line(&mut line)? == 0 {
            return Err(BrokerError::Ended);
        }
        match protocol::parse(&line)? {
            Reply::Done => Ok(()),
            Reply::Failed { reason } => Err(BrokerError::Refused(reason)),
            Reply::ServerGone { reason } => Err(BrokerError::ServerGone(reason)),
            other => Err(BrokerError::Unexpected(format!("{other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
