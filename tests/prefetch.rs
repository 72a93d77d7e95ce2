//! A process that runs many tests (`cargo test`) gets its next database claimed (from the
//! broker, or by itself without one) and connected before the test asks; under nextest's
//! process-per-test mode nothing is prefetched; and a prefetched database that no test took is
//! dropped when the process exits.

mod common;

use std::time::{Duration, Instant};

use pgfresh::sqlx::{self, PgPool};
use pgfresh::{Harness, TestDb};

/// A migration set of this process's own (a new template each time), so that the process's
/// other tests (one process under `cargo test`) and the other processes of this file neither
/// take its prefetched databases nor add to them.
fn harness(dir: &tempfile::TempDir) -> Harness {
    std::fs::write(
        dir.path().join("1_prefetch_probe.sql"),
        format!(
            "-- {}\nCREATE TABLE prefetch_probe (id int);\n",
            uuid::Uuid::new_v4()
        ),
    )
    .unwrap();
    Harness::from_dir(dir.path())
}

/// The name's prefix common to the test databases of this set, whoever made them (this
/// process, or the broker): `pgfresh_<hash>_`.
fn prefix(db: &TestDb) -> String {
    let hash = db.name().split('_').nth(1).unwrap();
    format!("pgfresh_{hash}_")
}

/// A database of this set, other than those `handed` out, that has a session, as soon as there
/// is one (at most `limit`): the prefetched one, whose pool is connecting (the clones the
/// broker made ahead have none).
async fn prefetched(
    admin: &PgPool,
    prefix: &str,
    handed: &[String],
    limit: Duration,
) -> Option<String> {
    let start = Instant::now();
    loop {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT datname::text FROM pg_stat_activity \
             WHERE starts_with(datname::text, $1)",
        )
        .bind(prefix)
        .fetch_all(admin)
        .await
        .unwrap();
        let other = names.into_iter().find(|n| !handed.contains(n));
        if other.is_some() || start.elapsed() > limit {
            return other;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the prefetched `name` is ready: its pool's connection is made (the session waits
/// for its first query), and the moment it takes the worker to keep it has passed. A hand-out
/// does not wait for a prefetch under way; it would make a database of its own.
async fn connected(admin: &PgPool, name: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let idle: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = $1 AND state = 'idle')",
        )
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap();
        if idle {
            break;
        }
        assert!(start.elapsed() < limit, "no connection to {name}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Three databases one after another, as three tests of one process take them. Unless every
/// test runs in its own process, the third was claimed and connected after the second; a
/// fourth waits when the test ends (reported on a `LEFT` line, for
/// [`a_database_no_test_took_is_dropped_at_exit`]).
#[tokio::test]
async fn the_third_database_is_ready_before_it_is_asked_for() {
    let per_process =
        std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test");
    let dir = tempfile::tempdir().unwrap();
    let harness = harness(&dir);

    let first = harness.test_db().await.unwrap();
    let admin = common::admin(&first).await;
    let prefix = prefix(&first);
    let mut handed = vec![first.name().to_owned()];
    drop(first);
    let second = harness.test_db().await.unwrap();
    handed.push(second.name().to_owned());
    drop(second);

    let limit = Duration::from_secs(if per_process { 1 } else { 10 });
    let waiting = prefetched(&admin, &prefix, &handed, limit).await;
    if let Some(waiting) = &waiting {
        connected(&admin, waiting, limit).await;
    }
    let third = harness.test_db().await.unwrap();
    if per_process {
        assert_eq!(waiting, None, "prefetched in process-per-test mode");
    } else {
        assert_eq!(waiting.as_deref(), Some(third.name()));
    }
    // Its pool is connected, to the right database, and works on this test's runtime.
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(third.pool())
        .await
        .unwrap();
    assert_eq!(current, third.name());
    handed.push(third.name().to_owned());

    if !per_process {
        let left = prefetched(&admin, &prefix, &handed, limit)
            .await
            .expect("a fourth database prefetched");
        // Kept, not in the making, when the process exits.
        connected(&admin, &left, limit).await;
        println!("LEFT name={left}");
    }
    admin.close().await;
}

#[tokio::test]
async fn a_database_no_test_took_is_dropped_at_exit() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let mut env = vec![("PGFRESH_SERVER", "url"), ("DB_URL", url.as_str())];
    env.push(("NEXTEST_EXECUTION_MODE", "process-per-test"));
    let out = common::rerun("the_third_database_is_ready_before_it_is_asked_for", &env);
    assert!(out.status.success(), "{}", common::output(&out));

    env.pop();
    // Prefetched from the broker (which drops it once the exiting process lets go of it), and
    // without one (the process drops it as it exits).
    for broker in ["on", "off"] {
        let mut env = env.clone();
        env.push(("PGFRESH_BROKER", broker));
        let out = common::rerun("the_third_database_is_ready_before_it_is_asked_for", &env);
        assert!(out.status.success(), "{}", common::output(&out));
        let left = common::output(&out)
            .lines()
            .find_map(|l| l.split_once("LEFT name=").map(|(_, n)| n.trim().to_owned()))
            .unwrap_or_else(|| panic!("no LEFT line in:\n{}", common::output(&out)));
        assert!(
            common::dropped_within(&admin, &left, Duration::from_secs(10)).await,
            "{left} outlived its process (PGFRESH_BROKER={broker})"
        );
    }
    admin.close().await;
}
