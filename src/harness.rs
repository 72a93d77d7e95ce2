//! [`Harness`]: hands out test databases for one migration set.

use std::path::PathBuf;
use std::sync::Arc;

use sqlx::migrate::Migrator;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::migrations::{MigrationSet, Origin};
use crate::server::address;
use crate::template::Recipe;
use crate::testdb::TestDb;
use crate::{pool, worker};

/// Connections per test pool unless [`Harness::with_pool_size`] says otherwise: enough for a
/// test that runs a few queries concurrently, small enough that many tests in parallel stay far
/// below the server's `max_connections`.
pub const DEFAULT_POOL_SIZE: u32 = 5;

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
        Self::from_origin(Origin::Static(migrator))
    }

    /// A harness for a migrations folder read at run time (relative paths are relative to the
    /// working directory, which `cargo test` sets to the crate's root). The folder is read on
    /// the first [`test_db`](Harness::test_db); a missing or unreadable folder is reported there.
    pub fn from_dir(path: impl Into<PathBuf>) -> Self {
        Self::from_origin(Origin::Dir(path.into()))
    }

    pub(crate) const fn from_origin(origin: Origin) -> Self {
        Self {
            origin,
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
        self.request(None).await
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
        self.request(Some(version)).await
    }

    async fn migration_set(&self) -> Result<Arc<MigrationSet>> {
        self.set
            .get_or_init(|| async { self.origin.load().await.map(Arc::new) })
            .await
            .clone()
    }

    /// Asks the worker for a database of the set at `upto` (head when `None`) and connects
    /// its pool on the caller's runtime, unless the worker prefetched one.
    async fn request(&self, upto: Option<i64>) -> Result<TestDb> {
        let config = Config::global()?;
        let set = self.migration_set().await?;
        if let Some(version) = upto.filter(|v| *v != 0) {
            set.check_version(version)?;
        }
        let recipe = Recipe::new(set.clone(), upto);
        let size = self.pool_size;
        let mut handout =
            worker::call(move |shared| async move { shared.hand_out(recipe, size).await }).await?;
        let pool = match handout.pool.take() {
            Some(pool) => pool,
            None => match pool::connect(&handout.options, size).await {
                Ok(pool) => pool,
                Err(e) => {
                    let name = handout.name.clone();
                    let _ = worker::call(move |shared| async move { shared.drop_now(&name).await })
                        .await;
                    return Err(Error::connect(
                        address(&handout.options),
                        "the server has connections to spare (max_connections)",
                        e,
                    ));
                }
            },
        };
        Ok(TestDb::new(handout, pool, config.keep, set))
    }
}
