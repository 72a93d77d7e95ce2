//! `PGFRESH_KEEP`: a failed test keeps its database by default and says how to connect
//! (password hidden when it came from the user); `never` drops it anyway; `always` keeps every
//! database. Each case runs in a child process against this process's server (url source).

mod common;

use common::{output, probe_field, rerun};

#[tokio::test]
async fn probe() {
    common::probe().await;
}

#[tokio::test]
async fn failed_test_keeps_its_database_by_default() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let out = rerun(
        "probe",
        &[
            ("PGFRESH_SERVER", "url"),
            ("DB_URL", &url),
            ("PGFRESH_TEST_PANIC", "1"),
        ],
    );
    let text = output(&out);
    assert!(!out.status.success(), "{text}");
    let name = probe_field(&out, "name");
    assert!(
        text.contains(&format!(
            "pgfresh: kept database {name} because the test failed"
        )),
        "{text}"
    );
    assert!(
        text.contains("psql 'postgres") && text.contains("://postgres:***@"),
        "{text}"
    );
    assert!(
        !text.contains(&common::password(&db)),
        "the password leaked:\n{text}"
    );
    assert!(common::database_exists(&admin, &name).await);
    common::drop_kept(&admin, &name).await;
}

#[tokio::test]
async fn keep_never_drops_a_failed_tests_database() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let out = rerun(
        "probe",
        &[
            ("PGFRESH_SERVER", "url"),
            ("DB_URL", &url),
            ("PGFRESH_KEEP", "never"),
            ("PGFRESH_TEST_PANIC", "1"),
        ],
    );
    assert!(!out.status.success(), "{}", output(&out));
    assert!(!output(&out).contains("kept database"));
    assert!(!common::database_exists(&admin, &probe_field(&out, "name")).await);
}

#[tokio::test]
async fn keep_always_keeps_a_passing_tests_database() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let out = rerun(
        "probe",
        &[
            ("PGFRESH_SERVER", "url"),
            ("DB_URL", &url),
            ("PGFRESH_KEEP", "always"),
        ],
    );
    let text = output(&out);
    assert!(out.status.success(), "{text}");
    let name = probe_field(&out, "name");
    assert!(
        text.contains(&format!("kept database {name} because PGFRESH_KEEP=always")),
        "{text}"
    );
    assert!(common::database_exists(&admin, &name).await);
    common::drop_kept(&admin, &name).await;
}

#[tokio::test]
async fn passing_test_drops_its_database_by_default() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    let out = rerun("probe", &[("PGFRESH_SERVER", "url"), ("DB_URL", &url)]);
    assert!(out.status.success(), "{}", output(&out));
    assert!(!common::database_exists(&admin, &probe_field(&out, "name")).await);
}

/// On a server of its own (other tests' runs would sweep, or be swept): a kept database
/// survives the other processes of its run and goes with the next run, which says so.
#[test]
fn kept_database_lives_until_the_next_run() {
    if !common::available(common::local_binaries(), "PostgreSQL binaries") {
        return;
    }
    let mut server = common::OwnServer::new("local", 2);
    let env = server.env();
    let run = |run_id: &str, extra: &[(&str, &str)]| {
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.push(("NEXTEST_RUN_ID", run_id));
        // Long enough for the process's background sweep to finish.
        env.push(("PGFRESH_TEST_SLEEP", "1500"));
        env.extend_from_slice(extra);
        rerun("probe", &env)
    };
    let failed = run("run-a", &[("PGFRESH_TEST_PANIC", "1")]);
    assert!(!failed.status.success(), "{}", output(&failed));
    let kept = probe_field(&failed, "name");
    server.hold(std::time::Duration::from_secs(10));
    let admin_url = server.admin_url();
    let exists = |name: &str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let admin = pgfresh::sqlx::PgPool::connect(&admin_url).await.unwrap();
            common::database_exists(&admin, name).await
        })
    };

    let same_run = run("run-a", &[]);
    assert!(same_run.status.success(), "{}", output(&same_run));
    assert!(
        exists(&kept),
        "a later process of the same run dropped {kept}"
    );

    let next_run = run("run-b", &[]);
    assert!(next_run.status.success(), "{}", output(&next_run));
    assert!(
        output(&next_run).contains(&format!(
            "pgfresh: dropped {kept}, kept by an earlier run of this test suite"
        )),
        "{}",
        output(&next_run)
    );
    assert!(!exists(&kept));
}
