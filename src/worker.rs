//! The process-wide worker: a background thread with its own tokio runtime that owns
//! everything shared between tests.
//!
//! Every `#[tokio::test]` builds and drops its own runtime, and a pool or container created on
//! one runtime breaks once that runtime is gone. So the server handle, the administrative pool
//! and the template state live here, on a runtime that lives as long as the process; tests talk
//! to it through channels that work from any runtime (or none).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::{OnceCell, mpsc, oneshot};

use crate::broker::{Broker, Claim, Granted, Lease, Turn};
use crate::config::{Config, Source};
use crate::error::{Error, Result};
use crate::prefetch::{Key, Prefetch};
use crate::recipe::Recipe;
use crate::server::{self, Server, Urgency};
use crate::{admin, names, pool, sweep, template};

type Job = Box<dyn FnOnce(Arc<Shared>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Everything the tests of this process share, owned by the worker.
#[derive(Default)]
pub(crate) struct Shared {
    server: OnceCell<Result<Arc<Server>>>,
    /// Per template hash: the template, built at most once per process.
    templates: Mutex<HashMap<String, Arc<Template>>>,
    /// Databases claimed and connected for the next tests of this process.
    prefetch: Prefetch<Handout>,
    /// The broker of this environment (see [`crate::broker`]), unless there is none.
    broker: OnceCell<Option<Broker>>,
    /// This is the broker: it makes its next databases ahead (see [`Shared::clone_template`]).
    makes_ahead: bool,
}

/// One template's state in this process.
#[derive(Default)]
struct Template {
    name: OnceCell<Result<String>>,
    /// A refill of the ready clones (or of the clones made ahead) is under way.
    refilling: AtomicBool,
    /// Clones this process made ahead of its next claims (see [`Shared::clone_template`]).
    ahead: Mutex<Vec<String>>,
    /// The process is ending: no more clones are made ahead, or ready.
    closed: AtomicBool,
    /// The runs (see [`crate::marker::run_id`]) for which this process swept the leftovers of
    /// the template's suite (once per run is enough; a broker serves one run after another).
    swept: Mutex<HashSet<String>>,
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

/// The worker's answer to a request for a test database: only copies of the server's settings
/// cross over to the test, the server itself stays on the worker's runtime.
pub(crate) struct Handout {
    pub name: String,
    /// How to connect to the database.
    pub options: PgConnectOptions,
    /// The same as a URL, password included.
    pub url: url::Url,
    pub source: Source,
    /// The server's password came from the user (`DB_URL`): never print it.
    pub password_from_user: bool,
    /// The database's pool when it was prefetched (see [`crate::prefetch`]), connected
    /// already; else the caller connects one.
    pub pool: Option<PgPool>,
    /// The broker's hold on the database, when the broker handed it out.
    pub lease: Option<Lease>,
}

impl Handout {
    pub(crate) fn new(server: &Server, name: String, pool: Option<PgPool>) -> Self {
        let mut url = server.url.clone();
        url.set_path(&name);
        Self {
            options: server.database_options(&name),
            url,
            source: server.source,
            password_from_user: server.password_from_user,
            name,
            pool,
            lease: None,
        }
    }

    fn granted(granted: Granted) -> Self {
        Self {
            name: granted.name,
            options: granted.options,
            url: granted.url,
            source: granted.source,
            password_from_user: granted.password_from_user,
            pool: None,
            lease: Some(granted.lease),
        }
    }
}

impl Shared {
    /// The broker's (see [`crate::broker`]).
    pub fn for_broker() -> Self {
        Self {
            makes_ahead: true,
            ..Self::default()
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
        Ok(match self.claim_from_broker(recipe).await {
            Brokered::Granted(granted) => Handout::granted(*granted),
            Brokered::Alone(turn) => {
                let (server, name) = self.claim(recipe).await?;
                drop(turn);
                Handout::new(&server, name, None)
            }
        })
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

    /// For the broker: a clone of the template `hash` of `suite`, when that template is built
    /// and complete (`None` when it is not: the test process builds it).
    pub async fn claim_built(
        self: Arc<Self>,
        hash: &str,
        suite: &str,
        run: &str,
    ) -> Result<Option<(Arc<Server>, String, Vec<String>)>> {
        let server = self.server().await?;
        let entry = self.template(hash);
        let template = match entry.name.get() {
            Some(known) => known.clone()?,
            None => match template::built(&server, hash, suite).await? {
                Some(name) => entry
                    .name
                    .get_or_init(|| async { Ok(name) })
                    .await
                    .clone()?,
                None => return Ok(None),
            },
        };
        // A run's first claim waits for the sweep, so that what it tells the user reaches the
        // test process (the broker's own stderr goes nowhere).
        let mut notices = Vec::new();
        if entry.first_of_run(run) {
            notices = sweep::sweep(&server, suite, &template, run)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("sweeping left-behind databases failed: {e}");
                    Vec::new()
                });
        }
        let name = self
            .clone_template(&server, &entry, &template, hash, suite, run)
            .await?;
        Ok(Some((server, name, notices)))
    }

    /// For the broker: whether this process found the template `hash` built.
    pub fn knows_template(&self, hash: &str) -> bool {
        self.template(hash).name.get().is_some_and(Result::is_ok)
    }

    /// Claims a database for the next test as a hand-out does, and connects its pool.
    async fn prefetch_one(&self, recipe: &Recipe, size: u32) -> Result<Handout> {
        let mut handout = self.claim_any(recipe).await?;
        match pool::connect(&handout.options, size).await {
            Ok(pool) => {
                handout.pool = Some(pool);
                Ok(handout)
            }
            Err(e) => {
                let name = handout.name.clone();
                if !handout.lease.take().is_some_and(Lease::release) {
                    let dropped = match self.server().await {
                        Ok(server) => admin::drop_test_db(&server, Urgency::CanWait, &name).await,
                        Err(e) => Err(e),
                    };
                    if let Err(d) = dropped {
                        tracing::debug!("dropping the prefetched {name} failed: {d}");
                    }
                }
                Err(Error::database(format!("connecting to {name}"), e))
            }
        }
    }

    /// Drops a prefetched database that no test took (the broker does, when it handed it out).
    async fn discard(&self, mut unused: Handout) {
        if let Some(pool) = unused.pool.take() {
            pool.close().await;
        }
        if unused.lease.take().is_some_and(Lease::release) {
            return;
        }
        self.drop_in_background(&unused.name).await;
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

    /// For the broker: marks a test database as kept by the run `run` of `suite`.
    pub async fn keep_for_run(&self, name: &str, suite: &str, run: &str) -> Result<()> {
        admin::keep_test_db(&*self.server().await?, name, suite, run).await
    }

    /// A new test database cloned from `recipe`'s template: the template is built on first
    /// use, a ready clone is claimed when there is one, and then, in the background, the ready
    /// clones are topped up and (once per process) the suite's leftovers swept.
    async fn claim(&self, recipe: &Recipe) -> Result<(Arc<Server>, String)> {
        let server = self.server().await?;
        let name = match self.claim_on(&server, recipe).await {
            Err(e) if e.is_disk_full(server.low_on_space()) => {
                tracing::warn!("out of disk space; freeing pgfresh's own and trying again: {e}");
                // The template's failure is not remembered: it is built again; the clones made
                // ahead of it go first.
                let forgotten = self
                    .templates
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(recipe.hash());
                if let Some(entry) = forgotten {
                    entry.closed.store(true, Ordering::Release);
                    while let Some(ahead) = entry.take_ahead() {
                        self.drop_in_background(&ahead).await;
                    }
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
        let run = crate::marker::run_id(server.owner);
        self.clone_template(server, &entry, &template, hash, recipe.suite(), &run)
            .await
    }

    /// This process's state of the template `hash`.
    fn template(&self, hash: &str) -> Arc<Template> {
        let mut map = self.templates.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(hash.to_owned()).or_default().clone()
    }

    /// A clone of the complete `template` (of `hash`, of `suite`): one this process made
    /// ahead, else a ready clone claimed, else a new one; then, in the background, the clones
    /// ahead or the ready clones are topped up and (once per process) the suite's leftovers
    /// swept.
    ///
    /// The broker, which answers every claim of its environment, makes its next databases ahead
    /// under its own test databases' names: a claim then takes one without a statement, and
    /// its drop needs no marker to read (see [`admin::drop_test_db`]); the clones made ahead
    /// that no claim took go to the ready clones when it leaves (see
    /// [`Shared::give_back_ahead`]). Any other process tops up the ready clones any process of
    /// the role can claim: it may answer one claim and exit.
    async fn clone_template(
        &self,
        server: &Arc<Server>,
        entry: &Arc<Template>,
        template: &str,
        hash: &str,
        suite: &str,
        run: &str,
    ) -> Result<String> {
        let made_ahead = entry.take_ahead();
        let name = match made_ahead {
            Some(name) => name,
            None => admin::claim_or_clone(server, template, hash).await?,
        };

        // Only now, so that the sweep's connection does not delay the first hand-out.
        if entry.first_of_run(run) {
            let (server, suite, current, run) = (
                server.clone(),
                suite.to_owned(),
                template.to_owned(),
                run.to_owned(),
            );
            let unfinished = Unfinished::start();
            tokio::spawn(async move {
                match sweep::sweep(&server, &suite, &current, &run).await {
                    Ok(notices) => notices.iter().for_each(|n| eprintln!("{n}")),
                    Err(e) => tracing::warn!("sweeping left-behind databases failed: {e}"),
                }
                drop(unfinished);
            });
        }

        let target = Config::global()?.ready;
        let ahead = self.makes_ahead;
        if target > 0
            && !entry.closed.load(Ordering::Acquire)
            && !entry.refilling.swap(true, Ordering::AcqRel)
        {
            let (server, hash, template) = (server.clone(), hash.to_owned(), template.to_owned());
            let entry = entry.clone();
            tokio::spawn(async move {
                let refilled = if ahead {
                    entry.clone_ahead(&server, &template, &hash, target).await
                } else {
                    admin::refill_ready(&server, &template, &hash, target).await
                };
                if let Err(e) = refilled {
                    tracing::debug!("refilling ready databases failed: {e}");
                }
                entry.refilling.store(false, Ordering::Release);
            });
        }
        Ok(name)
    }

    /// Gives the clones made ahead that no claim took to the ready clones (as far as those
    /// are fewer than `PGFRESH_READY`; the others are dropped), for the next process; none are
    /// made any more. For the broker, when it leaves.
    pub async fn give_back_ahead(&self) {
        let Some(Ok(server)) = self.server.get().cloned() else {
            return;
        };
        let templates: Vec<(String, Arc<Template>)> = self
            .templates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(hash, entry)| (hash.clone(), entry.clone()))
            .collect();
        let target = Config::global().map_or(0, |c| c.ready);
        for (hash, entry) in templates {
            entry.closed.store(true, Ordering::Release);
            // A refill under way stops before its next clone: wait for it (a clone at most).
            while entry.refilling.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let ahead: Vec<String> = std::iter::from_fn(|| entry.take_ahead()).collect();
            if ahead.is_empty() {
                continue;
            }
            let unwanted = admin::give_to_ready(&server, ahead, &hash, target)
                .await
                .unwrap_or_else(|(e, left)| {
                    tracing::debug!("giving clones to the ready ones failed: {e}");
                    left
                });
            for name in unwanted {
                self.drop_in_background(&name).await;
            }
        }
    }
}

impl Template {
    /// A clone made ahead, if there is one.
    fn take_ahead(&self) -> Option<String> {
        self.ahead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// Tops the clones made ahead up to `target`.
    async fn clone_ahead(
        &self,
        server: &Server,
        template: &str,
        hash: &str,
        target: usize,
    ) -> Result<()> {
        let count = || {
            self.ahead
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
        };
        while count() < target && !self.closed.load(Ordering::Acquire) {
            let name = admin::clone_ahead(server, template, hash).await?;
            self.ahead
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(name);
        }
        Ok(())
    }

    /// Whether `run` is new to this template here: its suite is swept once per run.
    fn first_of_run(&self, run: &str) -> bool {
        self.swept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.to_owned())
    }
}

/// The worker's job queue.
struct Queue {
    jobs: mpsc::UnboundedSender<Job>,
}

/// The queue, and the worker thread on first use.
fn queue() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("pgfresh-worker".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("pgfresh cannot build its runtime: {e}");
                        return;
                    }
                };
                let shared = Arc::new(Shared::default());
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job(shared.clone()));
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::error!("pgfresh cannot start its worker thread: {e}");
        }
        Queue { jobs }
    })
}

/// Runs `job` on the worker without waiting for it.
pub(crate) fn submit<F, Fut>(job: F) -> Result<()>
where
    F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    queue()
        .jobs
        .send(Box::new(move |shared| Box::pin(job(shared))))
        .map_err(|_| Error::Worker("it is not running".into()))
}

/// Runs `job` on the worker without waiting for it, but makes the process wait for it when it
/// exits: a test's database is dropped after the test, off the test's critical path, and still
/// not left behind when that test was the process's last.
///
/// The wait happens in an `atexit` handler, so it covers the ways a test binary ends: returning
/// from `main` and `std::process::exit` (the test harness uses both). It is bounded by
/// [`EXIT_WAIT`]; what is still unfinished then is swept by a later process.
pub(crate) fn submit_before_exit<F, Fut>(job: F) -> Result<()>
where
    F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let unfinished = Unfinished::start();
    // When the job cannot be submitted, it is dropped here, and `unfinished` with it.
    submit(move |shared| async move {
        job(shared).await;
        drop(unfinished);
    })
}

/// How long a process waits at exit for its unfinished background work.
pub(crate) const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Background work the process waits for at exit: one count per job, released when the job
/// ends or is dropped (a job that panics is dropped by the runtime, so it cannot hang the exit).
struct Unfinished;

static UNFINISHED: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

impl Unfinished {
    fn start() -> Self {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            // SAFETY: `wait_at_exit` is an `extern "C"` function without arguments that never
            // unwinds (it only sends the worker one job, locks, waits and writes to stderr,
            // ignoring every failure), which is all `atexit` asks of its handler.
            #[allow(unsafe_code)]
            let refused = unsafe { libc::atexit(wait_at_exit) } != 0;
            if refused {
                tracing::warn!("pgfresh cannot wait for its background work at exit");
            }
        });
        *UNFINISHED.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Self
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let mut count = UNFINISHED.0.lock().unwrap_or_else(PoisonError::into_inner);
        *count = count.saturating_sub(1);
        UNFINISHED.1.notify_all();
    }
}

/// The `atexit` handler: drops the prefetched databases no test took, and waits, at most
/// [`EXIT_WAIT`], until no background work is unfinished.
extern "C" fn wait_at_exit() {
    // The databases prefetched for tests that never came go now, and no more are kept.
    let _ = submit_before_exit(|shared| async move {
        for unused in shared.prefetch.close() {
            shared.discard(unused).await;
        }
    });
    let deadline = Instant::now() + EXIT_WAIT;
    let mut count = UNFINISHED.0.lock().unwrap_or_else(PoisonError::into_inner);
    while *count > 0 {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "pgfresh: exiting with {} background job(s) unfinished after {} s; \
                 a later run sweeps what they leave",
                *count,
                EXIT_WAIT.as_secs()
            );
            return;
        };
        count = UNFINISHED
            .1
            .wait_timeout(count, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Runs `job` on the worker and waits for its result, from any runtime.
pub(crate) async fn call<T, F, Fut>(job: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    submit(move |shared| async move {
        let _ = tx.send(job(shared).await);
    })?;
    rx.await
        .map_err(|_| Error::Worker("a job ended without an answer".into()))?
}

/// Runs `job` on the worker and waits at most `limit` for its result, from synchronous code
/// (a `Drop`); `None` when it did not answer in time.
pub(crate) fn call_blocking<T, F, Fut>(limit: Duration, job: F) -> Option<Result<T>>
where
    T: Send + 'static,
    F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    if let Err(e) = submit(move |shared| async move {
        let _ = tx.send(job(shared).await);
    }) {
        return Some(Err(e));
    }
    // Waiting blocks this thread. On a multi-thread runtime, hand this thread's other tasks to
    // the rest of the runtime first, or they (say, another test's pool handshake) stall until
    // the wait ends.
    let wait = || rx.recv_timeout(limit).ok();
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}
