//! The application's Alembic history (`examples/alembic`), run for real by
//! `Harness::from_command(["alembic", "upgrade", "head"])`, against its sqlx port
//! (`migrations/`): the same schema at the first revision and at head (pgfresh's own schema
//! reader, bookkeeping tables left out), the same data converted up and back down, models and
//! schema in agreement (`alembic check`), a new revision builds a new template, and the checks
//! that work on any template source do.
//!
//! Alembic comes from `PATH`, else from the virtualenv `scripts/alembic-venv.sh` makes (CI
//! makes it; here the test runs the script, which needs `python3`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, OnceLock};

use pgfresh::sqlx::{self, PgPool};
use pgfresh::{Harness, MIGRATOR, TestDb, check};

const PROJECT: &str = "examples/alembic";
const FIRST_ALEMBIC: &str = "a854624b4068";
const FIRST_SQLX: i64 = 20230915120000;
const HEAD_SQLX: i64 = 20231002090000;

/// The `alembic` program: from `PATH`, else from the virtualenv the script makes.
fn alembic() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let on_path = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("alembic"))
                .find(|p| p.is_file())
        });
        on_path.or_else(|| {
            let out = Command::new("bash")
                .arg("scripts/alembic-venv.sh")
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let bin = PathBuf::from(text.lines().last()?.trim());
            (out.status.success() && bin.join("alembic").is_file()).then(|| bin.join("alembic"))
        })
    });
    let present = common::available(found.is_some(), "alembic (scripts/alembic-venv.sh)");
    found.as_deref().filter(|_| present)
}

/// `alembic upgrade <revision>` in `project` as a template source, the project its input.
fn alembic_harness(alembic: &Path, project: &str, revision: &str) -> Harness {
    Harness::from_command([
        alembic.display().to_string(),
        "upgrade".into(),
        revision.into(),
    ])
    .current_dir(project)
    .inputs([project])
}

static HEAD: LazyLock<Harness> =
    LazyLock::new(|| alembic_harness(alembic().expect("checked first"), PROJECT, "head"));

/// Runs `alembic ARGS` against the database `db` (its `DB_URL`); panics with its output when it
/// fails, and returns that output.
fn run_alembic(alembic: &Path, db: &TestDb, args: &[&str]) -> String {
    let out = Command::new(alembic)
        .args(args)
        .current_dir(PROJECT)
        .env("DB_URL", db.url())
        .output()
        .expect("alembic runs");
    let text = common::output(&out);
    assert!(out.status.success(), "alembic {args:?} failed:\n{text}");
    text
}

#[tokio::test]
async fn the_alembic_history_and_its_sqlx_port_give_the_same_schema() {
    let Some(alembic) = alembic() else { return };
    let sqlx_port = Harness::new(&MIGRATOR);
    let first = alembic_harness(alembic, PROJECT, FIRST_ALEMBIC);
    let pairs = [
        (
            "head",
            HEAD.test_db().await.unwrap(),
            sqlx_port.test_db().await.unwrap(),
        ),
        (
            "the first revision",
            first.test_db().await.unwrap(),
            sqlx_port.test_db_at(FIRST_SQLX).await.unwrap(),
        ),
    ];
    for (revision, from_alembic, from_sqlx) in pairs {
        let (a, b) = (
            check::schema(from_alembic.pool()).await.unwrap(),
            check::schema(from_sqlx.pool()).await.unwrap(),
        );
        assert_eq!(
            a, b,
            "at {revision}: the Alembic history and the port differ"
        );
        assert!(a.contains("CREATE TABLE public.datadump"), "{a}");
    }
}

/// Legacy rows as the pre-Alembic application stored them: NULL values, quotes, commas, `=>`,
/// backslashes, non-ASCII, an empty value, an empty hstore and a NULL column.
const LEGACY_ROWS: &str = r#"
INSERT INTO datadump (url, service, method, request_header, response_body, response_header, parsed)
VALUES
  ('https://a', 'svc', 'GET', 'Accept=>"application/json", X-Null=>NULL', 'ok', '"Set-Cookie"=>"a=b; c=\"d\""', true),
  ('https://b', 'svc', 'POST', '"k,1"=>"v=>2", "back\\slash"=>"ü"', NULL, '"empty"=>""', false),
  ('https://c', 'svc', 'PUT', '', 'none', NULL, DEFAULT);
"#;

async fn headers(pool: &PgPool) -> Vec<(i32, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT id, request_header::text, response_header::text FROM datadump ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn legacy_rows_convert_alike_up_to_jsonb_and_back_down_to_hstore() {
    let Some(alembic) = alembic() else { return };
    let from_alembic = alembic_harness(alembic, PROJECT, FIRST_ALEMBIC)
        .test_db()
        .await
        .unwrap();
    let from_sqlx = Harness::new(&MIGRATOR)
        .test_db_at(FIRST_SQLX)
        .await
        .unwrap();
    for db in [&from_alembic, &from_sqlx] {
        sqlx::raw_sql(LEGACY_ROWS).execute(db.pool()).await.unwrap();
    }
    let legacy = headers(from_sqlx.pool()).await;
    assert_eq!(headers(from_alembic.pool()).await, legacy);

    run_alembic(alembic, &from_alembic, &["upgrade", "head"]);
    from_sqlx.migrate_to(HEAD_SQLX).await.unwrap();
    let jsonb = headers(from_sqlx.pool()).await;
    assert_eq!(
        headers(from_alembic.pool()).await,
        jsonb,
        "upgraded JSONB differs"
    );
    assert_eq!(
        jsonb[0].1.as_deref(),
        Some(r#"{"Accept": "application/json", "X-Null": null}"#)
    );

    run_alembic(alembic, &from_alembic, &["downgrade", FIRST_ALEMBIC]);
    from_sqlx.migrate_to(FIRST_SQLX).await.unwrap();
    assert_eq!(
        headers(from_alembic.pool()).await,
        legacy,
        "downgraded hstore differs"
    );
    assert_eq!(headers(from_sqlx.pool()).await, legacy);
}

#[tokio::test]
async fn alembic_check_finds_models_and_schema_in_agreement() {
    let Some(alembic) = alembic() else { return };
    let db = HEAD.test_db().await.unwrap();
    let text = run_alembic(alembic, &db, &["check"]);
    assert!(
        text.contains("No new upgrade operations detected"),
        "{text}"
    );
}

#[tokio::test]
async fn a_new_revision_builds_a_new_template_and_a_broken_one_says_why() {
    let Some(alembic) = alembic() else { return };
    let project = tempfile::tempdir().unwrap();
    let copy = Command::new("cp")
        .args([
            "-r",
            &format!("{PROJECT}/."),
            &project.path().display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(copy.success());
    let shown = project.path().display().to_string();
    let harness = || alembic_harness(alembic, &shown, "head");
    let before = harness().test_db().await.unwrap();
    let versions = project.path().join("alembic/versions");
    let revision = |body: &str| {
        format!(
            "revision = \"5b0e6d1c2a77\"\ndown_revision = \"4f539123b6db\"\n\
             branch_labels = None\ndepends_on = None\n\nfrom alembic import op\n\n\n\
             def upgrade():\n    {body}\n\n\ndef downgrade():\n    op.drop_table(\"note\")\n"
        )
    };
    std::fs::write(
        versions.join("5b0e6d1c2a77_note.py"),
        revision(r#"op.execute("CREATE TABLE note (id int)")"#),
    )
    .unwrap();
    let after = harness().test_db().await.unwrap();
    let note: Option<String> = sqlx::query_scalar("SELECT to_regclass('note')::text")
        .fetch_one(after.pool())
        .await
        .unwrap();
    assert_eq!(
        note.as_deref(),
        Some("note"),
        "the cached old template was cloned"
    );
    let before_note: Option<String> = sqlx::query_scalar("SELECT to_regclass('note')::text")
        .fetch_one(before.pool())
        .await
        .unwrap();
    assert_eq!(before_note, None);

    std::fs::write(
        versions.join("5b0e6d1c2a77_note.py"),
        revision(r#"op.execute("CREATE TABLE note (id intt)")"#),
    )
    .unwrap();
    let e = harness().test_db().await.unwrap_err().to_string();
    assert!(e.contains(r#"type "intt" does not exist"#), "{e}");
    assert!(e.contains("exited with exit status: 1"), "{e}");
}

#[tokio::test]
async fn checks_that_need_only_a_template_work_on_the_alembic_harness() {
    if alembic().is_none() {
        return;
    }
    let upgraded = check::upgrade(&*HEAD).await.unwrap();
    assert!(
        upgraded.summary.contains("the template builds"),
        "{upgraded}"
    );
    check::snapshot(&*HEAD, "examples/alembic/schema.sql")
        .await
        .unwrap();
    let e = check::history(&*HEAD).await.unwrap_err().to_string();
    assert!(
        e.contains(
            "the history check reads the migrations themselves, so it needs a sqlx migration set"
        ),
        "{e}"
    );
    let e = check::up_down(&*HEAD).await.unwrap_err().to_string();
    assert!(e.contains("the up/down check"), "{e}");
}
