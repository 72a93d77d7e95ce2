//! The PostgreSQL advisory locks pgfresh's processes coordinate with.
//!
//! Two classes (the first key of a two-key advisory lock), each the ASCII bytes of a short tag:
//! - owner locks, `(OWNER_LOCK_CLASS, owner)`: every process using a server holds one for its
//!   whole life on its first administrative connection (see [`crate::sweep`]);
//! - build locks, `(BUILD_LOCK_CLASS, build_lock_key(hash))`: held while a template is built,
//!   so that processes starting together build it once (see [`crate::template`]).

use sqlx::PgConnection;

use crate::error::{Error, Result};

/// Class of the owner locks: the ASCII bytes of "pgfo".
pub(crate) const OWNER_LOCK_CLASS: i32 = 0x7067_666f;

/// Class of the advisory locks that serialise template builds across processes: the ASCII
/// bytes of "pgfr". The second key is [`build_lock_key`].
pub(crate) const BUILD_LOCK_CLASS: i32 = 0x7067_6672;

/// The second key of a template's build lock: the first 32 bits of its hash (as PostgreSQL
/// shows it in `pg_locks.objid`, an unsigned `oid`).
pub(crate) fn build_lock_key(hash: &str) -> u32 {
    hash.get(..8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or_default()
}

/// Takes an owner lock on `conn`, which must then stay open for the life of the process, and
/// returns the lock's key.
pub(crate) async fn take_owner_lock(conn: &mut PgConnection) -> Result<i32> {
    loop {
        let key = i32::try_from(uuid::Uuid::new_v4().as_u128() % (i32::MAX as u128)).unwrap_or(1);
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(OWNER_LOCK_CLASS)
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| Error::database("taking the owner lock", e))?;
        if taken {
            return Ok(key);
        }
    }
}

/// Waits for the build lock of the template with `hash` (named `template`, for messages).
pub(crate) async fn lock_build(conn: &mut PgConnection, hash: &str, template: &str) -> Result<()> {
    build_lock(conn, "SELECT pg_advisory_lock($1, $2)", hash)
        .await
        .map_err(|e| Error::database(format!("waiting for the build lock of {template}"), e))
}

/// Releases the build lock of the template with `hash`; an error means the connection's state
/// is unknown (the caller should not reuse it).
pub(crate) async fn unlock_build(conn: &mut PgConnection, hash: &str) -> Result<(), sqlx::Error> {
    build_lock(conn, "SELECT pg_advisory_unlock($1, $2)", hash).await
}

/// Runs `sql`, a lock function over the two keys, on the build lock of `hash`.
async fn build_lock(
    conn: &mut PgConnection,
    sql: &'static str,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql)
        .bind(BUILD_LOCK_CLASS)
        .bind(signed(build_lock_key(hash)))
        .execute(conn)
        .await
        .map(drop)
}

/// The lock functions take a signed `int4`: the same 32 bits.
fn signed(key: u32) -> i32 {
    i32::from_ne_bytes(key.to_ne_bytes())
}
