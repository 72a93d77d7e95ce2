//! Operations on the databases pgfresh creates: markers, clones, ready clones, drops.
//!
//! Every database pgfresh creates carries a marker (see [`crate::marker`]); nothing here alters
//! or drops a database without reading its marker first, except the broker's clones made ahead,
//! which it renames knowing it made them (nobody else touches a live owner's test databases), so
//! a database that merely has a `pgfresh_` name is never touched.

use std::time::{Duration, Instant};

use sqlx::PgConnection;

use crate::error::{Error, Result};
use crate::marker::{CREATED_CONNECTION_LIMIT, Mark};
use crate::names;
use crate::server::{Server, Urgency};

/// Runs one statement built from names pgfresh generated (hex digits and underscores only).
pub(crate) async fn execute(conn: &mut PgConnection, sql: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .map(drop)
        .map_err(|e| Error::database(sql.to_owned(), e))
}

/// Writes the marker of `name`.
pub(crate) async fn set_mark(conn: &mut PgConnection, name: &str, mark: &Mark) -> Result<()> {
    execute(
        conn,
        &format!(r#"COMMENT ON DATABASE "{name}" IS '{mark}'"#),
    )
    .await
}

/// What [`mark_of`] found of a database pgfresh created.
#[derive(Debug)]
pub(crate) struct Marked {
    /// It is a template (`datistemplate`).
    pub is_template: bool,
    /// The role it belongs to, when that is a role pgfresh made for tests (see
    /// [`crate::role`]). Read by the broker (Unix).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub role: Option<String>,
    /// Its marker: `None` when it has none yet, or one of another pgfresh version.
    pub mark: Option<Mark>,
}

impl Marked {
    /// When it is a complete template (a template database marked `template`): when it was
    /// last recorded as used.
    pub fn complete_template(&self) -> Option<i64> {
        match (&self.mark, self.is_template) {
            (Some(Mark::Template { used, .. }), true) => Some(*used),
            _ => None,
        }
    }
}

/// `name`'s state, `None` when there is no such database. A database pgfresh did not create
/// is an error.
pub(crate) async fn mark_of(conn: &mut PgConnection, name: &str) -> Result<Option<Marked>> {
    let row: Option<(bool, Option<String>, i32, Option<String>)> = sqlx::query_as(
        "SELECT datistemplate, shobj_description(oid, 'pg_database'), datconnlimit, \
         CASE WHEN shobj_description(datdba, 'pg_authid') = $2 \
         THEN pg_get_userbyid(datdba)::text END \
         FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .bind(crate::role::COMMENT)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| Error::database(format!("reading the marker of {name}"), e))?;
    match row {
        None => Ok(None),
        Some((is_template, comment, limit, role))
            if Mark::created_by_pgfresh(name, comment.as_deref(), limit) =>
        {
            Ok(Some(Marked {
                is_template,
                role,
                mark: comment.as_deref().and_then(Mark::parse),
            }))
        }
        Some(_) => Err(Error::NotOurs { name: name.into() }),
    }
}

/// Drops `name` after checking its marker; connections still open to it are terminated.
/// `version` is the server's `server_version_num`.
pub(crate) async fn drop_database(version: u32, conn: &mut PgConnection, name: &str) -> Result<()> {
    let Some(marked) = mark_of(conn, name).await? else {
        return Ok(());
    };
    drop_marked(version, conn, name, marked.is_template).await
}

/// Drops `name` if its marker is still `listed`, the one a listing read a moment ago: a
/// database re-marked since then (say, kept by its test's process just before that process
/// exited) is left alone. Says whether it dropped it.
pub(crate) async fn drop_if_still(
    version: u32,
    conn: &mut PgConnection,
    name: &str,
    listed: Option<&Mark>,
) -> Result<bool> {
    match mark_of(conn, name).await? {
        Some(marked) if marked.mark.as_ref() == listed => {
            drop_marked(version, conn, name, marked.is_template).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Drops `name`, whose marker the caller has read.
async fn drop_marked(
    version: u32,
    conn: &mut PgConnection,
    name: &str,
    is_template: bool,
) -> Result<()> {
    if is_template {
        execute(
            conn,
            &format!(r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE false"#),
        )
        .await?;
    }
    disconnect(conn, name).await?;
    execute(conn, &drop_sql(version, name)).await
}

/// `DROP DATABASE`, forcing out a session that connected after the last look (13+).
fn drop_sql(version: u32, name: &str) -> String {
    if version >= 130_000 {
        format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)
    } else {
        format!(r#"DROP DATABASE IF EXISTS "{name}""#)
    }
}

/// The sessions connected to the database named `$1`, this one aside: the `FROM` and `WHERE`
/// of [`disconnect`]'s statement and of [`sessions`]'s.
macro_rules! sessions_of {
    () => {
        "FROM pg_stat_get_activity(NULL) \
         WHERE datid = (SELECT oid FROM pg_database WHERE datname = $1) \
           AND pid <> pg_backend_pid()"
    };
}

/// Ends the sessions still connected to `name` and waits until they are gone.
///
/// `DROP DATABASE … WITH (FORCE)` and `pg_terminate_backend(pid, timeout)` would do it on
/// their own, but both look for the ended backends again only after 100 ms: a test's pool that
/// closed a moment before costs a whole step. A backend that was told to end is gone within a
/// millisecond or two, so poll for that here instead (for at most [`DISCONNECT_WAIT`]).
pub(crate) async fn disconnect(conn: &mut PgConnection, name: &str) -> Result<()> {
    // One statement ends them and says how many there were: none, most of the time.
    let ended: i64 = sqlx::query_scalar(concat!(
        "SELECT count(pg_terminate_backend(pid)) ",
        sessions_of!()
    ))
    .bind(name)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| Error::database(format!("disconnecting from {name}"), e))?;
    sessions_left(conn, name, ended, DISCONNECT_WAIT)
        .await
        .map(drop)
}

/// Empties `name` of sessions that should be on their way out (`counted` of them, when the
/// caller has just counted them): gives them [`LEAVE_WAIT`] to go on their own, then ends
/// what is left with [`disconnect`].
pub(crate) async fn see_off(
    conn: &mut PgConnection,
    name: &str,
    counted: Option<i64>,
) -> Result<()> {
    let counted = match counted {
        Some(n) => n,
        None => sessions(conn, name).await?,
    };
    if sessions_left(conn, name, counted, LEAVE_WAIT).await? > 0 {
        disconnect(conn, name).await?;
    }
    Ok(())
}

/// Waits, for at most `within`, until the sessions connected to `name` (`left` of them at the
/// last count) are gone, looking again after 1, 2, 4 … (at most 25) ms; returns how many are
/// left.
async fn sessions_left(
    conn: &mut PgConnection,
    name: &str,
    mut left: i64,
    within: Duration,
) -> Result<i64> {
    let started = Instant::now();
    let mut step = Duration::from_millis(1);
    while left > 0 && started.elapsed() < within {
        tokio::time::sleep(step).await;
        step = (step * 2).min(Duration::from_millis(25));
        left = sessions(conn, name).await?;
    }
    Ok(left)
}

/// How many sessions are connected to `name`, this one aside.
async fn sessions(conn: &mut PgConnection, name: &str) -> Result<i64> {
    sqlx::query_scalar(concat!("SELECT count(*) ", sessions_of!()))
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| Error::database(format!("disconnecting from {name}"), e))
}

/// How long [`disconnect`] waits for the sessions it ended.
const DISCONNECT_WAIT: Duration = Duration::from_secs(5);

/// How long [`see_off`] waits for sessions to leave on their own before it ends them.
///
/// A test's pool is closed as its guard drops, a moment before the drop is asked for, and a
/// template's builder has closed its connections before the template is sealed: their
/// sessions are on their way out. Ended by pgfresh instead, each would log `FATAL:
/// terminating connection due to administrator command` on the server (under the url source,
/// in the user's own server's log): 44–64 per 100-test run of the benchmark's suite. Sessions
/// still there after this wait belong to code that held on to them: those are ended.
const LEAVE_WAIT: Duration = Duration::from_millis(500);

/// A complete template: its name, and the role it belongs to when that is a role pgfresh made
/// for tests (see [`crate::role`]), which its clones then belong to as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateDb {
    pub name: String,
    pub role: Option<String>,
}

/// `CREATE DATABASE`, with the connection limit that marks it as pgfresh's from the start
/// (see [`crate::marker`]), cloning `template` when there is one.
///
/// `FILE_COPY` (PostgreSQL 15+) copies the template's files instead of WAL-logging every block:
/// measured ~17 ms against ~47 ms for the default `WAL_LOG` on a tuned server.
///
/// `owner` is the role the database belongs to when it is not pgfresh's own (see
/// [`crate::role`]) for a template; a clone belongs to its template's (`template.role`).
pub(crate) fn create_sql(
    version: u32,
    name: &str,
    template: Option<&TemplateDb>,
    owner: Option<&str>,
) -> String {
    let limit = CREATED_CONNECTION_LIMIT;
    let owner = match template.and_then(|t| t.role.as_deref()).or(owner) {
        Some(owner) => format!(r#" OWNER "{owner}""#),
        None => String::new(),
    };
    match template {
        None => format!(r#"CREATE DATABASE "{name}"{owner} CONNECTION LIMIT {limit}"#),
        Some(template) => {
            let strategy = if version >= 150_000 {
                " STRATEGY FILE_COPY"
            } else {
                ""
            };
            let template = &template.name;
            format!(
                r#"CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}{owner} CONNECTION LIMIT {limit}"#
            )
        }
    }
}

/// A test database for this process: a ready clone when there is one, else a new clone.
/// `urgency`: [`Urgency::Now`] for a test waiting for it, [`Urgency::CanWait`] for one made
/// ahead (by the broker, which so adopts the ready clones an earlier run left).
///
/// Either way one statement makes it this process's: its name carries the owner (see
/// [`names::test_db_name`]), and with the connection limit it was created with, that is its
/// whole marker (see [`crate::marker`]): no comment to write.
pub(crate) async fn claim_or_clone(
    server: &Server,
    template: &TemplateDb,
    hash: &str,
    urgency: Urgency,
) -> Result<String> {
    let mut conn = server.admin_conn(urgency, "create a test database").await?;
    let name = names::test_db_name(hash, server.owner);
    if !claim_ready(&mut conn, hash, &name).await? {
        execute(
            &mut conn,
            &create_sql(server.version, &name, Some(template), None),
        )
        .await?;
    }
    Ok(name)
}

/// A database's relation cache init file's size in `pg_database` (see [`crate::relcache`]):
/// NULL when it has none. Needs a superuser or `pg_read_server_files`.
pub(crate) const CACHE_FILE_SIZE: &str =
    "(pg_stat_file('base/' || oid || '/pg_internal.init', true)).size";

/// The ready clones of a template (`$1`: [`names::ready_prefix`], `$2`:
/// [`CREATED_CONNECTION_LIMIT`]) that this role may claim: a rename needs the owner, and roles
/// that share a server and a migration set each keep their own.
const READY: &str = "starts_with(datname::text, $1) AND datconnlimit = $2 \
     AND shobj_description(oid, 'pg_database') IS NULL AND pg_has_role(datdba, 'MEMBER')";

/// Claims a ready clone of `hash` by renaming it to `name`. A rename is atomic: when two
/// processes race for the same clone, one wins and the other moves on to the next.
async fn claim_ready(conn: &mut PgConnection, hash: &str, name: &str) -> Result<bool> {
    let candidates: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT datname::text FROM pg_database WHERE {READY} ORDER BY oid LIMIT 8"
    )))
    .bind(names::ready_prefix(hash))
    .bind(CREATED_CONNECTION_LIMIT)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::database("looking for ready databases", e))?;
    for ready in candidates {
        let renamed = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            r#"ALTER DATABASE "{ready}" RENAME TO "{name}""#
        )))
        .execute(&mut *conn)
        .await;
        match renamed {
            Ok(_) => return Ok(true),
            // Claimed by someone else a moment ago (gone, or being connected to): next one.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("3D000" | "55006")) => {}
            Err(e) => {
                return Err(Error::database(
                    format!("claiming ready database {ready}"),
                    e,
                ));
            }
        }
    }
    Ok(false)
}

/// Tops the ready clones of `hash` up to `target`, on a connection of the administrative pool
/// that does not have to be a new one.
pub(crate) async fn refill_ready(
    server: &Server,
    template: &TemplateDb,
    hash: &str,
    target: usize,
) -> Result<()> {
    let mut conn = server
        .admin_conn(Urgency::CanWait, "prepare ready databases")
        .await?;
    for _ in count_ready(&mut conn, hash).await?..target {
        make_ready(server, &mut conn, template, hash).await?;
    }
    Ok(())
}

/// Makes one more ready clone of `template` (of `hash`) when there are fewer than `target`;
/// `false` when there were enough.
#[cfg(unix)]
pub(crate) async fn one_more_ready(
    server: &Server,
    template: &TemplateDb,
    hash: &str,
    target: usize,
) -> Result<bool> {
    let mut conn = server
        .admin_conn(Urgency::CanWait, "prepare ready databases")
        .await?;
    if count_ready(&mut conn, hash).await? >= target {
        return Ok(false);
    }
    make_ready(server, &mut conn, template, hash).await?;
    Ok(true)
}

/// One ready clone. One statement: a ready clone's marker is its name and the connection limit
/// the CREATE gives it, so there is no moment at which it exists unmarked.
async fn make_ready(
    server: &Server,
    conn: &mut PgConnection,
    template: &TemplateDb,
    hash: &str,
) -> Result<()> {
    let name = names::ready_db_name(hash, server.owner);
    execute(
        conn,
        &create_sql(server.version, &name, Some(template), None),
    )
    .await
}

/// The size of the database `name` in bytes (`None` when it is gone).
#[cfg(unix)]
pub(crate) async fn size_of(server: &Server, name: &str) -> Result<Option<u64>> {
    let mut conn = server.admin_conn(Urgency::CanWait, "read a size").await?;
    let size: Option<i64> =
        sqlx::query_scalar("SELECT pg_database_size(oid) FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| Error::database(format!("reading the size of {name}"), e))?;
    Ok(size.and_then(|s| u64::try_from(s).ok()))
}

/// Gives clones made ahead that no claim took to the ready clones of their template, for the
/// next process, as far as the ready clones are fewer than `target` (a rename each: atomic,
/// and the new name is the ready clone's whole marker). Returns the clones it did not give,
/// for the caller to drop; on a failure, with the error.
#[cfg(unix)]
pub(crate) async fn give_to_ready(
    server: &Server,
    mut ahead: Vec<String>,
    hash: &str,
    target: usize,
) -> std::result::Result<Vec<String>, (Error, Vec<String>)> {
    let mut conn = match server
        .admin_conn(Urgency::CanWait, "prepare ready databases")
        .await
    {
        Ok(conn) => conn,
        Err(e) => return Err((e, ahead)),
    };
    let ready = match count_ready(&mut conn, hash).await {
        Ok(ready) => ready,
        Err(e) => return Err((e, ahead)),
    };
    for _ in ready..target {
        let Some(name) = ahead.pop() else { break };
        let ready = names::ready_db_name(hash, server.owner);
        let renamed = format!(r#"ALTER DATABASE "{name}" RENAME TO "{ready}""#);
        if let Err(e) = execute(&mut conn, &renamed).await {
            ahead.push(name);
            return Err((e, ahead));
        }
    }
    Ok(ahead)
}

/// How many ready clones of `hash` this role may claim.
async fn count_ready(conn: &mut PgConnection, hash: &str) -> Result<usize> {
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM pg_database WHERE {READY}"
    )))
    .bind(names::ready_prefix(hash))
    .bind(CREATED_CONNECTION_LIMIT)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| Error::database("counting ready databases", e))?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// A ready clone of `hash`, or one of `also`, without a relation cache init file (see
/// [`crate::relcache`]), other than those in `tried`; none also where this role may not look at
/// the data directory. The newest first: a claim takes the oldest ([`claim_ready`]), and a
/// rename waits (in steps of 100 ms) while anyone is connected to the database.
#[cfg(unix)]
pub(crate) async fn without_cache_file(
    conn: &mut PgConnection,
    hash: &str,
    also: &[String],
    tried: &[String],
) -> Result<Option<String>> {
    let found = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT datname::text FROM pg_database WHERE (({READY}) OR datname::text = ANY($3)) \
         AND NOT datname::text = ANY($4) \
         AND {CACHE_FILE_SIZE} IS NULL \
         ORDER BY oid DESC LIMIT 1"
    )))
    .bind(names::ready_prefix(hash))
    .bind(CREATED_CONNECTION_LIMIT)
    .bind(also)
    .bind(tried)
    .fetch_optional(&mut *conn)
    .await;
    match found {
        Ok(name) => Ok(name),
        // insufficient_privilege: not pgfresh's to look at.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => Ok(None),
        Err(e) => Err(Error::database(
            "looking for ready databases without a cache file",
            e,
        )),
    }
}

/// Drops a test database: reads its marker and counts its sessions; when the database is
/// pgfresh's and not a template, sees those sessions off ([`see_off`]) and drops it.
///
/// No `trash` marker first: a test database's name carries its owner, so a drop cut short (the
/// process exits) is finished by the next sweep anyway, once that owner is gone.
pub(crate) async fn drop_test_db(server: &Server, urgency: Urgency, name: &str) -> Result<()> {
    let mut conn = server.admin_conn(urgency, &format!("drop {name}")).await?;
    let err = |e| Error::database(format!("dropping {name}"), e);
    // The marker read straight from the catalog (`shobj_description` and the
    // `pg_stat_activity` view made this statement, run once per test, cost the server 0.21 ms
    // a run against 0.10, prepared, pgbench), and the sessions still connected counted.
    let row: Option<(bool, Option<String>, i32, i32)> = sqlx::query_as(
        "SELECT d.datistemplate, c.description, d.datconnlimit, \
           pg_stat_get_db_numbackends(d.oid) \
         FROM pg_database d LEFT JOIN pg_shdescription c \
           ON c.objoid = d.oid AND c.classoid = 'pg_database'::regclass \
         WHERE d.datname = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(err)?;
    let Some((is_template, comment, limit, sessions)) = row else {
        return Ok(());
    };
    if !Mark::created_by_pgfresh(name, comment.as_deref(), limit) {
        return Err(Error::NotOurs { name: name.into() });
    }
    if comment.is_none() && !is_template {
        see_off(&mut conn, name, Some(sessions.into())).await?;
        return execute(&mut conn, &drop_sql(server.version, name)).await;
    }
    // A marker (one an older pgfresh wrote, or `kept`) or a template: marked `trash` first, so
    // that a drop cut short is finished by the next sweep, whoever runs it.
    set_mark(&mut conn, name, &Mark::Trash).await?;
    drop_marked(server.version, &mut conn, name, is_template).await
}

/// Marks a test database as kept by the run `run` of `suite`: it outlives this process, and the
/// next run of the same suite drops it.
pub(crate) async fn keep_test_db(
    server: &Server,
    name: &str,
    suite: &str,
    run: &str,
) -> Result<()> {
    let mut conn = server
        .admin_conn(Urgency::Now, &format!("keep {name}"))
        .await?;
    mark_of(&mut conn, name).await?;
    let kept = Mark::Kept {
        suite: suite.to_owned(),
        run: run.to_owned(),
    };
    set_mark(&mut conn, name, &kept).await
}
