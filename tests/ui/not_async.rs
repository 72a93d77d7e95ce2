#[pgfresh::test]
fn not_async(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
