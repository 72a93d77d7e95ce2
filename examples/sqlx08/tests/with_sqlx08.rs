//! Proves that a crate still on sqlx 0.8 can test with pgfresh (built on sqlx 0.9): pgfresh
//! hands out a fresh, migrated database, the test reaches it through `TestDb::url()` with its own
//! sqlx 0.8 `PgPool`, and rows written and read with sqlx 0.8 come back as stored; a team's own
//! migrations folder works the same way, and its sqlx 0.8 migrator finds them already applied.

use std::any::TypeId;
use std::path::Path;
use std::sync::LazyLock;

use pgfresh::Harness;
// The crate's own sqlx, 0.8, not `pgfresh::sqlx` (0.9).
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The team's own migrations (`examples/sqlx08/migrations`), read at run time by pgfresh, applied
/// once into a template and cloned for every test. Relative to the crate root, where `cargo test`
/// runs the test.
static HARNESS: LazyLock<Harness> = LazyLock::new(|| Harness::from_dir("migrations"));

/// A sqlx 0.8 pool on the test's database, from the URL pgfresh gives.
async fn sqlx08_pool(db: &pgfresh::TestDb) -> PgPool {
    PgPool::connect(&db.url())
        .await
        .unwrap_or_else(|e| panic!("sqlx 0.8 could not connect to {}: {e}", db.name()))
}

#[test]
fn the_pool_is_sqlx_08_not_pgfresh_s_sqlx_09() {
    // Two distinct sqlx crates in one test binary: were this the same type, the test would not
    // prove anything about sqlx 0.8 (`cargo tree -i sqlx@0.8` shows which sqlx it is).
    assert_ne!(
        TypeId::of::<sqlx::PgPool>(),
        TypeId::of::<pgfresh::sqlx::PgPool>()
    );
}

#[tokio::test]
async fn a_row_written_with_sqlx_08_reads_back() {
    // pgfresh's own schema (its `datadump` table), migrated to head.
    let db = pgfresh::test_db().await;
    let pool = sqlx08_pool(&db).await;

    let id: i32 = sqlx::query_scalar(
        "INSERT INTO datadump (url, service, method, response_body) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind("https://api.example.com/v1/items")
    .bind("catalog")
    .bind("GET")
    .bind(r#"{"items": [1, 2]}"#)
    .fetch_one(&pool)
    .await
    .unwrap();

    let row: (String, String, String, Option<String>, Option<bool>) = sqlx::query_as(
        "SELECT url, service, method, response_body, parsed FROM datadump WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "https://api.example.com/v1/items".to_owned(),
            "catalog".to_owned(),
            "GET".to_owned(),
            Some(r#"{"items": [1, 2]}"#.to_owned()),
            Some(false), // the column's default
        )
    );

    // pgfresh's own 0.9 pool sees the same database.
    let n: i64 = pgfresh::sqlx::query_scalar("SELECT count(*) FROM datadump")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(n, 1);

    // Our pool is ours to close; then pgfresh drops the database now and reports any error.
    pool.close().await;
    db.close().await.unwrap();
}

#[tokio::test]
async fn the_team_s_own_migrations_are_applied_and_sqlx_08_agrees() {
    let db = HARNESS.test_db().await.unwrap_or_else(|e| panic!("{e}"));
    let pool = sqlx08_pool(&db).await;

    // The same folder, through the team's sqlx 0.8 migrator (what its application runs at
    // startup): pgfresh's sqlx 0.9 recorded the migration in `_sqlx_migrations` with the same
    // version and checksum, so 0.8 finds nothing to do and no mismatch.
    let migrator = Migrator::new(Path::new("migrations")).await.unwrap();
    migrator.run(&pool).await.unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, [20240101000000]);

    let id: i64 = sqlx::query_scalar("INSERT INTO account (email) VALUES ($1) RETURNING id")
        .bind("ada@example.com")
        .fetch_one(&pool)
        .await
        .unwrap();
    let email: String = sqlx::query_scalar("SELECT email FROM account WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(email, "ada@example.com");

    pool.close().await;
    // Left to drop: the database goes in the background when the guard does.
    drop(db);
}
