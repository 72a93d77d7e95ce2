//! [`Harness`]: hands out test databases for one migration set.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

use crate::admin;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
use crate::server::{CONNECT_TIMEOUT, Server, Urgency, address};
use crate::testdb::{Parts, TestDb};
use crate::worker;

/// Connections per test pool unless [`Harness::with_pool_size`] says otherwise: enough for a
/// test that runs a few queries concurrently, small enough that many tests in parallel stay far
/// below the server's `max_connections`.
pub const DEFAULT_POOL_SIZE: u32 = 5;

#[derive(Debug)]
enum Origin {
    Static(&'static Migrator),
    Dir(PathBuf),
}

/// Hands out databases migrated with one migration set.
///
/// The first [`test_db`](Harness::test_db) of a process starts (or connects to) the server and
/// builds the set's template once; every call clones the template into a new database.
/// A `Harness` is cheap and meant to live in a `static`:
///
/// ```no_run
/// use pgfresh::{Harness, TestDb};
///
/// static MIGRATOR: pgfresh::sqlx::migrate::Migrator = pgfresh::sqlx::migrate!();
/// static HARNESS: Harness = Harness::new(&MIGRATOR);
///
/// async fn db() -> TestDb {
///     HARNESS.test_db().await.unwrap_or_else(|e| panic!("{e}"))
/// }
/// ```
#[derive(Debug)]
pub struct Harness {
    origin: Origin,
    pool_size: u32,
    set: OnceCell<Result<Arc<MigrationSet>>>,
}

impl Harness {
    /// A harness for a migrator, usually `sqlx::migrate!()` in a `static`.
    pub const fn new(migrator: &'static Migrator) -> Self {
        Self {
            origin: Origin::Static(migrator),
            pool_size: DEFAULT_POOL_SIZE,
            set: OnceCell::const_new(),
        }
    }

    /// A harness for a migrations folder read at run time (relative paths are relative to the
    /// working directory, which `cargo test` sets to the crate's root). The folder is read on
    /// the first [`test_db`](Harness::test_db); a missing or unreadable folder is reported there.
    pub fn from_dir(path: impl Into<PathBuf>) -> Self {
        Self {
            origin: Origin::Dir(path.into()),
            pool_size: DEFAULT_POOL_SIZE,
            set: OnceCell::const_new(),
        }
    }

    /// Sets the maximum number of connections of each test's pool (default
    /// [`DEFAULT_POOL_SIZE`]).
    #[must_use]
    pub const fn with_pool_size(mut self, connections: u32) -> Self {
        self.pool_size = if connections == 0 { 1 } else { connections };
        self
    }

    /// A new database migrated to head, with a pool whose first connection is open (see
    /// [`TestDb::pool`]).
    ///
    /// # Errors
    ///
    /// When the configuration is invalid, no server can be started or reached, the migrations
    /// cannot be read or fail, or the server refuses to create the database. Every message says
    /// what to do.
    pub async fn test_db(&self) -> Result<TestDb> {
        self.hand_out(None).await
    }

    /// A new database migrated only up to `version` (inclusive), for testing a migration
    /// itself: seed data at one revision, then move with [`TestDb::migrate_to`]. `0` is base:
    /// no migration applied, only sqlx's bookkeeping table. Templates of partial revisions are
    /// cached like the head template.
    ///
    /// # Errors
    ///
    /// As [`test_db`](Harness::test_db), and when `version` is not one of the set's versions
    /// (the message lists the known ones).
    pub async fn test_db_at(&self, version: i64) -> Result<TestDb> {
        self.hand_out(Some(version)).await
    }

    async fn migration_set(&self) -> Result<Arc<MigrationSet>> {
        self.set
            .get_or_init(|| async {
                match &self.origin {
                    Origin::Static(m) => {
                        Ok(MigrationSet::from_migrator(m, "the Harness's Migrator"))
                    }
                    Origin::Dir(dir) => MigrationSet::from_dir(dir).await,
                }
                .map(Arc::new)
            })
            .await
            .clone()
    }

    async fn hand_out(&self, upto: Option<i64>) -> Result<TestDb> {
        let config = Config::global()?;
        let set = self.migration_set().await?;
        if let Some(version) = upto.filter(|v| *v != 0) {
            set.check_version(version)?;
        }
        let migrations = set.clone();
        let size = self.pool_size;
        let (server, name, prefetched) =
            worker::call(move |state| async move { state.test_db(set, upto, size).await }).await?;

        let options = test_options(&server, &name);
        let mut url = server.url.clone();
        url.set_path(&name);
        let source = server.source;
        let password_from_user = server.password_from_user;
        // Only copies of the server's settings cross over: the server itself stays on the
        // worker's runtime.
        drop(server);

        let pool = match prefetched {
            Some(pool) => pool,
            None => match connect_pool(&options, size).await {
                Ok(pool) => pool,
                Err(e) => {
                    let dropped = name.clone();
                    let _ = worker::call(move |state| async move {
                        admin::drop_test_db(&*state.server().await?, Urgency::Now, &dropped).await
                    })
                    .await;
                    return Err(Error::connect(
                        address(&options),
                        "the server has connections to spare (max_connections)",
                        e,
                    ));
                }
            },
        };
        Ok(TestDb::new(Parts {
            pool,
            name,
            options,
            url,
            source,
            keep: config.keep,
            password_from_user,
            migrations,
        }))
    }
}

/// How a test connects to its database `name`.
pub(crate) fn test_options(server: &Server, name: &str) -> PgConnectOptions {
    server
        .options
        .clone()
        .database(name)
        .application_name("pgfresh-test")
}

/// A test's pool of at most `size` connections, with its first connection open: a server that
/// refuses the test fails here, not in the test's first query.
pub(crate) async fn connect_pool(
    options: &PgConnectOptions,
    size: u32,
) -> std::result::Result<PgPool, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options.clone())
        .await;
    match pool {
        // A pool that timed out says nothing of why; one direct attempt names the cause in
        // the server's words (say, too many connections for the role).
        Err(sqlx::Error::PoolTimedOut) => Err(
            match tokio::time::timeout(Duration::from_secs(3), PgConnection::connect_with(options))
                .await
            {
                Ok(Err(cause)) => cause,
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    sqlx::Error::PoolTimedOut
                }
                Err(_) => sqlx::Error::PoolTimedOut,
            },
        ),
        pool => pool,
    }
}
