//! [`TestDb`]: one test's database, dropped when the guard goes.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::address::Address;
use crate::config::{KeepPolicy, ServerSource};
use crate::dispense::{Handout, Holder};
use crate::error::{Error, Result};
use crate::migrations::{MigrationSet, read_applied};

/// How long marking a database kept may take before the test goes on without it.
const KEEP_WAIT: Duration = Duration::from_secs(10);

/// A fresh database for one test, migrated and ready, with a pool connected to it.
///
/// The database is dropped when the guard is dropped, unless `PGFRESH_KEEP` says to keep it
/// (by default a database is kept when its test panicked, and pgfresh prints how to connect).
/// The drop runs in the background: the test does not wait for it, and the process waits for
/// the drops still under way when it exits (at most 10 s; a test binary always ends through
/// `exit`). Use [`TestDb::close`] to drop it now and see any error, or [`TestDb::keep`] to keep
/// it.
///
/// # Resource leaking
///
/// `Drop` does not run when the process ends through `std::process::exit`, a signal, or a
/// panic with `panic = "abort"`, nor for a `TestDb` stored in a `static`. The database then
/// stays on the server, its name starting with `pgfresh_`, until a later run's sweep finds its
/// process gone and drops it.
pub struct TestDb {
    pool: PgPool,
    address: Address,
    /// Who drops the database; `None` once it was dropped, kept, or handed on.
    holder: Option<Holder>,
    keep: KeepPolicy,
    /// The template's migration set, when it was built from one.
    migrations: Option<Arc<MigrationSet>>,
    /// The test suite the template belongs to (see [`crate::sweep`]).
    suite: String,
    /// `false` once the database was closed or kept explicitly.
    armed: bool,
    /// Under `#[pgfresh::test]`: where a guard dropped by a test that has not failed (yet)
    /// goes, so that the attribute decides once the test's result is known.
    hand_back: Option<HandBack>,
}

/// See [`TestDb::hand_back`].
pub(crate) type HandBack = Arc<Mutex<Option<TestDb>>>;

impl TestDb {
    /// The guard of the database the worker handed out, with its pool.
    pub(crate) fn new(
        handout: Handout,
        pool: PgPool,
        keep: KeepPolicy,
        migrations: Option<Arc<MigrationSet>>,
        suite: String,
    ) -> Self {
        Self {
            pool,
            address: handout.address,
            holder: Some(handout.holder),
            keep,
            migrations,
            suite,
            armed: true,
            hand_back: None,
        }
    }

    /// The pool connected to this test's database. It works on any runtime: the connections
    /// the test opens belong to the test's runtime, and a prefetched pool's first connection to
    /// pgfresh's worker, which lives as long as the process.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database's name, e.g. `pgfresh_3f9c0a1b_7d2e4f6a8b1c`.
    pub fn name(&self) -> &str {
        &self.address.name
    }

    /// Options to open more connections to this database (for an application under test
    /// that builds its own pool).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.address.options.clone()
    }

    /// A `postgres://` URL of this database, password included, for code that wants a URL.
    pub fn url(&self) -> String {
        self.address.url.to_string()
    }

    /// Which server source the database lives on.
    pub fn source(&self) -> ServerSource {
        self.address.source
    }

    /// The newest migration applied to this database, `None` when none is.
    ///
    /// # Errors
    ///
    /// When the migrations table cannot be read.
    pub async fn current_version(&self) -> Result<Option<i64>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| Error::database("connecting to read the applied migrations", e))?;
        let table = self
            .migrations
            .as_ref()
            .map_or("_sqlx_migrations", |set| &set.migrator.table_name);
        let applied = read_applied(&mut conn, table).await?.unwrap_or_default();
        Ok(applied
            .iter()
            .filter(|a| a.success)
            .map(|a| a.version)
            .max())
    }

    /// Moves this database up or down to `version` (`0` is base: every migration reverted),
    /// running the set's up or down migrations.
    ///
    /// # Errors
    ///
    /// When `version` is not one of the set's versions, when moving down would need a
    /// migration that has no `.down.sql`, or when a migration fails.
    pub async fn migrate_to(&self, version: i64) -> Result<()> {
        let Some(set) = &self.migrations else {
            return Err(Error::MigrationSource {
                location: "this database's template".into(),
                reason: "migrate_to needs a sqlx migration set (Harness::new or \
                         Harness::from_dir)"
                    .into(),
            });
        };
        if version != 0 {
            set.check_version(version)?;
        }
        let current = self.current_version().await?.unwrap_or(0);
        let fail = |e: sqlx::migrate::MigrateError| Error::MigrationSource {
            location: set.origin.clone(),
            reason: format!("migrating {} to {version}: {e}", self.address.name),
        };
        if version >= current {
            return set.migrator.run_to(version, &self.pool).await.map_err(fail);
        }
        if let Some(m) = set
            .ups()
            .find(|m| m.version > version && m.version <= current && set.down(m.version).is_none())
        {
            return Err(Error::MigrationSource {
                location: set.origin.clone(),
                reason: format!(
                    "cannot move {} down to {version}: migration {} ({}) has no .down.sql",
                    self.address.name, m.version, m.description
                ),
            });
        }
        set.migrator.undo(&self.pool, version).await.map_err(fail)
    }

    /// Closes the pool and drops the database now, reporting any error.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or refuses the `DROP DATABASE`.
    pub async fn close(mut self) -> Result<()> {
        self.armed = false;
        self.pool.close().await;
        match self.holder.take() {
            Some(holder) => holder.drop_now(self.address.name.clone()).await,
            None => Ok(()),
        }
    }

    /// Keeps the database after the guard is gone and returns its name. The pool is closed.
    ///
    /// The database is marked as kept by this run: it survives this process, and the next run
    /// of the same test suite drops it.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached to mark the database (then it is dropped by a later
    /// sweep like any database whose process is gone).
    pub fn keep(mut self) -> Result<String> {
        self.armed = false;
        drop(self.pool.close());
        self.mark_kept()?;
        Ok(self.address.name.clone())
    }

    /// Drops the database in the background: the test goes on at once, and the process waits
    /// for the drop when it exits.
    fn drop_later(&mut self) -> Result<()> {
        match self.holder.take() {
            Some(holder) => holder.release(self.address.name.clone()),
            None => Ok(()),
        }
    }

    /// Marks the database kept, so that it outlives this process (see [`crate::sweep`] for
    /// when it goes). Waits at most [`KEEP_WAIT`]: it runs from `Drop`.
    fn mark_kept(&mut self) -> Result<()> {
        let Some(holder) = self.holder.take() else {
            return Ok(());
        };
        let kept = holder.keep(&self.address.name, &self.suite, KEEP_WAIT);
        kept.unwrap_or_else(|| {
            Err(Error::Timeout {
                what: format!("keeping test database {}", self.address.name),
                seconds: KEEP_WAIT.as_secs(),
                remedy: "A later run sweeps it; `pgfresh gc` removes it at once".into(),
            })
        })
    }
}

impl TestDb {
    /// Under `#[pgfresh::test]`: when this guard is dropped while its test has not failed, it
    /// goes to the returned slot instead (see [`TestDb::end_test`]).
    pub(crate) fn hand_back(&mut self) -> HandBack {
        let slot = HandBack::default();
        self.hand_back = Some(slot.clone());
        slot
    }

    /// Drops or keeps the database now that its test ended, `failed` or not.
    pub(crate) fn end_test(mut self, failed: bool) {
        self.hand_back = None;
        self.finish(failed);
    }

    /// The end of the guard: keeps the database (`PGFRESH_KEEP`; a failed test's by default)
    /// and says how to connect, or drops it in the background.
    fn finish(&mut self, failed: bool) {
        self.armed = false;
        // Marks the pool closed at once, so clones still held by the code under test fail
        // fast instead of waiting on a database that is about to go.
        drop(self.pool.close());
        let keep = match self.keep {
            KeepPolicy::Never => false,
            KeepPolicy::Failed => failed,
            KeepPolicy::Always => true,
        };
        if keep {
            if let Err(e) = self.mark_kept() {
                eprintln!(
                    "pgfresh: could not keep test database {}: {e}",
                    self.address.name
                );
                return;
            }
            let why = if failed {
                "the test failed"
            } else {
                "PGFRESH_KEEP=always"
            };
            eprintln!(
                "pgfresh: kept database {} because {why}; connect with:\n    psql '{}'",
                self.address.name,
                self.address.shown_url()
            );
            return;
        }
        if let Err(e) = self.drop_later() {
            eprintln!(
                "pgfresh: could not drop test database {}: {e}",
                self.address.name
            );
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let failed = std::thread::panicking();
        if let Some(slot) = self.hand_back.take().filter(|_| !failed) {
            // The guts move to a new guard in the slot; this one is spent.
            self.armed = false;
            let moved = Self {
                pool: self.pool.clone(),
                address: self.address.clone(),
                holder: self.holder.take(),
                keep: self.keep,
                migrations: self.migrations.take(),
                suite: std::mem::take(&mut self.suite),
                armed: true,
                hand_back: None,
            };
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(moved);
            return;
        }
        self.finish(failed);
    }
}

impl fmt::Debug for TestDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDb")
            .field("address", &self.address)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}
