//! Waiting for a connection slot instead of failing at once.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::config::{Config, DEFAULT_SLOT_WAIT};

/// Runs `attempt` again while the server refuses it for lack of connection slots, backing off
/// from 5 ms to 250 ms, for at most `PGFRESH_SLOT_WAIT` (default
/// [`DEFAULT_SLOT_WAIT`](crate::config::DEFAULT_SLOT_WAIT)); then returns the last refusal.
pub(crate) async fn waiting_for_a_slot<T, F, Fut>(mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let limit = Config::global().map_or(DEFAULT_SLOT_WAIT, |c| c.slot_wait);
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match attempt().await {
            Err(e) if no_slot(&e) && started.elapsed() + pause < limit => {
                tracing::debug!("no connection slot yet, waiting {pause:?}: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// Whether the server refused a connection for lack of slots.
fn no_slot(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "53300")
}
