#[pgfresh::test(migrations = "migrations", migrator = "pgfresh::MIGRATOR")]
async fn both(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
