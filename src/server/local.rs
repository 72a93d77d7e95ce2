//! The local source: a throwaway cluster from the PostgreSQL binaries on this machine.
//!
//! `initdb --no-sync` into the run directory (on tmpfs when `/dev/shm` exists), then
//! `pg_ctl start` on a free loopback port with the same test-speed settings as the docker
//! source. The server listens on 127.0.0.1 only and asks for a generated password.
//!
//! One cluster serves every process of the user that uses the same binaries (see
//! [`super::rundir`]); its guardian stops it in fast mode (a smart shutdown would wait forever
//! for pools that are still open) once no process has used it for the linger time (see
//! [`super::guardian`]). Its data, with the templates and the ready clones the broker made
//! between runs, is kept for [`KEPT_FOR`] after that stop: the next process within that time
//! restarts the cluster from it (a `pg_ctl start`, no `initdb`, no template to build) rather
//! than making a new one. `PGFRESH_READY_MAX=0` (no ready clones) removes it at the stop.
//!
//! PostgreSQL refuses to run as root, so when this process is root the cluster is created and
//! run as the `postgres` user (or `nobody` when there is none).

use std::path::{Path, PathBuf};
use std::process::Command;

use std::sync::Arc;

use super::launch::{self, Keepalive, Launch, SPEED_SETTINGS};
use super::private;
use super::rundir::{self, Record, RunDir};
use super::{Started, guardian};
use crate::config::{Config, ServerSource};
use crate::error::{Error, Result};

/// How often a start is retried when another process took the free port first.
const PORT_ATTEMPTS: usize = 5;

/// How long a stopped cluster's data is kept for a restart (see the module docs): an edit–run
/// session's pauses, not the next day's.
const KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// The cluster's data directory, in its run directory.
pub(crate) const DATA_DIR: &str = "data";

/// The cluster's superuser password, kept beside its data for a restart.
pub(crate) const PASSWORD_FILE: &str = "password";

/// The cluster's log (`pg_ctl -l`).
pub(crate) const LOG_FILE: &str = "server.log";

/// How much of the end of the log [`log_says_full`] reads.
const LOG_TAIL: u64 = 16 << 10;

/// Whether the end of the log of the cluster in `data_dir` says that a write found the disk
/// full (`No space left on device`).
pub(crate) fn log_says_full(data_dir: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Some(log) = data_dir.parent().map(|dir| dir.join(LOG_FILE)) else {
        return false;
    };
    let Ok(mut file) = std::fs::File::open(log) else {
        return false;
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)))
        .and_then(|_| file.take(LOG_TAIL).read_to_end(&mut tail))
        .is_ok_and(|_| String::from_utf8_lossy(&tail).contains("No space left on device"))
}

/// The binaries and where they are.
#[derive(Debug, Clone)]
pub(super) struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The directory `dir`, which holds `initdb` and `pg_ctl`.
    #[cfg(feature = "embedded")]
    pub(super) fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn has_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// Finds `initdb` and `pg_ctl`: `PGFRESH_PG_BIN`, then `PATH`, then the usual install places.
pub(super) fn find_binaries(config: &Config) -> Result<Binaries> {
    if let Some(dir) = &config.pg_bin {
        return if has_tools(dir) {
            Ok(Binaries { dir: dir.clone() })
        } else {
            Err(Error::InvalidConfig {
                var: "PGFRESH_PG_BIN",
                value: dir.display().to_string(),
                reason: "that directory does not hold initdb and pg_ctl; point it at the one \
                         that does, e.g. /usr/lib/postgresql/15/bin"
                    .into(),
            })
        };
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    search(path_dirs.into_iter().chain(install_locations()))
}

fn search(candidates: impl IntoIterator<Item = PathBuf>) -> Result<Binaries> {
    if let Some(dir) = candidates.into_iter().find(|dir| has_tools(dir)) {
        return Ok(Binaries { dir });
    }
    Err(Error::Local {
        source: None,
        reason: "no initdb and pg_ctl found on PATH or in /usr/lib/postgresql/*/bin, \
                 /usr/pgsql-*/bin, /opt/homebrew/opt/postgresql*/bin, /usr/local/opt/postgresql*/bin"
            .into(),
        remedy: "Install PostgreSQL (apt-get install postgresql, brew install postgresql) or set \
                 PGFRESH_PG_BIN to the directory holding initdb and pg_ctl"
            .into(),
    })
}

/// Debian/Ubuntu, RHEL and Homebrew layouts, newest version first.
fn install_locations() -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    let globs: [(&str, &str, &str); 4] = [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql", "bin"),
        ("/usr/local/opt", "postgresql", "bin"),
    ];
    for (parent, prefix, sub) in globs {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            let version: String = rest
                .trim_start_matches('@')
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if rest.is_empty() || !version.is_empty() {
                found.push((version.parse().unwrap_or(0), entry.path().join(sub)));
            }
        }
    }
    found.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    found.into_iter().map(|(_, p)| p).collect()
}

pub(super) async fn start(config: &Config) -> Result<Started> {
    start_with(config, find_binaries(config)?, ServerSource::Local).await
}

/// A cluster from `bins`, reported to tests as `source` (the embedded source's binaries are
/// run the same way).
pub(super) async fn start_with(
    config: &Config,
    bins: Binaries,
    source: ServerSource,
) -> Result<Started> {
    let local = Local {
        bins,
        owner: server_user()?,
        source,
        keep_data: config.ready_max != Some(0),
    };
    launch::find_or_start(config, &local).await
}

/// A cluster from `bins`, run as `owner` (this process's user when `None`).
struct Local {
    bins: Binaries,
    owner: Option<(u32, u32)>,
    source: ServerSource,
    /// Whether the linger stop keeps the data for a restart.
    keep_data: bool,
}

impl Launch for Local {
    const KIND: ServerSource = ServerSource::Local;

    fn source(&self) -> ServerSource {
        self.source
    }

    fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// One cluster per binaries directory.
    fn key(&self) -> String {
        rundir::key(&self.bins.dir.display().to_string())
    }

    fn shareable(&self) -> bool {
        true
    }

    async fn launch(&self, dir: &Arc<RunDir>, shared: bool) -> Result<(Record, Keepalive)> {
        // Without a shared cluster, a guardian tied to this process by a pipe stops the
        // cluster and removes its directory when the process exits; started first, so that it
        // also cleans up after a start that fails half-way.
        let keepalive: Keepalive = if shared {
            Box::new(())
        } else {
            Box::new(self.cleanup_guardian(dir)?)
        };
        let data = dir.path().join(DATA_DIR);
        let record = blocking({
            let (bins, dir, owner) = (self.bins.clone(), dir.clone(), self.owner);
            move || init_and_start(&bins, &dir, owner)
        })
        .await
        .map_err(|e| match e.is_disk_full(true) {
            true => super::disk_full(self.source, Some(&data), "", &e),
            false => e,
        })?;
        Ok((record, keepalive))
    }

    fn cleanup(&self, dir: &RunDir, _record: &Record) -> guardian::Cleanup {
        let files = [DATA_DIR, LOG_FILE, PASSWORD_FILE].map(|f| dir.path().join(f));
        let mut cleanup = guardian::Cleanup {
            stop: self.stop(&dir.path().join(DATA_DIR)),
            remove: files.to_vec(),
            run_as: self.owner,
            kept: None,
        };
        if self.keep_data {
            cleanup.kept = Some(guardian::Kept {
                marker: dir.path().join(KEPT_MARKER),
                remove: std::mem::take(&mut cleanup.remove),
                secs: KEPT_FOR.as_secs(),
            });
        }
        cleanup
    }

    fn hint(&self, dir: &RunDir, _record: &Record) -> String {
        format!(
            "the server log {} shows no error",
            dir.path().join(LOG_FILE).display()
        )
    }

    fn data_dir(&self, dir: &RunDir) -> Option<std::path::PathBuf> {
        Some(dir.path().join(DATA_DIR))
    }
}

impl Local {
    /// A guardian that stops the cluster in `dir` and removes the directory when this process
    /// exits.
    fn cleanup_guardian(&self, dir: &RunDir) -> Result<guardian::Guardian> {
        guardian::tie(guardian::Cleanup {
            stop: self.stop(&dir.path().join(DATA_DIR)),
            remove: vec![dir.path().to_owned()],
            run_as: self.owner,
            kept: None,
        })
        .map_err(|e| io_error("cannot start the cleanup guardian", e))
    }

    /// `pg_ctl stop` of the cluster in `data`, in fast mode (see the module docs).
    fn stop(&self, data: &std::path::Path) -> Vec<String> {
        let pg_ctl = self.bins.tool("pg_ctl").display().to_string();
        let data = data.display().to_string();
        [pg_ctl.as_str(), "-D", &data, "stop", "-m", "fast"]
            .map(str::to_owned)
            .to_vec()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| local_error(format!("a blocking step failed: {e}")))?
}

/// Created by the guardian once the linger stop succeeded: `data` is a cleanly stopped cluster.
pub(crate) const KEPT_MARKER: &str = "kept";

/// `pg_ctl start` of the data a linger stop kept, else `initdb` and `pg_ctl start`, in
/// `dir/data`, on a free port. Anything else left there by a server that died is removed first.
fn init_and_start(bins: &Binaries, dir: &RunDir, owner: Option<(u32, u32)>) -> Result<Record> {
    let data = dir.path().join(DATA_DIR);
    let pg_ctl = bins.tool("pg_ctl");
    // Removed before anything else: if this restart fails half-way, the data is not trusted
    // again.
    let kept = std::fs::remove_file(dir.path().join(KEPT_MARKER)).is_ok();
    if kept && data.exists() {
        match dir.read_secret(PASSWORD_FILE) {
            Ok(Some(password)) => match pg_ctl_start(bins, dir, owner, &password) {
                Ok(record) => {
                    tracing::debug!(data = %data.display(), "restarted the kept cluster");
                    return Ok(record);
                }
                Err(e) => tracing::info!("the kept cluster did not start ({e}); making a new one"),
            },
            Ok(None) => {}
            Err(e) => tracing::info!("the kept cluster's password: {e}; making a new one"),
        }
    }
    if data.exists() {
        let _ = run(
            Command::new(&pg_ctl)
                .arg("-D")
                .arg(&data)
                .args(["stop", "-m", "immediate"]),
            owner,
            "pg_ctl stop",
        );
        std::fs::remove_dir_all(&data)
            .map_err(|e| io_error(&format!("cannot remove the stale {}", data.display()), e))?;
    }
    // Starts with a SCRAM-hashed password; `prefer_md5` rehashes it once the server runs.
    // Kept beside the data for a restart (see KEPT_FOR).
    let password = uuid::Uuid::new_v4().simple().to_string();
    let pwfile = dir.write_secret(PASSWORD_FILE, &password)?;
    let initdb = run(
        Command::new(bins.tool("initdb"))
            .arg("-D")
            .arg(&data)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "-U",
                "postgres",
                "-A",
                "md5",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ]),
        owner,
        "initdb",
    );
    initdb?;
    let mut conf = format!(
        "\n# pgfresh\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
        dir.path().display()
    );
    for setting in SPEED_SETTINGS {
        conf.push_str(setting);
        conf.push('\n');
    }
    append(&data.join("postgresql.conf"), &conf)?;
    pg_ctl_start(bins, dir, owner, &password)
}

/// `pg_ctl start` of the cluster in `dir/data`, whose superuser has `password`, on a free port.
fn pg_ctl_start(
    bins: &Binaries,
    dir: &RunDir,
    owner: Option<(u32, u32)>,
    password: &str,
) -> Result<Record> {
    let (data, pg_ctl) = (dir.path().join(DATA_DIR), bins.tool("pg_ctl"));
    let log = dir.path().join(LOG_FILE);
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        let started = run(
            Command::new(&pg_ctl)
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-p {port}"))
                .arg("start"),
            owner,
            "pg_ctl start",
        );
        match started {
            Ok(()) => {
                let handle = pg_ctl.display().to_string();
                return Ok(Record::new(port, password.to_owned(), handle));
            }
            Err(e) => {
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                if !log_text.contains("could not bind") && !log_text.contains("already in use") {
                    return Err(local_error(format!(
                        "{e}; server log:\n{}",
                        tail(&log_text)
                    )));
                }
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| local_error("no free port".into())))
}

/// The uid and gid to run the server as: `None` (this process's) unless this process is root.
pub(super) fn server_user() -> Result<Option<(u32, u32)>> {
    if crate::os::euid() != 0 {
        return Ok(None);
    }
    private::user("postgres")
        .or_else(|| private::user("nobody"))
        .map(Some)
        .ok_or_else(|| {
            local_error(
                "running as root, and PostgreSQL refuses to; there is no `postgres` or `nobody` \
                 user to run it as"
                    .into(),
            )
        })
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| io_error("cannot find a free port on 127.0.0.1", e))
}

fn run(cmd: &mut Command, owner: Option<(u32, u32)>, what: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| io_error(&format!("cannot run {what}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    // Errors last: they go to stderr, and only the end of the text is shown.
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Err(local_error(format!(
        "{what} failed ({}): {}",
        out.status,
        tail(&text)
    )))
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| io_error(&format!("cannot write {}", path.display()), e))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// What to do when the local source fails.
const REMEDY: &str = "Check the PostgreSQL installation (PGFRESH_PG_BIN), or use another source: \
                      set DB_URL, or PGFRESH_SERVER=docker";

fn local_error(reason: String) -> Error {
    Error::Local {
        reason,
        remedy: REMEDY.into(),
        source: None,
    }
}

/// A failed system call: `what` and its error, which stays the error's source.
fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::Local {
        reason: format!("{what}: {e}"),
        remedy: REMEDY.into(),
        source: Some(Arc::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_ending_in_a_full_disk_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert!(!log_says_full(&data), "no log");
        let log = dir.path().join(LOG_FILE);
        std::fs::write(
            &log,
            "LOG:  database system is ready to accept connections\n",
        )
        .unwrap();
        assert!(!log_says_full(&data));
        let full = "PANIC:  could not write to file \"pg_wal/xlogtemp.42\": \
                    No space left on device\n";
        std::fs::write(&log, format!("LOG:  checkpoint starting\n{full}")).unwrap();
        assert!(log_says_full(&data));
        // Long ago: only the end of the log counts.
        let since = "LOG:  checkpoint complete\n".repeat(2 * LOG_TAIL as usize / 25);
        std::fs::write(&log, format!("{full}{since}")).unwrap();
        assert!(!log_says_full(&data));
    }

    #[test]
    fn missing_binaries_say_how_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let e = search([empty.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no initdb and pg_ctl found"), "{e}");
        assert!(
            e.contains("apt-get install postgresql") && e.contains("PGFRESH_PG_BIN"),
            "{e}"
        );
    }

    #[test]
    fn wrong_pg_bin_names_the_variable() {
        let config =
            Config::from_lookup(|k| (k == "PGFRESH_PG_BIN").then(|| "/nonexistent/bin".into()))
                .unwrap();
        let e = find_binaries(&config).unwrap_err().to_string();
        assert!(e.contains("PGFRESH_PG_BIN=/nonexistent/bin"), "{e}");
    }
}
