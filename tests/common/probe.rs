//! The probe: the child-process entry point of every test binary that runs tests/common.

use pgfresh::TestDb;
use pgfresh::sqlx;

/// The probe's test name, for [`rerun`](super::rerun), [`child`](super::child) and
/// [`Running::spawn`](super::Running::spawn).
pub const PROBE: &str = "common::probe::probe";

/// What the probe does in a child: get a database the way the environment says, use it,
/// report it on a `PROBE` line, and fail on request (`PGFRESH_TEST_PANIC`). Defined once here,
/// so every binary that takes tests/common has it (as `common::probe::probe`) for its tests to
/// run as a child with another environment. Whether the environment's own source serves a
/// database is a test of its own:
/// `sources::the_source_the_environment_names_serves_a_database`.
///
/// `PGFRESH_TEST_SLEEP=<ms>` makes it hold its database that long after reporting it (for a
/// parent to kill it, or the server, meanwhile), and `PGFRESH_TEST_AGAIN` makes it then ask for
/// a second database, reported on a `PROBE2` line. `PGFRESH_TEST_BUSY=<n>:<file>` makes it then
/// take `n` more, report them on a `BUSY` line, wait (at most 60 s) until the parent creates
/// `<file>` (once it has locked their markers), drop them, and after 1 s more ask for one more
/// database, reporting the outcome on a `BUSYERR` or `BUSYOK` line.
#[tokio::test]
#[ignore = "a child process's entry point, run by this binary's tests (common::PROBE)"]
async fn probe() {
    super::only_as_child(PROBE, "the tests of this binary that use common::PROBE");
    let db = probe_db().await;
    // Both queries on one connection. Through the pool, the second would open a connection of
    // its own: sqlx gives the first back to the pool in a task spawned when it is dropped, so
    // the next query finds none idle. On a server with few slots, probes that each hold one
    // connection and wait for a second would then wait for each other until the pool times
    // out (4 of 12 probes on 10 slots did, in connections.rs).
    let mut conn = db.pool().acquire().await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let url = url::Url::parse(&db.url()).unwrap();
    let oid: i64 = sqlx::query_scalar(
        "SELECT oid::bigint FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    println!(
        "PROBE name={} source={} port={} pid={} oid={oid}",
        db.name(),
        db.source(),
        url.port().unwrap_or(5432),
        std::process::id()
    );
    if let Some(ms) = std::env::var("PGFRESH_TEST_SLEEP")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if std::env::var_os("PGFRESH_TEST_AGAIN").is_some() {
        let again = probe_db().await;
        println!("PROBE2 name={}", again.name());
    }
    if let Ok(busy_spec) = std::env::var("PGFRESH_TEST_BUSY") {
        let (n, go) = busy_spec
            .split_once(':')
            .expect("PGFRESH_TEST_BUSY=<n>:<file>");
        busy(n.parse().expect("a number of databases"), go).await;
    }
    if std::env::var_os("PGFRESH_TEST_PANIC").is_some() {
        panic!("the probe fails on purpose");
    }
}

/// See `PGFRESH_TEST_BUSY` at [`probe`].
async fn busy(n: usize, go: &str) {
    use std::time::Duration;
    let harness = pgfresh::Harness::new(&pgfresh::MIGRATOR);
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(harness.test_db().await.unwrap());
    }
    let names: Vec<&str> = held.iter().map(TestDb::name).collect();
    println!("BUSY names={}", names.join(","));
    for _ in 0..600 {
        if std::path::Path::new(go).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    match harness.test_db().await {
        Ok(db) => println!("BUSYOK name={}", db.name()),
        Err(e) => println!("BUSYERR {e}"),
    }
}

/// A database the way the probe's environment says: from `PGFRESH_TEST_MIGRATIONS`, else the
/// crate's own schema.
async fn probe_db() -> TestDb {
    match std::env::var("PGFRESH_TEST_MIGRATIONS") {
        Ok(dir) => pgfresh::Harness::from_dir(dir)
            .test_db()
            .await
            .unwrap_or_else(|e| panic!("pgfresh could not provide a test database: {e}")),
        Err(_) => pgfresh::test_db().await,
    }
}
