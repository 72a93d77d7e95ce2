//! The broker's watch on its server: a broker outlives the runs it serves, and its server can go
//! away under it (`pgfresh gc` removes the cluster, the postmaster is killed, a `DB_URL` server
//! restarts, the run directory is deleted). Once [`Server::gone`](crate::server) says so, the
//! broker hands out nothing more: its socket goes at once (the next claim finds no broker and
//! starts a fresh one, which finds or starts a server that answers), and it ends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::dispense::Dispenser;

/// How often the broker checks its server while it runs.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The watch: the verdict once there is one.
pub(super) struct Watch {
    dispenser: Arc<Dispenser>,
    /// The broker's socket, removed with the verdict.
    socket: PathBuf,
    verdict: watch::Sender<Option<String>>,
    /// One check at a time: a test's report and the periodic check share one.
    checking: tokio::sync::Mutex<()>,
}

impl Watch {
    pub fn new(dispenser: Arc<Dispenser>, socket: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            dispenser,
            socket,
            verdict: watch::Sender::new(None),
            checking: tokio::sync::Mutex::new(()),
        })
    }

    /// Why the broker ends (its server is gone, or gc asked), once it does.
    pub fn verdict(&self) -> Option<String> {
        self.verdict.borrow().clone()
    }

    /// Checks the server now (or waits for the check under way), and returns the verdict.
    pub async fn check(&self) -> Option<String> {
        let _one = self.checking.lock().await;
        if let Some(verdict) = self.verdict() {
            return Some(verdict);
        }
        let verdict = self.dispenser.started_server()?.gone().await?;
        let verdict = format!("the broker's server {verdict}");
        self.end(&verdict);
        Some(verdict)
    }

    /// Ends the broker for `reason` (a whole clause: "the broker's server … is gone"): nobody
    /// finds it any more (the next claim starts a fresh one), and it leaves.
    pub fn end(&self, reason: &str) {
        tracing::info!("the broker stops handing out: {reason}");
        let _ = std::fs::remove_file(&self.socket);
        self.verdict.send_if_modified(|verdict| {
            verdict.get_or_insert_with(|| reason.to_owned());
            true
        });
    }

    /// Checks every [`CHECK_EVERY`] until the server is gone; returns the verdict.
    pub async fn run(self: Arc<Self>) -> String {
        let mut found = self.verdict.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {
                    if let Some(verdict) = self.check().await {
                        return verdict;
                    }
                }
                // A test's report found it first.
                _ = found.changed() => {
                    if let Some(verdict) = self.verdict() {
                        return verdict;
                    }
                }
            }
        }
    }
}
