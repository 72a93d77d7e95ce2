//! A template built by a Rust migration library: refinery runs `examples/refinery/migrations`
//! into pgfresh's template through `Harness::from_fn`, and each test clones it.
//!
//! ```text
//! cargo run --example refinery
//! ```

use std::time::Instant;

use pgfresh::Harness;
use pgfresh::sqlx::ConnectOptions;

mod embedded {
    refinery::embed_migrations!("examples/refinery/migrations");
}

/// Bump the key when the migration code changes (the inputs cover the SQL files).
fn harness() -> Harness {
    Harness::from_fn("refinery 0.8", |options| async move {
        // tokio-postgres takes the URL without sqlx's own parameters.
        let mut url = options.to_url_lossy();
        url.set_query(None);
        let (mut client, connection) =
            tokio_postgres::connect(url.as_str(), tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        embedded::migrations::runner()
            .run_async(&mut client)
            .await?;
        drop(client);
        let _ = driver.await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .inputs(["examples/refinery/migrations"])
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let harness = harness();
    let start = Instant::now();
    let db = harness.test_db().await?;
    println!(
        "first database {} in {:.0?} (the template built by refinery, or found)",
        db.name(),
        start.elapsed()
    );
    let id: i64 =
        pgfresh::sqlx::query_scalar("INSERT INTO account (email) VALUES ($1) RETURNING id")
            .bind("ada@example.com")
            .fetch_one(db.pool())
            .await?;
    println!("inserted account {id}");
    let start = Instant::now();
    let second = harness.test_db().await?;
    println!(
        "second database {} in {:.0?}",
        second.name(),
        start.elapsed()
    );
    db.close().await?;
    second.close().await?;
    Ok(())
}
