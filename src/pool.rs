//! A test's own pool.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::server::{CONNECT_TIMEOUT, waiting_for_a_slot};

/// A test's pool of at most `size` connections, with its first connection open: a server that
/// refuses the test fails here, not in the test's first query.
pub(crate) async fn connect(
    options: &PgConnectOptions,
    size: u32,
) -> std::result::Result<PgPool, sqlx::Error> {
    waiting_for_a_slot(|| connect_once(options, size)).await
}

async fn connect_once(
    options: &PgConnectOptions,
    size: u32,
) -> std::result::Result<PgPool, sqlx::Error> {
    // No ping before each acquire: a test's connections die only with their server (or by a
    // hand the test knows of), and then the test's next query should say so at once, in the
    // connection's words, instead of the pool trying to reconnect to a server that is gone
    // until `acquire_timeout` and saying only `PoolTimedOut`. It also spares a round trip
    // per query.
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .test_before_acquire(false)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options.clone())
        .await;
    match pool {
        // A pool that timed out says nothing of why; one direct attempt names the cause in
        // the server's words (say, too many connections for the role).
        Err(sqlx::Error::PoolTimedOut) => Err(
            match tokio::time::timeout(Duration::from_secs(3), PgConnection::connect_with(options))
                .await
            {
                Ok(Err(cause)) => cause,
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    sqlx::Error::PoolTimedOut
                }
                Err(_) => sqlx::Error::PoolTimedOut,
            },
        ),
        pool => pool,
    }
}
