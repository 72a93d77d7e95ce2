//! Cramped machines, for real (as root: private mount namespaces and small tmpfs mounts): a
//! 64 MB `/dev/shm` (Docker's default) is passed over for the temporary directory and every
//! test still gets its database; a run directory that fills up, or that cannot even hold a
//! cluster, fails with one error that says so, names the data directory, its free space and
//! `PGFRESH_RUN_DIR`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{PROBE, output};

/// A child process's entry point (of `a_run_directory_that_fills_up_says_so`): takes
/// databases, holding them, until one fails (at most 200), and prints `FILLED <n>` and the
/// error on a `FILLERR` line.
#[tokio::test]
#[ignore = "a child process's entry point, run by a_run_directory_that_fills_up_says_so"]
async fn fill() {
    common::only_as_child("fill", "a_run_directory_that_fills_up_says_so");
    let harness = pgfresh::Harness::new(&pgfresh::MIGRATOR);
    let mut held = Vec::new();
    for _ in 0..200 {
        match harness.test_db().await {
            Ok(db) => held.push(db),
            Err(e) => {
                println!("FILLED {}", held.len());
                println!("FILLERR {}", e.to_string().replace('\n', " "));
                return;
            }
        }
    }
    println!("FILLED {} without an error", held.len());
}

/// Root, and the tools to make mount namespaces and tmpfs mounts.
fn can_mount() -> bool {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    common::available(
        root && Command::new("unshare").arg("--help").output().is_ok(),
        "root with unshare and mount (for small tmpfs mounts)",
    )
}

/// A directory the server's user (`postgres` when the tests run as root) can enter.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs this binary's test `name` in a private mount namespace where a tmpfs of `size` is
/// mounted on `target` first; `env` as for `common::rerun`. Returns the child's output, and the
/// listing of `target` once the child exited (still inside the namespace).
fn in_namespace(target: &Path, size: &str, name: &str, env: &[(&str, &str)]) -> (bool, String) {
    let script = r#"mount -t tmpfs -o "size=$1,mode=1777" tmpfs "$2" || exit 97
        target=$2
        shift 2
        "$@"; rc=$?
        echo "LISTING $(ls "$target" | tr '\n' ' ')"
        exit $rc"#;
    let child = common::child(name, env);
    let out = common::in_mount_namespace(&child, script, &[size.as_ref(), target.as_os_str()]);
    (out.status.success(), output(&out))
}

#[test]
fn a_small_dev_shm_is_passed_over_for_the_temporary_directory() {
    if !can_mount() {
        return;
    }
    let tmp = open_dir();
    let tmp_shown = tmp.path().display().to_string();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("1_a.sql"), "CREATE TABLE a (id int);").unwrap();
    std::fs::write(other.path().join("2_b.sql"), "CREATE TABLE b (id int);").unwrap();
    let other = other.path().display().to_string();
    // Three processes with three migration sets, as under nextest: each gets its database.
    for migrations in [
        None,
        Some(other.as_str()),
        Some("tests/fixtures/../../migrations"),
    ] {
        let mut env = vec![
            ("PGFRESH_SERVER", "local"),
            ("PGFRESH_LINGER", "1"),
            ("TMPDIR", tmp_shown.as_str()),
        ];
        if let Some(dir) = migrations {
            env.push(("PGFRESH_TEST_MIGRATIONS", dir));
        }
        let (ok, text) = in_namespace(Path::new("/dev/shm"), "64m", PROBE, &env);
        assert!(ok, "{migrations:?}:\n{text}");
        assert!(text.contains("PROBE name="), "{text}");
        assert!(
            text.contains("LISTING \n") || !text.contains("LISTING pgfresh"),
            "the cluster went to the small /dev/shm:\n{text}"
        );
    }
    let in_tmp = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("pgfresh-"));
    assert!(in_tmp, "no run directory in the temporary directory");
    // The cluster stops one second after its last user; the directory can go after that.
    std::thread::sleep(Duration::from_secs(4));
}

#[test]
fn a_run_directory_that_fills_up_says_so() {
    if !can_mount() {
        return;
    }
    for (size, child, what) in [
        // Room for the cluster, not for many databases.
        ("120m", "fill", "FILLERR "),
        // No room for initdb at all.
        ("12m", PROBE, "pgfresh could not provide a test database: "),
    ] {
        let run_dir = open_dir();
        let shown = run_dir.path().display().to_string();
        let env = [
            ("PGFRESH_SERVER", "local"),
            ("PGFRESH_LINGER", "1"),
            ("PGFRESH_RUN_DIR", shown.as_str()),
            ("PGFRESH_READY", "2"),
        ];
        let (_, text) = in_namespace(run_dir.path(), size, child, &env);
        let line = text
            .lines()
            .find_map(|l| l.find(what).map(|i| &l[i + what.len()..]))
            .unwrap_or_else(|| panic!("{size}: no `{what}` in:\n{text}"));
        assert!(
            line.contains(&format!(
                "PostgreSQL ran out of disk space in {shown}/pgfresh-"
            )),
            "{size}: {line}"
        );
        assert!(
            line.contains("/data (") && line.contains(" MiB free)"),
            "{size}: {line}"
        );
        assert!(
            line.contains("set PGFRESH_RUN_DIR to a directory with more room"),
            "{size}: {line}"
        );
        if child == "fill" {
            let filled: usize = text
                .lines()
                .find_map(|l| l.split("FILLED ").nth(1))
                .and_then(|n| n.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            assert!(
                filled >= 2,
                "{size}: only {filled} databases before the error:\n{text}"
            );
        }
    }
}
