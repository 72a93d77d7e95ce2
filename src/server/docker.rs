//! The docker source: a PostgreSQL container started through testcontainers-modules.
//!
//! The container runs with test-speed settings (`fsync`, `synchronous_commit` and
//! `full_page_writes` off), keeps its data on tmpfs, publishes its port on 127.0.0.1 only, and
//! is removed by Docker as soon as it stops.
//!
//! One container per image serves every process of the user (see [`super::rundir`]): the
//! handle lives in a static that is never dropped, so its guardian removes it (`docker rm -f`)
//! once no process has used it for the linger time. Without the docker CLI, or where there is
//! no guardian (Windows), each process gets a container of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

/// Whether a Docker daemon answers on `DOCKER_HOST` or the usual socket paths.
pub(super) fn available() -> Result<(), String> {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        return match host.strip_prefix("unix://") {
            Some(path) => probe_socket(&PathBuf::from(path)),
            None => match host.strip_prefix("tcp://") {
                Some(addr) => probe_tcp(addr),
                None => Err(format!(
                    "DOCKER_HOST={host} is not a unix:// or tcp:// address"
                )),
            },
        };
    }
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

fn probe_socket(path: &PathBuf) -> Result<(), String> {
    std::os::unix::net::UnixStream::connect(path)
        .map(drop)
        .map_err(|e| format!("no daemon at {}: {e}", path.display()))
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
        remedy: "Start Docker (for example `sudo systemctl start docker`), or use another \
                 source: set DB_URL, or PGFRESH_SERVER=local"
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
    /// The docker CLI, which removes containers; without it each process starts its own.
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
        )
        .start()
        .await
        .map_err(|e| start_error(name, tag, &e))?;
        let port = container
            .get_host_port_ipv4(5432)
            .await
            .map_err(|e| start_error(name, tag, &e))?;
        let record = Record::new(port, password, container.id().to_owned());
        // In per-process mode, a guardian tied to this process by a pipe removes the
        // container when the process exits.
        let guardian = if shared {
            None
        } else if self.cli.is_some() {
            guardian::tie(self.cleanup(dir, &record)).ok()
        } else {
            tracing::warn!(
                id = record.handle,
                "no docker CLI on PATH: the container cannot be removed when this process exits; \
                 remove it with `docker rm -f` (label dev.pgfresh=1)"
            );
            None
        };
        Ok((record, Box::new((container, guardian))))
    }

    fn cleanup(&self, _dir: &RunDir, record: &Record) -> guardian::Cleanup {
        let cli = self.cli.clone().unwrap_or_else(|| "docker".into());
        guardian::Cleanup {
            stop: [cli.as_str(), "rm", "-f", "-v", &record.handle]
                .map(str::to_owned)
                .to_vec(),
            remove: Vec::new(),
            run_as: None,
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
/// stops.
fn request(
    name: &str,
    tag: &str,
    password: &str,
    dir: &Path,
    run_dir: &str,
) -> ContainerRequest<Postgres> {
    let cmd = SPEED_SETTINGS.iter().flat_map(|s| ["-c", s]);
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
        .map(|dir| dir.join("docker"))
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
