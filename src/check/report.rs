//! What a check reports: [`Passed`] when it passed, [`Failure`] when it did not.

use std::fmt;
use std::path::PathBuf;

use super::problem::Problem;

/// A passing check: what it proved, and notes worth reading (an irreversible migration that
/// was not checked, for instance). `Display` prints both.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Passed {
    /// One sentence saying what the check proved.
    pub summary: String,
    /// Things the check could not prove, or chose not to; never failures.
    pub notes: Vec<String>,
}

impl Passed {
    pub(crate) fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.notes = notes;
        self
    }
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)?;
        for note in &self.notes {
            write!(f, "\n  note: {note}")?;
        }
        Ok(())
    }
}

/// Which run of a migration a [`Failure`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Its up migration, applied the first time.
    Up,
    /// Its down migration.
    Down,
    /// Its up migration again, right after its down.
    Reapply,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "applying",
            Self::Down => "reverting",
            Self::Reapply => "re-applying (after its down)",
        })
    }
}

/// Why a check did not pass. Every message names the offending version (or file) and what to
/// do about it.
///
/// `Debug` prints the same readable message as `Display`, so that a test which `unwrap`s a
/// check, or returns its error from `fn … -> Result<(), Failure>`, shows the message and the
/// schema diff rather than a struct dump.
#[derive(Clone)]
#[non_exhaustive]
pub enum Failure {
    /// The migration set breaks the rules of a linear, reversible history.
    History {
        /// The folder, or `the Migrator` for a compiled-in set.
        origin: String,
        /// Every problem found, oldest version first.
        problems: Vec<Problem>,
    },

    /// A migration's SQL failed.
    Migration {
        /// The migration's version.
        version: i64,
        /// Its description.
        description: String,
        /// Which run of it failed.
        step: Step,
        /// The server's message, with the line and column when the server gave a position.
        message: String,
    },

    /// The down migration did not restore the schema from before the up ([`Step::Down`]), or
    /// applying the up again gave another schema than the first time ([`Step::Reapply`]).
    NotReversible {
        /// The migration's version.
        version: i64,
        /// Its description.
        description: String,
        /// [`Step::Down`] or [`Step::Reapply`].
        step: Step,
        /// The schema objects that differ, as a line diff of their SQL.
        diff: String,
    },

    /// Several migrations failed the up/down check: each defect, in version order.
    Defects(Vec<Failure>),

    /// The schema the migrations produce is not the committed snapshot.
    Drift {
        /// The snapshot file.
        snapshot: PathBuf,
        /// The newest migration's version, `base` for an empty set.
        head: String,
        /// `-` lines are the snapshot's, `+` lines the migrated database's.
        diff: String,
    },

    /// The snapshot file cannot be read (or, when updating it, written).
    SnapshotFile {
        /// The snapshot file.
        snapshot: PathBuf,
        /// What failed, and what to do about it.
        reason: String,
    },

    /// pgfresh could not run the check: no server, an unreadable folder, and the like.
    Harness(crate::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::History { origin, problems } => {
                let s = if problems.len() == 1 { "" } else { "s" };
                write!(
                    f,
                    "the migration history of {origin} has {} problem{s}:",
                    problems.len()
                )?;
                problems.iter().try_for_each(|p| write!(f, "\n  - {p}"))
            }
            Self::Migration {
                version,
                description,
                step,
                message,
            } => write!(
                f,
                "{step} migration {version} ({description}) failed: {message}. Fix the \
                 migration and run the check again."
            ),
            Self::NotReversible {
                version,
                description,
                step: Step::Reapply,
                diff,
            } => write!(
                f,
                "migration {version} ({description}): applying it again after its down gives \
                 another schema than applying it the first time (- first up, + up after down):\
                 \n{diff}The up depends on something its down leaves behind (or on data); make \
                 the down undo everything the up does."
            ),
            Self::NotReversible {
                version,
                description,
                diff,
                ..
            } => write!(
                f,
                "migration {version} ({description}): its down migration does not restore the \
                 schema from before its up (- before the up, + after the down):\n{diff}Make \
                 the .down.sql of {version} undo everything its .up.sql does."
            ),
            Self::Defects(defects) => {
                let versions: Vec<String> = defects
                    .iter()
                    .filter_map(Failure::version)
                    .map(|v| v.to_string())
                    .collect();
                write!(
                    f,
                    "{} migrations fail the up/down check ({}):",
                    defects.len(),
                    versions.join(", ")
                )?;
                defects.iter().try_for_each(|d| write!(f, "\n\n{d}"))
            }
            Self::Drift {
                snapshot,
                head,
                diff,
            } => write!(
                f,
                "the schema at head ({head}) differs from the snapshot {} (- snapshot, + \
                 migrations):\n{diff}If the change is intended, rewrite the snapshot with \
                 `pgfresh check --update` (or pgfresh::check::update_snapshot) and commit it; \
                 otherwise fix the migrations.",
                snapshot.display()
            ),
            Self::SnapshotFile { snapshot, reason } => {
                write!(f, "schema snapshot {}: {reason}", snapshot.display())
            }
            Self::Harness(e) => e.fmt(f),
        }
    }
}

impl Failure {
    /// The version of the migration a failure is about, when it is about one.
    pub fn version(&self) -> Option<i64> {
        match self {
            Self::Migration { version, .. } | Self::NotReversible { version, .. } => Some(*version),
            _ => None,
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent: the message already is the harness error's own.
            Self::Harness(e) => e.source(),
            _ => None,
        }
    }
}

impl From<crate::Error> for Failure {
    /// A migration that failed while pgfresh built a template becomes [`Failure::Migration`];
    /// everything else is [`Failure::Harness`].
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Migration {
                version,
                description,
                message,
                ..
            } => Self::Migration {
                version,
                description,
                step: Step::Up,
                message,
            },
            other => Self::Harness(other),
        }
    }
}
