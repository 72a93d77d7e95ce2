//! Server sources: `auto` prefers `DB_URL`, and the servers pgfresh starts (a local cluster, a
//! container) are gone once the process that started them has exited, however it exited.

mod common;

use std::time::{Duration, Instant};

use common::{output, probe_field, rerun};

#[tokio::test]
async fn probe() {
    common::probe().await;
}

/// Polls `gone` for up to `limit`.
fn eventually(limit: Duration, gone: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if gone() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    gone()
}

#[tokio::test]
async fn auto_prefers_db_url() {
    let db = pgfresh::test_db().await;
    let out = rerun("probe", &[("DB_URL", &common::server_url(&db))]);
    assert!(out.status.success(), "{}", output(&out));
    assert_eq!(probe_field(&out, "source"), "url");
}

fn run_and_check_cleanup(env: &[(&str, &str)], panic: bool) -> (String, u16) {
    let mut env = env.to_vec();
    if panic {
        env.push(("PGFRESH_TEST_PANIC", "1"));
    }
    let out = rerun("probe", &env);
    assert_eq!(out.status.success(), !panic, "{}", output(&out));
    (
        probe_field(&out, "pid"),
        probe_field(&out, "port").parse().unwrap(),
    )
}

#[test]
fn local_cluster_is_removed_when_the_process_exits() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    for panic in [false, true] {
        let (pid, port) = run_and_check_cleanup(&[("PGFRESH_SERVER", "local")], panic);
        let dirs_gone = || {
            std::fs::read_dir("/dev/shm")
                .into_iter()
                .chain(std::fs::read_dir(std::env::temp_dir()))
                .flatten()
                .flatten()
                .all(|e| {
                    !e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("pgfresh-{pid}-"))
                })
        };
        let port_closed = || std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
        assert!(eventually(Duration::from_secs(10), || dirs_gone() && port_closed()));
    }
}

#[test]
fn container_is_removed_when_the_process_exits() {
    if !common::available(common::docker_answers(), "a Docker daemon") {
        return;
    }
    let image = std::env::var("PGFRESH_IMAGE").unwrap_or_default();
    let mut env = vec![("PGFRESH_SERVER", "docker")];
    if !image.is_empty() {
        env.push(("PGFRESH_IMAGE", image.as_str()));
    }
    let (pid, port) = run_and_check_cleanup(&env, true);
    let containers_gone = || {
        std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=dev.pgfresh.pid={pid}"),
            ])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
    };
    let port_closed = || std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
    assert!(eventually(Duration::from_secs(20), || containers_gone()
        && port_closed()));
}
