#[pgfresh::test(migrations = false, fixtures("users", "../fixtures/posts.sql"))]
async fn mixed(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
