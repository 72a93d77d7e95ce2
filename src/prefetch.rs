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

impl<T> Default for Prefetch<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                closed: false,
            }),
        }
    }
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
        let enabled = enabled();
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
fn enabled() -> bool {
    let ready = Config::global().is_ok_and(|c| c.ready > 0);
    ready && std::env::var_os("NEXTEST_EXECUTION_MODE").is_none_or(|m| m != "process-per-test")
}
