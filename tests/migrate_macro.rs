//! `pgfresh::migrate!` embeds what `sqlx::migrate!` and sqlx's run-time reader see: the same
//! versions, descriptions, types, checksums, `no_tx` flags and SQL. No database needed.

use pgfresh::sqlx::migrate::{MigrationType, Migrator};

/// `./migrations`, sqlx's default.
static DEFAULT: Migrator = pgfresh::migrate!();
/// The same folder, named bare (which `sqlx::migrate!` refuses) and with `./`.
static BARE: Migrator = pgfresh::migrate!("migrations");
static DOTTED: Migrator = pgfresh::migrate!("./migrations");
/// Another folder: a simple migration and a `-- no-transaction` one.
static SET: Migrator = pgfresh::migrate!("tests/migrate_macro_set");

/// What a migration set is made of, comparable.
fn contents(migrator: &Migrator) -> Vec<(i64, String, MigrationType, Vec<u8>, bool, String)> {
    migrator
        .iter()
        .map(|m| {
            (
                m.version,
                m.description.to_string(),
                m.migration_type,
                m.checksum.to_vec(),
                m.no_tx,
                m.sql.as_str().to_owned(),
            )
        })
        .collect()
}

#[test]
fn default_folder_matches_sqlx_migrate() {
    let sqlx = contents(&pgfresh::MIGRATOR); // `sqlx::migrate!()` in pgfresh's own lib
    assert_eq!(sqlx.len(), 4, "two reversible migrations, up and down");
    assert_eq!(contents(&DEFAULT), sqlx);
    assert_eq!(contents(&BARE), sqlx);
    assert_eq!(contents(&DOTTED), sqlx);
    assert_eq!(DEFAULT.table_name, pgfresh::MIGRATOR.table_name);
    assert_eq!(DEFAULT.create_schemas, pgfresh::MIGRATOR.create_schemas);
    assert_eq!(DEFAULT.no_tx, pgfresh::MIGRATOR.no_tx);
    assert_eq!(DEFAULT.locking, pgfresh::MIGRATOR.locking);
    assert_eq!(DEFAULT.ignore_missing, pgfresh::MIGRATOR.ignore_missing);
}

#[test]
fn another_folder_matches_sqlx_at_run_time() {
    let embedded = contents(&SET);
    let summary: Vec<_> = embedded
        .iter()
        .map(|(version, description, kind, _, no_tx, _)| {
            (*version, description.as_str(), *kind, *no_tx)
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "create users", MigrationType::Simple, false),
            (2, "index users", MigrationType::Simple, true),
        ]
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let read = runtime
        .block_on(Migrator::new(std::path::Path::new(
            "tests/migrate_macro_set",
        )))
        .unwrap();
    assert_eq!(embedded, contents(&read));
}
