//! Faults: a test process killed in the middle of a test, the server killed during a run,
//! sixteen processes starting together against a cold server, and a template build killed
//! half-way. Each case runs its children against a server of its own (a fresh run directory),
//! so that it can kill things and count what is left without disturbing other tests.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{OwnServer, PROBE, Running, env_with, field, output, probe_field};
use pgfresh::sqlx::{self, PgPool};

async fn exists(admin: &PgPool, name: &str) -> bool {
    common::database_exists(admin, name).await
}

/// The marker (comment) of `name`, `None` when it has none or does not exist.
async fn marker(admin: &PgPool, name: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_optional(admin)
    .await
    .unwrap()
    .flatten()
}

/// Locks the database `name` in `blocker`'s open transaction (`COMMENT ON DATABASE` takes a
/// lock on the database that lasts until the transaction ends; the comment it writes is never
/// committed), so that pgfresh's drop of it (`DROP DATABASE` locks it too) waits.
async fn lock_database(blocker: &mut sqlx::PgConnection, name: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r#"COMMENT ON DATABASE "{name}" IS NULL"#
    )))
    .execute(blocker)
    .await
    .unwrap();
}

/// Whether a session is running a `DROP DATABASE` of `name`.
async fn drop_running(admin: &PgPool, name: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE state = 'active' \
         AND query LIKE 'DROP DATABASE%' AND strpos(query, $1) > 0)",
    )
    .bind(name)
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Whether the owner lock `owner` (see `src/sweep.rs`: class "pgfo") is still held.
async fn owner_lock_held(admin: &PgPool, owner: i64) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' \
         AND classid::bigint = x'7067666f'::bigint AND objid::bigint = $1 AND objsubid = 2 \
         AND granted)",
    )
    .bind(owner)
    .fetch_one(admin)
    .await
    .unwrap()
}

fn local() -> bool {
    common::available(common::local_binaries(), "PostgreSQL binaries")
}

/// A test process killed by `SIGKILL` in the middle of a test runs no `Drop`: its database is
/// left on the server, marked as its owner's. The server releases the dead process's owner lock,
/// and the sweep of the next process that starts drops the database.
#[tokio::test]
async fn killed_test_process_leaves_its_database_to_the_next_sweep() {
    if !local() {
        return;
    }
    let mut server = OwnServer::new("local", 5);
    let base = server.env();

    let mut victim = Running::spawn(PROBE, &env_with(&base, &[("PGFRESH_TEST_SLEEP", "60000")]));
    let name = field(&victim.probe_line(), "name");
    server.hold(Duration::from_secs(10));
    let admin = PgPool::connect(&server.admin_url()).await.unwrap();
    let owner = common::owner_in_name(&name)
        .unwrap_or_else(|| panic!("not a test database's name: {name}"));
    assert!(owner_lock_held(&admin, owner).await);

    victim.kill();
    assert!(
        exists(&admin, &name).await,
        "a SIGKILLed process cannot drop its database; who did?"
    );
    let start = Instant::now();
    while owner_lock_held(&admin, owner).await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the server kept the dead process's owner lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The next process sweeps in the background after its first hand-out, and waits for the
    // sweep when it exits.
    let next = Running::spawn(PROBE, &env_with(&base, &[]));
    assert!(
        common::dropped_within(&admin, &name, Duration::from_secs(10)).await,
        "the next process did not sweep {name} (marker {:?})",
        marker(&admin, &name).await
    );
    let (status, text) = next.finish(Duration::from_secs(60));
    assert!(status.success(), "{text}");

    let (port, _) = server.state().unwrap();
    admin.close().await;
    assert!(server.wait_gone(port, Duration::from_secs(15)).is_some());
}

/// A drop that cannot finish holds the exit of its process for at most 10 s, and the process
/// says what it left unfinished: here the test database is locked by another session's open
/// transaction, so the drop's `DROP DATABASE` waits.
#[tokio::test]
async fn exit_waits_for_a_stuck_drop_at_most_ten_seconds_and_says_so() {
    if !local() {
        return;
    }
    let mut server = OwnServer::new("local", 5);
    let base = server.env();
    let child = Running::spawn(PROBE, &env_with(&base, &[("PGFRESH_TEST_SLEEP", "2000")]));
    let mut child = child;
    let name = field(&child.probe_line(), "name");
    let admin = PgPool::connect(&server.admin_url()).await.unwrap();
    let mut blocker = admin.begin().await.unwrap();
    lock_database(&mut blocker, &name).await;

    let start = Instant::now();
    let (status, text) = child.finish(Duration::from_secs(60));
    let took = start.elapsed();
    println!(
        "the child exited {took:?} after its test began to end:
{text}"
    );
    assert!(status.success(), "{text}");
    assert!(
        text.contains(
            "pgfresh: exiting with 1 background job(s) unfinished after 10 s; \
             a later run sweeps what they leave"
        ),
        "{text}"
    );
    assert!(took < Duration::from_secs(20), "the exit took {took:?}");
    // The server ends the drop's session once it notices its client gone (pgfresh's
    // administrative sessions ask it to look every 100 ms); the lock goes only then, or the
    // waiting drop would take it and run on for nobody.
    let deadline = Instant::now() + Duration::from_secs(10);
    while drop_running(&admin, &name).await {
        assert!(
            Instant::now() < deadline,
            "the drop's session outlived its process by 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    blocker.rollback().await.unwrap();
    assert!(
        exists(&admin, &name).await,
        "the drop was cut short, yet the database is gone"
    );

    let (port, _) = server.state().unwrap();
    admin.close().await;
    assert!(server.wait_gone(port, Duration::from_secs(15)).is_some());
}

/// Every administrative connection of a process stuck (four drops waiting for databases
/// another session holds locked) makes its next request for a database fail after 5 s, saying
/// what it waited for and what to do, instead of hanging; once the locks go, the drops finish
/// and the process exits normally.
#[tokio::test]
async fn stuck_administrative_connections_fail_the_next_request_in_bounded_time() {
    if !local() {
        return;
    }
    let mut server = OwnServer::new("local", 5);
    let base = server.env();
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let spec = format!("4:{}", go.display());
    let mut child = Running::spawn(
        PROBE,
        // The process's own administrative connections, which a broker would spare it.
        &env_with(
            &base,
            &[
                ("PGFRESH_TEST_BUSY", &spec),
                ("PGFRESH_READY", "0"),
                ("PGFRESH_BROKER", "off"),
            ],
        ),
    );
    let names = field(&child.line("BUSY ", Duration::from_secs(60)), "names");
    let admin = PgPool::connect(&server.admin_url()).await.unwrap();
    let mut blocker = admin.begin().await.unwrap();
    for name in names.split(',') {
        lock_database(&mut blocker, name).await;
    }
    std::fs::write(&go, "").unwrap();
    let started = Instant::now();
    let line = child.line("BUSY", Duration::from_secs(30));
    let took = started.elapsed();
    blocker.rollback().await.unwrap();
    let (status, text) = child.finish(Duration::from_secs(60));
    assert!(status.success(), "{text}");
    assert!(line.starts_with("BUSYERR"), "{line}\n{text}");
    assert!(
        line.contains("waiting for a free administrative connection to create a test database"),
        "{line}"
    );
    assert!(line.contains("run fewer tests at once"), "{line}");
    assert!(
        took < Duration::from_secs(15),
        "the request took {took:?} to fail"
    );
    for name in names.split(',') {
        assert!(!exists(&admin, name).await, "{name} was not dropped");
    }

    let (port, _) = server.state().unwrap();
    admin.close().await;
    assert!(server.wait_gone(port, Duration::from_secs(15)).is_some());
}

/// A sweep never drops the database of a process that is alive, even one sitting idle in the
/// middle of its test, while it does drop the database of a process killed next to it (which
/// proves that the sweep ran).
#[tokio::test]
async fn sweep_never_drops_a_live_processs_database() {
    if !local() {
        return;
    }
    let mut server = OwnServer::new("local", 5);
    let base = server.env();
    let holding = env_with(&base, &[("PGFRESH_TEST_SLEEP", "60000")]);

    let mut live = Running::spawn(PROBE, &holding);
    let live_name = field(&live.probe_line(), "name");
    server.hold(Duration::from_secs(10));
    let mut dead = Running::spawn(PROBE, &holding);
    let dead_name = field(&dead.probe_line(), "name");
    let admin = PgPool::connect(&server.admin_url()).await.unwrap();
    let live_mark = marker(&admin, &live_name).await;
    dead.kill();
    // The server notices the death when the session holding its owner lock ends, which can
    // take as long as the statement that session was running (a background CREATE DATABASE,
    // cut short within 100 ms by client_connection_check_interval).
    let dead_owner =
        common::owner_in_name(&dead_name).expect("the killed process's database carries its owner");
    let mut lock_gone = false;
    for _ in 0..100 {
        if !owner_lock_held(&admin, dead_owner).await {
            lock_gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        lock_gone,
        "the killed process's owner lock outlived it by 5 s"
    );

    let sweeper = Running::spawn(PROBE, &env_with(&base, &[("PGFRESH_TEST_SLEEP", "3000")]));
    let dropped = common::dropped_within(&admin, &dead_name, Duration::from_secs(10)).await;
    let (status, text) = sweeper.finish(Duration::from_secs(60));
    assert!(
        dropped,
        "no sweep dropped the killed process's {dead_name}:\n{text}"
    );
    assert!(status.success(), "{text}");
    assert!(
        exists(&admin, &live_name).await,
        "a sweep dropped {live_name}, which a live process holds"
    );
    assert_eq!(marker(&admin, &live_name).await, live_mark);
    assert!(
        live.text().contains("PROBE ") && !live.text().contains("panicked"),
        "{}",
        live.text()
    );

    live.kill();
    let (port, _) = server.state().unwrap();
    admin.close().await;
    assert!(server.wait_gone(port, Duration::from_secs(15)).is_some());
}

/// The server killed (`kill -9` of the postmaster) while a test holds its database, in a process
/// without a broker (`PGFRESH_BROKER=off`: it holds the server itself): the test's next request
/// for a database fails within a bounded time with a message that names the server and says
/// what to check, instead of hanging; and the dead cluster's directory is still removed once
/// the process is gone. (With a broker, the next request gets a database from a fresh one:
/// tests/recovery.rs.)
#[test]
fn killed_server_fails_the_next_request_fast_and_clearly() {
    if !local() {
        return;
    }
    let mut server = OwnServer::new("local", 2);
    let base = server.env();
    let mut child = Running::spawn(
        PROBE,
        &env_with(
            &base,
            &[
                ("PGFRESH_TEST_SLEEP", "2000"),
                ("PGFRESH_TEST_AGAIN", "1"),
                ("PGFRESH_BROKER", "off"),
            ],
        ),
    );
    let port: u16 = field(&child.probe_line(), "port").parse().unwrap();
    common::kill(server.postmaster_pid());
    let start = Instant::now();

    let (status, text) = child.finish(Duration::from_secs(120));
    let took = start.elapsed();
    println!("the child failed {took:?} after the server was killed:\n{text}");
    assert!(!status.success(), "{text}");
    assert!(!text.contains("PROBE2"), "{text}");
    assert!(
        took < Duration::from_secs(30),
        "the child took {took:?} to give up"
    );
    assert!(
        text.contains("pgfresh could not provide a test database"),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "the message does not name the server:\n{text}"
    );
    assert!(
        text.contains("Connection refused") || text.contains("connection refused"),
        "the message does not say the server is gone:\n{text}"
    );
    assert!(
        !text.contains("pool timed out"),
        "a pool timeout says nothing about the cause:\n{text}"
    );

    let gone = server.wait_gone(port, Duration::from_secs(15));
    assert!(
        gone.is_some(),
        "the dead cluster was not cleaned up: {:?}",
        server.processes()
    );
}

/// Sixteen processes starting at the same moment against a cold server of `kind`: every one
/// succeeds, all use one server, and the template is built once.
async fn sixteen_processes_against_a_cold_server(kind: &'static str) {
    const PROCESSES: usize = 16;
    let mut server = OwnServer::new(kind, 3);
    let base = server.env();
    let env = env_with(&base, &[]);
    let start = Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            common::child(PROBE, &env)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    server.hold(Duration::from_secs(60));
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    println!("{PROCESSES} processes done in {:?}", start.elapsed());

    let mut ports = Vec::new();
    for out in &outputs {
        assert!(out.status.success(), "{}", output(out));
        assert_eq!(probe_field(out, "source"), kind);
        ports.push(probe_field(out, "port"));
    }
    ports.dedup();
    assert_eq!(ports.len(), 1, "more than one server: {ports:?}");
    let port: u16 = ports[0].parse().unwrap();

    let admin = PgPool::connect(&server.admin_url()).await.unwrap();
    // The broker drops the databases it handed out once their processes end: a moment later.
    let deadline = Instant::now() + Duration::from_secs(15);
    let databases = loop {
        let databases = common::pgfresh_databases(&admin).await;
        let dropping = databases
            .iter()
            .any(|(_, kind, _)| kind == "test" || kind == "trash");
        if !dropping || Instant::now() > deadline {
            break databases;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let kinds = |k: &str| databases.iter().filter(|(_, kind, _)| kind == k).count();
    assert_eq!(kinds("template"), 1, "{databases:?}");
    let templates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgfresh\\_t\\_%' AND datistemplate",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(templates, 1);
    for left in ["test", "building"] {
        assert_eq!(kinds(left), 0, "{left} databases left: {databases:?}");
    }
    // A process that exits between creating a ready clone and marking it leaves the clone
    // unmarked; the next process's sweep removes it (it has pgfresh's connection limit and
    // its dead creator in its name).
    if kinds("unmarked") > 0 {
        let next = common::rerun(PROBE, &env_with(&base, &[("PGFRESH_TEST_SLEEP", "1500")]));
        assert!(next.status.success(), "{}", output(&next));
        let after = common::pgfresh_databases(&admin).await;
        let unmarked = after
            .iter()
            .filter(|(_, kind, _)| kind == "unmarked")
            .count();
        assert_eq!(
            unmarked, 0,
            "the next sweep left unmarked databases: {after:?}"
        );
    }
    admin.close().await;

    let gone = server.wait_gone(port, Duration::from_secs(30));
    assert!(
        gone.is_some(),
        "the server is still there: {:?}",
        server.processes()
    );
}

#[tokio::test]
async fn sixteen_processes_start_one_local_cluster_and_one_template() {
    if local() {
        sixteen_processes_against_a_cold_server("local").await;
    }
}

#[tokio::test]
async fn sixteen_processes_start_one_container_and_one_template() {
    if common::available(common::docker_answers(), "a Docker daemon") {
        sixteen_processes_against_a_cold_server("docker").await;
    }
}

/// A template build killed half-way (the builder is `SIGKILL`ed while its second migration
/// runs) leaves a database marked `pgfresh:building`; the next process drops it, builds the
/// template again, and gets a complete database.
#[tokio::test]
async fn template_build_killed_half_way_is_rebuilt_by_the_next_process() {
    if !local() {
        return;
    }
    let migrations = tempfile::tempdir().unwrap();
    std::fs::write(
        migrations.path().join("1_first.sql"),
        "CREATE TABLE first (id int);",
    )
    .unwrap();
    std::fs::write(
        migrations.path().join("2_slow.sql"),
        "SELECT pg_sleep(4);\nCREATE TABLE second (id int);",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(migrations.path(), open).unwrap();
    }
    let dir = migrations.path().display().to_string();
    let mut server = OwnServer::new("local", 5);
    let base = server.env();
    let env = env_with(&base, &[("PGFRESH_TEST_MIGRATIONS", &dir)]);

    let mut builder = Running::spawn(PROBE, &env);
    server.hold(Duration::from_secs(30));
    let mut admin = None;
    let start = Instant::now();
    let template = loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the build never reached its second migration:\n{}",
            builder.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        if admin.is_none() && server.state().is_some() {
            admin = PgPool::connect(&server.admin_url()).await.ok();
        }
        let Some(admin) = &admin else { continue };
        let sleeping: Option<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_stat_activity \
             WHERE starts_with(datname::text, 'pgfresh_t_') AND query LIKE '%pg_sleep(4)%' \
             AND state = 'active'",
        )
        .fetch_optional(admin)
        .await
        .unwrap();
        if let Some(template) = sleeping {
            break template;
        }
    };
    let admin = admin.unwrap();
    builder.kill();
    assert!(!builder.text().contains("PROBE "), "{}", builder.text());

    let half_built: (i64, bool) =
        sqlx::query_as("SELECT oid::bigint, datistemplate FROM pg_database WHERE datname = $1")
            .bind(&template)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(!half_built.1, "a half-built template is marked complete");
    let mark = marker(&admin, &template).await.unwrap_or_default();
    assert!(mark.starts_with("pgfresh:building owner="), "{mark}");

    // The next process keeps its database, so that we can look into it.
    let mut keep = env.clone();
    keep.push(("PGFRESH_KEEP", "always"));
    let next = Running::spawn(PROBE, &keep);
    let (status, text) = next.finish(Duration::from_secs(60));
    assert!(status.success(), "{text}");
    let name = field(&text[text.find("PROBE ").unwrap()..], "name");

    let rebuilt: (i64, bool) =
        sqlx::query_as("SELECT oid::bigint, datistemplate FROM pg_database WHERE datname = $1")
            .bind(&template)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_ne!(
        rebuilt.0, half_built.0,
        "the half-built template was reused"
    );
    assert!(rebuilt.1, "the rebuilt template is not marked complete");
    let mark = marker(&admin, &template).await.unwrap_or_default();
    assert!(mark.starts_with("pgfresh:template "), "{mark}");

    // The next process's database is complete: both migrations ran and are recorded.
    let mut url = url::Url::parse(&server.admin_url()).unwrap();
    url.set_path(&name);
    let db = PgPool::connect(url.as_str()).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY 1")
            .fetch_all(&db)
            .await
            .unwrap();
    db.close().await;
    assert_eq!(tables, ["_sqlx_migrations", "first", "second"]);
    assert_eq!(applied, [1, 2]);

    let (port, _) = server.state().unwrap();
    admin.close().await;
    assert!(server.wait_gone(port, Duration::from_secs(15)).is_some());
}
