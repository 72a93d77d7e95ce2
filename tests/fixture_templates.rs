//! Fixture templates (`Harness::with_fixtures`): the fixtures are applied once into a template
//! whose hash covers the migrations and every fixture's bytes, and every test clones the seeded
//! template; an edited fixture is a new template, the same migrations with and without fixtures
//! are two templates side by side, and a fixture with an SQL error names its file, line and
//! column while its half-built template is dropped.

mod common;

use pgfresh::sqlx::{self, PgPool};
use pgfresh::{Harness, MIGRATOR, TestDb};

async fn rows(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT url FROM datadump ORDER BY url")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The template a test database was cloned from: its name carries the first 8 hex digits of
/// the template's hash.
async fn template_of(db: &TestDb) -> String {
    let hash8 = common::hash8(db.name());
    let admin = common::admin(db).await;
    let name: String = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE starts_with(datname::text, $1)",
    )
    .bind(format!("pgfresh_t_{hash8}"))
    .fetch_one(&admin)
    .await
    .unwrap();
    name
}

#[tokio::test]
async fn fixtures_are_in_every_clone_and_in_order() {
    let harness = Harness::new(&MIGRATOR).with_fixtures([
        "tests/fixtures/datadump_rows.sql",
        "tests/fixtures/datadump_parse_catalog.sql",
    ]);
    let (a, b) = (
        harness.test_db().await.unwrap(),
        harness.test_db().await.unwrap(),
    );
    for db in [&a, &b] {
        let parsed: i64 = sqlx::query_scalar("SELECT count(*) FROM datadump WHERE parsed")
            .fetch_one(db.pool())
            .await
            .unwrap();
        // datadump_parse_catalog.sql needs datadump_rows.sql applied first.
        assert!(parsed >= 2, "{}", db.name());
    }
    assert_eq!(rows(a.pool()).await, rows(b.pool()).await);
    assert_eq!(template_of(&a).await, template_of(&b).await);
}

#[tokio::test]
async fn with_and_without_fixtures_are_two_templates_side_by_side() {
    let bare = Harness::new(&MIGRATOR).test_db().await.unwrap();
    let seeded = Harness::new(&MIGRATOR)
        .with_fixtures(["tests/fixtures/datadump_rows.sql"])
        .test_db()
        .await
        .unwrap();
    assert!(rows(bare.pool()).await.is_empty());
    assert_eq!(rows(seeded.pool()).await.len(), 3);
    let (t1, t2) = (template_of(&bare).await, template_of(&seeded).await);
    assert_ne!(t1, t2);
    // Both still there: asking again finds each.
    let again = Harness::new(&MIGRATOR).test_db().await.unwrap();
    assert_eq!(template_of(&again).await, t1);
}

#[tokio::test]
async fn an_edited_fixture_is_a_new_template() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.sql");
    let insert = |url: &str| {
        format!("INSERT INTO datadump (url, service, method) VALUES ('{url}', 's', 'GET');")
    };
    std::fs::write(&file, insert("https://before")).unwrap();
    let before = Harness::new(&MIGRATOR)
        .with_fixtures([&file])
        .test_db()
        .await
        .unwrap();
    std::fs::write(&file, insert("https://after")).unwrap();
    let after = Harness::new(&MIGRATOR)
        .with_fixtures([&file])
        .test_db()
        .await
        .unwrap();
    assert_eq!(rows(before.pool()).await, ["https://before"]);
    assert_eq!(rows(after.pool()).await, ["https://after"]);
    assert_ne!(template_of(&before).await, template_of(&after).await);
}

#[tokio::test]
async fn a_fixture_with_an_error_names_file_line_and_column_and_its_template_goes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.sql");
    // A unique first line: a template of its own, never built before.
    let text = format!(
        "-- {}\n{}",
        dir.path().display(),
        std::fs::read_to_string("tests/fixtures/broken_syntax.sql").unwrap()
    );
    std::fs::write(&file, text).unwrap();
    let e = Harness::new(&MIGRATOR)
        .with_fixtures([&file])
        .test_db()
        .await
        .unwrap_err()
        .to_string();
    let shown = file.display().to_string();
    assert!(
        e.contains(&format!(
            "fixture {shown} failed at line 6, column 28 while building template pgfresh_t_"
        )),
        "{e}"
    );
    assert!(e.contains(r#"syntax error at or near "VALUS""#), "{e}");
    assert!(e.contains("the half-built template was dropped"), "{e}");
    common::assert_template_gone(&e).await;
}

#[tokio::test]
async fn a_missing_fixture_file_is_named() {
    let e = Harness::new(&MIGRATOR)
        .with_fixtures(["tests/fixtures/no_such_file.sql"])
        .test_db()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot read seed file tests/fixtures/no_such_file.sql: No such file"),
        "{e}"
    );
}
