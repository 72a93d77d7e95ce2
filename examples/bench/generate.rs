//! Writes the scratch workspace: a snapshot of pgfresh, the synthetic migration sets, and one
//! test crate per (tool, migration count, test count).
//!
//! Files are written only when their content changes, so a second benchmark run reuses the
//! compiled suites instead of rebuilding them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The tool a suite gets its databases from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// `static HARNESS: Harness = Harness::new(&MIGRATOR)`, `HARNESS.test_db().await`.
    Pgfresh,
    /// `#[sqlx::test(migrations = "…")]`.
    Sqlx,
    /// `#[pgfresh::test(migrations = "…")] async fn t(pool: PgPool)`: pgfresh's attribute, in
    /// a crate whose only dependency is `pgfresh` (the body uses `pgfresh::sqlx`).
    Attribute,
    /// The floor: no database per test. Every test opens a pool (pgfresh's default size) to
    /// one database the benchmark migrated beforehand ([`shared_database`]), as any harness's
    /// test does with its own database, and closes it at the end.
    Shared,
    /// A database per test with nothing around the clone: a thread of the test process clones
    /// the benchmark's template ([`naive_template`]) when a test asks (`CREATE DATABASE …
    /// STRATEGY FILE_COPY` on a pool of two connections), and drops the clone once the test has
    /// closed its pool (`DROP DATABASE … WITH (FORCE)`); the test waits for both. No template
    /// build, ready clones, markers, locks or sweeps: what a clone per test costs in a run,
    /// measured.
    Naive,
    /// The clone comparison (`--clone-xfs`): pgfresh's fixture as in [`Suite::Pgfresh`], timed
    /// the same way, over one migration that creates a table of about 1 GB ([`big_table_sql`]);
    /// each test only runs `SELECT 1` on its database.
    XfsBig,
    /// The same over one migration that creates one empty table.
    XfsSmall,
}

impl Suite {
    /// Lower-case name, as printed and as the package-name prefix.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pgfresh => "pgfresh",
            Self::Sqlx => "sqlx",
            Self::Attribute => "attribute",
            Self::Shared => "shared",
            Self::Naive => "naive",
            Self::XfsBig => "xfs_big",
            Self::XfsSmall => "xfs_small",
        }
    }

    /// Whether its tests append their steps' timings to `PGFRESH_BENCH_TIMINGS`.
    pub fn records_timings(self) -> bool {
        matches!(self, Self::Pgfresh | Self::XfsBig | Self::XfsSmall)
    }

    /// The clone comparison's suites, whose migrations are their own (not a synthetic set).
    pub fn is_xfs(self) -> bool {
        matches!(self, Self::XfsBig | Self::XfsSmall)
    }
}

/// One generated test crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crate {
    pub suite: Suite,
    pub migrations: usize,
    pub tests: usize,
    /// Milliseconds each test spends in its body after the round trip (`--work`), else 0.
    pub work: usize,
    /// Rows in each of the [`FIXTURES`] files the tests' databases start with
    /// (`--fixture-rows`; `#[sqlx::test]` and `#[pgfresh::test]` only), else 0: no fixtures.
    pub fixtures: usize,
    /// pgfresh's features, comma-separated, for a suite built without its default features
    /// (`--edit-features`), else `None`: the defaults.
    pub features: Option<&'static str>,
}

impl Crate {
    /// The package name, e.g. `pgfresh_m0050_t0100`, `pgfresh_m0050_t0100_w020` with work,
    /// `sqlx_m0050_t0100_f1000` with fixtures of 1,000 rows, `pgfresh_m0050_t0100_local` with
    /// pgfresh's `local` feature only.
    pub fn package(&self) -> String {
        let work = match self.work {
            0 => String::new(),
            ms => format!("_w{ms:03}"),
        };
        let fixtures = match self.fixtures {
            0 => String::new(),
            rows => format!("_f{rows:04}"),
        };
        let features = match self.features {
            None => String::new(),
            Some("") => "_nofeatures".to_owned(),
            Some(list) => format!("_{}", list.replace(',', "_")),
        };
        format!(
            "{}_m{:04}_t{:04}{work}{fixtures}{features}",
            self.suite.label(),
            self.migrations,
            self.tests
        )
    }

    /// Its migrations' folder, relative to the workspace: `migrations/m0050`, or the clone
    /// comparison's own `migrations/xfs_big` and `migrations/xfs_small`.
    pub fn migrations_dir(&self) -> String {
        match self.suite {
            Suite::XfsBig | Suite::XfsSmall => format!("migrations/{}", self.suite.label()),
            _ => format!("migrations/m{:04}", self.migrations),
        }
    }

    /// The suite's label as printed: `sqlx+fixtures` for a fixture suite, `pgfresh[local]` for
    /// one built with pgfresh's `local` feature only.
    pub fn label(&self) -> String {
        let label = match self.fixtures {
            0 => self.suite.label().to_owned(),
            _ => format!("{}+fixtures", self.suite.label()),
        };
        match self.features {
            None => label,
            Some(list) => format!("{label}[{list}]"),
        }
    }
}

/// The fixture files of a fixture suite, in the order the attribute names them: `NAME.sql`
/// in `src/fixtures/`, beside the tests' file, where both attributes look for a bare name.
pub const FIXTURES: [&str; 3] = ["a", "b", "c"];

/// The table fixture file `k` fills: one of the first three the migrations create.
fn fixture_table(k: usize, migrations: usize) -> String {
    format!("bench_{:04}", k % migrations + 1)
}

/// Row `j` of fixture file `k`: its `name` (unique over the three files) and `amount`.
fn fixture_row(k: usize, j: usize) -> (String, i32) {
    let amount = (j * 37 + k * 101) % 1000;
    (
        format!("{} {j:05}", FIXTURES[k]),
        i32::try_from(amount).expect("below 1000"),
    )
}

/// Fixture file `k`: `rows` rows into its table, `per_insert` rows per `INSERT`.
fn fixture_sql(k: usize, rows: usize, per_insert: usize, migrations: usize) -> String {
    let table = fixture_table(k, migrations);
    let mut sql = format!("-- Generated by pgfresh's examples/bench: {rows} rows into {table}.\n");
    for start in (0..rows).step_by(per_insert) {
        let _ = writeln!(sql, "INSERT INTO {table} (name, amount) VALUES");
        let end = (start + per_insert).min(rows);
        for j in start..end {
            let (name, amount) = fixture_row(k, j);
            let sep = if j + 1 == end { ";" } else { "," };
            let _ = writeln!(sql, "    ('{name}', {amount}){sep}");
        }
    }
    sql
}

/// Rows of the clone comparison's big table: 4.4 million rows of about 236 bytes (a 4-byte
/// integer and 200 characters), 34 to a page: a database of about 1 GB.
pub const BIG_ROWS: usize = 4_400_000;

/// Creates `table`, the clone comparison's table of about 1 GB (see [`BIG_ROWS`]).
pub fn big_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE {table} AS SELECT g, repeat('x', 200) AS s FROM generate_series(1, {BIG_ROWS}) g"
    )
}

/// The clone comparison's migration: the big table (`big`) or one empty table (`small`).
fn xfs_migration(suite: Suite) -> (String, String) {
    match suite {
        Suite::XfsBig => (
            "0001_big.sql".to_owned(),
            format!(
                "-- Generated by pgfresh's examples/bench: a table of about 1 GB.\n{};\n",
                big_table_sql("big")
            ),
        ),
        _ => (
            "0001_small.sql".to_owned(),
            "-- Generated by pgfresh's examples/bench: one empty table.\n\
             CREATE TABLE small (id BIGSERIAL PRIMARY KEY, name TEXT);\n"
                .to_owned(),
        ),
    }
}

/// The database the `shared` suite over `migrations` migrations uses: created and migrated by
/// the benchmark before the runs.
pub fn shared_database(migrations: usize) -> String {
    format!("bench_shared_m{migrations:04}")
}

/// The template the `naive` suite over `migrations` migrations clones: created and migrated by
/// the benchmark before the runs.
pub fn naive_template(migrations: usize) -> String {
    format!("bench_naive_m{migrations:04}")
}

/// Where everything lives under `target/pgfresh-bench/`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    /// The copy of pgfresh the suites depend on.
    pub fn snapshot(&self) -> PathBuf {
        self.root.join("pgfresh")
    }
    /// The Cargo workspace of the generated crates.
    pub fn workspace(&self) -> PathBuf {
        self.root.join("ws")
    }
    /// `CARGO_TARGET_DIR` shared by every generated crate.
    pub fn target(&self) -> PathBuf {
        self.root.join("target")
    }
    /// Where the pgfresh suites append their hand-out and drop latencies.
    pub fn timings(&self) -> PathBuf {
        self.root.join("timings")
    }
    /// The synthetic migration set of `count` migrations.
    pub fn migrations(&self, count: usize) -> PathBuf {
        self.workspace()
            .join("migrations")
            .join(format!("m{count:04}"))
    }
}

/// Writes the snapshot, the migration sets and the crates (fixture files with `per_insert` rows
/// per `INSERT`), and the workspace listing them.
pub fn write_all(
    layout: &Layout,
    pgfresh: &Path,
    crates: &[Crate],
    per_insert: usize,
) -> io::Result<()> {
    sync_dir(pgfresh, &layout.snapshot())?;
    let counts: BTreeSet<usize> = crates
        .iter()
        .filter(|c| !c.suite.is_xfs())
        .map(|c| c.migrations)
        .collect();
    for &count in &counts {
        write_migrations(&layout.migrations(count), count)?;
    }
    for krate in crates.iter().filter(|c| c.suite.is_xfs()) {
        write_files(
            &layout.workspace().join(krate.migrations_dir()),
            &[xfs_migration(krate.suite)],
        )?;
    }
    for krate in crates {
        write_crate(layout, krate, per_insert)?;
    }
    write_if_changed(
        &layout.workspace().join("Cargo.toml"),
        &workspace_manifest(crates),
    )?;
    let lock = layout.workspace().join("Cargo.lock");
    if !lock.exists() {
        // Start from pgfresh's own lock file: the suites get exactly its sqlx and tokio.
        fs::copy(pgfresh.join("Cargo.lock"), lock)?;
    }
    fs::create_dir_all(layout.timings())
}

/// The sqlx version pgfresh's `Cargo.lock` pins.
pub fn locked_sqlx(pgfresh: &Path) -> io::Result<String> {
    let lock = fs::read_to_string(pgfresh.join("Cargo.lock"))?;
    lock.split("[[package]]")
        .find(|p| p.contains("\nname = \"sqlx\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_owned())
        .ok_or_else(|| io::Error::other("no sqlx package in pgfresh's Cargo.lock"))
}

fn workspace_manifest(crates: &[Crate]) -> String {
    let members: Vec<String> = crates
        .iter()
        .map(|c| format!("    \"crates/{}\",", c.package()))
        .collect();
    format!(
        "# Generated by pgfresh's examples/bench; rewritten on every run.\n\
         [workspace]\nresolver = \"3\"\nmembers = [\n{}\n]\n",
        members.join("\n")
    )
}

/// Migration `i` creates table `bench_<i>` in 4 DDL statements.
fn migration_sql(i: usize) -> String {
    let t = format!("bench_{i:04}");
    format!(
        "-- Synthetic migration {i}: 4 DDL statements.\n\
         CREATE TABLE {t} (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, \
         created_at TIMESTAMPTZ NOT NULL DEFAULT now());\n\
         CREATE INDEX {t}_name_idx ON {t} (name);\n\
         ALTER TABLE {t} ADD COLUMN amount INTEGER NOT NULL DEFAULT 0;\n\
         ALTER TABLE {t} ADD CONSTRAINT {t}_amount_check CHECK (amount >= 0);\n"
    )
}

fn write_migrations(dir: &Path, count: usize) -> io::Result<()> {
    let files: Vec<(String, String)> = (1..=count)
        .map(|i| (format!("{i:04}_bench_{i:04}.sql"), migration_sql(i)))
        .collect();
    write_files(dir, &files)
}

/// Makes `dir` hold exactly `files` (name, content).
fn write_files(dir: &Path, files: &[(String, String)]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    remove_others(dir, files.iter().map(|(name, _)| PathBuf::from(name)))?;
    for (name, sql) in files {
        write_if_changed(&dir.join(name), sql)?;
    }
    Ok(())
}

fn write_crate(layout: &Layout, krate: &Crate, per_insert: usize) -> io::Result<()> {
    let dir = layout.workspace().join("crates").join(krate.package());
    let migrations = format!("../../{}", krate.migrations_dir());
    write_if_changed(&dir.join("Cargo.toml"), &crate_manifest(layout, krate)?)?;
    write_if_changed(
        &dir.join("build.rs"),
        &format!(
            "// sqlx's migration macros embed the folder; rebuild when it changes.\n\
             fn main() {{\n    println!(\"cargo:rerun-if-changed={migrations}\");\n}}\n"
        ),
    )?;
    if krate.fixtures > 0 {
        for (k, name) in FIXTURES.iter().enumerate() {
            write_if_changed(
                &dir.join("src/fixtures").join(format!("{name}.sql")),
                &fixture_sql(k, krate.fixtures, per_insert, krate.migrations),
            )?;
        }
    }
    write_if_changed(&dir.join("src/lib.rs"), &crate_source(krate, &migrations))
}

/// `local,tls` as the inside of a TOML array: `"local", "tls"`.
pub fn toml_features(list: &str) -> String {
    list.split(',')
        .filter(|f| !f.is_empty())
        .map(|f| format!("{f:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn crate_manifest(layout: &Layout, krate: &Crate) -> io::Result<String> {
    let sqlx = locked_sqlx(&layout.snapshot())?;
    let pgfresh = match krate.features {
        None => format!("pgfresh = {{ path = {:?} }}\n", layout.snapshot()),
        Some(list) => format!(
            "pgfresh = {{ path = {:?}, default-features = false, features = [{}] }}\n",
            layout.snapshot(),
            toml_features(list)
        ),
    };
    let sqlx_and_tokio = format!(
        "sqlx = {{ version = \"={sqlx}\", default-features = false, \
         features = [\"runtime-tokio\", \"postgres\", \"migrate\", \"macros\"] }}\n\
         tokio = {{ version = \"1\", features = [\"rt\", \"macros\"] }}\n"
    );
    let dependencies = match krate.suite {
        // libc: the suite times its own steps' CPU (clock_gettime).
        Suite::Pgfresh | Suite::XfsBig | Suite::XfsSmall => {
            pgfresh + &sqlx_and_tokio + "libc = \"0.2\"\n"
        }
        Suite::Sqlx | Suite::Shared => sqlx_and_tokio,
        // sync: the channels to its administrative thread.
        Suite::Naive => {
            sqlx_and_tokio.replace(r#"["rt", "macros"]"#, r#"["rt", "macros", "sync"]"#)
        }
        // The attribute's expansion names `::pgfresh` only; the body uses `pgfresh::sqlx`.
        Suite::Attribute => pgfresh,
    };
    Ok(format!(
        "[package]\nname = \"{}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [lib]\ndoctest = false\n\n\
         [dependencies]\n{dependencies}",
        krate.package()
    ))
}

/// The statements of a test's round trip on table `bench_<table>` (1-based): an insert bound to
/// a name and an amount that returns the row's id, and a select of that row by id.
pub fn roundtrip_sql(table: usize) -> (String, String) {
    let table = format!("bench_{table:04}");
    (
        format!("INSERT INTO {table} (name, amount) VALUES ($1, $2) RETURNING id"),
        format!("SELECT name, amount FROM {table} WHERE id = $1"),
    )
}

/// The crate's `src/lib.rs`: a shared round trip, the tool's set-up, then one test per row.
fn crate_source(krate: &Crate, migrations: &str) -> String {
    if krate.suite.is_xfs() {
        return xfs_source(krate, migrations);
    }
    let fixtures = match krate.fixtures {
        0 => String::new(),
        rows => format!(
            ", fixtures {} of {rows} rows each",
            FIXTURES.map(|f| format!("{f}.sql")).join(", ")
        ),
    };
    let mut src = format!(
        "//! Generated by pgfresh's examples/bench: {} tests over {} migrations{fixtures} ({}).\n\
         #![cfg(test)]\n\n",
        krate.tests,
        krate.migrations,
        krate.suite.label()
    );
    if krate.suite == Suite::Attribute {
        src.push_str("use pgfresh::sqlx;\n\n");
    }
    src.push_str(ROUNDTRIP);
    src.push('\n');
    if krate.fixtures > 0 {
        src.push_str(FIXTURE_READ);
    }
    let fixture_args = match krate.fixtures {
        0 => String::new(),
        _ => format!(
            ", fixtures({})",
            FIXTURES.map(|f| format!("{f:?}")).join(", ")
        ),
    };
    match krate.suite {
        Suite::Pgfresh => src.push_str(&PGFRESH_SETUP.replace("{migrations}", migrations)),
        Suite::Shared => src.push_str(
            &SHARED_SETUP
                .replace("{database}", &shared_database(krate.migrations))
                .replace("{pool_size}", &pgfresh::DEFAULT_POOL_SIZE.to_string()),
        ),
        Suite::Naive => src.push_str(
            &NAIVE_SETUP
                .replace("{template}", &naive_template(krate.migrations))
                .replace("{pool_size}", &pgfresh::DEFAULT_POOL_SIZE.to_string()),
        ),
        Suite::Sqlx | Suite::Attribute | Suite::XfsBig | Suite::XfsSmall => {}
    }
    for i in 0..krate.tests {
        let (insert, select) = roundtrip_sql(i % krate.migrations + 1);
        let mut call = format!("roundtrip({{pool}}, {insert:?}, {select:?}, {i}).await;");
        if krate.fixtures > 0 {
            // A row of one of the fixture files, looked up by its unique name.
            let k = i % FIXTURES.len();
            let (name, amount) = fixture_row(k, (i * 7) % krate.fixtures);
            let lookup = format!(
                "SELECT amount FROM {} WHERE name = $1",
                fixture_table(k, krate.migrations)
            );
            let _ = write!(
                call,
                "\n    fixture_read({{pool}}, {lookup:?}, {name:?}, {amount}).await;"
            );
        }
        if krate.work > 0 {
            // Blocking on purpose: the test's thread is busy, as with real work.
            let _ = write!(
                call,
                "\n    std::thread::sleep(std::time::Duration::from_millis({}));",
                krate.work
            );
        }
        let _ = match krate.suite {
            Suite::Pgfresh => writeln!(
                src,
                "\n#[tokio::test]\nasync fn t{i:04}() {{\n    let db = db().await;\n    {}\n}}",
                call.replace("{pool}", "db.pool()")
            ),
            Suite::Sqlx => writeln!(
                src,
                "\n#[sqlx::test(migrations = {migrations:?}{fixture_args})]\nasync fn t{i:04}(pool: sqlx::PgPool) {{\n    {}\n}}",
                call.replace("{pool}", "&pool")
            ),
            Suite::Attribute => writeln!(
                src,
                "\n#[pgfresh::test(migrations = {migrations:?}{fixture_args})]\nasync fn t{i:04}(pool: sqlx::PgPool) {{\n    {}\n}}",
                call.replace("{pool}", "&pool")
            ),
            Suite::Shared => writeln!(
                src,
                "\n#[tokio::test]\nasync fn t{i:04}() {{\n    let pool = db().await;\n    {}\n    pool.close().await;\n}}",
                call.replace("{pool}", "&pool")
            ),
            Suite::Naive => writeln!(
                src,
                "\n#[tokio::test]\nasync fn t{i:04}() {{\n    let (name, pool) = db().await;\n    {}\n    done(name, pool).await;\n}}",
                call.replace("{pool}", "&pool")
            ),
            Suite::XfsBig | Suite::XfsSmall => unreachable!("written by xfs_source"),
        };
    }
    src
}

/// A clone comparison crate's `src/lib.rs`: pgfresh's timed fixture, then tests that each get
/// a database and run `SELECT 1` on it.
fn xfs_source(krate: &Crate, migrations: &str) -> String {
    let mut src = format!(
        "//! Generated by pgfresh's examples/bench: {} tests over {} ({}): a hand-out each.\n\
         #![cfg(test)]\n",
        krate.tests,
        match krate.suite {
            Suite::XfsBig => "one migration creating a table of about 1 GB",
            _ => "one migration creating one empty table",
        },
        krate.suite.label()
    );
    src.push_str(&PGFRESH_SETUP.replace("{migrations}", migrations));
    for i in 0..krate.tests {
        let _ = writeln!(
            src,
            "\n#[tokio::test]\nasync fn t{i:04}() {{\n    let db = db().await;\n    \
             sqlx::query(\"SELECT 1\").execute(db.pool()).await.expect(\"SELECT 1\");\n}}"
        );
    }
    src
}

/// Each test inserts one row and reads it back.
const ROUNDTRIP: &str = r#"async fn roundtrip(pool: &sqlx::PgPool, insert: &'static str, select: &'static str, n: i32) {
    let name = format!("row {n}");
    let id: i64 = sqlx::query_scalar(insert)
        .bind(&name)
        .bind(n)
        .fetch_one(pool)
        .await
        .expect("insert");
    let row: (String, i32) = sqlx::query_as(select)
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("select");
    assert_eq!(row, (name, n));
}
"#;

/// Each test of a fixture suite also reads one row a fixture file inserted.
const FIXTURE_READ: &str = r#"async fn fixture_read(pool: &sqlx::PgPool, lookup: &'static str, name: &'static str, amount: i32) {
    let found: i32 = sqlx::query_scalar(lookup)
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("the fixture's row");
    assert_eq!(found, amount, "{name}");
}
"#;

/// The pgfresh fixture, timing a test process's steps, wall and the process's CPU: `start`
/// (from the process's start to its first hand-out: exec, the test harness, the runtime), the
/// hand-out (`cold` when it started before this process had received its first database: find
/// the server or the broker, claim, connect the pool; `warm` otherwise; under nextest every
/// test is its own process, so every hand-out is cold), `test` (the body) and `drop` (dropping
/// the `TestDb` at the end).
const PGFRESH_SETUP: &str = r#"
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgfresh::{Harness, TestDb};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("{migrations}");
static HARNESS: Harness = Harness::new(&MIGRATOR);
static WARM: AtomicBool = AtomicBool::new(false);

async fn db() -> Db {
    let cold = !WARM.load(Ordering::SeqCst);
    if cold {
        record("start", since_process_start(), cpu());
    }
    let (start, cpu_before) = (Instant::now(), cpu());
    let db = HARNESS.test_db().await.unwrap_or_else(|e| panic!("{e}"));
    record(if cold { "cold" } else { "warm" }, start.elapsed(), cpu() - cpu_before);
    WARM.store(true, Ordering::SeqCst);
    Db { db: Some(db), since: Instant::now(), cpu: cpu() }
}

/// The test's database; the test body and the drop are timed.
struct Db {
    db: Option<TestDb>,
    since: Instant,
    cpu: Duration,
}

impl std::ops::Deref for Db {
    type Target = TestDb;
    fn deref(&self) -> &TestDb {
        self.db.as_ref().expect("present until dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        record("test", self.since.elapsed(), cpu() - self.cpu);
        let (start, cpu_before) = (Instant::now(), cpu());
        drop(self.db.take());
        record("drop", start.elapsed(), cpu() - cpu_before);
    }
}

/// This process's CPU time so far, every thread's, user and system.
fn cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write into.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Wall time since this process started (the kernel counts in clock ticks: 10 ms).
fn since_process_start() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Field 22, starttime; the fields after the command's closing parenthesis start at 3.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("(comm)") + 2..].split(' ').collect();
    let started: f64 = fields[19].parse().expect("starttime");
    let uptime = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime");
    let uptime: f64 = uptime.split(' ').next().and_then(|u| u.parse().ok()).expect("uptime");
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Duration::from_secs_f64((uptime - started / ticks).max(0.0))
}

fn record(kind: &str, took: Duration, cpu: Duration) {
    if let Ok(path) = std::env::var("PGFRESH_BENCH_TIMINGS") {
        let line = format!("{kind} {} {}\n", took.as_micros(), cpu.as_micros());
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("append to PGFRESH_BENCH_TIMINGS");
    }
}
"#;

/// The floor's fixture: a pool to the one shared database, as pgfresh's would be to the
/// test's own.
const SHARED_SETUP: &str = r#"
async fn db() -> sqlx::PgPool {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("DATABASE_URL");
    sqlx::postgres::PgPoolOptions::new()
        .max_connections({pool_size})
        .connect_with(options.database("{database}"))
        .await
        .expect("connecting to {database}")
}
"#;

/// The naive suite's fixture: a thread with a runtime of its own (a test's runtime ends with
/// the test) clones and drops on its pool of two connections; the test waits for both.
const NAIVE_SETUP: &str = r#"
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

enum Ask {
    Clone(oneshot::Sender<String>),
    Drop(String, oneshot::Sender<()>),
}

static ADMIN: OnceLock<mpsc::UnboundedSender<Ask>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn url() -> sqlx::postgres::PgConnectOptions {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    url.parse().expect("DATABASE_URL")
}

fn ask(ask: Ask) {
    let admin = ADMIN.get_or_init(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<Ask>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(url())
                    .await
                    .expect("the administrative pool");
                while let Some(ask) = rx.recv().await {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let run = |sql: String| async {
                            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.expect("clone or drop");
                        };
                        match ask {
                            Ask::Clone(reply) => {
                                let name = format!(
                                    "bench_naive_{}_{}",
                                    std::process::id(),
                                    NEXT.fetch_add(1, Ordering::SeqCst)
                                );
                                run(format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")).await;
                                let _ = reply.send(name);
                            }
                            Ask::Drop(name, reply) => {
                                run(format!("DROP DATABASE {name} WITH (FORCE)")).await;
                                let _ = reply.send(());
                            }
                        }
                    });
                }
            });
        });
        tx
    });
    assert!(admin.send(ask).is_ok(), "the administrative thread is gone");
}

async fn db() -> (String, sqlx::PgPool) {
    let (tx, rx) = oneshot::channel();
    ask(Ask::Clone(tx));
    let name = rx.await.expect("a clone");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections({pool_size})
        .connect_with(url().database(&name))
        .await
        .expect("connecting to the clone");
    (name, pool)
}

async fn done(name: String, pool: sqlx::PgPool) {
    pool.close().await;
    let (tx, rx) = oneshot::channel();
    ask(Ask::Drop(name, tx));
    rx.await.expect("the drop");
}
"#;

fn write_if_changed(path: &Path, content: &str) -> io::Result<()> {
    if fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, content)
}

/// Makes `dst` a copy of the package at `src` (without `target/` and `.git/`), touching only
/// files that differ, so an unchanged library is not recompiled.
fn sync_dir(src: &Path, dst: &Path) -> io::Result<()> {
    let mut files = Vec::new();
    list_files(src, Path::new(""), &mut files)?;
    fs::create_dir_all(dst)?;
    remove_others(dst, files.iter().cloned())?;
    for rel in &files {
        let content = fs::read(src.join(rel))?;
        let to = dst.join(rel);
        if fs::read(&to).is_ok_and(|old| old == content) {
            continue;
        }
        fs::create_dir_all(to.parent().unwrap_or(dst))?;
        fs::write(to, content)?;
    }
    Ok(())
}

fn list_files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let name = rel.join(entry.file_name());
        if rel.as_os_str().is_empty()
            && (entry.file_name() == "target" || entry.file_name() == ".git")
        {
            continue;
        }
        if entry.file_type()?.is_dir() {
            list_files(root, &name, out)?;
        } else {
            out.push(name);
        }
    }
    Ok(())
}

/// Deletes files under `dir` that are not in `keep` (relative paths).
fn remove_others(dir: &Path, keep: impl Iterator<Item = PathBuf>) -> io::Result<()> {
    let keep: BTreeSet<PathBuf> = keep.collect();
    let mut present = Vec::new();
    list_files(dir, Path::new(""), &mut present)?;
    for rel in present.iter().filter(|rel| !keep.contains(*rel)) {
        fs::remove_file(dir.join(rel))?;
    }
    Ok(())
}
