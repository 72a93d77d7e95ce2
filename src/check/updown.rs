//! The up/down consistency check: walk one database through the set, and for every reversible
//! migration compare the schema before its up with the schema after its down, and the schema
//! after its up with the schema after applying it again.
//!
//! One database walks the whole set, so each migration runs three times and the schema is
//! read three times per migration; the walk starts from the cached template just before the
//! first reversible migration (or from an empty database), never from scratch per migration.

use sqlx::migrate::{MigrateError, Migration};

use super::schema::Schema;
use super::{Failure, Passed, Progress, Step, Subject, diff};
use crate::TestDb;
use crate::migrations::MigrationSet;

pub(crate) async fn run(subject: &Subject, progress: &dyn Progress) -> Result<Passed, Failure> {
    let set = subject.sqlx_set("up/down")?;
    let ups: Vec<&Migration> = set.ups().collect();
    let notes = irreversible_note(set, &ups).into_iter().collect();
    let Some(first) = ups.iter().position(|m| set.down(m.version).is_some()) else {
        return Ok(Passed::new("no reversible migrations: nothing to check").with_notes(notes));
    };
    let start = first.checked_sub(1).map_or(0, |i| ups[i].version);
    let db = subject.harness().test_db_at(start).await?;
    let walked = walk(set, &db, &ups[first..], start, progress).await;
    let closed = db.close().await;
    let checked = walked?;
    closed?;
    Ok(Passed::new(format!(
        "each of the {checked} reversible migrations restores the schema when reverted and \
         reproduces it when applied again"
    ))
    .with_notes(notes))
}

/// Applies `ups` in order to `db`, which is at version `at`; checks each reversible one on the
/// way. Returns how many were checked.
async fn walk(
    set: &MigrationSet,
    db: &TestDb,
    ups: &[&Migration],
    mut at: i64,
    progress: &dyn Progress,
) -> Result<usize, Failure> {
    let read =
        || async { Ok::<_, Failure>(Schema::read(db.pool(), &[&set.migrator.table_name]).await?) };
    progress.start(ups.len() as u64);
    let mut before: Option<Schema> = None;
    let mut checked = 0;
    for &up in ups {
        progress.step(&format!("{} {}", up.version, up.description));
        let Some(down) = set.down(up.version) else {
            apply(set, db, up, Step::Up).await?;
            (before, at) = (None, up.version);
            continue;
        };
        let original = match before.take() {
            Some(schema) => schema,
            None => read().await?,
        };
        apply(set, db, up, Step::Up).await?;
        let applied = read().await?;
        revert(set, db, down, at).await?;
        let reverted = read().await?;
        if reverted != original {
            return Err(not_reversible(up, Step::Down, &original, &reverted));
        }
        apply(set, db, up, Step::Reapply).await?;
        let again = read().await?;
        if again != applied {
            return Err(not_reversible(up, Step::Reapply, &applied, &again));
        }
        (before, at) = (Some(again), up.version);
        checked += 1;
    }
    Ok(checked)
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
