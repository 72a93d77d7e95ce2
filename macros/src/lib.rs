//! The macros of [pgfresh](https://docs.rs/pgfresh): `#[pgfresh::test]` and
//! `pgfresh::migrate!`. Depend on `pgfresh`, which re-exports both, not on this crate: what
//! they expand to names `::pgfresh`.

use proc_macro::TokenStream;
use syn::LitStr;

mod migrate;
mod paths;
mod test_attr;

/// Embeds a folder of sqlx migrations into the program, as a `Migrator` value: the same as
/// `sqlx::migrate!` (sqlx's own expansion: the same files, checksums and `sqlx.toml`
/// handling), in a crate whose only database dependency is `pgfresh`.
///
/// ```ignore
/// static MIGRATOR: pgfresh::sqlx::migrate::Migrator = pgfresh::migrate!(); // ./migrations
/// static OTHER: pgfresh::sqlx::migrate::Migrator = pgfresh::migrate!("db/migrations");
///
/// # async fn demo() -> pgfresh::Result<()> {
/// let db = pgfresh::Harness::new(&MIGRATOR).test_db().await?;
/// # Ok(()) }
/// ```
///
/// - `migrate!()` reads sqlx's default folder: `migrations` in the crate root (or the
///   `migrations-dir` of a `sqlx.toml`, when sqlx's `sqlx-toml` feature is on).
/// - `migrate!("dir")` reads `dir` relative to the crate root (the folder of its
///   `Cargo.toml`); `"migrations"` and `"./migrations"` are the same. A folder that does not
///   exist is a compile error naming the path looked for.
///
/// # Rebuilding when a migration is added
///
/// Each migration file is embedded with `include_str!`, so editing one rebuilds the crate.
/// A *new* file is another matter: cargo only watches the files the compiler read, so adding
/// one to the folder (or removing or renaming one) rebuilds nothing, and the tests keep
/// running the old list. Give the crate a `build.rs` that tells cargo to watch the folder
/// (the path is relative to the crate root; name the folder `migrate!` reads):
///
/// ```ignore
/// // build.rs
/// fn main() {
///     println!("cargo:rerun-if-changed=migrations");
/// }
/// ```
///
/// Cargo then compares the modification times of the folder and everything in it on every
/// build: a file added, changed, removed or renamed re-runs the script, and that rebuilds
/// the crate, its tests included. (A `build.rs` that prints no `rerun-if-changed` at all is
/// re-run on a change to any file of the package, which covers the folder too, less
/// precisely.) The same holds for the migrations `#[pgfresh::test]` embeds.
#[proc_macro]
pub fn migrate(input: TokenStream) -> TokenStream {
    let dir = syn::parse_macro_input!(input as Option<LitStr>);
    migrate::expand(dir.as_ref())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Runs an `async fn` as a test with a fresh PostgreSQL database of its own, cloned from a
/// template that has the crate's migrations (and the fixtures) applied: a drop-in for
/// `#[sqlx::test]` on Postgres.
///
/// ```ignore
/// use pgfresh::sqlx::PgPool;
///
/// #[pgfresh::test]
/// async fn counts_rows(pool: PgPool) {
///     let n: i64 = pgfresh::sqlx::query_scalar("SELECT count(*) FROM datadump")
///         .fetch_one(&pool)
///         .await
///         .unwrap();
///     assert_eq!(n, 0);
/// }
///
/// #[pgfresh::test(migrations = false, fixtures("users"))]
/// async fn seeded(db: pgfresh::TestDb) -> Result<(), pgfresh::sqlx::Error> { Ok(()) }
/// ```
///
/// # The function
///
/// An `async fn` taking its database as
/// - `PgPool`: a pool connected to it;
/// - `PoolConnection<Postgres>`: one connection of that pool;
/// - `TestDb`: pgfresh's guard (pool, name, connect options, `keep()`);
/// - `(PgPoolOptions, PgConnectOptions)`, or the two as separate arguments: to build a pool
///   yourself;
/// - nothing: the test just runs on a tokio runtime, with no database (and no
///   `migrations`, `migrator` or `fixtures`).
///
/// It returns `()` or a `Result`. A test that panics or returns `Err` keeps its database
/// (by default; see `PGFRESH_KEEP`) and says how to connect to it; the others' databases are
/// dropped.
///
/// # Arguments
///
/// | argument | meaning |
/// |---|---|
/// | (none) | the crate's `migrations` folder, when it has one; else an empty database |
/// | `migrations = "dir"` | the migrations in `dir`, relative to the crate root (`"dir"` or `"./dir"`) |
/// | `migrations = false` | an empty database |
/// | `migrator = "path::TO::MIGRATOR"` | the migrations of a `Migrator` static you have |
/// | `fixtures("users", "posts")` | `fixtures/users.sql`, `fixtures/posts.sql` in the test file's folder (`.sql` is added when the name has no extension) |
/// | `fixtures("../fixtures/users.sql")` | files by their paths relative to the test file's folder |
/// | `fixtures(path = "dir", scripts("users", "posts"))` | `dir/users.sql`, `dir/posts.sql`, `dir` relative to the test file's folder |
/// | `flavor = "multi_thread"` | a multi-thread tokio runtime (default `"current_thread"`) |
/// | `worker_threads = N` | its number of worker threads (N >= 1, multi-thread only) |
/// | `role = "name"` | the test connects as this role, not a superuser, which owns its database (pgfresh's `Harness::with_role`) |
///
/// Several `fixtures(…)` apply in the order written; one of them takes either bare names or
/// paths, not both. The fixture files are found when the test is compiled (a missing one is
/// a compile error naming the path looked for) and embedded, so editing one rebuilds the
/// test; they are applied once, into the template the test's database is cloned from. The
/// migrations are embedded like `pgfresh::migrate!` does (see there about new files).
///
/// Misuse is a compile error that says what to write instead.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    test_attr::expand(args.into(), item.into(), test_attr::Mark::Test)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// `#[pgfresh::test]`'s expansion without the `#[test]` mark, so that the compiler
/// type-checks it in any build: rustc drops `#[test]` functions unchecked unless it builds a
/// test harness, and compile-fail tests (trybuild) build binaries. Not an API.
#[doc(hidden)]
#[proc_macro_attribute]
pub fn __test_type_check(args: TokenStream, item: TokenStream) -> TokenStream {
    test_attr::expand(args.into(), item.into(), test_attr::Mark::TypeCheckOnly)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
