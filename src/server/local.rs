//! The local source: a throwaway cluster from the PostgreSQL binaries on this machine.
//!
//! `initdb --no-sync` into a fresh directory (on tmpfs when `/dev/shm` exists), then
//! `pg_ctl start` on a free loopback port with the same test-speed settings as the docker
//! source. The server listens on 127.0.0.1 only and asks for a generated password.
//!
//! PostgreSQL refuses to run as root, so when this process is root the cluster is created and
//! run as the `postgres` user (or `nobody` when there is none).
//!
//! A guardian process stops the server in immediate mode and deletes the directory when this
//! process exits. Immediate mode, because the data is thrown away anyway and a smart shutdown
//! would wait forever for pools that are still open.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::postgres::PgConnectOptions;

use super::{SPEED_SETTINGS, Started, guardian};
use crate::config::{Config, Source};
use crate::error::{Error, Result};

/// How often a start is retried when another process took the free port first.
const PORT_ATTEMPTS: usize = 5;

/// The binaries and where they are.
#[derive(Debug, Clone)]
pub(super) struct Binaries {
    dir: PathBuf,
}

impl Binaries {
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
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// The cluster's directory and guardian, kept alive for the life of the process.
struct Cluster {
    _guardian: guardian::Guardian,
}

pub(super) async fn start(config: &Config) -> Result<Started> {
    let bins = find_binaries(config)?;
    tokio::task::spawn_blocking(move || start_blocking(&bins))
        .await
        .map_err(|e| local_error(format!("the start task failed: {e}")))?
}

fn start_blocking(bins: &Binaries) -> Result<Started> {
    let owner = server_user()?;
    let base = create_base_dir(owner)?;
    let data = base.join("data");
    let pg_ctl = bins.tool("pg_ctl");
    let guardian = guardian::spawn(
        r#""$1" -D "$2" stop -m immediate >/dev/null 2>&1; rm -rf "$3""#,
        &[
            &pg_ctl.display().to_string(),
            &data.display().to_string(),
            &base.display().to_string(),
        ],
        owner,
    )
    .map_err(|e| local_error(format!("cannot start the cleanup guardian (sh): {e}")))?;

    // A password even on loopback: other users of the machine stay out, and connecting costs
    // the same as against the docker and url sources.
    let password = uuid::Uuid::new_v4().simple().to_string();
    let pwfile = base.join("pwfile");
    write_owned(&pwfile, &password, owner)?;
    let initdb = run(
        Command::new(bins.tool("initdb"))
            .arg("-D")
            .arg(&data)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ]),
        owner,
        "initdb",
    );
    let _ = std::fs::remove_file(&pwfile);
    initdb?;
    let mut conf = format!(
        "\n# pgfresh\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
        base.display()
    );
    for setting in SPEED_SETTINGS {
        conf.push_str(setting);
        conf.push('\n');
    }
    append(&data.join("postgresql.conf"), &conf)?;

    let log = base.join("server.log");
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
                let options = PgConnectOptions::new()
                    .host("127.0.0.1")
                    .port(port)
                    .username("postgres")
                    .password(&password)
                    .database("postgres");
                let url = url::Url::parse(&format!(
                    "postgres://postgres:{password}@127.0.0.1:{port}/postgres"
                ))
                .expect("a valid URL");
                return Ok(Started {
                    source: Source::Local,
                    options,
                    url,
                    password_from_user: false,
                    hint: format!("the server log {} shows no error", log.display()),
                    keepalive: Box::new(Cluster {
                        _guardian: guardian,
                    }),
                });
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
fn server_user() -> Result<Option<(u32, u32)>> {
    let euid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = |wanted: &str| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[0] == wanted)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    };
    user("postgres")
        .or_else(|| user("nobody"))
        .map(Some)
        .ok_or_else(|| {
            local_error(
                "running as root, and PostgreSQL refuses to; there is no `postgres` or `nobody` \
                 user to run it as"
                    .into(),
            )
        })
}

fn create_base_dir(owner: Option<(u32, u32)>) -> Result<PathBuf> {
    let shm = Path::new("/dev/shm");
    let parent =
        if shm.is_dir() && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let base = parent.join(format!("pgfresh-{}-{}", std::process::id(), &id[..8]));
    std::fs::create_dir(&base)
        .map_err(|e| local_error(format!("cannot create {}: {e}", base.display())))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&base, Some(uid), Some(gid))
            .map_err(|e| local_error(format!("cannot chown {}: {e}", base.display())))?;
    }
    Ok(base)
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| local_error(format!("cannot find a free port on 127.0.0.1: {e}")))
}

fn run(cmd: &mut Command, owner: Option<(u32, u32)>, what: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| local_error(format!("cannot run {what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    Err(local_error(format!(
        "{what} failed ({}): {}",
        out.status,
        tail(&text)
    )))
}

fn write_owned(path: &Path, text: &str, owner: Option<(u32, u32)>) -> Result<()> {
    std::fs::write(path, text)
        .and_then(|()| match owner {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
            None => Ok(()),
        })
        .map_err(|e| local_error(format!("cannot write {}: {e}", path.display())))
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| local_error(format!("cannot write {}: {e}", path.display())))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn local_error(reason: String) -> Error {
    Error::Local {
        reason,
        remedy: "Check the PostgreSQL installation (PGFRESH_PG_BIN), or use another source: set \
                 DB_URL, or PGFRESH_SERVER=docker"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
