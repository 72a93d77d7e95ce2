//! The reference schema's data migration, tested at a revision: `hstore` headers seeded at the
//! legacy revision come out of the conversion as `JSONB` with the same keys and values, and the
//! down migration brings back exactly the original `hstore` — with quotes, commas, `=>`,
//! backslashes, unicode, NULL values, empty keys and values, an empty hstore, and NULL columns.

use pgfresh::sqlx::{self, PgPool};
use pgfresh::{Harness, MIGRATOR, TestDb};
use serde_json::{Map, Value, json};

const LEGACY: i64 = 20230915120000;
const JSONB: i64 = 20231002090000;

static HARNESS: Harness = Harness::new(&MIGRATOR);

type Headers = Option<Vec<(&'static str, Option<&'static str>)>>;

/// Header maps that stress the hstore text format; `None` is a NULL column.
fn cases() -> Vec<(&'static str, Headers)> {
    vec![
        (
            "quotes",
            Some(vec![
                ("say", Some(r#"he said "hi""#)),
                ("it's", Some("o'clock")),
                (r#""quoted key""#, Some("'single'")),
            ]),
        ),
        (
            "commas and arrows",
            Some(vec![
                ("a,b", Some("c,d")),
                ("x=>y", Some("=>")),
                ("list", Some("a=>b, c=>d")),
            ]),
        ),
        (
            "backslashes",
            Some(vec![
                ("path", Some(r"C:\dir\file")),
                ("escaped quote", Some(r#"\""#)),
                (r"trailing\", Some(r"ends with \")),
            ]),
        ),
        (
            "unicode",
            Some(vec![
                ("ключ", Some("значение")),
                ("emoji", Some("🦀✓")),
                ("cjk", Some("日本語")),
                ("accent", Some("café")),
            ]),
        ),
        (
            "null values",
            Some(vec![
                ("present", Some("x")),
                ("missing", None),
                ("null text", Some("NULL")),
            ]),
        ),
        (
            "empty strings and spaces",
            Some(vec![
                ("", Some("empty key")),
                ("empty", Some("")),
                (" spaced key ", Some("  spaced value  ")),
                ("newline", Some("line 1\nline 2\ttab")),
            ]),
        ),
        ("empty hstore", Some(vec![])),
        ("null column", None),
    ]
}

fn arrays(headers: &Headers) -> (Option<Vec<&str>>, Option<Vec<Option<&str>>>) {
    match headers {
        None => (None, None),
        Some(pairs) => (
            Some(pairs.iter().map(|(k, _)| *k).collect()),
            Some(pairs.iter().map(|(_, v)| *v).collect()),
        ),
    }
}

fn as_json(headers: &Headers) -> Option<Value> {
    headers.as_ref().map(|pairs| {
        let map: Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map_or(Value::Null, Value::from)))
            .collect();
        Value::Object(map)
    })
}

/// The response headers of case `i` are the request headers of the next case, so both
/// columns see every case.
fn response_of<'a>(cases: &'a [(&'static str, Headers)], i: usize) -> &'a Headers {
    &cases[(i + 1) % cases.len()].1
}

async fn column_type(pool: &PgPool, column: &str) -> String {
    sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'datadump'::regclass AND attname = $1",
    )
    .bind(column)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn seed_legacy(db: &TestDb) {
    let cases = cases();
    for (i, (name, request)) in cases.iter().enumerate() {
        let (req_keys, req_values) = arrays(request);
        let (resp_keys, resp_values) = arrays(response_of(&cases, i));
        sqlx::query(
            "INSERT INTO datadump (url, service, method, request_header, response_header) \
             VALUES ($1, 'legacy', 'GET', hstore($2::text[], $3::text[]), \
                     hstore($4::text[], $5::text[]))",
        )
        .bind(format!("https://example.com/{name}"))
        .bind(req_keys)
        .bind(req_values)
        .bind(resp_keys)
        .bind(resp_values)
        .execute(db.pool())
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn hstore_headers_survive_the_conversion_to_jsonb_and_back() {
    let db = HARNESS.test_db_at(LEGACY).await.unwrap();
    assert_eq!(db.current_version().await.unwrap(), Some(LEGACY));
    assert_eq!(column_type(db.pool(), "request_header").await, "hstore");
    seed_legacy(&db).await;
    let cases = cases();

    db.migrate_to(JSONB).await.unwrap();
    assert_eq!(db.current_version().await.unwrap(), Some(JSONB));
    for column in ["request_header", "response_header"] {
        assert_eq!(column_type(db.pool(), column).await, "jsonb");
    }
    for (i, (name, request)) in cases.iter().enumerate() {
        let (req, resp): (Option<Value>, Option<Value>) =
            sqlx::query_as("SELECT request_header, response_header FROM datadump WHERE url = $1")
                .bind(format!("https://example.com/{name}"))
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(req, as_json(request), "request headers of {name}");
        assert_eq!(
            resp,
            as_json(response_of(&cases, i)),
            "response headers of {name}"
        );
    }

    db.migrate_to(LEGACY).await.unwrap();
    assert_eq!(db.current_version().await.unwrap(), Some(LEGACY));
    for column in ["request_header", "response_header"] {
        assert_eq!(column_type(db.pool(), column).await, "hstore");
    }
    for (i, (name, request)) in cases.iter().enumerate() {
        let (req_keys, req_values) = arrays(request);
        let (resp_keys, resp_values) = arrays(response_of(&cases, i));
        let same: (bool, bool) = sqlx::query_as(
            "SELECT request_header IS NOT DISTINCT FROM hstore($2::text[], $3::text[]), \
                    response_header IS NOT DISTINCT FROM hstore($4::text[], $5::text[]) \
             FROM datadump WHERE url = $1",
        )
        .bind(format!("https://example.com/{name}"))
        .bind(req_keys)
        .bind(req_values)
        .bind(resp_keys)
        .bind(resp_values)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(same, (true, true), "hstore of {name} after the round trip");
    }
}

#[tokio::test]
async fn a_psql_style_hstore_literal_round_trips_as_text() {
    let db = HARNESS.test_db_at(LEGACY).await.unwrap();
    // What a user would type into psql, escapes and all.
    sqlx::raw_sql(
        r#"INSERT INTO datadump (url, service, method, request_header, response_header)
           VALUES ('https://example.com/literal', 'legacy', 'GET',
                   '"a\"b"=>"c,d", "n"=>NULL, "back\\slash"=>"x=>y", "é"=>""',
                   '');"#,
    )
    .execute(db.pool())
    .await
    .unwrap();
    let text = |pool: &PgPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, String)>(
                "SELECT request_header::text, response_header::text FROM datadump",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let before = text(db.pool()).await;

    db.migrate_to(JSONB).await.unwrap();
    let (req, resp): (Value, Value) =
        sqlx::query_as("SELECT request_header, response_header FROM datadump")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        req,
        json!({"a\"b": "c,d", "n": null, "back\\slash": "x=>y", "é": ""})
    );
    assert_eq!(resp, json!({}));

    db.migrate_to(LEGACY).await.unwrap();
    assert_eq!(text(db.pool()).await, before);
}

#[tokio::test]
async fn down_to_base_and_up_to_head_again() {
    let db = HARNESS.test_db().await.unwrap();
    db.migrate_to(0).await.unwrap();
    assert_eq!(db.current_version().await.unwrap(), None);
    let (table, hstore): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('datadump') IS NOT NULL, \
                EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hstore')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        (table, hstore),
        (false, false),
        "base has neither table nor extension"
    );

    db.migrate_to(JSONB).await.unwrap();
    assert_eq!(db.current_version().await.unwrap(), Some(JSONB));
    assert_eq!(column_type(db.pool(), "request_header").await, "jsonb");
}

#[tokio::test]
async fn down_keeps_json_that_is_not_a_string_as_its_text() {
    // Head accepts any JSON object; hstore holds only text, so the down migration keeps a
    // number or a nested object as its JSON text, and JSON null as a NULL value.
    let db = HARNESS.test_db().await.unwrap();
    sqlx::query(
        "INSERT INTO datadump (url, service, method, request_header) \
         VALUES ('https://example.com/typed', 'modern', 'GET', $1)",
    )
    .bind(json!({"n": 1, "flag": true, "nested": {"a": [1, "b"]}, "none": null, "s": "x"}))
    .execute(db.pool())
    .await
    .unwrap();
    db.migrate_to(LEGACY).await.unwrap();
    let header: Value = sqlx::query_scalar("SELECT hstore_to_jsonb(request_header) FROM datadump")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        header,
        json!({"n": "1", "flag": "true", "nested": "{\"a\": [1, \"b\"]}", "none": null, "s": "x"})
    );
}
