//! Another local user (`nobody`, through `runuser`) can neither read what the servers pgfresh
//! starts keep in their run directories (the password above all) nor make pgfresh use a run
//! directory they planted: a directory of theirs, a symbolic link, or a base directory they can
//! rename things in. Run as root, which CI does.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{OwnServer, PROBE, output, rerun};

const OTHER: &str = "nobody";

/// Whether this machine lets the test play another user: root, and `runuser`.
fn can_play_another_user() -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    common::available(
        root && Command::new("runuser").arg("--help").output().is_ok(),
        "root with runuser (to act as another local user)",
    )
}

/// Runs `argv` as the other user; whether it succeeded.
fn as_other(argv: &[&str]) -> bool {
    Command::new("runuser")
        .args(["-u", OTHER, "--"])
        .args(argv)
        .output()
        .expect("runuser runs")
        .status
        .success()
}

/// Every path below `dir`, `dir` included (read as root).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < found.len() {
        if std::fs::symlink_metadata(&found[i]).is_ok_and(|m| m.is_dir()) {
            let entries = std::fs::read_dir(&found[i]).into_iter().flatten().flatten();
            found.extend(entries.map(|e| e.path()));
        }
        i += 1;
    }
    found
}

/// The kinds of server whose run directories the tests attack: the local source always, the
/// docker source where a daemon answers (always in CI).
fn kinds() -> Vec<&'static str> {
    let mut kinds = vec!["local"];
    if common::available(common::docker_answers(), "Docker") {
        kinds.push("docker");
    }
    kinds
}

#[test]
fn another_user_can_read_nothing_a_server_keeps() {
    if !can_play_another_user() {
        return;
    }
    for kind in kinds() {
        let mut server = OwnServer::new(kind, 2);
        let env = server.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = rerun(PROBE, &env);
        assert!(out.status.success(), "{kind}: {}", output(&out));
        server.hold(Duration::from_secs(10));
        let dir = server.run_dir().expect("the child made its run directory");
        let (_, password) = server.state().expect("the server is recorded");

        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700, "{kind}: {}", dir.display());
        for path in walk(&dir) {
            // The server writes and removes files all the time (pg_stat_tmp, say).
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let shown = path.display().to_string();
            if meta.is_file() {
                assert_eq!(meta.mode() & 0o077, 0, "{kind}: {shown} is open to others");
                assert!(!as_other(&["cat", &shown]), "{kind}: {OTHER} read {shown}");
            } else if meta.is_dir() {
                assert!(!as_other(&["ls", &shown]), "{kind}: {OTHER} listed {shown}");
            }
        }
        for file in ["state", "lock", "lease"] {
            let path = dir.join(file).display().to_string();
            assert!(!as_other(&["test", "-r", &path]), "{kind}: {path}");
            assert!(!as_other(&["test", "-w", &path]), "{kind}: {path}");
        }
        // Nor does any process's argument list, which every user can read, carry it.
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(
                !cmdline.contains(&password),
                "{kind}: the password is in the argument list of {:?}: {cmdline}",
                entry.file_name()
            );
        }
    }
}

/// What another user plants at the run directory's path before pgfresh makes it.
#[derive(Debug, Clone, Copy)]
enum Plant {
    /// A directory of theirs, mode 0777, with a `state` file of their own.
    Directory,
    /// A symbolic link to a directory of theirs.
    Symlink,
}

#[test]
fn a_planted_run_directory_is_refused_and_left_untouched() {
    if !can_play_another_user() {
        return;
    }
    for kind in kinds() {
        for plant in [Plant::Directory, Plant::Symlink] {
            refuses(kind, plant);
        }
    }
}

/// Learns the run directory's path from a first run, waits until that server is gone, plants
/// `plant` there as the other user, and runs again: pgfresh must refuse, say why and what to
/// do, and write nothing into what was planted.
fn refuses(kind: &'static str, plant: Plant) {
    let case = format!("{kind}, {plant:?}");
    let mut server = OwnServer::new(kind, 1);
    // Like /dev/shm: anyone may create entries, nobody may remove another's.
    std::fs::set_permissions(server.base(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = rerun(PROBE, &env);
    assert!(first.status.success(), "{case}: {}", output(&first));
    let port = common::probe_field(&first, "port").parse().unwrap();
    assert!(
        server.wait_gone(port, Duration::from_secs(30)).is_some(),
        "{case}: the first server did not stop"
    );
    let dir = server.run_dir().expect("the first run made it");
    std::fs::remove_dir_all(&dir).unwrap();

    let shown = dir.display().to_string();
    let target = server.base().join("theirs");
    let target_shown = target.display().to_string();
    let state = "port=1\npassword=planted\nhandle=planted\ngeneration=planted\n";
    let planted = match plant {
        Plant::Directory => &shown,
        Plant::Symlink => &target_shown,
    };
    assert!(as_other(&["mkdir", "-m", "0777", planted]), "{case}");
    assert!(
        as_other(&["sh", "-c", &format!("printf '{state}' > '{planted}/state'")]),
        "{case}"
    );
    if let Plant::Symlink = plant {
        assert!(as_other(&["ln", "-s", &target_shown, &shown]), "{case}");
    }
    let before = listing(Path::new(planted));

    let out = rerun(PROBE, &env);
    let text = output(&out);
    assert!(!out.status.success(), "{case}: pgfresh used it:\n{text}");
    let why = match plant {
        Plant::Directory => "it belongs to another user",
        Plant::Symlink => "it is a symbolic link, not a directory",
    };
    assert!(
        text.contains(&format!(
            "run directory {shown}: pgfresh did not make it and will not use it: {why}"
        )),
        "{case}:\n{text}"
    );
    assert!(
        text.contains(&format!("owner {OTHER} (uid")),
        "{case}:\n{text}"
    );
    assert!(
        text.contains(&format!("`rm -rf {shown}`")) && text.contains("PGFRESH_RUN_DIR"),
        "{case}:\n{text}"
    );
    assert_eq!(
        listing(Path::new(planted)),
        before,
        "{case}: pgfresh wrote into it"
    );
    std::fs::remove_dir_all(planted).unwrap();
    let _ = std::fs::remove_file(&shown);
}

/// Names, owners, modes and contents of the files in `dir`.
fn listing(dir: &Path) -> Vec<(String, u32, u32, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, meta.uid(), meta.mode(), text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_base_directory_others_can_rename_in_is_refused() {
    if !can_play_another_user() {
        return;
    }
    let (base, shown, text) = refused_base(0o777);
    assert!(
        text.contains(&format!(
            "run directory {shown}: other users may write to it (mode 0777) and it has no sticky bit"
        )),
        "{text}"
    );
    assert!(text.contains("Set PGFRESH_RUN_DIR to a directory only you can write to"));
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0, "{text}");
}

#[test]
fn a_base_directory_the_server_user_cannot_enter_is_refused_until_it_can() {
    if !can_play_another_user() {
        return;
    }
    // Private to root, as the remedy for a shared PGFRESH_RUN_DIR suggests: the local server
    // runs as another user, which must be able to enter it.
    let (base, shown, text) = refused_base(0o700);
    assert!(
        text.contains(&format!(
            "run directory {shown}: the server runs as postgres (uid "
        )) && text.contains(&format!(
            "which cannot enter {shown} (owner root (uid 0), mode 0700)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("Let it in (`chmod o+x {shown}`)")),
        "{text}"
    );
    // No run directory; the broker's (private to this user, who can enter the base) may be.
    let made: Vec<String> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.contains("-broker-"))
        .collect();
    assert!(made.is_empty(), "{made:?}\n{text}");

    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let out = rerun(PROBE, &base_env(&shown));
    assert!(out.status.success(), "{}", output(&out));
    // The cluster stops a second after its last user (`PGFRESH_LINGER=1`); removing `base`
    // before that would take its guardian's lease and leave the server running.
    let stopped = common::eventually(Duration::from_secs(20), || {
        !std::fs::read_dir(base.path())
            .unwrap()
            .flatten()
            .any(|run_dir| run_dir.path().join("data").join("postmaster.pid").exists())
    });
    assert!(
        stopped,
        "the cluster in {shown} did not stop after its linger"
    );
}

/// The environment of a probe on the local source with `PGFRESH_RUN_DIR` = `base`.
fn base_env(base: &str) -> [(&'static str, &str); 3] {
    [
        ("PGFRESH_SERVER", "local"),
        ("PGFRESH_RUN_DIR", base),
        ("PGFRESH_LINGER", "1"),
    ]
}

/// A new base directory of `mode`, and a probe that uses it and fails: the directory, its
/// path as shown, and the probe's output.
fn refused_base(mode: u32) -> (tempfile::TempDir, String, String) {
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    let shown = base.path().display().to_string();
    let out = rerun(PROBE, &base_env(&shown));
    let text = output(&out);
    assert!(!out.status.success(), "{text}");
    (base, shown, text)
}
