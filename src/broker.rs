//! The broker: one process per environment that claims, hands out and drops the test databases
//! of every test process (the test processes' side, and why, is [`crate::lease`]).
//!
//! It is the test binary itself, started again by the first process that found none, with
//! `PGFRESH_BROKER_SERVE=<its directory>`: a constructor that runs before `main` sees the
//! variable and serves instead of running the tests. It finds the server as any process does
//! (for the local and docker sources it holds a lease on it, like a test process), takes its
//! own owner lock, and marks what it hands out as its own, so every rule of [`crate::sweep`]
//! holds: when the broker dies, however it dies, its databases are swept, except those a
//! test still has sessions on; their test drops them itself when it ends.
//!
//! Per connection: one claim, answered with a database; then `keep` or `drop`, or the
//! connection closes and the database is dropped. The broker leaves once nobody has been
//! connected for [`IDLE`]; a later process starts another.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::lease::{ALIVE_LOCK, READY_LINE, SERVE_VAR, SOCKET, private_file};
use crate::worker::{Handout, Shared};

/// How long a broker nobody is connected to stays.
const IDLE: Duration = Duration::from_secs(3);

/// The constructor: runs before `main` in every executable that links pgfresh, and does
/// nothing unless [`SERVE_VAR`] is set.
#[cfg(any(target_os = "linux", target_os = "macos"))]
#[used]
#[allow(unsafe_code)]
#[cfg_attr(target_os = "linux", unsafe(link_section = ".init_array"))]
#[cfg_attr(target_os = "macos", unsafe(link_section = "__DATA,__mod_init_func"))]
static HOOK: extern "C" fn() = hook;

#[cfg(any(target_os = "linux", target_os = "macos"))]
extern "C" fn hook() {
    let Some(dir) = std::env::var_os(SERVE_VAR) else {
        return;
    };
    // SAFETY: before `main`, no other thread runs; ignoring SIGPIPE (which `main` would do for
    // a Rust program) keeps a write to a test process that just exited from killing the broker.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let served = std::panic::catch_unwind(|| run(&PathBuf::from(dir)));
    std::process::exit(match served {
        Ok(Ok(())) => 0,
        Ok(Err(_)) => 1,
        Err(_) => 2,
    });
}

/// Serves `dir` until idle, unless another broker already does.
fn run(dir: &Path) -> Result<(), String> {
    let alive = private_file(&dir.join(ALIVE_LOCK))?;
    alive
        .try_lock()
        .map_err(|_| "another broker serves this directory".to_owned())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(serve(dir))
}

async fn serve(dir: &Path) -> Result<(), String> {
    let shared = Arc::new(Shared::default());
    shared.server().await.map_err(|e| e.to_string())?;
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| e.to_string())?;
    // The one line the starting process reads; it closes the pipe then.
    println!("{READY_LINE}");

    let activity = Arc::new(Activity::default());
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (shared, visit) = (shared.clone(), Visit::start(&activity));
                tokio::spawn(async move {
                    client(&shared, stream).await;
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

/// Serves one connection: a claim, then `keep` or `drop`, or the end of the connection.
async fn client(shared: &Arc<Shared>, stream: UnixStream) {
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
    let (answer, name) = match shared.clone().claim_built(hash, suite, run).await {
        Ok(Some((server, name, notices))) => {
            let handout = Handout::new(&server, name.clone(), None);
            let answer = json!({ "granted": {
                "name": name,
                "url": handout.url.as_str(),
                "source": handout.source.to_string(),
                "password_from_user": handout.password_from_user,
                "notices": notices,
            }});
            (answer, Some(name))
        }
        Ok(None) => (json!({ "none": "the template is not built yet" }), None),
        Err(e) => (json!({ "none": e.to_string() }), None),
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
