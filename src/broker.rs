//! The broker: one process per environment that claims, hands out and drops the test databases
//! of every test process (the test processes' side, and why, is [`crate::lease`]).
//!
//! It is the test binary itself, started again by the first process that found none, with
//! `PGFRESH_BROKER_SERVE=<its directory>`: the constructor ([`crate::hook`]) that runs before
//! `main` sees the variable and serves instead of running the tests. It finds the server as any process does
//! (for the local and docker sources it holds a lease on it, like a test process), takes its
//! own owner lock, and marks what it hands out as its own, so every rule of [`crate::sweep`]
//! holds: when the broker dies, however it dies, its databases are swept, except those a
//! test still has sessions on; their test drops them itself when it ends.
//!
//! Per connection: one claim, answered with a database; then `keep` or `drop`, or the
//! connection closes and the database is dropped. While a claim's template is not built, one
//! claim at a time is answered `build` (the process builds it and closes the connection), and
//! the others wait for it. The broker leaves once nobody has been
//! connected for [`IDLE`]; a later process starts another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::OwnedMutexGuard;

use crate::lease::{
    ALIVE_LOCK, READY_LINE, SERVE_VAR, SOCKET, STILL_WAITING, private_file, remove_dir,
};
use crate::worker::{Handout, Shared};

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
fn run(dir: &Path) -> Result<(), String> {
    let alive = private_file(&dir.join(ALIVE_LOCK))?;
    alive
        .try_lock()
        .map_err(|_| "another broker serves this directory".to_owned())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let served = runtime.block_on(serve(dir));
    drop(alive);
    remove_dir(dir);
    served
}

async fn serve(dir: &Path) -> Result<(), String> {
    let shared = Arc::new(Shared::for_broker());
    shared.server().await.map_err(|e| e.to_string())?;
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| e.to_string())?;
    // The one line the starting process reads; it closes the pipe then.
    println!("{READY_LINE}");

    let activity = Arc::new(Activity::default());
    let turns = Arc::new(Turns::default());
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (shared, turns) = (shared.clone(), turns.clone());
                let visit = Visit::start(&activity);
                tokio::spawn(async move {
                    client(&shared, &turns, stream).await;
                    drop(visit);
                });
            }
            _ = tick.tick() => {
                if activity.idle_for() >= IDLE {
                    break;
                }
            }
        }
    }
    // Nobody finds this broker any more; the databases still being dropped finish first.
    let _ = std::fs::remove_file(&path);
    drop(listener);
    while activity.connected() > 0 {
        tick.tick().await;
    }
    shared.give_back_ahead().await;
    Ok(())
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
    /// A database (the answer, and the database's name).
    Granted(Value, String),
    /// The template is not built: the process builds it, holding the turn.
    Build(OwnedMutexGuard<()>),
    /// Nothing (the answer says why): the process does the work itself.
    None(Value),
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
    shared: &Arc<Shared>,
    turns: &Turns,
    hash: &str,
    suite: &str,
    run: &str,
    write: &mut OwnedWriteHalf,
) -> Answer {
    let mut turn = None;
    loop {
        if turn.is_some() && shared.knows_template(hash) {
            // Built by the process before, and found by the claim before: the claims waiting
            // behind this one need no turn, and get their clones side by side.
            turn = None;
        }
        match shared.clone().claim_built(hash, suite, run).await {
            Ok(Some((server, name, notices))) => {
                let handout = Handout::new(&server, name.clone(), None);
                let answer = json!({ "granted": {
                    "name": name,
                    "url": handout.url.as_str(),
                    "source": handout.source.to_string(),
                    "password_from_user": handout.password_from_user,
                    "notices": notices,
                }});
                return Answer::Granted(answer, name);
            }
            Ok(None) => {}
            Err(e) => return Answer::None(json!({ "none": e.to_string() })),
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
                    let waiting = json!({ "waiting": "for the template's build" });
                    if write.write_all(format!("{waiting}\n").as_bytes()).await.is_err() {
                        return Answer::None(waiting);
                    }
                }
            }
        });
    }
}

/// Serves one connection: a claim, then `keep` or `drop`, or the end of the connection.
async fn client(shared: &Arc<Shared>, turns: &Turns, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(line)) = lines.next_line().await else {
        return;
    };
    let request: Value = serde_json::from_str(&line).unwrap_or_default();
    let claim = &request["claim"];
    let (Some(hash), Some(suite), Some(run)) = (
        claim["hash"].as_str(),
        claim["suite"].as_str(),
        claim["run"].as_str(),
    ) else {
        let _ = write
            .write_all(format!("{}\n", json!({ "none": "not a claim" })).as_bytes())
            .await;
        return;
    };
    let (answer, name) = match answer_claim(shared, turns, hash, suite, run, &mut write).await {
        Answer::Granted(answer, name) => (answer, Some(name)),
        Answer::None(answer) => (answer, None),
        Answer::Build(turn) => {
            // Its turn to build: the next claim waits until the connection closes.
            let build = json!({ "build": {} });
            if write
                .write_all(format!("{build}\n").as_bytes())
                .await
                .is_ok()
            {
                while let Ok(Some(_)) = lines.next_line().await {}
            }
            drop(turn);
            return;
        }
    };
    let Some(name) = name else {
        let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
        return;
    };
    if write
        .write_all(format!("{answer}\n").as_bytes())
        .await
        .is_ok()
        && let Ok(Some(line)) = lines.next_line().await
    {
        // The test said what becomes of its database: that is done, and nothing else.
        let request: Value = serde_json::from_str(&line).unwrap_or_default();
        let done = if let Some(keep) = request.get("keep") {
            let run = keep["run"].as_str().unwrap_or_default();
            let suite = keep["suite"].as_str().unwrap_or(suite);
            shared.keep_for_run(&name, suite, run).await
        } else {
            shared.drop_now(&name).await
        };
        let answer = match done {
            Ok(()) => json!({ "ok": {} }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
        return;
    }
    // The test process closed the connection (its test ended, or it died).
    shared.drop_in_background(&name).await;
}
