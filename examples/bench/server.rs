//! The one PostgreSQL server both suites use: `DB_URL` when set, otherwise a tuned throwaway
//! cluster started from the newest `/usr/lib/postgresql/<major>/bin` (or `PGFRESH_PG_BIN`).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::Connection as _;

/// Settings that trade durability for speed, as pgfresh's own sources use them.
const TUNING: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
];

/// A server URL, and the cluster behind it when this benchmark started it.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    pub description: String,
    local: Option<Local>,
}

#[derive(Debug)]
struct Local {
    bin: PathBuf,
    dir: PathBuf,
    owner: Option<(u32, u32)>,
}

impl Server {
    /// `DB_URL` if set, else a local cluster.
    pub fn start() -> Result<Self, String> {
        if let Ok(url) = std::env::var("DB_URL") {
            return Ok(Self {
                description: format!("DB_URL={}", redact(&url)),
                url,
                local: None,
            });
        }
        let bin = pg_bin()?;
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        Self::start_in(&bin, &base)
    }

    /// A throwaway cluster from the binaries in `bin`, its directory (data, socket, log) in
    /// `parent`, set up as [`Server::start`]'s (three tries: a start can lose the race for
    /// its port).
    pub fn start_in(bin: &Path, parent: &Path) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match start_local(bin, parent) {
                Ok(server) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The postmaster's pid, when this benchmark runs the server.
    pub fn pid(&self) -> Option<u32> {
        let local = self.local.as_ref()?;
        let pidfile = fs::read_to_string(local.dir.join("data/postmaster.pid")).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }

    /// Stops and deletes the cluster this benchmark started; a `DB_URL` server is left alone.
    pub fn stop(mut self) {
        if let Some(local) = self.local.take() {
            local.stop();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(local) = self.local.take() {
            local.stop();
        }
    }
}

impl Local {
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn stop(self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `PGFRESH_PG_BIN`, else the newest `/usr/lib/postgresql/<major>/bin`.
fn pg_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PGFRESH_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("no DB_URL and no /usr/lib/postgresql ({e}): set DB_URL or PGFRESH_PG_BIN")
        })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .ok_or("no /usr/lib/postgresql/<major>: set DB_URL or PGFRESH_PG_BIN")?;
    Ok(PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin")))
}

fn start_local(bin: &Path, base: &Path) -> Result<Server, String> {
    let port = free_port()?;
    let dir = base.join(format!("pgfresh-bench-{}-{port}", std::process::id()));
    let owner = if is_root() {
        Some(postgres_user()?)
    } else {
        None
    };
    let local = Local {
        bin: bin.to_owned(),
        dir,
        owner,
    };
    let password = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    prepare_dir(&local, &password).map_err(|e| format!("{}: {e}", local.dir.display()))?;
    run(local
        .command("initdb")
        .arg("-D")
        .arg(local.dir.join("data"))
        .args([
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .arg(format!("--pwfile={}", local.dir.join("pw").display())))?;
    let mut options = format!(
        "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
        local.dir.display()
    );
    for setting in TUNING {
        options.push_str(&format!(" -c {setting}"));
    }
    run(local
        .command("pg_ctl")
        .arg("-D")
        .arg(local.dir.join("data"))
        .arg("-l")
        .arg(local.dir.join("log"))
        .args(["-w", "-t", "30", "-o", &options, "start"]))?;
    Ok(Server {
        url: format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres"),
        description: format!(
            "local cluster from {}, data in {} ({}), initdb + start {:.1?}; {}",
            local.bin.display(),
            local.dir.display(),
            file_system(&local.dir),
            started.elapsed(),
            TUNING.join(", ")
        ),
        local: Some(local),
    })
}

fn prepare_dir(local: &Local, password: &str) -> std::io::Result<()> {
    fs::create_dir_all(&local.dir)?;
    fs::set_permissions(&local.dir, fs::Permissions::from_mode(0o700))?;
    fs::write(local.dir.join("pw"), password)?;
    if let Some((uid, gid)) = local.owner {
        std::os::unix::fs::chown(&local.dir, Some(uid), Some(gid))?;
        std::os::unix::fs::chown(local.dir.join("pw"), Some(uid), Some(gid))?;
    }
    Ok(())
}

/// The type of the file system `path` is on, from `/proc/self/mounts` (the longest mount
/// point that is a prefix of it), e.g. `tmpfs`, `xfs`; `disk` when unknown.
fn file_system(path: &Path) -> String {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "disk".to_owned(), |(_, kind)| kind)
}

/// Runs a command, returning its stdout, or its stderr as the error.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{:?} failed ({}): {}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A loopback port nobody listens on right now (a start that loses the race is retried).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// The `postgres` user's uid and gid: PostgreSQL refuses to run as root.
pub fn postgres_user() -> Result<(u32, u32), String> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres"))
                .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
        })
        .ok_or_else(|| {
            "running as root and there is no `postgres` user to run PostgreSQL as; set DB_URL"
                .to_owned()
        })
}

/// The URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// What the server looks like between runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet {
    /// How long it took until no other session was active.
    pub waited: Duration,
    /// Databases whose names start with `pgfresh_`.
    pub pgfresh_dbs: i64,
    /// Databases whose names start with `_sqlx_test`.
    pub sqlx_dbs: i64,
}

/// Waits (up to 30 s) until no other session is running a statement, so that work one suite
/// left in the background (drops, refills) is not billed to the next run; then counts the
/// databases each tool left behind.
pub async fn settle(url: &str) -> Result<Quiet, sqlx::Error> {
    let start = Instant::now();
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut quiet_checks = 0;
    while quiet_checks < 3 && start.elapsed() < Duration::from_secs(30) {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND state <> 'idle' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await?;
        quiet_checks = if busy == 0 { quiet_checks + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = start.elapsed();
    let (pgfresh_dbs, sqlx_dbs): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE datname LIKE 'pgfresh\\_%'), \
         count(*) FILTER (WHERE datname LIKE '\\_sqlx\\_test%') FROM pg_database",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(Quiet {
        waited,
        pgfresh_dbs,
        sqlx_dbs,
    })
}

/// `SHOW server_version`.
pub async fn version(url: &str) -> Result<String, sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let v: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(v)
}

/// Creates `name` (dropping an older one) and runs the migrations in `dir` on it.
pub async fn create_migrated(url: &str, name: &str, dir: &Path) -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} {name}: {e}");
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| fail("connecting to create", &e))?;
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(|e| fail("creating", &e))?;
    }
    conn.close().await.map_err(|e| fail("creating", &e))?;
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e| fail("connecting to", &e))?;
    let mut db = sqlx::PgConnection::connect_with(&options.database(name))
        .await
        .map_err(|e| fail("connecting to", &e))?;
    let migrator = sqlx::migrate::Migrator::new(dir)
        .await
        .map_err(|e| fail("reading the migrations of", &e))?;
    migrator
        .run(&mut db)
        .await
        .map_err(|e| fail("migrating", &e))?;
    db.close().await.map_err(|e| fail("migrating", &e))
}

/// `DROP DATABASE IF EXISTS name`.
pub async fn drop_database(url: &str, name: &str) -> sqlx::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await
}

/// How long one `CREATE DATABASE … STRATEGY FILE_COPY` and one `DROP DATABASE` took.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub clone: Duration,
    pub drop: Duration,
}

/// Clones `template` with `STRATEGY FILE_COPY` (what pgfresh does) and drops the clone,
/// `pairs` times one after another on one connection, after one untimed pair (the first
/// clone after a template was written also flushes it).
pub async fn clone_and_drop(url: &str, template: &str, pairs: usize) -> sqlx::Result<Vec<Pair>> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut timed = Vec::with_capacity(pairs);
    for i in 0..=pairs {
        let mut took = [Duration::ZERO; 2];
        for (sql, took) in [
            format!("CREATE DATABASE bench_probe_clone TEMPLATE {template} STRATEGY FILE_COPY"),
            "DROP DATABASE bench_probe_clone".to_owned(),
        ]
        .into_iter()
        .zip(&mut took)
        {
            let start = Instant::now();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            *took = start.elapsed();
        }
        if i > 0 {
            timed.push(Pair {
                clone: took[0],
                drop: took[1],
            });
        }
    }
    conn.close().await?;
    Ok(timed)
}

/// `count` clones of `template` (`STRATEGY FILE_COPY`), by name; a clone of the same name an
/// interrupted run left behind is dropped first.
pub async fn clone_many(url: &str, template: &str, count: usize) -> sqlx::Result<Vec<String>> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut names = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("bench_probe_touch_{i:02}");
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
        }
        names.push(name);
    }
    conn.close().await?;
    Ok(names)
}

/// Connects to each database of `names` in turn and runs a test's statements there: `insert`
/// (bound to a name and an amount, returning an id), then `select` (bound to that id).
pub async fn touch(url: &str, names: &[String], insert: &str, select: &str) -> sqlx::Result<()> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    for name in names {
        let mut conn = sqlx::PgConnection::connect_with(&options.clone().database(name)).await?;
        let id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(insert))
            .bind("probe")
            .bind(1)
            .fetch_one(&mut conn)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(id)
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
    }
    Ok(())
}

/// pgfresh's databases on the server at one moment (the edit loop reads it at the end of each
/// pause): its ready clones (`pgfresh_r_…`) and every `pgfresh_…` database that is not a
/// template (ready clones, test databases, prefetched ones), count and bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadySet {
    pub ready: i64,
    pub ready_bytes: i64,
    pub all: i64,
    pub all_bytes: i64,
}

/// Reads the [`ReadySet`]. A database dropped while it is measured makes `pg_database_size`
/// fail; the query is then tried again, up to three times.
pub async fn ready_set(url: &str) -> sqlx::Result<ReadySet> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut tries = 0;
    let counts = loop {
        tries += 1;
        let read: sqlx::Result<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE datname LIKE 'pgfresh\\_r\\_%'), \
             coalesce(sum(pg_database_size(oid)) FILTER (WHERE datname LIKE 'pgfresh\\_r\\_%'), 0)::int8, \
             count(*) FILTER (WHERE NOT datistemplate), \
             coalesce(sum(pg_database_size(oid)) FILTER (WHERE NOT datistemplate), 0)::int8 \
             FROM pg_database WHERE datname LIKE 'pgfresh\\_%'",
        )
        .fetch_one(&mut conn)
        .await;
        match read {
            Err(e) if tries < 3 && e.as_database_error().is_some() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other?,
        }
    };
    conn.close().await?;
    let (ready, ready_bytes, all, all_bytes) = counts;
    Ok(ReadySet {
        ready,
        ready_bytes,
        all,
        all_bytes,
    })
}

/// What making pgfresh cold took (see [`make_cold`]).
#[derive(Debug, Default, Clone)]
pub struct Cold {
    /// How long until no session named `pgfresh` (the library's own connections: its broker's,
    /// a process's administrative one) was connected, or the wait gave up.
    pub waited: Duration,
    /// Sessions named `pgfresh` still connected when the wait gave up (0: none).
    pub sessions_left: i64,
    /// The databases dropped.
    pub dropped: Vec<String>,
    /// Drops that failed, with why.
    pub failed: Vec<String>,
}

/// How long [`make_cold`] waits for pgfresh's sessions to end.
pub const COLD_WAIT: Duration = Duration::from_secs(30);

/// Makes pgfresh start from nothing on this server, as on a developer's first run: waits (up
/// to [`COLD_WAIT`]) until no session with `application_name` `pgfresh` is connected (no
/// broker is left from the runs before), then drops every database whose name starts with
/// `pgfresh_` (templates `pgfresh_t_…`, which are first made ordinary databases again, ready
/// clones `pgfresh_r_…`, test databases) with `DROP DATABASE … WITH (FORCE)`.
pub async fn make_cold(url: &str) -> sqlx::Result<Cold> {
    let start = Instant::now();
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let sessions_left = loop {
        let sessions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfresh' \
             AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await?;
        if sessions == 0 || start.elapsed() >= COLD_WAIT {
            break sessions;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let waited = start.elapsed();
    let databases: Vec<(String, bool)> = sqlx::query_as(
        "SELECT datname::text, datistemplate FROM pg_database \
         WHERE datname LIKE 'pgfresh\\_%' ORDER BY datname",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut cold = Cold {
        waited,
        sessions_left,
        ..Cold::default()
    };
    for (name, template) in databases {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let mut statements = Vec::new();
        if template {
            statements.push(format!("ALTER DATABASE {quoted} WITH IS_TEMPLATE false"));
        }
        statements.push(format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"));
        let mut outcome = Ok(());
        for sql in statements {
            outcome = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map(drop);
            if outcome.is_err() {
                break;
            }
        }
        match outcome {
            Ok(()) => cold.dropped.push(name),
            Err(e) if e.as_database_error().is_some() => cold.failed.push(format!("{name}: {e}")),
            Err(e) => return Err(e),
        }
    }
    conn.close().await?;
    Ok(cold)
}
