//! A guardian process that cleans up a server when this process ends, however it ends.
//!
//! Statics are never dropped, and a test process can die by `SIGKILL` or `process::exit`, so
//! no `Drop` can be trusted to stop a container or a cluster. Instead pgfresh starts a small
//! `sh` process whose standard input is a pipe from this process. The guardian blocks reading
//! it; when this process exits for any reason the kernel closes the pipe, the read returns,
//! and the guardian runs its cleanup command. It runs in its own process group so that a
//! Ctrl-C sent to the test run reaches the tests but not the guardian.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};

/// Keeps the pipe open; dropping it (or exiting) triggers the cleanup.
#[derive(Debug)]
pub(super) struct Guardian {
    _pipe: ChildStdin,
    _child: Child,
}

/// Spawns `sh -c 'cat >/dev/null; <cleanup>' sh <args…>`; `cleanup` refers to `$1`, `$2`, …
pub(super) fn spawn(
    cleanup: &str,
    args: &[&str],
    uid_gid: Option<(u32, u32)>,
) -> std::io::Result<Guardian> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("cat >/dev/null; {cleanup}"))
        .arg("sh")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some((uid, gid)) = uid_gid {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn()?;
    let pipe = child.stdin.take().expect("stdin was piped");
    Ok(Guardian {
        _pipe: pipe,
        _child: child,
    })
}
