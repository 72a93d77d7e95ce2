//! Dispensing test databases: the [`Dispenser`] that turns a request into a database of its
//! own, and the [`Holder`] that drops it afterwards.
//!
//! A request goes: a database prefetched for it ([`crate::prefetch`]), else one from the
//! broker ([`crate::broker`]), else one claimed here: the template built on first use
//! ([`crate::template`]), then a ready clone claimed or a new clone made ([`crate::admin`]),
//! then, in the background, the next ones restocked ([`restock`]) and, once per run, the
//! suite's leftovers swept ([`crate::sweep`]).
//!
//! A test process has one dispenser ([`dispenser`]), on the worker's runtime
//! ([`crate::worker`]); the broker has its own, which makes its next databases ahead.

#[cfg(unix)]
pub(crate) mod built;
mod restock;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use sqlx::PgPool;
use tokio::sync::OnceCell;

#[cfg(unix)]
pub(crate) use restock::Work;
pub(crate) use restock::{ReadyClones, Restock};

use crate::address::Address;
use crate::admin::{self, TemplateDb};
use crate::broker::{Broker, Claim, Granted, Lease, Turn};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::prefetch::{Key, Prefetch};
use crate::recipe::Recipe;
use crate::server::{self, Server, Urgency};
use crate::worker::{self, Unfinished};
use crate::{names, pool, sweep, template};

/// This process's dispenser, on the worker (made on first use).
pub(crate) fn dispenser() -> &'static Arc<Dispenser> {
    static DISPENSER: OnceLock<Arc<Dispenser>> = OnceLock::new();
    DISPENSER.get_or_init(|| {
        // The databases prefetched for tests that never came go at exit, and no more are kept.
        worker::before_exit(|| {
            let _ = worker::submit_before_exit(async {
                let dispenser = dispenser();
                for unused in dispenser.prefetch.close() {
                    dispenser.discard(unused).await;
                }
            });
        });
        Arc::new(Dispenser::new(Arc::new(ReadyClones)))
    })
}

/// Everything the requests of a process share: the server, the templates, the prefetched
/// databases, the broker.
pub(crate) struct Dispenser {
    server: OnceCell<Result<Arc<Server>>>,
    /// Per template hash: the template, built at most once per process.
    templates: Mutex<HashMap<String, Arc<Template>>>,
    /// Databases claimed and connected for the next tests of this process.
    prefetch: Prefetch<Handout>,
    /// The broker of this environment, unless there is none (or this is the broker).
    broker: OnceCell<Option<Broker>>,
    /// How the next databases are made ready after each claim.
    restock: Arc<dyn Restock>,
}

/// One template's state in this process.
#[derive(Default)]
struct Template {
    name: OnceCell<Result<TemplateDb>>,
    /// A restock is under way.
    restocking: AtomicBool,
    /// Forgotten (the disk filled up): no more restocks.
    closed: AtomicBool,
    /// The runs (see [`crate::marker::run_id`]) for which this process swept the leftovers of
    /// the template's suite (once per run is enough; a broker serves one run after another).
    swept: Mutex<HashSet<String>>,
}

/// A database handed out for a test.
#[derive(Debug)]
pub(crate) struct Handout {
    pub address: Address,
    /// The database's pool when it was prefetched (see [`crate::prefetch`]), connected
    /// already; else the caller connects one.
    pub pool: Option<PgPool>,
    /// Who drops it.
    pub holder: Holder,
}

impl Handout {
    fn claimed(server: &Server, name: String) -> Self {
        Self {
            address: server.address_of(name),
            pool: None,
            holder: Holder::Local,
        }
    }

    fn granted(granted: Granted) -> Self {
        Self {
            address: granted.address,
            pool: None,
            holder: Holder::Broker(granted.lease),
        }
    }
}

/// What the broker did for a claim.
enum Brokered {
    /// It handed out a database.
    Granted(Box<Granted>),
    /// It did not: the process claims one itself, holding its turn to build the template if
    /// the broker gave it that.
    Alone(Option<Turn>),
}

impl From<Claim> for Brokered {
    fn from(claim: Claim) -> Self {
        match claim {
            Claim::Granted(granted) => Self::Granted(granted),
            Claim::Build(turn) => Self::Alone(Some(turn)),
            Claim::NotRunning | Claim::Declined => Self::Alone(None),
        }
    }
}

impl Dispenser {
    /// A dispenser whose next databases `restock` makes ready.
    pub fn new(restock: Arc<dyn Restock>) -> Self {
        Self {
            server: OnceCell::new(),
            templates: Mutex::default(),
            prefetch: Prefetch::new(crate::prefetch::enabled()),
            broker: OnceCell::new(),
            restock,
        }
    }

    /// The server, started on first use. A failure is remembered and reported to every caller.
    pub async fn server(&self) -> Result<Arc<Server>> {
        self.server
            .get_or_init(|| async {
                let config = Config::global()?;
                server::start(config).await.map(Arc::new)
            })
            .await
            .clone()
    }

    /// The server, when it was started (and did start).
    #[cfg(unix)]
    pub fn started_server(&self) -> Option<Arc<Server>> {
        self.server.get().cloned().and_then(Result::ok)
    }

    /// A test database cloned from `recipe`'s template, with its pool of `size` connections
    /// when it was prefetched. Either way the next one is prefetched when this process runs
    /// many tests.
    pub async fn hand_out(self: Arc<Self>, recipe: Recipe, size: u32) -> Result<Handout> {
        let key = Key {
            hash: recipe.hash().to_owned(),
            size,
        };
        let handout = match self.prefetch.take(&key) {
            Some(ready) => ready,
            None => self.claim_any(&recipe).await?,
        };
        if self.prefetch.handed_out(&key) {
            let unfinished = Unfinished::start();
            tokio::spawn(async move {
                match self.prefetch_one(&recipe, size).await {
                    Ok(ready) => {
                        if let Some(unused) = self.prefetch.put(&key, ready) {
                            self.discard(unused).await;
                        }
                    }
                    Err(e) => {
                        tracing::debug!("prefetching a test database failed: {e}");
                        self.prefetch.failed(&key);
                    }
                }
                drop(unfinished);
            });
        }
        Ok(handout)
    }

    /// A database from the broker; without it (or with this process's turn to build the
    /// template, given back once the process has built it and claimed a clone), claimed here.
    async fn claim_any(&self, recipe: &Recipe) -> Result<Handout> {
        let mut handout = match self.claim_from_broker(recipe).await {
            Brokered::Granted(granted) => Handout::granted(*granted),
            Brokered::Alone(turn) => {
                let (server, name) = self.claim(recipe).await?;
                drop(turn);
                Handout::claimed(&server, name)
            }
        };
        if let Some(role) = recipe.role() {
            handout.address = role.address(handout.address);
        }
        Ok(handout)
    }

    /// A database from the broker, started if need be, unless there is none or it cannot help.
    async fn claim_from_broker(&self, recipe: &Recipe) -> Brokered {
        let Some(broker) = self
            .broker
            .get_or_init(|| async { Broker::find(Config::global().ok()?) })
            .await
        else {
            return Brokered::Alone(None);
        };
        let (hash, suite) = (recipe.hash(), recipe.suite());
        match broker.claim(hash, suite).await {
            Claim::NotRunning => {}
            claim => return claim.into(),
        }
        match broker.starting().await {
            Err(why) => {
                tracing::debug!("no broker: {why}");
                return Brokered::Alone(None);
            }
            // Started by another process meanwhile.
            Ok(None) => {}
            Ok(Some(starting)) => {
                // The server first, here: where it cannot be had, this process says why, and
                // the broker then finds it running.
                if self.server().await.is_err() {
                    return Brokered::Alone(None);
                }
                if let Err(why) = starting.start().await {
                    tracing::debug!("no broker: {why}");
                    return Brokered::Alone(None);
                }
            }
        }
        broker.claim(hash, suite).await.into()
    }

    /// Claims a database for the next test as a hand-out does, and connects its pool.
    async fn prefetch_one(&self, recipe: &Recipe, size: u32) -> Result<Handout> {
        let mut handout = self.claim_any(recipe).await?;
        match pool::connect(&handout.address.options, size).await {
            Ok(pool) => {
                handout.pool = Some(pool);
                Ok(handout)
            }
            Err(e) => {
                let name = handout.address.name.clone();
                if let Err(d) = handout.holder.release(name.clone()) {
                    tracing::debug!("dropping the prefetched {name} failed: {d}");
                }
                Err(Error::database(format!("connecting to {name}"), e))
            }
        }
    }

    /// Drops a prefetched database that no test took.
    async fn discard(&self, mut unused: Handout) {
        if let Some(pool) = unused.pool.take() {
            pool.close().await;
        }
        if let Err(e) = unused.holder.release(unused.address.name.clone()) {
            eprintln!(
                "pgfresh: could not drop test database {}: {e}",
                unused.address.name
            );
        }
    }

    /// Drops a test database now, for a caller that waits for the answer.
    pub async fn drop_now(&self, name: &str) -> Result<()> {
        admin::drop_test_db(&*self.server().await?, Urgency::Now, name).await
    }

    /// Drops a test database in the background (nobody waits for the answer), saying so on
    /// stderr when it fails.
    pub async fn drop_in_background(&self, name: &str) {
        let dropped = match self.server().await {
            Ok(server) => admin::drop_test_db(&server, Urgency::CanWait, name).await,
            Err(e) => Err(e),
        };
        if let Err(e) = dropped {
            eprintln!("pgfresh: could not drop test database {name}: {e}");
        }
    }

    /// Marks a test database as kept by this run of `suite` (see [`crate::sweep`]).
    pub async fn keep(&self, name: &str, suite: &str) -> Result<()> {
        let server = self.server().await?;
        let run = crate::marker::run_id(server.owner);
        admin::keep_test_db(&server, name, suite, &run).await
    }

    /// A new test database cloned from `recipe`'s template: the template is built on first
    /// use, then cloned (see [`Self::clone_template`]); once per run, the suite's leftovers
    /// are swept in the background. When the disk is full, what is pgfresh's is freed and the
    /// claim tried once more.
    async fn claim(&self, recipe: &Recipe) -> Result<(Arc<Server>, String)> {
        let server = self.server().await?;
        let name = match self.claim_on(&server, recipe).await {
            Err(e) if e.is_disk_full(server.low_on_space()) => {
                tracing::warn!("out of disk space; freeing pgfresh's own and trying again: {e}");
                // The template's failure is not remembered: it is built again; the databases
                // made ahead of it go first.
                let forgotten = self
                    .templates
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(recipe.hash());
                if let Some(entry) = forgotten {
                    entry.closed.store(true, Ordering::Release);
                }
                for ahead in self.restock.forget(recipe.hash()) {
                    self.drop_in_background(&ahead).await;
                }
                let current = names::template_name(recipe.hash());
                if let Err(e) = sweep::free_space(&server, recipe.suite(), &current).await {
                    tracing::debug!("freeing disk space failed: {e}");
                }
                match self.claim_on(&server, recipe).await {
                    Err(e) if e.is_disk_full(server.low_on_space()) => Err(server.disk_full(&e)),
                    other => other,
                }
            }
            other => other,
        }?;
        Ok((server, name))
    }

    /// [`claim`](Self::claim) on `server`, once.
    async fn claim_on(&self, server: &Arc<Server>, recipe: &Recipe) -> Result<String> {
        let hash = recipe.hash();
        let entry = self.template(hash);
        let template = entry
            .name
            .get_or_init(|| template::ensure(server, recipe))
            .await
            .clone()?;
        let name = self.clone_template(server, &entry, &template, hash).await?;
        // Only now, so that the sweep's connection does not delay the first hand-out.
        let run = crate::marker::run_id(server.owner);
        if let Some(sweep) = Self::first_sweep(server, &entry, recipe.suite(), &template.name, &run)
        {
            let unfinished = Unfinished::start();
            tokio::spawn(async move {
                sweep.await.iter().for_each(|n| eprintln!("{n}"));
                drop(unfinished);
            });
        }
        Ok(name)
    }

    /// This process's state of the template `hash`.
    fn template(&self, hash: &str) -> Arc<Template> {
        let mut map = self.templates.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(hash.to_owned()).or_default().clone()
    }

    /// A clone of the complete `template` (of `hash`): one the restock made ahead, else a
    /// ready clone claimed, else a new one; then, in the background, the restock tops up.
    async fn clone_template(
        &self,
        server: &Arc<Server>,
        entry: &Arc<Template>,
        template: &TemplateDb,
        hash: &str,
    ) -> Result<String> {
        let name = match self.restock.take(hash) {
            Some(name) => name,
            None => admin::claim_or_clone(server, template, hash, Urgency::Now).await?,
        };
        server.tell_copy_method();
        let target = Config::global()?.ready;
        if target > 0
            && !entry.closed.load(Ordering::Acquire)
            && !entry.restocking.swap(true, Ordering::AcqRel)
        {
            let work = self.restock.clone().top_up(
                server.clone(),
                template.clone(),
                hash.to_owned(),
                target,
            );
            let entry = entry.clone();
            tokio::spawn(async move {
                if let Err(e) = work.await {
                    tracing::debug!("restocking ready databases failed: {e}");
                }
                entry.restocking.store(false, Ordering::Release);
            });
        }
        Ok(name)
    }

    /// The sweep of `suite`'s leftovers (see [`crate::sweep`]), when `run` is new to the
    /// template here: the one place that decides it. Its answer is what to tell the user.
    fn first_sweep(
        server: &Arc<Server>,
        entry: &Template,
        suite: &str,
        template: &str,
        run: &str,
    ) -> Option<impl Future<Output = Vec<String>> + Send + 'static> {
        let first = entry
            .swept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.to_owned());
        if !first {
            return None;
        }
        let (server, suite, template, run) = (
            server.clone(),
            suite.to_owned(),
            template.to_owned(),
            run.to_owned(),
        );
        Some(async move {
            sweep::sweep(&server, &suite, &template, &run)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("sweeping left-behind databases failed: {e}");
                    Vec::new()
                })
        })
    }
}

/// Who holds a test database, and so drops it: the broker, through the [`Lease`] it handed
/// out with it, or this process. "Ask the broker, else do it here" is written once, here.
#[derive(Debug)]
pub(crate) enum Holder {
    /// The broker handed it out: giving the lease back drops it there.
    Broker(Lease),
    /// This process claimed it, and drops it.
    Local,
}

impl Holder {
    /// Drops `name` in the background: the caller goes on at once, and the process waits for
    /// the drop when it exits (see [`worker::submit_before_exit`]). A database whose broker is
    /// gone is dropped here.
    pub fn release(self, name: String) -> Result<()> {
        if let Self::Broker(lease) = self
            && lease.release()
        {
            return Ok(());
        }
        worker::submit_before_exit(async move {
            dispenser().drop_in_background(&name).await;
        })
    }

    /// Drops `name` now and reports any error. Where the broker does not drop it, it is
    /// dropped here, which says what is wrong in its own words (or finds it done).
    pub async fn drop_now(self, name: String) -> Result<()> {
        if let Self::Broker(lease) = self {
            match tokio::task::spawn_blocking(move || lease.drop_now()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(why)) => tracing::debug!("the broker did not drop {name}: {why}"),
                Err(e) => tracing::debug!("the broker did not drop {name}: {e}"),
            }
        }
        worker::call(async move { dispenser().drop_now(&name).await }).await
    }

    /// Gives back `name`, which the caller could not connect to (`why`). The broker checks its
    /// server first: when it is gone, the answer is what happened (the broker hands out
    /// nothing more, and the next claim goes to a fresh one; the database goes with its
    /// server, or with the broker's owner lock). Else the database is dropped as by
    /// [`Self::drop_now`].
    pub async fn unreachable(self, name: String, why: String) -> Option<String> {
        if let Self::Broker(lease) = self {
            return tokio::task::spawn_blocking(move || lease.unreachable(why))
                .await
                .unwrap_or_else(|e| Some(format!("the broker was not asked: {e}")));
        }
        if let Err(e) = self.drop_now(name.clone()).await {
            tracing::debug!("dropping {name}, which could not be reached, failed: {e}");
        }
        None
    }

    /// Marks `name` kept by this run of `suite` (see [`crate::sweep`]), waiting at most
    /// `limit` (it runs from `Drop`); `None` when that was not enough.
    pub fn keep(self, name: &str, suite: &str, limit: std::time::Duration) -> Option<Result<()>> {
        if let Self::Broker(lease) = self {
            match lease.keep(&crate::broker::this_run(), suite) {
                Ok(()) => return Some(Ok(())),
                Err(why) => tracing::debug!("the broker did not keep {name}: {why}"),
            }
        }
        let (name, suite) = (name.to_owned(), suite.to_owned());
        worker::call_blocking(limit, async move { dispenser().keep(&name, &suite).await })
    }
}
