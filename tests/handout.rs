//! A test database is at head, carries sqlx's migration records, is one test's own, and is
//! dropped by `close` and by `Drop`.

mod common;

use std::time::Duration;

use pgfresh::sqlx::{self, PgPool};
use pgfresh::{MIGRATOR, ServerSource};

#[tokio::test]
async fn head_schema_is_the_design_table() {
    let db = pgfresh::test_db().await;
    let columns: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text, column_default::text \
         FROM information_schema.columns WHERE table_name = 'datadump' ORDER BY ordinal_position",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let expected = [
        (
            "id",
            "integer",
            "NO",
            Some("nextval('datadump_id_seq'::regclass)"),
        ),
        ("url", "character varying", "NO", None),
        ("service", "character varying", "NO", None),
        ("method", "character varying", "NO", None),
        ("request_header", "jsonb", "YES", None),
        ("response_body", "text", "YES", None),
        ("response_header", "jsonb", "YES", None),
        ("parsed", "boolean", "YES", Some("false")),
        (
            "created_at",
            "timestamp without time zone",
            "NO",
            Some("CURRENT_TIMESTAMP"),
        ),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(n, t, null, d)| {
            (
                n.to_string(),
                t.to_string(),
                null.to_string(),
                d.map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(columns, expected);

    let unique: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'uq_api_response'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(unique, "UNIQUE (url, service, method)");
}

#[tokio::test]
async fn accessors_describe_the_database() {
    let db = pgfresh::test_db().await;
    assert!(
        db.name().starts_with("pgfresh_") && db.name().len() <= 63,
        "{}",
        db.name()
    );

    let via_url = PgPool::connect(&db.url()).await.unwrap();
    let via_options = PgPool::connect_with(db.connect_options()).await.unwrap();
    for pool in [db.pool(), &via_url, &via_options] {
        let name: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(name, db.name());
    }
    via_url.close().await;
    via_options.close().await;

    let debug = format!("{db:?}");
    assert!(debug.contains(db.name()), "{debug}");
    assert!(
        !debug.contains(&common::password(&db)),
        "Debug shows the password: {debug}"
    );
}

#[tokio::test]
async fn source_is_the_one_asked_for() {
    let db = pgfresh::test_db().await;
    let expected = match std::env::var("PGFRESH_SERVER").as_deref() {
        Ok("url") => Some(ServerSource::Url),
        Ok("docker") => Some(ServerSource::Docker),
        Ok("local") => Some(ServerSource::Local),
        _ if std::env::var_os("DB_URL").is_some() => Some(ServerSource::Url),
        _ => None,
    };
    if let Some(expected) = expected {
        assert_eq!(db.source(), expected);
    }
    if db.source() != ServerSource::Url {
        // Servers pgfresh starts are reachable on loopback only.
        let url = url::Url::parse(&db.url()).unwrap();
        assert_eq!(url.host_str(), Some("127.0.0.1"));
    }
}

#[tokio::test]
async fn each_test_gets_its_own_empty_database() {
    let a = pgfresh::test_db().await;
    let b = pgfresh::test_db().await;
    assert_ne!(a.name(), b.name());
    sqlx::query("INSERT INTO datadump (url, service, method) VALUES ('u', 's', 'GET')")
        .execute(a.pool())
        .await
        .unwrap();
    let count = |db: &pgfresh::TestDb| {
        let pool = db.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM datadump")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(&a).await, 1);
    assert_eq!(count(&b).await, 0);
}

#[tokio::test]
async fn close_and_drop_remove_the_database() {
    let keeper = pgfresh::test_db().await;
    let admin = common::admin(&keeper).await;

    let closed = pgfresh::test_db().await;
    let name = closed.name().to_owned();
    assert!(common::database_exists(&admin, &name).await);
    closed.close().await.unwrap();
    assert!(!common::database_exists(&admin, &name).await);

    let dropped = pgfresh::test_db().await;
    let name = dropped.name().to_owned();
    drop(dropped);
    assert!(common::dropped_within(&admin, &name, Duration::from_secs(10)).await);

    let kept = pgfresh::test_db().await;
    let name = kept.keep().unwrap();
    assert!(common::database_exists(&admin, &name).await);
    common::drop_kept(&admin, &name).await;
}

/// A session the test still holds when its guard drops (a connection of its own, a clone of
/// the pool kept somewhere) does not keep the database: after a grace for the sessions that are
/// on their way out, the drop ends it, and the session hears why.
#[tokio::test]
async fn a_session_held_past_the_test_is_ended_at_the_drop() {
    use pgfresh::sqlx::Connection as _;
    let keeper = pgfresh::test_db().await;
    let admin = common::admin(&keeper).await;
    let db = pgfresh::test_db().await;
    let name = db.name().to_owned();
    let mut held = sqlx::PgConnection::connect_with(&db.connect_options())
        .await
        .unwrap();
    drop(db);
    assert!(
        common::dropped_within(&admin, &name, Duration::from_secs(10)).await,
        "{name} outlived its test"
    );
    let err = sqlx::query("SELECT 1")
        .execute(&mut held)
        .await
        .expect_err("the held session was ended");
    let code = err.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("57P01"), "{err}");
}

#[tokio::test]
async fn application_migrator_finds_nothing_to_do() {
    let db = pgfresh::test_db().await;
    let before: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, installed_on::text FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        before.len(),
        MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .count()
    );
    MIGRATOR.run(db.pool()).await.unwrap();
    let after: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, installed_on::text FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn databases_carry_the_pgfresh_marker() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    // A test database's marker is its name, which carries its owner, and the connection limit
    // it was created with (0x7067): no comment, so nothing to write at the claim.
    let (is_template, mark, limit): (bool, Option<String>, i32) = sqlx::query_as(
        "SELECT datistemplate, shobj_description(oid, 'pg_database'), datconnlimit \
         FROM pg_database WHERE datname = $1",
    )
    .bind(db.name())
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(!is_template);
    assert_eq!(mark, None);
    assert_eq!(limit, 0x7067);
    let owner = common::owner_in_name(db.name()).expect("the name carries its owner");
    let held: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 \
         AND granted AND objid::bigint = $1)",
    )
    .bind(owner)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(
        held,
        "{} names owner {owner}, who holds no owner lock",
        db.name()
    );

    let hash8 = common::hash8(db.name());
    let templates: Vec<(bool, Option<String>)> = sqlx::query_as(
        "SELECT datistemplate, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE datname LIKE 'pgfresh_t_' || $1 || '%'",
    )
    .bind(hash8)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(templates.len(), 1);
    assert!(templates[0].0);
    let mark = templates[0].1.as_deref().unwrap();
    assert!(mark.starts_with("pgfresh:template suite="), "{mark}");
}

/// A freshly built template carries the relation cache init file (`pg_internal.init`) its
/// clones copy, so a test's first connection does not rebuild the cache from the catalogs.
/// `FILE_COPY` clones (PostgreSQL 15+) copy it; older servers clone otherwise, and only the
/// template is checked there.
#[tokio::test]
async fn templates_carry_the_relation_cache_init_file() {
    let dir = tempfile::tempdir().unwrap();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(
        dir.path().join("1_init.sql"),
        // ANALYZE (here, or autovacuum's while the template is built) removes the file.
        format!(
            "CREATE TABLE t (id bigint PRIMARY KEY); COMMENT ON TABLE t IS '{unique}'; ANALYZE;"
        ),
    )
    .unwrap();
    let db = pgfresh::Harness::from_dir(dir.path())
        .test_db()
        .await
        .unwrap();
    let admin = common::admin(&db).await;
    let hash8 = common::hash8(db.name());
    // The init file's size in the first database named like `pattern`, `None` without one.
    let init_file = async |pattern: String| -> Option<Option<i64>> {
        sqlx::query_scalar(
            "SELECT (pg_stat_file('base/' || oid || '/pg_internal.init', true)).size \
             FROM pg_database WHERE datname LIKE $1 ORDER BY oid LIMIT 1",
        )
        .bind(pattern)
        .fetch_optional(&admin)
        .await
        .unwrap()
    };
    let template = init_file(format!("pgfresh_t_{hash8}%")).await.flatten();
    assert!(template.is_some_and(|s| s > 0), "{template:?}");
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&admin)
        .await
        .unwrap();
    if version >= 150_000 {
        // A ready clone (made in the background after the hand-out) is an untouched copy.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let ready = loop {
            match init_file(format!("pgfresh_r_{hash8}%")).await {
                Some(size) => break size,
                None if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                None => panic!("no ready clone appeared within 20 s"),
            }
        };
        assert!(ready.is_some_and(|s| s > 0), "{ready:?}");
    }
    db.close().await.unwrap();
}
