//! A Maven repository on 127.0.0.1 for the embedded source's tests: a small HTTP/1.1 server
//! over the mirror `scripts/maven-mirror.sh` makes (zonky's layout, built from the npm-packed
//! builds), which logs every request and can serve a fault.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The mirror's root, made once per build (the script reuses what it made before); `None`
/// when it cannot be made here (no npm), which [`super::available`] turns into a failure on CI.
pub fn mirror() -> Option<&'static Path> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("maven-mirror");
        let made = Command::new("bash")
            .arg("scripts/maven-mirror.sh")
            .arg(&out)
            .args(["17", "18"])
            .output()
            .ok()?;
        if !made.status.success() {
            eprintln!(
                "scripts/maven-mirror.sh failed:\n{}",
                String::from_utf8_lossy(&made.stderr)
            );
            return None;
        }
        let text = String::from_utf8_lossy(&made.stdout);
        Some(PathBuf::from(text.lines().last()?.trim()))
    });
    let present = super::available(root.is_some(), "a Maven mirror (scripts/maven-mirror.sh)");
    root.as_deref().filter(|_| present)
}

/// What the repository does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: it serves the mirror.
    None,
    /// Every jar arrives with one bit flipped (its checksums are the true ones).
    Tampered,
    /// Every jar's body stops halfway, after a header announcing all of it.
    CutOff,
    /// It reads each request and never answers.
    Silent,
    /// Not a fault: it answers 401 to a request without the user `u` and password `p`.
    Private,
}

/// A running repository; stopped (its port closed) when dropped or [`stop`](Self::stop)ped.
pub struct Repository {
    pub url: String,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Repository {
    pub fn serve(root: &Path, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (root, log, stopping) = (root.to_owned(), log.clone(), stopping.clone());
            move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (root, log) = (root.clone(), log.clone());
                    std::thread::spawn(move || answer(stream, &root, fault, &log));
                }
            }
        });
        Self {
            url: format!("http://{addr}"),
            addr,
            log,
            stopping,
            thread: Some(thread),
        }
    }

    /// The paths asked for so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many times a jar was asked for.
    pub fn jar_downloads(&self) -> usize {
        self.requests()
            .iter()
            .filter(|p| p.ends_with(".jar"))
            .count()
    }

    /// Closes the port: from now on a connection is refused.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Repository {
    fn drop(&mut self) {
        self.shut();
    }
}

fn answer(stream: TcpStream, root: &Path, fault: Fault, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut authorized = false;
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header.trim().is_empty() => break,
            // base64 of `u:p`
            Ok(_) => {
                authorized |= header
                    .trim()
                    .eq_ignore_ascii_case("authorization: Basic dTpw")
            }
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    log.lock().unwrap().push(path.clone());
    let mut stream = stream;
    if fault == Fault::Silent {
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    if fault == Fault::Private && !authorized {
        let _ = stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let file = root.join(path.trim_start_matches('/'));
    let body = match std::fs::read(&file) {
        Ok(body) if !path.contains("..") => body,
        _ => {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    };
    let jar = path.ends_with(".jar");
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = match fault {
        Fault::Tampered if jar => {
            let mut body = body;
            let middle = body.len() / 2;
            body[middle] ^= 1;
            stream.write_all(&body)
        }
        Fault::CutOff if jar => stream.write_all(&body[..body.len() / 2]),
        _ => stream.write_all(&body),
    };
}
