//! Bad input: each case gets a clear error naming the cause and the remedy, within a bounded
//! time, and no password ever appears. Each case runs in a child process with its environment.

mod common;

use std::time::{Duration, Instant};

use common::{PROBE, output, rerun};
use pgfresh::sqlx;

/// Runs the probe with `env`, expects it to fail, and returns what it printed.
fn fails_with(env: &[(&str, &str)]) -> String {
    let out = rerun(PROBE, env);
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
            "PGFRESH_SERVER=podman is not valid: expected one of auto, url, docker, local, embedded"
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
    let (role, url) = login_role(
        &db,
        &admin,
        "pgfresh_nocreatedb",
        "role-pw-77",
        "NOCREATEDB",
    )
    .await;
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

/// A database name or role name no other test uses.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// No connections to spare: the role in `DB_URL` may hold one connection (a role-level
/// `CONNECTION LIMIT`, the same refusal, SQLSTATE 53300, as a server whose `max_connections` is
/// used up, without taking the server's connections from tests running in parallel). The
/// message names the cause in the server's words and what to change, in bounded time.
#[tokio::test]
async fn exhausted_connections_name_the_cause_and_the_remedy() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let (role, url) = login_role(
        &db,
        &admin,
        "pgfresh_onecon",
        "role-pw-88",
        "CREATEDB CONNECTION LIMIT 1",
    )
    .await;

    let started = Instant::now();
    // pgfresh waits for a slot first: two seconds here, thirty by default.
    let out = rerun(
        PROBE,
        &[
            ("PGFRESH_SERVER", "url"),
            ("DB_URL", url.as_str()),
            ("PGFRESH_SLOT_WAIT", "2"),
        ],
    );
    let took = started.elapsed();
    drop_role(&admin, &role).await;
    let text = output(&out);
    assert!(!out.status.success(), "expected a failure, got:\n{text}");
    assert!(
        took < Duration::from_secs(30),
        "took {took:?} to give up:\n{text}"
    );
    assert!(
        text.contains("pgfresh could not provide a test database"),
        "{text}"
    );
    assert!(
        text.contains("too many connections"),
        "the cause is not named:\n{text}"
    );
    assert!(
        [
            "max_connections",
            "CONNECTION LIMIT",
            "with_pool_size",
            "--test-threads"
        ]
        .iter()
        .any(|remedy| text.contains(remedy)),
        "no remedy is named:\n{text}"
    );
    assert!(text.contains("waited PGFRESH_SLOT_WAIT seconds"), "{text}");
    assert!(!text.contains("role-pw-88"), "{text}");
}

/// A second role on the same server, with the same migrations, is not refused the ready clones
/// the first role made ("must be owner of database"): it makes and claims its own.
#[tokio::test]
async fn another_role_on_the_same_server_gets_its_own_ready_databases() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let (role, url) = login_role(&db, &admin, "pgfresh_second", "role-pw-77", "CREATEDB").await;
    let env = [
        ("PGFRESH_SERVER", "url"),
        ("DB_URL", url.as_str()),
        ("PGFRESH_TEST_TAG", role.as_str()),
    ];
    // The template the superuser built (and owns), its last use recorded long enough ago that
    // this role's first run records a new one: a use another role's run cannot write down.
    let hash8 = common::hash8(db.name());
    let (template, mark): (String, String) = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE starts_with(datname::text, $1)",
    )
    .bind(format!("pgfresh_t_{hash8}"))
    .fetch_one(&admin)
    .await
    .unwrap();
    let (kept, _) = mark.rsplit_once(" used=").unwrap();
    let long_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 400;
    let comment = format!("COMMENT ON DATABASE \"{template}\" IS '{kept} used={long_ago}'");
    sqlx::raw_sql(sqlx::AssertSqlSafe(comment))
        .execute(&admin)
        .await
        .unwrap();
    // Twice: the second run finds the first one's ready clones.
    let outs = [rerun(PROBE, &env), rerun(PROBE, &env)];
    // The role's broker drops and makes its databases until it ends, idle.
    let gone = common::eventually(Duration::from_secs(20), || {
        common::broker_pid(&role).is_none()
    });
    drop_role(&admin, &role).await;
    assert!(gone, "the broker of {role} still runs");
    for out in outs {
        assert!(out.status.success(), "{}", output(&out));
    }
}

/// A new login role named `<prefix>_<8 hex digits>` with `password` and `attributes` (say
/// `CREATEDB`), and the URL of `db`'s server as that role.
async fn login_role(
    db: &pgfresh::TestDb,
    admin: &sqlx::PgPool,
    prefix: &str,
    password: &str,
    attributes: &str,
) -> (String, url::Url) {
    let role = unique(prefix);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}' {attributes}"
    )))
    .execute(admin)
    .await
    .unwrap();
    let mut url = url::Url::parse(&common::server_url(db)).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some(password)).unwrap();
    (role, url)
}

/// Drops `role` and any database it came to own.
async fn drop_role(admin: &sqlx::PgPool, role: &str) {
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
         WHERE r.rolname = $1",
    )
    .bind(role)
    .fetch_all(admin)
    .await
    .unwrap();
    for name in owned {
        // Two statements, two calls: several in one string run as one transaction, which
        // DROP DATABASE refuses. A sweep of another test may drop a ready clone first.
        let unmark = format!(r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE false"#);
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(unmark))
            .execute(admin)
            .await;
        let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(admin)
            .await
            .unwrap();
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(admin)
        .await
        .unwrap();
}

/// What a database holds, in numbers: its catalog's objects, and its own flags and comment.
async fn footprint(db: &sqlx::PgPool) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    for catalog in [
        "pg_class",
        "pg_namespace",
        "pg_proc",
        "pg_type",
        "pg_extension",
        "pg_description",
        "pg_largeobject_metadata",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {catalog}"
        )))
        .fetch_one(db)
        .await
        .unwrap();
        seen.push((catalog.to_owned(), n.to_string()));
    }
    let flags: (bool, bool, Option<String>) = sqlx::query_as(
        "SELECT datistemplate, datallowconn, shobj_description(oid, 'pg_database') \
         FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(db)
    .await
    .unwrap();
    seen.push(("pg_database".to_owned(), format!("{flags:?}")));
    seen
}

/// The database named in `DB_URL` is only connected to: after processes that passed, failed
/// (keeping their database) and built a template of a new migration set through it, it holds
/// exactly the objects it held before, and its flags and comment are unchanged.
#[tokio::test]
async fn the_database_in_db_url_is_never_written_into() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let name = unique("userapp");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&common::server_url(&db)).unwrap();
    url.set_path(&name);
    let user = sqlx::PgPool::connect(url.as_str()).await.unwrap();
    sqlx::raw_sql("CREATE TABLE app_data (id int PRIMARY KEY); INSERT INTO app_data VALUES (1)")
        .execute(&user)
        .await
        .unwrap();
    let before = footprint(&user).await;

    let migrations = tempfile::tempdir().unwrap();
    std::fs::write(
        migrations.path().join("1_items.sql"),
        format!("CREATE TABLE items (id int); -- {name}"),
    )
    .unwrap();
    let migrations = migrations.path().display().to_string();
    let url_env = [("PGFRESH_SERVER", "url"), ("DB_URL", url.as_str())];
    let passing = rerun(PROBE, &url_env);
    assert!(passing.status.success(), "{}", output(&passing));
    let failing = rerun(
        PROBE,
        &[url_env[0], url_env[1], ("PGFRESH_TEST_PANIC", "1")],
    );
    assert!(!failing.status.success(), "{}", output(&failing));
    let new_set = rerun(
        PROBE,
        &[
            url_env[0],
            url_env[1],
            ("PGFRESH_TEST_MIGRATIONS", &migrations),
        ],
    );
    assert!(new_set.status.success(), "{}", output(&new_set));

    let after = footprint(&user).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM app_data")
        .fetch_one(&user)
        .await
        .unwrap();
    user.close().await;
    common::drop_kept(&admin, &common::probe_field(&failing, "name")).await;
    let new_name = common::probe_field(&new_set, "name");
    let hash8 = common::hash8(&new_name);
    drop_template_of(&admin, hash8).await;
    common::drop_kept(&admin, &name).await;
    assert_eq!(before, after, "pgfresh wrote into {name}");
    assert_eq!(rows, 1);
}

/// Drops the template (and the ready clones) of the migration set whose hash starts with
/// `hash8`.
async fn drop_template_of(admin: &sqlx::PgPool, hash8: &str) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE starts_with(datname::text, $1) \
         OR starts_with(datname::text, $2)",
    )
    .bind(format!("pgfresh_t_{hash8}"))
    .bind(format!("pgfresh_r_{hash8}"))
    .fetch_all(admin)
    .await
    .unwrap();
    for name in names {
        // Gone already when a sweep of another process took it meanwhile.
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE false"#
        )))
        .execute(admin)
        .await;
        common::drop_kept(admin, &name).await;
    }
}
