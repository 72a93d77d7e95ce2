//! Bad input: each case gets a clear error naming the cause and the remedy, within a bounded
//! time, and no password ever appears. Each case runs in a child process with its environment.

mod common;

use std::time::{Duration, Instant};

use common::{output, rerun};
use pgfresh::sqlx;

#[tokio::test]
async fn probe() {
    common::probe().await;
}

/// Runs the probe with `env`, expects it to fail, and returns what it printed.
fn fails_with(env: &[(&str, &str)]) -> String {
    let out = rerun("probe", env);
    let text = output(&out);
    assert!(!out.status.success(), "expected a failure, got:\n{text}");
    assert!(
        text.contains("pgfresh could not provide a test database"),
        "{text}"
    );
    text
}

#[test]
fn unknown_server_source() {
    let text = fails_with(&[("PGFRESH_SERVER", "podman")]);
    assert!(
        text.contains(
            "PGFRESH_SERVER=podman is not valid: expected one of auto, url, docker, local"
        ),
        "{text}"
    );
}

#[test]
fn unknown_keep_policy() {
    let text = fails_with(&[("PGFRESH_KEEP", "sometimes")]);
    assert!(
        text.contains("PGFRESH_KEEP=sometimes is not valid: expected one of never, failed, always"),
        "{text}"
    );
}

#[test]
fn url_source_without_a_url() {
    let text = fails_with(&[("PGFRESH_SERVER", "url")]);
    assert!(
        text.contains("the url source needs DB_URL (or DATABASE_URL)"),
        "{text}"
    );
}

#[test]
fn malformed_db_url() {
    let text = fails_with(&[("DB_URL", "postgres://me:s3cr3t-pw@db:notaport/app")]);
    assert!(
        text.contains("DB_URL=postgres://me:***@db:notaport/app is not valid"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t-pw"), "{text}");
    let text = fails_with(&[("DATABASE_URL", "mysql://me@db/app")]);
    assert!(
        text.contains(
            "DATABASE_URL=mysql://me@db/app is not valid: expected a URL like postgres://"
        ),
        "{text}"
    );
}

#[test]
fn unreachable_server_answers_in_bounded_time() {
    let started = Instant::now();
    let text = fails_with(&[("DB_URL", "postgres://me:s3cr3t-pw@127.0.0.1:1/app")]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        text.contains("cannot connect to PostgreSQL at 127.0.0.1:1/app"),
        "{text}"
    );
    assert!(
        text.contains("Check that the server is running and that DB_URL is right"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t-pw"), "{text}");
}

#[tokio::test]
async fn wrong_password_is_never_shown() {
    let db = pgfresh::test_db().await;
    let mut url = url::Url::parse(&common::server_url(&db)).unwrap();
    url.set_password(Some("not-the-password-42")).unwrap();
    let text = fails_with(&[("DB_URL", url.as_str())]);
    assert!(
        text.contains("password authentication failed for user \"postgres\""),
        "{text}"
    );
    assert!(!text.contains("not-the-password-42"), "{text}");
    assert!(!text.contains(&common::password(&db)), "{text}");
}

#[tokio::test]
async fn role_without_createdb_is_told_what_to_grant() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let role = format!(
        "pgfresh_nocreatedb_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'role-pw-77' NOCREATEDB"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let mut url = url::Url::parse(&common::server_url(&db)).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("role-pw-77")).unwrap();
    let text = fails_with(&[("DB_URL", url.as_str())]);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&admin)
        .await
        .unwrap();
    assert!(
        text.contains(&format!("role \"{role}\" may not create databases")),
        "{text}"
    );
    assert!(
        text.contains(&format!("ALTER ROLE \"{role}\" CREATEDB;")),
        "{text}"
    );
    assert!(!text.contains("role-pw-77"), "{text}");
}

#[test]
fn wrong_pg_bin() {
    let text = fails_with(&[
        ("PGFRESH_SERVER", "local"),
        ("PGFRESH_PG_BIN", "/nonexistent/bin"),
    ]);
    assert!(
        text.contains("PGFRESH_PG_BIN=/nonexistent/bin is not valid"),
        "{text}"
    );
    assert!(text.contains("does not hold initdb and pg_ctl"), "{text}");
}

#[test]
fn docker_requested_without_a_daemon() {
    let text = fails_with(&[
        ("PGFRESH_SERVER", "docker"),
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
    ]);
    assert!(
        text.contains("docker source: no Docker daemon answers"),
        "{text}"
    );
    assert!(text.contains("/nonexistent/docker.sock"), "{text}");
    assert!(text.contains("PGFRESH_SERVER=local"), "{text}");
}

#[test]
fn image_missing_and_not_pullable() {
    if !common::available(common::docker_answers(), "a Docker daemon") {
        return;
    }
    let text = fails_with(&[
        ("PGFRESH_SERVER", "docker"),
        ("PGFRESH_IMAGE", "pgfresh-test/absent:0"),
    ]);
    assert!(
        text.contains("could not start a container from pgfresh-test/absent:0"),
        "{text}"
    );
    assert!(text.contains("scripts/offline-image.sh"), "{text}");
}
