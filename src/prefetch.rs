//! Databases claimed for this process's next tests before they ask.
//!
//! Under `cargo test` one process runs many tests. Once it has handed out two databases of a
//! migration set, the worker claims the next one (from the broker, a clone it made ahead; else
//! itself, a ready clone renamed like any hand-out) and connects its pool in the background, so
//! the next test's hand-out waits neither for the claim nor for its first connection (5–7 ms of
//! backend start and SCRAM). Under nextest's
//! process-per-test mode a process runs one test, so nothing is prefetched there;
//! `PGFRESH_READY=0` turns prefetching off with the ready clones. A prefetched database that no
//! test took is dropped when the process exits, like any test's database.
//!
//! Such a pool is connected on the worker's runtime, which lives as long as the process: its
//! first connection is driven from there, the connections the test opens later from the test's
//! own runtime.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::config::Config;

/// What a prefetched database must match: the template it is a clone of and the pool size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub hash: String,
    pub size: u32,
}

/// The prefetched databases `T` (a claimed database and its connected pool) of this process,
/// one per [`Key`] at most.
pub(crate) struct Prefetch<T> {
    inner: Mutex<Inner<T>>,
    /// Whether prefetching is on at all (see [`enabled`]).
    enabled: bool,
}

struct Inner<T> {
    slots: HashMap<Key, Slot<T>>,
    /// The process is exiting: nothing more is kept.
    closed: bool,
}

struct Slot<T> {
    /// Hand-outs since the start, or since the last failed prefetch.
    handed_out: usize,
    /// A prefetch is under way.
    filling: bool,
    ready: Option<T>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            handed_out: 0,
            filling: false,
            ready: None,
        }
    }
}

impl<T> Prefetch<T> {
    /// No databases yet; prefetching on when `enabled` (say, [`enabled`]).
    pub fn new(enabled: bool) -> Self {
        Self {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                closed: false,
            }),
            enabled,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The database prefetched for `key`, if it is ready. A prefetch still under way is not
    /// waited for: when tests ask faster than databases are made, each makes its own, as
    /// many at a time as the server serves.
    pub fn take(&self, key: &Key) -> Option<T> {
        self.inner().slots.get_mut(key)?.ready.take()
    }

    /// Counts a hand-out for `key` and says whether to prefetch the next one now; when it says
    /// yes, the caller must end with [`put`](Self::put) or [`failed`](Self::failed).
    pub fn handed_out(&self, key: &Key) -> bool {
        let enabled = self.enabled;
        let mut inner = self.inner();
        let closed = inner.closed;
        let slot = inner.slots.entry(key.clone()).or_default();
        slot.handed_out += 1;
        let start =
            enabled && !closed && slot.handed_out >= 2 && !slot.filling && slot.ready.is_none();
        slot.filling |= start;
        start
    }

    /// Keeps `ready` for the next hand-out of `key`; gives it back when the process is exiting.
    pub fn put(&self, key: &Key, ready: T) -> Option<T> {
        let mut inner = self.inner();
        let closed = inner.closed;
        let slot = inner.slots.entry(key.clone()).or_default();
        slot.filling = false;
        if closed {
            return Some(ready);
        }
        slot.ready = Some(ready);
        None
    }

    /// A prefetch for `key` failed: the next two hand-outs take the usual way (and report what
    /// is wrong) before another is tried.
    pub fn failed(&self, key: &Key) {
        let mut inner = self.inner();
        let slot = inner.slots.entry(key.clone()).or_default();
        slot.filling = false;
        slot.handed_out = 0;
    }

    /// The process is exiting: takes every prefetched database, and no more are kept.
    pub fn close(&self) -> Vec<T> {
        let mut inner = self.inner();
        inner.closed = true;
        inner
            .slots
            .values_mut()
            .filter_map(|s| s.ready.take())
            .collect()
    }
}

/// Prefetching is on unless the ready clones are off or every test runs in its own process.
pub(crate) fn enabled() -> bool {
    let ready = Config::global().is_ok_and(|c| c.ready > 0);
    ready && std::env::var_os("NEXTEST_EXECUTION_MODE").is_none_or(|m| m != "process-per-test")
}

#[cfg(test)]
mod tests {
    use super::{Key, Prefetch};

    fn key(hash: &str, size: u32) -> Key {
        Key {
            hash: hash.to_owned(),
            size,
        }
    }

    #[test]
    fn nothing_is_taken_before_a_put() {
        let prefetch = Prefetch::<u32>::new(true);
        assert_eq!(prefetch.take(&key("a", 5)), None);
    }

    #[test]
    fn a_put_database_is_taken_once() {
        let prefetch = Prefetch::new(true);
        assert_eq!(prefetch.put(&key("a", 5), 1), None);
        assert_eq!(prefetch.take(&key("a", 5)), Some(1));
        assert_eq!(prefetch.take(&key("a", 5)), None);
    }

    #[test]
    fn a_database_is_taken_only_for_its_own_template_and_pool_size() {
        let prefetch = Prefetch::new(true);
        prefetch.put(&key("a", 5), 1);
        assert_eq!(prefetch.take(&key("b", 5)), None);
        assert_eq!(prefetch.take(&key("a", 6)), None);
        assert_eq!(prefetch.take(&key("a", 5)), Some(1));
    }

    #[test]
    fn the_first_hand_out_starts_no_prefetch() {
        let prefetch = Prefetch::<u32>::new(true);
        assert!(!prefetch.handed_out(&key("a", 5)));
    }

    #[test]
    fn the_second_hand_out_starts_a_prefetch() {
        let prefetch = Prefetch::<u32>::new(true);
        prefetch.handed_out(&key("a", 5));
        assert!(prefetch.handed_out(&key("a", 5)));
    }

    #[test]
    fn no_prefetch_starts_while_one_is_under_way() {
        let prefetch = Prefetch::<u32>::new(true);
        let k = key("a", 5);
        assert_eq!(
            [(); 4].map(|()| prefetch.handed_out(&k)),
            [false, true, false, false]
        );
    }

    #[test]
    fn no_prefetch_starts_while_one_is_ready() {
        let prefetch = Prefetch::new(true);
        let k = key("a", 5);
        prefetch.handed_out(&k);
        assert!(prefetch.handed_out(&k));
        assert_eq!(prefetch.put(&k, 1), None);
        assert!(!prefetch.handed_out(&k));
        assert!(!prefetch.handed_out(&k));
    }

    #[test]
    fn the_hand_out_after_a_take_starts_the_next_prefetch() {
        let prefetch = Prefetch::new(true);
        let k = key("a", 5);
        prefetch.handed_out(&k);
        assert!(prefetch.handed_out(&k));
        prefetch.put(&k, 1);
        assert_eq!(prefetch.take(&k), Some(1));
        assert!(prefetch.handed_out(&k));
    }

    #[test]
    fn after_a_failed_prefetch_the_next_starts_at_the_second_hand_out() {
        let prefetch = Prefetch::<u32>::new(true);
        let k = key("a", 5);
        prefetch.handed_out(&k);
        assert!(prefetch.handed_out(&k));
        prefetch.failed(&k);
        assert!(!prefetch.handed_out(&k));
        assert!(prefetch.handed_out(&k));
    }

    #[test]
    fn each_template_and_pool_size_counts_its_own_hand_outs() {
        let prefetch = Prefetch::<u32>::new(true);
        assert!(!prefetch.handed_out(&key("a", 5)));
        assert!(!prefetch.handed_out(&key("b", 5)));
        assert!(!prefetch.handed_out(&key("a", 6)));
        assert!(prefetch.handed_out(&key("a", 5)));
    }

    #[test]
    fn close_takes_every_ready_database() {
        let prefetch = Prefetch::new(true);
        prefetch.put(&key("a", 5), 1);
        prefetch.put(&key("b", 5), 2);
        let mut taken = prefetch.close();
        taken.sort_unstable();
        assert_eq!(taken, [1, 2]);
        assert_eq!(prefetch.take(&key("a", 5)), None);
    }

    #[test]
    fn once_closed_a_put_database_is_given_back() {
        let prefetch = Prefetch::new(true);
        prefetch.close();
        assert_eq!(prefetch.put(&key("a", 5), 1), Some(1));
        assert_eq!(prefetch.take(&key("a", 5)), None);
    }

    #[test]
    fn once_closed_no_prefetch_starts() {
        let prefetch = Prefetch::<u32>::new(true);
        let k = key("a", 5);
        prefetch.handed_out(&k);
        prefetch.close();
        assert!(!prefetch.handed_out(&k));
        assert!(!prefetch.handed_out(&k));
    }

    #[test]
    fn nothing_is_prefetched_when_prefetching_is_off() {
        let prefetch = Prefetch::<u32>::new(false);
        let k = key("a", 5);
        assert_eq!([(); 3].map(|()| prefetch.handed_out(&k)), [false; 3]);
    }
}
