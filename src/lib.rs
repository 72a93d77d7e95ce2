//! # pgfresh
//!
//! Every test gets its own freshly created PostgreSQL database, already migrated to head, and
//! a [`sqlx::PgPool`] for it. The server comes from Docker, from an existing server named by
//! `DB_URL`, or from the PostgreSQL binaries installed on the machine.
//!
//! ```no_run
//! use pgfresh::{TestDb, db};
//! use rstest::rstest;
//!
//! #[rstest]
//! #[tokio::test]
//! async fn counts_rows(#[future] db: TestDb) {
//!     let db = db.await;
//!     let n: i64 = sqlx::query_scalar("SELECT count(*) FROM datadump")
//!         .fetch_one(db.pool())
//!         .await
//!         .unwrap();
//!     assert_eq!(n, 0);
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
pub mod cli;
mod config;
pub mod datadump;
mod error;
mod fixture;
mod harness;
mod migrations;
mod seed;
mod server;
mod testdb;
mod worker;

pub use config::{KeepPolicy, Source};
pub use error::{Error, Result};
pub use fixture::{db, test_db};
pub use harness::{DEFAULT_POOL_SIZE, Harness};
pub use seed::seed_files;
pub use sqlx;
pub use testdb::TestDb;

/// pgfresh's own migrations (`migrations/`): the reference `datadump` schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
