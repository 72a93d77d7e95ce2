//! A server of a test's own, started by its children in a private run directory.

use std::process::Command;

use super::child::eventually;
use super::sources::docker_image;

/// A server of a test's own: a fresh `PGFRESH_RUN_DIR`, so that the children of the test
/// start (and share) their own local cluster or container instead of anyone else's, and a
/// test can kill it or count what is on it without disturbing tests running in parallel.
pub struct OwnServer {
    dir: tempfile::TempDir,
    kind: &'static str,
    image: Option<String>,
    linger: u64,
    lease: Option<std::fs::File>,
}

impl OwnServer {
    /// A local cluster (`kind` = `local`) or a container (`docker`, from `PGFRESH_IMAGE`, else
    /// the offline image when it is there, else pgfresh's default) that stops `linger` seconds
    /// after its last user.
    pub fn new(kind: &'static str, linger: u64) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // The server may run as `postgres` when the tests run as root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let image = (kind == "docker").then(docker_image).flatten();
        Self {
            dir,
            kind,
            image,
            linger,
            lease: None,
        }
    }

    /// The directory given to pgfresh as `PGFRESH_RUN_DIR`.
    pub fn base(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The environment that makes a child use this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGFRESH_SERVER", self.kind.to_owned()),
            ("PGFRESH_RUN_DIR", self.dir.path().display().to_string()),
            ("PGFRESH_LINGER", self.linger.to_string()),
        ];
        if let Some(image) = &self.image {
            env.push(("PGFRESH_IMAGE", image.clone()));
        }
        env
    }

    /// pgfresh's run directory inside ours, once a child has created it.
    pub fn run_dir(&self) -> Option<std::path::PathBuf> {
        let kind = format!("-{}-", self.kind);
        std::fs::read_dir(self.dir.path())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(&kind))
            })
    }

    /// The key pgfresh gave the server (the run directory's last part; the containers' label).
    pub fn key(&self) -> Option<String> {
        let dir = self.run_dir()?;
        let name = dir.file_name()?.to_string_lossy().into_owned();
        name.split_once(&format!("-{}-", self.kind))
            .map(|(_, key)| key.to_owned())
    }

    /// `(port, password)` of the running server, from the run directory's `state` file.
    pub fn state(&self) -> Option<(u16, String)> {
        let text = std::fs::read_to_string(self.run_dir()?.join("state")).ok()?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        Some((get("port")?.parse().ok()?, get("password")?))
    }

    /// The postmaster's pid (local kind), from the data directory's `postmaster.pid`.
    pub fn postmaster_pid(&self) -> u32 {
        let pidfile = self.run_dir().unwrap().join("data/postmaster.pid");
        let text = std::fs::read_to_string(&pidfile).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// A URL to the running server's `postgres` database.
    pub fn admin_url(&self) -> String {
        let (port, password) = self.state().expect("the server is running");
        format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres")
    }

    /// Restarts the running cluster (local kind) with `settings` added to its configuration,
    /// on the same port, as the user that owns it.
    pub fn restart_with(&self, settings: &[&str]) {
        use std::io::Write;
        use std::os::unix::fs::MetadataExt;
        let dir = self.run_dir().expect("the server is running");
        let data = dir.join("data");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(conf, "\n{}", settings.join("\n")).unwrap();
        let text = std::fs::read_to_string(dir.join("state")).unwrap();
        let pg_ctl = text
            .lines()
            .find_map(|l| l.strip_prefix("handle="))
            .expect("the local cluster records its pg_ctl");
        let owner = std::fs::metadata(&data).unwrap();
        let status = Command::new("setpriv")
            .args([
                "--reuid",
                &owner.uid().to_string(),
                "--regid",
                &owner.gid().to_string(),
            ])
            .args(["--clear-groups", pg_ctl, "-D"])
            .arg(&data)
            .args(["restart", "-m", "fast", "-w"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl restart failed");
    }

    /// Takes a lease on the server like a test process does, as soon as a child has created the
    /// run directory (within `limit`), so that the server outlives gaps between the children.
    pub fn hold(&mut self, limit: std::time::Duration) {
        let mut lease = None;
        eventually(limit, || {
            lease = self
                .run_dir()
                .and_then(|d| std::fs::File::open(d.join("lease")).ok());
            lease.is_some()
        });
        let lease = lease.expect("a child created the run directory");
        lease.lock_shared().unwrap();
        self.lease = Some(lease);
    }

    /// Gives the lease back.
    pub fn release(&mut self) {
        self.lease = None;
    }

    /// Whether the server pgfresh started is gone: nothing answers on `port`, no state file,
    /// no data directory (or, local kind, one its guardian kept after a clean stop: the `kept`
    /// marker), no container with its key, and no process (server or guardian) refers to the
    /// run directory.
    pub fn gone(&self, port: u16) -> bool {
        let port_closed = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
        let files_gone = self.run_dir().is_none_or(|d| {
            !d.join("state").exists() && (!d.join("data").exists() || d.join("kept").exists())
        });
        // By run directory, not by key: the key is the image's, shared with the container of
        // the process running the tests when that uses the same image.
        let containers_gone = self.kind != "docker"
            || Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!(
                    "label=dev.pgfresh.rundir={}",
                    self.dir.path().display()
                ))
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.is_empty());
        port_closed && files_gone && containers_gone && self.processes().is_empty()
    }

    /// Processes whose command line names our directory (the cluster's, the guardian).
    pub fn processes(&self) -> Vec<String> {
        let needle = self.dir.path().display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                let pid = entry.file_name().to_string_lossy().into_owned();
                found.push(format!("{pid}: {}", cmdline.trim()));
            }
        }
        found
    }

    /// Releases the lease and waits up to the linger time plus `slack` for the server to be
    /// [`gone`](Self::gone); returns how long that took, `None` when it did not happen.
    pub fn wait_gone(
        &mut self,
        port: u16,
        slack: std::time::Duration,
    ) -> Option<std::time::Duration> {
        self.release();
        let start = std::time::Instant::now();
        let limit = std::time::Duration::from_secs(self.linger) + slack;
        eventually(limit, || self.gone(port)).then(|| start.elapsed())
    }
}

impl Drop for OwnServer {
    /// Never leaves a server behind a failed test: its guardian stops it once the lease is
    /// given back, and removing the directory before that would leave the server running.
    fn drop(&mut self) {
        self.release();
        if let Some((port, _)) = self.state() {
            let limit = std::time::Duration::from_secs(self.linger + 20);
            eventually(limit, || self.gone(port));
        }
    }
}
