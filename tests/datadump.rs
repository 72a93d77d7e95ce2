//! The `datadump` data access on real PostgreSQL: a call is stored once, unparsed rows come
//! oldest first up to the limit, marking rows parsed takes them out of the batch, every
//! function works inside a transaction, and failures say what was being done.

use chrono::{NaiveDate, NaiveDateTime};
use pgfresh::datadump::{self, ApiResponse, InsertOutcome, NewApiResponse};
use pgfresh::sqlx::{self, Connection};
use pgfresh::{Harness, MIGRATOR};
use serde_json::json;

const LEGACY: i64 = 20230915120000;

fn at(day: u32, hour: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2024, 5, day)
        .and_then(|d| d.and_hms_opt(hour, 0, 0))
        .unwrap()
}

fn call(url: &str) -> NewApiResponse {
    NewApiResponse::new(url, "catalog", "GET")
}

fn stored(outcome: InsertOutcome) -> i32 {
    match outcome {
        InsertOutcome::Stored(id) => id,
        InsertOutcome::Duplicate => panic!("expected a new row, got a duplicate"),
    }
}

#[tokio::test]
async fn a_repeated_call_is_stored_once_and_the_first_response_kept() {
    let db = pgfresh::test_db().await;
    let first = NewApiResponse {
        request_header: Some(json!({"Accept": "application/json"})),
        response_body: Some(r#"{"items": [1, 2]}"#.into()),
        response_header: Some(json!({"Content-Type": "application/json", "X-Empty": null})),
        created_at: Some(at(1, 9)),
        ..call("https://api.example.com/v1/items")
    };
    let id = stored(datadump::insert(db.pool(), &first).await.unwrap());

    let again = NewApiResponse {
        response_body: Some("a different body".into()),
        ..first.clone()
    };
    let outcome = datadump::insert(db.pool(), &again).await.unwrap();
    assert_eq!(outcome, InsertOutcome::Duplicate);

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM datadump")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 1);
    let row = datadump::get(db.pool(), id).await.unwrap().unwrap();
    assert_eq!(
        row,
        ApiResponse {
            id,
            url: first.url,
            service: first.service,
            method: first.method,
            request_header: first.request_header,
            response_body: first.response_body,
            response_header: first.response_header,
            parsed: Some(false),
            created_at: at(1, 9),
        }
    );
}

#[tokio::test]
async fn another_method_or_service_on_the_same_url_is_another_call() {
    let db = pgfresh::test_db().await;
    let url = "https://api.example.com/v1/orders";
    let get = call(url);
    let post = NewApiResponse::new(url, "catalog", "POST");
    let other_service = NewApiResponse::new(url, "billing", "GET");
    for row in [&get, &post, &other_service] {
        stored(datadump::insert(db.pool(), row).await.unwrap());
    }
    assert_eq!(
        datadump::insert(db.pool(), &post).await.unwrap(),
        InsertOutcome::Duplicate
    );
}

#[tokio::test]
async fn a_row_without_created_at_gets_the_server_time() {
    let db = pgfresh::test_db().await;
    let id = stored(
        datadump::insert(db.pool(), &call("https://a"))
            .await
            .unwrap(),
    );
    let row = datadump::get(db.pool(), id).await.unwrap().unwrap();
    let server_now: NaiveDateTime = sqlx::query_scalar("SELECT LOCALTIMESTAMP")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let age = server_now - row.created_at;
    assert!(
        age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::minutes(1),
        "{age}"
    );
    assert_eq!(datadump::get(db.pool(), id + 1).await.unwrap(), None);
}

#[tokio::test]
async fn unparsed_rows_come_oldest_first_up_to_the_limit() {
    let db = pgfresh::test_db().await;
    // Stored out of order; two share an instant, so the id breaks the tie.
    let rows = [
        ("https://c", at(3, 0)),
        ("https://a", at(1, 0)),
        ("https://b2", at(2, 0)),
        ("https://b1", at(2, 0)),
        ("https://d", at(4, 0)),
    ];
    let mut ids = Vec::new();
    for (url, created_at) in rows {
        let row = NewApiResponse {
            created_at: Some(created_at),
            ..call(url)
        };
        ids.push(stored(datadump::insert(db.pool(), &row).await.unwrap()));
    }
    let batch = datadump::unparsed(db.pool(), 3).await.unwrap();
    let urls: Vec<&str> = batch.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(urls, ["https://a", "https://b2", "https://b1"]);
    assert!(ids[2] < ids[3], "b2 was stored before b1");

    let all = datadump::unparsed(db.pool(), 100).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(datadump::unparsed(db.pool(), 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn marked_rows_leave_the_unparsed_batch_and_null_counts_as_unparsed() {
    let db = pgfresh::test_db().await;
    let a = stored(
        datadump::insert(db.pool(), &call("https://a"))
            .await
            .unwrap(),
    );
    let b = stored(
        datadump::insert(db.pool(), &call("https://b"))
            .await
            .unwrap(),
    );
    // A row written the way old code did: parsed explicitly NULL.
    let legacy: i32 = sqlx::query_scalar(
        "INSERT INTO datadump (url, service, method, parsed) \
         VALUES ('https://legacy', 'catalog', 'GET', NULL) RETURNING id",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();

    let ids = |rows: Vec<ApiResponse>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let mut unparsed = ids(datadump::unparsed(db.pool(), 10).await.unwrap());
    unparsed.sort_unstable();
    assert_eq!(unparsed, [a, b, legacy]);

    assert_eq!(
        datadump::mark_parsed(db.pool(), &[a, legacy, 9999])
            .await
            .unwrap(),
        2
    );
    assert_eq!(datadump::mark_parsed(db.pool(), &[]).await.unwrap(), 0);
    assert_eq!(ids(datadump::unparsed(db.pool(), 10).await.unwrap()), [b]);
    let row = datadump::get(db.pool(), legacy).await.unwrap().unwrap();
    assert_eq!(row.parsed, Some(true));
}

#[tokio::test]
async fn incremental_processing_sees_every_row_exactly_once() {
    let db = pgfresh::test_db().await;
    for i in 0..25 {
        let row = NewApiResponse {
            created_at: Some(at(1, 0) + chrono::TimeDelta::minutes(i)),
            ..call(&format!("https://api.example.com/v1/items/{i}"))
        };
        stored(datadump::insert(db.pool(), &row).await.unwrap());
    }
    let mut seen = Vec::new();
    let mut batches = 0;
    loop {
        let batch = datadump::unparsed(db.pool(), 10).await.unwrap();
        if batch.is_empty() {
            break;
        }
        batches += 1;
        let ids: Vec<i32> = batch.iter().map(|r| r.id).collect();
        let marked = datadump::mark_parsed(db.pool(), &ids).await.unwrap();
        assert_eq!(marked, ids.len() as u64);
        seen.extend(batch.into_iter().map(|r| r.created_at));
    }
    assert_eq!(batches, 3);
    assert_eq!(seen.len(), 25);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "oldest first, each once"
    );
}

#[tokio::test]
async fn every_function_works_inside_a_transaction() {
    let db = pgfresh::test_db().await;
    let mut conn = db.pool().acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let id = stored(
        datadump::insert(&mut *tx, &call("https://tx"))
            .await
            .unwrap(),
    );
    assert_eq!(datadump::mark_parsed(&mut *tx, &[id]).await.unwrap(), 1);
    assert!(datadump::unparsed(&mut *tx, 10).await.unwrap().is_empty());
    assert!(datadump::get(&mut *tx, id).await.unwrap().is_some());
    tx.rollback().await.unwrap();
    assert_eq!(datadump::get(db.pool(), id).await.unwrap(), None);
}

#[tokio::test]
async fn failures_say_what_was_being_done() {
    // The header columns are still hstore at the legacy revision: the JSON headers of the
    // current model do not fit, and the message says so.
    let legacy = Harness::new(&MIGRATOR).test_db_at(LEGACY).await.unwrap();
    let row = NewApiResponse {
        request_header: Some(json!({"Accept": "*/*"})),
        ..call("https://a")
    };
    let e = datadump::insert(legacy.pool(), &row)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("storing an API response in datadump failed"),
        "{e}"
    );
    assert!(
        e.contains("is of type hstore but expression is of type jsonb"),
        "{e}"
    );

    legacy.migrate_to(0).await.unwrap();
    let e = datadump::get(legacy.pool(), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("reading datadump row 1 failed"), "{e}");
    assert!(e.contains(r#"relation "datadump" does not exist"#), "{e}");
    let e = datadump::unparsed(legacy.pool(), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("reading unparsed rows of datadump failed"),
        "{e}"
    );
    let e = datadump::mark_parsed(legacy.pool(), &[1])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("marking datadump rows parsed failed"), "{e}");
}
