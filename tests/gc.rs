//! `pgfresh gc`: `--dry-run` lists everything pgfresh created on a server and on this machine,
//! and `gc` removes it all — on a cluster of its own, so no other test loses its databases.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{PROBE, Running, broker_pid, kill, output, probe_field, rerun};

fn gc(args: &[&str], run_dir: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgfresh"))
        .arg("gc")
        .args(args)
        .env_remove("DB_URL")
        .env("PGFRESH_RUN_DIR", run_dir)
        .output()
        .unwrap();
    (out.status.success(), output(&out))
}

#[test]
fn dry_run_lists_and_gc_removes_everything() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    // A cluster of its own that stays up, with a kept database and a template.
    let (dir, out, cluster_dir) = probe_on_own_cluster(&[
        ("PGFRESH_LINGER", "forever"),
        ("PGFRESH_KEEP", "always"),
        // No ready clones made by the process itself: the broker makes the run's.
        ("PGFRESH_READY", "0"),
    ]);
    let run_dir = dir.path().display().to_string();
    let kept = probe_field(&out, "name");
    let port = probe_field(&out, "port");
    let state = std::fs::read_to_string(cluster_dir.join("state")).unwrap();
    let password = state
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .unwrap();
    let url = format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres");

    // Once the run is over, its broker makes as many ready clones as it used (one: the claim
    // that built the template) for the next run: gc lists them too.
    let mut text = String::new();
    assert!(
        common::eventually(std::time::Duration::from_secs(30), || {
            let (ok, listed) = gc(&["--dry-run", "--database-url", &url], &run_dir);
            assert!(ok, "{listed}");
            text = listed;
            text.contains("(ready)")
        }),
        "no ready clone listed:\n{text}"
    );
    assert!(
        text.contains(&format!("would remove database {kept} (kept)")),
        "{text}"
    );
    assert!(text.contains("(template)"), "{text}");
    assert!(
        text.contains(&format!(
            "would remove local cluster in {}",
            cluster_dir.display()
        )),
        "{text}"
    );
    assert!(!text.contains(password), "the password leaked:\n{text}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok());

    let (ok, text) = gc(&["--database-url", &url], &run_dir);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("removing database {kept} (kept)")),
        "{text}"
    );
    assert!(text.contains("(ready)"), "{text}");
    assert!(text.contains("removed"), "{text}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err());
    assert!(!cluster_dir.join("data").exists());

    let (ok, text) = gc(&["--dry-run"], &run_dir);
    assert!(ok, "{text}");
    assert!(
        text.contains("looking only for what pgfresh left on this machine"),
        "{text}"
    );
    assert!(!text.contains(&cluster_dir.display().to_string()), "{text}");
}

#[tokio::test]
async fn gc_lists_a_live_broker_as_running_and_removes_a_killed_brokers_directory() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let base = tempfile::tempdir().unwrap();
    let run_dir = base.path().display().to_string();
    let tag = uuid::Uuid::new_v4().to_string();
    // No clones made ahead: the killed broker leaves nothing on the server.
    let env = [
        ("PGFRESH_SERVER", "url"),
        ("DB_URL", url.as_str()),
        ("PGFRESH_TEST_TAG", tag.as_str()),
        ("PGFRESH_RUN_DIR", run_dir.as_str()),
        ("PGFRESH_READY", "0"),
        ("PGFRESH_TEST_SLEEP", "60000"),
    ];
    let mut child = Running::spawn(PROBE, &env);
    let name = common::field(&child.probe_line(), "name");
    let broker_dir = std::fs::read_dir(base.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("-broker-"))
        .expect("the broker's directory");

    // A live broker is listed as one, to be asked to leave first.
    let (ok, text) = gc(&["--dry-run"], &run_dir);
    assert!(ok, "{text}");
    assert!(
        !text.contains("broker directory"),
        "a live broker's: {text}"
    );
    assert!(
        text.contains(&format!(
            "would remove running broker of {}",
            broker_dir.display()
        )),
        "{text}"
    );

    // Killed, the broker leaves its directory (its socket and lock files) behind.
    child.kill();
    assert!(
        common::dropped_within(&admin, &name, std::time::Duration::from_secs(10)).await,
        "{name} outlived its killed process"
    );
    let broker = broker_pid(&tag).expect("the broker lingers");
    kill(broker);
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || common::ended(broker)
    ));
    assert!(broker_dir.exists());

    let listed = format!("broker directory {}", broker_dir.display());
    let (ok, text) = gc(&["--dry-run"], &run_dir);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("would remove {listed}")), "{text}");
    assert!(broker_dir.exists(), "--dry-run removed it");
    let (ok, text) = gc(&[], &run_dir);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("removing {listed}")), "{text}");
    assert!(!broker_dir.exists());
}

/// A local cluster stopped after its linger time keeps its data for a restart: gc lists it as
/// stopped and removes it, with its password, and its guardian leaves.
#[test]
fn gc_removes_the_data_a_stopped_local_cluster_kept() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    let (dir, _, cluster_dir) = probe_on_own_cluster(&[("PGFRESH_LINGER", "1")]);
    let run_dir = dir.path().display().to_string();
    assert!(
        common::eventually(std::time::Duration::from_secs(30), || cluster_dir
            .join("kept")
            .exists()),
        "the cluster was not stopped with its data kept"
    );
    let shown = format!(
        "local cluster in {} (stopped, its data kept for a restart)",
        cluster_dir.display()
    );
    let (ok, text) = gc(&["--dry-run"], &run_dir);
    assert!(
        ok && text.contains(&format!("would remove {shown}")),
        "{text}"
    );
    let (ok, text) = gc(&[], &run_dir);
    assert!(ok && text.contains(&format!("removing {shown}")), "{text}");
    for left in ["data", "password", "kept", "server.log"] {
        assert!(!cluster_dir.join(left).exists(), "{left} is left");
    }
}

/// The probe, run once on a local cluster of its own (`env` added) in a run directory the
/// server's user can enter (it may run as `postgres`): the directory, the probe's output, and
/// the cluster's run directory in it.
fn probe_on_own_cluster(
    env: &[(&str, &str)],
) -> (tempfile::TempDir, std::process::Output, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run_dir = dir.path().display().to_string();
    let mut all = vec![("PGFRESH_SERVER", "local"), ("PGFRESH_RUN_DIR", &run_dir)];
    all.extend_from_slice(env);
    let out = rerun(PROBE, &all);
    assert!(out.status.success(), "{}", output(&out));
    let cluster_dir = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("data").exists())
        .expect("the cluster's run directory");
    (dir, out, cluster_dir)
}
