//! Works from current-thread and multi-thread `#[tokio::test]`, from rstest fixtures, from
//! many tests at once, and across runtimes that come and go: the shared state lives on the
//! worker thread, not on any test's runtime.

mod common;

use std::time::Duration;

use pgfresh::sqlx;
use pgfresh::{TestDb, db};
use rstest::rstest;

async fn use_it(db: &TestDb) {
    sqlx::query("INSERT INTO datadump (url, service, method) VALUES ('u', 's', 'GET')")
        .execute(db.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn current_thread_runtime() {
    use_it(&pgfresh::test_db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_runtime() {
    use_it(&pgfresh::test_db().await).await;
}

#[rstest]
#[tokio::test]
async fn rstest_fixture(#[future] db: TestDb) {
    use_it(&db.await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_databases_at_once() {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        set.spawn(async {
            let db = pgfresh::test_db().await;
            use_it(&db).await;
            db.name().to_owned()
        });
    }
    let mut names = set.join_all().await;
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 16);
}

#[test]
fn runtimes_come_and_go() {
    for _ in 0..3 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { use_it(&pgfresh::test_db().await).await });
        drop(rt);
    }
}

#[test]
fn plain_threads_with_their_own_runtimes() {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { use_it(&pgfresh::test_db().await).await });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn drop_outside_any_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(pgfresh::test_db());
    let name = db.name().to_owned();
    let admin_url = common::server_url(&db);
    drop(rt);
    drop(db);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
        assert!(common::dropped_within(&admin, &name, Duration::from_secs(10)).await);
    });
}
