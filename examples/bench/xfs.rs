//! The clone comparison (`--clone-xfs`, root only). PostgreSQL 18's `file_copy_method = clone`
//! makes `CREATE DATABASE … STRATEGY FILE_COPY` copy each file with `copy_file_range`, which on
//! a file system with reflinks (XFS, Btrfs) shares the template's blocks instead of copying
//! them: a clone then costs the same whatever the template's size. This module measures that
//! on an XFS image it makes and removes again:
//!
//! 1. a sparse image (`truncate -s 6G`) under `target/pgfresh-bench/xfs/`, `mkfs.xfs -q`
//!    (reflink on by default), `mount -o loop`, mode 0755 so the `postgres` user gets in;
//!    PostgreSQL 18 from `scripts/pg-bin.sh 18`, a cluster started as [`Server::start_in`]
//!    does, its directory on the mount;
//! 2. raw figures: templates `big` (about 1 GB, [`big_table_sql`]) and `small` (one empty
//!    table), each cloned [`RAW_CREATES`] times with `file_copy_method` `copy` and `clone`
//!    (after one untimed clone), timed, with the XFS space one clone takes;
//! 3. pgfresh's hand-out from the suites `xfs_big_…` and `xfs_small_…` (one migration each, 10
//!    tests that each get a database and run `SELECT 1`), from the url source (that cluster)
//!    and the local source (a cluster pgfresh starts from those binaries in `PGFRESH_RUN_DIR`
//!    on the mount), with `PGFRESH_READY=0` and `PGFRESH_BROKER=off`: every hand-out is one
//!    clone made when the test asks;
//! 4. the clusters stopped, the image unmounted and deleted, also when something failed.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::Connection as _;

use crate::args::Runner;
use crate::generate::{BIG_ROWS, Crate, Suite, big_table_sql};
use crate::runner::{Env, Outcome};
use crate::server::{self, Server};
use crate::{Bench, progress};

/// The image's size (sparse: it takes on disk what the file system holds).
pub const IMAGE_SIZE: &str = "6G";
/// Timed `CREATE DATABASE`s per template and method.
pub const RAW_CREATES: usize = 5;
/// Timed runs per suite and source, after one untimed run that builds the template.
pub const HANDOUT_RUNS: usize = 3;
/// Tests in each of the comparison's suites.
pub const HANDOUT_TESTS: usize = 10;

/// The comparison's two suites: the 1 GB template's, then the one-table template's.
pub fn crates() -> [Crate; 2] {
    [Suite::XfsBig, Suite::XfsSmall].map(|suite| Crate {
        suite,
        migrations: 1,
        tests: HANDOUT_TESTS,
        work: 0,
        fixtures: 0,
        features: None,
    })
}

/// One template cloned with one `file_copy_method`.
#[derive(Debug, Clone)]
pub struct Raw {
    pub template: &'static str,
    pub method: &'static str,
    /// The timed `CREATE DATABASE`s.
    pub creates: Vec<Duration>,
    /// The XFS space each of them took (statvfs of the mount, synced, before and after).
    pub used: Vec<i64>,
}

/// One suite run from one source.
#[derive(Debug, Clone)]
pub struct Handout {
    /// `url` or `local`.
    pub source: &'static str,
    pub krate: Crate,
    /// 0 for the untimed run that builds the template.
    pub round: usize,
    pub outcome: Outcome,
}

/// Everything the comparison found, as far as it got.
#[derive(Debug, Clone, Default)]
pub struct CloneReport {
    /// What the comparison ran on: the image, the mount, the binaries, the cluster.
    pub setup: Vec<String>,
    /// `pg_database_size` of the raw templates, `big` then `small`.
    pub sizes: Vec<(&'static str, i64)>,
    pub raw: Vec<Raw>,
    pub handouts: Vec<Handout>,
    /// How the local source's cluster ended.
    pub local_stop: Option<String>,
    /// The shell commands that reproduce it.
    pub commands: Vec<String>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
    /// What cleaning up could not do (a mount or a server left behind).
    pub cleanup: Vec<String>,
}

impl Bench<'_> {
    /// Runs the comparison; a failure is recorded in the report, which keeps what came before.
    pub fn clone_comparison(&self) -> CloneReport {
        let mut report = CloneReport::default();
        let root = self.env.layout.root.join("xfs");
        let outcome = Mount::create(&root, &mut report)
            .and_then(|mount| self.on_mount(&mount, &mut report).map(|()| mount));
        match outcome {
            Ok(mount) => report.cleanup = mount.remove(),
            Err(e) => {
                report.error = Some(e);
                // The mount, when it was made, was dropped (and so removed) on the way out;
                // whatever is left is a leftover to report.
                report.cleanup = leftovers(&root);
            }
        }
        report
    }

    fn on_mount(&self, mount: &Mount, report: &mut CloneReport) -> Result<(), String> {
        let bin = pg18_bin()?;
        report.setup.push(format!(
            "PostgreSQL binaries: {} (scripts/pg-bin.sh 18)",
            bin.display()
        ));
        progress("clone comparison: starting PostgreSQL 18 on the XFS mount");
        let cluster = Server::start_in(&bin, &mount.point)?;
        let version = self.block_on(server::version(&cluster.url))?;
        report.setup.push(format!(
            "url source's server: PostgreSQL {version}, {}",
            cluster.description
        ));
        let major: u32 = version
            .split(['.', ' '])
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 18 {
            return Err(format!(
                "{} is PostgreSQL {version}: file_copy_method needs 18",
                bin.display()
            ));
        }
        self.raw_figures(&cluster.url, mount, report)?;
        let url_vars = vec![
            ("DB_URL", Some(cluster.url.clone())),
            ("DATABASE_URL", Some(cluster.url.clone())),
            ("PGFRESH_SERVER", Some("url".to_owned())),
            ("PGFRESH_READY", Some("0".to_owned())),
            ("PGFRESH_BROKER", Some("off".to_owned())),
        ];
        let env = Env {
            server_pid: cluster.pid(),
            ..self.env.clone()
        };
        self.handouts(&env, "url", &url_vars, report)?;
        cluster.stop();
        let run_dir = mount.point.join("run");
        fs::create_dir_all(&run_dir)
            .and_then(|()| fs::set_permissions(&run_dir, fs::Permissions::from_mode(0o755)))
            .map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let local_vars = vec![
            ("DB_URL", None),
            ("DATABASE_URL", None),
            ("PGFRESH_SERVER", Some("local".to_owned())),
            ("PGFRESH_PG_BIN", Some(bin.display().to_string())),
            ("PGFRESH_RUN_DIR", Some(run_dir.display().to_string())),
            ("PGFRESH_READY", Some("0".to_owned())),
            ("PGFRESH_BROKER", Some("off".to_owned())),
        ];
        let env = Env {
            server_pid: None,
            ..self.env.clone()
        };
        self.handouts(&env, "local", &local_vars, report)?;
        // pgfresh stops its cluster once it has lingered (PGFRESH_LINGER) after the last run.
        progress("clone comparison: waiting for the local source's cluster to stop");
        let stopped = wait_for_postmasters(&mount.point, LOCAL_STOP_WAIT);
        report.local_stop = Some(match stopped {
            Some(waited) => format!(
                "local source's cluster (data under {}): stopped by pgfresh {:.0?} after the last run",
                run_dir.display(),
                waited
            ),
            None => format!(
                "local source's cluster (data under {}): still running {LOCAL_STOP_WAIT:.0?} after \
                 the last run; stopped by the benchmark",
                run_dir.display()
            ),
        });
        let commands = [
            format!(
                "truncate -s {IMAGE_SIZE} {0}; mkfs.xfs -q {0}; mount -o loop {0} {1}; chmod 0755 {1}",
                mount.image.display(),
                mount.point.display()
            ),
            "BIN=$(scripts/pg-bin.sh 18 | tail -n1)   # a cluster from $BIN with its data on the mount, as the benchmark's own".to_owned(),
            format!(
                "psql: {}; ALTER DATABASE big IS_TEMPLATE true; the same with small: CREATE TABLE t (id bigint)",
                big_table_sql("t")
            ),
            "psql: SET file_copy_method = copy|clone; CREATE DATABASE c TEMPLATE big|small STRATEGY FILE_COPY; DROP DATABASE c".to_owned(),
            format!(
                "cd {} && export CARGO_TARGET_DIR={}",
                self.env.layout.workspace().display(),
                self.env.layout.target().display()
            ),
            format!(
                "DB_URL=$XFS_URL DATABASE_URL=$XFS_URL PGFRESH_SERVER=url PGFRESH_READY=0 PGFRESH_BROKER=off {}",
                crates()
                    .map(|k| Env::command_line(&k, Runner::Test))
                    .join("; ")
            ),
            format!(
                "env -u DB_URL -u DATABASE_URL PGFRESH_SERVER=local PGFRESH_PG_BIN=$BIN PGFRESH_RUN_DIR={} \
                 PGFRESH_READY=0 PGFRESH_BROKER=off {}",
                run_dir.display(),
                crates()
                    .map(|k| Env::command_line(&k, Runner::Test))
                    .join("; ")
            ),
            format!(
                "umount {}; rm {}",
                mount.point.display(),
                mount.image.display()
            ),
        ];
        report.commands.extend(commands);
        Ok(())
    }

    /// The raw templates, then each cloned [`RAW_CREATES`] times per method, timed; the
    /// templates are dropped again (the image has room for few 1 GB copies).
    fn raw_figures(
        &self,
        url: &str,
        mount: &Mount,
        report: &mut CloneReport,
    ) -> Result<(), String> {
        for (template, table) in [
            ("big", big_table_sql("t")),
            ("small", "CREATE TABLE t (id bigint)".to_owned()),
        ] {
            progress(&format!("clone comparison: creating template {template}"));
            let started = Instant::now();
            let size = self.block_on_str(make_template(url, template, &table))?;
            report.setup.push(format!(
                "template {template}: {} ({}), made in {:.1?}",
                mb(size),
                if template == "big" {
                    format!("{BIG_ROWS} rows of an integer and 200 characters")
                } else {
                    "one empty table".to_owned()
                },
                started.elapsed()
            ));
            report.sizes.push((template, size));
            for method in ["copy", "clone"] {
                progress(&format!(
                    "clone comparison: {RAW_CREATES} x CREATE DATABASE … TEMPLATE {template}, file_copy_method = {method}"
                ));
                let raw = self.block_on_str(clone_template(url, template, method, mount))?;
                report.raw.push(raw);
            }
            self.block_on_str(drop_template(url, template))?;
        }
        Ok(())
    }

    /// Both suites from one source: an untimed run each (it builds the template), then
    /// [`HANDOUT_RUNS`] rounds of both, under `cargo test`.
    fn handouts(
        &self,
        env: &Env,
        source: &'static str,
        vars: &[(&str, Option<String>)],
        report: &mut CloneReport,
    ) -> Result<(), String> {
        for round in 0..=HANDOUT_RUNS {
            for krate in crates() {
                let tag = match round {
                    0 => format!("{source}-warmup"),
                    r => format!("{source}-r{r}"),
                };
                progress(&format!(
                    "clone comparison, {source} source, {tag}: cargo test {}",
                    krate.package()
                ));
                let outcome = env.run_with(&krate, Runner::Test, &tag, vars)?;
                report.handouts.push(Handout {
                    source,
                    krate,
                    round,
                    outcome,
                });
            }
        }
        Ok(())
    }
}

/// How long the local source's cluster may take to stop after the last run (its linger, 20 s
/// by default, and the stop) before the benchmark stops it.
const LOCAL_STOP_WAIT: Duration = Duration::from_secs(60);

/// `1,024.0 MB`-style megabytes (10^6 bytes).
pub fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The bin directory `scripts/pg-bin.sh 18` prints last (it caches the binaries).
fn pg18_bin() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-bin.sh");
    let out = server::run(Command::new("bash").arg(&script).arg("18"))?;
    let text = String::from_utf8_lossy(&out);
    let bin = text
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| format!("{} 18 printed nothing", script.display()))?;
    if !bin.join("initdb").is_file() {
        return Err(format!(
            "{} 18 printed {}, which holds no initdb",
            script.display(),
            bin.display()
        ));
    }
    Ok(bin)
}

/// Creates database `name` (dropping an older one), runs `table` in it, makes it a template;
/// returns its `pg_database_size`.
async fn make_template(url: &str, name: &str, table: &str) -> Result<i64, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} template {name}: {e}");
    drop_template(url, name).await?;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| fail("connecting to create", &e))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .map_err(|e| fail("creating", &e))?;
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e| fail("connecting to", &e))?;
    let mut db = sqlx::PgConnection::connect_with(&options.database(name))
        .await
        .map_err(|e| fail("connecting to", &e))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(table.to_owned()))
        .execute(&mut db)
        .await
        .map_err(|e| fail("filling", &e))?;
    db.close().await.map_err(|e| fail("filling", &e))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} WITH IS_TEMPLATE true"
    )))
    .execute(&mut conn)
    .await
    .map_err(|e| fail("marking", &e))?;
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size($1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| fail("measuring", &e))?;
    conn.close().await.map_err(|e| fail("creating", &e))?;
    Ok(size)
}

/// Drops template `name` if it exists.
async fn drop_template(url: &str, name: &str) -> Result<(), String> {
    let fail = |e: sqlx::Error| format!("dropping template {name}: {e}");
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(fail)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(fail)?;
    if exists {
        for sql in [
            format!("ALTER DATABASE {name} WITH IS_TEMPLATE false"),
            format!("DROP DATABASE {name} WITH (FORCE)"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map_err(fail)?;
        }
    }
    conn.close().await.map_err(fail)
}

/// [`RAW_CREATES`] clones of `template` with `file_copy_method = method`, each timed and
/// dropped again, after one untimed clone (the first after the template was written also
/// flushes it); with the XFS space each took (used space before the `CREATE`, once the space
/// the last clone held is free again, and after it).
async fn clone_template(
    url: &str,
    template: &'static str,
    method: &'static str,
    mount: &Mount,
) -> Result<Raw, String> {
    let fail = |e: sqlx::Error| format!("cloning {template} with file_copy_method = {method}: {e}");
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(fail)?;
    let run = |sql: String| sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
    run(format!("SET file_copy_method = {method}"))
        .execute(&mut conn)
        .await
        .map_err(fail)?;
    let create = format!("CREATE DATABASE bench_xfs_clone TEMPLATE {template} STRATEGY FILE_COPY");
    let drop_clone = "DROP DATABASE IF EXISTS bench_xfs_clone".to_owned();
    run(drop_clone.clone())
        .execute(&mut conn)
        .await
        .map_err(fail)?;
    let mut raw = Raw {
        template,
        method,
        creates: Vec::new(),
        used: Vec::new(),
    };
    for i in 0..=RAW_CREATES {
        // A dropped clone's blocks are freed a moment after the DROP returns.
        let before = mount.settled()?;
        let start = Instant::now();
        run(create.clone()).execute(&mut conn).await.map_err(fail)?;
        let took = start.elapsed();
        let after = mount.used()?;
        run(drop_clone.clone())
            .execute(&mut conn)
            .await
            .map_err(fail)?;
        if i > 0 {
            raw.creates.push(took);
            raw.used.push(after - before);
        }
    }
    conn.close().await.map_err(fail)?;
    Ok(raw)
}

/// The XFS image and its mount; dropping it unmounts and deletes them.
struct Mount {
    root: PathBuf,
    image: PathBuf,
    point: PathBuf,
    /// Set by [`Mount::remove`]; otherwise dropping the mount removes it.
    removed: bool,
}

impl Mount {
    /// Makes the image, the file system, and mounts it (after removing what an interrupted
    /// run left there).
    fn create(root: &Path, report: &mut CloneReport) -> Result<Self, String> {
        let left = leftovers(root);
        if !left.is_empty() {
            return Err(format!(
                "an earlier run's XFS mount could not be removed: {}",
                left.join("; ")
            ));
        }
        fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let mount = Self {
            root: root.to_owned(),
            image: root.join("image"),
            point: root.join("mnt"),
            removed: false,
        };
        progress(&format!(
            "clone comparison: a {IMAGE_SIZE} XFS image at {}",
            mount.image.display()
        ));
        server::run(
            Command::new("truncate")
                .args(["-s", IMAGE_SIZE])
                .arg(&mount.image),
        )?;
        server::run(Command::new("mkfs.xfs").arg("-q").arg(&mount.image))?;
        fs::create_dir_all(&mount.point).map_err(|e| format!("{}: {e}", mount.point.display()))?;
        server::run(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&mount.image)
                .arg(&mount.point),
        )?;
        fs::set_permissions(&mount.point, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", mount.point.display()))?;
        let info = server::run(Command::new("xfs_info").arg(&mount.point))
            .map(|out| String::from_utf8_lossy(&out).into_owned())
            .unwrap_or_default();
        let reflink = info
            .split_whitespace()
            .find(|w| w.starts_with("reflink="))
            .unwrap_or("reflink=?");
        report.setup.push(format!(
            "XFS ({reflink}) on a sparse {IMAGE_SIZE} image {}, mounted at {} (mount -o loop, mode 0755)",
            mount.image.display(),
            mount.point.display()
        ));
        Ok(mount)
    }

    /// Bytes in use on the file system, after flushing it (so that delayed allocations count).
    fn used(&self) -> Result<i64, String> {
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", self.point.display());
        let dir = fs::File::open(&self.point).map_err(|e| fail(&e))?;
        rustix::fs::syncfs(&dir).map_err(|e| fail(&e))?;
        let stat = rustix::fs::statvfs(&self.point).map_err(|e| fail(&e))?;
        let used = stat.f_blocks.saturating_sub(stat.f_bfree) * stat.f_frsize;
        i64::try_from(used).map_err(|e| fail(&e))
    }

    /// [`Mount::used`] once it has stayed the same for a second (at most 15 s): XFS frees a
    /// dropped database's blocks in the background, up to about a second after the drop.
    fn settled(&self) -> Result<i64, String> {
        let start = Instant::now();
        let mut last = self.used()?;
        let mut same = 0;
        while same < 4 && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(250));
            let now = self.used()?;
            same = if now == last { same + 1 } else { 0 };
            last = now;
        }
        Ok(last)
    }

    /// Unmounts and deletes everything; returns what could not be.
    fn remove(mut self) -> Vec<String> {
        self.removed = true;
        leftovers(&self.root)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.removed {
            let _ = leftovers(&self.root);
        }
    }
}

/// Cleans `root` (the comparison's directory) up: stops the PostgreSQL servers whose data is
/// on its mount, unmounts it, deletes the image. Returns what it could not do.
fn leftovers(root: &Path) -> Vec<String> {
    let point = root.join("mnt");
    let mut left = Vec::new();
    if is_mounted(&point) {
        for postmaster in postmasters(&point) {
            postmaster.stop();
        }
        if wait_for_postmasters(&point, Duration::from_secs(30)).is_none() {
            left.push(format!("PostgreSQL still running on {}", point.display()));
        }
        let mut unmounted = false;
        for _ in 0..20 {
            if server::run(Command::new("umount").arg(&point)).is_ok() || !is_mounted(&point) {
                unmounted = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if !unmounted {
            let lazy = server::run(Command::new("umount").arg("-l").arg(&point));
            left.push(format!(
                "{} was busy; lazily unmounted ({})",
                point.display(),
                if lazy.is_ok() { "done" } else { "failed" }
            ));
        }
    }
    if !is_mounted(&point) {
        let _ = fs::remove_file(root.join("image"));
        let _ = fs::remove_dir_all(&point);
        let _ = fs::remove_dir(root);
    }
    if is_mounted(&point) {
        left.push(format!("{} is still mounted", point.display()));
    }
    left
}

/// Whether `point` is a mount point (in `/proc/self/mounts`).
fn is_mounted(point: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .any(|p| Path::new(p) == point)
}

/// A running postmaster: `…/postgres -D <data>`.
struct Postmaster {
    bin: PathBuf,
    data: PathBuf,
}

impl Postmaster {
    /// `pg_ctl stop -m fast`, as the `postgres` user when the benchmark runs as root.
    fn stop(&self) {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "30", "stop"]);
        if server::is_root()
            && let Ok((uid, gid)) = server::postgres_user()
        {
            cmd.uid(uid).gid(gid);
        }
        let _ = cmd.output();
    }
}

/// The postmasters whose data directory is under `dir`, from `/proc/*/cmdline`.
fn postmasters(dir: &Path) -> Vec<Postmaster> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let program = Path::new(args.first()?);
            (program.file_name()? == "postgres").then_some(())?;
            let data = args.iter().position(|a| a == "-D")?;
            let data = PathBuf::from(args.get(data + 1)?);
            let bin = program.parent()?.to_owned();
            data.starts_with(dir).then_some(Postmaster { bin, data })
        })
        .collect()
}

/// Waits up to `limit` until no postmaster's data is under `dir`; how long it took, or
/// `None` when some still run (those are then stopped, see [`Postmaster::stop`]).
fn wait_for_postmasters(dir: &Path, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if postmasters(dir).is_empty() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for postmaster in postmasters(dir) {
        postmaster.stop();
    }
    None
}
