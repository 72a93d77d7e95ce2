// The crate root here is trybuild's project (in the target directory): the message names the
// folder relative to it, the same wherever that is.
#[pgfresh::test(migrations = "no/such/folder")]
async fn missing_folder(pool: pgfresh::sqlx::PgPool) {
    drop(pool);
}

fn main() {}
