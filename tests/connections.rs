//! Bounded connections: 8 processes × 8 tests, each test holding every connection of its pool
//! at once, stay within the server's `max_connections`; on a server with few slots, processes
//! wait for one instead of failing, and wait for the template's build without holding one.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{PROBE, output};
use pgfresh::sqlx;

const PROCESSES: usize = 8;
const TESTS_PER_PROCESS: usize = 8;

/// A child process's entry point (of `eight_processes_of_eight_tests_fit`): eight tests at
/// once, each with its whole pool busy for a moment, all eight at the same moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
#[ignore = "a child process's entry point, run by eight_processes_of_eight_tests_fit"]
async fn eight_busy_tests() {
    common::only_as_child("eight_busy_tests", "eight_processes_of_eight_tests_fit");
    let all_busy = std::sync::Arc::new(tokio::sync::Barrier::new(TESTS_PER_PROCESS));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..TESTS_PER_PROCESS {
        let all_busy = all_busy.clone();
        set.spawn(async move {
            let db = pgfresh::test_db().await;
            let mut held = Vec::new();
            for _ in 0..pgfresh::DEFAULT_POOL_SIZE {
                held.push(db.pool().acquire().await.unwrap());
            }
            all_busy.wait().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(held);
        });
    }
    set.join_all().await;
}

/// On a server pgfresh starts (its own, so that other tests' connections do not count), the
/// peak of client connections stays within `max_connections`.
#[tokio::test]
async fn eight_processes_of_eight_tests_fit() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    let mut server = common::OwnServer::new("local", 2);
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            common::child("eight_busy_tests", &env)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let waiting = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    });
    server.hold(Duration::from_secs(60));
    let mut admin = None;
    let mut peak = 0;
    let mut max = 0;
    while !waiting.is_finished() {
        if admin.is_none()
            && let Some(url) = server.state().map(|_| server.admin_url())
        {
            admin = sqlx::PgPool::connect(&url).await.ok();
        }
        if let Some(admin) = &admin {
            let (now, limit): (i64, i64) = sqlx::query_as(
                "SELECT count(*), current_setting('max_connections')::bigint \
                 FROM pg_stat_activity WHERE backend_type = 'client backend'",
            )
            .fetch_one(admin)
            .await
            .unwrap();
            (peak, max) = (peak.max(now), limit);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for out in waiting.await.unwrap() {
        assert!(out.status.success(), "{}", output(&out));
    }
    println!("peak client connections {peak} of max_connections {max}");
    let one_process = TESTS_PER_PROCESS * pgfresh::DEFAULT_POOL_SIZE as usize;
    assert!(
        peak >= one_process as i64,
        "the tests did not overlap: a peak of {peak}, below one process's {one_process}"
    );
    assert!(peak <= max, "{peak} > {max}");
    if let Some(admin) = admin {
        admin.close().await;
    }
}

/// A server with few connection slots (12), all of them taken when test processes start:
/// each process waits for a slot (pgfresh's own connection, then its test pool's first) instead
/// of failing with "sorry, too many clients already", and gets its database once slots free up.
#[tokio::test]
async fn processes_wait_for_a_connection_slot() {
    let Some((_server, url)) = server_with_slots(12) else {
        return;
    };

    // Every slot taken, as by other test processes.
    let mut taken = Vec::new();
    while let Ok(conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await {
        taken.push(conn);
    }
    assert_eq!(taken.len(), 12);
    let children = probes_on(&url, 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for conn in taken {
        let _ = sqlx::Connection::close(conn).await;
    }
    assert_all_succeed(children).await;
}

/// Twelve test processes starting together on a server with ten connection slots, before the
/// template is built: one builds it while the others wait at the broker, holding no connection
/// (each waiting on the build's advisory lock with a connection of its own would leave none for
/// the build), and every one gets its database.
#[tokio::test]
async fn processes_starting_before_the_template_is_built_fit_in_few_slots() {
    let Some((_server, url)) = server_with_slots(10) else {
        return;
    };
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let templates: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'pgfresh_t_%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!templates.is_empty());
    for name in templates {
        // Two statements: DROP DATABASE cannot run in the transaction a multi-statement query is.
        for sql in [
            format!(r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE false"#),
            format!(r#"DROP DATABASE "{name}""#),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
    sqlx::Connection::close(admin).await.unwrap();
    assert_all_succeed(probes_on(&url, 12)).await;
}

/// A local server of the test's own, its template built by a first probe, then restarted with
/// `max_connections = slots`, and its administrative URL; `None` without PostgreSQL binaries.
fn server_with_slots(slots: u32) -> Option<(common::OwnServer, String)> {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return None;
    }
    let mut server = common::OwnServer::new("local", 5);
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = common::rerun(PROBE, &env);
    assert!(first.status.success(), "{}", output(&first));
    server.hold(Duration::from_secs(10));
    server.restart_with(&[&format!("max_connections = {slots}")]);
    let url = server.admin_url();
    Some((server, url))
}

/// `n` children running the probe test against the server at `url`.
fn probes_on(url: &str, n: usize) -> Vec<std::process::Child> {
    (0..n)
        .map(|_| {
            common::child(
                PROBE,
                &[
                    ("PGFRESH_SERVER", "url"),
                    ("DB_URL", url),
                    ("PGFRESH_READY", "0"),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect()
}

async fn assert_all_succeed(children: Vec<std::process::Child>) {
    let n = children.len();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let failed: Vec<String> = outputs
        .iter()
        .filter(|o| !o.status.success())
        .map(output)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {n} failed:\n{}",
        failed.len(),
        failed.join("\n---\n")
    );
}
