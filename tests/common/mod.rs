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
pub async fn probe() {
    let db = match std::env::var("PGFRESH_TEST_MIGRATIONS") {
        Ok(dir) => pgfresh::Harness::from_dir(dir)
            .test_db()
            .await
            .unwrap_or_else(|e| panic!("pgfresh could not provide a test database: {e}")),
        Err(_) => pgfresh::test_db().await,
    };
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
    if std::env::var_os("PGFRESH_TEST_PANIC").is_some() {
        panic!("the probe fails on purpose");
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
