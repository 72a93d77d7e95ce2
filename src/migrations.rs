//! A migration set, its content hash, and the database names derived from it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::error::{Error, Result};

/// Every database pgfresh creates starts with this; the marker comment (see
/// [`crate::admin`]) is what proves it is ours, the prefix only narrows the search.
pub(crate) const PREFIX: &str = "pgfresh_";

/// Bumped whenever the way a template is built changes, so old templates are not reused.
const TEMPLATE_FORMAT: &str = "pgfresh-template-v1";

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
        h.update(std::env::var("CARGO_PKG_NAME").unwrap_or_default());
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

fn hex(bytes: &[u8]) -> String {
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

/// The migrations `conn`'s database applied, by version (none when it has no migrations table).
pub(crate) async fn read_applied(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<Applied>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| Error::database("looking for the migrations table", e))?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, description, success, checksum, installed_on, execution_time \
         FROM {table} ORDER BY version"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::database(format!("reading {table}"), e))
}

/// `pgfresh_t_<hash>`: the template of one migration set (16 hex digits: 26 bytes).
pub(crate) fn template_name(hash: &str) -> String {
    format!("{PREFIX}t_{hash}")
}

/// `pgfresh_<hash8>_<owner>_<random6>`: one test's database, owned by the process holding the
/// owner lock `owner` (32 bytes, well within the 63-byte limit).
pub(crate) fn test_db_name(hash: &str, owner: i32) -> String {
    format!("{PREFIX}{}_{owner:08x}_{}", &hash[..8], random(6))
}

/// `pgfresh_r_<hash>_`: the prefix of the ready clones of a template.
pub(crate) fn ready_prefix(hash: &str) -> String {
    format!("{PREFIX}r_{hash}_")
}

/// `pgfresh_r_<hash>_<owner>_<random4>`: a ready clone being made by `owner` (40 bytes).
pub(crate) fn ready_db_name(hash: &str, owner: i32) -> String {
    format!("{}{owner:08x}_{}", ready_prefix(hash), random(4))
}

/// The owner a test database's or ready clone's name carries (templates carry none). Names
/// carry their owner so that a database caught between two statements, before its marker says
/// who owns it, can still be told apart from one a live process is using.
pub(crate) fn owner_in_name(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let rest = rest.strip_prefix("r_").unwrap_or(rest);
    let mut parts = rest.split('_');
    let (_hash, owner, _random) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || owner.len() != 8 {
        return None;
    }
    u32::from_str_radix(owner, 16)
        .ok()
        .and_then(|o| i32::try_from(o).ok())
}

fn random(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
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
    fn names_fit_postgres_limit() {
        let hash = set(vec![]).hash(None);
        let t = template_name(&hash);
        let d = test_db_name(&hash, 42);
        let r = ready_db_name(&hash, i32::MAX);
        assert!(
            t.len() <= 63 && d.len() <= 63 && r.len() <= 63,
            "{t} {d} {r}"
        );
        assert!(r.starts_with(&ready_prefix(&hash)));
        assert_eq!(owner_in_name(&d), Some(42));
        assert_eq!(owner_in_name(&r), Some(i32::MAX));
        assert_eq!(owner_in_name(&t), None);
        assert_eq!(owner_in_name("pgfresh_zz_notanowner_x"), None);
        assert!(d.starts_with(PREFIX) && t.starts_with(PREFIX));
        assert_ne!(test_db_name(&hash, 42), d);
        assert!(
            d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }

    #[test]
    fn unknown_version_lists_known_ones() {
        let s = set(vec![m(1, "a"), m(20, "b")]);
        assert!(s.check_version(20).is_ok());
        let e = s.check_version(3).unwrap_err().to_string();
        assert!(e.contains("no migration 3") && e.contains("1, 20"), "{e}");
    }
}
