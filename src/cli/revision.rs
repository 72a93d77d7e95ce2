//! `pgfresh revision -m "…"`: a new reversible migration pair.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// Longest slug in a file name; longer messages are cut at a word boundary where one is near.
const SLUG_MAX: usize = 60;

/// Writes `<version>_<slug>.up.sql` and `.down.sql` into `dir` (created if missing) and prints
/// their paths. The version is `now` as `yyyymmddHHMMSS` in UTC, or one more than the newest
/// version in `dir` when that is not older (two revisions within a second, or a clock behind
/// the newest migration), so the new migration always sorts last.
pub(super) fn create(dir: &Path, message: &str, now: DateTime<Utc>) -> Result<()> {
    let slug = slug(message);
    if slug.is_empty() {
        return Err(Error::Refused {
            reason: format!(
                "the revision message {message:?} has no letters or digits to name the files with"
            ),
            remedy: "Describe the change, e.g. pgfresh revision -m \"add index on created_at\""
                .into(),
        });
    }
    let write_error = |path: &Path, e: std::io::Error| Error::Refused {
        reason: format!("cannot write {}: {e}", path.display()),
        remedy: "Check that --source names a folder you may write to".into(),
    };
    fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let version = next_version(dir, now).map_err(|e| write_error(dir, e))?;
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let files = [
        (
            "up",
            format!(
                "-- {one_line}\n--\n-- Applied by `pgfresh upgrade`, in a transaction. The .down.sql next to this \
                 file undoes it.\n\n"
            ),
        ),
        (
            "down",
            format!(
                "-- Revert: {one_line}\n--\n-- Applied by `pgfresh downgrade`, in a transaction. Undo exactly what \
                 the .up.sql does.\n\n"
            ),
        ),
    ];
    let mut written: Vec<PathBuf> = Vec::new();
    for (kind, text) in files {
        let path = dir.join(format!("{version}_{slug}.{kind}.sql"));
        let result = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = result {
            // Never leave half a pair behind.
            for done in &written {
                let _ = fs::remove_file(done);
            }
            return Err(write_error(&path, e));
        }
        written.push(path);
    }
    for path in written {
        println!("created {}", path.display());
    }
    Ok(())
}

/// The message in lowercase ASCII letters and digits, every other run of characters one `_`.
fn slug(message: &str) -> String {
    let mut slug = String::new();
    for c in message.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    if slug.len() > SLUG_MAX {
        let cut = slug[..SLUG_MAX]
            .rfind('_')
            .filter(|&i| i > SLUG_MAX / 2)
            .unwrap_or(SLUG_MAX);
        slug.truncate(cut);
    }
    slug.trim_end_matches('_').to_owned()
}

fn next_version(dir: &Path, now: DateTime<Utc>) -> std::io::Result<i64> {
    let stamp: i64 = now
        .format("%Y%m%d%H%M%S")
        .to_string()
        .parse()
        .unwrap_or_default();
    let mut newest = 0;
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let version = name
            .to_str()
            .and_then(|n| n.split_once('_'))
            .and_then(|(v, _)| v.parse::<i64>().ok());
        newest = newest.max(version.unwrap_or(0));
    }
    Ok(stamp.max(newest + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn slugs() {
        assert_eq!(slug("Add index on created_at"), "add_index_on_created_at");
        assert_eq!(
            slug("  headers: hstore -> JSONB!  "),
            "headers_hstore_jsonb"
        );
        assert_eq!(slug("Ünïcode café"), "n_code_caf");
        assert_eq!(slug("→ …"), "");
        let long = slug(&"word ".repeat(30));
        assert!(long.len() <= SLUG_MAX && long.ends_with("word"), "{long}");
    }

    #[test]
    fn versions_follow_the_clock_and_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc.with_ymd_and_hms(2024, 3, 9, 7, 5, 1).unwrap();
        assert_eq!(next_version(dir.path(), now).unwrap(), 20240309070501);
        fs::write(dir.path().join("20240309070501_a.up.sql"), "").unwrap();
        assert_eq!(next_version(dir.path(), now).unwrap(), 20240309070502);
        fs::write(dir.path().join("20990101000000_future.up.sql"), "").unwrap();
        assert_eq!(next_version(dir.path(), now).unwrap(), 20990101000001);
    }
}
