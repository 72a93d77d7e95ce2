//! Gets a fresh database at head from whichever server source is available, writes and reads
//! a `datadump` row, and cleans up, printing how long each step took.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::time::Instant;

use pgfresh::TestDb;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("quickstart failed: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let db: TestDb = pgfresh::Harness::new(&pgfresh::MIGRATOR).test_db().await?;
    println!(
        "source: {}\nfirst database {} ready in {:.0?} (server start + template build + clone)",
        db.source(),
        db.name(),
        start.elapsed()
    );

    let step = Instant::now();
    let second = pgfresh::Harness::new(&pgfresh::MIGRATOR).test_db().await?;
    println!(
        "second database {} ready in {:.0?} (clone of the cached template)",
        second.name(),
        step.elapsed()
    );
    second.close().await?;

    let step = Instant::now();
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO datadump (url, service, method, request_header, response_body) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind("https://api.example.com/v1/items?page=1")
    .bind("items")
    .bind("GET")
    .bind(serde_json::json!({"Accept": "application/json"}))
    .bind(r#"{"items": []}"#)
    .fetch_one(db.pool())
    .await?;
    let (url, parsed): (String, Option<bool>) =
        sqlx::query_as("SELECT url, parsed FROM datadump WHERE id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await?;
    println!(
        "inserted and read back row {id} ({url}, parsed={parsed:?}) in {:.0?}",
        step.elapsed()
    );

    let step = Instant::now();
    let name = db.name().to_owned();
    db.close().await?;
    println!(
        "dropped {name} in {:.0?}; total {:.0?}",
        step.elapsed(),
        start.elapsed()
    );
    Ok(())
}
