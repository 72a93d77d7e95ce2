#!/usr/bin/env bash
# Runs examples/sqlx08, a crate on sqlx 0.8 that tests with pgfresh (built on sqlx 0.9) through
# TestDb::url() and its own sqlx 0.8 pool, on the local server source. The example keeps no
# Cargo.lock: any left from an earlier run is deleted first, so every run resolves afresh and shows
# that today's sqlx 0.8 and pgfresh's sqlx 0.9 still build side by side.
#
# Usage:  scripts/sqlx08-example.sh [CARGO TEST ARGS...]
#
# Runs `PGFRESH_SERVER=local cargo test` in examples/sqlx08 (PostgreSQL binaries as the local source
# finds them; PGFRESH_PG_BIN to choose). The target directory is CARGO_TARGET_DIR when set, else
# target/sqlx08 under the repository root (the example's own dependency versions, kept apart from
# pgfresh's build). Extra arguments go to `cargo test`.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
crate=$repo/examples/sqlx08
[[ -f $crate/Cargo.toml ]] || { echo "sqlx08-example: no crate at $crate" >&2; exit 1; }

target=${CARGO_TARGET_DIR:-$repo/target/sqlx08}
[[ $target == /* ]] || target=$PWD/$target # relative to where the script was called from
export CARGO_TARGET_DIR=$target
rm -f -- "$crate/Cargo.lock"

cd -- "$crate"
PGFRESH_SERVER=local cargo test "$@"
