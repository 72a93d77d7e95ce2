//! `#[pgfresh::test]` end to end: a few forms against a real server (the thorough tests of
//! every form live elsewhere).

use pgfresh::sqlx::{self, PgPool};

/// The default: this crate's `migrations` folder, so the `datadump` table exists.
#[pgfresh::test]
async fn default_migrations(pool: PgPool) {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM datadump")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

/// `migrations = false`: an empty database.
#[pgfresh::test(migrations = false)]
async fn empty_database(pool: PgPool) -> Result<(), sqlx::Error> {
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(tables, 0);
    Ok(())
}

/// A fixture by path relative to this file, on a multi-thread runtime.
#[pgfresh::test(
    fixtures("fixtures/datadump_rows.sql"),
    flavor = "multi_thread",
    worker_threads = 2
)]
async fn fixture_rows(db: pgfresh::TestDb) {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM datadump")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::MultiThread
    );
}
