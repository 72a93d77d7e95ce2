//! Templates built by something other than a sqlx migration set: a migration tool run as a
//! command (`alembic upgrade head`, `dbmate up`, …) or Rust code (refinery, diesel_migrations,
//! sea-orm-migration, hand-written), and the input files whose contents make their hash.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::error::{Error, Result};

/// How long a template's build may take unless [`crate::Harness::timeout`] says otherwise:
/// far longer than any migration history should need, short enough that a tool waiting for
/// input (a password prompt, a lock) fails a CI job in minutes rather than hours.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How many of the last lines of a failed command's output its error shows.
const OUTPUT_LINES: usize = 40;

/// A migration tool run as a command.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub argv: Vec<String>,
    pub current_dir: Option<PathBuf>,
}

/// The error type a template function may return.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A template function, boxed.
pub(crate) type BuildFn = dyn Fn(PgConnectOptions) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>
    + Send
    + Sync;

/// Rust code that builds a template, and the key the user gave it.
#[derive(Clone)]
pub(crate) struct Function {
    pub key: String,
    pub f: Arc<BuildFn>,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What the template being built is, for the tool: its URL (password included) and the
/// pieces libpq's variables name.
pub(crate) struct Target<'a> {
    pub url: &'a url::Url,
    pub options: &'a PgConnectOptions,
    pub password: Option<&'a str>,
    /// The template's name, for messages.
    pub template: &'a str,
}

impl Command {
    /// `alembic upgrade head`, for messages.
    pub fn shown(&self) -> String {
        self.argv.join(" ")
    }

    /// Runs the command against `target`, killing it and everything it started after `limit`.
    pub async fn run(&self, target: &Target<'_>, limit: Duration) -> Result<()> {
        let failed = |reason: String| Error::Build {
            source_name: format!("`{}`", self.shown()),
            template: target.template.to_owned(),
            reason,
        };
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| failed("the command is empty: give at least the program".into()))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env("DB_URL", target.url.as_str())
            .env("DATABASE_URL", target.url.as_str())
            .env("PGHOST", target.options.get_host())
            .env("PGPORT", target.options.get_port().to_string())
            .env("PGUSER", target.options.get_username())
            .env("PGDATABASE", target.template)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so that a timeout kills what it started too.
        #[cfg(unix)]
        cmd.process_group(0);
        match target.password {
            Some(password) => cmd.env("PGPASSWORD", password),
            None => cmd.env_remove("PGPASSWORD"),
        };
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            failed(match e.kind() {
                std::io::ErrorKind::NotFound if !program.contains('/') => format!(
                    "there is no program `{program}` on PATH ({}); install it, or name it by \
                     its full path",
                    std::env::var("PATH").unwrap_or_default()
                ),
                std::io::ErrorKind::NotFound => format!(
                    "cannot run `{program}`: {e}{}",
                    self.current_dir
                        .as_ref()
                        .map(|d| format!(" (relative to {})", d.display()))
                        .unwrap_or_default()
                ),
                _ => format!("cannot run `{program}`: {e}"),
            })
        })?;
        let output = Tail::default();
        let readers = [
            tokio::spawn(output.clone().read(child.stdout.take())),
            tokio::spawn(output.clone().read(child.stderr.take())),
        ];
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status.map_err(|e| failed(format!("waiting for it failed: {e}")))?,
            Err(_) => {
                kill_group(child.id());
                let _ = child.wait().await;
                return Err(Error::Timeout {
                    what: format!("`{}` building template {}", self.shown(), target.template),
                    seconds: limit.as_secs(),
                    remedy: format!(
                        "It and every process it started were killed. Find what it waits for \
                         (its output so far: {}), or give it longer with Harness::timeout",
                        output.text(target.password)
                    ),
                });
            }
        };
        for reader in readers {
            let _ = reader.await;
        }
        if status.success() {
            return Ok(());
        }
        Err(failed(format!(
            "it exited with {status}; the last {OUTPUT_LINES} lines of its output:\n{}",
            output.text(target.password)
        )))
    }
}

impl Function {
    /// Runs the function on `options`, catching a panic, within `limit`.
    pub async fn run(
        &self,
        options: PgConnectOptions,
        template: &str,
        limit: Duration,
    ) -> Result<()> {
        let failed = |reason: String| Error::Build {
            source_name: format!("Harness::from_fn({:?})", self.key),
            template: template.to_owned(),
            reason,
        };
        let task = tokio::spawn((self.f)(options));
        let abort = task.abort_handle();
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(failed(format!("it returned an error: {}", chain(&*e)))),
            Ok(Err(join)) => Err(failed(match join.try_into_panic() {
                Ok(payload) => format!("it panicked: {}", panic_message(&*payload)),
                Err(e) => format!("it did not finish: {e}"),
            })),
            Err(_) => {
                abort.abort();
                Err(Error::Timeout {
                    what: format!(
                        "Harness::from_fn({:?}) building template {template}",
                        self.key
                    ),
                    seconds: limit.as_secs(),
                    remedy: "Find what it waits for, or give it longer with Harness::timeout"
                        .into(),
                })
            }
        }
    }
}

/// An error and its whole `source()` chain: `a: b: c`.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// `SIGKILL` to the process group `pid` leads (the command's own, see `process_group(0)`).
#[cfg(unix)]
fn kill_group(pid: Option<u32>) {
    let pid = pid.and_then(|p| rustix::process::Pid::from_raw(i32::try_from(p).ok()?));
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Windows has no process groups: the timeout kills the command itself (`kill_on_drop`),
/// not what it started.
#[cfg(not(unix))]
fn kill_group(_pid: Option<u32>) {}

/// The last [`OUTPUT_LINES`] lines a command wrote to stdout and stderr, in the order read.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    async fn read(self, stream: Option<impl AsyncRead + Unpin>) {
        let Some(stream) = stream else { return };
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut tail = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.len() == OUTPUT_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }

    /// The lines, with `password` (as is and URL-encoded) replaced by `***`.
    fn text(&self, password: Option<&str>) -> String {
        let tail = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = tail
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            let encoded: String =
                url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
            text = text.replace(password, "***").replace(&encoded, "***");
        }
        if text.is_empty() {
            "(none)".to_owned()
        } else {
            text
        }
    }
}

/// Hashes the files under `inputs` (files or folders): each file's path relative to its input
/// root and its bytes, folders walked in byte order of their names. Skipped: what tools write
/// on their own without changing what they do (`__pycache__`, `*.pyc`, `.pytest_cache`,
/// `.mypy_cache`, `.ruff_cache`) and version-control metadata (`.git`, `.hg`, `.svn`), which
/// changes with every fetch.
pub(crate) fn hash_inputs(inputs: &[PathBuf]) -> Result<Vec<u8>> {
    let mut h = Sha256::new();
    for root in inputs {
        h.update(root.as_os_str().as_encoded_bytes());
        h.update([0]);
        let meta = std::fs::metadata(root).map_err(|e| Error::Input {
            path: root.display().to_string(),
            reason: e.to_string(),
        })?;
        if meta.is_file() {
            hash_file(&mut h, root, Path::new(""))?;
            continue;
        }
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .and_then(|d| d.collect::<std::io::Result<Vec<_>>>())
                .map_err(|e| Error::Input {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                })?;
            entries.sort_by_key(std::fs::DirEntry::file_name);
            // Reversed onto the stack, so that folders are walked in order.
            for entry in entries.into_iter().rev() {
                let name = entry.file_name();
                if skipped(&name.to_string_lossy()) {
                    continue;
                }
                let rel = rel.join(&name);
                let kind = entry.file_type().map_err(|e| Error::Input {
                    path: entry.path().display().to_string(),
                    reason: e.to_string(),
                })?;
                if kind.is_dir() {
                    stack.push(rel);
                } else {
                    hash_file(&mut h, &entry.path(), &rel)?;
                }
            }
        }
    }
    Ok(h.finalize().to_vec())
}

fn skipped(name: &str) -> bool {
    matches!(
        name,
        "__pycache__" | ".pytest_cache" | ".mypy_cache" | ".ruff_cache" | ".git" | ".hg" | ".svn"
    ) || name.ends_with(".pyc")
}

fn hash_file(h: &mut Sha256, path: &Path, rel: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    h.update([1]);
    h.update(rel.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(&bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_hash_names_and_bytes_and_skip_caches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("versions/__pycache__")).unwrap();
        std::fs::write(root.join("env.py"), "a").unwrap();
        std::fs::write(root.join("versions/1.py"), "b").unwrap();
        let first = hash_inputs(std::slice::from_ref(&root)).unwrap();
        std::fs::write(root.join("versions/__pycache__/1.cpython-311.pyc"), "x").unwrap();
        std::fs::write(root.join("versions/2.pyc"), "x").unwrap();
        assert_eq!(hash_inputs(std::slice::from_ref(&root)).unwrap(), first);
        std::fs::write(root.join("versions/2.py"), "c").unwrap();
        let added = hash_inputs(std::slice::from_ref(&root)).unwrap();
        assert_ne!(added, first);
        std::fs::rename(root.join("versions/2.py"), root.join("versions/3.py")).unwrap();
        assert_ne!(hash_inputs(std::slice::from_ref(&root)).unwrap(), added);
        let e = hash_inputs(&[root.join("missing")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing") && e.contains("No such file"), "{e}");
    }

    #[test]
    fn output_hides_the_password() {
        let tail = Tail::default();
        tail.0
            .lock()
            .unwrap()
            .push_back("postgres://u:s3cr%2Ft@h/db and s3cr/t".into());
        assert_eq!(
            tail.text(Some("s3cr/t")),
            "    postgres://u:***@h/db and ***"
        );
    }
}
