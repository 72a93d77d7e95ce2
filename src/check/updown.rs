//! The up/down consistency check: walk one database through the set, and for every reversible
//! migration compare the schema before its up with the schema after its down, and the schema
//! after its up with the schema after applying it again.
//!
//! One database walks the whole set, so each migration runs three times and the schema is
//! read three times per migration; the walk starts from the cached template just before the
//! first reversible migration (or from an empty database), never from scratch per migration.
//! A defect does not end the walk: it goes on from a clone of the template just after the
//! defective migration, and the failure lists every defect, in order.

use sqlx::migrate::{MigrateError, Migration};

use super::schema::Schema;
use super::{Failure, Passed, Progress, Step, Subject, diff};
use crate::migrations::MigrationSet;
use crate::{Harness, TestDb};

pub(crate) async fn run(subject: &Subject, progress: &dyn Progress) -> Result<Passed, Failure> {
    let set = subject.sqlx_set("up/down")?;
    let ups: Vec<&Migration> = set.ups().collect();
    let notes = irreversible_note(set, &ups).into_iter().collect();
    let Some(first) = ups.iter().position(|m| set.down(m.version).is_some()) else {
        return Ok(Passed::new("no reversible migrations: nothing to check").with_notes(notes));
    };
    let start = first.checked_sub(1).map_or(0, |i| ups[i].version);
    let mut walk = Walk {
        set,
        harness: subject.harness(),
        db: subject.harness().test_db_at(start).await?,
        at: start,
        defects: Vec::new(),
    };
    let walked = walk.walk(&ups[first..], progress).await;
    let closed = walk.db.close().await;
    let mut defects = walk.defects;
    let checked = match walked {
        Ok(checked) => checked,
        Err(stop) => {
            defects.push(stop);
            0
        }
    };
    if defects.len() > 1 {
        return Err(Failure::Defects(defects));
    }
    if let Some(defect) = defects.pop() {
        return Err(defect);
    }
    closed?;
    Ok(Passed::new(format!(
        "each of the {checked} reversible migrations restores the schema when reverted and \
         reproduces it when applied again"
    ))
    .with_notes(notes))
}

/// One database walking the set, and the defects found on the way.
struct Walk<'s> {
    set: &'s MigrationSet,
    harness: &'s Harness,
    db: TestDb,
    /// The version `db` is at.
    at: i64,
    defects: Vec<Failure>,
}

impl Walk<'_> {
    /// Applies `ups` in order, checking each reversible one on the way. A defect is recorded
    /// and the walk goes on from a clean clone of the template just after the defective
    /// migration, so that one defect does not hide the next. Returns how many were checked;
    /// an error stops the walk (an up that fails, or no database to go on with).
    async fn walk(
        &mut self,
        ups: &[&Migration],
        progress: &dyn Progress,
    ) -> Result<usize, Failure> {
        progress.start(ups.len() as u64);
        let mut before: Option<Schema> = None;
        let mut checked = 0;
        for &up in ups {
            progress.step(&format!("{} {}", up.version, up.description));
            let Some(down) = self.set.down(up.version) else {
                apply(self.set, &self.db, up, Step::Up).await?;
                (before, self.at) = (None, up.version);
                continue;
            };
            let original = match before.take() {
                Some(schema) => schema,
                None => self.read().await?,
            };
            apply(self.set, &self.db, up, Step::Up).await?;
            let applied = self.read().await?;
            checked += 1;
            match self.check(up, down, &original, &applied).await {
                Ok(again) => before = Some(again),
                Err(defect) => {
                    self.defects.push(defect);
                    let clean = self.harness.test_db_at(up.version).await?;
                    let spoiled = std::mem::replace(&mut self.db, clean);
                    spoiled.close().await?;
                }
            }
            self.at = up.version;
        }
        Ok(checked)
    }

    /// Reverts `up` (just applied over `original`, giving `applied`) and applies it again;
    /// returns the schema after that, or the defect.
    async fn check(
        &self,
        up: &Migration,
        down: &Migration,
        original: &Schema,
        applied: &Schema,
    ) -> Result<Schema, Failure> {
        revert(self.set, &self.db, down, self.at).await?;
        let reverted = self.read().await?;
        if reverted != *original {
            return Err(not_reversible(up, Step::Down, original, &reverted));
        }
        apply(self.set, &self.db, up, Step::Reapply).await?;
        let again = self.read().await?;
        if again != *applied {
            return Err(not_reversible(up, Step::Reapply, applied, &again));
        }
        Ok(again)
    }

    async fn read(&self) -> Result<Schema, Failure> {
        Ok(Schema::read(self.db.pool(), &[&self.set.migrator.table_name]).await?)
    }
}

async fn apply(set: &MigrationSet, db: &TestDb, up: &Migration, step: Step) -> Result<(), Failure> {
    set.migrator
        .run_to(up.version, db.pool())
        .await
        .map_err(|e| failed(up, step, &e))
}

async fn revert(set: &MigrationSet, db: &TestDb, down: &Migration, to: i64) -> Result<(), Failure> {
    set.migrator
        .undo(db.pool(), to)
        .await
        .map_err(|e| failed(down, Step::Down, &e))
}

fn not_reversible(up: &Migration, step: Step, expected: &Schema, found: &Schema) -> Failure {
    Failure::NotReversible {
        version: up.version,
        description: up.description.to_string(),
        step,
        diff: diff::lines(&expected.body(), &found.body()),
    }
}

/// A migration that failed, with the server's message and where in the file it points.
fn failed(m: &Migration, step: Step, e: &MigrateError) -> Failure {
    let message = match e {
        MigrateError::ExecuteMigration(source, _) => crate::sqlerror::in_migration(m, source),
        other => other.to_string(),
    };
    Failure::Migration {
        version: m.version,
        description: m.description.to_string(),
        step,
        message,
    }
}

/// The note for migrations without a down migration: applied on the walk, not checked.
fn irreversible_note(set: &MigrationSet, ups: &[&Migration]) -> Option<String> {
    let one_way: Vec<String> = ups
        .iter()
        .filter(|m| set.down(m.version).is_none())
        .map(|m| m.version.to_string())
        .collect();
    match one_way.len() {
        0 => None,
        n => Some(format!(
            "{n} of {} migrations cannot be reverted (no .down.sql), so their up/down \
             consistency was not checked: {}",
            ups.len(),
            one_way.join(", ")
        )),
    }
}
