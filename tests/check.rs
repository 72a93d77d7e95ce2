//! The migration checks (`pgfresh::check`) against real databases: each passes on a good set
//! and fails, naming the offending version, on a down that forgets an index, a down that
//! leaves a column, an up edited after it was applied, a missing half of a pair and an
//! out-of-date snapshot; every kind of schema object left behind shows in the diff; and the
//! up/down check on 33 migrations is timed.

use std::path::Path;
use std::time::Instant;

use pgfresh::check::{self, Failure, Problem, Step};
use pgfresh::{Harness, MIGRATOR};
use tempfile::TempDir;

fn folder(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Three reversible migrations that undo themselves exactly.
const GOOD: &[(&str, &str)] = &[
    (
        "1_accounts.up.sql",
        "CREATE TABLE accounts (id serial PRIMARY KEY, email text NOT NULL UNIQUE);",
    ),
    ("1_accounts.down.sql", "DROP TABLE accounts;"),
    (
        "2_account_details.up.sql",
        "ALTER TABLE accounts ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();\n\
         CREATE INDEX accounts_email_lower ON accounts (lower(email));",
    ),
    (
        "2_account_details.down.sql",
        "DROP INDEX accounts_email_lower;\nALTER TABLE accounts DROP COLUMN created_at;",
    ),
    (
        "3_orders.up.sql",
        "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n\
         account int NOT NULL REFERENCES accounts, total numeric(10, 2) CHECK (total >= 0));",
    ),
    ("3_orders.down.sql", "DROP TABLE orders;"),
];

/// The good set with `file` replaced by `text` (or removed when `text` is `None`).
fn good_with(file: &str, text: Option<&str>) -> TempDir {
    let files: Vec<(&str, &str)> = GOOD
        .iter()
        .filter(|(name, _)| *name != file)
        .copied()
        .chain(text.map(|t| (file, t)))
        .collect();
    folder(&files)
}

fn not_reversible(e: Failure) -> (i64, Step, String) {
    let text = e.to_string();
    match e {
        Failure::NotReversible { version, step, .. } => (version, step, text),
        other => panic!("expected NotReversible, got: {other}"),
    }
}

#[tokio::test]
async fn own_migrations_pass_every_check() {
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.sql");
    println!("{}", check::history(&MIGRATOR).await.unwrap());
    println!("{}", check::upgrade(&MIGRATOR).await.unwrap());
    println!("{}", check::up_down(&MIGRATOR).await.unwrap());
    println!("{}", check::snapshot(&MIGRATOR, &snapshot).await.unwrap());
}

#[tokio::test]
async fn good_set_passes_every_check() {
    let dir = folder(GOOD);
    // Beside the set, not in it: sqlx 0.9.1 refuses a `.sql` file in a migrations folder
    // whose name is not a migration's.
    let beside = tempfile::tempdir().unwrap();
    let snapshot = beside.path().join("schema.sql");
    let history = check::history(dir.path()).await.unwrap();
    assert!(
        history
            .summary
            .contains("3 migrations, 3 of them reversible")
    );
    let upgrade = check::upgrade(dir.path()).await.unwrap();
    assert!(upgrade.summary.contains("up to 3 (orders)"), "{upgrade}");
    let up_down = check::up_down(dir.path()).await.unwrap();
    assert!(up_down.summary.contains("each of the 3"), "{up_down}");
    assert_eq!(up_down.notes, Vec::<String>::new());
    let wrote = check::update_snapshot(dir.path(), &snapshot).await.unwrap();
    assert!(wrote.summary.starts_with("wrote"), "{wrote}");
    check::snapshot(dir.path(), &snapshot).await.unwrap();
    let again = check::update_snapshot(dir.path(), &snapshot).await.unwrap();
    assert!(again.summary.contains("is up to date"), "{again}");
}

#[tokio::test]
async fn down_that_forgets_an_index_is_named() {
    let dir = good_with(
        "2_account_details.down.sql",
        Some("ALTER TABLE accounts DROP COLUMN created_at;"),
    );
    check::history(dir.path()).await.unwrap();
    let (version, step, text) = not_reversible(check::up_down(dir.path()).await.unwrap_err());
    assert_eq!((version, step), (2, Step::Down), "{text}");
    assert!(text.contains("migration 2 (account details)"), "{text}");
    assert!(
        text.contains(
            "    + CREATE INDEX accounts_email_lower ON public.accounts USING btree (lower(email));"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn down_that_leaves_a_column_is_named() {
    let dir = good_with(
        "2_account_details.down.sql",
        Some("DROP INDEX accounts_email_lower;"),
    );
    let (version, step, text) = not_reversible(check::up_down(dir.path()).await.unwrap_err());
    assert_eq!((version, step), (2, Step::Down), "{text}");
    assert!(
        text.contains("\n      CREATE TABLE public.accounts (\n"),
        "{text}"
    );
    assert!(
        text.contains("    +     created_at timestamp with time zone NOT NULL DEFAULT now()"),
        "{text}"
    );
}

#[tokio::test]
async fn every_up_down_defect_is_named_in_one_run() {
    // 1 leaves a table behind, 2 is fine, 3 leaves a column behind, 4 fails to revert.
    let dir = folder(&[
        (
            "1_a.up.sql",
            "CREATE TABLE a (id int);\nCREATE TABLE a_log (id int);",
        ),
        ("1_a.down.sql", "DROP TABLE a;"),
        ("2_b.up.sql", "CREATE TABLE b (id int);"),
        ("2_b.down.sql", "DROP TABLE b;"),
        ("3_c.up.sql", "ALTER TABLE b ADD COLUMN note text;"),
        ("3_c.down.sql", "SELECT 1;"),
        ("4_d.up.sql", "CREATE TABLE d (id int);"),
        ("4_d.down.sql", "DROP TABLE no_such_table;"),
        ("5_e.up.sql", "CREATE TABLE e (id int);"),
        ("5_e.down.sql", "DROP TABLE e;"),
    ]);
    let e = check::up_down(dir.path()).await.unwrap_err();
    let text = e.to_string();
    let Failure::Defects(defects) = &e else {
        panic!("expected every defect: {text}")
    };
    let found: Vec<(Option<i64>, String)> = defects
        .iter()
        .map(|d| (d.version(), d.to_string()))
        .collect();
    let versions: Vec<Option<i64>> = found.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, [Some(1), Some(3), Some(4)], "{text}");
    let starts = "3 migrations fail the up/down check (1, 3, 4):";
    assert!(text.starts_with(starts), "{text}");
    let restores = "its down migration does not restore";
    assert!(
        found[0].1.contains(&format!("migration 1 (a): {restores}")),
        "{text}"
    );
    assert!(
        found[0].1.contains("+ CREATE TABLE public.a_log ("),
        "{text}"
    );
    assert!(
        found[1].1.contains(&format!("migration 3 (c): {restores}")),
        "{text}"
    );
    assert!(found[1].1.contains("+     note text"), "{text}");
    assert!(
        found[2].1.contains("reverting migration 4 (d) failed"),
        "{text}"
    );
    let missing = r#"table "no_such_table" does not exist"#;
    assert!(found[2].1.contains(missing), "{text}");
}

#[tokio::test]
async fn up_edited_after_it_was_applied_is_named() {
    let dir = folder(GOOD);
    let db = Harness::from_dir(dir.path()).test_db().await.unwrap();
    check::history_against(dir.path(), db.pool()).await.unwrap();
    std::fs::write(
        dir.path().join("3_orders.up.sql"),
        "CREATE TABLE orders (id bigint PRIMARY KEY);",
    )
    .unwrap();
    // The folder alone is fine; the database that applied the old text is not.
    check::history(dir.path()).await.unwrap();
    let e = check::history_against(dir.path(), db.pool())
        .await
        .unwrap_err();
    let text = e.to_string();
    let Failure::History { problems, .. } = e else {
        panic!("{text}")
    };
    assert_eq!(
        problems,
        [Problem::Edited {
            version: 3,
            description: "orders".into()
        }]
    );
    assert!(text.contains("migration 3 (orders) was edited after the database applied it"));
}

#[tokio::test]
async fn database_history_that_left_the_set_is_named() {
    let dir = folder(GOOD);
    let db = Harness::from_dir(dir.path()).test_db_at(1).await.unwrap();
    sqlx_exec(
        &db,
        "UPDATE _sqlx_migrations SET version = 9 WHERE version = 1",
    )
    .await;
    let e = check::history_against(dir.path(), db.pool())
        .await
        .unwrap_err();
    let Failure::History { problems, .. } = &e else {
        panic!("{e}")
    };
    let versions: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 4, "{e}");
    assert!(versions[0].starts_with("migration 1 (accounts) is older than 9"));
    assert!(versions[3].contains("migration 9 (accounts) is applied in the database but missing"));
}

async fn sqlx_exec(db: &pgfresh::TestDb, sql: &'static str) {
    pgfresh::sqlx::query(sql).execute(db.pool()).await.unwrap();
}

#[tokio::test]
async fn missing_half_of_a_pair_is_named() {
    let dir = good_with("2_account_details.down.sql", None);
    std::fs::remove_file(dir.path().join("3_orders.up.sql")).unwrap();
    let e = check::history(dir.path()).await.unwrap_err();
    let text = e.to_string();
    let Failure::History { problems, .. } = e else {
        panic!("{text}")
    };
    assert!(matches!(
        problems[0],
        Problem::MissingDown { version: 2, .. }
    ));
    assert!(matches!(problems[1], Problem::MissingUp { version: 3, .. }));
    assert!(text.contains("has 2 problems"), "{text}");
    assert!(text.contains("add 2_account_details.down.sql"), "{text}");
    assert!(text.contains("add 3_orders.up.sql"), "{text}");
}

#[tokio::test]
async fn folder_rules_sqlx_would_not_catch() {
    let dir = folder(&[
        ("1_a.sql", "CREATE TABLE a ();"),
        ("1_b.sql", "CREATE TABLE b ();"),
        ("2_c.sql", "CREATE TABLE c ();"),
        ("2_c.down.sql", "DROP TABLE c;"),
    ]);
    let e = check::history(dir.path()).await.unwrap_err();
    let Failure::History { problems, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(
        problems,
        &[
            Problem::DuplicateVersion {
                version: 1,
                descriptions: vec!["a".into(), "b".into()]
            },
            Problem::DownOfSimple {
                version: 2,
                description: "c".into()
            },
        ],
        "{e}"
    );
}

/// A `.sql` file whose name is not a migration's: sqlx 0.9.0 skips it without a word (the
/// history check names it), 0.9.1 and later refuse the folder (and name it). Either way the
/// user reads its name.
#[tokio::test]
async fn a_misnamed_migration_is_named() {
    let dir = folder(&[
        ("1_a.sql", "CREATE TABLE a ();"),
        ("003-forgotten.sql", "CREATE TABLE forgotten ();"),
    ]);
    let e = check::history(dir.path()).await.unwrap_err();
    match &e {
        Failure::History { problems, .. } => assert_eq!(
            problems,
            &[Problem::Ignored {
                file: "003-forgotten.sql".into()
            }],
            "{e}"
        ),
        other => assert!(other.to_string().contains("003-forgotten.sql"), "{other}"),
    }
}

#[tokio::test]
async fn out_of_date_snapshot_is_named() {
    let dir = folder(GOOD);
    // Beside the set, not in it: sqlx 0.9.1 refuses a `.sql` file in a migrations folder
    // whose name is not a migration's.
    let beside = tempfile::tempdir().unwrap();
    let snapshot = beside.path().join("schema.sql");
    let e = check::snapshot(dir.path(), &snapshot).await.unwrap_err();
    assert!(matches!(e, Failure::SnapshotFile { .. }), "{e}");
    assert!(e.to_string().contains("pgfresh check --update"), "{e}");

    check::update_snapshot(dir.path(), &snapshot).await.unwrap();
    std::fs::write(
        dir.path().join("4_nickname.up.sql"),
        "ALTER TABLE accounts ADD COLUMN nickname varchar(40);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("4_nickname.down.sql"),
        "ALTER TABLE accounts DROP COLUMN nickname;",
    )
    .unwrap();
    let e = check::snapshot(dir.path(), &snapshot).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, Failure::Drift { ref head, .. } if head == "4"),
        "{text}"
    );
    assert!(text.contains("the schema at head (4) differs"), "{text}");
    assert!(
        text.contains("    +     nickname character varying(40)"),
        "{text}"
    );
    assert!(text.contains("`pgfresh check --update`"), "{text}");
}

#[tokio::test]
async fn irreversible_set_gets_a_note_not_a_failure() {
    let dir = folder(&[
        ("1_a.sql", "CREATE TABLE a (id int);"),
        ("2_b.sql", "CREATE TABLE b (id int);"),
    ]);
    let passed = check::up_down(dir.path()).await.unwrap();
    assert!(
        passed.summary.contains("no reversible migrations"),
        "{passed}"
    );
    assert!(passed.notes[0].contains("2 of 2 migrations cannot be reverted"));

    let mixed = folder(&[
        ("1_a.sql", "CREATE TABLE a (id int);"),
        ("2_b.up.sql", "CREATE TABLE b (id int);"),
        ("2_b.down.sql", "DROP TABLE b;"),
    ]);
    let passed = check::up_down(mixed.path()).await.unwrap();
    assert!(passed.summary.contains("each of the 1"), "{passed}");
    assert!(passed.notes[0].ends_with("not checked: 1"), "{passed}");
}

#[tokio::test]
async fn up_that_depends_on_what_its_down_leaves_is_named() {
    // The down drops the table the up created, but not the counter the up bumped, so the
    // second up creates another table.
    let dir = folder(&[
        (
            "1_counter.up.sql",
            "CREATE TABLE counter (n int);\nINSERT INTO counter VALUES (0);",
        ),
        ("1_counter.down.sql", "DROP TABLE counter;"),
        (
            "2_numbered.up.sql",
            "UPDATE counter SET n = n + 1;\nDO $$ BEGIN EXECUTE format('CREATE TABLE t%s ()', \
             (SELECT n FROM counter)); END $$;",
        ),
        (
            "2_numbered.down.sql",
            "DO $$ BEGIN EXECUTE format('DROP TABLE t%s', (SELECT n FROM counter)); END $$;",
        ),
    ]);
    let (version, step, text) = not_reversible(check::up_down(dir.path()).await.unwrap_err());
    assert_eq!((version, step), (2, Step::Reapply), "{text}");
    assert!(text.contains("    - CREATE TABLE public.t1 ("), "{text}");
    assert!(text.contains("    + CREATE TABLE public.t2 ("), "{text}");
}

#[tokio::test]
async fn failing_down_names_version_step_and_line() {
    let dir = good_with("3_orders.down.sql", Some("-- drop it\nDROP TABLEX orders;"));
    let e = check::up_down(dir.path()).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            Failure::Migration {
                version: 3,
                step: Step::Down,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.starts_with("reverting migration 3 (orders) failed"),
        "{text}"
    );
    assert!(text.contains("(at line 2, column 6)"), "{text}");
}

#[tokio::test]
async fn failing_up_names_version() {
    let dir = good_with(
        "3_orders.up.sql",
        Some("CREATE TABLE orders (id nosuchtype);"),
    );
    let e = check::upgrade(dir.path()).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            Failure::Migration {
                version: 3,
                step: Step::Up,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("type \"nosuchtype\" does not exist"),
        "{text}"
    );
}

/// For each kind of schema object: an up that creates it (on top of a table `t (id, a, b)`),
/// a down that forgets it, and the line the diff must show.
const LEFT_BEHIND: &[(&str, &str, &str, &str)] = &[
    (
        "index",
        "CREATE INDEX t_a ON t (a);",
        "SELECT 1;",
        "    + CREATE INDEX t_a ON public.t USING btree (a);",
    ),
    (
        "column",
        "ALTER TABLE t ADD COLUMN c int;",
        "SELECT 1;",
        "    +     c integer",
    ),
    (
        "column type",
        "ALTER TABLE t ALTER COLUMN a TYPE bigint;",
        "SELECT 1;",
        "    +     a bigint,",
    ),
    (
        "nullability",
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
        "SELECT 1;",
        "    +     a integer NOT NULL,",
    ),
    (
        "default",
        "ALTER TABLE t ALTER COLUMN b SET DEFAULT 'x';",
        "SELECT 1;",
        "    +     b text DEFAULT 'x'::text",
    ),
    (
        "column order",
        "ALTER TABLE t DROP COLUMN a;",
        "ALTER TABLE t ADD COLUMN a int;",
        "    +     a integer",
    ),
    (
        "check constraint",
        "ALTER TABLE t ADD CONSTRAINT a_positive CHECK (a > 0);",
        "SELECT 1;",
        "    + ALTER TABLE public.t ADD CONSTRAINT a_positive CHECK ((a > 0));",
    ),
    (
        "foreign key",
        "ALTER TABLE t ADD CONSTRAINT t_self FOREIGN KEY (a) REFERENCES t (id);",
        "SELECT 1;",
        "    + ALTER TABLE public.t ADD CONSTRAINT t_self FOREIGN KEY (a) REFERENCES public.t(id);",
    ),
    (
        "sequence",
        "CREATE SEQUENCE s START 7;",
        "SELECT 1;",
        "    + CREATE SEQUENCE public.s AS bigint INCREMENT 1 MINVALUE 1 MAXVALUE \
         9223372036854775807 START 7 CACHE 1;",
    ),
    (
        "view",
        "CREATE VIEW v AS SELECT id FROM t;",
        "SELECT 1;",
        "    + CREATE VIEW public.v AS",
    ),
    (
        "materialized view",
        "CREATE MATERIALIZED VIEW mv AS SELECT a FROM t;",
        "SELECT 1;",
        "    + CREATE MATERIALIZED VIEW public.mv AS",
    ),
    (
        "function",
        "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1';",
        "SELECT 1;",
        "    + CREATE OR REPLACE FUNCTION public.f(x integer)",
    ),
    (
        "trigger",
        "CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;\n\
         CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION tf();",
        "SELECT 1;",
        "    + CREATE TRIGGER tr BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION \
         public.tf();",
    ),
    (
        "enum type",
        "CREATE TYPE mood AS ENUM ('sad', 'ok');",
        "SELECT 1;",
        "    + CREATE TYPE public.mood AS ENUM ('sad', 'ok');",
    ),
    (
        "enum label",
        "CREATE TYPE mood AS ENUM ('sad', 'ok');\nALTER TYPE mood ADD VALUE 'happy';",
        "ALTER TYPE mood RENAME VALUE 'happy' TO 'glad';",
        "    + CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'glad');",
    ),
    (
        "domain",
        "CREATE DOMAIN posint AS int CHECK (VALUE > 0);",
        "SELECT 1;",
        "    + CREATE DOMAIN public.posint AS integer CONSTRAINT posint_check CHECK ((VALUE > 0));",
    ),
    (
        "composite type",
        "CREATE TYPE pair AS (x int, y text);",
        "SELECT 1;",
        "    + CREATE TYPE public.pair AS (x integer, y text);",
    ),
    (
        "extension",
        "CREATE EXTENSION hstore;",
        "SELECT 1;",
        "    + CREATE EXTENSION hstore WITH SCHEMA public;",
    ),
    (
        "schema",
        "CREATE SCHEMA app;",
        "SELECT 1;",
        "    + CREATE SCHEMA app;",
    ),
];

#[tokio::test]
async fn every_kind_of_object_left_behind_shows_in_the_diff() {
    for (kind, up, down, line) in LEFT_BEHIND {
        let dir = folder(&[
            (
                "1_t.up.sql",
                "CREATE TABLE t (id int PRIMARY KEY, a int, b text);",
            ),
            ("1_t.down.sql", "DROP TABLE t;"),
            ("2_change.up.sql", up),
            ("2_change.down.sql", down),
        ]);
        let e = check::up_down(dir.path()).await.unwrap_err();
        let (version, step, text) = not_reversible(e);
        assert_eq!((version, step), (2, Step::Down), "{kind}: {text}");
        assert!(text.contains(line), "{kind}: no `{line}` in:\n{text}");
    }
}

/// Migration `i` of the speed set: every kind of object, each undone by its down.
fn step(i: usize) -> (String, String) {
    let (t, prev) = (format!("t{i}"), format!("t{}", i - 1));
    match i % 6 {
        0 => (
            format!(
                "CREATE TYPE state{i} AS ENUM ('new', 'done');\nCREATE TABLE {t} (id serial \
                 PRIMARY KEY, state state{i} NOT NULL DEFAULT 'new');"
            ),
            format!("DROP TABLE {t};\nDROP TYPE state{i};"),
        ),
        1 => (
            format!(
                "CREATE TABLE {t} (id serial PRIMARY KEY, code text NOT NULL UNIQUE, qty int \
                 CHECK (qty > 0), at timestamptz DEFAULT now());\nCREATE INDEX {t}_at ON {t} (at);"
            ),
            format!("DROP TABLE {t};"),
        ),
        2 => (
            format!(
                "CREATE TABLE {t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent int \
                 REFERENCES {prev} (id), note varchar(80));\nCREATE INDEX {t}_parent ON {t} (parent);"
            ),
            format!("DROP TABLE {t};"),
        ),
        3 => (
            format!("CREATE VIEW v{i} AS SELECT id, note FROM {prev} WHERE note IS NOT NULL;"),
            format!("DROP VIEW v{i};"),
        ),
        4 => (
            format!(
                "CREATE TABLE {t} (id int PRIMARY KEY, touched timestamptz);\nCREATE FUNCTION \
                 touch{i}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.touched := now(); \
                 RETURN NEW; END $$;\nCREATE TRIGGER {t}_touch BEFORE UPDATE ON {t} FOR EACH ROW \
                 EXECUTE FUNCTION touch{i}();"
            ),
            format!("DROP TABLE {t};\nDROP FUNCTION touch{i}();"),
        ),
        _ => (
            format!(
                "CREATE SEQUENCE seq{i} START 100;\nCREATE DOMAIN amount{i} AS numeric(12, 2) \
                 CHECK (VALUE >= 0);\nALTER TABLE {prev} ADD COLUMN amount amount{i};"
            ),
            format!(
                "ALTER TABLE {prev} DROP COLUMN amount;\nDROP DOMAIN amount{i};\nDROP SEQUENCE seq{i};"
            ),
        ),
    }
}

#[tokio::test]
async fn thirty_three_migrations_up_down_takes_seconds() {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=33 {
        let (up, down) = step(i);
        std::fs::write(dir.path().join(format!("{i}_step_{i}.up.sql")), up).unwrap();
        std::fs::write(dir.path().join(format!("{i}_step_{i}.down.sql")), down).unwrap();
    }
    // The server and the empty template are not what is measured.
    drop(
        Harness::from_dir(tempfile::tempdir().unwrap().path())
            .test_db()
            .await
            .unwrap(),
    );
    let started = Instant::now();
    let passed = check::up_down(dir.path()).await.unwrap();
    let elapsed = started.elapsed();
    assert!(passed.summary.contains("each of the 33"), "{passed}");
    println!("up/down check of 33 reversible migrations: {elapsed:.2?}");

    // Beside the set, not in it: sqlx 0.9.1 refuses a `.sql` file in a migrations folder
    // whose name is not a migration's.
    let beside = tempfile::tempdir().unwrap();
    let snapshot = beside.path().join("schema.sql");
    check::update_snapshot(dir.path(), &snapshot).await.unwrap();
    let text = std::fs::read_to_string(&snapshot).unwrap();
    for line in [
        "CREATE TYPE public.state6 AS ENUM ('new', 'done');",
        "    id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,",
        "    amount public.amount5",
        "CREATE DOMAIN public.amount5 AS numeric(12,2) CONSTRAINT amount5_check CHECK ((VALUE >= (0)::numeric));",
        "ALTER TABLE public.t2 ADD CONSTRAINT t2_parent_fkey FOREIGN KEY (parent) REFERENCES public.t1(id);",
        "CREATE TRIGGER t4_touch BEFORE UPDATE ON public.t4 FOR EACH ROW EXECUTE FUNCTION public.touch4();",
        "CREATE VIEW public.v3 AS",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains("_sqlx_migrations"), "{text}");
}
