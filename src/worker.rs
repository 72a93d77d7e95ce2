//! The process-wide worker: a background thread with its own tokio runtime, and the queue of
//! jobs it runs.
//!
//! Every `#[tokio::test]` builds and drops its own runtime, and a pool or container created on
//! one runtime breaks once that runtime is gone. So what is shared between tests (the server
//! handle, the administrative pool, the template state: see [`crate::dispense`]) lives on this
//! runtime, which lives as long as the process; tests hand it jobs through a channel that works
//! from any runtime (or none). The worker knows nothing of what its jobs do.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

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
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
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
pub(crate) fn submit(job: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    queue()
        .jobs
        .send(Box::pin(job))
        .map_err(|_| Error::Worker("it is not running".into()))
}

/// Runs `job` on the worker without waiting for it, but makes the process wait for it when it
/// exits: a test's database is dropped after the test, off the test's critical path, and still
/// not left behind when that test was the process's last.
///
/// The wait happens in an `atexit` handler, so it covers the ways a test binary ends: returning
/// from `main` and `std::process::exit` (the test harness uses both). It is bounded by
/// [`EXIT_WAIT`]; what is still unfinished then is swept by a later process.
pub(crate) fn submit_before_exit(job: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let unfinished = Unfinished::start();
    // When the job cannot be submitted, it is dropped here, and `unfinished` with it.
    submit(async move {
        job.await;
        drop(unfinished);
    })
}

/// How long a process waits at exit for its unfinished background work.
pub(crate) const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Background work the process waits for at exit: one count per job, released when the job
/// ends or is dropped (a job that panics is dropped by the runtime, so it cannot hang the exit).
pub(crate) struct Unfinished;

static UNFINISHED: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

impl Unfinished {
    /// Counts one job the process waits for at exit, until this is dropped.
    pub(crate) fn start() -> Self {
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

/// What runs first at exit (see [`before_exit`]).
static BEFORE_EXIT: OnceLock<fn()> = OnceLock::new();

/// Has `hook` run first when the process exits, before the wait for unfinished work (which
/// covers the jobs it submits with [`submit_before_exit`]). One hook per process: the
/// dispenser's, which drops the databases prefetched for tests that never came.
pub(crate) fn before_exit(hook: fn()) {
    let _ = BEFORE_EXIT.set(hook);
}

/// The `atexit` handler: runs the [`before_exit`] hook, then waits, at most [`EXIT_WAIT`],
/// until no background work is unfinished.
extern "C" fn wait_at_exit() {
    if let Some(hook) = BEFORE_EXIT.get() {
        hook();
    }
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
pub(crate) async fn call<T: Send + 'static>(
    job: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = oneshot::channel();
    submit(async move {
        let _ = tx.send(job.await);
    })?;
    rx.await
        .map_err(|_| Error::Worker("a job ended without an answer".into()))?
}

/// Runs `job` on the worker and waits at most `limit` for its result, from synchronous code
/// (a `Drop`); `None` when it did not answer in time.
pub(crate) fn call_blocking<T: Send + 'static>(
    limit: Duration,
    job: impl Future<Output = Result<T>> + Send + 'static,
) -> Option<Result<T>> {
    let (tx, rx) = std::sync::mpsc::channel();
    if let Err(e) = submit(async move {
        let _ = tx.send(job.await);
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
