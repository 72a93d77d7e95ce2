use pgfresh::sqlx::PgPool;
use pgfresh::sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[pgfresh::test]
async fn three(options: PgPoolOptions, connect: PgConnectOptions, pool: PgPool) {
    drop((options, connect, pool));
}

// Keeps the imports used once the test above is an error.
fn main() {
    let _: Option<(PgPool, PgPoolOptions, PgConnectOptions)> = None;
}
