// The crate root here is trybuild's project under `target/tests/trybuild/pgfresh`: the message
// names the folder looked for there.
#[pgfresh::test(migrations = "no/such/folder")]
async fn missing_folder(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
