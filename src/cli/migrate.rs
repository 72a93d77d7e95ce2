//! `pgfresh upgrade` and `pgfresh downgrade`: check the database's history, plan, then apply
//! or revert one migration at a time, each in its own transaction, printing each step.

use std::time::Instant;

use sqlx::PgConnection;
use sqlx::migrate::{MigrateError, Migration};

use super::history::Ledger;
use super::target::{self, DowngradeTarget, UpgradeTarget};
use crate::error::{Error, Result};
use crate::sqlerror;

fn label(version: Option<i64>) -> String {
    version.map_or_else(|| "base".to_owned(), |v| v.to_string())
}

/// Applies the migrations that reach `target`.
pub(super) async fn upgrade(
    conn: &mut PgConnection,
    state: &Ledger<'_>,
    target: UpgradeTarget,
) -> Result<()> {
    state.check()?;
    let plan = target::upgrade_plan(state, target)?;
    let mut now = state.current();
    if plan.is_empty() {
        println!("nothing to upgrade: the database is at {}", label(now));
        return Ok(());
    }
    for m in plan {
        let started = Instant::now();
        state
            .set
            .migrator
            .run_to(m.version, &mut *conn)
            .await
            .map_err(|e| run_error("applying", m, now, e))?;
        println!(
            "upgrade {} -> {}: {} ({} ms)",
            label(now),
            m.version,
            m.description,
            started.elapsed().as_millis()
        );
        now = now.max(Some(m.version));
    }
    println!("now at {}", state_label(state, now));
    Ok(())
}

/// Reverts the migrations that reach `target`.
pub(super) async fn downgrade(
    conn: &mut PgConnection,
    state: &Ledger<'_>,
    target: DowngradeTarget,
) -> Result<()> {
    state.check()?;
    let plan = target::downgrade_plan(state, target)?;
    if plan.is_empty() {
        println!(
            "nothing to downgrade: the database is at {}",
            label(state.current())
        );
        return Ok(());
    }
    let mut now = state.current();
    for step in plan {
        let started = Instant::now();
        state
            .set
            .migrator
            .undo(&mut *conn, step.after.unwrap_or(0))
            .await
            .map_err(|e| run_error("reverting", step.down, now, e))?;
        println!(
            "downgrade {} -> {}: {} ({} ms)",
            step.down.version,
            label(step.after),
            step.down.description,
            started.elapsed().as_millis()
        );
        now = step.after;
    }
    println!("now at {}", state_label(state, now));
    Ok(())
}

/// `20231002090000 (head)`, `base`, or the bare version.
fn state_label(state: &Ledger<'_>, now: Option<i64>) -> String {
    match now {
        Some(v) if Some(v) == state.head() => format!("{v} (head)"),
        other => label(other),
    }
}

fn run_error(action: &'static str, m: &Migration, now: Option<i64>, e: MigrateError) -> Error {
    match e {
        MigrateError::ExecuteMigration(source, version) => {
            let message = sqlerror::in_migration(m, &source);
            Error::MigrationRun {
                action,
                version,
                description: m.description.to_string(),
                message,
                now: label(now),
            }
        }
        MigrateError::Execute(source) => {
            Error::database(format!("{action} migration {}", m.version), source)
        }
        other => Error::Refused {
            reason: format!("{action} migration {} failed: {other}", m.version),
            remedy: "Run `pgfresh history --verbose` to see where the database stands".into(),
        },
    }
}
