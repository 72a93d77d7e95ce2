//! Command-line flags, and the settings they resolve to. Parsed by hand: the example needs
//! no optional dependency, so it builds with any feature set.

use std::path::PathBuf;

/// Printed by `--help`.
const USAGE: &str = "\
Benchmark pgfresh against #[sqlx::test] on one PostgreSQL server.

usage: cargo run --release --example bench -- [flags]

  --tests N          tests in each main suite            [100; --quick: 10]
  --migrations N     migrations of the main suites       [50;  --quick: 10]
  --rounds R         timed rounds                        [3;   --quick: 1]
  --scale LIST       migration counts of the scaling table, or none
                                                         [10,50,100,200; --quick: 5,20]
  --scale-tests N    tests per scaling suite (cargo test) [40; --quick: 10]
  --runner R         test, nextest or both               [both]
  --work MS          the warm-set suite: pgfresh's main suite again, each test body
                     also spending MS ms (so the ready clones can keep up), under
                     cargo test, for the warm hand-out latency; 0 skips it [20]
  --attribute on|off the attribute suite: the main suite's tests written with
                     #[pgfresh::test], beside the Harness::test_db suite in every
                     round, under each runner            [on]
  --fixture-rows N   the fixture suite: the main suite's tests with fixtures a, b
                     and c of N rows each, #[pgfresh::test(fixtures(...))] against
                     #[sqlx::test(fixtures(...))] in every round, under each
                     runner; 0 skips it                  [1000]
  --rows-per-insert N  rows per INSERT statement in those fixture files: 1 is what
                     pg_dump --inserts writes, larger batches are cheaper to apply [100]
  --edit-loop N      the edit loop: pgfresh's main suite, then the floor (shared),
                     N runs each under each runner with a fixed 8 s pause between
                     runs and no settle between them (the broker's idle work is
                     what is measured); the first pgfresh sequence starts cold
                     (every pgfresh_* database dropped); 0 skips it, else at
                     least 2                               [5; --quick: 3]
  --edit-features LIST  the edit loop also runs pgfresh's main suite built with only
                     these features of pgfresh (default-features = false, LIST
                     comma-separated, e.g. local), between the default build's
                     sequence and the floor's: what cargo's own part of each run
                     costs with pgfresh's default dependency graph [none]
  --clone-xfs        the clone comparison (off unless given; needs root): a
                     PostgreSQL 18 cluster on a loop-mounted XFS image under
                     target/pgfresh-bench/xfs/ (scripts/pg-bin.sh 18), CREATE
                     DATABASE ... STRATEGY FILE_COPY from a 1 GB and a one-table
                     template with file_copy_method copy and clone, and pgfresh's
                     hand-out from each (url and local source, PGFRESH_READY=0,
                     PGFRESH_BROKER=off)
  --quick            small numbers for a smoke run; explicit flags still win
  --pgfresh DIR      the pgfresh checkout to measure     [this crate]
                     (copied to a snapshot first, so edits during the run do not leak in)

The server: DB_URL when set, else a throwaway local cluster (see the example's docs).";

/// The flags as given; `None` for the ones left out.
#[derive(Debug, Default)]
pub struct Args {
    tests: Option<usize>,
    migrations: Option<usize>,
    rounds: Option<usize>,
    scale: Option<String>,
    scale_tests: Option<usize>,
    runner: Option<String>,
    work: Option<usize>,
    attribute: Option<String>,
    fixture_rows: Option<usize>,
    rows_per_insert: Option<usize>,
    edit_loop: Option<usize>,
    edit_features: Option<String>,
    clone_xfs: bool,
    quick: bool,
    pgfresh: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Args>),
    Help(&'static str),
}

impl Args {
    /// Parses `--flag value` and `--flag=value` pairs.
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Parsed, String> {
        let mut args = Self::default();
        while let Some(arg) = argv.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
                None => (arg, None),
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Parsed::Help(USAGE)),
                "--quick" => args.quick = true,
                "--clone-xfs" => args.clone_xfs = true,
                _ => {
                    let value = inline
                        .or_else(|| argv.next())
                        .ok_or_else(|| format!("{flag} needs a value; see --help"))?;
                    args.set(&flag, value)?;
                }
            }
        }
        Ok(Parsed::Run(Box::new(args)))
    }

    fn set(&mut self, flag: &str, value: String) -> Result<(), String> {
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag} {value}: expected a number"))
        };
        match flag {
            "--tests" => self.tests = Some(number()?),
            "--migrations" => self.migrations = Some(number()?),
            "--rounds" => self.rounds = Some(number()?),
            "--scale-tests" => self.scale_tests = Some(number()?),
            "--scale" => self.scale = Some(value),
            "--runner" => self.runner = Some(value),
            "--work" => self.work = Some(number()?),
            "--attribute" => self.attribute = Some(value),
            "--fixture-rows" => self.fixture_rows = Some(number()?),
            "--rows-per-insert" => self.rows_per_insert = Some(number()?),
            "--edit-loop" => self.edit_loop = Some(number()?),
            "--edit-features" => self.edit_features = Some(value),
            "--pgfresh" => self.pgfresh = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}; see --help")),
        }
        Ok(())
    }
}

/// A test runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// `cargo test`: one process, tests on threads.
    Test,
    /// `cargo nextest run`: one process per test.
    Nextest,
}

impl Runner {
    /// The runner's name as typed on the command line.
    pub fn label(self) -> &'static str {
        match self {
            Self::Test => "cargo test",
            Self::Nextest => "cargo nextest",
        }
    }
}

/// The resolved settings of one benchmark run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tests: usize,
    pub migrations: usize,
    pub rounds: usize,
    pub scale: Vec<usize>,
    pub scale_tests: usize,
    pub runners: Vec<Runner>,
    /// Milliseconds each test of the warm-set suite spends in its body; 0: no such suite.
    pub work: usize,
    /// Whether the attribute suite (`#[pgfresh::test]`, no fixtures) runs.
    pub attribute: bool,
    /// Rows in each fixture file of the fixture suite; 0: no such suite.
    pub fixture_rows: usize,
    /// Rows per `INSERT` statement in the fixture files.
    pub rows_per_insert: usize,
    /// Runs per suite and runner in the edit loop; 0: no edit loop.
    pub edit_loop: usize,
    /// pgfresh's features (comma-separated) of the edit loop's other pgfresh suite, if any.
    pub edit_features: Option<&'static str>,
    /// Whether the clone comparison on XFS runs.
    pub clone_xfs: bool,
    pub pgfresh: PathBuf,
}

impl Args {
    /// Applies `--quick` and the defaults to the flags that were not given.
    pub fn resolve(self) -> Result<Settings, String> {
        let pick = |given: Option<usize>, quick: usize, full: usize| {
            given.unwrap_or(if self.quick { quick } else { full })
        };
        let scale = match &self.scale {
            Some(list) => parse_list(list)?,
            None if self.quick => vec![5, 20],
            None => vec![10, 50, 100, 200],
        };
        let settings = Settings {
            tests: pick(self.tests, 10, 100),
            migrations: pick(self.migrations, 10, 50),
            rounds: pick(self.rounds, 1, 3),
            scale_tests: pick(self.scale_tests, 10, 40),
            scale,
            runners: match self.runner.as_deref() {
                Some("test") => vec![Runner::Test],
                Some("nextest") => vec![Runner::Nextest],
                None | Some("both") => vec![Runner::Test, Runner::Nextest],
                Some(other) => {
                    return Err(format!("--runner {other}: expected test, nextest or both"));
                }
            },
            work: pick(self.work, 20, 20),
            attribute: match self.attribute.as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(format!("--attribute {other}: expected on or off")),
            },
            fixture_rows: pick(self.fixture_rows, 1000, 1000),
            rows_per_insert: pick(self.rows_per_insert, 100, 100),
            edit_loop: pick(self.edit_loop, 3, 5),
            edit_features: match self.edit_features.as_deref().map(str::trim) {
                None | Some("none") => None,
                Some(list) => Some(&*String::leak(list.replace(' ', ""))),
            },
            clone_xfs: self.clone_xfs,
            pgfresh: self
                .pgfresh
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        };
        settings.check()?;
        Ok(settings)
    }
}

impl Settings {
    fn check(&self) -> Result<(), String> {
        if self.tests == 0
            || self.migrations == 0
            || self.rounds == 0
            || self.scale_tests == 0
            || self.rows_per_insert == 0
        {
            return Err(
                "--tests, --migrations, --rounds, --scale-tests and --rows-per-insert \
                        must be at least 1"
                    .into(),
            );
        }
        if self.edit_loop == 1 {
            return Err(
                "--edit-loop 1: the edit loop's figures are the runs after a pause; \
                 give 0 (skip it) or at least 2"
                    .into(),
            );
        }
        if self.edit_features.is_some() && self.edit_loop == 0 {
            return Err("--edit-features: needs the edit loop (--edit-loop 2 or more)".into());
        }
        if self.clone_xfs && !crate::server::is_root() {
            return Err(
                "--clone-xfs needs root: it mounts an XFS image (mount -o loop) and runs \
                 PostgreSQL as the postgres user"
                    .into(),
            );
        }
        if !self.pgfresh.join("Cargo.toml").is_file() {
            return Err(format!(
                "--pgfresh {}: no Cargo.toml there; point it at a pgfresh checkout",
                self.pgfresh.display()
            ));
        }
        Ok(())
    }

    /// The flags that reproduce these settings.
    pub fn flags(&self) -> String {
        let scale = if self.scale.is_empty() {
            "none".to_owned()
        } else {
            join(&self.scale)
        };
        let runner = match self.runners.as_slice() {
            [Runner::Test] => "test",
            [Runner::Nextest] => "nextest",
            _ => "both",
        };
        let attribute = if self.attribute { "on" } else { "off" };
        let clone_xfs = if self.clone_xfs { " --clone-xfs" } else { "" };
        let edit_features = self
            .edit_features
            .map_or_else(String::new, |list| format!(" --edit-features {list}"));
        format!(
            "--tests {} --migrations {} --rounds {} --scale {scale} --scale-tests {} --runner {runner} --work {} \
             --attribute {attribute} --fixture-rows {} --rows-per-insert {} --edit-loop {}{edit_features}{clone_xfs}",
            self.tests,
            self.migrations,
            self.rounds,
            self.scale_tests,
            self.work,
            self.fixture_rows,
            self.rows_per_insert,
            self.edit_loop
        )
    }
}

/// `10,50,100` as numbers; `none` as an empty list.
fn parse_list(list: &str) -> Result<Vec<usize>, String> {
    if list.trim() == "none" {
        return Ok(Vec::new());
    }
    let mut counts = list
        .split(',')
        .map(|n| match n.trim().parse::<usize>() {
            Ok(0) | Err(_) => Err(format!(
                "--scale {list}: expected migration counts like 10,50,100,200 (each at least 1), or none"
            )),
            Ok(n) => Ok(n),
        })
        .collect::<Result<Vec<_>, _>>()?;
    counts.sort_unstable();
    counts.dedup();
    Ok(counts)
}

/// `10,50,100`.
pub fn join(counts: &[usize]) -> String {
    counts
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
