//! Helpers shared by the integration tests: running this test binary again as a child process
//! with another environment, and administrative access to the server a test database is on.
#![allow(dead_code)] // each test file uses the helpers it needs

use std::process::{Command, Output};

use pgfresh::TestDb;
use pgfresh::sqlx::{self, PgPool};

/// pgfresh's variables (and the tests' own): a child sees only those the test gives it.
const VARS: &[&str] = &[
    "DB_URL",
    "DATABASE_URL",
    "PGFRESH_SERVER",
    "PGFRESH_IMAGE",
    "PGFRESH_PG_BIN",
    "PGFRESH_KEEP",
    "PGFRESH_TEST_PANIC",
    "PGFRESH_TEST_MIGRATIONS",
    "PGFRESH_TEST_SLEEP",
    "PGFRESH_TEST_AGAIN",
    "PGFRESH_TEST_BUSY",
    // nextest's, which turns prefetching off: a child runs the same way under either runner.
    "NEXTEST_EXECUTION_MODE",
];

/// Runs the test `name` of this binary in a child process with `env` as pgfresh's environment.
pub fn rerun(name: &str, env: &[(&str, &str)]) -> Output {
    child(name, env).output().expect("the test binary runs")
}

/// The command [`rerun`] runs, to spawn it yourself.
pub fn child(name: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    for var in VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// stdout and stderr of a child, for assertions and failure messages.
pub fn output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The value of `key=` in the child's `PROBE` line.
pub fn probe_field(out: &Output, key: &str) -> String {
    let text = output(out);
    let line = text
        .lines()
        .find_map(|l| l.find("PROBE ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no PROBE line in:\n{text}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// What every test binary's `probe` test does: get a database the way the environment says,
/// use it, report it, and fail on request. Run by the parent as an ordinary test, and by other
/// tests as a child process with another environment.
///
/// `PGFRESH_TEST_SLEEP=<ms>` makes it hold its database that long after reporting it (for a
/// parent to kill it, or the server, meanwhile), and `PGFRESH_TEST_AGAIN` makes it then ask for
/// a second database, reported on a `PROBE2` line. `PGFRESH_TEST_BUSY=<n>:<file>` makes it then
/// take `n` more, report them on a `BUSY` line, wait (at most 60 s) until the parent creates
/// `<file>` (once it has locked their markers), drop them, and after 1 s more ask for one more
/// database, reporting the outcome on a `BUSYERR` or `BUSYOK` line.
pub async fn probe() {
    let db = probe_db().await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(one, 1);
    let url = url::Url::parse(&db.url()).unwrap();
    println!(
        "PROBE name={} source={} port={} pid={}",
        db.name(),
        db.source(),
        url.port().unwrap_or(5432),
        std::process::id()
    );
    if let Some(ms) = std::env::var("PGFRESH_TEST_SLEEP")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if std::env::var_os("PGFRESH_TEST_AGAIN").is_some() {
        let again = probe_db().await;
        println!("PROBE2 name={}", again.name());
    }
    if let Ok(busy_spec) = std::env::var("PGFRESH_TEST_BUSY") {
        let (n, go) = busy_spec
            .split_once(':')
            .expect("PGFRESH_TEST_BUSY=<n>:<file>");
        busy(n.parse().expect("a number of databases"), go).await;
    }
    if std::env::var_os("PGFRESH_TEST_PANIC").is_some() {
        panic!("the probe fails on purpose");
    }
}

/// See `PGFRESH_TEST_BUSY` at [`probe`].
async fn busy(n: usize, go: &str) {
    use std::time::Duration;
    let harness = pgfresh::Harness::new(&pgfresh::MIGRATOR);
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(harness.test_db().await.unwrap());
    }
    let names: Vec<&str> = held.iter().map(TestDb::name).collect();
    println!("BUSY names={}", names.join(","));
    for _ in 0..600 {
        if std::path::Path::new(go).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    match harness.test_db().await {
        Ok(db) => println!("BUSYOK name={}", db.name()),
        Err(e) => println!("BUSYERR {e}"),
    }
}

/// A database the way the probe's environment says: from `PGFRESH_TEST_MIGRATIONS`, else the
/// crate's own schema.
async fn probe_db() -> TestDb {
    match std::env::var("PGFRESH_TEST_MIGRATIONS") {
        Ok(dir) => pgfresh::Harness::from_dir(dir)
            .test_db()
            .await
            .unwrap_or_else(|e| panic!("pgfresh could not provide a test database: {e}")),
        Err(_) => pgfresh::test_db().await,
    }
}

/// The server `db` lives on, as a URL to its `postgres` database.
pub fn server_url(db: &TestDb) -> String {
    let mut url = url::Url::parse(&db.url()).unwrap();
    url.set_path("/postgres");
    url.to_string()
}

/// The password in `db`'s URL.
pub fn password(db: &TestDb) -> String {
    url::Url::parse(&db.url())
        .unwrap()
        .password()
        .expect("pgfresh servers have passwords")
        .to_owned()
}

/// A pool on the server's `postgres` database, for looking at `pg_database`.
pub async fn admin(db: &TestDb) -> PgPool {
    PgPool::connect(&server_url(db)).await.unwrap()
}

pub async fn database_exists(admin: &PgPool, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap()
}

/// Polls until `name` is gone from the server, for up to `limit`: a dropped `TestDb`'s
/// database goes in the background, a moment after the guard.
pub async fn dropped_within(admin: &PgPool, name: &str, limit: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if !database_exists(admin, name).await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    !database_exists(admin, name).await
}

/// Drops a database a test kept on purpose.
pub async fn drop_kept(admin: &PgPool, name: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
    )))
    .execute(admin)
    .await
    .unwrap();
}

/// Whether a server source a test needs is here. In CI it must be (a missing source is a CI
/// defect, not a reason to skip); on a developer's machine the test says why it does nothing.
pub fn available(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is not available, and CI must exercise it"
    );
    eprintln!("{what} is not available on this machine; this test has nothing to check");
    false
}

/// Whether a Docker daemon answers.
pub fn docker_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ID}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether PostgreSQL binaries can be found the way the local source finds them.
pub fn local_binaries() -> bool {
    let on_path = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    on_path
        || std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some())
        || std::env::var_os("PGFRESH_PG_BIN").is_some()
}

/// The value of `key=` on a `PROBE` line.
pub fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// A child process whose output is read while it runs: the parent can wait for its `PROBE`
/// line, then kill it (or the server) while the child holds its database.
pub struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    text: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Spawns the test `name` of this binary like [`child`] does.
    pub fn spawn(name: &str, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;
        use std::sync::{Arc, Mutex, mpsc};
        let mut child = self::child(name, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the test binary runs");
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let mut readers = Vec::new();
        for (stream, tx) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, Some(tx)),
            (Box::new(stderr), None),
        ] {
            let text = text.clone();
            readers.push(std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut all = text.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                    drop(all);
                    if let Some(tx) = &tx {
                        let _ = tx.send(line);
                    }
                }
            }));
        }
        Self {
            child,
            lines,
            text,
            readers,
        }
    }

    /// Waits up to `limit` for a line of stdout starting with `prefix` (after the test
    /// harness's own text, if any) and returns it from the prefix on.
    pub fn line(&mut self, prefix: &str, limit: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(i) = line.find(prefix) {
                        return line[i..].to_owned();
                    }
                }
                Err(_) => panic!(
                    "no {prefix} line within {limit:?} from the child; it printed:\n{}",
                    self.text()
                ),
            }
        }
    }

    /// The `PROBE` line, within 60 s.
    pub fn probe_line(&mut self) -> String {
        self.line("PROBE ", std::time::Duration::from_secs(60))
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the child printed so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// `SIGKILL` (what `Child::kill` sends on Unix), then reaps the child.
    pub fn kill(&mut self) {
        self.child.kill().expect("the child can be killed");
        self.child.wait().expect("the child can be reaped");
    }

    /// Waits up to `limit` for the child to exit; kills it and panics when it does not.
    /// Returns its status and everything it printed.
    pub fn finish(mut self, limit: std::time::Duration) -> (std::process::ExitStatus, String) {
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                self.kill();
                panic!(
                    "the child did not exit within {limit:?} (killed); it printed:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        (status, self.text())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `done` every 100 ms for up to `limit`.
pub fn eventually(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    done()
}

/// A server of a test's own: a fresh `PGFRESH_RUN_DIR`, so that the children of the test
/// start (and share) their own local cluster or container instead of anyone else's, and a
/// test can kill it or count what is on it without disturbing tests running in parallel.
pub struct OwnServer {
    dir: tempfile::TempDir,
    kind: &'static str,
    image: Option<String>,
    linger: u64,
    lease: Option<std::fs::File>,
}

impl OwnServer {
    /// A local cluster (`kind` = `local`) or a container (`docker`, from `PGFRESH_IMAGE`, else
    /// the offline image when it is there, else pgfresh's default) that stops `linger` seconds
    /// after its last user.
    pub fn new(kind: &'static str, linger: u64) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // The server may run as `postgres` when the tests run as root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let image = (kind == "docker").then(docker_image).flatten();
        Self {
            dir,
            kind,
            image,
            linger,
            lease: None,
        }
    }

    /// The environment that makes a child use this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGFRESH_SERVER", self.kind.to_owned()),
            ("PGFRESH_RUN_DIR", self.dir.path().display().to_string()),
            ("PGFRESH_LINGER", self.linger.to_string()),
        ];
        if let Some(image) = &self.image {
            env.push(("PGFRESH_IMAGE", image.clone()));
        }
        env
    }

    /// pgfresh's run directory inside ours, once a child has created it.
    pub fn run_dir(&self) -> Option<std::path::PathBuf> {
        let kind = format!("-{}-", self.kind);
        std::fs::read_dir(self.dir.path())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(&kind))
            })
    }

    /// The key pgfresh gave the server (the run directory's last part; the containers' label).
    pub fn key(&self) -> Option<String> {
        let dir = self.run_dir()?;
        let name = dir.file_name()?.to_string_lossy().into_owned();
        name.split_once(&format!("-{}-", self.kind))
            .map(|(_, key)| key.to_owned())
    }

    /// `(port, password)` of the running server, from the run directory's `state` file.
    pub fn state(&self) -> Option<(u16, String)> {
        let text = std::fs::read_to_string(self.run_dir()?.join("state")).ok()?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        Some((get("port")?.parse().ok()?, get("password")?))
    }

    /// A URL to the running server's `postgres` database.
    pub fn admin_url(&self) -> String {
        let (port, password) = self.state().expect("the server is running");
        format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres")
    }

    /// Takes a lease on the server like a test process does, as soon as a child has created the
    /// run directory (within `limit`), so that the server outlives gaps between the children.
    pub fn hold(&mut self, limit: std::time::Duration) {
        let mut lease = None;
        eventually(limit, || {
            lease = self
                .run_dir()
                .and_then(|d| std::fs::File::open(d.join("lease")).ok());
            lease.is_some()
        });
        let lease = lease.expect("a child created the run directory");
        lease.lock_shared().unwrap();
        self.lease = Some(lease);
    }

    /// Gives the lease back.
    pub fn release(&mut self) {
        self.lease = None;
    }

    /// Whether the server pgfresh started is gone: nothing answers on `port`, no data
    /// directory, no state file, no container with its key, and no process (server or
    /// guardian) refers to the run directory.
    pub fn gone(&self, port: u16) -> bool {
        let port_closed = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
        let files_gone = self
            .run_dir()
            .is_none_or(|d| !d.join("data").exists() && !d.join("state").exists());
        // By run directory, not by key: the key is the image's, shared with the container of
        // the process running the tests when that uses the same image.
        let containers_gone = self.kind != "docker"
            || Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!(
                    "label=dev.pgfresh.rundir={}",
                    self.dir.path().display()
                ))
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.is_empty());
        port_closed && files_gone && containers_gone && self.processes().is_empty()
    }

    /// Processes whose command line names our directory (the cluster's, the guardian).
    pub fn processes(&self) -> Vec<String> {
        let needle = self.dir.path().display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                let pid = entry.file_name().to_string_lossy().into_owned();
                found.push(format!("{pid}: {}", cmdline.trim()));
            }
        }
        found
    }

    /// Releases the lease and waits up to the linger time plus `slack` for the server to be
    /// [`gone`](Self::gone); returns how long that took, `None` when it did not happen.
    pub fn wait_gone(
        &mut self,
        port: u16,
        slack: std::time::Duration,
    ) -> Option<std::time::Duration> {
        self.release();
        let start = std::time::Instant::now();
        let limit = std::time::Duration::from_secs(self.linger) + slack;
        eventually(limit, || self.gone(port)).then(|| start.elapsed())
    }
}

impl Drop for OwnServer {
    /// Never leaves a server behind a failed test: its guardian stops it once the lease is
    /// given back, and removing the directory before that would leave the server running.
    fn drop(&mut self) {
        self.release();
        if let Some((port, _)) = self.state() {
            let limit = std::time::Duration::from_secs(self.linger + 20);
            eventually(limit, || self.gone(port));
        }
    }
}

/// The image for the docker source in tests: `PGFRESH_IMAGE`, else the offline image built by
/// `scripts/offline-image.sh` when this machine has it (no registry needed), else `None`
/// (pgfresh's default).
pub fn docker_image() -> Option<String> {
    if let Some(image) = std::env::var("PGFRESH_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
    {
        return Some(image);
    }
    let offline = "pgfresh-offline/postgres:15";
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", offline])
        .output()
        .is_ok_and(|o| o.status.success())
        .then(|| offline.to_owned())
}

/// Every database whose name starts with `pgfresh_`, with its marker kind (`template`, `ready`,
/// `test`, `kept`, `building`, `trash`; `unmarked` when its comment is no pgfresh marker).
pub async fn pgfresh_databases(admin: &PgPool) -> Vec<(String, String, Option<String>)> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE starts_with(datname::text, 'pgfresh_') ORDER BY datname",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(name, comment)| {
            let kind = comment
                .as_deref()
                .and_then(|c| c.strip_prefix("pgfresh:"))
                .and_then(|c| c.split_whitespace().next())
                // Ready clones carry no comment: name and connection limit are their marker.
                .unwrap_or(if name.starts_with("pgfresh_r_") {
                    "ready"
                } else {
                    "unmarked"
                })
                .to_owned();
            (name, kind, comment)
        })
        .collect()
}
