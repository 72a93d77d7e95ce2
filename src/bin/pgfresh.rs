//! `pgfresh`: Alembic's migration commands (`upgrade`, `downgrade`, `current`, `history`,
//! `revision`) over a folder of reversible sqlx migrations. See `pgfresh --help`.

fn main() -> std::process::ExitCode {
    pgfresh::cli::main()
}
