//! Templates: one database per recipe (a migration set, up to a revision, and its fixtures),
//! built once and cloned for every test.
//!
//! The build runs under a PostgreSQL advisory lock, so processes that start together build it
//! once; the template is marked complete (`IS_TEMPLATE`, marker `template`) only after every
//! migration succeeded, so a build that died half-way (marker `building`) is dropped and
//! rebuilt.

use sqlx::{Connection, PgConnection};

use crate::admin::{self, TemplateDb, execute, set_mark};
use crate::error::{Error, Result};
use crate::marker::{Mark, now};
use crate::recipe::Recipe;
use crate::server::{Server, Urgency};
use crate::{locks, names, relcache};

/// A template's last use is written down at most this often (seconds): often enough for the
/// sweep's staleness rules (an hour at the least), rarely enough to keep processes that start
/// together from writing the same catalog row.
const USE_RECORDED_EVERY: i64 = 300;

/// Makes sure the template of `recipe` exists, building it under an advisory lock if no
/// process has yet. Returns the template's name.
pub(crate) async fn ensure(server: &Server, recipe: &Recipe) -> Result<TemplateDb> {
    let hash = recipe.hash();
    let name = names::template_name(hash);
    let template = TemplateDb {
        name: name.clone(),
        role: recipe.role().map(|r| r.name().to_owned()),
    };
    let mut conn = server.admin_conn(Urgency::Now, "build a template").await?;
    // The common case, a template built by an earlier run and recently used, needs no lock.
    if let Some(used) = admin::mark_of(&mut conn, &name)
        .await?
        .and_then(|m| m.complete_template())
        && now() - used < USE_RECORDED_EVERY
    {
        return Ok(template);
    }
    if let Some(role) = recipe.role() {
        role.ensure(server).await?;
    }
    locks::lock_build(&mut conn, hash, &name).await?;
    let built = build_locked(server, &mut conn, recipe, &name).await;
    if locks::unlock_build(&mut conn, hash).await.is_err() {
        // The session lock dies with the connection; make sure the pool does not reuse it.
        conn.discard();
    }
    built.map(|()| template)
}

/// The template of `hash` when it is built and complete (its use by `suite` recorded as
/// [`ensure`] records it); `None` when it is not, or is being built.
#[cfg(unix)]
pub(crate) async fn built(server: &Server, hash: &str, suite: &str) -> Result<Option<TemplateDb>> {
    let name = names::template_name(hash);
    let mut conn = server
        .admin_conn(Urgency::Now, "look for a template")
        .await?;
    let Some(marked) = admin::mark_of(&mut conn, &name).await? else {
        return Ok(None);
    };
    let Some(used) = marked.complete_template() else {
        return Ok(None);
    };
    if now() - used >= USE_RECORDED_EVERY {
        record_use(&mut conn, &name, suite).await?;
    }
    Ok(Some(TemplateDb {
        name,
        role: marked.role,
    }))
}

async fn build_locked(
    server: &Server,
    conn: &mut PgConnection,
    recipe: &Recipe,
    name: &str,
) -> Result<()> {
    match admin::mark_of(conn, name).await? {
        Some(marked) if marked.complete_template().is_some() => {
            return record_use(conn, name, recipe.suite()).await;
        }
        Some(marked) => {
            let mark = marked.mark;
            tracing::info!(template = name, ?mark, "dropping a half-built template");
            admin::drop_database(server.version, conn, name).await?;
        }
        None => {}
    }

    tracing::info!(template = name, origin = %recipe.origin(), "building template");
    let role = recipe.role().map(|r| r.name());
    execute(conn, &admin::create_sql(server.version, name, None, role)).await?;
    set_mark(
        conn,
        name,
        &Mark::Building {
            owner: server.owner,
        },
    )
    .await?;
    if let Err(e) = build(server, conn, recipe, name).await {
        let _ = admin::drop_database(server.version, conn, name).await;
        return Err(e);
    }
    // Mark complete only now: a build that dies before this line leaves a database marked
    // `building`, which the next build (or a sweep, once its owner is gone) drops.
    execute(
        conn,
        &format!(r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"#),
    )
    .await?;
    let used = Mark::Template {
        suite: recipe.suite().to_owned(),
        used: now(),
    };
    set_mark(conn, name, &used).await
}

/// Records a use of the complete template `name` by `suite`, so that sweeps can tell live
/// templates from abandoned ones. Only its owner (or a superuser) may: another role on the
/// same server clones it all the same and leaves the record to the owner's runs (were the
/// template swept meanwhile, that role builds its own).
async fn record_use(conn: &mut PgConnection, name: &str, suite: &str) -> Result<()> {
    let may: Option<bool> = sqlx::query_scalar(
        "SELECT pg_has_role(datdba, 'MEMBER') FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| Error::database(format!("looking up the owner of template {name}"), e))?;
    if may != Some(true) {
        tracing::debug!(
            template = name,
            "another role owns the template: its use goes unrecorded"
        );
        return Ok(());
    }
    let used = Mark::Template {
        suite: suite.to_owned(),
        used: now(),
    };
    set_mark(conn, name, &used).await
}

/// Runs the recipe into the new template `name`, then gives it its relation cache file (see
/// [`relcache`]), and leaves it with no session on it (`conn` is an administrative connection).
///
/// Sessions a migration tool left open would keep every clone from being made, and an
/// autovacuum worker (the `url` source's server runs autovacuum) vacuuming the catalogs would
/// remove the cache file written after them: both are seen off first. The connection that
/// writes the file then leaves on its own (within [`admin::see_off`]'s wait). Autovacuum may
/// still remove the file later, sealed or not: the broker puts it back ([`relcache`]).
async fn build(
    server: &Server,
    conn: &mut PgConnection,
    recipe: &Recipe,
    name: &str,
) -> Result<()> {
    recipe.build(server, name).await?;
    admin::see_off(conn, name, None).await?;
    freeze(server, name).await?;
    relcache::write(server, conn, name).await?;
    admin::see_off(conn, name, None).await
}

/// `VACUUM (FREEZE)` of the finished template, on a connection of its own, so that its clones
/// inherit rows whose visibility is settled.
///
/// A row written by a transaction carries no hint that the transaction committed until a later
/// reader looks it up and sets the hint, which writes its page. Without this, every clone's
/// first reads would write the pages they read, the catalog pages included: the server's work
/// per test, and on a file system with reflinks (see [`crate::server::CopyMethod`]) the end of
/// the blocks the clone shared with its template (three clones of a 1 GB template whose tests
/// read their seed data took the whole 1 GB each). Done once per template, before the relation
/// cache file (a `VACUUM` of the catalogs removes it). Tables the building role does not own are
/// passed over with a warning by the server, not an error.
async fn freeze(server: &Server, name: &str) -> Result<()> {
    let mut template = PgConnection::connect_with(&server.options.clone().database(name))
        .await
        .map_err(|e| Error::database(format!("connecting to template {name}"), e))?;
    let frozen = execute(&mut template, "VACUUM (FREEZE)").await;
    let _ = template.close().await;
    frozen
}
