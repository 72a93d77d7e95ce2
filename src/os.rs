//! What pgfresh asks the operating system about this process: its user and group, its parent,
//! and to run this executable again as a helper. One function per question, each with its path
//! for Linux and macOS side by side (and for Windows where the question has a meaning there);
//! nothing here reads `/proc` outside Linux. A leaf: it imports nothing from the crate.

#[cfg(any(unix, feature = "docker"))]
use std::io::{self, BufRead, BufReader, Read};
#[cfg(any(unix, feature = "docker"))]
use std::process::{Child, Command, Stdio};
#[cfg(any(unix, feature = "docker"))]
use std::time::Duration;

/// Whether executables on this platform run pgfresh's constructor ([`crate::hook`]: a
/// pointer in `.init_array` on Linux, `__mod_init_func` on macOS), which the broker and the
/// guardians need. Not on Windows.
#[cfg(any(unix, feature = "docker"))]
pub(crate) const RUNS_CONSTRUCTORS: bool = cfg!(any(target_os = "linux", target_os = "macos"));

/// Starts `cmd` (this executable, run again with a variable that pgfresh's constructor acts
/// on) out of the caller's process group, so that a Ctrl-C meant for the tests does not reach
/// it, and waits at most `limit` for its first line to be `ready`. The child, once ready;
/// otherwise it is killed, and the error says why.
#[cfg(any(unix, feature = "docker"))]
pub(crate) fn start_helper(mut cmd: Command, ready: &str, limit: Duration) -> io::Result<Child> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout.take(64)).read_line(&mut line);
        let _ = tx.send(line);
    });
    let answer = rx.recv_timeout(limit);
    if answer.as_deref().is_ok_and(|line| line.trim_end() == ready) {
        return Ok(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(match answer {
        Ok(_) => io::Error::other(
            "it did not say it was ready: this executable did not run pgfresh's constructor",
        ),
        Err(_) => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("it did not say it was ready within {} s", limit.as_secs()),
        ),
    })
}

/// This process's effective user id (`geteuid`).
#[cfg(all(unix, any(feature = "docker", feature = "local")))]
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// This process's effective group id (`getegid`).
#[cfg(all(unix, any(feature = "docker", feature = "local")))]
pub(crate) fn egid() -> u32 {
    rustix::process::getegid().as_raw()
}

/// The bytes an unprivileged user may still write on the file system holding `path`, and
/// that file system's size (`statvfs`); `None` where pgfresh does not ask (Windows).
pub(crate) fn file_system_room(path: &std::path::Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(path).ok()?;
        Some((
            stat.f_bavail.saturating_mul(stat.f_frsize),
            stat.f_blocks.saturating_mul(stat.f_frsize),
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The process that started this one, named so that a later process with the same pid is not
/// taken for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parent {
    pub pid: u32,
    /// When it started, in the platform's own unit: clock ticks since boot on Linux
    /// (`/proc/<pid>/stat`, field 22), microseconds since the epoch on macOS
    /// (`proc_pidinfo`). Only ever compared with another reading on the same machine.
    pub started: u64,
}

/// This process's parent, when the platform tells: `None` on Windows, or when the parent
/// has exited already.
pub(crate) fn parent() -> Option<Parent> {
    #[cfg(unix)]
    {
        let pid = rustix::process::getppid()?.as_raw_nonzero().get();
        let pid = u32::try_from(pid).ok()?;
        Some(Parent {
            pid,
            started: start_time(pid)?,
        })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// When the process `pid` started (see [`Parent::started`]), from `/proc` on Linux.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces; field 22
    // of stat (start time in clock ticks) is the 20th of them.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// When the process `pid` started (see [`Parent::started`]), from `proc_pidinfo` on macOS
/// (there is no `/proc`).
#[cfg(target_os = "macos")]
#[allow(unsafe_code)]
fn start_time(pid: u32) -> Option<u64> {
    let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = libc::c_int::try_from(std::mem::size_of::<libc::proc_bsdinfo>()).ok()?;
    // SAFETY: `info` is a writable buffer of `size` bytes, the size of the structure that
    // PROC_PIDTBSDINFO fills; the call writes at most that many and returns how many.
    let written = unsafe {
        libc::proc_pidinfo(
            libc::c_int::try_from(pid).ok()?,
            libc::PROC_PIDTBSDINFO,
            0,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    if written != size {
        return None;
    }
    // SAFETY: the call filled the whole structure (checked above), which is plain integers.
    let info = unsafe { info.assume_init() };
    Some(info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec)
}

/// Other Unix systems: no start time is known, so no parent is named.
#[cfg(all(
    unix,
    not(any(target_os = "linux", target_os = "android", target_os = "macos"))
))]
fn start_time(_pid: u32) -> Option<u64> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn ids_are_this_process_s_own() {
        use std::os::unix::fs::MetadataExt;
        // A file this process creates is owned by its effective user and group.
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(euid(), meta.uid());
        assert_eq!(egid(), meta.gid());
    }

    #[test]
    fn file_system_room_is_what_df_reports() {
        let out = Command::new("df")
            .args(["-P", "-k", "/"])
            .output()
            .expect("df runs");
        let text = String::from_utf8(out.stdout).unwrap();
        let fields: Vec<u64> = text
            .lines()
            .nth(1)
            .expect("a line for /")
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let (free, size) = file_system_room(std::path::Path::new("/")).expect("statvfs of /");
        // df -P -k: 1024-byte blocks, rounded.
        assert!(
            (size / 1024).abs_diff(fields[0]) <= 1,
            "{size} vs df {}",
            fields[0]
        );
        // Free space moves while the suite writes: df's "available" is within 1 GiB of it.
        assert!(
            (free / 1024).abs_diff(fields[2]) < 1 << 20,
            "{free} vs df {}",
            fields[2]
        );
        assert_eq!(file_system_room(std::path::Path::new("/no/such/dir")), None);
    }

    #[test]
    fn parent_is_the_process_that_started_this_one_and_reads_the_same_twice() {
        let parent = parent().expect("a test process has a parent");
        assert_eq!(
            parent.pid,
            std::os::unix::process::parent_id(),
            "the pid is std's parent_id"
        );
        assert!(parent.started > 0);
        assert_eq!(
            Some(parent),
            super::parent(),
            "a second reading is the same"
        );
    }

    #[test]
    fn a_child_started_after_this_process_started_later() {
        let child = Reaped(
            std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .unwrap(),
        );
        let own = start_time(std::process::id()).expect("this process's start time");
        let later = start_time(child.0.id()).expect("the child's start time");
        assert!(later >= own, "{later} < {own}");
    }

    #[test]
    fn a_process_that_is_gone_has_no_start_time() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(start_time(pid), None);
    }

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn a_helper_that_says_it_is_ready_is_handed_back_running() {
        let child = start_helper(sh("echo ready; sleep 5"), "ready", Duration::from_secs(5));
        let mut child = Reaped(child.expect("ready"));
        assert!(child.0.try_wait().unwrap().is_none(), "still running");
    }

    #[test]
    fn a_helper_that_says_something_else_or_nothing_in_time_is_killed_with_the_reason() {
        let e = start_helper(sh("echo hello"), "ready", Duration::from_secs(5)).unwrap_err();
        assert!(
            e.to_string().contains("did not run pgfresh's constructor"),
            "{e}"
        );
        let e = start_helper(sh("sleep 5"), "ready", Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }

    /// Kills and reaps the child however the test ends.
    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
