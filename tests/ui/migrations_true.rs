#[pgfresh::test(migrations = true)]
async fn migrations_true(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
