//! `pgfresh check` as a user runs it: it passes on the crate's own migrations and committed
//! snapshot with plain output off a terminal; it names the failing version and shows the diff
//! for a down that forgets an index; `--update` writes the snapshot and a later migration is
//! reported as drift; `--database-url` catches a migration edited after it was applied.

#[path = "common/run.rs"]
mod run;

use std::path::Path;
use std::process::Command;

use pgfresh::Harness;
use run::Run;
use tempfile::TempDir;

/// `pgfresh check <args>` in `dir`, without `DB_URL`/`DATABASE_URL`, so the history check
/// compares with a database only when `--database-url` says so. The checks' own databases
/// come from the server `PGFRESH_SERVER` names, as for the tests.
///
/// Under the url source the server's URL is passed on as `DATABASE_URL`: pgfresh's server
/// configuration reads it, the command's `--database-url` (`DB_URL`) does not.
fn check(dir: &Path, args: &[&str]) -> Run {
    let server = std::env::var("DB_URL").or_else(|_| std::env::var("DATABASE_URL"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgfresh"));
    cmd.current_dir(dir)
        .env_remove("DB_URL")
        .env_remove("DATABASE_URL");
    if let Ok(url) = server {
        cmd.env("DATABASE_URL", url);
    }
    Run::from(cmd.arg("check").args(args).output().unwrap())
}

/// A project folder with `migrations/` holding `files`.
fn project(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("migrations").join(name), text).unwrap();
    }
    dir
}

const PAIR: &[(&str, &str)] = &[
    ("1_a.up.sql", "CREATE TABLE a (id int PRIMARY KEY, x int);"),
    ("1_a.down.sql", "DROP TABLE a;"),
    ("2_ix.up.sql", "CREATE INDEX a_x ON a (x);"),
    ("2_ix.down.sql", "DROP INDEX a_x;"),
];

#[test]
fn passes_on_the_crates_own_migrations_with_plain_output() {
    let run = check(Path::new(env!("CARGO_MANIFEST_DIR")), &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{run:?}");
    for (line, name) in lines
        .iter()
        .zip(["history", "upgrade", "up/down", "snapshot"])
    {
        assert!(line.starts_with(&format!("{name:<9} ok ")), "{run:?}");
    }
    assert!(lines[3].contains("schema.sql matches the schema at head (20231002090000)"));
    // Not a terminal: no progress bar, no escape sequences, nothing on standard error.
    assert!(!run.stdout.contains('\x1b') && !run.stdout.contains('\r'));
    assert_eq!(run.stderr, "");
}

#[test]
fn names_the_version_and_shows_the_diff() {
    let dir = project(&[
        PAIR[0],
        PAIR[1],
        PAIR[2],
        ("2_ix.down.sql", "SELECT 1; -- forgot the index"),
    ]);
    let run = check(dir.path(), &["--update"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.contains(
            "up/down   FAILED  migration 2 (ix): its down migration does not restore the schema"
        ),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("\n    + CREATE INDEX a_x ON public.a USING btree (x);\n"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("snapshot  ok      wrote schema.sql"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .starts_with("pgfresh: 1 of 4 migration checks failed (up/down)."),
        "{run:?}"
    );
}

#[test]
fn names_a_missing_half_of_a_pair() {
    let dir = project(&PAIR[..3]);
    let run = check(dir.path(), &["--update"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.contains(
            "history   FAILED  the migration history of migrations/ has 1 problem:\n  - migration \
             2 (ix) has no down migration; add 2_ix.down.sql that reverts it"
        ),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("note: 1 of 2 migrations cannot be reverted")
    );
}

#[test]
fn update_writes_the_snapshot_and_drift_is_reported() {
    let dir = project(PAIR);
    let run = check(dir.path(), &["--snapshot", "db/schema.sql"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains("snapshot  FAILED  schema snapshot db/schema.sql: cannot read it")
    );

    std::fs::create_dir(dir.path().join("db")).unwrap();
    let run = check(dir.path(), &["--snapshot", "db/schema.sql", "--update"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains("snapshot  ok      wrote db/schema.sql: the schema at head (2)")
    );
    let run = check(dir.path(), &["--snapshot", "db/schema.sql"]);
    assert_eq!(run.code, Some(0), "{run:?}");

    std::fs::write(
        dir.path().join("migrations/3_y.up.sql"),
        "ALTER TABLE a ADD COLUMN y text NOT NULL DEFAULT '';",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("migrations/3_y.down.sql"),
        "ALTER TABLE a DROP COLUMN y;",
    )
    .unwrap();
    let run = check(dir.path(), &["--snapshot", "db/schema.sql"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.contains(
            "snapshot  FAILED  the schema at head (3) differs from the snapshot db/schema.sql"
        ),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("    +     y text NOT NULL DEFAULT ''::text\n"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("(with --update when a snapshot change is intended)"),
        "{run:?}"
    );
}

#[tokio::test]
async fn database_url_catches_a_migration_edited_after_it_was_applied() {
    let dir = project(PAIR);
    let db = Harness::from_dir(dir.path().join("migrations"))
        .test_db()
        .await
        .unwrap();
    let url = db.url();
    let run = check(dir.path(), &["--update", "--database-url", &url]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains("and the database applied them unedited, in order")
    );

    std::fs::write(
        dir.path().join("migrations/2_ix.up.sql"),
        "CREATE INDEX a_x ON a (x DESC);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("migrations/2_ix.down.sql"),
        "DROP INDEX a_x;",
    )
    .unwrap();
    let run = check(dir.path(), &["--update", "--database-url", &url]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.contains(
            "history   FAILED  the migration history of migrations/ has 1 problem:\n  - migration \
             2 (ix) was edited after the database applied it"
        ),
        "{run:?}"
    );
    assert!(!run.stdout.contains(&url) && !run.stderr.contains(&url));
}

/// What a CI job has: a fresh server, `DB_URL` naming a database nobody migrated. The set's own
/// history is checked and passes; the comparison is reported as not done, and why, as a note.
#[tokio::test]
async fn a_database_without_a_migration_record_is_noted_not_compared_and_not_failed() {
    let dir = project(PAIR);
    // A database nobody migrated: no _sqlx_migrations at all.
    let db = Harness::from_dir(dir.path().join("migrations"))
        .test_db_at(1)
        .await
        .unwrap();
    pgfresh::sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(db.pool())
        .await
        .unwrap();
    let run = check(dir.path(), &["--update", "--database-url", &db.url()]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains(
            "note: not compared with the database: it has no migration record \
             (_sqlx_migrations does not exist there"
        ),
        "{run:?}"
    );
    assert!(!run.stdout.contains("FAILED"), "{run:?}");
    assert!(!run.stdout.contains("applied them unedited"), "{run:?}");
}

#[test]
fn a_missing_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = check(dir.path(), &["--source", "nowhere"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("the migrations folder nowhere does not exist"),
        "{run:?}"
    );
}
