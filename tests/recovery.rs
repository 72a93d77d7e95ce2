//! The next process gets a database whatever happened to the last run's server or broker:
//! `pgfresh gc`, the postmaster killed, the run directory deleted by hand, a `DB_URL` server
//! restarted, the broker killed. Each case has a server of its own (a fresh run directory) and a
//! broker of its own (a tag in the environment), with a child holding a database so that the
//! broker is alive when the fault strikes; then a new process asks for a database.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{OwnServer, PROBE, Running, broker_pid, env_with, field, output};

fn local() -> bool {
    common::available(common::local_binaries(), "PostgreSQL binaries")
}

/// A child of `env` that reports its database and holds it for a minute; and the pid of the
/// broker that handed it out.
fn holding(env: &[(&str, &str)], tag: &str) -> (Running, String, u32) {
    let mut child = Running::spawn(PROBE, &[env, &[("PGFRESH_TEST_SLEEP", "60000")]].concat());
    let name = field(&child.probe_line(), "name");
    let broker = broker_pid(tag).expect("a broker serves the child");
    (child, name, broker)
}

/// Whether `pid` ends within 10 s.
fn ends(pid: u32) -> bool {
    common::eventually(Duration::from_secs(10), || common::ended(pid))
}

/// A local cluster and a broker of the test's own (a tag in the environment), and a child
/// holding a database from that broker.
struct Case {
    server: OwnServer,
    env: Vec<(&'static str, String)>,
    child: Running,
    /// The child's database.
    name: String,
    /// The broker's pid.
    broker: u32,
}

impl Case {
    fn start() -> Self {
        let server = OwnServer::new("local", 2);
        let tag = uuid::Uuid::new_v4().to_string();
        let mut env = server.env();
        env.push(("PGFRESH_TEST_TAG", tag.clone()));
        let (child, name, broker) = holding(&env_with(&env, &[]), &tag);
        Self {
            server,
            env,
            child,
            name,
            broker,
        }
    }

    /// A new process of the case's environment gets a database.
    fn next_process_gets_a_database(&self) {
        next_process_gets_a_database(&env_with(&self.env, &[]), &self.name);
    }
}

/// A new process of `env` gets a database (and a different one than `before`).
fn next_process_gets_a_database(env: &[(&str, &str)], before: &str) {
    let out = common::rerun(PROBE, env);
    assert!(out.status.success(), "{}", output(&out));
    assert_ne!(common::probe_field(&out, "name"), before);
}

#[test]
fn gc_ends_the_broker_before_it_removes_the_cluster_and_the_next_process_gets_one() {
    if !local() {
        return;
    }
    let mut case = Case::start();
    let cluster = case.server.run_dir().expect("the cluster's run directory");

    let out = Command::new(env!("CARGO_BIN_EXE_pgfresh"))
        .arg("gc")
        .env_remove("DB_URL")
        .env("PGFRESH_RUN_DIR", case.server.base())
        .output()
        .unwrap();
    let text = output(&out);
    assert!(out.status.success(), "{text}");
    let ending = text.find("removing running broker of").expect(&text);
    let removing = text.find("removing local cluster").expect(&text);
    assert!(ending < removing, "the broker is not ended first:\n{text}");
    assert!(ends(case.broker), "the broker outlived gc");
    assert!(!cluster.join("data").exists(), "{text}");

    case.child.kill();
    case.next_process_gets_a_database();
}

#[test]
fn a_broker_whose_postmaster_was_killed_ends_and_the_next_process_gets_one() {
    if !local() {
        return;
    }
    let mut case = Case::start();

    common::kill(case.server.postmaster_pid());
    assert!(ends(case.broker), "the broker outlived its server");
    case.child.kill();
    case.next_process_gets_a_database();
}

/// The postmaster killed a moment before the next process asks: the broker has not seen it yet
/// (it looks every second) and hands out a database it made ahead, which cannot be reached. The
/// process tells it, the broker finds its server gone and ends, and the process asks again
/// through a fresh broker, which starts a new cluster.
#[test]
fn a_database_handed_out_on_a_server_just_killed_is_asked_for_again_from_a_fresh_broker() {
    if !local() {
        return;
    }
    let mut case = Case::start();

    common::kill(case.server.postmaster_pid());
    case.next_process_gets_a_database();
    assert!(ends(case.broker), "the broker outlived its server");
    case.child.kill();
}

#[test]
fn a_broker_whose_run_directory_was_deleted_ends_and_the_next_process_gets_one() {
    if !local() {
        return;
    }
    let mut case = Case::start();
    let postmaster = case.server.postmaster_pid();

    // The running server may make a file while the tree is walked: as a user would, try again.
    let doomed = case.server.run_dir().unwrap();
    assert!(
        common::eventually(Duration::from_secs(5), || std::fs::remove_dir_all(&doomed)
            .is_ok()),
        "could not delete {}",
        doomed.display()
    );
    assert!(ends(case.broker), "the broker outlived its run directory");
    case.child.kill();
    case.next_process_gets_a_database();
    // The orphaned postmaster, whose files are gone, is not left running for long by its
    // own check of its lock file (a minute); not pgfresh's to wait for here.
    common::kill(postmaster);
}

#[tokio::test]
async fn a_restarted_url_server_ends_the_broker_and_the_next_process_gets_one() {
    if !local() {
        return;
    }
    // The url source's server: a local cluster of this test's own, held up by this test.
    let mut server = OwnServer::new("local", 2);
    let started = common::rerun(PROBE, &env_with(&server.env(), &[]));
    assert!(started.status.success(), "{}", output(&started));
    server.hold(Duration::from_secs(10));
    let url = server.admin_url();
    let runs = tempfile::tempdir().unwrap();
    let tag = uuid::Uuid::new_v4().to_string();
    let run_dir = runs.path().display().to_string();
    let env = [
        ("PGFRESH_SERVER", "url"),
        ("DB_URL", url.as_str()),
        ("PGFRESH_RUN_DIR", run_dir.as_str()),
        ("PGFRESH_TEST_TAG", tag.as_str()),
    ];
    let (mut child, name, broker) = holding(&env, &tag);

    server.restart_with(&[]);
    assert!(ends(broker), "the broker outlived its server's restart");
    child.kill();
    next_process_gets_a_database(&env, &name);

    // Nothing leaks: once the killed child's database is swept (by the next process's sweep,
    // its owner being dead), only templates and ready clones are left.
    let admin = pgfresh::sqlx::PgPool::connect(&url).await.unwrap();
    assert!(
        common::dropped_within(&admin, &name, Duration::from_secs(10)).await,
        "{name} outlived its killed process"
    );
    admin.close().await;
}

#[tokio::test]
async fn a_killed_brokers_test_ends_normally_and_the_next_process_gets_one_from_a_fresh_broker() {
    if !local() {
        return;
    }
    let mut server = OwnServer::new("local", 2);
    let tag = uuid::Uuid::new_v4().to_string();
    let base = server.env();
    let env = env_with(&base, &[("PGFRESH_TEST_TAG", &tag)]);
    let mut child = Running::spawn(
        PROBE,
        &[&env[..], &[("PGFRESH_TEST_SLEEP", "3000")]].concat(),
    );
    let name = field(&child.probe_line(), "name");
    let broker = broker_pid(&tag).expect("a broker serves the child");
    server.hold(Duration::from_secs(10));

    common::kill(broker);
    assert!(ends(broker));
    next_process_gets_a_database(&env, &name);
    let fresh = broker_pid(&tag).expect("a fresh broker serves the next process");
    assert_ne!(fresh, broker);
    // The test in flight ends as usual: its database, whose broker is gone, is dropped by the
    // test process itself.
    let (status, text) = child.finish(Duration::from_secs(30));
    assert!(status.success(), "{text}");
    let admin = pgfresh::sqlx::PgPool::connect(&server.admin_url())
        .await
        .unwrap();
    assert!(
        common::dropped_within(&admin, &name, Duration::from_secs(10)).await,
        "{name} outlived its test"
    );
    admin.close().await;
}
