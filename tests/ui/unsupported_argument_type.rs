// rustc drops `#[test]` functions without type-checking them unless it builds a test harness,
// and trybuild builds binaries: `__test_type_check` is `#[pgfresh::test]`'s expansion without
// the `#[test]` mark, so that the argument's type is checked here as it is under `cargo test`.

#[pgfresh_macros::__test_type_check]
async fn wrong_type(n: i32) {
    let _ = n;
}

fn main() {}
