//! The docker source: a PostgreSQL container started through testcontainers-modules.
//!
//! The container runs with test-speed settings (`fsync`, `synchronous_commit` and
//! `full_page_writes` off), keeps its data on tmpfs, publishes its port on 127.0.0.1 only, and
//! is removed by Docker as soon as it stops.
//!
//! One container per image serves every process of the user (see [`super::rundir`]): the
//! handle lives in a static that is never dropped, so its guardian removes it (`docker rm -f`)
//! once no process has used it for the linger time. Without the docker CLI, or where there is
//! no guardian (Windows), each process gets a container of its own, which stops itself (see
//! [`STOP_WHEN_UNUSED`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::bollard::models::PortBinding;
use testcontainers_modules::testcontainers::core::Mount;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerRequest, ImageExt};

use super::launch::{self, Keepalive, Launch, SPEED_SETTINGS};
use super::rundir::{self, Record, RunDir};
use super::{Started, guardian};
use crate::config::{Config, ServerSource};
use crate::error::{Error, Result};

const PGDATA: &str = "/var/lib/postgresql/data";

/// How long a per-process container waits, once no client is connected, before it stops.
const UNUSED_SECS: u32 = 5;

/// How long a per-process container waits for its first client before it stops anyway.
const UNCLAIMED_SECS: u32 = 600;

/// A per-process container's command (`sh -c`): the image's entrypoint starts the server (`$@`:
/// `postgres -c …`) in the background while this loop asks the server over its Unix socket, once
/// a second, how many clients are connected (other than itself: `psql` connects as the
/// superuser, which local connections trust in the official image and pgfresh's offline one).
/// Once a client has come and none has been connected for `$1` seconds (or none came within
/// `$2`), it stops the server (`SIGINT`, a fast shutdown), and the container ends and is
/// removed. A second whose question fails (no `psql` in the image, say) counts for nothing:
/// such a container stays, as it would without this loop. A process holds a connection while it runs (its owner lock), so its container
/// outlives it by seconds however it ends, with nothing on the host to do it: no docker CLI,
/// no guardian. `docker stop` reaches the server through the trap.
const STOP_WHEN_UNUSED: &str = r#"
unused=$1 unclaimed=$2
shift 2
docker-entrypoint.sh "$@" &
server=$!
trap 'kill -INT "$server" 2>/dev/null' INT TERM
seen=false quiet=0
while kill -0 "$server" 2>/dev/null; do
  sleep 1
  n=$(psql -XAtq -U postgres -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()" 2>/dev/null) || continue
  if [ "${n:-0}" -gt 0 ]; then seen=true quiet=0; else quiet=$((quiet + 1)); fi
  if { $seen && [ "$quiet" -ge "$unused" ]; } || { ! $seen && [ "$quiet" -ge "$unclaimed" ]; }; then
    kill -INT "$server" 2>/dev/null
  fi
done
wait "$server"
"#;

/// Whether a Docker daemon answers on `DOCKER_HOST` or the usual socket paths (the named pipe
/// `\\.\pipe\docker_engine` on Windows).
pub(super) fn available() -> Result<(), String> {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if let Some(addr) = host.strip_prefix("tcp://") {
            return probe_tcp(addr);
        }
        #[cfg(unix)]
        if let Some(path) = host.strip_prefix("unix://") {
            return probe_socket(Path::new(path));
        }
        #[cfg(windows)]
        if let Some(pipe) = host.strip_prefix("npipe://") {
            return probe_pipe(&pipe.replace('/', "\\"));
        }
        let local = if cfg!(windows) { "npipe://" } else { "unix://" };
        return Err(format!(
            "DOCKER_HOST={host} is not a {local} or tcp:// address"
        ));
    }
    #[cfg(windows)]
    return probe_pipe(r"\\.\pipe\docker_engine");
    #[cfg(unix)]
    default_sockets()
}

/// The daemon's usual sockets: the system's, Docker Desktop's, a rootless daemon's.
#[cfg(unix)]
fn default_sockets() -> Result<(), String> {
    use std::path::PathBuf;
    let mut candidates = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        candidates.push(home.join(".docker/run/docker.sock"));
        candidates.push(home.join(".docker/desktop/docker.sock"));
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        candidates.push(runtime.join("docker.sock"));
    }
    let mut why = Vec::new();
    for path in &candidates {
        match probe_socket(path) {
            Ok(()) => return Ok(()),
            Err(e) => why.push(e),
        }
    }
    Err(why.join("; "))
}

#[cfg(unix)]
fn probe_socket(path: &Path) -> Result<(), String> {
    std::os::unix::net::UnixStream::connect(path)
        .map(drop)
        .map_err(|e| format!("no daemon at {}: {e}", path.display()))
}

/// Opens the daemon's named pipe (one busy with other clients answers too).
#[cfg(windows)]
fn probe_pipe(pipe: &str) -> Result<(), String> {
    const ERROR_PIPE_BUSY: i32 = 231;
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pipe)
    {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => Ok(()),
        Err(e) => Err(format!("no daemon at {pipe}: {e}")),
    }
}

fn probe_tcp(addr: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addr = addr
        .to_socket_addrs()
        .map_err(|e| format!("DOCKER_HOST address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("DOCKER_HOST address {addr} resolves to nothing"))?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map(drop)
        .map_err(|e| format!("no daemon at {addr}: {e}"))
}

pub(super) async fn start(config: &Config) -> Result<Started> {
    available().map_err(|why| Error::Docker {
        reason: format!("no Docker daemon answers ({why})"),
        remedy: "Start Docker (`sudo systemctl start docker`, or Docker Desktop), or use \
                 another source: set DB_URL, or PGFRESH_SERVER=local"
            .into(),
        source: None,
    })?;
    let (name, tag) = &config.image;
    let docker = Docker {
        name,
        tag,
        cli: which_docker(),
    };
    launch::find_or_start(config, &docker).await
}

/// A container of image `name:tag`.
struct Docker<'c> {
    name: &'c str,
    tag: &'c str,
    /// The docker CLI, with which a guardian removes a shared container; without it each
    /// process starts its own, which stops itself.
    cli: Option<String>,
}

impl Launch for Docker<'_> {
    const KIND: ServerSource = ServerSource::Docker;

    /// One container per image and daemon.
    fn key(&self) -> String {
        rundir::key(&format!(
            "{}:{} {}",
            self.name,
            self.tag,
            std::env::var("DOCKER_HOST").unwrap_or_default()
        ))
    }

    fn shareable(&self) -> bool {
        self.cli.is_some()
    }

    fn discard(&self, dead: &Record) {
        if let Some(cli) = &self.cli {
            let _ = std::process::Command::new(cli)
                .args(["rm", "-f", "-v", &dead.handle])
                .output();
        }
    }

    async fn launch(&self, dir: &Arc<RunDir>, shared: bool) -> Result<(Record, Keepalive)> {
        let (name, tag) = (self.name, self.tag);
        let password = uuid::Uuid::new_v4().simple().to_string();
        let base = dir.path().parent().unwrap_or(dir.path());
        let container = request(
            name,
            tag,
            &password,
            dir.path(),
            &base.display().to_string(),
            !shared,
        )
        .start()
        .await
        .map_err(|e| start_error(name, tag, &e))?;
        let port = container
            .get_host_port_ipv4(5432)
            .await
            .map_err(|e| start_error(name, tag, &e))?;
        let record = Record::new(port, password, container.id().to_owned());
        if !shared {
            tracing::debug!(
                id = record.handle,
                "a container of this process's own: it stops {UNUSED_SECS} s after its last client"
            );
        }
        Ok((record, Box::new(container)))
    }

    fn cleanup(&self, _dir: &RunDir, record: &Record) -> guardian::Cleanup {
        let cli = self.cli.clone().unwrap_or_else(|| "docker".into());
        guardian::Cleanup {
            stop: [cli.as_str(), "rm", "-f", "-v", &record.handle]
                .map(str::to_owned)
                .to_vec(),
            remove: Vec::new(),
            run_as: None,
            kept: None,
        }
    }

    fn hint(&self, _dir: &RunDir, record: &Record) -> String {
        format!(
            "the container {} from {}:{} is healthy (docker logs)",
            record.handle, self.name, self.tag
        )
    }
}

/// The container, with test-speed settings, data on tmpfs, its port on 127.0.0.1 only, md5
/// host authentication (see `prefer_md5`), labels for `pgfresh gc`, removed by Docker once it
/// stops; with `stop_when_unused`, it stops itself once unused (see [`STOP_WHEN_UNUSED`]).
fn request(
    name: &str,
    tag: &str,
    password: &str,
    dir: &Path,
    run_dir: &str,
    stop_when_unused: bool,
) -> ContainerRequest<Postgres> {
    let settings = SPEED_SETTINGS.iter().flat_map(|s| ["-c", s]);
    let mut cmd: Vec<String> = Vec::new();
    if stop_when_unused {
        // The image's entrypoint runs a command that is not `postgres` as it is.
        cmd.extend(["sh", "-c", STOP_WHEN_UNUSED, "pgfresh-stop-when-unused"].map(str::to_owned));
        cmd.extend([UNUSED_SECS, UNCLAIMED_SECS].map(|n| n.to_string()));
        cmd.push("postgres".into());
    }
    cmd.extend(settings.map(str::to_owned));
    Postgres::default()
        .with_user("postgres")
        .with_password(password)
        .with_db_name("postgres")
        .with_name(name)
        .with_tag(tag)
        .with_cmd(cmd)
        .with_env_var("PGDATA", PGDATA)
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "md5")
        // Both paths, so that neither the official images' VOLUME (which moved from
        // /var/lib/postgresql/data to /var/lib/postgresql in 18) gets an anonymous volume.
        .with_mount(Mount::tmpfs_mount("/var/lib/postgresql"))
        .with_mount(Mount::tmpfs_mount(PGDATA))
        .with_label("dev.pgfresh", "1")
        .with_label("dev.pgfresh.dir", dir.display().to_string())
        .with_label("dev.pgfresh.rundir", run_dir)
        .with_label("dev.pgfresh.pid", std::process::id().to_string())
        .with_startup_timeout(Duration::from_secs(120))
        .with_host_config_modifier(|host| {
            host.auto_remove = Some(true);
            host.publish_all_ports = Some(false);
            host.port_bindings = Some(HashMap::from([(
                "5432/tcp".to_owned(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )]));
        })
}

fn which_docker() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(format!("docker{}", std::env::consts::EXE_SUFFIX)))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn start_error(name: &str, tag: &str, e: &dyn std::fmt::Display) -> Error {
    let reason = format!("could not start a container from {name}:{tag}: {e}");
    let lower = reason.to_ascii_lowercase();
    let remedy = if lower.contains("pull")
        || lower.contains("no such image")
        || lower.contains("not found")
    {
        format!(
            "The image is not on this machine and could not be pulled. Run `docker pull \
             {name}:{tag}`, or without a registry build one with scripts/offline-image.sh and set \
             PGFRESH_IMAGE to the reference it prints"
        )
    } else {
        "Check `docker ps -a` and the container's logs; PGFRESH_IMAGE must be a PostgreSQL image \
         that follows the official image's contract"
            .to_owned()
    };
    Error::Docker {
        reason,
        remedy,
        source: None,
    }
}
