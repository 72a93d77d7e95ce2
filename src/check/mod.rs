//! Migration checks for any sqlx migration set, in the spirit of pytest-alembic: a linear
//! history, an upgrade from empty to head, up/down consistency with a readable schema diff,
//! and a committed schema snapshot that catches drift.
//!
//! Each check takes the set as a compiled-in [`Migrator`] (`&MIGRATOR`) or as a folder read at
//! run time (`"migrations"`), runs on throwaway databases from the same server and template
//! machinery as [`Harness`], and returns [`Passed`] or a [`Failure`] whose
//! message names the offending version and what to do:
//!
//! ```no_run
//! use pgfresh::check::{self, Failure};
//!
//! static MIGRATOR: pgfresh::sqlx::migrate::Migrator = pgfresh::sqlx::migrate!();
//!
//! #[tokio::test]
//! async fn migrations_are_sound() -> Result<(), Failure> {
//!     check::history(&MIGRATOR).await?;
//!     check::upgrade(&MIGRATOR).await?;
//!     check::up_down(&MIGRATOR).await?;
//!     check::snapshot(&MIGRATOR, "schema.sql").await?;
//!     Ok(())
//! }
//! ```
//!
//! The `pgfresh check` command runs all four on a folder, with progress bars, and
//! `pgfresh check --update` (or [`update_snapshot`]) writes the snapshot.

mod diff;
mod history;
mod problem;
mod report;
mod schema;
mod snapshot;
mod updown;
mod upgrade;

use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;
use sqlx::{Acquire, PgConnection, Postgres};

use crate::Harness;
use crate::error::Error;
use crate::migrations::{MigrationSet, Origin};

pub use problem::Problem;
pub use report::{Failure, Passed, Step};

/// The migrations a check runs on: `&'static Migrator` (usually `sqlx::migrate!()` in a
/// `static`), a folder as `&str`, `&Path` or `PathBuf`, read at run time (relative paths start
/// at the working directory, which `cargo test` sets to the crate's root), or any
/// `&'static Harness` (a `static`, or a `LazyLock` dereferenced): [`upgrade`] and [`snapshot`]
/// work on every template source; [`history`] and [`up_down`] need a sqlx migration set.
#[derive(Debug, Clone)]
pub struct Migrations(Target);

#[derive(Debug, Clone)]
enum Target {
    Set(Origin),
    Harness(&'static Harness),
}

impl From<&'static Migrator> for Migrations {
    fn from(m: &'static Migrator) -> Self {
        Self(Target::Set(Origin::Static(m)))
    }
}

impl From<&'static Harness> for Migrations {
    fn from(harness: &'static Harness) -> Self {
        Self(Target::Harness(harness))
    }
}

impl From<&str> for Migrations {
    fn from(dir: &str) -> Self {
        Self(Target::Set(Origin::Dir(dir.into())))
    }
}

impl From<&Path> for Migrations {
    fn from(dir: &Path) -> Self {
        Self(Target::Set(Origin::Dir(dir.into())))
    }
}

impl From<PathBuf> for Migrations {
    fn from(dir: PathBuf) -> Self {
        Self(Target::Set(Origin::Dir(dir)))
    }
}

/// Checks the set's history without a database: versions unique, positive and ordered; every
/// `.up.sql` with its `.down.sql` and the other way round; no `.down.sql` beside a simple
/// `.sql`; and, for a folder, no `.sql` file that sqlx 0.9.0 silently skips (0.9.1 refuses it).
///
/// # Errors
///
/// [`Failure::History`] listing every problem, each naming its version (or file) and the
/// remedy; [`Failure::Harness`] when the folder cannot be read.
pub async fn history(migrations: impl Into<Migrations>) -> Result<Passed, Failure> {
    Subject::load(migrations.into()).await?.history(None).await
}

/// [`history`], and the database's record of applied migrations against the set: each applied
/// migration still in the set and not edited since (checksums match), none left half-applied,
/// and none of the set's migrations older than the newest applied one left unapplied.
/// The database is only read. A database with no record at all (never migrated: a fresh
/// server's, say) is not compared: the check passes on the set's own history, with a note
/// that says so.
///
/// # Errors
///
/// As [`history`]; [`Failure::Harness`] when the database cannot be read.
pub async fn history_against<'c, A>(
    migrations: impl Into<Migrations>,
    db: A,
) -> Result<Passed, Failure>
where
    A: Acquire<'c, Database = Postgres>,
{
    let subject = Subject::load(migrations.into()).await?;
    let mut conn = db
        .acquire()
        .await
        .map_err(|e| Error::database("connecting to compare applied migrations", e))?;
    subject.history(Some(&mut conn)).await
}

/// Checks that an empty database migrates to head.
///
/// # Errors
///
/// [`Failure::Migration`] naming the migration that failed, with the server's message and
/// its line and column; [`Failure::Harness`] when no server can be had.
pub async fn upgrade(migrations: impl Into<Migrations>) -> Result<Passed, Failure> {
    Subject::load(migrations.into()).await?.upgrade().await
}

/// Checks every reversible migration in order: up, then down must restore the schema from
/// before the up, then up again must give the schema of the first up. Migrations without a
/// down are applied, not checked, and listed in a note of the [`Passed`].
///
/// # Errors
///
/// [`Failure::NotReversible`] naming the version, with a diff of the schema objects that
/// differ; [`Failure::Migration`] when a migration's SQL fails; [`Failure::Harness`] when no
/// server can be had.
pub async fn up_down(migrations: impl Into<Migrations>) -> Result<Passed, Failure> {
    Subject::load(migrations.into())
        .await?
        .up_down(&Silent)
        .await
}

/// Compares the schema at head with the snapshot file at `path` (relative to the working
/// directory), as written by [`update_snapshot`] or `pgfresh check --update`.
///
/// # Errors
///
/// [`Failure::Drift`] with a line diff (`-` the snapshot, `+` the migrations);
/// [`Failure::SnapshotFile`] when the file cannot be read; [`Failure::Migration`] and
/// [`Failure::Harness`] as [`upgrade`].
pub async fn snapshot(
    migrations: impl Into<Migrations>,
    path: impl AsRef<Path>,
) -> Result<Passed, Failure> {
    let subject = Subject::load(migrations.into()).await?;
    subject.snapshot(path.as_ref(), false).await
}

/// Writes the schema at head to the snapshot file at `path`, unless it already holds it.
///
/// # Errors
///
/// [`Failure::SnapshotFile`] when the file cannot be written; [`Failure::Migration`] and
/// [`Failure::Harness`] as [`upgrade`].
pub async fn update_snapshot(
    migrations: impl Into<Migrations>,
    path: impl AsRef<Path>,
) -> Result<Passed, Failure> {
    let subject = Subject::load(migrations.into()).await?;
    subject.snapshot(path.as_ref(), true).await
}

/// The schema of the database `db` as the snapshot check renders it (docs/checking-migrations.md
/// has a table of what it covers), leaving out the migration tools' [`BOOKKEEPING_TABLES`]:
/// compare two databases built by different tools, say an Alembic history and its sqlx port.
///
/// # Errors
///
/// [`Failure::Harness`] when the catalogs cannot be read.
pub async fn schema(db: &sqlx::PgPool) -> Result<String, Failure> {
    Ok(schema::Schema::read(db, BOOKKEEPING_TABLES)
        .await?
        .snapshot())
}

/// Reports how a long check advances (the command draws it as a progress bar).
pub(crate) trait Progress: Sync {
    /// `total` steps are ahead.
    fn start(&self, _total: u64) {}
    /// The next step begins; `what` names it.
    fn step(&self, _what: &str) {}
}

/// No progress reporting: what the library functions use.
struct Silent;

impl Progress for Silent {}

/// The migrations loaded for checking.
#[derive(Debug)]
pub(crate) struct Subject {
    /// The sqlx migration set, when there is one.
    pub set: Option<MigrationSet>,
    /// Its folder, when it was read from one.
    dir: Option<PathBuf>,
    harness: Checked,
}

/// The harness the checks take their databases from.
#[derive(Debug)]
enum Checked {
    /// Made for the check from a migration set.
    Own(Box<Harness>),
    /// The caller's.
    Given(&'static Harness),
}

/// Bookkeeping tables of migration tools, left out of a schema when the migrations are not a
/// sqlx set (whose own table is left out): they record history, not what the schema is.
pub const BOOKKEEPING_TABLES: &[&str] = &[
    "_sqlx_migrations",
    "alembic_version",
    "schema_migrations",
    "goose_db_version",
    "flyway_schema_history",
    "refinery_schema_history",
    "seaql_migrations",
    "__diesel_schema_migrations",
    "databasechangelog",
    "databasechangeloglock",
];

impl Subject {
    /// Reads the set (a folder is read now; a `Migrator` is copied).
    pub async fn load(migrations: Migrations) -> Result<Self, Failure> {
        let Migrations(target) = migrations;
        let origin = match &target {
            Target::Set(origin) => Some(origin),
            Target::Harness(harness) => harness.sqlx_origin(),
        };
        let set = match origin {
            Some(origin) => Some(origin.load().await?),
            None => None,
        };
        let dir = match origin {
            Some(Origin::Dir(dir)) => Some(dir.clone()),
            _ => None,
        };
        let harness = match target {
            Target::Set(origin) => {
                Checked::Own(Box::new(Harness::from_origin(origin).with_pool_size(2)))
            }
            Target::Harness(harness) => Checked::Given(harness),
        };
        Ok(Self { set, dir, harness })
    }

    /// A folder's set that the caller already read.
    #[cfg(feature = "cli")]
    pub fn from_dir(set: MigrationSet, dir: &Path) -> Self {
        let harness = Harness::from_origin(Origin::Dir(dir.to_owned())).with_pool_size(2);
        Self {
            set: Some(set),
            dir: Some(dir.to_owned()),
            harness: Checked::Own(Box::new(harness)),
        }
    }

    /// The sqlx set `check` needs, or the failure that says so.
    pub fn sqlx_set(&self, check: &str) -> Result<&MigrationSet, Failure> {
        self.set.as_ref().ok_or_else(|| {
            Failure::Harness(Error::Misuse {
                what: format!(
                    "the {check} check reads the migrations themselves, so it needs a sqlx \
                     migration set (Harness::new, Harness::from_dir, a Migrator or a folder); \
                     a template from Harness::from_command or Harness::from_fn has none \
                     (check::upgrade and check::snapshot work on those)"
                ),
            })
        })
    }

    /// The tables a schema of these migrations leaves out.
    pub fn bookkeeping(&self) -> Vec<&str> {
        match &self.set {
            Some(set) => vec![set.migrator.table_name.as_ref()],
            None => BOOKKEEPING_TABLES.to_vec(),
        }
    }

    /// The upgrade check.
    pub async fn upgrade(&self) -> Result<Passed, Failure> {
        upgrade::run(self).await
    }

    /// The up/down check, reporting each migration to `progress`.
    pub async fn up_down(&self, progress: &dyn Progress) -> Result<Passed, Failure> {
        updown::run(self, progress).await
    }

    /// The snapshot check, or with `update` the rewrite of the snapshot.
    pub async fn snapshot(&self, path: &Path, update: bool) -> Result<Passed, Failure> {
        if update {
            snapshot::update(self, path).await
        } else {
            snapshot::compare(self, path).await
        }
    }

    /// The harness the checks take their databases from.
    pub fn harness(&self) -> &Harness {
        match &self.harness {
            Checked::Own(harness) => harness,
            Checked::Given(harness) => harness,
        }
    }

    /// The newest version (`base` for an empty set; `head` without a sqlx set), for messages.
    pub fn head(&self) -> String {
        match &self.set {
            Some(set) => set
                .ups()
                .map(|m| m.version)
                .max()
                .map_or_else(|| "base".to_owned(), |v| v.to_string()),
            None => "head".to_owned(),
        }
    }

    /// The history check: the set's shape, and what `database` applied when one is given.
    pub async fn history(&self, database: Option<&mut PgConnection>) -> Result<Passed, Failure> {
        let set = self.sqlx_set("history")?;
        let mut problems = history::shape(set);
        if let Some(dir) = &self.dir {
            problems.extend(history::ignored_files(dir)?);
        }
        // Whether the database's record was compared; else why not (a note, not a failure).
        let mut compared = false;
        let mut notes = Vec::new();
        if let Some(conn) = database {
            match history::against(set, conn).await? {
                history::Compared::Problems(found) => {
                    compared = true;
                    problems.extend(found);
                }
                history::Compared::NoRecord { table } => notes.push(format!(
                    "not compared with the database: it has no migration record ({table} does \
                     not exist there; a fresh server's database has none). To compare, point \
                     --database-url (or DB_URL) at the database the migrations were applied to"
                )),
            }
        }
        problems.sort_by_key(problem::sort_key);
        if !problems.is_empty() {
            return Err(Failure::History {
                origin: set.origin.clone(),
                problems,
            });
        }
        let n = set.ups().count();
        let pairs = set.ups().filter(|m| set.down(m.version).is_some());
        let database = if compared {
            ", and the database applied them unedited, in order"
        } else {
            ""
        };
        Ok(Passed::new(format!(
            "{n} migrations, {} of them reversible: versions unique and ordered, every pair \
             complete{database}",
            pairs.count()
        ))
        .with_notes(notes))
    }
}
