//! A migration set and its content hash.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::error::{Error, Result};

/// Bumped whenever the way a template is built changes, so old templates are not reused.
pub(crate) const TEMPLATE_FORMAT: &str = "pgfresh-template-v1";

/// Where a migration set comes from.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// Compiled in, usually `sqlx::migrate!()` in a `static`.
    Static(&'static Migrator),
    /// A folder read at run time.
    Dir(PathBuf),
}

impl Origin {
    /// Reads the set (a folder is read now; a `Migrator` is copied).
    pub async fn load(&self) -> Result<MigrationSet> {
        match self {
            Self::Static(m) => Ok(MigrationSet::from_migrator(m, "the Migrator")),
            Self::Dir(dir) => MigrationSet::from_dir(dir).await,
        }
    }
}

/// A migration set ready to build templates from.
#[derive(Debug)]
pub(crate) struct MigrationSet {
    pub migrator: Migrator,
    /// Where the set came from, for messages.
    pub origin: String,
    /// Which test suite the set belongs to (crate, origin and first migration), so that sweeps
    /// can tell this suite's old templates from other suites' templates.
    pub suite: String,
}

impl MigrationSet {
    /// Copies a (usually `static`) migrator.
    pub fn from_migrator(m: &Migrator, origin: impl Into<String>) -> Self {
        let migrator = Migrator {
            migrations: Cow::Owned(m.migrations.to_vec()),
            ignore_missing: m.ignore_missing,
            locking: m.locking,
            no_tx: m.no_tx,
            table_name: m.table_name.clone(),
            create_schemas: m.create_schemas.clone(),
        };
        Self::new(migrator, origin.into())
    }

    fn new(migrator: Migrator, origin: String) -> Self {
        let mut h = Sha256::new();
        h.update(crate_name());
        h.update([0]);
        h.update(&origin);
        if let Some(first) = migrator.iter().next() {
            h.update(first.version.to_le_bytes());
            h.update(first.description.as_bytes());
        }
        let suite = hex(&h.finalize()[..4]);
        Self {
            migrator,
            origin,
            suite,
        }
    }

    /// Reads a migrations folder the way `sqlx::migrate!` and `sqlx migrate run` do.
    pub async fn from_dir(dir: &Path) -> Result<Self> {
        let location = dir.display().to_string();
        if !dir.is_dir() {
            return Err(Error::MigrationSource {
                location,
                reason: "no such directory".into(),
            });
        }
        let migrator = Migrator::new(dir)
            .await
            .map_err(|e| Error::MigrationSource {
                location: location.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self::new(migrator, location))
    }

    /// The up migrations, in order.
    pub fn ups(&self) -> impl Iterator<Item = &Migration> {
        self.migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
    }

    /// The up migration of `version`.
    pub fn up(&self, version: i64) -> Option<&Migration> {
        self.ups().find(|m| m.version == version)
    }

    /// The down migration of `version`, when it is reversible.
    pub fn down(&self, version: i64) -> Option<&Migration> {
        self.migrator
            .iter()
            .find(|m| m.version == version && m.migration_type.is_down_migration())
    }

    /// The file of up migration `version` when the set was read from a folder.
    pub fn file_of(&self, version: i64) -> String {
        let prefix = format!("{version}_");
        std::fs::read_dir(&self.origin)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                    n.starts_with(&prefix) && n.ends_with(".sql") && !n.ends_with(".down.sql")
                })
            })
            .map_or_else(|| "compiled in".to_owned(), |p| p.display().to_string())
    }

    /// Checks that `version` is one of the set's versions.
    pub fn check_version(&self, version: i64) -> Result<()> {
        if self.ups().any(|m| m.version == version) {
            return Ok(());
        }
        let known: Vec<String> = self.ups().map(|m| m.version.to_string()).collect();
        Err(Error::MigrationSource {
            location: self.origin.clone(),
            reason: format!(
                "there is no migration {version}; the known versions are: {}",
                if known.is_empty() {
                    "(none)".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        })
    }

    /// A hash of everything that changes the database a template build produces: each
    /// migration applied up to `upto` (version, kind, checksum, transaction mode), the
    /// bookkeeping table and schemas, and the template format.
    pub fn hash(&self, upto: Option<i64>) -> String {
        let mut h = Sha256::new();
        h.update(TEMPLATE_FORMAT);
        h.update([0]);
        h.update(self.migrator.table_name.as_bytes());
        for schema in self.migrator.create_schemas.iter() {
            h.update([0]);
            h.update(schema.as_bytes());
        }
        for m in self.ups().filter(|m| upto.is_none_or(|v| m.version <= v)) {
            h.update([1]);
            h.update(m.version.to_le_bytes());
            h.update([kind_byte(m.migration_type), u8::from(m.no_tx)]);
            h.update(&m.checksum[..]);
        }
        hex(&h.finalize()[..8])
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn kind_byte(t: MigrationType) -> u8 {
    match t {
        MigrationType::Simple => b's',
        MigrationType::ReversibleUp => b'u',
        MigrationType::ReversibleDown => b'd',
    }
}

/// The crate whose tests run (the test binary's), which suites are told apart by.
pub(crate) fn crate_name() -> String {
    std::env::var("CARGO_PKG_NAME").unwrap_or_default()
}

/// A row of sqlx's migrations table.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Applied {
    pub version: i64,
    pub description: String,
    pub success: bool,
    pub checksum: Vec<u8>,
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub installed_on: chrono::DateTime<chrono::Utc>,
    /// Nanoseconds; `-1` when the time was not recorded.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub execution_time: i64,
}

/// The migrations `conn`'s database applied, by version; `None` when it has no migrations
/// table at all (no record is not an empty record).
pub(crate) async fn read_applied(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Option<Vec<Applied>>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| Error::database("looking for the migrations table", e))?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, description, success, checksum, installed_on, execution_time \
         FROM {table} ORDER BY version"
    )))
    .fetch_all(&mut *conn)
    .await
    .map(Some)
    .map_err(|e| Error::database(format!("reading {table}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::SqlSafeStr;

    fn set(migrations: Vec<Migration>) -> MigrationSet {
        MigrationSet::new(Migrator::with_migrations(migrations), "test".into())
    }

    fn m(version: i64, sql: &'static str) -> Migration {
        Migration::new(
            version,
            Cow::Borrowed("x"),
            MigrationType::Simple,
            sqlx::AssertSqlSafe(sql).into_sql_str(),
            false,
        )
    }

    #[test]
    fn hash_changes_with_content_and_target() {
        let a = set(vec![m(1, "create table a()"), m(2, "create table b()")]);
        let b = set(vec![m(1, "create table a()"), m(2, "create table c()")]);
        assert_eq!(a.hash(None), a.hash(None));
        assert_ne!(a.hash(None), b.hash(None));
        assert_eq!(a.hash(Some(1)), b.hash(Some(1)));
        assert_ne!(a.hash(Some(1)), a.hash(None));
        assert_eq!(a.hash(None).len(), 16);
    }

    #[test]
    fn unknown_version_lists_known_ones() {
        let s = set(vec![m(1, "a"), m(20, "b")]);
        assert!(s.check_version(20).is_ok());
        let e = s.check_version(3).unwrap_err().to_string();
        assert!(e.contains("no migration 3") && e.contains("1, 20"), "{e}");
    }
}
