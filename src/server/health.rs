//! Whether a server is still the one pgfresh connected to: for a process that outlives many
//! runs (the broker), which must never hand out databases on a server that has gone away.

use std::time::Duration;

use super::{Server, Urgency};
use crate::error::Error;

/// How long a check waits for the server's answer before it says the server does not answer.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

impl Server {
    /// Why this server is no longer the one pgfresh connected to, in words that follow "the
    /// server": its data directory is gone (`pgfresh gc`, or removed by hand), it does not
    /// answer (stopped, killed), or it was restarted (which ended the owner lock's session).
    /// `None` while it is, or while every administrative connection is busy (no verdict).
    pub async fn gone(&self) -> Option<String> {
        if let Some(dir) = &self.data_dir
            && !dir.join("postmaster.pid").exists()
        {
            return Some(format!(
                "at {} lost its data directory {} (removed by `pgfresh gc` or by hand)",
                super::address(&self.options),
                dir.display()
            ));
        }
        let at = super::address(&self.options);
        // Busy (every connection in use, or the server full): that says nothing about it.
        let mut conn = match tokio::time::timeout(
            ANSWER_WAIT,
            self.admin_conn(Urgency::CanWait, "check that the server still runs"),
        )
        .await
        {
            Err(_) | Ok(Err(Error::Timeout { .. } | Error::TooManyConnections { .. })) => {
                return None;
            }
            Ok(Err(e)) => return Some(format!("at {at} stopped answering: {e}")),
            Ok(Ok(conn)) => conn,
        };
        let asked = sqlx::query_scalar::<_, String>("SELECT pg_postmaster_start_time()::text")
            .fetch_one(&mut *conn);
        match tokio::time::timeout(ANSWER_WAIT, asked).await {
            Ok(Ok(started)) if started == self.started_at => None,
            Ok(Ok(started)) => Some(format!(
                "at {at} was restarted (it started at {}, and again at {started})",
                self.started_at
            )),
            Ok(Err(e)) => {
                conn.discard();
                Some(format!("at {at} stopped answering: {e}"))
            }
            Err(_) => {
                conn.discard();
                Some(format!(
                    "at {at} did not answer within {} s",
                    ANSWER_WAIT.as_secs()
                ))
            }
        }
    }
}
