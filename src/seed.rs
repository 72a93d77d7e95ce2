//! Seeding a test database from SQL files, the way sqlx's test fixtures do: the files are
//! applied in the order given, each in its own transaction, and a failure names the file and
//! the line.
//!
//! Each file is sent to the server as one simple-protocol query, exactly as `psql -f` would run
//! it, so every statement PostgreSQL accepts works. To name the line of a failure the server
//! gives no position for (a unique violation, say), pgfresh counts the statements that
//! succeeded and finds where the failing one starts; the split into statements understands
//! quotes, dollar quotes, comments and `BEGIN ATOMIC` bodies.

use std::future::poll_fn;
use std::path::Path;

use sqlx::PgPool;

use crate::error::{Error, Result};
use crate::sqlerror::{describe, line_col, position};

/// Applies SQL files to the database of `pool`, in the order given, each in its own
/// transaction. Relative paths start at the working directory (the crate root under
/// `cargo test`).
///
/// ```no_run
/// # async fn demo() -> pgfresh::Result<()> {
/// let db = pgfresh::test_db().await;
/// pgfresh::seed_files(db.pool(), ["tests/fixtures/datadump_rows.sql"]).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::SeedRead`] when a file cannot be read (nothing of it is applied), and
/// [`Error::Seed`] when a statement fails: it names the file, the line and column, and the
/// server's message. The failing file is rolled back as a whole; the files before it stay
/// applied and the files after it are not read.
pub async fn seed_files<P: AsRef<Path>>(
    pool: &PgPool,
    files: impl IntoIterator<Item = P>,
) -> Result<()> {
    for file in files {
        let path = file.as_ref();
        let shown = path.display().to_string();
        let sql = std::fs::read_to_string(path).map_err(|e| Error::SeedRead {
            file: shown.clone(),
            reason: e.to_string(),
        })?;
        apply(pool, &shown, &sql).await?;
    }
    Ok(())
}

/// Applies the SQL `sql` of the file `file` (as the user named it) in one transaction.
pub(crate) async fn apply(pool: &PgPool, file: &str, sql: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(|e| {
        Error::database(format!("starting the transaction for seed file {file}"), e)
    })?;
    let mut done = 0;
    let failure = {
        let mut results = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute_many(&mut *tx);
        loop {
            match poll_fn(|cx| results.as_mut().poll_next(cx)).await {
                None => break None,
                Some(Ok(_)) => done += 1,
                Some(Err(e)) => break Some(e),
            }
        }
    };
    if let Some(e) = failure {
        // Dropping `tx` rolls the file back.
        return Err(seed_error(file, sql, done, e));
    }
    tx.commit()
        .await
        .map_err(|e| Error::database(format!("committing seed file {file}"), e))
}

/// The error for a failed seed file whose first `done` statements succeeded.
fn seed_error(file: &str, sql: &str, done: usize, e: sqlx::Error) -> Error {
    let Some(db) = e.as_database_error() else {
        return Error::database(format!("applying seed file {file}"), e);
    };
    let (line, column) = match position(db) {
        Some(pos) => line_col(sql, pos),
        None => statement_starts(sql).get(done).map_or((1, 1), |&byte| {
            line_col(sql, sql[..byte].chars().count() + 1)
        }),
    };
    Error::Seed {
        file: file.to_owned(),
        line,
        column,
        message: describe(db),
    }
}

/// Byte offsets of the first token of every statement in `sql`, skipping empty statements as
/// the server does.
fn statement_starts(sql: &str) -> Vec<usize> {
    let b = sql.as_bytes();
    let mut starts = Vec::new();
    let mut start = None;
    // Nesting of `BEGIN ATOMIC … END` function bodies (and `CASE … END` inside them), whose
    // semicolons do not end the statement.
    let mut depth = 0_usize;
    // The last word, and where it ended: `E'…'` strings and `BEGIN ATOMIC` need both.
    let mut prev_word = "";
    let mut prev_end = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b[i..].starts_with(b"--") {
            i = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            continue;
        }
        if b[i..].starts_with(b"/*") {
            i = skip_block_comment(b, i);
            continue;
        }
        if c == b';' && depth == 0 {
            starts.extend(start.take());
            prev_word = "";
            i += 1;
            continue;
        }
        start.get_or_insert(i);
        if is_word_byte(c) {
            let end = b[i..]
                .iter()
                .position(|&c| !is_word_byte(c) && c != b'$')
                .map_or(b.len(), |n| i + n);
            let word = &sql[i..end];
            if word.eq_ignore_ascii_case("atomic") && prev_word.eq_ignore_ascii_case("begin")
                || depth > 0 && word.eq_ignore_ascii_case("case")
            {
                depth += 1;
            } else if depth > 0 && word.eq_ignore_ascii_case("end") {
                depth -= 1;
            }
            (prev_word, prev_end, i) = (word, end, end);
            continue;
        }
        i = match c {
            b'\'' => skip_quoted(b, i, prev_end == i && prev_word.eq_ignore_ascii_case("e")),
            b'"' => skip_quoted(b, i, false),
            b'$' => skip_dollar_quoted(b, i),
            _ => i + 1,
        };
        prev_word = "";
    }
    starts.extend(start);
    starts
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The end of the `'…'` or `"…"` starting at `i`; a doubled quote stays inside, and so does a
/// backslash-escaped one in an `E'…'` string.
fn skip_quoted(b: &[u8], i: usize, backslashes: bool) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if backslashes => j += 2,
            c if c == quote && b.get(j + 1) == Some(&quote) => j += 2,
            c if c == quote => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// The end of the `$tag$…$tag$` starting at `i`, or `i + 1` when the `$` starts no dollar quote
/// (a parameter such as `$1`).
fn skip_dollar_quoted(b: &[u8], i: usize) -> usize {
    let tag_len = b[i + 1..].iter().position(|&c| !is_word_byte(c));
    let Some(tag_len) = tag_len.filter(|&n| b[i + 1 + n] == b'$') else {
        return i + 1;
    };
    if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return i + 1;
    }
    let delimiter = &b[i..i + tag_len + 2];
    let body = i + delimiter.len();
    b[body..]
        .windows(delimiter.len())
        .position(|w| w == delimiter)
        .map_or(b.len(), |n| body + n + delimiter.len())
}

/// The end of the (possibly nested) `/* … */` comment starting at `i`.
fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0_usize;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::statement_starts;

    /// The first few characters of every statement.
    fn heads(sql: &str) -> Vec<String> {
        statement_starts(sql)
            .into_iter()
            .map(|s| sql[s..].chars().take(8).collect())
            .collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let sql = "-- a comment; still a comment\n\
                   INSERT INTO t VALUES ('a;b', 'it''s;');\n\
                   /* block; /* nested; */ still; */ SELECT \"x;y\" FROM t;;\n\
                   SELECT E'\\';', $1;  \n\
                   SELECT $fn$ ; $x$ ; $fn$, $$;$$, a$b;\n";
        assert_eq!(
            heads(sql),
            ["INSERT I", "SELECT \"", "SELECT E", "SELECT $"]
        );
    }

    #[test]
    fn a_statement_without_semicolon_at_the_end_counts() {
        assert_eq!(heads("SELECT 1;\n  SELECT 2"), ["SELECT 1", "SELECT 2"]);
        assert!(heads(" ;\n-- only a comment\n; ").is_empty());
    }

    #[test]
    fn begin_atomic_bodies_are_one_statement() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC \
                   SELECT CASE WHEN true THEN 1 END; SELECT 2; END;\n\
                   BEGIN; SELECT 3; END;";
        assert_eq!(heads(sql), ["CREATE F", "BEGIN; S", "SELECT 3", "END;"]);
    }

    #[test]
    fn unterminated_quotes_run_to_the_end() {
        assert_eq!(heads("SELECT 'a; SELECT 2"), ["SELECT '"]);
        assert_eq!(heads("SELECT $q$ a; SELECT 2"), ["SELECT $"]);
    }
}
