// The README is the crate's documentation. Its snippets are not doctests: inside pgfresh they
// would see pgfresh's own dependencies (sqlx, tokio, …); scripts/readme-crate.sh builds them in
// a new crate with only the dependencies the README tells a reader to add.
#![cfg_attr(not(doctest), doc = include_str!("../README.md"))]
#![cfg_attr(
    doctest,
    doc = "pgfresh (the README's snippets are built by scripts/readme-crate.sh)"
)]
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod address;
mod admin;
mod attribute;
mod broker;
pub mod check;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
mod config;
pub mod datadump;
mod dispense;
mod error;
mod fixture;
mod harness;
mod hook;
mod locks;
mod marker;
mod migrations;
mod names;
mod os;
mod pool;
mod prefetch;
mod recipe;
mod relcache;
mod role;
mod seed;
mod server;
mod sqlerror;
mod sweep;
mod template;
mod testdb;
mod tool;
mod worker;

pub use config::DEFAULT_SLOT_WAIT;
pub use config::ServerSource;
pub use error::{Error, Result};
pub use fixture::{db, test_db};
pub use harness::{DEFAULT_POOL_SIZE, Harness};
// `pgfresh::migrate!` and `#[pgfresh::test]` (their docs are the macros' own, in `macros/`).
pub use pgfresh_macros::{migrate, test};
pub use seed::seed_files;
pub use sqlx;
pub use testdb::TestDb;
pub use tool::{BoxError, DEFAULT_TIMEOUT};

/// pgfresh's own migrations (`migrations/`): the reference `datadump` schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// What `#[pgfresh::test]` and `pgfresh::migrate!` expand to; not an API.
#[doc(hidden)]
pub mod __private {
    pub use crate::attribute::{TestArgs, TestFn, TestTermination};
    pub use crate::recipe::EmbeddedSeedFile;
}
