//! The marker pgfresh puts on every database it creates, and reads back before it touches one.
//!
//! The marker is the database's comment (`COMMENT ON DATABASE`), stored in the shared catalog
//! `pg_shdescription` and so visible from any database of the server:
//! `pgfresh:<kind> key=value …`. A database whose comment does not parse as a marker is not
//! pgfresh's, whatever its name — with one exception, for the moment between `CREATE DATABASE`
//! and `COMMENT ON DATABASE` (two statements: a process can die between them): pgfresh creates
//! every database with `CONNECTION LIMIT` [`CREATED_CONNECTION_LIMIT`], set by the `CREATE`
//! itself. A database with a `pgfresh_` name, that limit and no comment is pgfresh's. Ready
//! clones (`pgfresh_r_…`) and test databases (`pgfresh_<hash8>_<owner>_…`) carry no comment
//! at all: name and limit are their whole marker, given in one statement (the `CREATE`, or the
//! rename that claims a ready clone), and a test database's name carries its owner. A comment
//! comes only when that changes: `kept`, `trash`, and a template's life.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The connection limit pgfresh creates every database with: far above any `max_connections`,
/// so it limits nothing; the ASCII bytes of "pg" (0x7067).
pub(crate) const CREATED_CONNECTION_LIMIT: i32 = 0x7067;

/// What a database pgfresh created is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mark {
    /// A template whose migrations are running; `owner` is the building process.
    Building { owner: i32 },
    /// A complete template of the suite `suite`, last handed out from at `used` (Unix time).
    Template { suite: String, used: i64 },
    /// A test's database, owned by the live process holding the owner lock `owner`: the marker
    /// earlier versions wrote (a test database now carries its owner in its name, and no
    /// comment); still read, so that their leftovers are swept.
    Test { owner: i32 },
    /// A failed test's database, kept on purpose by run `run` of suite `suite`.
    Kept { suite: String, run: String },
    /// A database on its way out: anyone may drop it.
    Trash,
}

impl Mark {
    /// Reads a comment; `None` when it is not a pgfresh marker.
    pub fn parse(comment: &str) -> Option<Self> {
        let rest = comment.strip_prefix("pgfresh:")?;
        let mut words = rest.split_whitespace();
        let kind = words.next()?;
        let fields: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        Some(match kind {
            "building" => Self::Building {
                owner: get("owner")?.parse().ok()?,
            },
            "template" => Self::Template {
                suite: get("suite")?.to_owned(),
                used: get("used")?.parse().ok()?,
            },
            "test" => Self::Test {
                owner: get("owner")?.parse().ok()?,
            },
            "kept" => Self::Kept {
                suite: get("suite")?.to_owned(),
                run: get("run")?.to_owned(),
            },
            "trash" => Self::Trash,
            _ => return None,
        })
    }

    /// Whether `comment` is any pgfresh marker, including ones this version cannot parse.
    pub fn is_ours(comment: Option<&str>) -> bool {
        comment.is_some_and(|c| c.starts_with("pgfresh:"))
    }

    /// Whether a database is pgfresh's: its comment is a marker, or it has none yet but was
    /// created by pgfresh (name and connection limit).
    pub fn created_by_pgfresh(name: &str, comment: Option<&str>, connection_limit: i32) -> bool {
        Self::is_ours(comment)
            || (comment.is_none()
                && connection_limit == CREATED_CONNECTION_LIMIT
                && name.starts_with(crate::names::PREFIX))
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Building { owner } => write!(f, "pgfresh:building owner={owner}"),
            Self::Template { suite, used } => {
                write!(f, "pgfresh:template suite={suite} used={used}")
            }
            Self::Test { owner } => write!(f, "pgfresh:test owner={owner}"),
            Self::Kept { suite, run } => write!(f, "pgfresh:kept suite={suite} run={run}"),
            Self::Trash => f.write_str("pgfresh:trash"),
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// This run's identity for kept databases: nextest's run id under nextest (one process per
/// test, one id for the run); under `cargo test`, the `cargo` process that runs the test
/// binaries one after the other (its pid and start time, so that a failing test's database
/// survives the test binaries that run after it); else this process.
pub(crate) fn run_id(owner: i32) -> String {
    std::env::var("NEXTEST_RUN_ID")
        .ok()
        .filter(|id| !id.is_empty() && !id.contains(char::is_whitespace))
        .or_else(parent_process)
        .unwrap_or_else(|| format!("p{owner}"))
}

/// `c<pid>.<start time>` of the parent process (see [`crate::os::parent`]; none on Windows,
/// where each test process is a run of its own under `cargo test`).
fn parent_process() -> Option<String> {
    let parent = crate::os::parent()?;
    Some(format!("c{}.{}", parent.pid, parent.started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let marks = [
            Mark::Building { owner: 7 },
            Mark::Template {
                suite: "ab12cd34".into(),
                used: 1_700_000_000,
            },
            Mark::Test { owner: 42 },
            Mark::Kept {
                suite: "ab12cd34".into(),
                run: "p42".into(),
            },
            Mark::Trash,
        ];
        for mark in marks {
            assert_eq!(Mark::parse(&mark.to_string()), Some(mark));
        }
    }

    #[test]
    fn run_is_the_parent_process_under_cargo_test() {
        let run = run_id(7);
        if std::env::var_os("NEXTEST_RUN_ID").is_none() {
            assert!(run.starts_with('c') && run.contains('.'), "{run}");
        }
        assert_eq!(run, run_id(8), "the run does not depend on the owner");
    }

    #[test]
    fn foreign_comments_are_not_ours() {
        assert_eq!(Mark::parse("production database"), None);
        assert_eq!(Mark::parse("pgfresh:test"), None);
        assert!(!Mark::is_ours(Some("production")));
        assert!(!Mark::is_ours(None));
        assert!(Mark::is_ours(Some("pgfresh:future-kind x=1")));
    }
}
