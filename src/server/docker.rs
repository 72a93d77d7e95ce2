//! The docker source: a PostgreSQL container started through testcontainers-modules.
//!
//! The container runs with test-speed settings (`fsync`, `synchronous_commit` and
//! `full_page_writes` off), keeps its data on tmpfs, publishes its port on 127.0.0.1 only, and
//! is removed by Docker as soon as it stops. A guardian process removes it when this process
//! exits, since the handle lives in a static that is never dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::bollard::models::PortBinding;
use testcontainers_modules::testcontainers::core::Mount;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};

use super::{SPEED_SETTINGS, Started, guardian};
use crate::config::{Config, Source};
use crate::error::{Error, Result};

const PGDATA: &str = "/var/lib/postgresql/data";

/// The container and its guardian, kept alive for the life of the process.
struct Running {
    _container: ContainerAsync<Postgres>,
    _guardian: Option<guardian::Guardian>,
}

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
    })?;
    let (name, tag) = &config.image;
    let password = uuid::Uuid::new_v4().simple().to_string();
    let cmd = SPEED_SETTINGS.iter().flat_map(|s| ["-c", s]);
    let request = Postgres::default()
        .with_user("postgres")
        .with_password(&password)
        .with_db_name("postgres")
        .with_name(name.as_str())
        .with_tag(tag.as_str())
        .with_cmd(cmd)
        .with_env_var("PGDATA", PGDATA)
        // Both paths, so that neither the official images' VOLUME (which moved from
        // /var/lib/postgresql/data to /var/lib/postgresql in 18) gets an anonymous volume.
        .with_mount(Mount::tmpfs_mount("/var/lib/postgresql"))
        .with_mount(Mount::tmpfs_mount(PGDATA))
        .with_label("dev.pgfresh", "1")
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
        });

    let container = request
        .start()
        .await
        .map_err(|e| start_error(name, tag, &e))?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .map_err(|e| start_error(name, tag, &e))?;
    let guardian = match which_docker() {
        Some(docker) => guardian::spawn(
            r#""$1" rm -f -v "$2" >/dev/null 2>&1"#,
            &[&docker, container.id()],
            None,
        )
        .ok(),
        None => {
            tracing::warn!(
                id = container.id(),
                "no docker CLI on PATH: the container cannot be removed when this process exits; \
                 remove it with `docker rm -f` (label dev.pgfresh=1)"
            );
            None
        }
    };
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
    Ok(Started {
        source: Source::Docker,
        options,
        url,
        password_from_user: false,
        hint: format!("the container from {name}:{tag} is healthy (docker logs)"),
        keepalive: Box::new(Running {
            _container: container,
            _guardian: guardian,
        }),
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
    Error::Docker { reason, remedy }
}
