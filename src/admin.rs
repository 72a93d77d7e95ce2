//! The database operations pgfresh performs on a server: build a template, clone it, drop a
//! clone. Each runs on the worker over the administrative pool.
//!
//! Every database pgfresh creates carries a marker: a `COMMENT ON DATABASE` starting with
//! `pgfresh:`, kept in the shared catalog `pg_shdescription`, so it is visible from any
//! database. pgfresh checks the marker before it drops or alters anything, so a database that
//! merely has a `pgfresh_` name is never touched.

use sqlx::PgConnection;
use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgDatabaseError, PgPoolOptions};

use crate::error::{Error, Result};
use crate::migrations::{self, MigrationSet};
use crate::server::Server;

/// Marker of a complete template.
const MARK_TEMPLATE: &str = "pgfresh:template";
/// Marker of a template whose migrations are still running (or died half-way).
const MARK_BUILDING: &str = "pgfresh:building";
/// Marker of a test database; the owning process id follows.
const MARK_TEST: &str = "pgfresh:test";

/// Class of the advisory locks that serialise template builds across processes: the ASCII
/// bytes of "pgfr". The second key is taken from the template's hash.
const LOCK_CLASS: i32 = 0x7067_6672;

/// Makes sure the template for `set` (migrated up to `upto`, or to head) exists, building it
/// under an advisory lock if no process has yet. Returns the template's name.
pub(crate) async fn ensure_template(
    server: &Server,
    set: &MigrationSet,
    upto: Option<i64>,
) -> Result<String> {
    let hash = set.hash(upto);
    let name = migrations::template_name(&hash);
    let lock_key = i32::from_str_radix(&hash[..8], 16).unwrap_or_default();
    let mut conn = server
        .admin
        .acquire()
        .await
        .map_err(|e| Error::database("connecting to build a template", e))?;
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(lock_key)
        .execute(&mut *conn)
        .await
        .map_err(|e| Error::database(format!("waiting for the build lock of {name}"), e))?;
    let built = build_locked(server, &mut conn, set, upto, &name).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(lock_key)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // The session lock dies with the connection; make sure the pool does not reuse it.
        conn.detach();
    }
    built.map(|()| name)
}

async fn build_locked(
    server: &Server,
    conn: &mut PgConnection,
    set: &MigrationSet,
    upto: Option<i64>,
    name: &str,
) -> Result<()> {
    let existing: Option<(bool, Option<String>)> = sqlx::query_as(
        "SELECT datistemplate, shobj_description(oid, 'pg_database') \
         FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| Error::database(format!("looking up template {name}"), e))?;
    match existing {
        Some((true, Some(mark))) if mark == MARK_TEMPLATE => return Ok(()),
        Some((_, Some(mark))) if mark.starts_with("pgfresh:") => {
            tracing::info!(template = name, "dropping a half-built template");
            drop_database(server, conn, name, true).await?;
        }
        Some(_) => return Err(Error::NotOurs { name: name.into() }),
        None => {}
    }

    tracing::info!(template = name, origin = %set.origin, "building template");
    execute(conn, &format!(r#"CREATE DATABASE "{name}""#)).await?;
    execute(
        conn,
        &format!(r#"COMMENT ON DATABASE "{name}" IS '{MARK_BUILDING}'"#),
    )
    .await?;
    if let Err(e) = migrate(server, set, upto, name).await {
        let _ = drop_database(server, conn, name, false).await;
        return Err(e);
    }
    // Mark complete only now: a build that dies before this line leaves a database marked
    // `building`, which the next build drops and rebuilds.
    execute(
        conn,
        &format!(r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"#),
    )
    .await?;
    execute(
        conn,
        &format!(r#"COMMENT ON DATABASE "{name}" IS '{MARK_TEMPLATE}'"#),
    )
    .await
}

async fn migrate(server: &Server, set: &MigrationSet, upto: Option<i64>, name: &str) -> Result<()> {
    // A one-connection pool rather than a bare connection: the migrator's future over
    // `&mut PgConnection` is not `Send` for every lifetime, which the worker's tasks need.
    let db = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(server.options.clone().database(name))
        .await
        .map_err(|e| Error::database(format!("connecting to template {name}"), e))?;
    let result = match upto {
        Some(version) => set.migrator.run_to(version, &db).await,
        None => set.migrator.run(&db).await,
    };
    db.close().await;
    result.map_err(|e| migration_error(set, name, e))
}

fn migration_error(set: &MigrationSet, template: &str, e: MigrateError) -> Error {
    match e {
        MigrateError::ExecuteMigration(source, version) => {
            let migration = set.ups().find(|m| m.version == version);
            let description = migration.map_or_else(String::new, |m| m.description.to_string());
            let message = match source.as_database_error() {
                Some(db) => {
                    let position = db
                        .try_downcast_ref::<PgDatabaseError>()
                        .and_then(PgDatabaseError::position)
                        .and_then(|p| match p {
                            sqlx::postgres::PgErrorPosition::Original(pos) => Some(pos),
                            _ => None,
                        });
                    match (position, migration) {
                        (Some(pos), Some(m)) => {
                            let (line, col) = line_col(m.sql.as_str(), pos);
                            format!("{} (at line {line}, column {col})", db.message())
                        }
                        _ => db.message().to_owned(),
                    }
                }
                None => source.to_string(),
            };
            Error::Migration {
                version,
                description,
                template: template.into(),
                message,
            }
        }
        other => Error::MigrationSource {
            location: set.origin.clone(),
            reason: other.to_string(),
        },
    }
}

/// 1-based line and column of the 1-based character position `pos` in `sql`.
pub(crate) fn line_col(sql: &str, pos: usize) -> (usize, usize) {
    let before: String = sql.chars().take(pos.saturating_sub(1)).collect();
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Clones `template` into a new test database and marks it as this process's.
pub(crate) async fn create_test_db(server: &Server, template: &str, hash: &str) -> Result<String> {
    let name = migrations::test_db_name(hash);
    let mut conn = server
        .admin
        .acquire()
        .await
        .map_err(|e| Error::database("connecting to create a test database", e))?;
    // FILE_COPY (PostgreSQL 15+) copies the template's files instead of WAL-logging every
    // block: measured ~17 ms against ~47 ms for the default WAL_LOG on a small template.
    let strategy = if server.version >= 150_000 {
        " STRATEGY FILE_COPY"
    } else {
        ""
    };
    execute(
        &mut conn,
        &format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}"#),
    )
    .await?;
    execute(
        &mut conn,
        &format!(
            r#"COMMENT ON DATABASE "{name}" IS '{MARK_TEST} pid={}'"#,
            std::process::id()
        ),
    )
    .await?;
    Ok(name)
}

/// Drops a test database after checking its marker.
pub(crate) async fn drop_test_db(server: &Server, name: &str) -> Result<()> {
    let mut conn = server
        .admin
        .acquire()
        .await
        .map_err(|e| Error::database(format!("connecting to drop {name}"), e))?;
    drop_database(server, &mut conn, name, false).await
}

/// Drops `name` if it carries a pgfresh marker; `template` first clears `IS_TEMPLATE`.
/// Connections still open to it are terminated (`WITH (FORCE)`).
async fn drop_database(
    server: &Server,
    conn: &mut PgConnection,
    name: &str,
    template: bool,
) -> Result<()> {
    let mark: Option<Option<String>> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| Error::database(format!("checking the marker of {name}"), e))?;
    match mark {
        None => return Ok(()),
        Some(Some(m)) if m.starts_with("pgfresh:") => {}
        Some(_) => return Err(Error::NotOurs { name: name.into() }),
    }
    if template {
        execute(
            conn,
            &format!(r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE false"#),
        )
        .await?;
    }
    if server.version >= 130_000 {
        execute(
            conn,
            &format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#),
        )
        .await
    } else {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(|e| Error::database(format!("disconnecting from {name}"), e))?;
        execute(conn, &format!(r#"DROP DATABASE IF EXISTS "{name}""#)).await
    }
}

async fn execute(conn: &mut PgConnection, sql: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .map(drop)
        .map_err(|e| Error::database(sql.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn positions_become_lines_and_columns() {
        let sql = "CREATE TABLE a();\nCREATE TABLE b(\n  x intt\n);";
        let pos = sql.find("intt").unwrap() + 1;
        assert_eq!(line_col(sql, pos), (3, 5));
        assert_eq!(line_col(sql, 1), (1, 1));
    }
}
