//! The history check: the set's own shape (versions, pairs, files sqlx skips) and, given a
//! database, whether what it applied still matches the set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sqlx::PgConnection;
use sqlx::migrate::{Migration, MigrationType};

use super::problem::Problem;
use crate::error::Error;
use crate::migrations::{MigrationSet, read_applied};

/// The rules that need only the set.
pub(crate) fn shape(set: &MigrationSet) -> Vec<Problem> {
    let mut problems = Vec::new();
    let all: Vec<&Migration> = set.migrator.iter().collect();
    for pair in all.windows(2) {
        if pair[1].version < pair[0].version {
            problems.push(Problem::Unordered {
                version: pair[1].version,
                after: pair[0].version,
            });
        }
    }
    let mut by_version: BTreeMap<i64, Vec<&Migration>> = BTreeMap::new();
    for m in &all {
        by_version.entry(m.version).or_default().push(m);
    }
    for (&version, ms) in &by_version {
        problems.extend(version_problems(version, ms));
    }
    problems
}

fn version_problems(version: i64, ms: &[&Migration]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let description = ms[0].description.to_string();
    if version < 1 {
        problems.push(Problem::NonPositiveVersion {
            version,
            description: description.clone(),
        });
    }
    let of = |t: MigrationType| -> Vec<String> {
        ms.iter()
            .filter(|m| m.migration_type == t)
            .map(|m| m.description.to_string())
            .collect()
    };
    let (simple, up, down) = (
        of(MigrationType::Simple),
        of(MigrationType::ReversibleUp),
        of(MigrationType::ReversibleDown),
    );
    let ups: Vec<String> = simple.iter().chain(&up).cloned().collect();
    for same in [&ups, &down] {
        if same.len() > 1 {
            problems.push(Problem::DuplicateVersion {
                version,
                descriptions: same.clone(),
            });
        }
    }
    let problem = match (simple.is_empty(), up.is_empty(), down.is_empty()) {
        (true, false, true) => Problem::MissingDown {
            version,
            description,
        },
        (true, true, false) => Problem::MissingUp {
            version,
            description,
        },
        (false, _, false) => Problem::DownOfSimple {
            version,
            description,
        },
        _ => return problems,
    };
    problems.push(problem);
    problems
}

/// `.sql` files in `dir` that sqlx 0.9.0 skips without a word (no `_` after the version);
/// sqlx 0.9.1 and later refuse the folder instead, naming the file.
pub(crate) fn ignored_files(dir: &Path) -> Result<Vec<Problem>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::MigrationSource {
        location: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut files: BTreeSet<String> = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && name.ends_with(".sql") && !name.contains('_') {
            files.insert(name);
        }
    }
    Ok(files
        .into_iter()
        .map(|file| Problem::Ignored { file })
        .collect())
}

/// What comparing a database's record with the set found.
pub(crate) enum Compared {
    /// The problems (none when it applied the set's migrations unedited, in order).
    Problems(Vec<Problem>),
    /// The database has no migrations table (`table`): it was never migrated by sqlx or
    /// pgfresh (a fresh server's `postgres` database, say), so there is nothing to compare.
    NoRecord { table: String },
}

/// The rules that need a database: what it applied is still in the set, unchanged, complete,
/// and nothing older than its newest migration is left unapplied.
pub(crate) async fn against(
    set: &MigrationSet,
    conn: &mut PgConnection,
) -> Result<Compared, Error> {
    let table = &set.migrator.table_name;
    let Some(applied) = read_applied(conn, table).await? else {
        return Ok(Compared::NoRecord {
            table: table.to_string(),
        });
    };
    let mut problems = Vec::new();
    for a in &applied {
        let (version, description) = (a.version, a.description.clone());
        match set.up(version) {
            _ if !a.success => problems.push(Problem::Dirty {
                version,
                description,
            }),
            None if set.migrator.ignore_missing => {}
            None => problems.push(Problem::NotInSet {
                version,
                description,
            }),
            Some(m) if *m.checksum != *a.checksum => problems.push(Problem::Edited {
                version,
                description: m.description.to_string(),
            }),
            Some(_) => {}
        }
    }
    if let Some(newest) = applied.iter().map(|a| a.version).max() {
        problems.extend(
            set.ups()
                .filter(|m| m.version < newest && !applied.iter().any(|a| a.version == m.version))
                .map(|m| Problem::Skipped {
                    version: m.version,
                    description: m.description.to_string(),
                    newest,
                }),
        );
    }
    Ok(Compared::Problems(problems))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::SqlSafeStr;
    use sqlx::migrate::Migrator;

    use super::*;

    fn m(version: i64, description: &'static str, t: MigrationType) -> Migration {
        Migration::new(
            version,
            Cow::Borrowed(description),
            t,
            sqlx::AssertSqlSafe("SELECT 1").into_sql_str(),
            false,
        )
    }

    fn shape_of(migrations: Vec<Migration>) -> Vec<Problem> {
        shape(&MigrationSet::from_migrator(
            &Migrator::with_migrations(migrations),
            "test",
        ))
    }

    #[test]
    fn complete_pairs_and_simple_migrations_pass() {
        use MigrationType::*;
        let ok = shape_of(vec![
            m(1, "a", Simple),
            m(2, "b", ReversibleUp),
            m(2, "b", ReversibleDown),
        ]);
        assert_eq!(ok, []);
    }

    #[test]
    fn each_broken_rule_is_named() {
        use MigrationType::*;
        let problems = shape_of(vec![
            m(0, "zero", Simple),
            m(1, "up only", ReversibleUp),
            m(2, "down only", ReversibleDown),
            m(3, "simple", Simple),
            m(3, "simple", ReversibleDown),
            m(4, "one", Simple),
            m(4, "two", Simple),
        ]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(matches!(
            problems[0],
            Problem::NonPositiveVersion { version: 0, .. }
        ));
        assert!(text[1].contains("add 1_up_only.down.sql"), "{text:?}");
        assert!(text[2].contains("add 2_down_only.up.sql"), "{text:?}");
        assert!(text[3].contains("rename it to 3_simple.up.sql"), "{text:?}");
        assert!(text[4].contains("version 4 is used by 2 migrations (one, two)"));
        assert_eq!(problems.len(), 5, "{text:?}");
    }

    #[test]
    fn unordered_hand_built_migrator_is_named() {
        let mut migrator = Migrator::with_migrations(vec![]);
        migrator.migrations = Cow::Owned(vec![
            m(2, "b", MigrationType::Simple),
            m(1, "a", MigrationType::Simple),
        ]);
        assert_eq!(
            shape(&MigrationSet::from_migrator(&migrator, "test")),
            [Problem::Unordered {
                version: 1,
                after: 2
            }]
        );
    }
}
