//! Gets a fresh database at head from whichever server source is available (or the one
//! `PGFRESH_SERVER` names), writes and reads a `datadump` row, and cleans up, printing which
//! source it used and how long each step took: the first database of a run includes starting
//! (or finding) the server and building (or finding) the template; the second is a warm
//! hand-out, what every later test pays.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::time::Instant;

use pgfresh::TestDb;
use pgfresh::datadump::{self, InsertOutcome, NewApiResponse};

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
        "source: {}\nfirst database {} ready in {:.2?} (cold: start or find the server, build or find the template)",
        db.source(),
        db.name(),
        start.elapsed()
    );

    let step = Instant::now();
    let second = pgfresh::Harness::new(&pgfresh::MIGRATOR).test_db().await?;
    println!(
        "second database {} ready in {:.0?} (warm hand-out: template and server already there)",
        second.name(),
        step.elapsed()
    );
    second.close().await?;

    let step = Instant::now();
    let mut call = NewApiResponse::new("https://api.example.com/v1/items?page=1", "items", "GET");
    call.request_header = Some(serde_json::json!({"Accept": "application/json"}));
    call.response_body = Some(r#"{"items": []}"#.to_owned());
    let InsertOutcome::Stored(id) = datadump::insert(db.pool(), &call).await? else {
        return Err("a fresh database already had this row".into());
    };
    let row = datadump::get(db.pool(), id)
        .await?
        .ok_or("the row is gone")?;
    println!(
        "inserted and read back datadump row {id} ({} {}, parsed={:?}) in {:.0?}",
        row.method,
        row.url,
        row.parsed,
        step.elapsed()
    );

    let step = Instant::now();
    let name = db.name().to_owned();
    db.close().await?;
    println!(
        "dropped {name} in {:.0?}; total {:.2?}",
        step.elapsed(),
        start.elapsed()
    );
    Ok(())
}
