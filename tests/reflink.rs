//! PostgreSQL 18 clones sharing blocks on XFS, for real: a loop-mounted XFS image (as root, in
//! a private mount namespace), a cluster of PostgreSQL 18 on it (the local source, with
//! `PGFRESH_RUN_DIR` there), a template of about 1 GB, and three clones held at once that
//! together use almost none of the file system's room, where copies would need 3 GB. On tmpfs
//! the same server copies (the log says so, and the room goes).
//!
//! PostgreSQL 18's binaries: `PGFRESH_TEST_PG18_BIN`, else `/usr/lib/postgresql/18/bin`
//! (`.ci/run` sets the variable from `scripts/pg-bin.sh 18`).

#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::output;
use pgfresh::Harness;
use pgfresh::sqlx::{Connection, PgConnection};

/// Rows of the seed table: 200 bytes each, about 1 GB in all.
const ROWS_1GB: u64 = 4_000_000;

/// A child process's entry point (of the tests below): builds a template seeded with
/// `PGFRESH_TEST_ROWS` rows, then holds three clones at once, and prints a `PROBE` line with
/// the template's size and the room the three clones took (`statvfs` of `PGFRESH_RUN_DIR`).
/// pgfresh's log goes to stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process's entry point, run by the tests of tests/reflink.rs"]
async fn clone_three() {
    common::only_as_child("clone_three", "the tests of tests/reflink.rs");
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    let rows: u64 = std::env::var("PGFRESH_TEST_ROWS").unwrap().parse().unwrap();
    let harness = Harness::from_fn(format!("seed {rows}"), move |options| async move {
        let mut conn = PgConnection::connect_with(&options).await?;
        let seed = format!(
            "CREATE TABLE seed AS SELECT g, repeat('x', 200) AS s FROM generate_series(1, {rows}) g"
        );
        pgfresh::sqlx::raw_sql(pgfresh::sqlx::AssertSqlSafe(seed))
            .execute(&mut conn)
            .await?;
        Ok::<_, pgfresh::sqlx::Error>(())
    });
    let first = harness.test_db().await.unwrap();
    let template_mb: i64 =
        pgfresh::sqlx::query_scalar("SELECT pg_database_size(current_database()) >> 20")
            .fetch_one(first.pool())
            .await
            .unwrap();
    let run_dir = PathBuf::from(std::env::var("PGFRESH_RUN_DIR").unwrap());
    let before = free_mb(&run_dir);
    let mut held = Vec::new();
    for _ in 0..3 {
        let db = harness.test_db().await.unwrap();
        let rows_there: i64 = pgfresh::sqlx::query_scalar("SELECT count(*) FROM seed")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(u64::try_from(rows_there).unwrap(), rows);
        held.push(db);
    }
    let used_mb = before - free_mb(&run_dir);
    println!("PROBE template_mb={template_mb} used_mb={used_mb}");
}

fn free_mb(dir: &Path) -> i64 {
    let stat = rustix::fs::statvfs(dir).unwrap();
    i64::try_from((stat.f_bavail * stat.f_frsize) >> 20).unwrap()
}

/// PostgreSQL 18's binaries, as root with `unshare`, `mkfs.xfs` and loop devices.
fn pg18_and_xfs() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let bin = std::env::var("PGFRESH_TEST_PG18_BIN")
        .unwrap_or_else(|_| "/usr/lib/postgresql/18/bin".to_owned());
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let tools = ["unshare", "mkfs.xfs", "losetup"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok());
    let present = root && tools && Path::new(&bin).join("initdb").is_file();
    common::available(
        present,
        "root, unshare, mkfs.xfs, loop devices and PostgreSQL 18 (PGFRESH_TEST_PG18_BIN)",
    )
    .then_some(bin)
}

/// Runs `clone_three` with `rows` rows in a private mount namespace where `mount` (a shell
/// command, `$1` the mount point) mounted a file system on `dir` first. Its output and PROBE.
fn clone_three_on(dir: &Path, mount: &str, bin: &str, rows: u64) -> (String, i64, i64) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let shown = dir.display().to_string();
    let rows = rows.to_string();
    let env = [
        ("PGFRESH_SERVER", "local"),
        ("PGFRESH_PG_BIN", bin),
        ("PGFRESH_RUN_DIR", shown.as_str()),
        ("PGFRESH_LINGER", "0"),
        ("PGFRESH_READY", "0"),
        ("PGFRESH_BROKER", "off"),
        ("PGFRESH_TEST_ROWS", rows.as_str()),
    ];
    let child = common::child("clone_three", &env);
    let script = format!("{mount} || exit 97\nshift\n\"$@\"; rc=$?\nsleep 2\nexit $rc");
    let out = common::in_mount_namespace(&child, &script, &[dir.as_os_str()]);
    let text = output(&out);
    assert!(out.status.success(), "{text}");
    let probe = text
        .lines()
        .find_map(|l| l.find("PROBE ").map(|i| l[i..].to_owned()))
        .unwrap_or_else(|| panic!("no PROBE line in:\n{text}"));
    let number = |key| common::field(&probe, key).parse::<i64>().unwrap();
    (text.clone(), number("template_mb"), number("used_mb"))
}

#[test]
fn postgres_18_on_xfs_clones_a_1gb_template_three_times_in_almost_no_room() {
    let Some(bin) = pg18_and_xfs() else { return };
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("xfs.img");
    // Room for the cluster, its WAL, the template and a little more: not for three copies.
    std::fs::File::create(&image)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let made = Command::new("mkfs.xfs")
        .arg("-q")
        .arg(&image)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", output(&made));
    let mount_point = work.path().join("mnt");
    std::fs::create_dir(&mount_point).unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mount = format!("mount -o loop '{}' \"$1\"", image.display());
    let (text, template_mb, used_mb) = clone_three_on(&mount_point, &mount, &bin, ROWS_1GB);
    assert!(template_mb >= 900, "template of {template_mb} MB:\n{text}");
    assert!(
        used_mb < 100,
        "three clones of a {template_mb} MB template took {used_mb} MB:\n{text}"
    );
    assert!(
        text.contains("clones are made with file_copy_method = clone (the data is on xfs)"),
        "{text}"
    );
}

#[test]
fn postgres_18_on_tmpfs_copies_and_says_so() {
    let Some(bin) = pg18_and_xfs() else { return };
    let work = tempfile::tempdir().unwrap();
    let mount = "mount -t tmpfs -o size=1g,mode=0755 tmpfs \"$1\"";
    // About 100 MB: three copies take three times that.
    let (text, template_mb, used_mb) = clone_three_on(work.path(), mount, &bin, ROWS_1GB / 10);
    assert!(template_mb >= 90, "template of {template_mb} MB:\n{text}");
    assert!(
        used_mb >= 3 * (template_mb - 10),
        "three copies of a {template_mb} MB template took only {used_mb} MB:\n{text}"
    );
    assert!(
        text.contains("clones are made with file_copy_method = copy"),
        "{text}"
    );
}
