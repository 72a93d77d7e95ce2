//! The broker's idle work: what it does while no claim waits, so that the tests of the next run
//! find their databases made, and no test waits behind another's drop.
//!
//! - **Drops wait.** When a test gives its database back, the broker puts it aside
//!   ([`Idle::drop_later`]) and drops it once no claim has come for [`QUIET`]: during a run the
//!   server's CPU goes to the claims. Put aside are at most [`Idle::limit`] databases, and only
//!   while the data directory's file system has room to spare ([`Server::spare_space`]); past
//!   that a database is dropped at once, as before. Where the disk fills up they are the first
//!   thing dropped (the dispenser's disk-full path, through
//!   [`Restock::forget`](crate::dispense::Restock::forget)).
//! - **Ready clones for the next run.** The broker counts the claims of each template in the
//!   latest run (a run is one `cargo test` or `cargo nextest run`, see
//!   [`crate::marker::run_id`]). Once the run is over (no claim for [`QUIET`]) it makes that
//!   many ready clones of each template, plus the `PGFRESH_READY` it keeps made ahead while a
//!   run lasts (without them the run's last claims would wait for new clones), less those made
//!   ahead now, at most [`Idle::limit`], and only while the file system keeps room to spare for
//!   another copy of the template. The ready clones outlive the broker and are adopted by the
//!   next one (see [`super::ahead`]); the sweep drops them only with their template, `pgfresh
//!   gc` with everything else.
//! - **Their relation cache file.** Before it makes the first of them in a run it gives the
//!   template its relation cache init file back if it lost it, and then gives the file to each
//!   ready clone (and each made ahead) without it, one connection each (see
//!   [`crate::relcache`]): a test's first connection then does not build its cache from the
//!   catalogs. Not with `PGFRESH_READY_MAX=0`, which turns idle work off.
//! - **Claims first.** Idle work is one statement at a time, on one connection of the
//!   administrative pool that can wait; before each the broker looks whether a claim came in
//!   the last [`QUIET`], and waits if one did. A claim never queues behind idle work: it gets a
//!   connection of its own.
//!
//! The broker stays until its idle work is done (or its server is gone), then leaves as before.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::ahead::MadeAhead;
use crate::admin;
use crate::config::Config;
use crate::dispense::Dispenser;
use crate::relcache;
use crate::server::{Server, Urgency};

/// How long after the last claim the broker waits before idle work: longer than the gap
/// between two tests of a run (a process starting, under nextest), shorter than an edit.
pub(super) const QUIET: Duration = Duration::from_millis(300);

/// How often the broker looks for idle work.
const TICK: Duration = Duration::from_millis(50);

/// `PGFRESH_READY_MAX` unset: the ready clones between runs are as many as the last run used,
/// at most this many per template (bounded by free space too, where pgfresh sees the disk).
const DEFAULT_LIMIT: usize = 256;

/// The broker's idle work and what it knows of the claims.
pub(super) struct Idle {
    ahead: Arc<MadeAhead>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Claims being answered.
    claiming: usize,
    /// When the last claim came or was answered.
    last_claim: Option<Instant>,
    /// The latest run, and per template hash its suite and how many databases it claimed.
    run: String,
    used: HashMap<String, (String, usize)>,
    /// Templates whose ready clones are made for the latest run (or cannot be).
    refilled: HashSet<String>,
    /// Templates whose relation cache file was looked at in the latest run.
    restored: HashSet<String>,
    /// Per template, the ready clones given their relation cache file in the latest run, and
    /// whether none is left without it.
    cached: HashMap<String, (Vec<String>, bool)>,
    /// A step of idle work is under way.
    stepping: bool,
}

impl State {
    /// Whether no ready clone of `hash` is left without its relation cache file.
    fn all_cached(&self, hash: &str) -> bool {
        self.cached.get(hash).is_some_and(|(_, done)| *done)
    }
}

/// A claim being answered: idle work waits while it lasts, and for [`QUIET`] after.
pub(super) struct Claiming<'a>(&'a Idle);

impl Drop for Claiming<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.claiming -= 1;
        state.last_claim = Some(Instant::now());
    }
}

impl Idle {
    pub fn new(ahead: Arc<MadeAhead>) -> Self {
        Self {
            ahead,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most ready clones per template between runs, and the most databases put aside to
    /// drop: `PGFRESH_READY_MAX` (0: no idle work, drops at once), else [`DEFAULT_LIMIT`].
    pub fn limit() -> usize {
        Config::global()
            .ok()
            .and_then(|c| c.ready_max)
            .unwrap_or(DEFAULT_LIMIT)
    }

    /// A claim of the run `run` came: a new run starts a new count.
    pub fn claiming(&self, run: &str) -> Claiming<'_> {
        let mut state = self.state();
        state.claiming += 1;
        state.last_claim = Some(Instant::now());
        if state.run != run {
            state.run = run.to_owned();
            state.used.clear();
            state.refilled.clear();
            state.restored.clear();
            state.cached.clear();
        }
        Claiming(self)
    }

    /// How many ready clones of `hash` the next run wants: as many as the latest run claimed,
    /// and the `PGFRESH_READY` made ahead of its last claim, at most [`Self::limit`].
    pub fn wanted(&self, hash: &str) -> usize {
        let ahead = Config::global().map_or(0, |c| c.ready);
        self.state()
            .used
            .get(hash)
            .map_or(0, |(_, used)| (used + ahead).min(Self::limit()))
    }

    /// The claim got a clone of the template `hash` (or the turn to build it, and then a clone
    /// of its own).
    pub fn granted(&self, hash: &str, suite: &str) {
        let mut state = self.state();
        state
            .used
            .entry(hash.to_owned())
            .or_insert_with(|| (suite.to_owned(), 0))
            .1 += 1;
        state.refilled.remove(hash);
        if let Some((_, done)) = state.cached.get_mut(hash) {
            *done = false;
        }
    }

    /// A test gave its database `name` back: it is dropped later when there is room to keep it
    /// a while, else now.
    pub async fn drop_later(&self, dispenser: &Dispenser, name: String) {
        let room = dispenser
            .started_server()
            .is_some_and(|server| server.spare_space().is_none_or(|spare| spare > 0));
        if room && self.ahead.deferred() < Self::limit() {
            self.ahead.defer_drop(name);
        } else {
            dispenser.drop_in_background(&name).await;
        }
    }

    /// Whether idle work is left, or under way.
    pub fn pending(&self) -> bool {
        if self.ahead.deferred() > 0 {
            return true;
        }
        let caching = Self::caching();
        let state = self.state();
        state.stepping
            || state
                .used
                .keys()
                .any(|hash| !state.refilled.contains(hash) || (caching && !state.all_cached(hash)))
    }

    /// Whether idle work sees to relation cache files: not with `PGFRESH_READY_MAX=0`.
    fn caching() -> bool {
        Self::limit() > 0
    }

    /// Whether a claim is being answered, or came within [`QUIET`].
    fn claims_about(&self) -> bool {
        let state = self.state();
        state.claiming > 0 || state.last_claim.is_some_and(|t| t.elapsed() < QUIET)
    }

    /// Does the idle work, a statement at a time, for as long as the broker serves.
    pub async fn run(&self, dispenser: &Dispenser) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            while !self.claims_about() {
                self.state().stepping = true;
                let stepped = self.one_step(dispenser).await;
                self.state().stepping = false;
                if !stepped {
                    break;
                }
            }
        }
    }

    /// Drops what was put aside, now (the broker is leaving).
    pub async fn finish_drops(&self, dispenser: &Dispenser) {
        while let Some(name) = self.ahead.next_drop() {
            dispenser.drop_in_background(&name).await;
        }
    }

    /// One step of idle work: a drop, else a ready clone, else a ready clone's relation cache
    /// file; `false` when none is left.
    async fn one_step(&self, dispenser: &Dispenser) -> bool {
        if let Some(name) = self.ahead.next_drop() {
            dispenser.drop_in_background(&name).await;
            return true;
        }
        if let Some((hash, suite)) = self.next_refill() {
            self.refill_step(dispenser, hash, suite).await;
            return true;
        }
        match self.next_to_cache() {
            Some((hash, tried)) => {
                self.cache_step(dispenser, hash, tried).await;
                true
            }
            None => false,
        }
    }

    /// Makes one ready clone of `hash` (first giving its template its relation cache file back,
    /// once per run), or marks `hash` refilled.
    async fn refill_step(&self, dispenser: &Dispenser, hash: String, suite: String) {
        let server = dispenser.started_server();
        let template = match &server {
            Some(server) => dispenser
                .find_built(server, &hash, &suite)
                .await
                .unwrap_or_else(|e| {
                    tracing::debug!("looking for the template failed: {e}");
                    None
                }),
            None => None,
        };
        let made = match (server, template) {
            (Some(server), Some(template)) => {
                if Self::caching() && self.state().restored.insert(hash.clone()) {
                    restore_template_cache(&server, &template.name).await;
                }
                let target = self.wanted(&hash).saturating_sub(self.ahead.count(&hash));
                if room_for(&server, &template.name).await {
                    admin::one_more_ready(&server, &template, &hash, target)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::debug!("making a ready clone failed: {e}");
                            false
                        })
                } else {
                    tracing::info!(
                        template = template.name,
                        "no room to spare for more ready clones"
                    );
                    false
                }
            }
            _ => false,
        };
        if !made {
            self.state().refilled.insert(hash);
        }
    }

    /// Gives one ready clone of `hash` (or one made ahead) not in `tried` its relation cache
    /// file, or marks `hash` done.
    async fn cache_step(&self, dispenser: &Dispenser, hash: String, tried: Vec<String>) {
        let given = match dispenser.started_server() {
            Some(server) => match server.admin_conn(Urgency::CanWait, "cache files").await {
                Ok(mut conn) => {
                    let ahead = self.ahead.names(&hash);
                    relcache::give_to_one_clone(&server, &mut conn, &hash, &ahead, &tried).await
                }
                .unwrap_or_else(|e| {
                    tracing::debug!("giving a ready clone its cache file failed: {e}");
                    None
                }),
                Err(e) => {
                    tracing::debug!("{e}");
                    None
                }
            },
            None => None,
        };
        let mut state = self.state();
        let cached = state.cached.entry(hash).or_default();
        match given {
            Some(name) => cached.0.push(name),
            None => cached.1 = true,
        }
    }

    /// A template of the latest run whose ready clones are not all made: its hash and suite.
    fn next_refill(&self) -> Option<(String, String)> {
        let state = self.state();
        state
            .used
            .iter()
            .find(|(hash, _)| !state.refilled.contains(*hash))
            .map(|(hash, (suite, _))| (hash.clone(), suite.clone()))
    }

    /// A template of the latest run, its ready clones made, some of which may lack their
    /// relation cache file: its hash, and the clones given one already.
    fn next_to_cache(&self) -> Option<(String, Vec<String>)> {
        if !Self::caching() {
            return None;
        }
        let state = self.state();
        state
            .used
            .keys()
            .find(|hash| !state.all_cached(hash))
            .map(|hash| {
                let tried = state.cached.get(hash).map(|c| c.0.clone());
                (hash.clone(), tried.unwrap_or_default())
            })
    }
}

/// Gives the template `name` its relation cache file back, if it lost it.
async fn restore_template_cache(server: &Server, name: &str) {
    let restored = match server.admin_conn(Urgency::CanWait, "cache files").await {
        Ok(mut conn) => relcache::restore_in_template(server, &mut conn, name).await,
        Err(e) => Err(e),
    };
    match restored {
        Ok(true) => tracing::info!(template = name, "gave the template its cache file back"),
        Ok(false) => {}
        Err(e) => tracing::debug!("giving the template its cache file back failed: {e}"),
    }
}

/// Whether the server's file system has room to spare for one more copy of `template` (a
/// clone that shares its blocks takes less; this counts a copy). Where pgfresh cannot see the
/// disk, [`Idle::limit`] alone bounds the ready clones.
async fn room_for(server: &Server, template: &str) -> bool {
    let Some(spare) = server.spare_space() else {
        return true;
    };
    match admin::size_of(server, template).await {
        Ok(Some(size)) => spare > size,
        Ok(None) => false,
        Err(e) => {
            tracing::debug!("reading the template's size failed: {e}");
            false
        }
    }
}
