//! Find or start: the one skeleton of the sources that start a server of their own (docker,
//! local).
//!
//! In the run directory (see [`super::rundir`]), under its lock: reuse the recorded server when
//! it answers, else remove what is left of it and start one, give it a password hashed for fast
//! logins, record it for the other processes, and start the guardian that stops it once no
//! process has used it for the linger time. Each source supplies only what differs, through
//! [`Launch`].

use std::any::Any;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::rundir::{Record, RunDir};
use super::{Started, admin_options, guardian};
use crate::config::{Config, ServerSource};
use crate::error::{Error, Result};

/// Test-speed server settings for the servers pgfresh starts: durability traded for speed,
/// which a throwaway test server never needs.
pub(super) const SPEED_SETTINGS: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "autovacuum=off",
    // Dynamic shared memory (parallel queries) as files in the data directory rather than in
    // /dev/shm: Docker gives a container 64 MB of /dev/shm by default, and a cluster's segments
    // there would outlive its directory.
    "dynamic_shared_memory_type=mmap",
    // Room for 8 processes x 8 test threads x the default pool of 5, plus pgfresh's own
    // connections (at most 5 per process, and a prefetched pool's first): 8 x (40 + 5 + 1) = 368.
    "max_connections=400",
];

/// Whatever keeps a server (or this process's use of it) alive while the process runs.
pub(super) type Keepalive = Box<dyn Any + Send + Sync>;

/// What a source that starts its own server supplies to [`find_or_start`].
pub(super) trait Launch: Sync {
    /// The kind of server, which names its run directories.
    const KIND: ServerSource;

    /// The source reported to tests (the embedded source runs the local source's servers).
    fn source(&self) -> ServerSource {
        Self::KIND
    }

    /// The user the server runs as, when it is not this process's.
    fn owner(&self) -> Option<(u32, u32)> {
        None
    }

    /// What tells servers apart (the binaries, the image): processes with the same key share one.
    fn key(&self) -> String;

    /// Whether processes can share a server here at all (else each starts its own).
    fn shareable(&self) -> bool;

    /// Removes what is left of a recorded server that no longer answers.
    fn discard(&self, _dead: &Record) {}

    /// Starts a server in `dir`. In per-process mode (`shared` false) the source also ties the
    /// server's life to this process; what it returns keeps the server alive.
    async fn launch(&self, dir: &Arc<RunDir>, shared: bool) -> Result<(Record, Keepalive)>;

    /// The guardian's cleanup once the server has lingered.
    fn cleanup(&self, dir: &RunDir, record: &Record) -> guardian::Cleanup;

    /// What to check when a connection to the server fails.
    fn hint(&self, dir: &RunDir, record: &Record) -> String;

    /// The cluster's data directory, when it is on this machine's file system.
    fn data_dir(&self, _dir: &RunDir) -> Option<std::path::PathBuf> {
        None
    }
}

/// The recorded server of `source` when it answers, else a new one. See the module docs.
pub(super) async fn find_or_start<L: Launch>(config: &Config, source: &L) -> Result<Started> {
    let shared = source.shareable() && crate::os::RUNS_CONSTRUCTORS;
    let mut key = source.key();
    if !shared {
        key = format!("{key}-{}", std::process::id());
    }
    let dir = Arc::new(RunDir::open(config, L::KIND, &key, source.owner())?);
    let lock = dir.lock_async().await?;

    if let Some(record) = dir.record()? {
        if let Some(conn) = answers(&record.options()).await {
            tracing::debug!(source = %source.source(), port = record.port, "reusing the running server");
            let lease = dir.lease()?;
            drop(lock);
            let hint = source.hint(&dir, &record);
            let mut started = record.started(source.source(), hint, Box::new(lease));
            started.connection = Some(conn);
            started.data_dir = source.data_dir(&dir);
            return Ok(started);
        }
        tracing::info!(
            source = %source.source(),
            port = record.port,
            "the recorded server does not answer; starting a new one"
        );
        source.discard(&record);
        dir.clear_record();
    }

    let (record, keepalive) = source.launch(&dir, shared).await?;
    prefer_md5(&record.options(), &record.password).await?;
    dir.write_record(&record)?;
    let lease = if shared {
        if let Some(linger) = config.linger {
            let cleanup = source.cleanup(&dir, &record);
            if let Err(e) = guardian::linger(dir.path(), &record.generation, linger, &cleanup) {
                // Nothing would ever stop the server: stop it now, and record none.
                dir.clear_record();
                cleanup.run();
                return Err(run_dir_error(dir.path(), "cannot start the guardian", e));
            }
        }
        Some(dir.lease()?)
    } else {
        None
    };
    drop(lock);
    let hint = source.hint(&dir, &record);
    let mut started = record.started(source.source(), hint, Box::new((keepalive, lease)));
    started.data_dir = source.data_dir(&dir);
    Ok(started)
}

fn run_dir_error(path: &std::path::Path, reason: &str, e: io::Error) -> Error {
    Error::RunDir {
        path: path.display().to_string(),
        reason: format!("{reason}: {e}"),
        remedy: "Check that this program can run itself again (std::env::current_exe)".into(),
        source: Some(Arc::new(e)),
    }
}

/// Stores the superuser's password as an MD5 hash on a server pgfresh started, whose host
/// authentication method is `md5`. SCRAM costs ~60 ms per connection in a debug build (the
/// client derives the key with 4096 HMAC rounds), paid by every test's pool; MD5 costs
/// microseconds. The server is a throwaway one on loopback, so that trade is right there; a
/// `DB_URL` server keeps whatever its owner chose.
async fn prefer_md5(options: &PgConnectOptions, password: &str) -> Result<()> {
    // Not logged: the statement carries the password.
    let mut conn = options
        .clone()
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| Error::database("connecting to set the password", e))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET password_encryption = 'md5'; SET client_min_messages = error; \
         ALTER ROLE CURRENT_USER PASSWORD '{password}'"
    )))
    .execute(&mut conn)
    .await
    .map_err(|e| Error::database("setting the password", e))?;
    let _ = conn.close().await;
    Ok(())
}

/// A connection to the server at `options` when it answers within a few seconds (for reusing
/// a recorded server); it becomes the process's first connection (see [`Started`]).
async fn answers(options: &PgConnectOptions) -> Option<PgConnection> {
    let options = admin_options(options);
    let attempt = tokio::time::timeout(Duration::from_secs(5), options.connect());
    attempt.await.ok()?.ok()
}
