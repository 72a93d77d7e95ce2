//! The `pgfresh` binary against real databases: the Alembic-style commands move a fresh
//! database up and down with its data intact, `current` and `history` mark where it stands,
//! `revision` writes a timestamped pair, and every refusal says why and what to do.

#[path = "common/run.rs"]
mod run;

use std::path::{Path, PathBuf};
use std::process::Command;

use pgfresh::sqlx::{self, PgPool};
use pgfresh::{Harness, MIGRATOR, TestDb};
use run::Run;

const LEGACY: &str = "20230915120000";
const JSONB: &str = "20231002090000";
const MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");

/// A database with no migration applied (its set is an empty folder).
async fn empty_db() -> TestDb {
    let empty = tempfile::tempdir().unwrap();
    Harness::from_dir(empty.path()).test_db().await.unwrap()
}

/// `pgfresh` with `DB_URL` and `DATABASE_URL` removed from its environment, run in the crate
/// root (so the default `--source migrations/` is the crate's own).
fn pgfresh() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgfresh"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DB_URL")
        .env_remove("DATABASE_URL");
    cmd
}

/// `pgfresh <args> --database-url <db>` with the crate's migrations.
fn run(db: &TestDb, args: &[&str]) -> Run {
    run_in(db, Path::new(MIGRATIONS), args)
}

fn run_in(db: &TestDb, source: &Path, args: &[&str]) -> Run {
    let out = pgfresh()
        .args(args)
        .arg("--database-url")
        .arg(db.url())
        .arg("--source")
        .arg(source)
        .output()
        .unwrap();
    Run::from(out)
}

fn ok(run: Run) -> String {
    assert!(run.ok, "{run:?}");
    run.stdout
}

/// A refusal: exit code 1 and the message on standard error.
fn refused(run: Run) -> String {
    assert_eq!(run.code, Some(1), "{run:?}");
    run.stderr
}

async fn version(db: &TestDb) -> Option<i64> {
    db.current_version().await.unwrap()
}

/// A folder with copies of the crate's migrations whose names start with one of `versions`.
fn copy_of(versions: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(MIGRATIONS).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if versions.iter().any(|v| name.starts_with(v)) {
            std::fs::copy(&path, dir.path().join(name)).unwrap();
        }
    }
    dir
}

/// Every row as psql would print it.
async fn rows_as_text(pool: &PgPool) -> Vec<Vec<Option<String>>> {
    sqlx::query_as::<
        _,
        (
            i32,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<bool>,
            String,
        ),
    >(
        "SELECT id, url, service, method, request_header::text, response_body, \
                response_header::text, parsed, created_at::text FROM datadump ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(
        |(id, url, service, method, req, body, resp, parsed, created)| {
            vec![
                Some(id.to_string()),
                Some(url),
                Some(service),
                Some(method),
                req,
                body,
                resp,
                parsed.map(|p| p.to_string()),
                Some(created),
            ]
        },
    )
    .collect()
}

#[tokio::test]
async fn a_legacy_insert_survives_upgrade_head_and_downgrade_minus_one() {
    let db = empty_db().await;
    // The default --source, migrations/ in the working directory.
    let out = pgfresh()
        .args(["upgrade", LEGACY, "--database-url", &db.url()])
        .output()
        .unwrap();
    let out = ok(Run::from(out));
    assert!(
        out.contains(&format!("upgrade base -> {LEGACY}: legacy datadump")),
        "{out}"
    );
    assert_eq!(version(&db).await, Some(LEGACY.parse().unwrap()));

    // What a user would type into psql against the legacy schema.
    sqlx::raw_sql(
        r#"INSERT INTO datadump (url, service, method, request_header, response_body, response_header)
           VALUES ('https://api.example.com/v1/items?page=1', 'catalog', 'GET',
                   '"Accept"=>"application/json", "X-Trace"=>"a,b=>c \"q\" \\ é", "X-None"=>NULL',
                   '{"items": [1, 2]}', ''),
                  ('https://api.example.com/v1/items', 'catalog', 'POST', NULL, NULL,
                   '"Content-Type"=>"text/plain"');
           UPDATE datadump SET parsed = TRUE WHERE method = 'POST';"#,
    )
    .execute(db.pool())
    .await
    .unwrap();
    let before = rows_as_text(db.pool()).await;

    let out = ok(run(&db, &["upgrade", "head"]));
    assert!(
        out.contains(&format!(
            "upgrade {LEGACY} -> {JSONB}: headers hstore to jsonb"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("now at {JSONB} (head)")), "{out}");
    let header: serde_json::Value =
        sqlx::query_scalar("SELECT request_header FROM datadump WHERE method = 'GET'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        header,
        serde_json::json!({"Accept": "application/json", "X-Trace": "a,b=>c \"q\" \\ é", "X-None": null})
    );

    let out = ok(run(&db, &["downgrade", "-1"]));
    assert!(
        out.contains(&format!(
            "downgrade {JSONB} -> {LEGACY}: headers hstore to jsonb"
        )),
        "{out}"
    );
    assert_eq!(rows_as_text(db.pool()).await, before);
    let out = ok(run(&db, &["current"]));
    assert_eq!(
        out,
        format!("{LEGACY} (legacy datadump) (1 pending, head is {JSONB})\n")
    );
}

#[tokio::test]
async fn current_and_history_mark_applied_and_pending() {
    let db = empty_db().await;
    assert_eq!(
        ok(run(&db, &["current"])),
        format!("base (2 pending, head is {JSONB})\n")
    );
    assert_eq!(
        ok(run(&db, &["history"])),
        format!(
            "{JSONB} (headers hstore to jsonb) [pending] (head)\n\
             {LEGACY} (legacy datadump) [pending]\n"
        )
    );
    ok(run(&db, &["upgrade", "+1"]));
    assert_eq!(
        ok(run(&db, &["history"])),
        format!(
            "{JSONB} (headers hstore to jsonb) [pending] (head)\n\
             {LEGACY} (legacy datadump) [applied] (current)\n"
        )
    );
    ok(run(&db, &["upgrade", "+1"]));
    assert_eq!(
        ok(run(&db, &["current"])),
        format!("{JSONB} (headers hstore to jsonb) (head)\n")
    );
    let verbose = ok(run(&db, &["history", "--verbose"]));
    let lines: Vec<&str> = verbose.lines().collect();
    assert_eq!(lines.len(), 6, "{verbose}");
    assert_eq!(
        lines[0],
        format!("{JSONB} (headers hstore to jsonb) [applied] (current) (head)")
    );
    assert_eq!(lines[1], "    reversible: yes");
    assert!(
        lines[2].starts_with("    applied: 20") && lines[2].contains(" UTC in "),
        "{verbose}"
    );
    assert_eq!(lines[3], format!("{LEGACY} (legacy datadump) [applied]"));
}

#[tokio::test]
async fn upgrade_and_downgrade_walk_every_kind_of_target() {
    let db = empty_db().await;
    let out = ok(run(&db, &["upgrade", "head"]));
    assert!(
        out.contains(&format!("upgrade base -> {LEGACY}"))
            && out.contains(&format!("upgrade {LEGACY} -> {JSONB}")),
        "{out}"
    );
    let out = ok(run(&db, &["upgrade", "head"]));
    assert_eq!(
        out,
        format!("nothing to upgrade: the database is at {JSONB}\n")
    );

    ok(run(&db, &["downgrade", LEGACY]));
    assert_eq!(version(&db).await, Some(LEGACY.parse().unwrap()));
    ok(run(&db, &["upgrade", JSONB]));
    assert_eq!(version(&db).await, Some(JSONB.parse().unwrap()));

    let out = ok(run(&db, &["downgrade", "base"]));
    assert!(
        out.contains(&format!("downgrade {LEGACY} -> base")) && out.ends_with("now at base\n"),
        "{out}"
    );
    assert_eq!(version(&db).await, None);
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('datadump') IS NOT NULL")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(!exists);
    let out = ok(run(&db, &["downgrade", "base"]));
    assert_eq!(out, "nothing to downgrade: the database is at base\n");
}

#[tokio::test]
async fn an_unknown_version_is_refused_with_the_known_ones() {
    let db = empty_db().await;
    for args in [
        ["upgrade", "20240101000000"],
        ["downgrade", "20240101000000"],
    ] {
        let e = refused(run(&db, &args));
        assert!(
            e.contains("there is no migration 20240101000000 in "),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "the known versions are: {LEGACY} (legacy datadump), {JSONB} (headers hstore to jsonb)"
            )),
            "{e}"
        );
        assert!(e.contains("`pgfresh history` lists them"), "{e}");
    }
    assert_eq!(version(&db).await, None);
}

#[tokio::test]
async fn steps_past_either_end_are_refused() {
    let db = empty_db().await;
    let e = refused(run(&db, &["downgrade", "-1"]));
    assert!(
        e.contains("cannot downgrade -1: no migration is applied, the database is at base"),
        "{e}"
    );
    let e = refused(run(&db, &["upgrade", "+3"]));
    assert!(
        e.contains(&format!(
            "cannot upgrade +3: only 2 migrations are pending ({LEGACY}, {JSONB})"
        )),
        "{e}"
    );
    assert!(e.contains("`pgfresh upgrade head`"), "{e}");
    assert_eq!(version(&db).await, None, "a refusal changes nothing");

    ok(run(&db, &["upgrade", "head"]));
    let e = refused(run(&db, &["upgrade", "+1"]));
    assert!(
        e.contains("cannot upgrade +1: no migration is pending, the database is at head"),
        "{e}"
    );
    let e = refused(run(&db, &["downgrade", "-3"]));
    assert!(
        e.contains("cannot downgrade -3: only 2 migrations are applied"),
        "{e}"
    );
    assert!(e.contains("`pgfresh downgrade base`"), "{e}");
    assert_eq!(version(&db).await, Some(JSONB.parse().unwrap()));
}

#[tokio::test]
async fn moving_the_wrong_way_is_refused() {
    let db = Harness::new(&MIGRATOR)
        .test_db_at(LEGACY.parse().unwrap())
        .await
        .unwrap();
    let e = refused(run(&db, &["downgrade", JSONB]));
    assert!(
        e.contains("is newer than the current version 20230915120000")
            && e.contains(&format!("`pgfresh upgrade {JSONB}`")),
        "{e}"
    );
    ok(run(&db, &["upgrade", "head"]));
    let e = refused(run(&db, &["upgrade", LEGACY]));
    assert!(
        e.contains("is older than the current version")
            && e.contains(&format!("`pgfresh downgrade {LEGACY}`")),
        "{e}"
    );

    // Targets clap rejects before anything connects: exit code 2.
    let bad = run(&db, &["upgrade", "-1"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(
        bad.stderr
            .contains("upgrade only moves forward; use `pgfresh downgrade -1`"),
        "{bad:?}"
    );
    let bad = run(&db, &["downgrade", "latest"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(
        bad.stderr
            .contains("expected base, -N, or a migration version"),
        "{bad:?}"
    );
}

#[tokio::test]
async fn a_dirty_migration_is_refused() {
    let db = Harness::new(&MIGRATOR)
        .test_db_at(LEGACY.parse().unwrap())
        .await
        .unwrap();
    // What a migration that died half-way without a transaction leaves behind.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'headers hstore to jsonb', FALSE, '\\x00', -1)",
    )
    .bind(JSONB.parse::<i64>().unwrap())
    .execute(db.pool())
    .await
    .unwrap();
    for args in [&["upgrade", "head"][..], &["downgrade", "-1"]] {
        let e = refused(run(&db, args));
        assert!(
            e.contains(&format!(
                "migration {JSONB} (headers hstore to jsonb) is partially applied: \
                 _sqlx_migrations marks it as failed (dirty)"
            )),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "DELETE FROM _sqlx_migrations WHERE version = {JSONB};"
            )),
            "{e}"
        );
    }
    let history = ok(run(&db, &["history"]));
    assert!(
        history.contains(&format!(
            "{JSONB} (headers hstore to jsonb) [dirty: partially applied] (head)"
        )),
        "{history}"
    );
    let current = ok(run(&db, &["current"]));
    assert!(
        current.starts_with(&format!("{LEGACY} (legacy datadump)"))
            && current.contains("warning: migration"),
        "{current}"
    );
}

#[tokio::test]
async fn migrations_the_folder_lacks_are_refused() {
    let db = pgfresh::test_db().await;
    let folder = copy_of(&[LEGACY]);
    for args in [&["upgrade", "head"][..], &["downgrade", "base"]] {
        let e = refused(run_in(&db, folder.path(), args));
        assert!(
            e.contains(&format!(
                "the database has applied migrations that {} does not have: {JSONB} (headers hstore to jsonb)",
                folder.path().display()
            )),
            "{e}"
        );
        assert!(e.contains("pass --source with the folder that does"), "{e}");
    }
    let history = ok(run_in(&db, folder.path(), &["history"]));
    assert!(
        history.starts_with(&format!(
            "{JSONB} (headers hstore to jsonb) [applied, not in the folder] (current)\n"
        )),
        "{history}"
    );
    assert_eq!(version(&db).await, Some(JSONB.parse().unwrap()));
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let db = Harness::new(&MIGRATOR)
        .test_db_at(LEGACY.parse().unwrap())
        .await
        .unwrap();
    let folder = copy_of(&[LEGACY, JSONB]);
    let up = folder
        .path()
        .join(format!("{LEGACY}_legacy_datadump.up.sql"));
    let mut sql = std::fs::read_to_string(&up).unwrap();
    sql.push_str("\nCREATE INDEX ON datadump (created_at);\n");
    std::fs::write(&up, sql).unwrap();
    let e = refused(run_in(&db, folder.path(), &["upgrade", "head"]));
    assert!(
        e.contains(&format!(
            "migration {LEGACY} (legacy datadump) was edited after it was applied"
        )),
        "{e}"
    );
    assert!(e.contains("put the change in a new migration"), "{e}");
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://alice:s3cr3t-Pa55@127.0.0.1:{port}/qualer");
    let by_flag = Run::from(
        pgfresh()
            .args(["current", "--database-url", &url])
            .output()
            .unwrap(),
    );
    let by_env = Run::from(
        pgfresh()
            .arg("upgrade")
            .arg("head")
            .env("DB_URL", &url)
            .output()
            .unwrap(),
    );
    for e in [refused(by_flag), refused(by_env)] {
        assert!(
            e.contains(&format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{port}/qualer"
            )),
            "{e}"
        );
        assert!(e.contains("--database-url (or DB_URL)"), "{e}");
        assert!(!e.contains("s3cr3t-Pa55"), "{e}");
    }
    let bad = "postgresql://alice:s3cr3t-Pa55@127.0.0.1:notaport/qualer";
    let e = refused(Run::from(
        pgfresh()
            .args(["current", "--database-url", bad])
            .output()
            .unwrap(),
    ));
    assert!(
        e.contains(
            "the database URL postgresql://alice:***@127.0.0.1:notaport/qualer is not valid"
        ),
        "{e}"
    );
    assert!(!e.contains("s3cr3t-Pa55"), "{e}");

    let help = Run::from(
        pgfresh()
            .arg("--help")
            .env("DB_URL", &url)
            .output()
            .unwrap(),
    );
    let help = ok(help);
    assert!(!help.contains("s3cr3t-Pa55"), "{help}");
    assert!(
        help.contains("postgresql://postgres:postgres@localhost:5432/qualer"),
        "the default is documented: {help}"
    );
}

#[tokio::test]
async fn the_flag_wins_over_db_url() {
    let db = empty_db().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgresql://nobody@127.0.0.1:{port}/qualer");
    let out = pgfresh()
        .args(["current", "--database-url", &db.url()])
        .env("DB_URL", &unreachable)
        .output()
        .unwrap();
    assert!(ok(Run::from(out)).starts_with("base"));
    let out = pgfresh()
        .arg("current")
        .env("DB_URL", db.url())
        .output()
        .unwrap();
    assert!(ok(Run::from(out)).starts_with("base"));
}

#[tokio::test]
async fn a_failing_migration_names_its_line_and_a_missing_down_file_stops_a_downgrade() {
    let db = empty_db().await;
    let folder = tempfile::tempdir().unwrap();
    let write = |name: &str, sql: &str| std::fs::write(folder.path().join(name), sql).unwrap();
    write("1_simple.sql", "CREATE TABLE kept (id int);\n");
    write(
        "2_broken.up.sql",
        "CREATE TABLE t (id int);\n\nINSERT INTO t VALUES ('not a number');\n",
    );
    write("2_broken.down.sql", "DROP TABLE t;\n");
    let e = refused(run_in(&db, folder.path(), &["upgrade", "head"]));
    assert!(
        e.contains(
            "applying migration 2 (broken) failed: invalid input syntax for type integer: \
             \"not a number\" (at line 3, column 23). The database is still at 1"
        ),
        "{e}"
    );
    assert_eq!(version(&db).await, Some(1));

    write("2_broken.up.sql", "CREATE TABLE t (id int);\n");
    ok(run_in(&db, folder.path(), &["upgrade", "head"]));
    ok(run_in(&db, folder.path(), &["downgrade", "-1"]));
    let e = refused(run_in(&db, folder.path(), &["downgrade", "-1"]));
    assert!(
        e.contains("migration 1 (simple) has no .down.sql, so it cannot be reverted"),
        "{e}"
    );
    assert_eq!(version(&db).await, Some(1));

    let e = refused(run_in(&db, &folder.path().join("nope"), &["current"]));
    assert!(
        e.contains("does not exist. Run pgfresh from the project's root, or pass --source DIR"),
        "{e}"
    );
}

#[tokio::test]
async fn revision_writes_a_timestamped_pair_that_upgrades_and_downgrades() {
    let folder = tempfile::tempdir().unwrap();
    let new_revision = |message: &str| -> Vec<PathBuf> {
        let out = pgfresh()
            .args(["revision", "-m", message, "--source"])
            .arg(folder.path())
            .output()
            .unwrap();
        ok(Run::from(out))
            .lines()
            .map(|l| PathBuf::from(l.strip_prefix("created ").expect("created <path>")))
            .collect()
    };
    let before = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let first = new_revision("Add notes table");
    let after = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let names: Vec<String> = first
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let stamp = &names[0][..14];
    assert!(
        before.as_str() <= stamp && stamp <= after.as_str(),
        "{stamp} not in {before}..={after}"
    );
    assert_eq!(
        names,
        [
            format!("{stamp}_add_notes_table.up.sql"),
            format!("{stamp}_add_notes_table.down.sql")
        ]
    );
    assert!(
        std::fs::read_to_string(&first[0])
            .unwrap()
            .starts_with("-- Add notes table\n")
    );

    // Within the same second, the next revision still sorts after the first.
    let second = new_revision("Index notes");
    let second_stamp: i64 = second[0].file_name().unwrap().to_str().unwrap()[..14]
        .parse()
        .unwrap();
    assert!(second_stamp > stamp.parse().unwrap());

    std::fs::write(&first[0], "CREATE TABLE notes (id int);\n").unwrap();
    std::fs::write(&first[1], "DROP TABLE notes;\n").unwrap();
    std::fs::write(&second[0], "CREATE INDEX notes_id ON notes (id);\n").unwrap();
    std::fs::write(&second[1], "DROP INDEX notes_id;\n").unwrap();
    let db = empty_db().await;
    let history = ok(run_in(&db, folder.path(), &["history"]));
    assert!(
        history.contains("(add notes table) [pending]")
            && history.contains("(index notes) [pending] (head)"),
        "{history}"
    );
    ok(run_in(&db, folder.path(), &["upgrade", "head"]));
    ok(run_in(&db, folder.path(), &["downgrade", "base"]));
    assert_eq!(version(&db).await, None);

    let out = Run::from(
        pgfresh()
            .args(["revision", "-m", "→ …", "--source"])
            .arg(folder.path())
            .output()
            .unwrap(),
    );
    let e = refused(out);
    assert!(
        e.contains("has no letters or digits to name the files with"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 4);

    // A --source that is a file, not a folder.
    let file = folder.path().join("not_a_folder");
    std::fs::write(&file, "").unwrap();
    let out = Run::from(
        pgfresh()
            .args(["revision", "-m", "x", "--source"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    let e = refused(out);
    assert!(
        e.contains(&format!("cannot write {}: ", file.display()))
            && e.contains("Check that --source names a folder you may write to"),
        "{e}"
    );
}
