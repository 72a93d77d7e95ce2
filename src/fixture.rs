//! The crate's own schema as a ready-made fixture.

use crate::harness::Harness;
use crate::testdb::TestDb;

static HARNESS: Harness = Harness::new(&crate::MIGRATOR);

/// A database with pgfresh's own schema ([`MIGRATOR`](crate::MIGRATOR)) at head.
///
/// # Panics
///
/// With the error's full message when no database can be had: meant for fixtures, where a
/// panic is how a setup failure is reported.
pub async fn test_db() -> TestDb {
    HARNESS
        .test_db()
        .await
        .unwrap_or_else(|e| panic!("pgfresh could not provide a test database: {e}"))
}

/// The rstest fixture: a database with pgfresh's own schema at head.
///
/// ```no_run
/// use pgfresh::{TestDb, db};
/// use rstest::rstest;
///
/// #[rstest]
/// #[tokio::test]
/// async fn stores_a_row(#[future] db: TestDb) {
///     let db = db.await;
///     let n: i64 = sqlx::query_scalar("SELECT count(*) FROM datadump")
///         .fetch_one(db.pool())
///         .await
///         .unwrap();
///     assert_eq!(n, 0);
/// }
/// ```
#[rstest::fixture]
pub async fn db() -> TestDb {
    test_db().await
}
