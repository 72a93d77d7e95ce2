//! Many processes against one server (as under `cargo nextest run`): each gets its own
//! database, and the template of a new migration set is built exactly once.

mod common;

use std::process::Stdio;

use common::{PROBE, output, probe_field};
use pgfresh::sqlx;

/// How many processes start at once.
const PROCESSES: usize = 6;

#[tokio::test]
async fn processes_share_one_template_built_once() {
    let db = pgfresh::test_db().await;
    let admin = common::admin(&db).await;
    let url = common::server_url(&db);

    // A migration set no process has seen: its template does not exist yet. The stamp tells
    // which build a clone came from.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_stamp.sql"),
        format!(
            "-- run {}\nSELECT pg_sleep(0.3);\nCREATE TABLE stamp AS SELECT clock_timestamp()::text AS built_at;",
            uuid::Uuid::new_v4()
        ),
    )
    .unwrap();
    let migrations = dir.path().display().to_string();
    // One run, as under nextest: kept databases of one run are not swept by its other processes.
    let run = uuid::Uuid::new_v4().to_string();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            common::child(
                PROBE,
                &[
                    ("PGFRESH_SERVER", "url"),
                    ("DB_URL", &url),
                    ("PGFRESH_KEEP", "always"),
                    ("PGFRESH_TEST_MIGRATIONS", &migrations),
                    ("NEXTEST_RUN_ID", &run),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();

    let mut names = Vec::new();
    let mut stamps = Vec::new();
    for out in &outputs {
        assert!(out.status.success(), "{}", output(out));
        let name = probe_field(out, "name");
        let mut clone_url = url::Url::parse(&url).unwrap();
        clone_url.set_path(&name);
        let clone = sqlx::PgPool::connect(clone_url.as_str()).await.unwrap();
        let stamp = sqlx::query_scalar::<_, String>("SELECT built_at FROM stamp")
            .fetch_one(&clone)
            .await
            .unwrap();
        clone.close().await;
        stamps.push(stamp);
        common::drop_kept(&admin, &name).await;
        names.push(name);
    }
    stamps.dedup();
    assert_eq!(stamps.len(), 1, "clones of different builds: {stamps:?}");
    names.sort();
    names.dedup();
    assert_eq!(names.len(), PROCESSES);

    let hash8 = common::hash8(&names[0]);
    let templates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgfresh_t_' || $1 || '%' AND datistemplate",
    )
    .bind(hash8)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(templates, 1);
}
