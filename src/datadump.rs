//! The `datadump` table (the application's ORM model `ApiResponse`): raw API responses, stored
//! once per call and processed incrementally.
//!
//! The workflow the table exists for: a collector [`insert`]s every response it receives; a
//! repeated call (the same `url`, `service` and `method`) hits the unique key `uq_api_response`
//! and is skipped, never stored twice. A parser then takes the oldest [`unparsed`] rows in
//! batches, processes them, and [`mark_parsed`]s them.
//!
//! Every function takes any executor: a `&PgPool`, a `&mut PgConnection`, or a transaction
//! (`&mut *tx`).
//!
//! ```no_run
//! use pgfresh::datadump::{self, InsertOutcome, NewApiResponse};
//!
//! # async fn demo() -> pgfresh::Result<()> {
//! let db = pgfresh::test_db().await;
//! let call = NewApiResponse::new("https://api.example.com/v1/items", "items", "GET");
//! assert!(matches!(datadump::insert(db.pool(), &call).await?, InsertOutcome::Stored(_)));
//! assert_eq!(datadump::insert(db.pool(), &call).await?, InsertOutcome::Duplicate);
//!
//! let batch = datadump::unparsed(db.pool(), 100).await?;
//! let ids: Vec<i32> = batch.iter().map(|row| row.id).collect();
//! datadump::mark_parsed(db.pool(), &ids).await?;
//! # Ok(())
//! # }
//! ```

use chrono::NaiveDateTime;
use serde_json::Value;
use sqlx::PgExecutor;

use crate::error::{Error, Result};

/// `SELECT` of every column of `datadump`, in the order of [`ApiResponse`]'s fields, followed by
/// the rest of the query.
macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT id, url, service, method, request_header, response_body, response_header, \
             parsed, created_at FROM datadump ",
            $rest
        )
    };
}

/// One stored API response: a row of `datadump`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApiResponse {
    /// The row's `SERIAL` key.
    pub id: i32,
    /// The URL that was called.
    pub url: String,
    /// The name of the service the call went to.
    pub service: String,
    /// The HTTP method, e.g. `GET`.
    pub method: String,
    /// The request's headers as a JSON object.
    pub request_header: Option<Value>,
    /// The response body as received.
    pub response_body: Option<String>,
    /// The response's headers as a JSON object.
    pub response_header: Option<Value>,
    /// Whether a parser has processed the row. The column defaults to `FALSE` but is nullable;
    /// `None` (a row written with an explicit `NULL`) counts as not parsed.
    pub parsed: Option<bool>,
    /// When the response was stored.
    pub created_at: NaiveDateTime,
}

/// A response to store with [`insert`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewApiResponse {
    /// The URL that was called.
    pub url: String,
    /// The name of the service the call went to.
    pub service: String,
    /// The HTTP method, e.g. `GET`.
    pub method: String,
    /// The request's headers as a JSON object.
    pub request_header: Option<Value>,
    /// The response body as received.
    pub response_body: Option<String>,
    /// The response's headers as a JSON object.
    pub response_header: Option<Value>,
    /// When the response was received; `None` lets the server use `CURRENT_TIMESTAMP`, the
    /// column's default. Set it when seeding history.
    pub created_at: Option<NaiveDateTime>,
}

impl NewApiResponse {
    /// A response with the three fields that identify a call and nothing else.
    pub fn new(
        url: impl Into<String>,
        service: impl Into<String>,
        method: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            service: service.into(),
            method: method.into(),
            request_header: None,
            response_body: None,
            response_header: None,
            created_at: None,
        }
    }
}

/// What [`insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum InsertOutcome {
    /// A new row was written; its `id`.
    Stored(i32),
    /// A row with the same `url`, `service` and `method` already exists; nothing was written
    /// and the existing row is unchanged.
    Duplicate,
}

/// Stores a response unless the same call (`url`, `service`, `method`) is already stored.
///
/// Uses `ON CONFLICT ON CONSTRAINT uq_api_response DO NOTHING`, so two collectors storing the
/// same call at the same time still write it once.
///
/// # Errors
///
/// [`Error::Database`] when the statement fails, e.g. when the database has no `datadump` table
/// at head (its header columns must be `JSONB`).
pub async fn insert(db: impl PgExecutor<'_>, row: &NewApiResponse) -> Result<InsertOutcome> {
    let id: Option<i32> = sqlx::query_scalar(
        "INSERT INTO datadump \
             (url, service, method, request_header, response_body, response_header, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, CURRENT_TIMESTAMP)) \
         ON CONFLICT ON CONSTRAINT uq_api_response DO NOTHING \
         RETURNING id",
    )
    .bind(&row.url)
    .bind(&row.service)
    .bind(&row.method)
    .bind(&row.request_header)
    .bind(&row.response_body)
    .bind(&row.response_header)
    .bind(row.created_at)
    .fetch_optional(db)
    .await
    .map_err(|e| Error::database("storing an API response in datadump", e))?;
    Ok(id.map_or(InsertOutcome::Duplicate, InsertOutcome::Stored))
}

/// Up to `limit` rows not yet parsed (`parsed` is `FALSE` or `NULL`), oldest first: by
/// `created_at`, then by `id` for rows stored at the same instant.
///
/// # Errors
///
/// [`Error::Database`] when the query fails.
pub async fn unparsed(db: impl PgExecutor<'_>, limit: u32) -> Result<Vec<ApiResponse>> {
    sqlx::query_as(select!(
        "WHERE parsed IS NOT TRUE ORDER BY created_at, id LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(db)
    .await
    .map_err(|e| Error::database("reading unparsed rows of datadump", e))
}

/// Marks the rows with these ids as parsed and returns how many rows were found; ids that do
/// not exist are ignored. An empty slice does nothing and sends no query.
///
/// # Errors
///
/// [`Error::Database`] when the update fails.
pub async fn mark_parsed(db: impl PgExecutor<'_>, ids: &[i32]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    sqlx::query("UPDATE datadump SET parsed = TRUE WHERE id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| Error::database("marking datadump rows parsed", e))
}

/// The row with this id, if there is one.
///
/// # Errors
///
/// [`Error::Database`] when the query fails.
pub async fn get(db: impl PgExecutor<'_>, id: i32) -> Result<Option<ApiResponse>> {
    sqlx::query_as(select!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
        .map_err(|e| Error::database(format!("reading datadump row {id}"), e))
}
