//! Owner locks and sweeps: databases left behind by processes that died are removed by a later
//! one, and a database a live process still uses is never touched.
//!
//! Every process that uses a server holds, for as long as it lives, a session-level advisory
//! lock `(OWNER_LOCK_CLASS, owner)` on a connection of its own; its test databases carry
//! `owner` in their names. The server releases the lock when that connection ends, which happens
//! when the process exits however it exits (crash, `SIGKILL`, `process::exit`), also when the
//! process ran on another machine. A sweep reads the held locks from `pg_locks`, so it knows
//! exactly which owners are alive.
//!
//! The rules, applied once per process and migration set, in the background:
//! - `trash` (a drop that was cut short): dropped.
//! - a test database (no comment: its name carries its owner) of an owner that holds no lock
//!   any more: dropped once nobody is connected to it (the owner may be a broker, see
//!   [`crate::broker`], that died while the test it handed the database to still runs); the
//!   same for one marked `test` by an older pgfresh.
//! - `building` of an owner that holds no lock any more: dropped; so is a template without a
//!   comment yet (its builder died before it wrote the marker) when nobody holds its build
//!   lock.
//! - ready clones (no comment, see [`crate::marker`]) of a template that no longer exists:
//!   dropped.
//! - `kept` by an earlier run of the same suite: dropped, and said so (a run is one
//!   `cargo test` or `cargo nextest run` invocation, see [`crate::marker::run_id`]).
//! - templates of the same suite other than the current one, unused for an hour (the migrations
//!   changed), and any template unused for a week: dropped with their ready clones.

use std::collections::HashSet;

use crate::admin::drop_if_still;
use crate::error::{Error, Result};
use crate::locks::{BUILD_LOCK_CLASS, OWNER_LOCK_CLASS, build_lock_key};
use crate::marker::{Mark, now, run_id};
use crate::names::{PREFIX, owner_in_name};
use crate::server::{Server, Urgency};

/// A template of the current suite is stale this long after its last use, once another
/// template of the suite exists.
const STALE_SUITE_TEMPLATE: i64 = 3600;
/// Any template is stale this long after its last use.
const STALE_TEMPLATE: i64 = 7 * 24 * 3600;

/// Applies the sweep rules (see the module docs) for the run `this_run` (see
/// [`crate::marker::run_id`]) of `suite`, whose current template is `current`. Returns what
/// the user should hear of: the databases kept by an earlier run that it dropped.
pub(crate) async fn sweep(
    server: &Server,
    suite: &str,
    current: &str,
    this_run: &str,
) -> Result<Vec<String>> {
    let mut conn = server.admin_conn(Urgency::CanWait, "sweep").await?;
    let databases: Vec<(String, Option<String>, i32, bool)> = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database'), datconnlimit, \
                EXISTS (SELECT FROM pg_stat_activity a WHERE a.datid = d.oid) \
         FROM pg_database d WHERE starts_with(datname::text, $1)",
    )
    .bind(PREFIX)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::database("listing pgfresh databases", e))?;
    // The locks only now, after the list: every database on the list was created by a process
    // that already held its owner lock, so an owner that is alive still holds it here. Read
    // the other way round, a process that started in between would look dead. An owner that
    // is gone here may still have re-marked its database after the list was read (kept it,
    // then exited): each drop reads the marker again and leaves a changed one alone.
    let locks: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT classid::bigint, objid::bigint FROM pg_locks \
         WHERE locktype = 'advisory' AND objsubid = 2 AND granted",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::database("reading owner locks", e))?;
    let held = |class: i32, key: i64| locks.contains(&(i64::from(class), key));
    let alive = |owner: i32| held(OWNER_LOCK_CLASS, i64::from(owner));
    let names: HashSet<&str> = databases.iter().map(|(n, ..)| n.as_str()).collect();

    let mut doomed = Vec::new();
    for (name, comment, limit, in_use) in &databases {
        if !Mark::created_by_pgfresh(name, comment.as_deref(), *limit) {
            continue;
        }
        let drop = match comment.as_deref().map(Mark::parse) {
            None => match (
                name.strip_prefix("pgfresh_t_"),
                name.strip_prefix("pgfresh_r_"),
            ) {
                // A template whose builder died before it could write the marker.
                (Some(hash), _) => !held(BUILD_LOCK_CLASS, i64::from(build_lock_key(hash))),
                // A ready clone: goes with its template.
                (_, Some(rest)) => rest
                    .split('_')
                    .next()
                    .is_some_and(|hash| !names.contains(format!("{PREFIX}t_{hash}").as_str())),
                // A test database (its name carries its owner): goes when that owner is gone
                // and nobody is connected to it (the owner may be a broker that died while
                // the test it handed the database to still runs: that test drops it).
                _ => owner_in_name(name).is_some_and(|owner| !alive(owner)) && !in_use,
            },
            Some(None) => false,
            Some(Some(mark)) => match mark {
                Mark::Trash => true,
                // A broker's test database outlives a broker that died while its test runs:
                // that test drops it when it ends.
                Mark::Test { owner } => !alive(owner) && !in_use,
                Mark::Building { owner } => !alive(owner),
                Mark::Kept { suite: s, run } => s == suite && run != this_run,
                Mark::Template { suite: s, used } => {
                    let age = now() - used;
                    name != current
                        && ((s == suite && age > STALE_SUITE_TEMPLATE) || age > STALE_TEMPLATE)
                }
            },
        };
        if drop {
            doomed.push((name.clone(), comment.clone()));
        }
    }
    // Processes that start together sweep the same list: each in its own order, they share the
    // work instead of queueing on the same database.
    doomed.sort_by_cached_key(|_| uuid::Uuid::new_v4());

    let (mut dropped, mut notices) = (0_usize, Vec::new());
    for (name, comment) in doomed {
        let listed = comment.as_deref().and_then(Mark::parse);
        match drop_if_still(server.version, &mut conn, &name, listed.as_ref()).await {
            Ok(false) => {}
            Ok(true) => {
                if comment
                    .as_deref()
                    .is_some_and(|c| c.starts_with("pgfresh:kept"))
                {
                    notices.push(format!(
                        "pgfresh: dropped {name}, kept by an earlier run of this test suite"
                    ));
                }
                dropped += 1;
            }
            Err(e) => tracing::debug!(%name, "sweep left it: {e}"),
        }
    }
    if dropped > 0 {
        tracing::info!(count = dropped, "swept databases left behind");
    }
    Ok(notices)
}

/// Frees what is pgfresh's to free on a server that ran out of disk space: every ready clone
/// (made again on demand), every template but `current` not used in the last ten minutes
/// (rebuilt on demand), and what the sweep drops anyway. Databases of live processes stay.
pub(crate) async fn free_space(server: &Server, suite: &str, current: &str) -> Result<()> {
    let mut conn = server.admin_conn(Urgency::Now, "free disk space").await?;
    let databases: Vec<(String, Option<String>, i32)> = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database'), datconnlimit \
         FROM pg_database WHERE starts_with(datname::text, $1) AND pg_has_role(datdba, 'MEMBER')",
    )
    .bind(PREFIX)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::database("listing pgfresh databases", e))?;
    for (name, comment, limit) in &databases {
        if !Mark::created_by_pgfresh(name, comment.as_deref(), *limit) {
            continue;
        }
        let mark = comment.as_deref().and_then(Mark::parse);
        let unused = match &mark {
            None => name.starts_with("pgfresh_r_"),
            Some(Mark::Template { used, .. }) => name != current && now() - used > 600,
            Some(_) => false,
        };
        if unused {
            match drop_if_still(server.version, &mut conn, name, mark.as_ref()).await {
                Ok(_) => tracing::info!(%name, "dropped to free disk space"),
                Err(e) => tracing::debug!(%name, "could not drop it to free disk space: {e}"),
            }
        }
    }
    drop(conn);
    for notice in sweep(server, suite, current, &run_id(server.owner)).await? {
        eprintln!("{notice}");
    }
    Ok(())
}
