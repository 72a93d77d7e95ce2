//! pgfresh's own connections to a server: a small pool whose first connection holds the
//! process's owner lock.
//!
//! Every connection costs the server a backend start and the client a password exchange: 5.4 ms
//! of server CPU per connection with SCRAM (3.7 ms with `trust`) on the benchmark's 2-core
//! machine, where the server is the bottleneck. Under `cargo nextest run` every test is a process, so the connections a
//! process opens are paid per test. sqlx's `PgPool` opened three where one was enough: it gives
//! a connection back from a task it spawns, after a ping, and an `acquire` made in between opens
//! a new connection. Here a connection goes back to the pool when its guard drops, at once, and
//! work that is not urgent ([`Urgency::CanWait`]: a drop, a sweep, a refill) waits a moment for
//! a busy connection instead of opening another; only a test waiting for its database does.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;

use super::{CopyMethod, address, connect_direct};
use crate::config::SERVE_VAR;
use crate::error::{Error, Result};

/// At most this many connections per process, the owner lock's included.
const ADMIN_POOL_SIZE: usize = 4;

/// How long a task waits for a connection when all of them are busy.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The same in a broker, whose few connections serve every test process of the run, and whose
/// claims come in bursts (the processes that waited for a template's build are answered
/// together): a queue, not a sign of a stuck server. Below the test processes' wait for an
/// answer (`broker::client::CLAIM_WAIT`).
const BROKER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long work that can wait waits for a busy connection before it opens another.
const PATIENCE: Duration = Duration::from_millis(100);

/// A connection idle for longer than this is pinged before it is handed out, so that a server
/// that went away is reported as such (by the new connection attempt) instead of as a broken
/// pipe in the middle of a statement.
const CHECK_AFTER: Duration = Duration::from_secs(1);

/// What a failed connection attempt tells the user to check.
const HINT: &str = "it was not stopped or killed during the run";

/// Whether a task may open a connection when none is idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Urgency {
    /// A test is waiting: open one (up to [`ADMIN_POOL_SIZE`]).
    Now,
    /// Background work: wait up to [`PATIENCE`] for a busy one first.
    CanWait,
}

/// The pool. See the module docs.
pub(crate) struct AdminPool {
    options: PgConnectOptions,
    /// The server's `server_version_num`.
    version: u32,
    /// Set on every connection (see [`super::copy_method`]).
    copy_method: CopyMethod,
    slots: Mutex<Slots>,
    released: Notify,
    /// [`ACQUIRE_TIMEOUT`], or in a broker [`BROKER_ACQUIRE_TIMEOUT`].
    acquire_timeout: Duration,
}

/// The pool's connections.
#[derive(Default)]
struct Slots {
    /// Most recently used last.
    idle: Vec<(PgConnection, Instant)>,
    /// Idle plus in use plus being opened.
    open: usize,
}

/// A connection of the pool; it goes back when the guard drops.
pub(crate) struct AdminConn<'a> {
    conn: Option<PgConnection>,
    pool: &'a AdminPool,
}

impl AdminPool {
    /// A pool that opens connections with `options` to a server of `version` and starts with
    /// `first` (the connection holding the owner lock, already [`prepare`]d).
    pub(crate) fn new(
        options: PgConnectOptions,
        version: u32,
        copy_method: CopyMethod,
        first: PgConnection,
    ) -> Self {
        Self {
            options,
            version,
            copy_method,
            slots: Mutex::new(Slots {
                idle: vec![(first, Instant::now())],
                open: 1,
            }),
            released: Notify::new(),
            acquire_timeout: if std::env::var_os(SERVE_VAR).is_some() {
                BROKER_ACQUIRE_TIMEOUT
            } else {
                ACQUIRE_TIMEOUT
            },
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection, to do `why` (for error messages).
    pub(crate) async fn acquire(&self, urgency: Urgency, why: &str) -> Result<AdminConn<'_>> {
        let started = Instant::now();
        loop {
            // Registered before the state is read, so that a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let (taken, may_open) = {
                let mut slots = self.slots();
                let taken = slots.idle.pop();
                let waited = started.elapsed() >= PATIENCE;
                let may_open = taken.is_none()
                    && slots.open < ADMIN_POOL_SIZE
                    && (urgency == Urgency::Now || slots.open == 0 || waited);
                if may_open {
                    slots.open += 1;
                }
                (taken, may_open)
            };
            if let Some((conn, since)) = taken {
                let mut conn = self.guard(conn);
                if since.elapsed() < CHECK_AFTER || conn.ping().await.is_ok() {
                    return Ok(conn);
                }
                conn.discard();
                continue;
            }
            if may_open {
                // Gives the slot back if connecting fails or the caller stops waiting.
                let mut opening = Opening(Some(self));
                let mut conn = connect_direct(&self.options, HINT).await?;
                prepare(&mut conn, self.version, self.copy_method).await?;
                opening.0 = None;
                return Ok(self.guard(conn));
            }
            let elapsed = started.elapsed();
            let left = self.acquire_timeout.saturating_sub(elapsed);
            let wait = if urgency == Urgency::CanWait && elapsed < PATIENCE {
                PATIENCE - elapsed
            } else {
                left
            };
            if tokio::time::timeout(wait, released).await.is_err() && left <= wait {
                return Err(Error::Timeout {
                    what: format!(
                        "waiting for a free administrative connection to {why} on {}",
                        address(&self.options)
                    ),
                    seconds: self.acquire_timeout.as_secs(),
                    remedy: "The server is up but slow or busy; run fewer tests at once".into(),
                });
            }
        }
    }

    fn guard(&self, conn: PgConnection) -> AdminConn<'_> {
        AdminConn {
            conn: Some(conn),
            pool: self,
        }
    }

    /// A connection that will not come back (closed, broken, discarded) no longer counts.
    fn forget(&self) {
        let mut slots = self.slots();
        slots.open = slots.open.saturating_sub(1);
        drop(slots);
        self.released.notify_one();
    }
}

/// Session settings of every administrative connection, `version` being the server's.
///
/// On PostgreSQL 14+ a statement whose client is gone (the process exited or was killed in the
/// middle of a `CREATE DATABASE`) is cancelled within 100 ms instead of running to its end for
/// nobody, and the owner lock goes with its session: other processes see the death sooner. On
/// 18+ over a file system with reflinks, clones share the template's blocks (`copy_method`,
/// see [`super::copy_method`]). Set with `SET` rather than a startup option, which connection
/// poolers refuse.
pub(crate) async fn prepare(
    conn: &mut PgConnection,
    version: u32,
    copy_method: CopyMethod,
) -> Result<()> {
    let settings = [
        (version >= 140_000).then_some("SET client_connection_check_interval = 100"),
        copy_method.statement(),
    ];
    for sql in settings.into_iter().flatten() {
        sqlx::raw_sql(sql)
            .execute(&mut *conn)
            .await
            .map_err(|e| Error::database(format!("setting up a connection ({sql})"), e))?;
    }
    Ok(())
}

/// A slot taken for a connection being opened.
struct Opening<'a>(Option<&'a AdminPool>);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if let Some(pool) = self.0 {
            pool.forget();
        }
    }
}

impl AdminConn<'_> {
    /// Closes the connection instead of giving it back (its session state is unknown, say a
    /// lock it may still hold).
    pub(crate) fn discard(mut self) {
        self.conn = None;
        self.pool.forget();
    }
}

impl Deref for AdminConn<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("present until the guard drops")
    }
}

impl DerefMut for AdminConn<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("present until the guard drops")
    }
}

impl Drop for AdminConn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.slots().idle.push((conn, Instant::now()));
            self.pool.released.notify_one();
        }
    }
}
