#[pgfresh::test(fixtures("users"))]
async fn no_database() {}

#[pgfresh::test(migrations = "migrations")]
async fn no_database_either() {}

fn main() {}
