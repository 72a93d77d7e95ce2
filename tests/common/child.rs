//! Running this test binary again as a child process with another environment, and reading
//! what the child prints.
//!
//! A child runs one of the binary's child-process entry points ([`PROBE`], and a few that
//! only one binary has): tests marked `#[ignore = "…"]`, so that neither runner runs them on
//! their own, which start with [`only_as_child`], so that one run on purpose
//! (`--include-ignored`) fails saying what it is instead of passing without proving anything.
//! They stay in the test binary (rather than a helper binary of their own) so that a child is
//! a test process like the ones pgfresh serves, and is built whenever its parent is.

use std::process::{Command, Output};

/// pgfresh's variables (and the tests' own): a child sees only those the test gives it.
const VARS: &[&str] = &[
    "DB_URL",
    "DATABASE_URL",
    "PGFRESH_SERVER",
    "PGFRESH_IMAGE",
    "PGFRESH_PG_BIN",
    "PGFRESH_KEEP",
    "PGFRESH_RUN_DIR",
    "PGFRESH_LINGER",
    "PGFRESH_READY",
    "PGFRESH_SLOT_WAIT",
    "PGFRESH_BINARIES_URL",
    "PGFRESH_PG_VERSION",
    "PGFRESH_CACHE_DIR",
    "PGFRESH_DOWNLOAD",
    "PGFRESH_ROLE",
    "PGFRESH_TEST_PANIC",
    "PGFRESH_TEST_MIGRATIONS",
    "PGFRESH_TEST_SLEEP",
    "PGFRESH_TEST_AGAIN",
    "PGFRESH_TEST_BUSY",
    "PGFRESH_TEST_ROWS",
    CHILD_VAR,
    // nextest's, which turns prefetching off: a child runs the same way under either runner.
    "NEXTEST_EXECUTION_MODE",
];

/// Set by [`child`] in every child's environment; [`only_as_child`] looks for it.
const CHILD_VAR: &str = "PGFRESH_TEST_CHILD";

/// Runs the test `name` of this binary (an entry point such as [`PROBE`], or any test) in a
/// child process with `env` as pgfresh's environment.
pub fn rerun(name: &str, env: &[(&str, &str)]) -> Output {
    child(name, env).output().expect("the test binary runs")
}

/// The command [`rerun`] runs, to spawn it yourself: this binary, filtered to exactly `name`,
/// ignored or not.
pub fn child(name: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([
        "--exact",
        name,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for var in VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.env(CHILD_VAR, name);
    cmd
}

/// Runs `child` (a [`child`] command) in a private mount namespace (as root), through
/// `sh -c script` whose positional parameters are `args` and then the child's command line: the
/// script mounts what it needs, `shift`s its own parameters, and runs `"$@"`.
#[cfg(target_os = "linux")]
pub fn in_mount_namespace(child: &Command, script: &str, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .args(args)
    .arg(child.get_program())
    .args(child.get_args());
    for (key, value) in child.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd.output().expect("unshare runs")
}

/// The first step of a child-process entry point: panics unless [`child`] started this process
/// to run `name`, pointing at what does (`started_by`). An entry point is not a test; run on
/// its own, it fails rather than passes.
pub fn only_as_child(name: &str, started_by: &str) {
    let asked = std::env::var(CHILD_VAR).ok();
    assert!(
        asked.as_deref() == Some(name),
        "`{name}` is not a test but a child process's entry point: run what starts it \
         ({started_by})"
    );
}

/// stdout and stderr of a child, for assertions and failure messages.
pub fn output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The value of `key=` in the child's `PROBE` line.
pub fn probe_field(out: &Output, key: &str) -> String {
    let text = output(out);
    let line = text
        .lines()
        .find_map(|l| l.find("PROBE ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no PROBE line in:\n{text}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// The value of `key=` on a `PROBE` line.
pub fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// A child process whose output is read while it runs: the parent can wait for its `PROBE`
/// line, then kill it (or the server) while the child holds its database.
pub struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    text: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Spawns the test `name` of this binary like [`child`] does.
    pub fn spawn(name: &str, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;
        use std::sync::{Arc, Mutex, mpsc};
        let mut child = self::child(name, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the test binary runs");
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let mut readers = Vec::new();
        for (stream, tx) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, Some(tx)),
            (Box::new(stderr), None),
        ] {
            let text = text.clone();
            readers.push(std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut all = text.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                    drop(all);
                    if let Some(tx) = &tx {
                        let _ = tx.send(line);
                    }
                }
            }));
        }
        Self {
            child,
            lines,
            text,
            readers,
        }
    }

    /// Waits up to `limit` for a line of stdout starting with `prefix` (after the test
    /// harness's own text, if any) and returns it from the prefix on.
    pub fn line(&mut self, prefix: &str, limit: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(i) = line.find(prefix) {
                        return line[i..].to_owned();
                    }
                }
                Err(_) => panic!(
                    "no {prefix} line within {limit:?} from the child; it printed:\n{}",
                    self.text()
                ),
            }
        }
    }

    /// The `PROBE` line, within 60 s.
    pub fn probe_line(&mut self) -> String {
        self.line("PROBE ", std::time::Duration::from_secs(60))
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the child printed so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// `SIGKILL` (what `Child::kill` sends on Unix), then reaps the child.
    pub fn kill(&mut self) {
        self.child.kill().expect("the child can be killed");
        self.child.wait().expect("the child can be reaped");
    }

    /// Waits up to `limit` for the child to exit; kills it and panics when it does not.
    /// Returns its status and everything it printed.
    pub fn finish(mut self, limit: std::time::Duration) -> (std::process::ExitStatus, String) {
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                self.kill();
                panic!(
                    "the child did not exit within {limit:?} (killed); it printed:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        (status, self.text())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `done` every 100 ms for up to `limit`.
pub fn eventually(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    done()
}

/// Sends `SIGKILL` to the process `pid`.
pub fn kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -KILL {pid}");
}

/// Whether the process `pid` has ended: gone, or a zombie, which has closed its files (and
/// so let go of its locks). A process that is still exiting already reads an empty
/// environment, so [`broker_pid`] stops finding it before that: wait for its end by its pid.
pub fn ended(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the command, which is in parentheses and may hold anything.
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// The pid of the broker serving the environment tagged `tag` (a child's
/// `PGFRESH_TEST_TAG`), if one runs.
pub fn broker_pid(tag: &str) -> Option<u32> {
    let wanted = format!("PGFRESH_TEST_TAG={tag}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
            let serving = vars.iter().any(|v| v.starts_with(b"PGFRESH_BROKER_SERVE="));
            (serving && vars.contains(&wanted.as_bytes())).then_some(pid)
        })
}

/// `base` (an [`OwnServer`](super::OwnServer)'s `env()`) plus `extra`, as the `&str` pairs
/// [`Running::spawn`] takes.
pub fn env_with<'a>(
    base: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    base.iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(extra.iter().copied())
        .collect()
}
