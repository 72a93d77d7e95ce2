//! The `pgfresh` command: Alembic's migration commands over a folder of reversible sqlx
//! migrations (`<version>_<name>.up.sql` / `.down.sql`).
//!
//! | Alembic | pgfresh |
//! |---|---|
//! | `alembic upgrade head` / `upgrade +1` / `upgrade <rev>` | `pgfresh upgrade head` / `pgfresh upgrade +1` / `pgfresh upgrade <version>` |
//! | `alembic downgrade -1` / `downgrade <rev>` / `downgrade base` | `pgfresh downgrade -1` / `pgfresh downgrade <version>` / `pgfresh downgrade base` |
//! | `alembic current` | `pgfresh current` |
//! | `alembic history --verbose` | `pgfresh history [--verbose]` |
//! | `alembic revision -m "…"` | `pgfresh revision -m "…"` |
//!
//! The database is `--database-url`, else `DB_URL`, else
//! `postgresql://postgres:postgres@localhost:5432/qualer`; the migrations are read from
//! `--source` (default `migrations/`). The commands keep their bookkeeping in sqlx's
//! `_sqlx_migrations` table, so `sqlx migrate run` and `sqlx::migrate!()` agree with them.
//!
//! `upgrade` and `downgrade` refuse to act, with a message saying why and what to do, on an
//! unknown version, a step past either end, a partially applied (dirty) migration, a migration
//! edited after it was applied, and a database that has migrations the folder does not.

mod check;
mod gc;
mod history;
mod leftovers;
mod migrate;
mod revision;
mod target;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::config::redact_url;
use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
use crate::server::{CONNECT_TIMEOUT, address};
use target::{DowngradeTarget, UpgradeTarget};

/// The database the commands use when neither `--database-url` nor `DB_URL` is given.
const DEFAULT_DATABASE_URL: &str = "postgresql://postgres:postgres@localhost:5432/qualer";

/// Alembic-style migration commands for a folder of reversible sqlx migrations.
#[derive(Debug, Parser)]
#[command(name = "pgfresh", version)]
struct Cli {
    /// The database to migrate [default: DB_URL, else
    /// postgresql://postgres:postgres@localhost:5432/qualer]
    #[arg(
        long,
        env = "DB_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL"
    )]
    database_url: Option<String>,

    /// The folder of `<version>_<name>.up.sql` / `.down.sql` migrations.
    #[arg(long, global = true, value_name = "DIR", default_value = "migrations/")]
    source: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Database(DatabaseCommand),
    /// Create a reversible migration: `<UTC yyyymmddHHMMSS>_<slug>.up.sql` and `.down.sql`
    /// in the --source folder.
    Revision {
        /// What the migration does; the file names are made from it.
        #[arg(short, long)]
        message: String,
    },
    /// Check the migrations: a linear history (and, with --database-url, that the database
    /// applied them unedited), an upgrade from empty to head, up/down consistency, and the
    /// schema snapshot (--update rewrites it).
    Check(check::Args),
    /// Remove everything pgfresh created: the marked databases on the --database-url (or
    /// DB_URL) server, and the local clusters and containers it started with this
    /// PGFRESH_RUN_DIR, and the directories killed brokers left there. Tests running at the
    /// same time lose their databases.
    Gc {
        /// List what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The commands that work on a database.
#[derive(Debug, Subcommand)]
enum DatabaseCommand {
    /// Apply migrations: `head` (all pending), `+N` (the next N pending), or up to a version.
    Upgrade {
        /// `head`, `+N`, or a version such as 20231002090000.
        #[arg(allow_negative_numbers = true)]
        target: UpgradeTarget,
    },
    /// Revert migrations: `-N` (the last N applied), `base` (all), or down to a version, which
    /// stays applied.
    Downgrade {
        /// `-N`, `base`, or a version such as 20230915120000.
        #[arg(allow_negative_numbers = true)]
        target: DowngradeTarget,
    },
    /// Show the newest applied migration.
    Current,
    /// List every migration, newest first, with applied and pending marked.
    History {
        /// Also show whether each migration can be reverted and when it was applied.
        #[arg(short, long)]
        verbose: bool,
    },
}

/// Runs the `pgfresh` command line on the process's arguments: what the `pgfresh` binary does,
/// callable from a project's own binary or `xtask` to offer the same commands.
///
/// Errors are printed to standard error; the exit code is 0 on success, 1 when the command
/// failed or refused, and 2 for a command line clap rejects.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(cli.run()),
        Err(e) => {
            eprintln!("pgfresh: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgfresh: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    async fn run(self) -> Result<()> {
        let command = match self.command {
            Command::Revision { message } => {
                return revision::create(&self.source, &message, chrono::Utc::now());
            }
            Command::Check(args) => {
                return check::run(&self.source, self.database_url.as_deref(), args).await;
            }
            Command::Gc { dry_run } => {
                return gc::run(self.database_url.as_deref(), dry_run).await;
            }
            Command::Database(command) => command,
        };
        let set = load(&self.source).await?;
        let url = self
            .database_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or(DEFAULT_DATABASE_URL);
        let mut conn = connect(url).await?;
        let state = history::Ledger::read(&mut conn, &set).await?;
        let result = match command {
            DatabaseCommand::Upgrade { target } => {
                migrate::upgrade(&mut conn, &state, target).await
            }
            DatabaseCommand::Downgrade { target } => {
                migrate::downgrade(&mut conn, &state, target).await
            }
            DatabaseCommand::Current => {
                print!("{}", state.current_text());
                Ok(())
            }
            DatabaseCommand::History { verbose } => {
                print!("{}", state.history_text(verbose));
                Ok(())
            }
        };
        // The server ends the session either way; a failed goodbye changes nothing.
        let _ = conn.close().await;
        result
    }
}

/// Reads the migrations folder.
async fn load(dir: &Path) -> Result<MigrationSet> {
    if !dir.is_dir() {
        return Err(Error::Refused {
            reason: format!("the migrations folder {} does not exist", dir.display()),
            remedy: "Run pgfresh from the project's root, or pass --source DIR".into(),
        });
    }
    MigrationSet::from_dir(dir).await
}

/// Connects to `url`, naming host and port (never the password) when that fails.
async fn connect(url: &str) -> Result<PgConnection> {
    let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| Error::Refused {
        reason: format!(
            "the database URL {} is not valid ({})",
            redact_url(url),
            e.to_string().replace(url, "…")
        ),
        remedy: "Pass --database-url (or set DB_URL) as \
                 postgresql://user:password@host:port/database"
            .into(),
    })?;
    let options = options.application_name("pgfresh");
    let target = address(&options);
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(Error::connect(
            target,
            "--database-url (or DB_URL) names the right host, port, database, user and password",
            e,
        )),
        Err(_) => Err(Error::Timeout {
            what: format!("connecting to PostgreSQL at {target}"),
            seconds: CONNECT_TIMEOUT.as_secs(),
            remedy: "Check that the server is running and that --database-url (or DB_URL) \
                     names it"
                .into(),
        }),
    }
}
