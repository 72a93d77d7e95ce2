//! `#[pgfresh::test]` against real databases: every argument form (one taking nothing needs no
//! server) and both return types, each attribute argument (`migrations = "dir"`,
//! `migrations = false`, `migrator`, the `./migrations` default, every `fixtures(...)` form,
//! several groups in order, `flavor`, `worker_threads`), use inside `macro_rules!`, many tests
//! in parallel, and a failing or `Err`-returning test keeping its database and saying how to
//! connect.

mod common;

use pgfresh::TestDb;
use pgfresh::sqlx::pool::PoolConnection;
use pgfresh::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use pgfresh::sqlx::{self, Executor, PgPool, Postgres};

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}

// --- argument forms and return types ---------------------------------------------------------

#[pgfresh::test]
async fn takes_a_pool(pool: PgPool) {
    assert_eq!(
        common::tables(&pool).await,
        ["_sqlx_migrations", "datadump"]
    );
}

#[pgfresh::test]
async fn takes_a_connection(mut conn: PoolConnection<Postgres>) {
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.execute("INSERT INTO datadump (url, service, method) VALUES ('u', 's', 'GET')")
        .await
        .unwrap();
}

#[pgfresh::test]
async fn takes_options_as_two_arguments(options: PgPoolOptions, connect: PgConnectOptions) {
    let pool = options.connect_with(connect).await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM datadump").await, 0);
    pool.close().await;
}

#[pgfresh::test]
async fn takes_options_as_a_tuple((options, connect): (PgPoolOptions, PgConnectOptions)) {
    let pool = options.connect_with(connect).await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM datadump").await, 0);
    pool.close().await;
}

#[pgfresh::test]
async fn takes_the_guard(db: TestDb) {
    assert!(db.name().starts_with("pgfresh_"));
    assert_eq!(db.current_version().await.unwrap(), Some(20231002090000));
}

/// No argument: the attribute runs the body on its runtime (current-thread, timers on) and
/// makes no database for it (`a_test_that_takes_nothing_needs_no_server` runs it as a child
/// where no server answers).
#[pgfresh::test]
async fn takes_nothing() {
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    assert_eq!(flavor, tokio::runtime::RuntimeFlavor::CurrentThread);
    // Panics on a runtime without the time driver.
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    println!("NOTHING ran");
}

/// Where no server answers, a test that takes nothing passes, its body run, while one that
/// takes a pool fails for want of a database.
#[test]
fn a_test_that_takes_nothing_needs_no_server() {
    // Port 1: nothing listens there.
    let nowhere = [
        ("PGFRESH_SERVER", "url"),
        ("DB_URL", "postgresql://pgfresh@127.0.0.1:1/nowhere"),
    ];
    let with_a_pool = common::rerun("takes_a_pool", &nowhere);
    let text = common::output(&with_a_pool);
    assert!(!with_a_pool.status.success(), "{text}");
    assert!(
        text.contains("pgfresh could not provide a test database"),
        "{text}"
    );
    let out = common::rerun("takes_nothing", &nowhere);
    let text = common::output(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("NOTHING ran"), "{text}");
}

#[pgfresh::test]
async fn returns_ok(pool: PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(&pool).await?;
    Ok(())
}

#[pgfresh::test]
async fn two_tests_never_share_a_database(pool: PgPool) {
    // Runs beside every other test of this file: a row another test wrote would show here.
    assert_eq!(count(&pool, "SELECT count(*) FROM datadump").await, 0);
}

// --- migrations ------------------------------------------------------------------------------

#[pgfresh::test(migrations = "migrations")]
async fn migrations_by_folder(pool: PgPool) {
    assert_eq!(
        common::tables(&pool).await,
        ["_sqlx_migrations", "datadump"]
    );
}

#[pgfresh::test(migrations = "./tests/fixtures/attribute_migrations")]
async fn migrations_by_another_folder(pool: PgPool) {
    assert_eq!(common::tables(&pool).await, ["_sqlx_migrations", "widget"]);
}

#[pgfresh::test(migrations = false)]
async fn no_migrations_is_an_empty_database(pool: PgPool) {
    assert!(common::tables(&pool).await.is_empty());
}

#[pgfresh::test(migrator = "pgfresh::MIGRATOR")]
async fn migrations_by_migrator(db: TestDb) {
    assert_eq!(
        common::tables(db.pool()).await,
        ["_sqlx_migrations", "datadump"]
    );
}

#[pgfresh::test]
async fn the_applications_own_migrator_finds_nothing_to_do(pool: PgPool) {
    // What an application runs at start-up, against a database its test got.
    static APP: pgfresh::sqlx::migrate::Migrator = pgfresh::migrate!();
    APP.run(&pool).await.unwrap();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM _sqlx_migrations").await,
        2
    );
}

// --- fixtures --------------------------------------------------------------------------------

#[pgfresh::test(fixtures("datadump_rows"))]
async fn fixture_by_bare_name(pool: PgPool) {
    assert_eq!(count(&pool, "SELECT count(*) FROM datadump").await, 3);
}

#[pgfresh::test(fixtures(
    "fixtures/datadump_rows.sql",
    "../tests/fixtures/datadump_parse_catalog.sql"
))]
async fn fixtures_by_paths_relative_to_this_file(pool: PgPool) {
    assert_eq!(
        count(&pool, "SELECT count(*) FROM datadump WHERE parsed").await,
        2
    );
}

#[pgfresh::test(fixtures(path = "fixtures", scripts("datadump_rows", "datadump_parse_catalog")))]
async fn fixtures_by_path_and_scripts(pool: PgPool) {
    assert_eq!(
        count(&pool, "SELECT count(*) FROM datadump WHERE parsed").await,
        2
    );
}

/// Two groups, applied in the order given: the second needs the first's rows.
#[pgfresh::test(fixtures("datadump_rows"), fixtures("datadump_parse_catalog"))]
async fn several_fixture_groups_apply_in_order(pool: PgPool) {
    let marker: String =
        sqlx::query_scalar("SELECT response_body FROM datadump WHERE url = 'internal://parse-run'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(marker, "2");
}

#[pgfresh::test(migrations = false, fixtures("attribute_table"))]
async fn fixtures_without_migrations(pool: PgPool) {
    assert_eq!(common::tables(&pool).await, ["note"]);
}

// --- runtime ---------------------------------------------------------------------------------

#[pgfresh::test(flavor = "multi_thread", worker_threads = 3)]
async fn runs_on_a_multi_thread_runtime(pool: PgPool) {
    let handle = tokio::runtime::Handle::current();
    assert_eq!(
        handle.runtime_flavor(),
        tokio::runtime::RuntimeFlavor::MultiThread
    );
    assert_eq!(handle.metrics().num_workers(), 3);
    // A task on another worker uses the pool too.
    let other = pool.clone();
    tokio::spawn(async move { count(&other, "SELECT count(*) FROM datadump").await })
        .await
        .unwrap();
}

#[pgfresh::test]
async fn runs_on_a_current_thread_runtime_by_default(_pool: PgPool) {
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    assert_eq!(flavor, tokio::runtime::RuntimeFlavor::CurrentThread);
}

// --- inside macro_rules!, and many at once ---------------------------------------------------

macro_rules! many {
    ($($name:ident),*) => {$(
        #[pgfresh::test(fixtures("datadump_rows"))]
        async fn $name(pool: PgPool) {
            sqlx::query("INSERT INTO datadump (url, service, method) VALUES ('mine', 's', 'GET')")
                .execute(&pool)
                .await
                .unwrap();
            assert_eq!(count(&pool, "SELECT count(*) FROM datadump").await, 4);
        }
    )*};
}

many!(
    m01, m02, m03, m04, m05, m06, m07, m08, m09, m10, m11, m12, m13, m14, m15, m16
);

/// The attribute's arguments passed as fragments (`$x:literal` reaches the attribute wrapped
/// in an invisible group).
macro_rules! with_fragments {
    ($($name:ident: $migrations:literal, $flavor:literal;)*) => {$(
        #[pgfresh::test(migrations = $migrations, flavor = $flavor)]
        async fn $name(pool: PgPool) {
            assert_eq!(count(&pool, "SELECT count(*) FROM pg_class WHERE relname = 'datadump'").await, 0);
        }
    )*};
}

with_fragments! {
    fragments_current_thread: false, "current_thread";
    fragments_multi_thread: false, "multi_thread";
}

// --- a failing test keeps its database -------------------------------------------------------

/// The child processes' entry points of
/// `a_failing_or_err_test_keeps_its_database_and_says_how_to_connect`: with
/// `PGFRESH_TEST_PANIC` set, these fail: by a panic, or by returning `Err`, with the pool or
/// with the guard. They print their database's name first.
#[pgfresh::test]
#[ignore = "a child process's entry point, run by the test named in PARENT"]
async fn fails_by_panicking(pool: PgPool) {
    common::only_as_child("fails_by_panicking", PARENT);
    report(&pool).await;
    if std::env::var_os("PGFRESH_TEST_PANIC").is_some() {
        panic!("failing on purpose");
    }
}

#[pgfresh::test]
#[ignore = "a child process's entry point, run by the test named in PARENT"]
async fn fails_by_err(pool: PgPool) -> Result<(), String> {
    common::only_as_child("fails_by_err", PARENT);
    report(&pool).await;
    match std::env::var_os("PGFRESH_TEST_PANIC") {
        Some(_) => Err("failing on purpose".into()),
        None => Ok(()),
    }
}

#[pgfresh::test]
#[ignore = "a child process's entry point, run by the test named in PARENT"]
async fn fails_by_err_with_the_guard(db: TestDb) -> Result<(), String> {
    common::only_as_child("fails_by_err_with_the_guard", PARENT);
    report(db.pool()).await;
    match std::env::var_os("PGFRESH_TEST_PANIC") {
        Some(_) => Err("failing on purpose".into()),
        None => Ok(()),
    }
}

/// The test that runs the three above as children.
const PARENT: &str = "a_failing_or_err_test_keeps_its_database_and_says_how_to_connect";

async fn report(pool: &PgPool) {
    let name: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(pool)
        .await
        .unwrap();
    println!("ATTR name={name}");
}

#[tokio::test]
async fn a_failing_or_err_test_keeps_its_database_and_says_how_to_connect() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    for (test, fails) in [
        ("fails_by_panicking", true),
        ("fails_by_err", true),
        ("fails_by_err_with_the_guard", true),
        ("fails_by_err_with_the_guard", false),
    ] {
        let mut env = vec![("PGFRESH_SERVER", "url"), ("DB_URL", url.as_str())];
        if fails {
            env.push(("PGFRESH_TEST_PANIC", "1"));
        }
        let out = common::rerun(test, &env);
        let text = common::output(&out);
        assert_eq!(out.status.success(), !fails, "{test}:\n{text}");
        let name = text
            .lines()
            .find_map(|l| l.split("ATTR name=").nth(1))
            .unwrap_or_else(|| panic!("{test}: no name in:\n{text}"))
            .trim()
            .to_owned();
        if fails {
            assert!(
                text.contains(&format!(
                    "pgfresh: kept database {name} because the test failed"
                )),
                "{test}:\n{text}"
            );
            assert!(text.contains("psql 'postgres"), "{test}:\n{text}");
            assert!(
                common::database_exists(&admin, &name).await,
                "{test}: {name} is gone"
            );
            common::drop_kept(&admin, &name).await;
        } else {
            assert!(!text.contains("kept database"), "{test}:\n{text}");
            assert!(
                common::dropped_within(&admin, &name, std::time::Duration::from_secs(10)).await,
                "{test}: {name} is left"
            );
        }
    }
}
