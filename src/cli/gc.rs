//! `pgfresh gc [--dry-run]`: removes everything pgfresh created (see [`leftovers`]).

use super::leftovers;
use crate::error::{Error, Result};

/// Lists what pgfresh created on the server `url` names (when given) and on this machine, and
/// removes it unless `dry_run`.
pub(super) async fn run(url: Option<&str>, dry_run: bool) -> Result<()> {
    let url = url.filter(|u| !u.trim().is_empty());
    if url.is_none() {
        println!(
            "no --database-url or DB_URL: looking only for what pgfresh left on this machine (clusters, containers, broker directories)"
        );
    }
    let found = leftovers::find(url).await?;
    if found.is_empty() {
        println!("nothing that pgfresh created was found");
        return Ok(());
    }
    let verb = if dry_run { "would remove" } else { "removing" };
    for leftover in &found {
        println!("{verb} {leftover}");
    }
    if dry_run {
        println!(
            "{} item(s); run without --dry-run to remove them",
            found.len()
        );
        return Ok(());
    }
    let failed = leftovers::remove(url, &found).await?;
    for (leftover, why) in &failed {
        eprintln!("could not remove {leftover}: {why}");
    }
    println!(
        "removed {} of {} item(s)",
        found.len() - failed.len(),
        found.len()
    );
    match failed.first() {
        None => Ok(()),
        Some((leftover, _)) => Err(Error::Refused {
            reason: format!(
                "{} item(s) could not be removed, the first being the {leftover}",
                failed.len()
            ),
            remedy: "See the messages above; run `pgfresh gc` again once the cause is fixed".into(),
        }),
    }
}
