//! The broker process (the test processes' side, and why, is [`super::client`]).
//!
//! It is the test binary itself, started again by the first process that found none, with
//! `PGFRESH_BROKER_SERVE=<its directory>`: the constructor ([`crate::hook`]) that runs before
//! `main` sees the variable and serves instead of running the tests. It finds the server as any
//! process does
//! (for the local and docker sources it holds a lease on it, like a test process), takes its
//! own owner lock, and marks what it hands out as its own, so every rule of [`crate::sweep`]
//! holds: when the broker dies, however it dies, its databases are swept, except those a
//! test still has sessions on; their test drops them itself when it ends.
//!
//! Per connection (see [`super::protocol`]): one claim, answered with a database; then `keep`
//! or `drop`, or the connection closes and the database is dropped. While a claim's template is
//! not built, one claim at a time is answered `build` (the process builds it and closes the
//! connection), and the others wait for it. A database given back is dropped once no claim
//! comes, and after a run the broker makes the next run's ready clones ([`super::idle`]). The
//! broker leaves once nobody has been connected for [`IDLE`] and that work is done; a later
//! process starts another. It leaves at once, without waiting for the
//! databases it handed out, when its server is gone ([`super::watch`]) or `pgfresh gc` asks it
//! to ([`Request::Leave`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::OwnedMutexGuard;

use super::ahead::MadeAhead;
use super::dir::{ALIVE_LOCK, READY_LINE, SOCKET, private_file, remove_dir};
use super::error::BrokerError;
use super::idle::Idle;
use super::protocol::{self, Grant, Reply, Request, STILL_WAITING};
use super::watch::Watch;
use crate::admin;
use crate::config::{Config, SERVE_VAR};
use crate::dispense::Dispenser;
use crate::dispense::built::Built;

/// How long a broker nobody is connected to stays.
const IDLE: Duration = Duration::from_secs(3);

/// The broker's side, from the constructor ([`crate::hook`]): serves when [`SERVE_VAR`] is
/// set, then exits the process; returns when it is not set.
pub(crate) fn serve_if_asked() {
    let Some(dir) = std::env::var_os(SERVE_VAR) else {
        return;
    };
    let served = std::panic::catch_unwind(|| run(&PathBuf::from(dir)));
    std::process::exit(match served {
        Ok(Ok(())) => 0,
        Ok(Err(_)) => 1,
        Err(_) => 2,
    });
}

/// Serves `dir` until idle, unless another broker already does; then removes `dir` unless a
/// process is starting the next broker there.
fn run(dir: &Path) -> Result<(), BrokerError> {
    let alive = private_file(&dir.join(ALIVE_LOCK))?;
    alive.try_lock().map_err(|_| BrokerError::Taken)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(serve(dir));
    drop(alive);
    remove_dir(dir);
    served
}

async fn serve(dir: &Path) -> Result<(), BrokerError> {
    let ahead = Arc::new(MadeAhead::default());
    let dispenser = Arc::new(Dispenser::new(ahead.clone()));
    dispenser
        .server()
        .await
        .map_err(|e| BrokerError::Server(Box::new(e)))?;
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(|e| BrokerError::dir("cannot listen on", &path, e))?;
    // The one line the starting process reads; it closes the pipe then.
    println!("{READY_LINE}");

    let activity = Arc::new(Activity::default());
    let turns = Arc::new(Turns::default());
    let idle = Arc::new(Idle::new(ahead.clone()));
    let watch = Watch::new(dispenser.clone(), path.clone());
    let watching = watch.clone().run();
    tokio::pin!(watching);
    let idling = idle.run(&dispenser);
    tokio::pin!(idling);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let broker = Shared {
                    dispenser: dispenser.clone(),
                    turns: turns.clone(),
                    watch: watch.clone(),
                    idle: idle.clone(),
                };
                let visit = Visit::start(&activity);
                tokio::spawn(async move {
                    client(&broker, stream).await;
                    drop(visit);
                });
            }
            _ = tick.tick() => {
                if activity.idle_for() >= IDLE && !idle.pending() {
                    break;
                }
            }
            // Never ends: polled here, the idle work runs between the claims.
            () = &mut idling => {}
            // The server is gone (or gc asked): the socket is gone already; the databases
            // held are on that server, and go with it or with its owner lock.
            _ = &mut watching => return Ok(()),
        }
    }
    // Nobody finds this broker any more; the databases still being dropped finish first.
    let _ = std::fs::remove_file(&path);
    drop(listener);
    while activity.connected() > 0 && watch.verdict().is_none() {
        tick.tick().await;
    }
    if watch.verdict().is_none() {
        idle.finish_drops(&dispenser).await;
        let ready = Config::global().map_or(0, |c| c.ready);
        ahead
            .give_back(&dispenser, |hash| {
                idle.wanted(hash).max(ready).min(Idle::limit())
            })
            .await;
    }
    Ok(())
}

/// What every connection's task shares.
struct Shared {
    dispenser: Arc<Dispenser>,
    turns: Arc<Turns>,
    watch: Arc<Watch>,
    idle: Arc<Idle>,
}

/// Who is connected, and since when nobody is.
#[derive(Default)]
struct Activity {
    state: Mutex<(usize, Option<Instant>)>,
}

impl Activity {
    fn state(&self) -> std::sync::MutexGuard<'_, (usize, Option<Instant>)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connected(&self) -> usize {
        self.state().0
    }

    fn idle_for(&self) -> Duration {
        let mut state = self.state();
        if state.0 > 0 {
            return Duration::ZERO;
        }
        state.1.get_or_insert_with(Instant::now).elapsed()
    }
}

/// One connection, counted while it lasts.
struct Visit(Arc<Activity>);

impl Visit {
    fn start(activity: &Arc<Activity>) -> Self {
        let mut state = activity.state();
        state.0 += 1;
        state.1 = None;
        drop(state);
        Self(activity.clone())
    }
}

impl Drop for Visit {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.0 -= 1;
        if state.0 == 0 {
            state.1 = Some(Instant::now());
        }
    }
}

/// What a claim is answered with.
enum Answer {
    /// A database.
    Granted(Grant),
    /// The template is not built: the process builds it, holding the turn.
    Build(OwnedMutexGuard<()>),
    /// Nothing, for this reason: the process does the work itself.
    Declined(String),
    /// Nothing: the server is gone, for this reason (see [`Watch`]).
    ServerGone(String),
}

/// Per template hash, the turn to build it: one process builds at a time, the others' claims
/// wait here, holding no connection to the server, instead of each opening an administrative
/// connection to wait for the build's advisory lock (with 40 test processes on a server that
/// takes 40 connections, none would be left for the build).
#[derive(Default)]
struct Turns(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Turns {
    fn of(&self, hash: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(hash.to_owned()).or_default().clone()
    }
}

/// A clone of the built template `hash`; while it is not built, the turn to build it, once the
/// process before (if any) gave its turn back, telling the waiting process so every
/// [`STILL_WAITING`].
async fn answer_claim(
    dispenser: &Arc<Dispenser>,
    turns: &Turns,
    watch: &Watch,
    hash: &str,
    suite: &str,
    run: &str,
    write: &mut OwnedWriteHalf,
) -> Answer {
    let mut turn = None;
    loop {
        if turn.is_some() && dispenser.knows_template(hash) {
            // Built by the process before, and found by the claim before: the claims waiting
            // behind this one need no turn, and get their clones side by side.
            turn = None;
        }
        let claimed = dispenser.claim_built(hash, suite, run).await;
        // Made ahead, a database is handed out without a word to the server: never one on a
        // server that is gone (it goes with its server, or, marked as this broker's, with the
        // owner lock a restart ended: the next sweep drops it).
        if let Some(reason) = watch.verdict() {
            return Answer::ServerGone(reason);
        }
        match claimed {
            Ok(Some(Built {
                server,
                name,
                notices,
            })) => {
                let address = server.address_of(name);
                return Answer::Granted(Grant {
                    url: address.url.to_string(),
                    source: address.source.to_string(),
                    password_from_user: address.password_from_user,
                    name: address.name,
                    notices,
                });
            }
            Ok(None) => {}
            // Failed on the server: is it gone?
            Err(e) => {
                return match watch.check().await {
                    Some(reason) => Answer::ServerGone(reason),
                    None => Answer::Declined(e.to_string()),
                };
            }
        }
        if let Some(turn) = turn {
            return Answer::Build(turn);
        }
        let lock = turns.of(hash).lock_owned();
        tokio::pin!(lock);
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + STILL_WAITING, STILL_WAITING);
        turn = Some(loop {
            tokio::select! {
                held = &mut lock => break held,
                _ = tick.tick() => {
                    let waiting = protocol::line(&Reply::Waiting);
                    if write.write_all(waiting.as_bytes()).await.is_err() {
                        return Answer::Declined("the claim went away".into());
                    }
                }
            }
        });
    }
}

/// Serves one connection: a claim, then `keep`, `drop` or `unreachable`, or the end of the
/// connection; or gc's `leave`.
async fn client(broker: &Shared, stream: UnixStream) {
    let Shared {
        dispenser,
        turns,
        watch,
        idle,
    } = broker;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(line)) = lines.next_line().await else {
        return;
    };
    let (hash, suite, run) = match protocol::parse(&line) {
        Ok(Request::Claim { hash, suite, run }) => (hash, suite, run),
        Ok(Request::Leave) => {
            watch.end("the broker was asked to leave by `pgfresh gc`");
            let _ = write
                .write_all(protocol::line(&Reply::Done).as_bytes())
                .await;
            return;
        }
        Ok(_) | Err(_) => {
            let reason = "the first message of a connection must be a claim".to_owned();
            let _ = write
                .write_all(protocol::line(&Reply::Declined { reason }).as_bytes())
                .await;
            return;
        }
    };
    let claiming = idle.claiming(&run);
    let answer = answer_claim(dispenser, turns, watch, &hash, &suite, &run, &mut write).await;
    drop(claiming);
    let grant = match answer {
        Answer::Granted(grant) => {
            idle.granted(&hash, &suite);
            grant
        }
        Answer::ServerGone(reason) => {
            let _ = write
                .write_all(protocol::line(&Reply::ServerGone { reason }).as_bytes())
                .await;
            return;
        }
        Answer::Declined(reason) => {
            let _ = write
                .write_all(protocol::line(&Reply::Declined { reason }).as_bytes())
                .await;
            return;
        }
        Answer::Build(turn) => {
            // It builds the template, then clones it itself: a database of the run all the
            // same.
            idle.granted(&hash, &suite);
            // Its turn to build: the next claim waits until the connection closes.
            if write
                .write_all(protocol::line(&Reply::Build).as_bytes())
                .await
                .is_ok()
            {
                while let Ok(Some(_)) = lines.next_line().await {}
            }
            drop(turn);
            return;
        }
    };
    let name = grant.name.clone();
    if write
        .write_all(protocol::line(&Reply::Granted(grant)).as_bytes())
        .await
        .is_ok()
        && let Ok(Some(line)) = lines.next_line().await
    {
        // The test said what becomes of its database: that is done, and nothing else.
        let done = match protocol::parse(&line) {
            Ok(Request::Keep { run, suite }) => keep_for_run(dispenser, &name, &suite, &run).await,
            Ok(Request::Unreachable { reason }) => {
                tracing::info!("a test could not reach {name}: {reason}");
                if let Some(reason) = watch.check().await {
                    let gone = protocol::line(&Reply::ServerGone { reason });
                    let _ = write.write_all(gone.as_bytes()).await;
                    return;
                }
                dispenser.drop_now(&name).await
            }
            // A drop, or a message that makes no sense here: the database goes.
            Ok(Request::Drop | Request::Claim { .. } | Request::Leave) | Err(_) => {
                dispenser.drop_now(&name).await
            }
        };
        let reply = match done {
            Ok(()) => Reply::Done,
            Err(e) => Reply::Failed {
                reason: e.to_string(),
            },
        };
        let _ = write.write_all(protocol::line(&reply).as_bytes()).await;
        return;
    }
    // The test process closed the connection (its test ended, or it died): dropped once no
    // claim waits (see `super::idle`).
    idle.drop_later(dispenser, name).await;
}

/// Marks the test database `name` kept by the run `run` of `suite` (see [`crate::sweep`]).
async fn keep_for_run(
    dispenser: &Dispenser,
    name: &str,
    suite: &str,
    run: &str,
) -> crate::Result<()> {
    admin::keep_test_db(&*dispenser.server().await?, name, suite, run).await
}
