//! Nothing to build: the crate is its tests (`tests/hundred.rs`), a suite of a hundred tests
//! that `scripts/faults.sh` runs after each fault it injects, and during its chaos runs.
