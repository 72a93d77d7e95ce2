//! [`Problem`]: one broken rule of a migration history, and how to fix it.

use std::fmt;

/// One rule of a linear, reversible history that the set (or a database's record of it)
/// breaks. `Display` names the version or file and says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Two up migrations (or two down migrations) share a version.
    DuplicateVersion {
        /// The version.
        version: i64,
        /// The descriptions of the migrations that share it.
        descriptions: Vec<String>,
    },
    /// A version below 1: 0 means "base" to sqlx and pgfresh.
    NonPositiveVersion {
        /// The version.
        version: i64,
        /// Its description.
        description: String,
    },
    /// A migration listed after a newer one (only a hand-built `Migrator` can do this).
    Unordered {
        /// The version out of place.
        version: i64,
        /// The newer version listed before it.
        after: i64,
    },
    /// A `.up.sql` without its `.down.sql`.
    MissingDown {
        /// The version.
        version: i64,
        /// Its description.
        description: String,
    },
    /// A `.down.sql` without its `.up.sql`.
    MissingUp {
        /// The version.
        version: i64,
        /// Its description.
        description: String,
    },
    /// A `.down.sql` next to a simple (`.sql`) migration of the same version.
    DownOfSimple {
        /// The version.
        version: i64,
        /// Its description.
        description: String,
    },
    /// A `.sql` file in the folder that sqlx 0.9.0 silently skips (0.9.1 refuses the folder).
    Ignored {
        /// The file name.
        file: String,
    },
    /// A migration applied to the database whose SQL changed afterwards (checksum mismatch).
    Edited {
        /// The version.
        version: i64,
        /// Its description.
        description: String,
    },
    /// A migration applied to the database that the set does not have.
    NotInSet {
        /// The version.
        version: i64,
        /// Its description, as the database recorded it.
        description: String,
    },
    /// A migration that failed half-way in the database (`success = false`).
    Dirty {
        /// The version.
        version: i64,
        /// Its description, as the database recorded it.
        description: String,
    },
    /// A migration older than the newest applied one that the database never applied: sqlx
    /// would apply it out of order.
    Skipped {
        /// The version.
        version: i64,
        /// Its description.
        description: String,
        /// The newest version the database applied.
        newest: i64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateVersion {
                version,
                descriptions,
            } => write!(
                f,
                "version {version} is used by {} migrations ({}); give all but one a new, \
                 newer version",
                descriptions.len(),
                descriptions.join(", ")
            ),
            Self::NonPositiveVersion {
                version,
                description,
            } => write!(
                f,
                "migration {version} ({description}) has a version below 1, which sqlx and \
                 pgfresh read as base; rename its files with a positive version"
            ),
            Self::Unordered { version, after } => write!(
                f,
                "migration {version} comes after migration {after} in the Migrator; list the \
                 migrations oldest first"
            ),
            Self::MissingDown {
                version,
                description,
            } => write!(
                f,
                "migration {version} ({description}) has no down migration; add {} that \
                 reverts it",
                file_name(*version, description, ".down.sql")
            ),
            Self::MissingUp {
                version,
                description,
            } => write!(
                f,
                "migration {version} ({description}) has a down migration but no up migration; \
                 add {} or delete the .down.sql",
                file_name(*version, description, ".up.sql")
            ),
            Self::DownOfSimple {
                version,
                description,
            } => write!(
                f,
                "migration {version} ({description}) is a simple .sql migration with a .down.sql \
                 beside it; rename it to {} so sqlx pairs them",
                file_name(*version, description, ".up.sql")
            ),
            Self::Ignored { file } => write!(
                f,
                "{file} is not read by sqlx (names are <version>_<description>.sql); rename it, \
                 or move it out of the folder if it is not a migration"
            ),
            Self::Edited {
                version,
                description,
            } => write!(
                f,
                "migration {version} ({description}) was edited after the database applied it \
                 (its checksum differs); restore the applied text (see `git log -p` of its file) \
                 and put the change in a new migration (`pgfresh revision -m \"...\"`)"
            ),
            Self::NotInSet {
                version,
                description,
            } => write!(
                f,
                "migration {version} ({description}) is applied in the database but missing \
                 from the set; restore its files, or revert it from that database"
            ),
            Self::Dirty {
                version,
                description,
            } => write!(
                f,
                "migration {version} ({description}) is marked failed (partially applied) in the \
                 database; repair the database by hand, then delete its row from the migrations \
                 table"
            ),
            Self::Skipped {
                version,
                description,
                newest,
            } => write!(
                f,
                "migration {version} ({description}) is older than {newest}, the newest migration \
                 the database applied, but was never applied there (a branch merged late); give \
                 it a version newer than {newest}"
            ),
        }
    }
}

/// `<version>_<description><suffix>`: the file sqlx reads a migration from.
fn file_name(version: i64, description: &str, suffix: &str) -> String {
    format!("{version}_{}{suffix}", description.replace(' ', "_"))
}

/// The version a problem is about, for listing them in order (files first).
pub(crate) fn sort_key(p: &Problem) -> i64 {
    match p {
        Problem::Ignored { .. } => i64::MIN,
        Problem::Unordered { version, .. }
        | Problem::DuplicateVersion { version, .. }
        | Problem::NonPositiveVersion { version, .. }
        | Problem::MissingDown { version, .. }
        | Problem::MissingUp { version, .. }
        | Problem::DownOfSimple { version, .. }
        | Problem::Edited { version, .. }
        | Problem::NotInSet { version, .. }
        | Problem::Dirty { version, .. }
        | Problem::Skipped { version, .. } => *version,
    }
}
