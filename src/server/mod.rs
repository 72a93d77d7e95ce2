//! Server sources: where the PostgreSQL server comes from.
//!
//! Each source lives in its own file and produces a [`Started`] server: connection options for
//! an administrative connection plus whatever must stay alive for the server to keep running.
//! [`start`] picks the source (`PGFRESH_SERVER`), starts it, and checks that the role may
//! create databases.

// The docker source runs on every platform; the local and embedded sources (and so the broker's
// directory) on Unix. Run directories, their guardian and the find-or-start skeleton serve both
// kinds of source: `any(feature = "docker", all(unix, feature = "local"))` below.
mod admin_pool;
mod copy_method;
#[cfg(feature = "docker")]
mod docker;
#[cfg(all(unix, feature = "embedded"))]
mod embedded;
#[cfg(any(feature = "docker", all(unix, feature = "local")))]
mod guardian;
#[cfg(unix)]
mod health;
#[cfg(any(feature = "docker", all(unix, feature = "local")))]
mod launch;
#[cfg(all(unix, feature = "local"))]
mod local;
#[cfg(any(feature = "docker", all(unix, feature = "local")))]
mod private;
#[cfg(any(feature = "docker", all(unix, feature = "local")))]
mod rundir;
mod slot;
mod url;

#[cfg(all(unix, feature = "cli"))]
pub(crate) use local::{DATA_DIR, KEPT_MARKER, LOG_FILE, PASSWORD_FILE};
#[cfg(all(unix, feature = "cli"))]
pub(crate) use rundir::{STATE_FILE, base_dirs as run_base_dirs, recorded_handle, trusted_run_dir};
use std::any::Any;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::address::Address;
use crate::config::{Choice, Config, ServerSource};
use crate::error::{Error, Result};

use admin_pool::AdminPool;
pub(crate) use admin_pool::{AdminConn, Urgency};
pub(crate) use copy_method::CopyMethod;
#[cfg(all(
    any(target_os = "linux", target_os = "macos"),
    any(feature = "docker", feature = "local")
))]
pub(crate) use guardian::{GUARD_VAR, guard_if_asked};
pub(crate) use slot::waiting_for_a_slot;

/// How long pgfresh waits for a server to accept a connection before giving up.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a source hands back once its server accepts connections.
pub(crate) struct Started {
    pub source: ServerSource,
    /// Options for the administrative connection (never used to write into its database).
    pub options: PgConnectOptions,
    /// The same server as a URL (test databases get theirs by replacing the path).
    pub url: ::url::Url,
    /// `true` when the password came from the user (`DB_URL`) and must never be printed.
    pub password_from_user: bool,
    /// The password, for tools that want it on its own (`PGPASSWORD`).
    pub password: Option<String>,
    /// Where the address came from, for connection errors.
    pub hint: String,
    /// The cluster's data directory, when pgfresh knows it (the local source).
    pub data_dir: Option<PathBuf>,
    /// Keeps the container or cluster alive while the process runs.
    pub keepalive: Box<dyn Any + Send + Sync>,
    /// A connection already open to the server (the one that found a recorded server
    /// answering), made with [`admin_options`].
    pub connection: Option<PgConnection>,
}

/// A running server and pgfresh's own connections to it.
pub(crate) struct Server {
    pub source: ServerSource,
    pub options: PgConnectOptions,
    pub url: ::url::Url,
    pub password_from_user: bool,
    pub password: Option<String>,
    /// The cluster's data directory, when pgfresh knows it (the local source).
    pub data_dir: Option<PathBuf>,
    admin: AdminPool,
    /// `server_version_num`, e.g. 150004.
    pub version: u32,
    /// How the server copies a template into a clone on pgfresh's connections.
    pub copy_method: CopyMethod,
    /// The data directory, where this process sees it: [`Self::data_dir`], or a `DB_URL`
    /// server's on this machine (for its file system: copy method, room). Read for room by
    /// the broker (Unix).
    #[cfg_attr(not(unix), allow(dead_code))]
    seen_data_dir: Option<PathBuf>,
    /// The first clone's hand-out said which copy method it used.
    copy_method_told: std::sync::atomic::AtomicBool,
    /// `pg_postmaster_start_time()` when pgfresh connected: another one later is a restart
    /// (the broker's check, [`Server::gone`]: Unix).
    #[cfg_attr(not(unix), allow(dead_code))]
    started_at: String,
    /// The key of this process's owner lock (see [`crate::sweep`]), held by the first
    /// connection of the administrative pool.
    pub owner: i32,
    _keepalive: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("source", &self.source)
            .field("address", &address(&self.options))
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Where the test database `name` on this server is, and how a test connects to it.
    pub fn address_of(&self, name: String) -> Address {
        let mut url = self.url.clone();
        url.set_path(&name);
        Address {
            options: self
                .options
                .clone()
                .database(&name)
                .application_name("pgfresh-test"),
            url,
            source: self.source,
            password_from_user: self.password_from_user,
            name,
        }
    }

    /// Whether the cluster's data directory is known and has less than 64 MiB left, or its
    /// server's log says a write just found no room (a failed checkpoint, or a crash, is then
    /// a full disk). The log is read because the crash of a server that could not write its
    /// WAL frees room: its recovery removes what it was writing, and recycles old WAL.
    pub fn low_on_space(&self) -> bool {
        let Some(dir) = self.data_dir.as_deref() else {
            return false;
        };
        #[cfg(all(unix, feature = "local"))]
        if local::log_says_full(dir) {
            return true;
        }
        rundir_free_space(dir).is_some_and(|free| free < 64 << 20)
    }

    /// The bytes pgfresh's work that can wait may still fill on the server's file system: its
    /// free space less a margin for the tests' own writes and the server's WAL (a tenth of the
    /// file system, at least 512 MiB). `None` where pgfresh cannot see the data directory.
    #[cfg(unix)]
    pub fn spare_space(&self) -> Option<u64> {
        let (free, size) = crate::os::file_system_room(self.seen_data_dir.as_deref()?)?;
        Some(free.saturating_sub((size / 10).max(512 << 20)))
    }

    /// Says how clones are copied, once: at the first hand-out.
    pub fn tell_copy_method(&self) {
        if !self
            .copy_method_told
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!("clones are made with {}", self.copy_method);
        }
    }

    /// The error for this server running out of disk space (`cause`).
    pub fn disk_full(&self, cause: &Error) -> Error {
        disk_full(
            self.source,
            self.data_dir.as_deref(),
            &address(&self.options),
            cause,
        )
    }

    /// A connection of the administrative pool, to do `why` (for error messages).
    pub async fn admin_conn(&self, urgency: Urgency, why: &str) -> Result<AdminConn<'_>> {
        self.admin.acquire(urgency, why).await
    }
}

/// Starts (or connects to) the server the configuration asks for.
pub(crate) async fn start(config: &Config) -> Result<Server> {
    let started = match config.choice {
        Choice::Fixed(source) => start_source(source, config).await?,
        Choice::Auto => start_auto(config).await?,
    };
    connect(started).await
}

async fn start_auto(config: &Config) -> Result<Started> {
    if config.url.is_some() {
        return start_source(ServerSource::Url, config).await;
    }
    // A daemon that cannot run the image (no registry, say) should not stop a machine that
    // can run PostgreSQL otherwise; when nothing else works either, the docker error is the
    // one worth reading.
    let mut docker_failed = None;
    let docker = match docker_available() {
        Ok(()) => match start_source(ServerSource::Docker, config).await {
            Ok(started) => return Ok(started),
            Err(e) => {
                tracing::warn!("docker source failed, trying the local and embedded sources: {e}");
                let why = e.to_string();
                docker_failed = Some(e);
                why
            }
        },
        Err(why) => why,
    };
    let local = match local_available(config) {
        Ok(()) => return start_source(ServerSource::Local, config).await,
        Err(why) => why,
    };
    let embedded = match start_source(ServerSource::Embedded, config).await {
        Ok(started) => return Ok(started),
        Err(e) => e.to_string(),
    };
    if let Some(e) = docker_failed {
        return Err(e);
    }
    Err(Error::NoServer {
        docker,
        local,
        embedded,
    })
}

async fn start_source(source: ServerSource, config: &Config) -> Result<Started> {
    tracing::debug!(%source, "starting server source");
    match source {
        ServerSource::Url => url::start(config),
        #[cfg(feature = "docker")]
        ServerSource::Docker => docker::start(config).await,
        #[cfg(all(unix, feature = "local"))]
        ServerSource::Local => local::start(config).await,
        #[cfg(not(feature = "docker"))]
        ServerSource::Docker => Err(unavailable("docker", false)),
        #[cfg(not(all(unix, feature = "local")))]
        ServerSource::Local => Err(unavailable("local", cfg!(feature = "local"))),
        #[cfg(all(unix, feature = "embedded"))]
        ServerSource::Embedded => embedded::start(config).await,
        #[cfg(not(all(unix, feature = "embedded")))]
        ServerSource::Embedded => Err(unavailable("embedded", cfg!(feature = "embedded"))),
    }
}

/// Why the source `name` is not in this build: its feature is off (`enabled` false), or
/// (Windows) pgfresh does not run servers of its own on this platform yet.
#[cfg(not(all(unix, feature = "docker", feature = "local", feature = "embedded")))]
fn unavailable(name: &'static str, enabled: bool) -> Error {
    if enabled {
        Error::SourceUnsupported { source_name: name }
    } else {
        Error::SourceDisabled { source_name: name }
    }
}

fn docker_available() -> Result<(), String> {
    #[cfg(feature = "docker")]
    return docker::available();
    #[cfg(not(feature = "docker"))]
    Err(unavailable("docker", false).to_string())
}

fn local_available(config: &Config) -> Result<(), String> {
    #[cfg(all(unix, feature = "local"))]
    return local::find_binaries(config)
        .map(drop)
        .map_err(|e| e.to_string());
    #[cfg(not(all(unix, feature = "local")))]
    {
        let _ = config;
        Err(unavailable("local", cfg!(feature = "local")).to_string())
    }
}

/// The directory where the broker of the processes sharing this environment listens (see
/// [`crate::broker`]); `None` in a build without run directories (no docker or local source).
#[cfg(unix)]
pub(crate) fn broker_dir(config: &Config, key: &str) -> Option<PathBuf> {
    #[cfg(all(unix, any(feature = "docker", feature = "local")))]
    return Some(rundir::broker_dir(config, key));
    #[cfg(not(all(unix, any(feature = "docker", feature = "local"))))]
    {
        let _ = (config, key);
        None
    }
}

/// Creates the broker's directory `path` (from [`broker_dir`]), private to this process's user.
#[cfg(unix)]
pub(crate) fn make_broker_dir(path: &Path) -> Result<()> {
    #[cfg(all(unix, any(feature = "docker", feature = "local")))]
    return rundir::make_broker_dir(path);
    #[cfg(not(all(unix, any(feature = "docker", feature = "local"))))]
    {
        let _ = path;
        Ok(())
    }
}

/// The free space of the file system `path` is (or would be) on, where there is a way to
/// tell: a data directory `initdb` removed after it failed is measured at its parent.
fn rundir_free_space(path: &Path) -> Option<u64> {
    path.ancestors()
        .find_map(crate::os::file_system_room)
        .map(|(free, _)| free)
}

/// The error for a server of `source` (data in `data_dir`, when known; at `address`) that ran
/// out of disk space with `cause`: where, how much is left, what to do.
pub(crate) fn disk_full(
    source: ServerSource,
    data_dir: Option<&Path>,
    address: &str,
    cause: &Error,
) -> Error {
    let (location, remedy) = match (source, data_dir) {
        (_, Some(dir)) => (
            format!(
                "in {} ({} MiB free)",
                dir.display(),
                rundir_free_space(dir).map_or_else(|| "?".to_owned(), |b| (b >> 20).to_string())
            ),
            "Free space there, or set PGFRESH_RUN_DIR to a directory with more room: it holds \
             the data of the clusters pgfresh starts (/dev/shm is used only when it has 1 GiB \
             free)",
        ),
        (ServerSource::Docker, None) => (
            "in the container's data directory (a tmpfs, in memory)".to_owned(),
            "Give Docker more memory, or run fewer tests at once",
        ),
        _ => (
            format!("on the server at {address}"),
            "Free space on that server, or drop pgfresh's leftovers there with `pgfresh gc \
             --database-url URL`",
        ),
    };
    // The line that says it, when the cause is a tool's whole output (initdb's, say).
    let text = cause.to_string();
    let telling = [
        "No space left on device",
        "could not extend file",
        "checkpoint request",
    ];
    let line = text
        .lines()
        .find(|l| telling.iter().any(|t| l.contains(t)))
        .unwrap_or(&text);
    Error::DiskFull {
        location,
        cause: line.trim().to_owned(),
        remedy: remedy.to_owned(),
    }
}

/// `host:port/database`, for messages (never the password).
pub(crate) fn address(o: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or(o.get_username())
    )
}

/// The data directory of a server on this machine (a loopback or Unix-socket address) whose
/// role may read it (a superuser, or a member of `pg_read_all_settings`), when this process
/// sees it too: where a server elsewhere has the same path, it is not this one.
async fn visible_data_dir(conn: &mut PgConnection, options: &PgConnectOptions) -> Option<PathBuf> {
    let host = options.get_host();
    let here = host.starts_with('/') || matches!(host, "localhost" | "127.0.0.1" | "::1");
    if !here {
        return None;
    }
    let dir: Option<String> =
        sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
            .fetch_optional(conn)
            .await
            .ok()
            .flatten();
    dir.map(PathBuf::from).filter(|dir| dir.exists())
}

/// The options of pgfresh's own connections to a server.
fn admin_options(options: &PgConnectOptions) -> PgConnectOptions {
    options
        .clone()
        .application_name("pgfresh")
        .log_statements(tracing::log::LevelFilter::Debug)
}

/// One direct connection: it fails with the real cause (refused, unknown host, wrong password),
/// where a pool would only say that it timed out.
async fn connect_direct(options: &PgConnectOptions, hint: &str) -> Result<PgConnection> {
    let attempt = || async {
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
            Ok(connected) => connected.map(Ok),
            Err(elapsed) => Ok(Err(elapsed)),
        }
    };
    match waiting_for_a_slot(attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Err(e) => Err(Error::connect(address(options), hint, e)),
        Ok(Err(_)) => Err(Error::Timeout {
            what: format!("connecting to PostgreSQL at {}", address(options)),
            seconds: CONNECT_TIMEOUT.as_secs(),
            remedy: format!("Check that the server is running and that {hint}"),
        }),
    }
}

async fn connect(started: Started) -> Result<Server> {
    let options = admin_options(&started.options);
    let mut first = match started.connection {
        Some(conn) => conn,
        None => connect_direct(&options, &started.hint).await?,
    };
    let (version, may_create, started_at): (i32, bool, String) = sqlx::query_as(
        "SELECT current_setting('server_version_num')::int, \
                (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user), \
                pg_postmaster_start_time()::text",
    )
    .fetch_one(&mut first)
    .await
    .map_err(|e| Error::database("checking the server version and role", e))?;
    if !may_create {
        let _ = first.close().await;
        return Err(Error::NoCreateDb {
            role: options.get_username().to_owned(),
        });
    }
    // The first connection holds the owner lock for the life of the process and is the
    // first of the administrative pool: most processes (one per test under nextest) need no
    // other.
    let owner = crate::locks::take_owner_lock(&mut first).await?;
    let version = u32::try_from(version).unwrap_or_default();
    let seen_data_dir = match (&started.data_dir, started.source) {
        (Some(dir), _) => Some(dir.clone()),
        (None, ServerSource::Url) => visible_data_dir(&mut first, &options).await,
        // A container's data directory is not this machine's.
        (None, _) => None,
    };
    let copy_method = CopyMethod::choose(version, seen_data_dir.as_deref());
    admin_pool::prepare(&mut first, version, copy_method).await?;
    let admin = AdminPool::new(options.clone(), version, copy_method, first);
    tracing::info!(source = %started.source, address = %address(&options), version, owner, %copy_method, "server ready");
    Ok(Server {
        source: started.source,
        options,
        url: started.url,
        password_from_user: started.password_from_user,
        password: started.password,
        data_dir: started.data_dir,
        admin,
        version,
        copy_method,
        seen_data_dir,
        copy_method_told: std::sync::atomic::AtomicBool::new(false),
        started_at,
        owner,
        _keepalive: started.keepalive,
    })
}
