//! [`Harness`]: hands out test databases for one template source.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::dispense::{Holder, dispenser};
use crate::error::{Error, Result};
use crate::migrations::Origin;
use crate::recipe::{EmbeddedSeedFile, Given, Recipe, SeedFile, Steps, Tool};
use crate::role::Role;
use crate::server::address;
use crate::testdb::TestDb;
use crate::tool::{self, BoxError, BuildFn};
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
    /// What builds the template before the seed files, as given.
    steps: Given,
    fixtures: Vec<SeedFileOrigin>,
    /// A builder method used where it means nothing, reported by the first `test_db`.
    misuse: Option<&'static str>,
    pool_size: u32,
    /// `with_role`: the role tests connect as, over `PGFRESH_ROLE`.
    role: Option<&'static str>,
    prepared: OnceCell<Result<Recipe>>,
}

/// Where a seed file (`with_fixtures`) comes from: read on first use, or embedded at compile
/// time.
#[derive(Debug)]
enum SeedFileOrigin {
    Path(PathBuf),
    Embedded(&'static [EmbeddedSeedFile]),
}

impl Harness {
    /// A harness for a migrator, usually `sqlx::migrate!()` in a `static`.
    pub const fn new(migrator: &'static Migrator) -> Self {
        Self::from_steps(Steps::Sqlx {
            set: Origin::Static(migrator),
            upto: None,
        })
    }

    /// A harness for a migrations folder read at run time (relative paths are relative to the
    /// working directory, which `cargo test` sets to the crate's root). The folder is read on
    /// the first [`test_db`](Harness::test_db); a missing or unreadable folder is reported there.
    pub fn from_dir(path: impl Into<PathBuf>) -> Self {
        Self::from_steps(Steps::Sqlx {
            set: Origin::Dir(path.into()),
            upto: None,
        })
    }

    /// A harness for the migration set `origin`.
    pub(crate) const fn from_origin(origin: Origin) -> Self {
        Self::from_steps(Steps::Sqlx {
            set: origin,
            upto: None,
        })
    }

    /// A harness for empty databases (`#[pgfresh::test(migrations = false)]`).
    pub(crate) const fn empty() -> Self {
        Self::from_steps(Steps::Nothing)
    }

    /// A harness whose template a migration tool builds: `argv` (program and arguments, the
    /// program looked up on `PATH`) runs once per template, with `DB_URL`, `DATABASE_URL`,
    /// `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD` and `PGDATABASE` naming the template being
    /// built. What it leaves is the template, cloned for every test like a migrated one.
    ///
    /// The template's hash covers `argv` and the files of [`inputs`](Self::inputs): name the
    /// migrations' folder there, or an edit would not rebuild the template. The command runs
    /// in [`current_dir`](Self::current_dir) (default: the working directory) for at most
    /// [`timeout`](Self::timeout) (default 10 minutes).
    ///
    /// ```no_run
    /// use std::sync::LazyLock;
    /// use pgfresh::Harness;
    ///
    /// static ALEMBIC: LazyLock<Harness> = LazyLock::new(|| {
    ///     Harness::from_command(["alembic", "upgrade", "head"])
    ///         .current_dir("alembic_project")
    ///         .inputs(["alembic_project"])
    /// });
    ///
    /// # async fn demo() -> pgfresh::Result<()> {
    /// let db = ALEMBIC.test_db().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_command<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Self::from_steps(Steps::Command(Tool::given(tool::Command {
            argv: argv.into_iter().map(Into::into).collect(),
            current_dir: None,
        })))
    }

    /// A harness whose template Rust code builds: `f` gets the template's connect options and
    /// migrates it (with refinery, diesel_migrations, sea-orm-migration, or by hand). `key`
    /// and the files of [`inputs`](Self::inputs) make the template's hash: **change `key`
    /// when the code changes** (a version string such as `"refinery v3"` will do), or tests
    /// keep cloning the template the old code built. `f` runs on pgfresh's worker for at most
    /// [`timeout`](Self::timeout); an error (with its `source()` chain) or a panic fails the
    /// build and the half-built template is dropped.
    ///
    /// ```no_run
    /// use pgfresh::Harness;
    /// use pgfresh::sqlx::{Connection, PgConnection};
    ///
    /// let harness = Harness::from_fn("accounts v1", |options| async move {
    ///     let mut conn = PgConnection::connect_with(&options).await?;
    ///     pgfresh::sqlx::raw_sql("CREATE TABLE account (id bigint PRIMARY KEY)")
    ///         .execute(&mut conn)
    ///         .await?;
    ///     Ok::<_, pgfresh::sqlx::Error>(())
    /// });
    /// ```
    pub fn from_fn<F, Fut, E>(key: impl Into<String>, f: F) -> Self
    where
        F: Fn(PgConnectOptions) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let f: Arc<BuildFn> = Arc::new(move |options| {
            let fut = f(options);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        Self::from_steps(Steps::Function(Tool::given(tool::Function {
            key: key.into(),
            f,
        })))
    }

    const fn from_steps(steps: Given) -> Self {
        Self {
            steps,
            fixtures: Vec::new(),
            misuse: None,
            pool_size: DEFAULT_POOL_SIZE,
            role: None,
            prepared: OnceCell::const_new(),
        }
    }

    /// For [`from_command`](Self::from_command) and [`from_fn`](Self::from_fn): files and
    /// folders whose contents make the template's hash, with the command (or key). Each
    /// file's path relative to its input root and its bytes count; folders are walked in
    /// name order, skipping what tools write on their own (`__pycache__`, `*.pyc`,
    /// `.pytest_cache`, `.mypy_cache`, `.ruff_cache`) and version-control metadata (`.git`,
    /// `.hg`, `.svn`). Relative paths are relative to the working directory (the crate root
    /// under `cargo test`), not to `current_dir`. A path that does not exist fails the first
    /// [`test_db`](Self::test_db).
    #[must_use]
    pub fn inputs<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        let paths = paths.into_iter().map(Into::into);
        match &mut self.steps {
            Steps::Command(t) => t.inputs.extend(paths),
            Steps::Function(t) => t.inputs.extend(paths),
            _ => {
                self.misuse =
                    Some("inputs applies to Harness::from_command and Harness::from_fn only");
            }
        }
        self
    }

    /// For [`from_command`](Self::from_command): the directory the command runs in (relative
    /// to the working directory).
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        match &mut self.steps {
            Steps::Command(t) => t.tool.current_dir = Some(dir.into()),
            _ => self.misuse = Some("current_dir applies to Harness::from_command only"),
        }
        self
    }

    /// For [`from_command`](Self::from_command) and [`from_fn`](Self::from_fn): how long
    /// building the template may take (default [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT),
    /// 10 minutes). A command that runs longer is killed with every process it started; a
    /// function is cancelled.
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        match &mut self.steps {
            Steps::Command(t) => t.timeout = limit,
            Steps::Function(t) => t.timeout = limit,
            _ => {
                self.misuse =
                    Some("timeout applies to Harness::from_command and Harness::from_fn only");
            }
        }
        self
    }

    /// Applies the SQL files `paths`, in order, once after the migrations: the template is
    /// built with them (its hash covers every file's name and bytes, so editing one builds a
    /// new template), and every test clones the seeded database instead of replaying them.
    /// Each file runs in its own transaction; an error names the file, line and column.
    /// Relative paths are relative to the working directory (the crate root under
    /// `cargo test`); the files are read on the first [`test_db`](Harness::test_db).
    ///
    /// ```no_run
    /// # async fn demo() -> pgfresh::Result<()> {
    /// let harness = pgfresh::Harness::from_dir("migrations")
    ///     .with_fixtures(["tests/fixtures/users.sql", "tests/fixtures/posts.sql"]);
    /// let db = harness.test_db().await?; // migrated, and seeded with both files
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_fixtures<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.fixtures
            .extend(paths.into_iter().map(|p| SeedFileOrigin::Path(p.into())));
        self
    }

    /// Fixtures the test attribute embedded at compile time.
    pub(crate) fn with_embedded_fixtures(mut self, fixtures: &'static [EmbeddedSeedFile]) -> Self {
        if !fixtures.is_empty() {
            self.fixtures.push(SeedFileOrigin::Embedded(fixtures));
        }
        self
    }

    /// The migration set's origin, when the template is built from a sqlx set.
    pub(crate) fn sqlx_origin(&self) -> Option<&Origin> {
        match &self.steps {
            Steps::Sqlx { set, .. } => Some(set),
            _ => None,
        }
    }

    /// Sets the maximum number of connections of each test's pool (default
    /// [`DEFAULT_POOL_SIZE`]).
    #[must_use]
    pub const fn with_pool_size(mut self, connections: u32) -> Self {
        self.pool_size = if connections == 0 { 1 } else { connections };
        self
    }

    /// Tests connect as the role `name`, which is not a superuser: pgfresh makes it when it is
    /// missing (`LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`, with a password derived from the
    /// server's), the migrations run as it, and it owns the template and every clone, so that
    /// a statement or a query that needs more than the application's role has fails in the
    /// tests as it would in production. The same as `PGFRESH_ROLE`, which this overrides; a
    /// template built as another role is another template.
    ///
    /// The server's role (or `DB_URL`'s) needs `CREATEROLE` to make the role, unless a
    /// superuser made it once (the error says how).
    #[must_use]
    pub const fn with_role(mut self, name: &'static str) -> Self {
        self.role = Some(name);
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

    /// The recipe of the head template: the source read (a folder, the fixture files) on
    /// first use.
    async fn head(&self) -> Result<&Recipe> {
        let prepared = self.prepared.get_or_init(|| async {
            if let Some(misuse) = self.misuse {
                return Err(Error::Misuse {
                    what: misuse.into(),
                });
            }
            let steps = self.steps.read().await?;
            let role = match self.role {
                Some(name) => Some(Role::parse("Harness::with_role", name)?),
                None => match &Config::global()?.role {
                    Some(name) => Some(Role::parse("PGFRESH_ROLE", name)?),
                    None => None,
                },
            };
            Ok(Recipe::new(steps, self.read_fixtures()?).with_role(role))
        });
        prepared.await.as_ref().map_err(Clone::clone)
    }

    fn read_fixtures(&self) -> Result<Arc<[SeedFile]>> {
        let mut all = Vec::new();
        for file in &self.fixtures {
            match file {
                SeedFileOrigin::Path(path) => {
                    let shown = path.display().to_string();
                    let sql = std::fs::read_to_string(path).map_err(|e| Error::SeedRead {
                        file: shown.clone(),
                        reason: e.to_string(),
                    })?;
                    all.push(SeedFile { path: shown, sql });
                }
                SeedFileOrigin::Embedded(fixtures) => {
                    all.extend(fixtures.iter().map(|f| SeedFile {
                        path: f.path.to_owned(),
                        sql: f.contents.to_owned(),
                    }))
                }
            }
        }
        Ok(all.into())
    }

    /// Asks the worker for a database of the template at `upto` (head when `None`) and
    /// connects its pool on the caller's runtime, unless the worker prefetched one.
    async fn request(&self, upto: Option<i64>) -> Result<TestDb> {
        let config = Config::global()?;
        let head = self.head().await?;
        let recipe = match (upto, &head.steps) {
            (None, _) => head.clone(),
            (Some(version), Steps::Sqlx { set, .. }) => {
                if version != 0 {
                    set.check_version(version)?;
                }
                let steps = Steps::Sqlx {
                    set: set.clone(),
                    upto: Some(version),
                };
                Recipe::new(steps, head.fixtures.clone()).with_role(head.role().cloned())
            }
            (Some(_), _) => {
                return Err(Error::Misuse {
                    what: format!(
                        "test_db_at needs a sqlx migration set (Harness::new or \
                         Harness::from_dir), and this harness builds its template from {}",
                        head.origin()
                    ),
                });
            }
        };
        let (set, suite) = (recipe.set().cloned(), recipe.suite().to_owned());
        let size = self.pool_size;
        // A database that cannot be reached is asked for once more: a connection cut as it
        // opens is a server restarting (as one that ran out of room for its WAL does; a full
        // disk then says so: the claim frees what is pgfresh's and names the disk), and a
        // broker's server can go away under it (the broker, told, checks, and when its server
        // is gone it hands out nothing more: the second claim goes to a fresh broker).
        let mut first_failure: Option<String> = None;
        let (handout, pool) = loop {
            let recipe = recipe.clone();
            let mut handout =
                worker::call(async move { dispenser().clone().hand_out(recipe, size).await })
                    .await?;
            let e = match handout.pool.take() {
                Some(pool) => break (handout, pool),
                None => match pool::connect(&handout.address.options, size).await {
                    Ok(pool) => break (handout, pool),
                    Err(e) => e,
                },
            };
            let name = handout.address.name.clone();
            let brokered = matches!(handout.holder, Holder::Broker(_));
            let found = handout
                .holder
                .unreachable(name.clone(), e.to_string())
                .await;
            let retry = brokered || matches!(e, sqlx::Error::Io(_));
            if retry && first_failure.is_none() {
                tracing::info!("could not connect to {name}; asking again: {e}");
                first_failure = Some(found.unwrap_or_else(|| e.to_string()));
                continue;
            }
            let hint = match (&first_failure, found) {
                (_, Some(found)) => format!("the server has connections to spare ({found})"),
                (Some(first), None) => format!(
                    "the server has connections to spare (the database asked for first could \
                     not be reached either: {first})"
                ),
                (None, None) => "the server has connections to spare (max_connections)".into(),
            };
            return Err(Error::connect(address(&handout.address.options), hint, e));
        };
        Ok(TestDb::new(handout, pool, config.keep, set, suite))
    }
}
