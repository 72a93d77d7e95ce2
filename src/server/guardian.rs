//! The guardian: a process that stops a server pgfresh started once nothing uses it, however
//! the processes that used it ended.
//!
//! Statics are never dropped, and a test process can die by `SIGKILL` or `process::exit`, so
//! no `Drop` can be trusted to stop a container or a cluster. Instead pgfresh starts the
//! executable it runs in once more, with [`GUARD_VAR`] holding its [`Orders`]: the constructor
//! ([`crate::hook`]) sees the variable before `main` and guards instead of running the program.
//! It waits for one of two things ([`When`]):
//!
//! - [`When::ParentExits`] (a local cluster of this process's own; a container of its own stops
//!   itself): its standard input is a pipe from
//!   the process that started it; when that process exits for any reason the kernel closes the
//!   pipe and the read returns.
//! - [`When::Idle`] (a server shared by the processes of a run directory, see
//!   [`super::rundir`]): every second it tries to lock the directory's `lease` exclusively,
//!   which succeeds only while no process holds its shared lease; once that has held for more
//!   than the linger time (a whole number of idle polls past it, so at least the linger time, at
//!   most a second more), it takes `lock`, checks both again, removes `state` and cleans up.
//!   It leaves at once when `state` records another server (another generation).
//!
//! Then it runs the [`Cleanup`]. A cleanup may keep the server's data ([`Kept`]: the local
//! source's cluster, with its templates and ready clones): once the stop succeeded, the
//! guardian marks the data as cleanly stopped, lets go of `lock`, and waits; a process that
//! comes meanwhile restarts the cluster from it (and records a new server, which ends the
//! wait). When none came for the kept time, the guardian takes `lock`, checks again, and
//! removes the data. The locks are `flock(2)` locks taken through std (the same
//! ones the test processes take), so no `flock(1)` or shell is needed. The guardian runs in a
//! process group of its own, so that a Ctrl-C sent to the test run reaches the tests but not
//! it, and ignores `SIGHUP` and `SIGINT`. Where no constructor runs (Windows), there is no
//! guardian (each process starts a container of its own): see
//! [`crate::os::RUNS_CONSTRUCTORS`].

#[cfg(any(target_os = "linux", target_os = "macos"))]
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(any(target_os = "linux", target_os = "macos"))]
use super::rundir::{LEASE_FILE, LOCK_FILE, STATE_FILE};

/// The variable that turns a re-run executable into a guardian; its value is the JSON of the
/// [`Orders`].
pub(crate) const GUARD_VAR: &str = "PGFRESH_GUARD";

/// The line a guardian prints once it has read its orders, so that its starter knows the
/// constructor ran (and not the program's `main`).
const READY_LINE: &str = "guarding";

/// How long a process waits for the guardian it started to say it is guarding.
const START_WAIT: Duration = Duration::from_secs(10);

/// What a guardian waits for, and then does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Orders {
    pub when: When,
    pub cleanup: Cleanup,
}

/// When a guardian cleans up: see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum When {
    /// When the process that started it exits.
    ParentExits,
    /// When the run directory `dir`'s lease has been free for more than `linger_secs`, as long
    /// as `dir/state` records the server of `generation`.
    Idle {
        dir: PathBuf,
        generation: String,
        linger_secs: u64,
    },
}

/// How a server is cleaned up: its stop command, then the files it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cleanup {
    /// The program and arguments that stop the server (`docker rm -f -v <id>`, `pg_ctl -D
    /// <data> stop -m fast`); its output is discarded, its failure ignored (the server may be
    /// gone already).
    pub stop: Vec<String>,
    /// Removed (recursively) once the stop returned.
    pub remove: Vec<PathBuf>,
    /// The user and group the stop runs as, when not the guardian's own (root runs the local
    /// server as `postgres`, and only that user may stop it).
    pub run_as: Option<(u32, u32)>,
    /// What a lingering guardian keeps after a stop that succeeded, for how long.
    pub kept: Option<Kept>,
}

/// Data kept after the linger stop, for the next start (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kept {
    /// Created once the stop succeeded: the data was left by a clean shutdown. Whoever
    /// restarts the server removes it first.
    pub marker: PathBuf,
    /// Removed (with the marker) once nobody restarted the server for `secs`.
    pub remove: Vec<PathBuf>,
    pub secs: u64,
}

/// A guardian of [`When::ParentExits`]: dropping it (or exiting) closes its pipe, and it
/// cleans up. (The local source's per-process clusters; a per-process container stops itself.)
#[cfg(all(unix, feature = "local"))]
#[derive(Debug)]
pub(super) struct Guardian {
    _pipe: std::process::ChildStdin,
    _child: Child,
}

/// Starts a guardian that runs `cleanup` when this process exits, however it exits.
#[cfg(all(unix, feature = "local"))]
pub(super) fn tie(cleanup: Cleanup) -> io::Result<Guardian> {
    let orders = Orders {
        when: When::ParentExits,
        cleanup,
    };
    let mut child = start(&orders, Stdio::piped())?;
    let pipe = child.stdin.take().expect("stdin was piped");
    Ok(Guardian {
        _pipe: pipe,
        _child: child,
    })
}

/// Starts a guardian that runs `cleanup` once the run directory `dir` has been unused for
/// `linger` (see [`When::Idle`]). It outlives this process.
pub(super) fn linger(
    dir: &Path,
    generation: &str,
    linger: Duration,
    cleanup: &Cleanup,
) -> io::Result<()> {
    let orders = Orders {
        when: When::Idle {
            dir: dir.to_owned(),
            generation: generation.to_owned(),
            linger_secs: linger.as_secs().max(1),
        },
        cleanup: cleanup.clone(),
    };
    let mut child = start(&orders, Stdio::null())?;
    // Reaps it when it exits, so that a long-lived process does not collect a zombie.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Runs this executable again as the guardian of `orders`, and waits until it says it guards.
fn start(orders: &Orders, stdin: Stdio) -> io::Result<Child> {
    let exe = std::env::current_exe()?;
    let orders = serde_json::to_string(orders).map_err(io::Error::other)?;
    let mut cmd = Command::new(exe);
    cmd.env(GUARD_VAR, orders).stdin(stdin);
    crate::os::start_helper(cmd, READY_LINE, START_WAIT)
        .map_err(|e| io::Error::new(e.kind(), format!("the guardian did not start: {e}")))
}

/// The guardian's side, from the constructor: guards when [`GUARD_VAR`] is set, then exits
/// the process; returns when it is not set.
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub(crate) fn guard_if_asked() {
    let Some(orders) = std::env::var_os(GUARD_VAR) else {
        return;
    };
    let orders: Option<Orders> = orders
        .to_str()
        .and_then(|text| serde_json::from_str(text).ok());
    let Some(orders) = orders else {
        std::process::exit(2);
    };
    ignore_hangups();
    println!("{READY_LINE}");
    match &orders.when {
        When::ParentExits => {
            // Ends when the parent's end of the pipe closes.
            let _ = io::copy(&mut io::stdin(), &mut io::sink());
            orders.cleanup.run();
        }
        When::Idle {
            dir,
            generation,
            linger_secs,
        } => {
            if let Some(lock) = wait_idle(dir, generation, *linger_secs) {
                let stopped = orders.cleanup.run();
                if let Some(kept) = &orders.cleanup.kept {
                    keep(dir, kept, stopped, lock);
                }
            }
        }
    }
    std::process::exit(0);
}

/// Keeps the guardian alive when the terminal that started the tests closes, or a Ctrl-C
/// reaches it anyway.
#[cfg(any(target_os = "linux", target_os = "macos"))]
#[allow(unsafe_code)]
fn ignore_hangups() {
    // SAFETY: before `main`, no other thread runs; ignoring a signal installs no handler.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// Polls `dir` until its server has been unused for more than `linger_secs`: then `state` is
/// removed, and the start/stop lock is returned held, for the cleanup to run under it (a
/// process that comes meanwhile waits, then starts a new server). `None` once `state` records
/// another server.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn wait_idle(dir: &Path, generation: &str, linger_secs: u64) -> Option<File> {
    let mut idle = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if !records(dir, generation) {
            return None;
        }
        idle = if unused(dir) { idle + 1 } else { 0 };
        if idle <= linger_secs {
            continue;
        }
        // Under the start/stop lock, so that no process finds the server while it stops.
        let lock = File::open(dir.join(LOCK_FILE)).ok()?;
        lock.lock().ok()?;
        if records(dir, generation) && unused(dir) {
            let _ = std::fs::remove_file(dir.join(STATE_FILE));
            return Some(lock);
        }
        drop(lock);
        idle = 0;
    }
}

/// After the linger stop (under `lock`): marks the data kept when the stop succeeded (else
/// removes it at once), then removes it when nobody restarted the server for the kept time.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn keep(dir: &Path, kept: &Kept, stopped: bool, lock: File) {
    let _lock = if stopped && File::create(&kept.marker).is_ok() {
        drop(lock);
        match wait_kept(dir, &kept.marker, kept.secs) {
            Some(lock) => lock,
            None => return,
        }
    } else {
        lock
    };
    for path in kept.remove.iter().chain([&kept.marker]) {
        remove(path);
    }
}

/// Polls `dir` every second for up to `secs`: `None` as soon as a server is recorded there
/// again or the marker is gone (a process restarted the server, or `pgfresh gc` removed
/// it); else the start/stop lock, held, with both checked again under it.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn wait_kept(dir: &Path, marker: &Path, secs: u64) -> Option<File> {
    let restarted = || dir.join(STATE_FILE).exists() || !marker.exists();
    for _ in 0..secs {
        if restarted() {
            return None;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let lock = File::open(dir.join(LOCK_FILE)).ok()?;
    lock.lock().ok()?;
    (!restarted()).then_some(lock)
}

/// Whether `dir/state` records the server of `generation`.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn records(dir: &Path, generation: &str) -> bool {
    let wanted = format!("generation={generation}");
    std::fs::read_to_string(dir.join(STATE_FILE)).is_ok_and(|s| s.lines().any(|l| l == wanted))
}

/// Whether no process holds a lease on `dir`'s server (an exclusive lock on `lease` is free).
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn unused(dir: &Path) -> bool {
    File::open(dir.join(LEASE_FILE)).is_ok_and(|f| f.try_lock().is_ok())
}

impl Cleanup {
    /// Stops the server and removes its files, here and now (what a guardian does once it is
    /// time; also what a process does with a server whose guardian would not start). Whether
    /// the stop command succeeded.
    pub(super) fn run(&self) -> bool {
        let mut stopped = false;
        if let Some((program, args)) = self.stop.split_first() {
            let mut cmd = Command::new(program);
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            run_as(&mut cmd, self.run_as);
            stopped = cmd.status().is_ok_and(|s| s.success());
        }
        for path in &self.remove {
            remove(path);
        }
        stopped
    }
}

/// Removes the file or folder `path`, if it is there.
fn remove(path: &Path) {
    let _ = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
}

#[cfg(unix)]
fn run_as(cmd: &mut Command, user: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
}

#[cfg(not(unix))]
fn run_as(_cmd: &mut Command, _user: Option<(u32, u32)>) {}

/// The guardian's own side runs where constructors do (see [`crate::hook`]): so do its tests.
#[cfg(all(test, any(target_os = "linux", target_os = "macos")))]
mod tests {
    use super::*;

    #[test]
    fn orders_round_trip_through_the_environment_s_json() {
        let orders = Orders {
            when: When::Idle {
                dir: "/dev/shm/pgfresh-0-local-ab12cd34".into(),
                generation: "0123abcd".into(),
                linger_secs: 3,
            },
            cleanup: Cleanup {
                stop: vec!["pg_ctl".into(), "-D".into(), "a dir/data".into()],
                remove: vec!["a dir/data".into()],
                run_as: Some((104, 108)),
                kept: Some(Kept {
                    marker: "a dir/kept".into(),
                    remove: vec!["a dir/data".into()],
                    secs: 900,
                }),
            },
        };
        let text = serde_json::to_string(&orders).unwrap();
        assert_eq!(serde_json::from_str::<Orders>(&text).unwrap(), orders);
    }

    #[test]
    fn a_directory_is_unused_only_while_nobody_holds_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let lease = File::create(dir.path().join("lease")).unwrap();
        assert!(unused(dir.path()));
        lease.lock_shared().unwrap();
        assert!(!unused(dir.path()), "a shared lease is held");
        lease.unlock().unwrap();
        assert!(unused(dir.path()));
        assert!(
            !unused(&dir.path().join("missing")),
            "no lease file: not ours to stop"
        );
    }

    #[test]
    fn the_idle_wait_leaves_when_another_server_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), "port=1\ngeneration=new\n").unwrap();
        assert!(records(dir.path(), "new"));
        assert!(!records(dir.path(), "old"));
        assert!(
            wait_idle(dir.path(), "old", 1).is_none(),
            "another generation: nothing to stop"
        );
    }

    #[test]
    fn a_cleanup_runs_the_stop_then_removes_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let (folder, file, stopped) = (
            dir.path().join("data"),
            dir.path().join("server.log"),
            dir.path().join("stopped"),
        );
        std::fs::create_dir_all(folder.join("base")).unwrap();
        std::fs::write(&file, "log").unwrap();
        Cleanup {
            stop: vec!["touch".into(), stopped.display().to_string()],
            remove: vec![folder.clone(), file.clone(), dir.path().join("never there")],
            run_as: None,
            kept: None,
        }
        .run();
        assert!(stopped.exists(), "the stop command ran");
        assert!(!folder.exists() && !file.exists());
    }

    /// A run directory with its lock, kept data and marker.
    fn kept_dir() -> (tempfile::TempDir, Kept) {
        let dir = tempfile::tempdir().unwrap();
        File::create(dir.path().join("lock")).unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let kept = Kept {
            marker: dir.path().join("kept"),
            remove: vec![dir.path().join("data")],
            secs: 1,
        };
        (dir, kept)
    }

    fn locked(dir: &Path) -> File {
        let lock = File::open(dir.join(LOCK_FILE)).unwrap();
        lock.lock().unwrap();
        lock
    }

    #[test]
    fn data_kept_after_a_clean_stop_is_removed_once_nobody_restarted_it() {
        let (dir, kept) = kept_dir();
        let data = dir.path().join("data");
        let lock = locked(dir.path());
        // Marked at once, and the lock let go while it waits (as a restart would take it).
        let waiting = std::thread::spawn({
            let (path, kept) = (dir.path().to_owned(), kept.clone());
            move || keep(&path, &kept, true, lock)
        });
        let marked = std::time::Instant::now();
        while !kept.marker.exists() {
            assert!(marked.elapsed() < Duration::from_secs(5), "never marked");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(locked(dir.path()));
        assert!(data.exists(), "kept while it waits");
        waiting.join().unwrap();
        assert!(
            !data.exists() && !kept.marker.exists(),
            "removed after the kept time"
        );
    }

    #[test]
    fn data_kept_is_left_to_a_restarted_server_and_a_failed_stop_keeps_nothing() {
        let (dir, kept) = kept_dir();
        let data = dir.path().join("data");
        // A process restarts the server (records it) while the guardian waits.
        std::fs::write(dir.path().join("state"), "generation=new\n").unwrap();
        keep(dir.path(), &kept, true, locked(dir.path()));
        assert!(data.exists(), "the restarted server's data was removed");

        let (dir, kept) = kept_dir();
        keep(dir.path(), &kept, false, locked(dir.path()));
        assert!(
            !dir.path().join("data").exists() && !kept.marker.exists(),
            "data of a server that did not stop cleanly was kept"
        );
    }
}
