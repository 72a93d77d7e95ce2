//! The server's errors, pointed into the SQL text they came from: message, detail, and the
//! line and column of the error.

use sqlx::error::DatabaseError;
use sqlx::migrate::Migration;
use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

/// 1-based line and column of the 1-based character position `pos` in `sql`.
pub(crate) fn line_col(sql: &str, pos: usize) -> (usize, usize) {
    let before: String = sql.chars().take(pos.saturating_sub(1)).collect();
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The 1-based character position in the query that the server's error points at, if any.
pub(crate) fn position(db: &dyn DatabaseError) -> Option<usize> {
    match db.try_downcast_ref::<PgDatabaseError>()?.position()? {
        PgErrorPosition::Original(pos) => Some(pos),
        _ => None,
    }
}

/// The server's message, followed by its detail (which says, e.g., which key was duplicated).
pub(crate) fn describe(db: &dyn DatabaseError) -> String {
    let detail = db
        .try_downcast_ref::<PgDatabaseError>()
        .and_then(PgDatabaseError::detail);
    match detail {
        Some(detail) => format!("{} ({detail})", db.message()),
        None => db.message().to_owned(),
    }
}

/// What went wrong running migration `m`: the server's message with the line and column in
/// the migration's SQL when the server gave a position, else the driver's error.
pub(crate) fn in_migration(m: &Migration, source: &sqlx::Error) -> String {
    match source.as_database_error() {
        Some(db) => match position(db) {
            Some(pos) => {
                let (line, column) = line_col(m.sql.as_str(), pos);
                format!("{} (at line {line}, column {column})", describe(db))
            }
            None => describe(db),
        },
        None => source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn positions_become_lines_and_columns() {
        let sql = "CREATE TABLE a();\nCREATE TABLE b(\n  x intt\n);";
        let pos = sql.find("intt").unwrap() + 1;
        assert_eq!(line_col(sql, pos), (3, 5));
        assert_eq!(line_col(sql, 1), (1, 1));
    }
}
