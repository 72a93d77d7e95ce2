//! The broker's restock: it answers every claim of its environment, so it makes its next
//! databases ahead, under its own test databases' names: a claim then takes one without a
//! statement, and its drop needs no marker to read (see [`crate::admin::drop_test_db`]). It
//! makes each by adopting a ready clone (a rename) when an earlier run left one, else by
//! cloning. The ones no claim took go to the ready clones when it leaves
//! ([`MadeAhead::give_back`]). The test databases whose drop waits for a quiet moment (see
//! [`super::idle`]) are kept here too: where the disk fills up, they go first with the rest
//! ([`Restock::forget`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::admin::{self, TemplateDb};
use crate::dispense::{Dispenser, Restock, Work};
use crate::server::{Server, Urgency};

/// The databases made ahead, per template hash.
#[derive(Debug, Default)]
pub(super) struct MadeAhead {
    templates: Mutex<HashMap<String, Ahead>>,
    /// Test databases to drop once no claim waits.
    drops: Mutex<Vec<String>>,
}

/// What is made ahead of one template.
#[derive(Debug, Default)]
struct Ahead {
    names: Vec<String>,
    /// A top-up is under way.
    busy: bool,
    /// No more are made.
    closed: bool,
}

impl MadeAhead {
    fn state(&self) -> MutexGuard<'_, HashMap<String, Ahead>> {
        self.templates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many are made ahead of `hash` now.
    pub fn count(&self, hash: &str) -> usize {
        self.state().get(hash).map_or(0, |ahead| ahead.names.len())
    }

    /// The names of those made ahead of `hash` now.
    pub fn names(&self, hash: &str) -> Vec<String> {
        self.state()
            .get(hash)
            .map_or_else(Vec::new, |ahead| ahead.names.clone())
    }

    fn drops(&self) -> MutexGuard<'_, Vec<String>> {
        self.drops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts the test database `name` aside, to drop later; how many are aside now.
    pub fn defer_drop(&self, name: String) -> usize {
        let mut drops = self.drops();
        drops.push(name);
        drops.len()
    }

    /// How many test databases are aside, to drop.
    pub fn deferred(&self) -> usize {
        self.drops().len()
    }

    /// The next test database to drop.
    pub fn next_drop(&self) -> Option<String> {
        self.drops().pop()
    }

    /// Makes no more, and gives those no claim took to the ready clones (as far as those of a
    /// template `hash` are fewer than `target(hash)`; the others are dropped), for the next
    /// process. When the broker leaves.
    pub async fn give_back(&self, dispenser: &Dispenser, target: impl Fn(&str) -> usize) {
        let Some(server) = dispenser.started_server() else {
            return;
        };
        let hashes: Vec<String> = self.state().keys().cloned().collect();
        for hash in hashes {
            // A top-up under way stops before its next clone: wait for it (a clone at most).
            while self.close(&hash) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let names = self.forget(&hash);
            if names.is_empty() {
                continue;
            }
            let unwanted = admin::give_to_ready(&server, names, &hash, target(&hash))
                .await
                .unwrap_or_else(|(e, left)| {
                    tracing::debug!("giving clones to the ready ones failed: {e}");
                    left
                });
            for name in unwanted {
                dispenser.drop_in_background(&name).await;
            }
        }
    }

    /// Makes no more of `hash`; `true` while a top-up is still making one.
    fn close(&self, hash: &str) -> bool {
        let mut state = self.state();
        let ahead = state.entry(hash.to_owned()).or_default();
        ahead.closed = true;
        ahead.busy
    }

    /// Makes one more of `template` (of `hash`) unless there are `target` or it is closed;
    /// `false` when it made none.
    async fn one_more(
        &self,
        server: &Server,
        template: &TemplateDb,
        hash: &str,
        target: usize,
    ) -> bool {
        {
            let mut state = self.state();
            let ahead = state.entry(hash.to_owned()).or_default();
            if ahead.closed || ahead.names.len() >= target {
                ahead.busy = false;
                return false;
            }
            ahead.busy = true;
        }
        let made = admin::claim_or_clone(server, template, hash, Urgency::CanWait).await;
        let mut state = self.state();
        let ahead = state.entry(hash.to_owned()).or_default();
        match made {
            Ok(name) => {
                ahead.names.push(name);
                true
            }
            Err(e) => {
                tracing::debug!("making a database ahead failed: {e}");
                ahead.busy = false;
                false
            }
        }
    }
}

impl Restock for MadeAhead {
    fn take(&self, hash: &str) -> Option<String> {
        self.state().get_mut(hash)?.names.pop()
    }

    fn top_up(
        self: Arc<Self>,
        server: Arc<Server>,
        template: TemplateDb,
        hash: String,
        target: usize,
    ) -> Work {
        Box::pin(async move {
            while self.one_more(&server, &template, &hash, target).await {}
            Ok(())
        })
    }

    /// The ones made ahead of `hash`, and every test database put aside to drop.
    fn forget(&self, hash: &str) -> Vec<String> {
        let mut state = self.state();
        let ahead = state.entry(hash.to_owned()).or_default();
        ahead.closed = true;
        let mut names = std::mem::take(&mut ahead.names);
        names.append(&mut self.drops());
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_template_hands_over_what_was_made_and_put_aside_and_takes_nothing_more() {
        let ahead = MadeAhead::default();
        ahead
            .state()
            .entry("h".into())
            .or_default()
            .names
            .extend(["a".to_owned(), "b".to_owned()]);
        assert_eq!(ahead.take("h").as_deref(), Some("b"));
        assert_eq!(ahead.take("other"), None);
        assert_eq!((ahead.count("h"), ahead.count("other")), (1, 0));
        assert_eq!(ahead.defer_drop("used".to_owned()), 1);
        assert_eq!(ahead.forget("h"), vec!["a".to_owned(), "used".to_owned()]);
        assert_eq!(ahead.deferred(), 0);
        assert_eq!(ahead.take("h"), None);
        assert!(ahead.state()["h"].closed);
    }
}
