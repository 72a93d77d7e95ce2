// `#[pgfresh::test]` inside `macro_rules!`, with its arguments passed as fragments; the
// `__test_type_check` twin makes the compiler type-check the same expansion (rustc drops
// `#[test]` functions unchecked in a binary).

macro_rules! db_tests {
    ($($name:ident: $migrations:literal, $flavor:literal;)*) => {
        $(
            #[pgfresh::test(migrations = $migrations, flavor = $flavor)]
            async fn $name(pool: pgfresh::sqlx::PgPool) {
                pgfresh::sqlx::query("SELECT 1").execute(&pool).await.unwrap();
            }
        )*
        mod type_check {
            $(
                #[pgfresh_macros::__test_type_check(migrations = $migrations, flavor = $flavor)]
                async fn $name(pool: pgfresh::sqlx::PgPool) {
                    pgfresh::sqlx::query("SELECT 1").execute(&pool).await.unwrap();
                }
            )*
        }
    };
}

db_tests! {
    empty: false, "current_thread";
    empty_multi: false, "multi_thread";
}

fn main() {}
