#[pgfresh::test(flavor = "multi_thread", worker_threads = 0)]
async fn zero(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

#[pgfresh::test(flavor = "current_thread", worker_threads = 2)]
async fn current_thread(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

#[pgfresh::test(worker_threads = 2)]
async fn no_flavor(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
