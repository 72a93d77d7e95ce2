//! The relation cache init file (`pg_internal.init`) of templates and ready clones.
//!
//! A backend's first connection to a database without that file reads the system catalogs to
//! build its relation cache and writes the file for the next one. `CREATE DATABASE … STRATEGY
//! FILE_COPY` copies the template's directory, file included, so with it every clone's first
//! connection (a test's first query) starts from the cache instead: ~2 ms less server CPU per
//! test (7.9 → 5.9 ms per first connection, PostgreSQL 15, 80 clones).
//!
//! The file goes away more often than one would think:
//! - a `VACUUM` or `ANALYZE` of a catalog removes it in the database it runs in: a migration's,
//!   and autovacuum's. Autovacuum also visits a sealed template (`ALLOW_CONNECTIONS false`
//!   keeps clients out, not its workers), and the renames, creates and drops of pgfresh's
//!   clones make `pg_database` worth vacuuming after every run: seen here, after a few runs of
//!   the benchmark's edit loop, the template had lost its file, and so had every ready clone
//!   made after that;
//! - a server's start removes every database's file (a local cluster restarted from its kept
//!   data, say).
//!
//! So the template gets its file when it is built ([`write`]), and again before the broker
//! makes ready clones of it ([`restore_in_template`]); the ready clones made without it get
//! theirs while the broker is idle ([`give_to_one_clone`]). All of it only where pgfresh may
//! look at the data directory (`pg_stat_file`: a superuser, or `pg_read_server_files`); elsewhere
//! the build connects once and nothing more is done.

use sqlx::{Connection, PgConnection};

use crate::admin;
#[cfg(unix)]
use crate::admin::execute;
use crate::error::{Error, Result};
use crate::server::Server;

/// How many times [`write`] connects at most.
const ATTEMPTS: usize = 5;

/// Connects to `name` until its file is there (at most [`ATTEMPTS`] times; once where pgfresh
/// cannot look). `conn` is an administrative connection, not to `name`.
///
/// A backend that receives a cache invalidation while it starts does not write the file, and
/// on a busy server every `CREATE` or `DROP DATABASE` elsewhere (and autovacuum's update of
/// `pg_database`) sends one: hence the attempts.
pub(crate) async fn write(server: &Server, conn: &mut PgConnection, name: &str) -> Result<()> {
    for _ in 0..ATTEMPTS {
        let db = PgConnection::connect_with(&server.options.clone().database(name))
            .await
            .map_err(|e| Error::database(format!("connecting to {name}"), e))?;
        db.close()
            .await
            .map_err(|e| Error::database(format!("disconnecting from {name}"), e))?;
        // Written, or not pgfresh's to look at.
        if present(conn, name).await != Some(false) {
            break;
        }
        tracing::debug!(
            database = name,
            "no relation cache file yet: connecting again"
        );
    }
    Ok(())
}

/// Gives the sealed template `name` its file again when it lost it: opens it to connections
/// for as long as [`write`] takes (a `CREATE DATABASE` from it meanwhile waits for that
/// session to leave), then seals it again. Returns whether it did.
#[cfg(unix)]
pub(crate) async fn restore_in_template(
    server: &Server,
    conn: &mut PgConnection,
    name: &str,
) -> Result<bool> {
    if present(conn, name).await != Some(false) {
        return Ok(false);
    }
    tracing::debug!(template = name, "the template lost its relation cache file");
    execute(
        conn,
        &format!(r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true"#),
    )
    .await?;
    let written = write(server, conn, name).await;
    let sealed = execute(
        conn,
        &format!(r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false"#),
    )
    .await;
    written.and(sealed).map(|()| true)
}

/// Gives a clone of the template `hash` that has no file its file, by connecting to it once: a
/// ready clone, or one of `ahead` (made ahead for the next claims), not in `tried`. Returns its
/// name, or `None` when no such clone is left (or pgfresh cannot look). A clone whose file was
/// not written (an invalidation came while its backend started) stays without: the caller
/// tries each once.
#[cfg(unix)]
pub(crate) async fn give_to_one_clone(
    server: &Server,
    conn: &mut PgConnection,
    hash: &str,
    ahead: &[String],
    tried: &[String],
) -> Result<Option<String>> {
    let Some(name) = admin::without_cache_file(conn, hash, ahead, tried).await? else {
        return Ok(None);
    };
    let db = PgConnection::connect_with(&server.options.clone().database(&name))
        .await
        .map_err(|e| Error::database(format!("connecting to {name}"), e))?;
    let _ = db.close().await;
    Ok(Some(name))
}

/// Whether `name` has its file; `None` when pgfresh may not look (or it is gone).
async fn present(conn: &mut PgConnection, name: &str) -> Option<bool> {
    sqlx::query_scalar::<_, Option<i64>>(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM pg_database WHERE datname = $1",
        admin::CACHE_FILE_SIZE
    )))
    .bind(name)
    .fetch_optional(conn)
    .await
    .ok()
    .flatten()
    .map(|size| size.is_some())
}
