//! `Harness::from_dir` accepts real-world migration folders, reports a missing folder and a
//! failing migration clearly, rebuilds the template when a migration changes, and serves
//! several migration sets in one process.

mod common;

use std::path::Path;

use pgfresh::Harness;
use pgfresh::sqlx;

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), files);
    dir
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[tokio::test]
async fn real_world_folder_shapes() {
    // A unique comment keeps this set's template apart from other runs' sets.
    let unique = format!("-- run {}\n", uuid::Uuid::new_v4());
    let dir = folder(&[
        (
            "1_init.sql",
            &format!("{unique}CREATE TABLE accounts (id int PRIMARY KEY);"),
        ),
        (
            "2_add-users.v2.sql",
            "CREATE TABLE users (id int, account int REFERENCES accounts);",
        ),
        ("3_empty.sql", ""),
        (
            "4_comments_only.sql",
            "-- nothing to do here\n/* nor here */\n",
        ),
        (
            "5_own_transaction.sql",
            "BEGIN;\nCREATE TABLE own_tx (id int);\nCOMMIT;\n",
        ),
        (
            "6_extensions.sql",
            "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";\nCREATE EXTENSION IF NOT EXISTS hstore;\n\
             CREATE TABLE things (id uuid DEFAULT uuid_generate_v4(), tags hstore);",
        ),
        ("README.md", "# migrations\n"),
        (".gitkeep", ""),
        ("notes.txt", "not a migration"),
    ]);
    let db = Harness::from_dir(dir.path()).test_db().await.unwrap();
    assert_eq!(
        common::tables(db.pool()).await,
        ["_sqlx_migrations", "accounts", "own_tx", "things", "users"]
    );
    let tags: String =
        sqlx::query_scalar("INSERT INTO things (tags) VALUES ('a=>1') RETURNING tags::text")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(tags, "\"a\"=>\"1\"");
    let migrations: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let versions: Vec<i64> = migrations.iter().map(|m| m.0).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    assert_eq!(migrations[1].1, "add-users.v2");
}

#[tokio::test]
async fn reversible_folder_at_every_revision() {
    let unique = format!("-- run {}\n", uuid::Uuid::new_v4());
    let dir = folder(&[
        ("1_a.up.sql", &format!("{unique}CREATE TABLE a (id int);")),
        ("1_a.down.sql", "DROP TABLE a;"),
        ("2_b.up.sql", "CREATE TABLE b (id int);"),
        ("2_b.down.sql", "DROP TABLE b;"),
    ]);
    let harness = Harness::from_dir(dir.path());
    let db = harness.test_db_at(1).await.unwrap();
    assert_eq!(common::tables(db.pool()).await, ["_sqlx_migrations", "a"]);
    assert_eq!(db.current_version().await.unwrap(), Some(1));
    db.migrate_to(2).await.unwrap();
    assert_eq!(
        common::tables(db.pool()).await,
        ["_sqlx_migrations", "a", "b"]
    );
    db.migrate_to(1).await.unwrap();
    assert_eq!(common::tables(db.pool()).await, ["_sqlx_migrations", "a"]);
    db.migrate_to(0).await.unwrap();
    assert_eq!(common::tables(db.pool()).await, ["_sqlx_migrations"]);
    let base = harness.test_db_at(0).await.unwrap();
    assert_eq!(common::tables(base.pool()).await, ["_sqlx_migrations"]);
    assert_eq!(base.current_version().await.unwrap(), None);

    let e = harness.test_db_at(3).await.unwrap_err().to_string();
    assert!(e.contains("no migration 3") && e.contains("1, 2"), "{e}");
    let e = db.migrate_to(7).await.unwrap_err().to_string();
    assert!(e.contains("no migration 7"), "{e}");
}

#[tokio::test]
async fn moving_down_past_an_irreversible_migration_is_refused() {
    let unique = format!("-- run {}\n", uuid::Uuid::new_v4());
    let dir = folder(&[(
        "1_only_up.sql",
        &format!("{unique}CREATE TABLE a (id int);"),
    )]);
    let db = Harness::from_dir(dir.path()).test_db().await.unwrap();
    let e = db.migrate_to(0).await.unwrap_err().to_string();
    assert!(e.contains("migration 1 (only up) has no .down.sql"), "{e}");
}

#[tokio::test]
async fn missing_folder_is_reported() {
    let e = Harness::from_dir("/nonexistent/migrations")
        .test_db()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/migrations") && e.contains("no such directory"),
        "{e}"
    );
}

#[tokio::test]
async fn failing_migration_names_version_line_and_message() {
    let unique = format!("-- run {}\n", uuid::Uuid::new_v4());
    let dir = folder(&[
        ("1_ok.sql", &format!("{unique}CREATE TABLE fine (id int);")),
        (
            "2_broken_table.sql",
            "CREATE TABLE broken (\n    id intt\n);",
        ),
    ]);
    let harness = Harness::from_dir(dir.path());
    let e = harness.test_db().await.unwrap_err().to_string();
    assert!(e.contains("migration 2 (broken table, "), "{e}");
    assert!(e.contains("2_broken_table.sql) failed"), "{e}");
    assert!(e.contains("type \"intt\" does not exist"), "{e}");
    assert!(e.contains("line 2, column 8"), "{e}");
    // Every later test of the process gets the same answer, without another build.
    assert_eq!(harness.test_db().await.unwrap_err().to_string(), e);

    // No half-built template stays behind.
    let template = e
        .split_whitespace()
        .find(|w| w.starts_with("pgfresh_t_"))
        .map(|w| w.trim_end_matches(':'))
        .unwrap();
    let keeper = pgfresh::test_db().await;
    let admin = common::admin(&keeper).await;
    assert!(!common::database_exists(&admin, template).await);
}

#[tokio::test]
async fn editing_a_migration_gives_the_new_schema() {
    let unique = format!("-- run {}\n", uuid::Uuid::new_v4());
    let dir = folder(&[(
        "1_t.sql",
        &format!("{unique}CREATE TABLE t (old_column int);"),
    )]);
    let column = |db: pgfresh::TestDb| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = 't'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap()
    };
    let before = Harness::from_dir(dir.path()).test_db().await.unwrap();
    assert_eq!(column(before).await, "old_column");
    write(
        dir.path(),
        &[(
            "1_t.sql",
            &format!("{unique}CREATE TABLE t (new_column int);"),
        )],
    );
    let after = Harness::from_dir(dir.path()).test_db().await.unwrap();
    assert_eq!(column(after).await, "new_column");
}

#[tokio::test]
async fn two_migration_sets_in_one_process() {
    let unique = format!("-- run {}\n", uuid::Uuid::new_v4());
    let dir = folder(&[(
        "1_other.sql",
        &format!("{unique}CREATE TABLE other_app (id int);"),
    )]);
    let other = Harness::from_dir(dir.path());
    let (own, theirs) = tokio::join!(pgfresh::test_db(), other.test_db());
    let theirs = theirs.unwrap();
    assert!(
        common::tables(own.pool())
            .await
            .contains(&"datadump".to_owned())
    );
    assert_eq!(
        common::tables(theirs.pool()).await,
        ["_sqlx_migrations", "other_app"]
    );
}
