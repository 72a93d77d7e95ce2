// Every argument form and return type `#[pgfresh::test]` takes, type-checked (through
// `__test_type_check`, its expansion without the `#[test]` mark).

use pgfresh::TestDb;
use pgfresh::sqlx::pool::PoolConnection;
use pgfresh::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use pgfresh::sqlx::{PgPool, Postgres};

#[pgfresh_macros::__test_type_check]
async fn nothing() {}

#[pgfresh_macros::__test_type_check(migrations = false)]
async fn pool(pool: PgPool) {
    drop(pool);
}

#[pgfresh_macros::__test_type_check(migrator = "pgfresh::MIGRATOR")]
async fn connection(conn: PoolConnection<Postgres>) -> Result<(), pgfresh::sqlx::Error> {
    drop(conn);
    Ok(())
}

#[pgfresh_macros::__test_type_check(migrations = false, flavor = "multi_thread", worker_threads = 2)]
async fn test_db(db: TestDb) {
    drop(db);
}

#[pgfresh_macros::__test_type_check(migrations = false)]
async fn options_tuple((pool, connect): (PgPoolOptions, PgConnectOptions)) {
    drop((pool, connect));
}

#[pgfresh_macros::__test_type_check(migrations = false)]
async fn options(pool: PgPoolOptions, connect: PgConnectOptions) -> Result<(), String> {
    drop((pool, connect));
    Ok(())
}

fn main() {}
