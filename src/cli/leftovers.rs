//! Removing everything pgfresh created: what `pgfresh gc` does.
//!
//! - on the server a URL names: every database carrying a pgfresh marker (test databases,
//!   kept ones, ready clones, templates), and only those;
//! - on this machine: the local clusters and containers pgfresh started with the run
//!   directory `PGFRESH_RUN_DIR` (default `/dev/shm`), found by their run directories and by
//!   the containers' label `dev.pgfresh.rundir`; the brokers still running, which are asked to
//!   leave before anything else goes (so that none hands out a database on a server removed
//!   under it); and the directories of brokers that were killed (a broker that leaves removes
//!   its own).
//!
//! Tests running at the same time lose their databases: run it between runs.

use std::fmt;
#[cfg(unix)]
use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::process::{Command, Stdio};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::admin::drop_database;
use crate::config::{Config, redact_url};
use crate::error::{Error, Result};
use crate::marker::Mark;
use crate::server::CONNECT_TIMEOUT;
#[cfg(unix)]
use crate::server::{DATA_DIR, KEPT_MARKER, LOG_FILE, PASSWORD_FILE, STATE_FILE};

/// Something pgfresh created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(super) enum Leftover {
    /// A database on the server, with the kind its marker gives (`test`, `template`, …).
    Database {
        /// Its name.
        name: String,
        /// `test`, `kept`, `ready`, `template`, `building`, `trash`.
        kind: String,
    },
    /// A local cluster pgfresh started, by its run directory.
    #[cfg(unix)]
    Cluster {
        /// The run directory (holding `data/`).
        dir: PathBuf,
    },
    /// A container pgfresh started.
    #[cfg(unix)]
    Container {
        /// The container id.
        id: String,
    },
    /// A broker that runs (see [`crate::broker`]), by its directory: asked to leave first.
    #[cfg(unix)]
    Broker {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory of a broker that is gone.
    #[cfg(unix)]
    BrokerDir {
        /// The directory.
        dir: PathBuf,
    },
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Database { name, kind } => write!(f, "database {name} ({kind})"),
            #[cfg(unix)]
            Self::Cluster { dir }
                if dir.join(KEPT_MARKER).exists() && !dir.join(STATE_FILE).exists() =>
            {
                write!(
                    f,
                    "local cluster in {} (stopped, its data kept for a restart)",
                    dir.display()
                )
            }
            #[cfg(unix)]
            Self::Cluster { dir } => write!(f, "local cluster in {}", dir.display()),
            #[cfg(unix)]
            Self::Container { id } => write!(f, "container {id}"),
            #[cfg(unix)]
            Self::Broker { dir } => write!(
                f,
                "running broker of {} (asked to leave before the servers go)",
                dir.display()
            ),
            #[cfg(unix)]
            Self::BrokerDir { dir } => write!(f, "broker directory {}", dir.display()),
        }
    }
}

/// Finds everything pgfresh created: the marked databases on the server `url` names (none when
/// `url` is `None`), and the clusters and containers it started on this machine.
///
/// # Errors
///
/// When `url` is malformed or its server cannot be reached.
pub(super) async fn find(url: Option<&str>) -> Result<Vec<Leftover>> {
    let mut found = Vec::new();
    if let Some(url) = url {
        let mut conn = connect(url).await?;
        found.extend(databases(&mut conn).await?);
        let _ = conn.close().await;
    }
    // Only PGFRESH_RUN_DIR matters here: a server choice that needs DB_URL, say, must not stop
    // a clean-up.
    let config = Config::from_lookup(|var| {
        (var == "PGFRESH_RUN_DIR")
            .then(|| std::env::var(var).ok())
            .flatten()
    })?;
    found.extend(on_this_machine(&config));
    // The running brokers first: none may hand out a database on a server removed under it.
    #[cfg(unix)]
    found.sort_by_key(|l| !matches!(l, Leftover::Broker { .. }));
    Ok(found)
}

/// The clusters, containers and broker directories of this machine's run directories, and the
/// containers labelled with a run directory base.
#[cfg(unix)]
fn on_this_machine(config: &Config) -> Vec<Leftover> {
    let mut found: Vec<Leftover> = run_dirs(config)
        .into_iter()
        .flat_map(|(dir, kind)| match kind {
            RunKind::Local => vec![Leftover::Cluster { dir }],
            RunKind::Docker(id) => id
                .map(|id| Leftover::Container { id })
                .into_iter()
                .collect(),
            RunKind::Broker { running: true } => vec![Leftover::Broker { dir }],
            RunKind::Broker { running: false } => vec![Leftover::BrokerDir { dir }],
        })
        .collect();
    for base in crate::server::run_base_dirs(config) {
        for id in labelled_containers(&base) {
            if !found.contains(&Leftover::Container { id: id.clone() }) {
                found.push(Leftover::Container { id });
            }
        }
    }
    found
}

/// None where pgfresh starts no servers of its own (Windows).
#[cfg(not(unix))]
fn on_this_machine(_config: &Config) -> Vec<Leftover> {
    Vec::new()
}

/// Removes `leftovers` (as [`find`] returned them); returns what could not be removed, with why.
///
/// # Errors
///
/// When `url` is malformed or its server cannot be reached.
pub(super) async fn remove(
    url: Option<&str>,
    leftovers: &[Leftover],
) -> Result<Vec<(Leftover, String)>> {
    let mut failed = Vec::new();
    let mut server = match url {
        Some(url) => Some(connect(url).await?),
        None => None,
    };
    let version = match &mut server {
        Some(conn) => server_version(conn).await?,
        None => 0,
    };
    for leftover in leftovers {
        let outcome = match (leftover, server.as_mut()) {
            (Leftover::Database { name, .. }, Some(conn)) => drop_database(version, conn, name)
                .await
                .map_err(|e| e.to_string()),
            (Leftover::Database { .. }, None) => Err("no server URL given".to_owned()),
            #[cfg(unix)]
            (Leftover::Container { id }, _) => remove_container(id),
            #[cfg(unix)]
            (Leftover::Cluster { dir }, _) => stop_cluster(dir),
            #[cfg(unix)]
            (Leftover::Broker { dir }, _) => crate::broker::end(dir).map_err(|e| e.to_string()),
            #[cfg(unix)]
            (Leftover::BrokerDir { dir }, _) => {
                if crate::broker::remove_dir(dir) {
                    Ok(())
                } else {
                    Err("a broker serves it again, or one is starting there".to_owned())
                }
            }
        };
        if let Err(why) = outcome {
            failed.push((leftover.clone(), why));
        }
    }
    Ok(failed)
}

async fn connect(url: &str) -> Result<PgConnection> {
    let options = PgConnectOptions::from_str(url).map_err(|e| Error::InvalidConfig {
        var: "--database-url",
        value: redact_url(url),
        reason: format!("the URL could not be parsed ({e})"),
    })?;
    let target = crate::server::address(&options);
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
        .map_err(|e| Error::connect(target, "the URL is right", e))
}

async fn server_version(conn: &mut PgConnection) -> Result<u32> {
    let v: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(conn)
        .await
        .map_err(|e| Error::database("reading the server version", e))?;
    Ok(u32::try_from(v).unwrap_or_default())
}

/// The marked databases, test databases first and templates last (so that clones go before the
/// template they came from).
async fn databases(conn: &mut PgConnection) -> Result<Vec<Leftover>> {
    let rows: Vec<(String, Option<String>, i32)> = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database'), datconnlimit \
         FROM pg_database ORDER BY datname",
    )
    .fetch_all(conn)
    .await
    .map_err(|e| Error::database("listing databases", e))?;
    let mut found: Vec<Leftover> = rows
        .into_iter()
        .filter(|(name, comment, limit)| Mark::created_by_pgfresh(name, comment.as_deref(), *limit))
        .map(|(name, comment, _)| {
            let kind = match comment.as_deref() {
                Some(c) => c
                    .strip_prefix("pgfresh:")
                    .and_then(|c| c.split_whitespace().next())
                    .unwrap_or_default(),
                None if name.starts_with("pgfresh_r_") => "ready",
                None if crate::names::owner_in_name(&name).is_some() => "test",
                None => "unmarked",
            }
            .to_owned();
            Leftover::Database { name, kind }
        })
        .collect();
    found.sort_by_key(|l| matches!(l, Leftover::Database { kind, .. } if kind == "template"));
    Ok(found)
}

#[cfg(unix)]
enum RunKind {
    Local,
    /// The container id, when a server is recorded.
    Docker(Option<String>),
    /// A broker's directory, and whether a broker serves it (or is starting there).
    Broker {
        running: bool,
    },
}

/// The run directories of running (or dead but not cleaned) servers, and the directories of
/// brokers that are gone.
#[cfg(unix)]
fn run_dirs(config: &Config) -> Vec<(PathBuf, RunKind)> {
    use crate::broker;
    use crate::server::{recorded_handle, trusted_run_dir};
    let mut found = Vec::new();
    let bases = crate::server::run_base_dirs(config);
    for entries in bases.iter().filter_map(|base| std::fs::read_dir(base).ok()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            // Only what pgfresh made for this user: another user's, or a planted one, is not
            // ours to stop or remove (see `server::private`).
            let own = format!("pgfresh-{}-", crate::os::euid());
            if !name.starts_with(&own) || !trusted_run_dir(&dir) {
                continue;
            }
            if name.contains("-local-") && dir.join(DATA_DIR).exists() {
                found.push((dir, RunKind::Local));
            } else if name.contains("-docker-") && dir.join(STATE_FILE).exists() {
                let id = recorded_handle(&dir);
                found.push((dir, RunKind::Docker(id)));
            } else if name.contains("-broker-") {
                let running = broker::in_use(&dir);
                found.push((dir, RunKind::Broker { running }));
            }
        }
    }
    found
}

/// Stops the cluster of run directory `dir` (as the directory's owner, PostgreSQL refusing
/// root), running or kept after its linger stop, and removes its data; its guardian then
/// exits by itself.
#[cfg(unix)]
fn stop_cluster(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let data = dir.join(DATA_DIR);
    if let Some(pg_ctl) = crate::server::recorded_handle(dir) {
        let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(pg_ctl);
        cmd.arg("-D")
            .arg(&data)
            .args(["stop", "-m", "fast"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if crate::os::euid() == 0 {
            cmd.uid(meta.uid()).gid(meta.gid());
        }
        let _ = cmd.status();
    }
    // The record, the log, and what a stopped cluster kept for a restart (the local source).
    for file in [STATE_FILE, LOG_FILE, PASSWORD_FILE, KEPT_MARKER] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    std::fs::remove_dir_all(&data).map_err(|e| format!("cannot remove {}: {e}", data.display()))
}

#[cfg(unix)]
fn remove_container(id: &str) -> Result<(), String> {
    let out = Command::new("docker")
        .args(["rm", "-f", "-v", id])
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Containers started with run directory `base` (label `dev.pgfresh.rundir`), through the
/// docker CLI when there is one.
#[cfg(unix)]
fn labelled_containers(base: &Path) -> Vec<String> {
    Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=dev.pgfresh.rundir={}", base.display()))
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
