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
