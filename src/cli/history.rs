//! What the database has applied, next to what the folder has: the state every command starts
//! from, its consistency checks, and the `current` and `history` listings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sqlx::PgConnection;
use sqlx::migrate::Migration;

use crate::error::{Error, Result};
use crate::migrations::{Applied, MigrationSet, read_applied};

/// The folder's migrations and the database's record of them.
#[derive(Debug)]
pub(super) struct Ledger<'s> {
    pub set: &'s MigrationSet,
    pub applied: BTreeMap<i64, Applied>,
}

/// How one version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Applied,
    Pending,
    Dirty,
    Changed,
    NotInFolder,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Pending => "pending",
            Self::Dirty => "dirty: partially applied",
            Self::Changed => "changed since it was applied",
            Self::NotInFolder => "applied, not in the folder",
        }
    }
}

impl<'s> Ledger<'s> {
    /// Reads the migrations table (a database without one has applied nothing).
    pub async fn read(conn: &mut PgConnection, set: &'s MigrationSet) -> Result<Self> {
        let rows = read_applied(conn, &set.migrator.table_name)
            .await?
            .unwrap_or_default();
        Ok(Self {
            set,
            applied: rows.into_iter().map(|row| (row.version, row)).collect(),
        })
    }

    /// The up migration of `version` in the folder.
    pub fn up(&self, version: i64) -> Option<&'s Migration> {
        self.set.up(version)
    }

    /// The down migration of `version` in the folder.
    pub fn down(&self, version: i64) -> Option<&'s Migration> {
        self.set.down(version)
    }

    /// The newest version applied successfully, `None` at base.
    pub fn current(&self) -> Option<i64> {
        self.applied
            .values()
            .rev()
            .find(|a| a.success)
            .map(|a| a.version)
    }

    /// The newest version in the folder.
    pub fn head(&self) -> Option<i64> {
        self.set.ups().map(|m| m.version).max()
    }

    /// The folder's migrations not applied yet, oldest first.
    pub fn pending(&self) -> Vec<&'s Migration> {
        self.set
            .ups()
            .filter(|m| !self.applied.contains_key(&m.version))
            .collect()
    }

    /// `version description`, for messages.
    pub fn describe(&self, version: i64) -> String {
        let description = self.up(version).map_or_else(
            || self.applied.get(&version).map(|a| a.description.clone()),
            |m| Some(m.description.to_string()),
        );
        match description {
            Some(d) if !d.is_empty() => format!("{version} ({d})"),
            _ => version.to_string(),
        }
    }

    /// Refuses a version the folder does not have, listing the ones it has.
    pub fn check_known(&self, version: i64) -> Result<()> {
        if self.up(version).is_some() {
            return Ok(());
        }
        let known: Vec<String> = self.set.ups().map(|m| self.describe(m.version)).collect();
        Err(Error::Refused {
            reason: format!(
                "there is no migration {version} in {}; the known versions are: {}",
                self.set.origin,
                if known.is_empty() {
                    "(none)".to_owned()
                } else {
                    known.join(", ")
                }
            ),
            remedy: "Use one of them (`pgfresh history` lists them), or head / +N to upgrade, \
                     base / -N to downgrade"
                .into(),
        })
    }

    fn status(&self, version: i64) -> Status {
        match (self.up(version), self.applied.get(&version)) {
            (_, Some(a)) if !a.success => Status::Dirty,
            (None, Some(_)) => Status::NotInFolder,
            (Some(m), Some(a)) if *m.checksum != *a.checksum => Status::Changed,
            (Some(_), Some(_)) => Status::Applied,
            (_, None) => Status::Pending,
        }
    }

    /// Refuses a database whose history the folder cannot continue: a dirty migration, applied
    /// migrations the folder does not have, or a migration edited after it was applied.
    pub fn check(&self) -> Result<()> {
        let table = &self.set.migrator.table_name;
        let of = |status| {
            self.applied
                .keys()
                .copied()
                .filter(move |&v| self.status(v) == status)
        };
        if let Some(v) = of(Status::Dirty).next() {
            return Err(Error::Refused {
                reason: format!(
                    "migration {} is partially applied: {table} marks it as failed (dirty)",
                    self.describe(v)
                ),
                remedy: format!(
                    "pgfresh will not migrate on top of it. Repair the database by hand (finish or \
                     undo what the migration did), then run `DELETE FROM {table} WHERE version = \
                     {v};` and try again"
                ),
            });
        }
        let missing: Vec<String> = of(Status::NotInFolder).map(|v| self.describe(v)).collect();
        if !missing.is_empty() {
            return Err(Error::Refused {
                reason: format!(
                    "the database has applied migrations that {} does not have: {}",
                    self.set.origin,
                    missing.join(", ")
                ),
                remedy: "pgfresh will not migrate a database whose history it cannot see. Check \
                         out the code that has those migrations, or pass --source with the \
                         folder that does"
                    .into(),
            });
        }
        if let Some(v) = of(Status::Changed).next() {
            return Err(Error::Refused {
                reason: format!(
                    "migration {} was edited after it was applied (its checksum differs from the \
                     one in {table})",
                    self.describe(v)
                ),
                remedy: "Restore the file as it was applied and put the change in a new \
                         migration (`pgfresh revision -m \"…\"`)"
                    .into(),
            });
        }
        Ok(())
    }

    /// What `pgfresh current` prints.
    pub fn current_text(&self) -> String {
        let pending = self.pending().len();
        let mut out = match (self.current(), self.head()) {
            (Some(v), Some(head)) if v == head && pending == 0 => {
                format!("{} (head)\n", self.describe(v))
            }
            (current, head) => format!(
                "{} ({pending} pending{})\n",
                current.map_or_else(|| "base".to_owned(), |v| self.describe(v)),
                head.map_or_else(String::new, |h| format!(", head is {h}"))
            ),
        };
        if let Err(problem) = self.check() {
            let _ = writeln!(out, "warning: {problem}");
        }
        out
    }

    /// What `pgfresh history` prints: every version, newest first.
    pub fn history_text(&self, verbose: bool) -> String {
        let mut versions: Vec<i64> = self.set.ups().map(|m| m.version).collect();
        versions.extend(self.applied.keys());
        versions.sort_unstable_by(|a, b| b.cmp(a));
        versions.dedup();
        let mut out = String::new();
        for v in versions {
            let mut marks = String::new();
            if Some(v) == self.current() {
                marks.push_str(" (current)");
            }
            if Some(v) == self.head() {
                marks.push_str(" (head)");
            }
            let _ = writeln!(
                out,
                "{} [{}]{marks}",
                self.describe(v),
                self.status(v).label()
            );
            if verbose {
                self.details(&mut out, v);
            }
        }
        if out.is_empty() {
            let _ = writeln!(out, "no migrations in {}", self.set.origin);
        }
        out
    }

    fn details(&self, out: &mut String, version: i64) {
        if self.up(version).is_some() {
            let reversible = if self.down(version).is_some() {
                "yes"
            } else {
                "no (no .down.sql)"
            };
            let _ = writeln!(out, "    reversible: {reversible}");
        }
        if let Some(a) = self.applied.get(&version) {
            let took = if a.execution_time >= 0 {
                format!(" in {} ms", a.execution_time / 1_000_000)
            } else {
                String::new()
            };
            let when = a.installed_on.format("%Y-%m-%d %H:%M:%S UTC");
            let _ = writeln!(out, "    applied: {when}{took}");
        }
    }
}
