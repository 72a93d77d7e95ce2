//! The run-time side of `#[pgfresh::test]` (the attribute itself is `pgfresh-macros`): one
//! [`TestFn`] implementation per argument form, each a straight line — build the test's
//! runtime, get its database, run the test, then drop the database or, when the test failed
//! (a panic, or an `Err`), keep it and say how to connect.
//!
//! Nothing here is meant to be called by hand: the attribute's expansion does.

use std::future::Future;

use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::harness::{DEFAULT_POOL_SIZE, Harness};
use crate::recipe::EmbeddedSeedFile;
use crate::testdb::TestDb;

/// What the attribute tells the runner about one test.
#[derive(Debug)]
pub struct TestArgs {
    /// `module::path::test_name`, for messages.
    pub path: &'static str,
    /// The migrations to apply; `None` for an empty database (`migrations = false`, or no
    /// `./migrations` folder).
    pub migrator: Option<&'static Migrator>,
    /// The fixture files, in order, embedded at compile time.
    pub fixtures: &'static [EmbeddedSeedFile],
    /// `flavor = "multi_thread"`.
    pub multi_thread: bool,
    /// `worker_threads = N` (multi-thread runtime only).
    pub worker_threads: Option<usize>,
    /// `role = "name"`: tests connect as this role (see [`Harness::with_role`]).
    pub role: Option<&'static str>,
}

/// Whether a test's result is a success: `()`, or `Ok` of a `Result`.
pub trait TestTermination {
    /// `false` when the test failed, so that its database is kept.
    fn is_success(&self) -> bool;
}

impl TestTermination for () {
    fn is_success(&self) -> bool {
        true
    }
}

impl<T, E> TestTermination for Result<T, E> {
    fn is_success(&self) -> bool {
        self.is_ok()
    }
}

/// A test function the attribute can run: one implementation per argument form.
#[diagnostic::on_unimplemented(
    message = "`#[pgfresh::test]` cannot pass its database as this argument",
    label = "the test's argument",
    note = "take one of: `PgPool`, `PoolConnection<Postgres>`, `TestDb`, \
            `(PgPoolOptions, PgConnectOptions)` (or the two as separate arguments), or nothing; \
            and return `()` or `Result<(), E>` with `E: Debug`"
)]
pub trait TestFn {
    /// What the test returns.
    type Output;

    /// Runs the test.
    fn run_test(self, args: TestArgs) -> Self::Output;
}

impl<Fut: Future> TestFn for fn() -> Fut {
    type Output = Fut::Output;

    fn run_test(self, args: TestArgs) -> Self::Output {
        block_on(&args, self())
    }
}

impl<Fut> TestFn for fn(PgPool) -> Fut
where
    Fut: Future,
    Fut::Output: TestTermination,
{
    type Output = Fut::Output;

    fn run_test(self, args: TestArgs) -> Self::Output {
        with_db(args, |db| {
            let pool = db.pool().clone();
            async move { (self(pool).await, Some(db)) }
        })
    }
}

impl<Fut> TestFn for fn(PoolConnection<Postgres>) -> Fut
where
    Fut: Future,
    Fut::Output: TestTermination,
{
    type Output = Fut::Output;

    fn run_test(self, args: TestArgs) -> Self::Output {
        with_db(args, |db| async move {
            let conn = db
                .pool()
                .acquire()
                .await
                .unwrap_or_else(|e| panic!("pgfresh could not connect to {}: {e}", db.name()));
            (self(conn).await, Some(db))
        })
    }
}

impl<Fut> TestFn for fn(PgPoolOptions, PgConnectOptions) -> Fut
where
    Fut: Future,
    Fut::Output: TestTermination,
{
    type Output = Fut::Output;

    fn run_test(self, args: TestArgs) -> Self::Output {
        with_db(args, |db| {
            let (pool, connect) = options(&db);
            async move { (self(pool, connect).await, Some(db)) }
        })
    }
}

impl<Fut> TestFn for fn((PgPoolOptions, PgConnectOptions)) -> Fut
where
    Fut: Future,
    Fut::Output: TestTermination,
{
    type Output = Fut::Output;

    fn run_test(self, args: TestArgs) -> Self::Output {
        with_db(args, |db| {
            let options = options(&db);
            async move { (self(options).await, Some(db)) }
        })
    }
}

impl<Fut> TestFn for fn(TestDb) -> Fut
where
    Fut: Future,
    Fut::Output: TestTermination,
{
    type Output = Fut::Output;

    fn run_test(self, args: TestArgs) -> Self::Output {
        with_db(args, |mut db| {
            // The test owns the guard; when it drops it without failing, it comes back here.
            let slot = db.hand_back();
            async move {
                let output = self(db).await;
                let db = slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                (output, db)
            }
        })
    }
}

/// Pool options for a test that builds its own pool, and the options of its database; the
/// guard's own pool is closed (the test connects as it likes).
fn options(db: &TestDb) -> (PgPoolOptions, PgConnectOptions) {
    drop(db.pool().close());
    (
        PgPoolOptions::new().max_connections(DEFAULT_POOL_SIZE),
        db.connect_options(),
    )
}

/// Runs `test` with a database on the test's runtime, then ends the database by the test's
/// result. A panic in the test unwinds through the guard, which keeps the database.
fn with_db<Fut, Out>(args: TestArgs, test: impl FnOnce(TestDb) -> Fut) -> Out
where
    Fut: Future<Output = (Out, Option<TestDb>)>,
    Out: TestTermination,
{
    block_on(&args, async {
        let harness = match args.migrator {
            Some(migrator) => Harness::new(migrator),
            None => Harness::empty(),
        }
        .with_embedded_fixtures(args.fixtures);
        let harness = match args.role {
            Some(role) => harness.with_role(role),
            None => harness,
        };
        let db = harness.test_db().await.unwrap_or_else(|e| {
            panic!(
                "pgfresh could not provide a test database for {}: {e}",
                args.path
            )
        });
        let (output, db) = test(db).await;
        if let Some(db) = db {
            db.end_test(!output.is_success());
        }
        output
    })
}

/// Runs `test` on a runtime of the flavor the attribute asked for.
fn block_on<F: Future>(args: &TestArgs, test: F) -> F::Output {
    let mut builder = if args.multi_thread {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = args.worker_threads {
            builder.worker_threads(n);
        }
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build the runtime of {}: {e}", args.path))
        .block_on(test)
}
