// `fixtures/no_such_fixture.sql` beside this file.
#[pgfresh::test(migrations = false, fixtures("no_such_fixture"))]
async fn bare_name(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

// Relative to this file's folder.
#[pgfresh::test(migrations = false, fixtures("../fixtures/no_such_fixture.sql"))]
async fn path(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

// `sql/no_such_fixture.sql` beside this file.
#[pgfresh::test(migrations = false, fixtures(path = "sql", scripts("no_such_fixture")))]
async fn scripts(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
