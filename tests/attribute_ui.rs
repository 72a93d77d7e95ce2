//! `#[pgfresh::test]`'s compile errors: each misuse says what to write instead
//! (`tests/ui/*.rs` and their `.stderr`; regenerate with `TRYBUILD=overwrite`, then read them).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/not_async.rs");
    cases.compile_fail("tests/ui/three_arguments.rs");
    cases.compile_fail("tests/ui/unsupported_argument_type.rs");
    cases.compile_fail("tests/ui/unknown_argument.rs");
    cases.compile_fail("tests/ui/migrations_true.rs");
    cases.compile_fail("tests/ui/migrations_and_migrator.rs");
    cases.compile_fail("tests/ui/missing_migrations_folder.rs");
    cases.compile_fail("tests/ui/missing_fixture.rs");
    cases.compile_fail("tests/ui/mixed_fixtures.rs");
    cases.compile_fail("tests/ui/worker_threads.rs");
    cases.compile_fail("tests/ui/fixtures_without_database.rs");
    cases.compile_fail("tests/ui/role.rs");
}
