//! The schema-drift check: the schema at head against a committed snapshot file.

use std::path::Path;

use super::schema::Schema;
use super::{Failure, Passed, Subject, diff};

/// The snapshot text of the schema at head (a clone of the head template).
async fn at_head(subject: &Subject) -> Result<String, Failure> {
    let db = subject.harness().test_db().await?;
    let schema = Schema::read(db.pool(), &subject.bookkeeping()).await;
    db.close().await?;
    Ok(schema?.snapshot())
}

/// The snapshot as committed; line endings normalised, so a checkout with CRLF still matches.
fn committed(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|text| text.replace("\r\n", "\n"))
}

pub(crate) async fn compare(subject: &Subject, path: &Path) -> Result<Passed, Failure> {
    let expected = committed(path).map_err(|e| Failure::SnapshotFile {
        snapshot: path.to_owned(),
        reason: format!(
            "cannot read it ({e}). Write it with `pgfresh check --update` (or \
             pgfresh::check::update_snapshot) and commit it"
        ),
    })?;
    let actual = at_head(subject).await?;
    if actual == expected {
        return Ok(Passed::new(format!(
            "{} matches the schema at head ({})",
            path.display(),
            subject.head()
        )));
    }
    Err(Failure::Drift {
        snapshot: path.to_owned(),
        head: subject.head(),
        diff: diff::lines(&expected, &actual),
    })
}

pub(crate) async fn update(subject: &Subject, path: &Path) -> Result<Passed, Failure> {
    let actual = at_head(subject).await?;
    if committed(path).is_ok_and(|text| text == actual) {
        return Ok(Passed::new(format!(
            "{} is up to date with the schema at head ({})",
            path.display(),
            subject.head()
        )));
    }
    std::fs::write(path, &actual).map_err(|e| Failure::SnapshotFile {
        snapshot: path.to_owned(),
        reason: format!("cannot write it ({e}). Check the path and its permissions"),
    })?;
    Ok(Passed::new(format!(
        "wrote {}: the schema at head ({})",
        path.display(),
        subject.head()
    )))
}
