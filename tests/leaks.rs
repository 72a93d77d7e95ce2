//! Nothing left behind (issue 5's "done when"): a run of 200 test processes against a local
//! cluster of their own, 10% of them failing and two killed with `SIGKILL` while they hold their
//! database, then a second run of 20. Afterwards the server holds only the current template, its
//! ready clones and the databases the second run kept for its failed tests (once the brokers
//! have left), and once the linger time has passed after the last process, no server is left
//! either.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{OwnServer, PROBE, Running, field, output, probe_field};
use pgfresh::sqlx::PgPool;

/// Test processes of the first run.
const FIRST_RUN: usize = 200;
/// Test processes of the second run.
const SECOND_RUN: usize = 20;
/// How many test processes run at once (as `cargo nextest run` does on a small machine).
const PARALLEL: usize = 8;
/// The processes of the first run that are killed while they hold their database.
const KILLED: [usize; 2] = [60, 140];
/// The server's linger time, shorter than the default so that the test does not wait long.
const LINGER: u64 = 2;

/// Every tenth process fails.
fn fails(i: usize) -> bool {
    i % 10 == 5
}

/// What one test process did.
#[derive(Debug)]
struct Outcome {
    name: String,
    port: String,
    failed: bool,
}

/// Runs `count` probe processes, [`PARALLEL`] at a time, as one run (one `NEXTEST_RUN_ID`);
/// the processes numbered in `killed` are killed while they hold their database.
fn run(server: &mut OwnServer, count: usize, killed: &[usize]) -> Vec<Outcome> {
    let run_id = uuid::Uuid::new_v4().to_string();
    let base = server.env();
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let mut env: Vec<(&str, &str)> =
                        base.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    env.push(("NEXTEST_RUN_ID", &run_id));
                    if fails(i) {
                        env.push(("PGFRESH_TEST_PANIC", "1"));
                    }
                    let outcome = if killed.contains(&i) {
                        env.push(("PGFRESH_TEST_SLEEP", "60000"));
                        let mut child = Running::spawn(PROBE, &env);
                        let line = child.probe_line();
                        child.kill();
                        Outcome {
                            name: field(&line, "name"),
                            port: field(&line, "port"),
                            failed: false,
                        }
                    } else {
                        let out: Output = common::rerun(PROBE, &env);
                        assert_eq!(out.status.success(), !fails(i), "{}", output(&out));
                        Outcome {
                            name: probe_field(&out, "name"),
                            port: probe_field(&out, "port"),
                            failed: fails(i),
                        }
                    };
                    outcomes.lock().unwrap().push(outcome);
                }
            });
        }
        // The first process creates the run directory; from then on this test holds a lease
        // like a process of the run, so that the server outlives the gap between the runs.
        server.hold(Duration::from_secs(60));
    });
    outcomes.into_inner().unwrap()
}

/// The `pgfresh_` databases on the server by marker kind.
async fn by_kind(admin: &PgPool) -> BTreeMap<String, BTreeSet<String>> {
    let mut kinds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, kind, _) in common::pgfresh_databases(admin).await {
        kinds.entry(kind).or_default().insert(name);
    }
    kinds
}

fn figures(kinds: &BTreeMap<String, BTreeSet<String>>) -> String {
    kinds
        .iter()
        .map(|(kind, names)| format!("{kind}={}", names.len()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn failed_names(outcomes: &[Outcome]) -> BTreeSet<String> {
    outcomes
        .iter()
        .filter(|o| o.failed)
        .map(|o| o.name.clone())
        .collect()
}

#[tokio::test]
async fn two_runs_with_failures_and_kills_leave_nothing_behind() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    let started = Instant::now();
    let mut server = OwnServer::new("local", LINGER);

    let first = run(&mut server, FIRST_RUN, &KILLED);
    let first_took = started.elapsed();
    let admin = PgPool::connect(&server.admin_url()).await.unwrap();
    let after_first = by_kind(&admin).await;
    println!(
        "first run: {FIRST_RUN} processes ({} failed, {} killed) in {first_took:?}; left: {}",
        failed_names(&first).len(),
        KILLED.len(),
        figures(&after_first)
    );
    assert_eq!(
        after_first.get("kept"),
        Some(&failed_names(&first)),
        "a run keeps the databases of its failed tests, and only those"
    );

    let second_started = Instant::now();
    let second = run(&mut server, SECOND_RUN, &[]);
    let second_took = second_started.elapsed();
    // The brokers stay a moment after the last process (3 s without one), holding the clones
    // they made ahead (test databases of theirs); leaving, they give them to the ready ones.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after_second = by_kind(&admin).await;
    while after_second.contains_key("test") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after_second = by_kind(&admin).await;
    }
    println!(
        "second run: {SECOND_RUN} processes ({} failed) in {second_took:?}; left: {}",
        failed_names(&second).len(),
        figures(&after_second)
    );

    let ports: BTreeSet<&str> = first
        .iter()
        .chain(&second)
        .map(|o| o.port.as_str())
        .collect();
    assert_eq!(ports.len(), 1, "more than one server: {ports:?}");
    let port: u16 = ports.first().unwrap().parse().unwrap();

    let templates = after_second.get("template").cloned().unwrap_or_default();
    assert_eq!(templates.len(), 1, "{after_second:?}");
    let current = templates.first().unwrap();
    let ready_prefix = current.replacen("pgfresh_t_", "pgfresh_r_", 1) + "_";
    for (kind, names) in &after_second {
        match kind.as_str() {
            "template" => {}
            "ready" => assert!(
                names.iter().all(|n| n.starts_with(&ready_prefix)),
                "ready clones of another template: {names:?}"
            ),
            "kept" => assert_eq!(
                names,
                &failed_names(&second),
                "kept databases other than the second run's failed tests"
            ),
            _ => panic!("{} {kind} databases left: {names:?}", names.len()),
        }
    }
    admin.close().await;

    let stop = server.wait_gone(port, Duration::from_secs(15));
    println!(
        "server gone {stop:?} after the last process (linger {LINGER} s); total {:?}",
        started.elapsed()
    );
    assert!(
        stop.is_some(),
        "the server outlived the linger time: {:?}",
        server.processes()
    );
}
