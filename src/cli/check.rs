//! `pgfresh check`: the migration checks of [`crate::check`] on the `--source` folder, one
//! line per check on standard output, a progress bar per check on standard error when it is
//! a terminal (plain lines only otherwise, as in CI).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::check::{Failure, Passed, Progress, Subject};
use crate::error::{Error, Result};

/// `pgfresh check` options (besides the global `--source` and `--database-url`).
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Rewrite the snapshot from the migrations instead of comparing them with it.
    #[arg(long)]
    update: bool,

    /// The schema snapshot: the schema at head as SQL, committed next to the migrations.
    #[arg(long, value_name = "FILE", default_value = "schema.sql")]
    snapshot: PathBuf,
}

/// Runs the four checks in order and reports each; fails when any did.
///
/// With `database_url` (`--database-url` or `DB_URL`), the history check also compares what
/// that database applied with the folder. The checks' own databases come from the server
/// pgfresh's configuration names (`PGFRESH_SERVER`), as in tests.
pub(super) async fn run(source: &Path, database_url: Option<&str>, args: Args) -> Result<()> {
    let subject = Subject::from_dir(super::load(source).await?, source);
    let database_url = database_url.filter(|url| !url.trim().is_empty());
    let mut report = Report::default();

    let bar = Bar::spinner("history", "reading the migrations");
    let outcome = match database_url {
        Some(url) => {
            let mut conn = super::connect(url).await?;
            let outcome = subject.history(Some(&mut conn)).await;
            // The server ends the session either way; a failed goodbye changes nothing.
            let _ = sqlx::Connection::close(conn).await;
            outcome
        }
        None => subject.history(None).await,
    };
    report.record(bar, outcome)?;

    let bar = Bar::spinner("upgrade", "migrating an empty database to head");
    report.record(bar, subject.upgrade().await)?;

    let bar = Bar::spinner("up/down", "starting");
    let outcome = subject.up_down(&bar).await;
    report.record(bar, outcome)?;

    let doing = if args.update {
        "writing the schema at head"
    } else {
        "comparing the schema at head"
    };
    let bar = Bar::spinner("snapshot", doing);
    let outcome = subject.snapshot(&args.snapshot, args.update).await;
    report.record(bar, outcome)?;

    report.verdict()
}

/// Which checks failed so far.
#[derive(Debug, Default)]
struct Report {
    ran: usize,
    failed: Vec<&'static str>,
}

impl Report {
    /// Prints a check's outcome. A check that could not run (no server, say) stops the
    /// command: every later check would fail the same way.
    fn record(&mut self, bar: Bar, outcome: Result<Passed, Failure>) -> Result<()> {
        let (name, took) = bar.finish();
        self.ran += 1;
        match outcome {
            Ok(passed) => {
                println!("{name:<9} ok      {} ({})", passed.summary, seconds(took));
                for note in &passed.notes {
                    println!("{:<17} note: {note}", "");
                }
                Ok(())
            }
            Err(Failure::Harness(e)) => Err(e),
            Err(failure) => {
                println!("{name:<9} FAILED  {failure}");
                self.failed.push(name);
                Ok(())
            }
        }
    }

    fn verdict(self) -> Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        Err(Error::Refused {
            reason: format!(
                "{} of {} migration checks failed ({})",
                self.failed.len(),
                self.ran,
                self.failed.join(", ")
            ),
            remedy: "Fix what each failed check names above and run `pgfresh check` again \
                     (with --update when a snapshot change is intended)"
                .into(),
        })
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// How a check without steps shows that it runs.
const SPINNER: &str = "{prefix:<9} {spinner} {wide_msg}";
/// How a check with steps shows how far it is.
const STEPS: &str = "{prefix:<9} [{bar:30}] {pos}/{len} {wide_msg}";

/// A check's progress on standard error: a spinner, which becomes a bar once the check says
/// how many steps it has. Hidden when standard error is not a terminal.
struct Bar {
    name: &'static str,
    bar: ProgressBar,
    started: Instant,
}

impl Bar {
    fn spinner(name: &'static str, doing: &'static str) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target)
            .with_style(style(SPINNER))
            .with_prefix(name)
            .with_message(doing);
        bar.enable_steady_tick(Duration::from_millis(100));
        Self {
            name,
            bar,
            started: Instant::now(),
        }
    }

    /// Clears the bar; returns the check's name and how long it took.
    fn finish(self) -> (&'static str, Duration) {
        self.bar.finish_and_clear();
        (self.name, self.started.elapsed())
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.bar.set_length(total);
        self.bar.set_style(style(STEPS));
    }

    fn step(&self, what: &str) {
        self.bar.set_message(what.to_owned());
        self.bar.inc(1);
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants that a test parses; the fallback only keeps a typo from
    // becoming a panic.
    ProgressStyle::with_template(template).map_or_else(
        |_| ProgressStyle::default_bar(),
        |s| s.progress_chars("=> "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for template in [SPINNER, STEPS] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
