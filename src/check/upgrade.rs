//! The upgrade check: an empty database migrates to head.

use super::{Failure, Passed, Step, Subject};

/// Migrates an empty database to head through the harness's template, so a template built
/// earlier from the same migrations (the hash covers every checksum) counts as that proof.
pub(crate) async fn run(subject: &Subject) -> Result<Passed, Failure> {
    let Some(set) = &subject.set else {
        // A migration tool's template: that it builds is the proof.
        let db = subject.harness().test_db().await?;
        db.close().await?;
        return Ok(Passed::new(
            "an empty database migrates to head: the template builds",
        ));
    };
    let Some(head) = set.ups().max_by_key(|m| m.version) else {
        return Ok(Passed::new("the set has no migrations: nothing to upgrade"));
    };
    let db = subject.harness().test_db().await?;
    let reached = db.current_version().await;
    db.close().await?;
    match reached? {
        Some(version) if version == head.version => Ok(Passed::new(format!(
            "an empty database migrates to head: {} migrations, up to {} ({})",
            set.ups().count(),
            head.version,
            head.description
        ))),
        other => Err(Failure::Migration {
            version: head.version,
            description: head.description.to_string(),
            step: Step::Up,
            message: format!(
                "the database ended at {} instead of the head",
                other.map_or_else(|| "base".to_owned(), |v| v.to_string())
            ),
        }),
    }
}
