//! `pgfresh gc`: `--dry-run` lists everything pgfresh created on a server and on this machine,
//! and `gc` removes it all — on a cluster of its own, so no other test loses its databases.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{output, probe_field, rerun};

#[tokio::test]
async fn probe() {
    common::probe().await;
}

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
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run_dir = dir.path().display().to_string();

    // A cluster of its own that stays up, with a kept database and a template.
    let out = rerun(
        "probe",
        &[
            ("PGFRESH_SERVER", "local"),
            ("PGFRESH_RUN_DIR", &run_dir),
            ("PGFRESH_LINGER", "forever"),
            ("PGFRESH_KEEP", "always"),
        ],
    );
    assert!(out.status.success(), "{}", output(&out));
    let kept = probe_field(&out, "name");
    let port = probe_field(&out, "port");
    let cluster_dir = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("state").exists())
        .expect("the cluster's run directory");
    let state = std::fs::read_to_string(cluster_dir.join("state")).unwrap();
    let password = state
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .unwrap();
    let url = format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres");

    let (ok, text) = gc(&["--dry-run", "--database-url", &url], &run_dir);
    assert!(ok, "{text}");
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
    assert!(text.contains("removed"), "{text}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err());
    assert!(!cluster_dir.join("data").exists());

    let (ok, text) = gc(&["--dry-run"], &run_dir);
    assert!(ok, "{text}");
    assert!(
        text.contains("looking only for the clusters and containers"),
        "{text}"
    );
    assert!(!text.contains(&cluster_dir.display().to_string()), "{text}");
}
