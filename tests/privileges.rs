//! Tests that see production's privileges: a role that is not a superuser (`with_role`,
//! `PGFRESH_ROLE`, the attribute's `role = "…"`) owns the template and every clone, the
//! migrations run as it (hstore, a trusted extension, included), and what needs more fails:
//! an event trigger in a migration, a catalog the role was not granted. Against the
//! environment's source; then a `DB_URL` role with and without `CREATEROLE`, on a cluster of
//! the test's own.

mod common;

use pgfresh::sqlx::{self, PgPool, Postgres, pool::PoolConnection};
use pgfresh::{Harness, TestDb};

use common::{OwnServer, PROBE, env_with, output, rerun};

/// The role these tests connect as: pgfresh makes it on first use.
const ROLE: &str = "pgfresh_test_app";

static AS_ROLE: Harness = Harness::new(&pgfresh::MIGRATOR).with_role(ROLE);

async fn who(pool: &PgPool) -> (String, bool, String) {
    sqlx::query_as(
        "SELECT current_user::text, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
         (SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_project_s_migrations_run_as_the_role_which_owns_the_template_and_the_clone() {
    let db = AS_ROLE.test_db().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        who(db.pool()).await,
        (ROLE.to_owned(), false, ROLE.to_owned())
    );
    let owners: Vec<(String, String)> = sqlx::query_as(
        "SELECT tablename::text, tableowner::text FROM pg_tables WHERE schemaname = 'public' \
         ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert!(owners.iter().any(|(t, _)| t == "datadump"), "{owners:?}");
    assert!(owners.iter().all(|(_, o)| o == ROLE), "{owners:?}");
    // hstore is a trusted extension: the role installed it, as the database's owner.
    let hstore: Option<String> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(extowner)::text FROM pg_extension WHERE extname = 'hstore'",
    )
    .fetch_optional(db.pool())
    .await
    .unwrap();
    assert_eq!(hstore.as_deref(), Some(ROLE));
    assert!(db.url().contains(&format!("{ROLE}:")), "{}", db.url());
    // The role may create what an application creates, in its own database.
    sqlx::query("CREATE TABLE scratch (id int)")
        .execute(db.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_catalog_the_role_was_not_granted_cannot_be_read() {
    let db = AS_ROLE.test_db().await.unwrap_or_else(|e| panic!("{e}"));
    let e = sqlx::query("SELECT rolpassword FROM pg_authid")
        .execute(db.pool())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("permission denied for table pg_authid"), "{e}");
}

#[tokio::test]
async fn the_role_is_part_of_the_template_s_hash() {
    let as_role = AS_ROLE.test_db().await.unwrap_or_else(|e| panic!("{e}"));
    let as_server = pgfresh::test_db().await;
    let hash = |db: &TestDb| db.name().split('_').nth(1).unwrap().to_owned();
    assert_ne!(hash(&as_role), hash(&as_server));
    let (user, _, owner) = who(as_server.pool()).await;
    assert_ne!(user, ROLE);
    assert_ne!(owner, ROLE);
}

/// A migration set of one migration that only a superuser may run.
fn event_trigger_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(
        dir.path().join("1_event_trigger.sql"),
        format!(
            "-- {unique}\n\
             CREATE TABLE audit (id int);\n\
             CREATE FUNCTION audit_ddl() RETURNS event_trigger LANGUAGE plpgsql AS \
             $$ BEGIN END $$;\n\
             CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION audit_ddl();\n"
        ),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn a_migration_that_creates_an_event_trigger_fails_as_the_role_and_passes_without() {
    let dir = event_trigger_folder();
    let e = Harness::from_dir(dir.path())
        .with_role(ROLE)
        .test_db()
        .await
        .unwrap_err()
        .to_string();
    for needle in [
        "migration 1 (event trigger",
        "permission denied to create event trigger \"audit_ddl\"",
        &format!("it ran as role {ROLE}, which is not a superuser"),
    ] {
        assert!(e.contains(needle), "no {needle:?} in: {e}");
    }
    // The half-built template was dropped.
    let template = e
        .split_whitespace()
        .find(|w| w.starts_with("pgfresh_t_"))
        .unwrap_or_else(|| panic!("no template named in: {e}"))
        .trim_end_matches([':', ',', '.']);
    let admin = pgfresh::test_db().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(template)
        .fetch_one(admin.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "{template} is still there");

    // As the server's role (a superuser on every source pgfresh starts), it passes.
    let db = Harness::from_dir(dir.path())
        .test_db()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let triggers: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_event_trigger")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(triggers, 1);
}

#[tokio::test]
async fn a_role_pgfresh_did_not_make_or_a_superuser_is_refused() {
    let admin = pgfresh::test_db().await;
    let foreign = format!(
        "pgfresh_foreign_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {foreign} LOGIN")))
        .execute(admin.pool())
        .await
        .unwrap();
    let refused =
        |harness: Harness| async move { harness.test_db().await.unwrap_err().to_string() };
    let name: &'static str = Box::leak(foreign.clone().into_boxed_str());
    let e = refused(Harness::from_dir("migrations").with_role(name)).await;
    assert!(
        e.contains(&format!(
            "role {foreign}: exists, and pgfresh did not make it"
        )) && e.contains(&format!("COMMENT ON ROLE \"{foreign}\" IS 'pgfresh role'")),
        "{e}"
    );
    let (server_role, _, _) = who(admin.pool()).await;
    let superuser: &'static str = Box::leak(server_role.into_boxed_str());
    let e = refused(Harness::from_dir("migrations").with_role(superuser)).await;
    assert!(
        e.contains(&format!("role {superuser}: is a superuser")),
        "{e}"
    );
    let e = refused(Harness::from_dir("migrations").with_role("App-Test")).await;
    assert!(
        e.contains("Harness::with_role=App-Test is not valid: expected a role name"),
        "{e}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {foreign}")))
        .execute(admin.pool())
        .await
        .unwrap();
}

#[pgfresh::test(role = "pgfresh_test_app")]
async fn the_attribute_hands_a_pool_as_the_role(pool: PgPool) {
    assert_eq!(who(&pool).await.0, ROLE);
}

#[pgfresh::test(role = "pgfresh_test_app")]
async fn the_attribute_hands_a_connection_as_the_role(mut conn: PoolConnection<Postgres>) {
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(user, ROLE);
}

#[pgfresh::test(role = "pgfresh_test_app", fixtures("datadump_rows"))]
async fn the_attribute_hands_a_test_db_as_the_role_with_its_fixtures(db: TestDb) {
    assert_eq!(who(db.pool()).await.0, ROLE);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM datadump")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3);
}

#[pgfresh::test(role = "pgfresh_test_app", migrations = false)]
async fn the_attribute_hands_an_empty_database_owned_by_the_role(
    pool: PgPool,
) -> Result<(), sqlx::Error> {
    assert_eq!(who(&pool).await, (ROLE.to_owned(), false, ROLE.to_owned()));
    sqlx::query("CREATE TABLE scratch (id int)")
        .execute(&pool)
        .await?;
    Ok(())
}

/// A role of `DB_URL` on a cluster of the test's own, made by its superuser.
async fn db_url_role(server: &OwnServer, name: &str, attributes: &str) -> String {
    let admin = PgPool::connect(&server.admin_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {name} LOGIN {attributes} PASSWORD 'pw_{name}'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    let (port, _) = server.state().unwrap();
    format!("postgres://{name}:pw_{name}@127.0.0.1:{port}/postgres")
}

/// The cluster of `server`, started by a child (and held for the test).
fn started(server: &mut OwnServer) {
    let out = rerun(PROBE, &env_with(&server.env(), &[]));
    assert!(out.status.success(), "{}", output(&out));
    server.hold(std::time::Duration::from_secs(120));
}

fn local() -> bool {
    common::available(common::local_binaries(), "PostgreSQL binaries")
}

#[tokio::test]
async fn a_db_url_role_with_createrole_makes_the_role_and_one_without_is_told_the_sql() {
    if !local() {
        return;
    }
    let mut server = OwnServer::new("local", 2);
    started(&mut server);

    let url = db_url_role(&server, "dburl_maker", "CREATEDB CREATEROLE").await;
    let as_url = |url: &str, role: &str| {
        rerun(
            PROBE,
            &[
                ("PGFRESH_SERVER", "url"),
                ("DB_URL", url),
                ("PGFRESH_ROLE", role),
                ("PGFRESH_BROKER", "off"),
            ],
        )
    };
    let out = as_url(&url, "dburl_made_app");
    assert!(out.status.success(), "{}", output(&out));
    let admin = PgPool::connect(&server.admin_url()).await.unwrap();
    let (super_, comment): (bool, Option<String>) = sqlx::query_as(
        "SELECT rolsuper, shobj_description(oid, 'pg_authid') FROM pg_roles \
         WHERE rolname = 'dburl_made_app'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!((super_, comment.as_deref()), (false, Some("pgfresh role")));
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT pg_get_userbyid(datdba)::text FROM pg_database \
         WHERE datname LIKE 'pgfresh_t_%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(owners.contains(&"dburl_made_app".to_owned()), "{owners:?}");

    // Without CREATEROLE: the error names the SQL a superuser runs once; once run, it works.
    let url = db_url_role(&server, "dburl_plain", "CREATEDB").await;
    let out = as_url(&url, "dburl_plain_app");
    assert!(!out.status.success(), "{}", output(&out));
    let text = output(&out);
    let start = text
        .find("have a superuser run once: ")
        .unwrap_or_else(|| panic!("no SQL to run in:\n{text}"))
        + "have a superuser run once: ".len();
    let last = "GRANT \"dburl_plain_app\" TO \"dburl_plain\";";
    let end = text[start..]
        .find(last)
        .map(|e| start + e + last.len())
        .unwrap_or_else(|| panic!("no {last:?} in:\n{text}"));
    let sql = &text[start..end];
    for needle in [
        "role dburl_plain_app: pgfresh's role dburl_plain may not make or grant it",
        "Give dburl_plain CREATEROLE",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    assert!(
        sql.starts_with("CREATE ROLE \"dburl_plain_app\" LOGIN NOSUPERUSER"),
        "{sql}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&admin)
        .await
        .unwrap();
    let out = as_url(&url, "dburl_plain_app");
    assert!(out.status.success(), "{}", output(&out));
    admin.close().await;
}
