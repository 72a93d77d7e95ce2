//! Templates from any migration tool: `Harness::from_command` runs a real command (psql, sh)
//! once per template with the template named in its environment, `Harness::from_fn` runs Rust
//! code (refinery, a real migration library); their inputs make the hash, sessions they leave
//! open do not block the clones, and every way they fail is an error that says so.

mod common;

use std::path::Path;
use std::time::Duration;

use pgfresh::Harness;
use pgfresh::sqlx::{self, Connection, PgConnection};

/// A command line for `sh -c`, with `$DIR` meaning `dir`.
fn sh(script: &str, dir: &Path) -> Harness {
    Harness::from_command([
        "sh".to_owned(),
        "-c".to_owned(),
        script.replace("$DIR", &dir.display().to_string()),
    ])
}

/// How many times a tool appended to `log`.
fn runs(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |t| t.lines().count())
}

#[tokio::test]
async fn a_command_builds_the_template_once_with_the_template_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs");
    std::fs::write(dir.path().join("schema.sql"), "CREATE TABLE item (id int);").unwrap();
    // psql reads PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE; the rest is checked here.
    let script = r#"set -e
        echo run >> "$DIR/runs"
        [ "$DB_URL" = "$DATABASE_URL" ]
        case "$DB_URL" in */"$PGDATABASE"|*/"$PGDATABASE"\?*) ;; *) exit 9 ;; esac
        case "$PGDATABASE" in pgfresh_t_*) ;; *) exit 8 ;; esac
        psql -X -q -v ON_ERROR_STOP=1 -f "$DIR/schema.sql"
        psql -X -q -v ON_ERROR_STOP=1 "$DB_URL" -c "CREATE TABLE by_url (id int)""#;
    let harness = || sh(script, dir.path()).inputs([dir.path().join("schema.sql")]);

    let first = harness().test_db().await.unwrap();
    assert_eq!(common::tables(first.pool()).await, ["by_url", "item"]);
    let second = harness().test_db().await.unwrap();
    assert_eq!(common::tables(second.pool()).await, ["by_url", "item"]);
    assert_ne!(first.name(), second.name());
    assert_eq!(runs(&log), 1, "the template is built once and cloned");

    // An edited input is a new template, built by running the command again.
    std::fs::write(
        dir.path().join("schema.sql"),
        "CREATE TABLE other (id int);",
    )
    .unwrap();
    let edited = harness().test_db().await.unwrap();
    assert_eq!(common::tables(edited.pool()).await, ["by_url", "other"]);
    assert_eq!(runs(&log), 2);
}

#[tokio::test]
async fn sessions_a_command_leaves_open_do_not_block_the_clones() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"set -e
        (psql -X -q -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &)
        sleep 0.5
        psql -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE t (id int)""#;
    let db = sh(script, dir.path())
        .inputs([dir.path()])
        .test_db()
        .await
        .unwrap();
    assert_eq!(common::tables(db.pool()).await, ["t"]);
}

#[tokio::test]
async fn a_command_runs_in_its_current_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("here.sql"), "CREATE TABLE here (id int);").unwrap();
    let db = Harness::from_command([
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
        "here.sql",
    ])
    .current_dir(dir.path())
    .inputs([dir.path()])
    .test_db()
    .await
    .unwrap();
    assert_eq!(common::tables(db.pool()).await, ["here"]);
}

/// The message of the error `harness`'s first database ends with.
async fn error_of(harness: Harness) -> String {
    harness
        .test_db()
        .await
        .expect_err("the build must fail")
        .to_string()
}

#[tokio::test]
async fn a_missing_program_is_named_and_path_was_searched() {
    let e = error_of(Harness::from_command(["pgfresh-no-such-tool", "up"])).await;
    assert!(
        e.contains("with `pgfresh-no-such-tool up` failed (")
            && e.contains("there is no program `pgfresh-no-such-tool` on PATH ("),
        "{e}"
    );
    assert!(e.contains("install it, or name it by its full path"), "{e}");
}

#[tokio::test]
async fn a_failing_command_shows_its_status_and_the_end_of_its_output_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"echo "connecting to $DB_URL"
        i=1; while [ $i -le 60 ]; do echo "line $i"; i=$((i + 1)); done
        echo "password: $PGPASSWORD" >&2
        exit 3"#;
    let db = pgfresh::test_db().await;
    let password = common::password(&db);
    let e = error_of(sh(script, dir.path()).inputs([dir.path()])).await;
    assert!(e.contains("exited with exit status: 3"), "{e}");
    assert!(e.contains("the last 40 lines of its output"), "{e}");
    let lines: Vec<&str> = e.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"line 60") && lines.contains(&"password: ***"),
        "{e}"
    );
    assert!(!lines.contains(&"line 10"), "more than 40 lines: {e}");
    assert!(!e.contains(&password), "the password leaked: {e}");
    assert!(e.contains("the half-built template was dropped"), "{e}");
}

#[tokio::test]
async fn a_command_that_runs_too_long_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    let script = r#"sleep 300 & echo $! > "$DIR/pid"; echo waiting; wait"#;
    let e = error_of(
        sh(script, dir.path())
            .inputs([dir.path()])
            .timeout(Duration::from_secs(1)),
    )
    .await;
    assert!(e.contains("did not finish within 1 s"), "{e}");
    assert!(
        e.contains("every process it started were killed") && e.contains("waiting"),
        "{e}"
    );
    let pid = std::fs::read_to_string(&pid).unwrap();
    // Gone, or a zombie nobody reaped yet: no longer running either way.
    let running = || {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(
        common::eventually(Duration::from_secs(5), || !running()),
        "the command's child {pid} outlived the timeout"
    );
}

#[tokio::test]
async fn an_input_that_does_not_exist_is_named() {
    let e = error_of(Harness::from_command(["true"]).inputs(["tests/no-such-input"])).await;
    assert!(
        e.contains("cannot read the template input tests/no-such-input: No such file"),
        "{e}"
    );
    assert!(e.contains("relative to the working directory"), "{e}");
}

#[tokio::test]
async fn a_builder_method_that_means_nothing_here_is_an_error() {
    let e = error_of(Harness::from_dir("migrations").current_dir("x")).await;
    assert!(
        e.starts_with("pgfresh was used in a way it does not support")
            && e.contains("current_dir applies to Harness::from_command only"),
        "{e}"
    );
    let e = error_of(Harness::new(&pgfresh::MIGRATOR).timeout(Duration::from_secs(1))).await;
    assert!(
        e.contains("timeout applies to Harness::from_command and Harness::from_fn"),
        "{e}"
    );
}

/// An error with a cause, as a migration library returns one.
#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("migration V2 failed")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test]
async fn a_function_error_shows_its_whole_chain() {
    let key = format!("failing {}", uuid());
    let e = error_of(Harness::from_fn(key.clone(), |_| async {
        Err(Outer(std::io::Error::other("the disk said no")))
    }))
    .await;
    assert!(
        e.contains(&format!("with Harness::from_fn({key:?}) failed"))
            && e.contains("it returned an error: migration V2 failed: the disk said no"),
        "{e}"
    );
}

#[tokio::test]
async fn a_panicking_function_is_caught_and_its_template_dropped() {
    let key = format!("panicking {}", uuid());
    let e = error_of(Harness::from_fn(key.clone(), |options| async move {
        let mut conn = PgConnection::connect_with(&options).await?;
        sqlx::raw_sql("CREATE TABLE half (id int)")
            .execute(&mut conn)
            .await?;
        panic!("boom");
        #[allow(unreachable_code)]
        Ok::<_, sqlx::Error>(())
    }))
    .await;
    assert!(e.contains("it panicked: boom"), "{e}");
    common::assert_template_gone(&e).await;
}

/// Unique enough for a key of this run.
fn uuid() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    format!(
        "{}-{}",
        std::process::id(),
        now.unwrap_or_default().as_nanos()
    )
}

/// refinery's migrations, embedded.
mod embedded {
    refinery::embed_migrations!("examples/refinery/migrations");
}

#[tokio::test]
async fn refinery_builds_a_template_through_from_fn() {
    let harness = Harness::from_fn("refinery v1", |options| async move {
        // tokio-postgres takes the URL without sqlx's own parameters.
        let mut url = sqlx::ConnectOptions::to_url_lossy(&options);
        url.set_query(None);
        let (mut client, connection) =
            tokio_postgres::connect(url.as_str(), tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let report = embedded::migrations::runner()
            .run_async(&mut client)
            .await?;
        assert_eq!(report.applied_migrations().len(), 2);
        drop(client);
        let _ = driver.await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .inputs(["examples/refinery/migrations"]);
    let db = harness.test_db().await.unwrap();
    assert_eq!(
        common::tables(db.pool()).await,
        ["account", "refinery_schema_history"]
    );
    let id: i64 = sqlx::query_scalar("INSERT INTO account (email) VALUES ('a@b') RETURNING id")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(id, 1);
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM refinery_schema_history ORDER BY version")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(versions, [1, 2]);
}

#[tokio::test]
async fn a_version_of_a_template_a_tool_builds_is_a_misuse_that_names_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let harness = sh("true", dir.path());
    let e = harness.test_db_at(1).await.unwrap_err().to_string();
    assert!(
        e.starts_with("pgfresh was used in a way it does not support")
            && e.contains("test_db_at needs a sqlx migration set")
            && e.contains("`sh -c true`"),
        "{e}"
    );
}
