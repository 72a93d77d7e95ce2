//! Helpers shared by the integration tests, one module per concern; every test file uses the
//! ones it needs, through the names re-exported here.
#![allow(dead_code, unused_imports)] // each test file uses the helpers it needs

mod catalog;
mod child;
mod maven;
mod own_server;
mod probe;
mod sources;

pub use catalog::*;
pub use child::*;
pub use maven::*;
pub use own_server::*;
pub use probe::*;
pub use sources::*;
