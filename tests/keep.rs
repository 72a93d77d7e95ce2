//! `PGFRESH_KEEP`: a failed test keeps its database by default and says how to connect
//! (password hidden when it came from the user); `never` drops it anyway; `always` keeps every
//! database. Each case runs in a child process against this process's server (url source).

mod common;

use common::{PROBE, output, probe_field, rerun};

/// One case of the policy: the child's `PGFRESH_KEEP` (unset when `None`), whether its test
/// fails, and why it keeps its database (`None`: it drops it).
struct Case {
    keep: Option<&'static str>,
    fails: bool,
    kept_because: Option<&'static str>,
}

const CASES: [Case; 4] = [
    // A failed test keeps its database by default and says how to connect.
    Case {
        keep: None,
        fails: true,
        kept_because: Some("the test failed"),
    },
    // `never` drops a failed test's database anyway.
    Case {
        keep: Some("never"),
        fails: true,
        kept_because: None,
    },
    // `always` keeps a passing test's database.
    Case {
        keep: Some("always"),
        fails: false,
        kept_because: Some("PGFRESH_KEEP=always"),
    },
    // A passing test drops its database by default.
    Case {
        keep: None,
        fails: false,
        kept_because: None,
    },
];

#[tokio::test]
async fn the_policy_decides_whether_a_database_survives_its_test() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);
    for case in CASES {
        let mut env = vec![("PGFRESH_SERVER", "url"), ("DB_URL", url.as_str())];
        env.extend(case.keep.map(|keep| ("PGFRESH_KEEP", keep)));
        if case.fails {
            env.push(("PGFRESH_TEST_PANIC", "1"));
        }
        let out = rerun(PROBE, &env);
        let text = output(&out);
        let what = format!("PGFRESH_KEEP={:?}, failing: {}", case.keep, case.fails);
        assert_eq!(out.status.success(), !case.fails, "{what}:\n{text}");
        let name = probe_field(&out, "name");
        let Some(why) = case.kept_because else {
            assert!(!text.contains("kept database"), "{what}:\n{text}");
            assert!(
                common::dropped_within(&admin, &name, std::time::Duration::from_secs(10)).await,
                "{what}"
            );
            continue;
        };
        assert!(
            text.contains(&format!("pgfresh: kept database {name} because {why}")),
            "{what}:\n{text}"
        );
        assert!(
            text.contains("psql 'postgres") && text.contains("://postgres:***@"),
            "{what}:\n{text}"
        );
        assert!(
            !text.contains(&common::password(&db)),
            "{what}: the password leaked:\n{text}"
        );
        assert!(common::database_exists(&admin, &name).await, "{what}");
        common::drop_kept(&admin, &name).await;
    }
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
        rerun(PROBE, &env)
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
