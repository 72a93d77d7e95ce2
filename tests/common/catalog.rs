//! Administrative access to the server a test database is on: its URL and password, and what
//! `pg_database` holds.

use pgfresh::TestDb;
use pgfresh::sqlx::{self, PgPool};

/// The server `db` lives on, as a URL to its `postgres` database.
pub fn server_url(db: &TestDb) -> String {
    let mut url = url::Url::parse(&db.url()).unwrap();
    url.set_path("/postgres");
    url.to_string()
}

/// The password in `db`'s URL.
pub fn password(db: &TestDb) -> String {
    url::Url::parse(&db.url())
        .unwrap()
        .password()
        .expect("pgfresh servers have passwords")
        .to_owned()
}

/// A pool on the server's `postgres` database, for looking at `pg_database`.
pub async fn admin(db: &TestDb) -> PgPool {
    PgPool::connect(&server_url(db)).await.unwrap()
}

pub async fn database_exists(admin: &PgPool, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap()
}

/// Polls until `name` is gone from the server, for up to `limit`: a dropped `TestDb`'s
/// database goes in the background, a moment after the guard.
pub async fn dropped_within(admin: &PgPool, name: &str, limit: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if !database_exists(admin, name).await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    !database_exists(admin, name).await
}

/// Drops a database a test kept on purpose.
pub async fn drop_kept(admin: &PgPool, name: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
    )))
    .execute(admin)
    .await
    .unwrap();
}

/// Every database whose name starts with `pgfresh_`, with its marker kind (`template`, `ready`,
/// `test`, `kept`, `building`, `trash`; `unmarked` when its comment is no pgfresh marker and
/// its name none of those without one).
pub async fn pgfresh_databases(admin: &PgPool) -> Vec<(String, String, Option<String>)> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE starts_with(datname::text, 'pgfresh_') ORDER BY datname",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(name, comment)| {
            let kind = comment
                .as_deref()
                .and_then(|c| c.strip_prefix("pgfresh:"))
                .and_then(|c| c.split_whitespace().next())
                // Ready clones and test databases carry no comment: name and connection limit
                // are their marker (a test database's name carries its owner, in hex).
                .unwrap_or(if name.starts_with("pgfresh_r_") {
                    "ready"
                } else if owner_in_name(&name).is_some() {
                    "test"
                } else {
                    "unmarked"
                })
                .to_owned();
            (name, kind, comment)
        })
        .collect()
}

/// The tables of the public schema of `pool`'s database, by name.
pub async fn tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Asserts that the template an error message names (`pgfresh_t_…`) is not on the server:
/// a failed build drops what it half built.
pub async fn assert_template_gone(message: &str) {
    let template = message
        .split_whitespace()
        .find(|w| w.starts_with("pgfresh_t_"))
        .unwrap_or_else(|| panic!("the message names no template: {message}"))
        .trim_end_matches([':', ',', '.']);
    let db = pgfresh::test_db().await;
    let admin = admin(&db).await;
    assert!(
        !database_exists(&admin, template).await,
        "{template} is left"
    );
}

/// The first 8 hex digits of the migration set's hash that a test database's name
/// (`pgfresh_<hash8>_…`) carries: the prefix of its template's name after `pgfresh_t_`.
pub fn hash8(name: &str) -> &str {
    &name["pgfresh_".len().."pgfresh_".len() + 8]
}

/// The owner a test database's name carries: `pgfresh_<hash8>_<owner, 8 hex digits>_<random>`.
pub fn owner_in_name(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("pgfresh_")?;
    let parts: Vec<&str> = rest.split('_').collect();
    match parts[..] {
        [hash, owner, _] if hash.len() == 8 && owner.len() == 8 => u32::from_str_radix(owner, 16)
            .ok()
            .map(|o| i64::from(o as i32)),
        _ => None,
    }
}
