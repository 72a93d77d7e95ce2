//! The application's Alembic history (`examples/alembic`) as a template source: the first
//! database of a run builds the template with `alembic upgrade head` (or finds it built), and
//! every later one is a clone. Prints both times and the hand-out times of 20 more databases.
//!
//! ```text
//! PATH="$(scripts/alembic-venv.sh | tail -n1):$PATH" cargo run --example from_alembic
//! ```

use std::time::{Duration, Instant};

use pgfresh::Harness;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let harness = Harness::from_command(["alembic", "upgrade", "head"])
        .current_dir("examples/alembic")
        .inputs(["examples/alembic"]);
    let start = Instant::now();
    let first = harness.test_db().await?;
    println!(
        "first database {} in {:.2?} (the template built by `alembic upgrade head`, or found)",
        first.name(),
        start.elapsed()
    );
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let db = harness.test_db().await?;
        times.push(start.elapsed());
        db.close().await?;
    }
    times.sort();
    println!(
        "20 more hand-outs: p50 {:.1?}, max {:.1?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    first.close().await?;
    Ok(())
}
