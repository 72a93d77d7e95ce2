#[pgfresh::test(migration = "migrations")]
async fn misspelt(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
