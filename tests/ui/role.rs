#[pgfresh::test(role = "App-Test")]
async fn not_a_role_name(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

#[pgfresh::test(role = app_test)]
async fn not_a_string(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

#[pgfresh::test(role = "app_test", role = "app")]
async fn twice(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

#[pgfresh::test(rol = "app_test")]
async fn misspelt(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
