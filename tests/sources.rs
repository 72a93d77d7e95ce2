//! Server sources: the one `PGFRESH_SERVER` names serves the tests, `auto` prefers `DB_URL`,
//! and the servers pgfresh starts (a local cluster, a container) are gone once the process that
//! started them has exited, however it exited.

mod common;

use std::time::Duration;

use common::{PROBE, Running, eventually, field, output, probe_field, rerun};

/// The source the environment names is the one that serves: a CI job whose source is missing
/// (no Docker daemon, no binaries, no `DB_URL`) fails here rather than testing another.
#[tokio::test]
async fn the_source_the_environment_names_serves_a_database() {
    let db = pgfresh::test_db().await;
    let one: i32 = pgfresh::sqlx::query_scalar("SELECT 1")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(one, 1);
    let named = std::env::var("PGFRESH_SERVER").unwrap_or_default();
    let named = named.trim().to_ascii_lowercase();
    if !named.is_empty() && named != "auto" {
        assert_eq!(db.source().to_string(), named);
    }
}

#[tokio::test]
async fn auto_prefers_db_url() {
    let db = pgfresh::test_db().await;
    let out = rerun(PROBE, &[("DB_URL", &common::server_url(&db))]);
    assert!(out.status.success(), "{}", output(&out));
    assert_eq!(probe_field(&out, "source"), "url");
}

/// Runs the probe in a child with its own run directory (so that it starts its own server
/// rather than sharing this process's) and a one-second linger; returns the server's port.
fn run_alone(env: &[(&str, &str)], run_dir: &std::path::Path, panic: bool) -> u16 {
    let run_dir = run_dir.display().to_string();
    let mut env = env.to_vec();
    env.extend([
        ("PGFRESH_RUN_DIR", run_dir.as_str()),
        ("PGFRESH_LINGER", "1"),
    ]);
    if panic {
        env.push(("PGFRESH_TEST_PANIC", "1"));
    }
    let out = rerun(PROBE, &env);
    assert_eq!(out.status.success(), !panic, "{}", output(&out));
    probe_field(&out, "port").parse().unwrap()
}

/// A run directory the server's user can enter (the tests may run as root, the server as
/// `postgres`).
fn run_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn data_dirs_gone(run_dir: &std::path::Path) -> bool {
    std::fs::read_dir(run_dir)
        .unwrap()
        .flatten()
        .all(|d| !d.path().join("data").exists() && !d.path().join("state").exists())
}

#[test]
fn local_cluster_is_shared_then_stops_after_the_last_process() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    let dir = run_dir();
    // No ready clones, so nothing kept: the stop removes the data (see the next test).
    let env = [("PGFRESH_SERVER", "local"), ("PGFRESH_READY_MAX", "0")];
    // A second process inside the linger time reuses the server, also after a panic.
    let first = run_alone(&env, dir.path(), true);
    let second = run_alone(&env, dir.path(), false);
    assert_eq!(first, second, "the second process started its own server");
    let port_closed = || std::net::TcpStream::connect(("127.0.0.1", second)).is_err();
    assert!(eventually(Duration::from_secs(15), || port_closed()
        && data_dirs_gone(dir.path())));
}

/// The linger stop keeps a local cluster's data, with its template and the ready clones the
/// broker left: the next process restarts that cluster (the user's own database in it is
/// still there) and gets one of those clones.
#[tokio::test]
async fn a_local_cluster_s_data_outlives_its_linger_stop_and_the_next_process_restarts_it() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    let mut server = common::OwnServer::new("local", 2);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let base = server.env();
    let env = common::env_with(&base, &[("PGFRESH_TEST_TAG", &tag)]);
    let first = rerun(PROBE, &env);
    assert!(first.status.success(), "{}", output(&first));
    let port: u16 = probe_field(&first, "port").parse().unwrap();
    // Holds the server while the broker makes its ready clones and leaves.
    server.hold(Duration::from_secs(5));
    let broker = common::broker_pid(&tag).expect("a broker served the run");
    assert!(eventually(Duration::from_secs(30), || common::ended(
        broker
    )));
    let admin = pgfresh::sqlx::PgPool::connect(&server.admin_url())
        .await
        .unwrap();
    let sentinel = format!("users_own_{tag}");
    pgfresh::sqlx::raw_sql(pgfresh::sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {sentinel}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let ready: Vec<i64> = pgfresh::sqlx::query_scalar(
        "SELECT oid::bigint FROM pg_database WHERE datname LIKE 'pgfresh\\_r\\_%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!ready.is_empty(), "the broker left no ready clone");
    admin.close().await;

    assert!(
        server.wait_gone(port, Duration::from_secs(15)).is_some(),
        "the cluster did not stop after its linger time: {:?}",
        server.processes()
    );
    let dir = server.run_dir().unwrap();
    assert!(
        dir.join("data/PG_VERSION").exists() && dir.join("kept").exists(),
        "the stop did not keep the data"
    );

    let second = rerun(PROBE, &env);
    assert!(second.status.success(), "{}", output(&second));
    let oid: i64 = probe_field(&second, "oid").parse().unwrap();
    assert!(
        ready.contains(&oid),
        "the second process's database (oid {oid}) is not a ready clone of the first run: {ready:?}"
    );
    assert!(!dir.join("kept").exists(), "the restart left the marker");
    let admin = pgfresh::sqlx::PgPool::connect(&server.admin_url())
        .await
        .unwrap();
    assert!(
        common::database_exists(&admin, &sentinel).await,
        "the restarted cluster is a new one"
    );
    admin.close().await;
}

#[test]
fn container_is_shared_then_removed_after_the_last_process() {
    if !common::available(common::docker_answers(), "a Docker daemon") {
        return;
    }
    let image = common::docker_image().unwrap_or_default();
    let mut env = vec![("PGFRESH_SERVER", "docker")];
    if !image.is_empty() {
        env.push(("PGFRESH_IMAGE", image.as_str()));
    }
    let dir = run_dir();
    let first = run_alone(&env, dir.path(), true);
    let second = run_alone(&env, dir.path(), false);
    assert_eq!(
        first, second,
        "the second process started its own container"
    );
    let port_closed = || std::net::TcpStream::connect(("127.0.0.1", second)).is_err();
    assert!(eventually(Duration::from_secs(20), || containers(
        dir.path()
    )
    .is_some_and(|ids| ids.is_empty())
        && port_closed()));
}

/// Without the docker CLI no guardian can remove a container, so each process starts one of
/// its own, which stops itself: it stays while the process runs, idle or not, and goes
/// seconds after the process (and its broker) exit.
#[test]
fn without_the_docker_cli_a_process_s_own_container_stays_while_it_runs_then_stops_itself() {
    if !common::available(common::docker_answers(), "a Docker daemon") {
        return;
    }
    let image = common::docker_image().unwrap_or_default();
    let dir = run_dir();
    let run_dir = dir.path().display().to_string();
    let mut env = vec![
        ("PGFRESH_SERVER", "docker"),
        ("PGFRESH_RUN_DIR", run_dir.as_str()),
        // No docker CLI on PATH.
        ("PATH", "/nonexistent"),
        ("PGFRESH_TEST_SLEEP", "9000"),
    ];
    if !image.is_empty() {
        env.push(("PGFRESH_IMAGE", image.as_str()));
    }
    let mut child = Running::spawn(PROBE, &env);
    let port: u16 = field(&child.probe_line(), "port").parse().unwrap();
    let answers = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    // Idle past the container's 5 s without clients: it stays while the process holds its
    // connections.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(containers(dir.path()).map(|ids| ids.len()), Some(1));
    assert!(answers(), "the server went while its process ran");
    let (status, text) = child.finish(Duration::from_secs(30));
    assert!(status.success(), "{text}");
    assert!(
        eventually(Duration::from_secs(30), || containers(dir.path())
            .is_some_and(|ids| ids.is_empty())
            && !answers()),
        "the container outlived its process by 30 s: {:?}",
        containers(dir.path())
    );
}

/// The ids of the containers (running or not) pgfresh started for run directories in `base`.
fn containers(base: &std::path::Path) -> Option<Vec<String>> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=dev.pgfresh.rundir={}", base.display()))
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}
