//! The targets of `upgrade` and `downgrade`, and the plans that reach them.

use std::str::FromStr;

use sqlx::migrate::Migration;

use super::history::Ledger;
use crate::error::{Error, Result};

/// Where `pgfresh upgrade` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UpgradeTarget {
    /// Every pending migration.
    Head,
    /// The next N pending migrations.
    Next(usize),
    /// Every pending migration up to this version, inclusive.
    Version(i64),
}

/// Where `pgfresh downgrade` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DowngradeTarget {
    /// Every applied migration reverted.
    Base,
    /// The last N applied migrations reverted.
    Back(usize),
    /// Every applied migration newer than this version reverted; this one stays.
    Version(i64),
}

fn steps(digits: &str) -> Option<usize> {
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|&n| n > 0)
}

fn version(s: &str) -> Option<i64> {
    steps(s).and_then(|_| s.parse().ok())
}

impl FromStr for UpgradeTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("head") {
            return Ok(Self::Head);
        }
        if let Some(n) = s.strip_prefix('+') {
            return steps(n)
                .map(Self::Next)
                .ok_or_else(|| format!("`{s}` is not a step count; use +1, +2, …"));
        }
        if s.starts_with('-') || s.eq_ignore_ascii_case("base") {
            return Err(format!(
                "upgrade only moves forward; use `pgfresh downgrade {s}`"
            ));
        }
        version(s).map(Self::Version).ok_or_else(|| {
            "expected head, +N, or a migration version such as 20231002090000".into()
        })
    }
}

impl FromStr for DowngradeTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("base") {
            return Ok(Self::Base);
        }
        if let Some(n) = s.strip_prefix('-') {
            return steps(n)
                .map(Self::Back)
                .ok_or_else(|| format!("`{s}` is not a step count; use -1, -2, …"));
        }
        if s.starts_with('+') || s.eq_ignore_ascii_case("head") {
            return Err(format!(
                "downgrade only moves back; use `pgfresh upgrade {s}`"
            ));
        }
        version(s).map(Self::Version).ok_or_else(|| {
            "expected base, -N, or a migration version such as 20230915120000".into()
        })
    }
}

fn label(version: Option<i64>) -> String {
    version.map_or_else(|| "base".to_owned(), |v| v.to_string())
}

/// "1 migration is" / "2 migrations are".
fn migrations_are(n: usize) -> String {
    if n == 1 {
        "1 migration is".to_owned()
    } else {
        format!("{n} migrations are")
    }
}

/// The migrations `upgrade` applies, oldest first; empty when there is nothing to do.
pub(super) fn upgrade_plan<'s>(
    state: &Ledger<'s>,
    target: UpgradeTarget,
) -> Result<Vec<&'s Migration>> {
    let pending = state.pending();
    match target {
        UpgradeTarget::Head => Ok(pending),
        UpgradeTarget::Next(n) if n <= pending.len() => Ok(pending[..n].to_vec()),
        UpgradeTarget::Next(n) => {
            let versions: Vec<String> = pending.iter().map(|m| m.version.to_string()).collect();
            Err(Error::Refused {
                reason: if pending.is_empty() {
                    format!("cannot upgrade +{n}: no migration is pending, the database is at head")
                } else {
                    format!(
                        "cannot upgrade +{n}: only {} pending ({})",
                        migrations_are(pending.len()),
                        versions.join(", ")
                    )
                },
                remedy: "Run `pgfresh upgrade head` to apply everything pending, or \
                         `pgfresh history` to see what is"
                    .into(),
            })
        }
        UpgradeTarget::Version(v) => {
            state.check_known(v)?;
            let plan: Vec<_> = pending.into_iter().filter(|m| m.version <= v).collect();
            match state.current() {
                Some(current) if plan.is_empty() && current > v => Err(Error::Refused {
                    reason: format!(
                        "{} is older than the current version {current}; upgrade only moves \
                         forward",
                        state.describe(v)
                    ),
                    remedy: format!("Run `pgfresh downgrade {v}` to go back to it"),
                }),
                _ => Ok(plan),
            }
        }
    }
}

/// One migration `downgrade` reverts, and the version the database is at afterwards.
#[derive(Debug)]
pub(super) struct Revert<'s> {
    pub down: &'s Migration,
    pub after: Option<i64>,
}

/// The migrations `downgrade` reverts, newest first; empty when there is nothing to do.
pub(super) fn downgrade_plan<'s>(
    state: &Ledger<'s>,
    target: DowngradeTarget,
) -> Result<Vec<Revert<'s>>> {
    let applied: Vec<i64> = state.applied.keys().rev().copied().collect();
    let count = match target {
        DowngradeTarget::Base => applied.len(),
        DowngradeTarget::Back(n) if n <= applied.len() => n,
        DowngradeTarget::Back(n) => {
            return Err(Error::Refused {
                reason: if applied.is_empty() {
                    format!(
                        "cannot downgrade -{n}: no migration is applied, the database is at base"
                    )
                } else {
                    format!(
                        "cannot downgrade -{n}: only {} applied",
                        migrations_are(applied.len())
                    )
                },
                remedy: "Run `pgfresh downgrade base` to revert everything, or `pgfresh history` \
                         to see what is applied"
                    .into(),
            });
        }
        DowngradeTarget::Version(v) => {
            state.check_known(v)?;
            if state.current().is_none_or(|current| current < v) {
                return Err(Error::Refused {
                    reason: format!(
                        "{} is newer than the current version {}; downgrade only moves back",
                        state.describe(v),
                        label(state.current())
                    ),
                    remedy: format!("Run `pgfresh upgrade {v}` to go forward to it"),
                });
            }
            applied.iter().take_while(|&&a| a > v).count()
        }
    };
    applied[..count]
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let down = state.down(v).ok_or_else(|| Error::Refused {
                reason: format!(
                    "migration {} has no .down.sql, so it cannot be reverted",
                    state.describe(v)
                ),
                remedy: format!(
                    "Add a .down.sql that undoes it next to its .up.sql, or stop above it: \
                     `pgfresh downgrade {v}`"
                ),
            })?;
            Ok(Revert {
                down,
                after: applied.get(i + 1).copied(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use sqlx::SqlSafeStr;
    use sqlx::migrate::{MigrationType, Migrator};

    use super::*;
    use crate::migrations::Applied;
    use crate::migrations::MigrationSet;

    fn set(reversible: &[i64], simple: &[i64]) -> MigrationSet {
        let m =
            |v: i64, t| Migration::new(v, Cow::Borrowed("m"), t, "SELECT 1".into_sql_str(), false);
        let mut all = Vec::new();
        for &v in reversible {
            all.push(m(v, MigrationType::ReversibleUp));
            all.push(m(v, MigrationType::ReversibleDown));
        }
        all.extend(simple.iter().map(|&v| m(v, MigrationType::Simple)));
        MigrationSet::from_migrator(&Migrator::with_migrations(all), "migrations/")
    }

    fn state<'s>(set: &'s MigrationSet, applied: &[i64]) -> Ledger<'s> {
        let applied = applied.iter().map(|&version| {
            let checksum = set
                .ups()
                .find(|m| m.version == version)
                .unwrap()
                .checksum
                .to_vec();
            let row = Applied {
                version,
                description: "m".into(),
                success: true,
                checksum,
                installed_on: chrono::Utc::now(),
                execution_time: 0,
            };
            (version, row)
        });
        Ledger {
            set,
            applied: applied.collect::<BTreeMap<_, _>>(),
        }
    }

    fn up(s: &Ledger<'_>, t: &str) -> Result<Vec<i64>> {
        let plan = upgrade_plan(s, t.parse().unwrap())?;
        Ok(plan.iter().map(|m| m.version).collect())
    }

    fn down(s: &Ledger<'_>, t: &str) -> Result<Vec<(i64, Option<i64>)>> {
        let plan = downgrade_plan(s, t.parse().unwrap())?;
        Ok(plan.iter().map(|r| (r.down.version, r.after)).collect())
    }

    #[test]
    fn parses_targets() {
        assert_eq!("head".parse(), Ok(UpgradeTarget::Head));
        assert_eq!("+2".parse(), Ok(UpgradeTarget::Next(2)));
        assert_eq!(
            "20231002090000".parse(),
            Ok(UpgradeTarget::Version(20231002090000))
        );
        assert_eq!("base".parse(), Ok(DowngradeTarget::Base));
        assert_eq!("-1".parse(), Ok(DowngradeTarget::Back(1)));
        for bad in ["+0", "+", "+x", "-1", "base", "1.5", "latest", ""] {
            assert!(bad.parse::<UpgradeTarget>().is_err(), "{bad}");
        }
        for bad in ["-0", "-", "+1", "head", "x"] {
            assert!(bad.parse::<DowngradeTarget>().is_err(), "{bad}");
        }
        let e = "-1".parse::<UpgradeTarget>().unwrap_err();
        assert!(e.contains("pgfresh downgrade -1"), "{e}");
    }

    #[test]
    fn upgrade_plans() {
        let set = set(&[1, 2, 3], &[]);
        let s = state(&set, &[1]);
        assert_eq!(up(&s, "head").unwrap(), [2, 3]);
        assert_eq!(up(&s, "+1").unwrap(), [2]);
        assert_eq!(up(&s, "3").unwrap(), [2, 3]);
        assert_eq!(up(&s, "1").unwrap(), Vec::<i64>::new());
        let e = up(&s, "+3").unwrap_err().to_string();
        assert!(e.contains("only 2 migrations are pending (2, 3)"), "{e}");
        let e = up(&state(&set, &[1, 2, 3]), "+1").unwrap_err().to_string();
        assert!(e.contains("no migration is pending"), "{e}");
        let e = up(&state(&set, &[1, 2]), "1").unwrap_err().to_string();
        assert!(e.contains("pgfresh downgrade 1"), "{e}");
        let e = up(&s, "7").unwrap_err().to_string();
        assert!(
            e.contains("no migration 7") && e.contains("1 (m), 2 (m), 3 (m)"),
            "{e}"
        );
    }

    #[test]
    fn upgrade_fills_gaps_first() {
        let set = set(&[1, 2, 3], &[]);
        assert_eq!(up(&state(&set, &[1, 3]), "+1").unwrap(), [2]);
    }

    #[test]
    fn downgrade_plans() {
        let set = set(&[1, 2, 3], &[]);
        let s = state(&set, &[1, 2, 3]);
        assert_eq!(down(&s, "-1").unwrap(), [(3, Some(2))]);
        assert_eq!(down(&s, "1").unwrap(), [(3, Some(2)), (2, Some(1))]);
        assert_eq!(
            down(&s, "base").unwrap(),
            [(3, Some(2)), (2, Some(1)), (1, None)]
        );
        let e = down(&s, "-4").unwrap_err().to_string();
        assert!(e.contains("only 3 migrations are applied"), "{e}");
        let e = down(&state(&set, &[]), "-1").unwrap_err().to_string();
        assert!(e.contains("the database is at base"), "{e}");
        let e = down(&state(&set, &[1]), "2").unwrap_err().to_string();
        assert!(e.contains("pgfresh upgrade 2"), "{e}");
    }

    #[test]
    fn downgrade_needs_down_files() {
        let set = set(&[2], &[1]);
        let s = state(&set, &[1, 2]);
        assert_eq!(down(&s, "-1").unwrap(), [(2, Some(1))]);
        let e = down(&s, "base").unwrap_err().to_string();
        assert!(e.contains("migration 1 (m) has no .down.sql"), "{e}");
    }
}
