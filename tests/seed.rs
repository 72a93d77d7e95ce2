//! Seeding from SQL files on real PostgreSQL: files apply in the order given, each in its own
//! transaction; a failure names the file, line and column (from the server's position, or from
//! the failing statement when the server gives none), rolls back only its own file, and stops.

use pgfresh::sqlx::{self, PgPool};
use pgfresh::{Error, seed_files};

const ROWS: &str = "tests/fixtures/datadump_rows.sql";
const PARSE: &str = "tests/fixtures/datadump_parse_catalog.sql";

async fn urls(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT url FROM datadump ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The failing file, line and column of a seed error, and its full message.
fn seed_failure(e: Error) -> (String, usize, usize, String) {
    let text = e.to_string();
    match e {
        Error::Seed {
            file, line, column, ..
        } => (file, line, column, text),
        other => panic!("expected a seed error, got: {other}"),
    }
}

#[tokio::test]
async fn files_apply_in_the_order_given() {
    let db = pgfresh::test_db().await;
    seed_files(db.pool(), [ROWS, PARSE]).await.unwrap();
    let rows: Vec<(String, Option<bool>, Option<String>)> =
        sqlx::query_as("SELECT service, parsed, response_body FROM datadump ORDER BY id")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let expected = [
        ("catalog", Some(true), Some(r#"{"items": [1, 2]}"#)),
        ("catalog", Some(true), Some(r#"{"items": []}"#)),
        ("billing", Some(false), Some("created; id=7")),
        ("parser", Some(false), Some("2")),
    ];
    let rows: Vec<_> = rows
        .iter()
        .map(|(s, p, b)| (s.as_str(), *p, b.as_deref()))
        .collect();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn the_other_order_gives_another_result() {
    let db = pgfresh::test_db().await;
    seed_files(db.pool(), [PARSE, ROWS]).await.unwrap();
    let body: String =
        sqlx::query_scalar("SELECT response_body FROM datadump WHERE service = 'parser'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(body, "0", "the parse file ran before there were rows");
}

#[tokio::test]
async fn a_syntax_error_names_file_line_and_column_and_stops_there() {
    let db = pgfresh::test_db().await;
    let e = seed_files(db.pool(), [ROWS, "tests/fixtures/broken_syntax.sql", PARSE])
        .await
        .unwrap_err();
    let (file, line, column, text) = seed_failure(e);
    assert_eq!(
        (file.as_str(), line, column),
        ("tests/fixtures/broken_syntax.sql", 5, 28)
    );
    assert!(
        text.starts_with(
            "seed file tests/fixtures/broken_syntax.sql failed at line 5, column 28: \
             syntax error at or near \"VALUS\""
        ),
        "{text}"
    );
    // The file before stays, the failing file is gone as a whole, the file after never ran.
    let urls = urls(db.pool()).await;
    assert_eq!(urls.len(), 3, "{urls:?}");
    assert!(!urls.iter().any(|u| u.contains("never-stored")), "{urls:?}");
}

#[tokio::test]
async fn an_error_in_a_later_statement_points_into_the_whole_file() {
    let db = pgfresh::test_db().await;
    let e = seed_files(db.pool(), ["tests/fixtures/unknown_column.sql"])
        .await
        .unwrap_err();
    let (_, line, column, text) = seed_failure(e);
    assert_eq!((line, column), (6, 8), "{text}");
    assert!(
        text.contains(r#"column "servce" of relation "datadump" does not exist"#),
        "{text}"
    );
    assert!(
        urls(db.pool()).await.is_empty(),
        "the first INSERT was rolled back"
    );
}

#[tokio::test]
async fn an_error_without_a_position_names_the_failing_statement() {
    let db = pgfresh::test_db().await;
    let e = seed_files(db.pool(), ["tests/fixtures/duplicate_call.sql"])
        .await
        .unwrap_err();
    let (_, line, column, text) = seed_failure(e);
    assert_eq!((line, column), (14, 1), "{text}");
    assert!(
        text.contains(
            "duplicate key value violates unique constraint \"uq_api_response\" \
             (Key (url, service, method)=(https://api.example.com/v1/items?page=1, catalog, GET) \
             already exists.)"
        ),
        "{text}"
    );
    assert!(urls(db.pool()).await.is_empty());
}

#[tokio::test]
async fn a_missing_file_is_named_and_nothing_after_it_runs() {
    let db = pgfresh::test_db().await;
    let e = seed_files(db.pool(), ["tests/fixtures/no_such_file.sql", ROWS])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SeedRead { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with("cannot read seed file tests/fixtures/no_such_file.sql: "),
        "{text}"
    );
    assert!(text.contains("working directory"), "{text}");
    assert!(urls(db.pool()).await.is_empty());
}
