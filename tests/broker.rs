//! The broker: test processes get their databases from one process per environment, which
//! drops each database when its test's process lets go of it, however that process ends, and
//! whose own death leaks nothing and breaks no running test.
//!
//! Every test here gives its children an environment of their own (`PGFRESH_TEST_TAG`), so
//! they meet a broker of their own, which the test can find and kill.

mod common;

use std::time::{Duration, Instant};

use common::{PROBE, Running, broker_pid, kill, output, probe_field, rerun};

/// The owner a test database's name carries: `pgfresh_<hash>_<owner>_<random>`.
fn owner(name: &str) -> &str {
    name.split('_').nth(2).expect("a test database's name")
}

/// The environment of a test's children: the url source on this suite's server, a broker of
/// their own.
fn env<'a>(url: &'a str, tag: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("PGFRESH_SERVER", "url"),
        ("DB_URL", url),
        ("PGFRESH_TEST_TAG", tag),
    ]
}

#[tokio::test]
async fn test_processes_get_their_databases_from_one_broker_which_drops_them_after() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let tag = uuid::Uuid::new_v4().to_string();
    // The broker's directory goes in a run directory of this test's own.
    let base = tempfile::tempdir().unwrap();
    let run_dir = base.path().display().to_string();
    let mut with_run_dir = env(&url, &tag);
    with_run_dir.push(("PGFRESH_RUN_DIR", &run_dir));
    let broker_dirs = || {
        std::fs::read_dir(base.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("-broker-"))
            .count()
    };
    let mut owners = Vec::new();
    for _ in 0..3 {
        let out = rerun(PROBE, &with_run_dir);
        assert!(out.status.success(), "{}", output(&out));
        let name = probe_field(&out, "name");
        assert!(
            common::dropped_within(&admin, &name, Duration::from_secs(10)).await,
            "{name} outlived its test"
        );
        owners.push(owner(&name).to_owned());
    }
    owners.dedup();
    assert_eq!(owners.len(), 1, "one owner, the broker: {owners:?}");
    let broker = broker_pid(&tag).expect("the broker still runs");
    assert_eq!(broker_dirs(), 1, "the broker's directory");
    // Idle, it leaves, and takes its directory with it.
    assert!(common::eventually(Duration::from_secs(10), || {
        common::ended(broker)
    }));
    assert!(
        common::eventually(Duration::from_secs(2), || broker_dirs() == 0),
        "the broker's directory outlived it"
    );

    // Without it, every process is its own owner.
    let mut without = env(&url, &tag);
    without.push(("PGFRESH_BROKER", "off"));
    let mut owners = Vec::new();
    for _ in 0..2 {
        let out = rerun(PROBE, &without);
        assert!(out.status.success(), "{}", output(&out));
        owners.push(owner(&probe_field(&out, "name")).to_owned());
    }
    assert_ne!(owners[0], owners[1]);
    assert!(broker_pid(&tag).is_none(), "PGFRESH_BROKER=off starts none");
}

#[tokio::test]
async fn a_killed_test_process_database_is_dropped_by_the_broker() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let tag = uuid::Uuid::new_v4().to_string();
    let mut holding = env(&url, &tag);
    holding.push(("PGFRESH_TEST_SLEEP", "60000"));
    let mut child = Running::spawn(PROBE, &holding);
    let name = common::field(&child.probe_line(), "name");
    assert!(common::database_exists(&admin, &name).await);
    child.kill();
    assert!(
        common::dropped_within(&admin, &name, Duration::from_secs(10)).await,
        "{name} outlived its killed process"
    );
}

#[tokio::test]
async fn a_killed_broker_is_replaced_its_databases_swept_and_a_running_test_keeps_its_own() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let tag = uuid::Uuid::new_v4().to_string();

    // A holds its database through the broker's death, B dies with the broker.
    let mut a_env = env(&url, &tag);
    a_env.push(("PGFRESH_TEST_SLEEP", "8000"));
    let mut a = Running::spawn(PROBE, &a_env);
    let a_name = common::field(&a.probe_line(), "name");
    let mut b_env = env(&url, &tag);
    b_env.push(("PGFRESH_TEST_SLEEP", "60000"));
    let mut b = Running::spawn(PROBE, &b_env);
    let b_name = common::field(&b.probe_line(), "name");
    let first = broker_pid(&tag).expect("a broker serves them");
    // The broker makes the next databases ahead, as its own test databases.
    let ahead = {
        let (owner, deadline) = (owner(&a_name), Instant::now() + Duration::from_secs(10));
        loop {
            let ahead: Vec<String> = common::pgfresh_databases(&admin)
                .await
                .into_iter()
                .map(|(name, ..)| name)
                .filter(|name| name.split('_').nth(2) == Some(owner))
                .filter(|name| *name != a_name && *name != b_name)
                .collect();
            if !ahead.is_empty() || Instant::now() > deadline {
                break ahead;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(!ahead.is_empty(), "the broker made no database ahead");
    kill(first);
    b.kill();

    // The next process starts another broker, whose sweep drops B's database and leaves A's.
    let out = rerun(PROBE, &env(&url, &tag));
    assert!(out.status.success(), "{}", output(&out));
    let second = broker_pid(&tag).expect("a new broker");
    assert_ne!(first, second);
    assert_ne!(owner(&probe_field(&out, "name")), owner(&a_name));
    assert!(
        common::dropped_within(&admin, &b_name, Duration::from_secs(10)).await,
        "{b_name} of the dead broker was not swept"
    );
    for name in &ahead {
        assert!(
            common::dropped_within(&admin, name, Duration::from_secs(10)).await,
            "{name}, made ahead by the dead broker, was not swept"
        );
    }
    assert!(
        common::database_exists(&admin, &a_name).await,
        "{a_name} was swept while its test ran"
    );

    // A's test ends: with its broker gone, its own process drops the database.
    let (status, text) = a.finish(Duration::from_secs(30));
    assert!(status.success(), "{text}");
    assert!(
        common::dropped_within(&admin, &a_name, Duration::from_secs(10)).await,
        "{a_name} outlived its test"
    );
}

/// A test's pool is closed as its guard drops, so its sessions are on their way out when the
/// broker drops the database: it lets them leave instead of ending them, and the server logs
/// no `terminating connection due to administrator command` for them (in a user's own server's
/// log, under the url source, one per test). The same holds for the connection the template's
/// build closed just before it seals the template (the log covers the first child's build).
#[tokio::test]
async fn drops_let_a_closed_pools_sessions_leave_on_their_own() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    let mut server = common::OwnServer::new("local", 5);
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut names = Vec::new();
    for i in 0..6 {
        let out = rerun(PROBE, &env);
        assert!(out.status.success(), "{}", output(&out));
        if i == 0 {
            server.hold(Duration::from_secs(10));
        }
        names.push(probe_field(&out, "name"));
    }
    let admin = pgfresh::sqlx::PgPool::connect(&server.admin_url())
        .await
        .unwrap();
    for name in &names {
        assert!(
            common::dropped_within(&admin, name, Duration::from_secs(10)).await,
            "{name} outlived its test"
        );
    }
    admin.close().await;
    let log = server.run_dir().unwrap().join("server.log");
    let log = std::fs::read_to_string(&log).unwrap();
    let ended: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("terminating connection due to administrator command"))
        .collect();
    assert!(
        ended.is_empty(),
        "sessions on their way out were ended:\n{}",
        ended.join("\n")
    );
}

/// Between runs the broker makes as many ready clones as the last run used and the
/// `PGFRESH_READY` made ahead of its last claim (`PGFRESH_READY_MAX` at most: 0 turns it off),
/// and drops what the run gave back; the next run's broker adopts the ready clones (the same
/// databases, renamed: their oids), which no sweep took meanwhile.
#[tokio::test]
async fn between_runs_the_ready_clones_match_the_last_run_and_the_next_broker_adopts_them() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let runs = Runs::new("idle");
    let env = env(&url, &runs.tag);
    let ready = |prefix: String| {
        let admin = admin.clone();
        async move {
            let oids: Vec<i64> = pgfresh::sqlx::query_scalar(
                "SELECT oid::bigint FROM pg_database WHERE starts_with(datname::text, $1)",
            )
            .bind(prefix)
            .fetch_all(&admin)
            .await
            .unwrap();
            oids
        }
    };
    let run = |n, max| runs.run(&env, n, max);
    let first = run(6, None).await;
    let hash8 = first[0].0.split('_').nth(1).unwrap().to_owned();
    let prefix = format!("pgfresh_r_{hash8}");
    let after_first = ready(prefix.clone()).await;
    // The run's 6, and the one (`PGFRESH_READY`) made ahead of its last claim.
    assert_eq!(after_first.len(), 7, "ready clones after a run of 6");
    for (name, _) in &first {
        assert!(
            !common::database_exists(&admin, name).await,
            "{name} was not dropped before the broker left"
        );
    }

    let second = run(3, None).await;
    for (name, oid) in &second {
        assert!(
            after_first.contains(oid),
            "{name} (oid {oid}) is not one of the ready clones the first run left: {after_first:?}"
        );
    }
    assert_eq!(ready(prefix.clone()).await.len(), 4, "after a run of 3");

    run(3, Some("2")).await;
    assert_eq!(ready(prefix.clone()).await.len(), 2, "PGFRESH_READY_MAX=2");
    run(3, Some("0")).await;
    assert_eq!(ready(prefix.clone()).await.len(), 0, "PGFRESH_READY_MAX=0");
}

/// A template of a test's own (the migration in `dir` creates a table named after the test
/// and `tag`), so that no other test's run counts, and a broker of its own (`tag`, for
/// `PGFRESH_TEST_TAG`).
struct Runs {
    tag: String,
    _migrations: tempfile::TempDir,
    dir: String,
}

impl Runs {
    fn new(what: &str) -> Self {
        let tag = uuid::Uuid::new_v4().to_string();
        let migrations = tempfile::tempdir().unwrap();
        std::fs::write(
            migrations.path().join(format!("1_{what}.sql")),
            format!("CREATE TABLE {what}_{} (id int);", tag.replace('-', "")),
        )
        .unwrap();
        Self {
            dir: migrations.path().display().to_string(),
            tag,
            _migrations: migrations,
        }
    }

    /// A run in `env` (which names this `tag`), `PGFRESH_READY=1` and `max` for
    /// `PGFRESH_READY_MAX`: `n` test processes one after another, then the broker leaves
    /// (after its idle work). Each process's database: name, oid.
    async fn run(&self, env: &[(&str, &str)], n: usize, max: Option<&str>) -> Vec<(String, i64)> {
        let mut env = env.to_vec();
        env.extend([
            ("PGFRESH_TEST_MIGRATIONS", self.dir.as_str()),
            ("PGFRESH_READY", "1"),
        ]);
        if let Some(max) = max {
            env.push(("PGFRESH_READY_MAX", max));
        }
        let mut seen = Vec::new();
        for _ in 0..n {
            let out = rerun(PROBE, &env);
            assert!(out.status.success(), "{}", output(&out));
            seen.push((
                probe_field(&out, "name"),
                probe_field(&out, "oid").parse::<i64>().unwrap(),
            ));
        }
        let broker = broker_pid(&self.tag).expect("a broker served the run");
        assert!(
            common::eventually(Duration::from_secs(30), || common::ended(broker)),
            "the broker did not leave after its idle work"
        );
        seen
    }
}

/// Autovacuum removes a database's relation cache init file when it vacuums a catalog there,
/// the sealed template included, and a server's start removes them all. Before it makes the
/// next run's ready clones the broker gives the template its file back, and then each ready
/// clone without one its own: a test's first connection never builds the cache from the
/// catalogs. Here an `ANALYZE` of `pg_class` in the template and in the ready clones does what
/// autovacuum does.
#[tokio::test]
async fn the_broker_gives_the_template_and_the_ready_clones_their_lost_relation_cache_file() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    // A server of its own: elsewhere other tests' creates and drops (each a cache invalidation
    // for every backend starting meanwhile) can keep any one connection from writing the file.
    let mut server = common::OwnServer::new("local", 10);
    let runs = Runs::new("cache");
    let base = server.env();
    let mut env = common::env_with(&base, &[]);
    env.push(("PGFRESH_TEST_TAG", runs.tag.as_str()));
    let first = runs.run(&env, 2, None).await;
    server.hold(Duration::from_secs(10));
    let url = server.admin_url();
    let admin = pgfresh::sqlx::PgPool::connect(&url).await.unwrap();
    // The databases named like `pattern`, and whether each has its file.
    let files = async |pattern: String| -> Vec<(String, bool)> {
        sqlx::query_as(
            "SELECT datname::text, (pg_stat_file('base/' || oid || '/pg_internal.init', true)) \
             .size IS NOT NULL FROM pg_database WHERE datname LIKE $1 ORDER BY datname",
        )
        .bind(pattern)
        .fetch_all(&admin)
        .await
        .unwrap()
    };
    // What autovacuum does in `name`; a sealed template is opened for it, then sealed again.
    let analyze_in = async |name: &str, sealed: bool| {
        let set = |allow| format!(r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {allow}"#);
        if sealed {
            sqlx::raw_sql(sqlx::AssertSqlSafe(set(true)))
                .execute(&admin)
                .await
                .unwrap();
        }
        let mut options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        options = options.database(name);
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql("ANALYZE pg_class")
            .execute(&mut conn)
            .await
            .unwrap();
        <sqlx::PgConnection as sqlx::Connection>::close(conn)
            .await
            .unwrap();
        if sealed {
            sqlx::raw_sql(sqlx::AssertSqlSafe(set(false)))
                .execute(&admin)
                .await
                .unwrap();
        }
    };

    let hash8 = first[0].0.split('_').nth(1).unwrap().to_owned();
    let template = files(format!("pgfresh_t_{hash8}%")).await;
    assert_eq!(template.len(), 1, "{template:?}");
    assert!(template[0].1, "a new template has its file");
    analyze_in(&template[0].0, true).await;
    for (name, _) in files(format!("pgfresh_r_{hash8}%")).await {
        analyze_in(&name, false).await;
    }
    assert!(
        !files(format!("pgfresh_t_{hash8}%")).await[0].1,
        "ANALYZE removed it"
    );
    let lost = files(format!("pgfresh_r_{hash8}%")).await;
    assert!(
        lost.len() >= 2 && lost.iter().all(|(_, has)| !has),
        "{lost:?}"
    );

    // The next run takes the ready clones without a file; its broker's idle work makes new ones.
    runs.run(&env, 1, None).await;
    let template = files(format!("pgfresh_t_{hash8}%")).await;
    assert!(template[0].1, "the template did not get its file back");
    let ready = files(format!("pgfresh_r_{hash8}%")).await;
    assert!(!ready.is_empty());
    assert!(
        ready.iter().all(|(_, has)| *has),
        "a ready clone has no file: {ready:?}"
    );
}
