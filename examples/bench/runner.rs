//! Builds and runs one generated suite under `cargo test` or `cargo nextest run`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::args::Runner;
use crate::cpu::Meter;
use crate::generate::{Crate, Layout};

/// How both suites reach the server, and where they build.
#[derive(Debug, Clone)]
pub struct Env {
    pub layout: Layout,
    pub url: String,
    /// The postmaster's pid, when the benchmark runs the server (for CPU accounting).
    pub server_pid: Option<u32>,
}

/// What a pgfresh suite timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// From the process's start to its first hand-out.
    Start,
    /// A hand-out that started before the process had its first database.
    Cold,
    /// Any later hand-out.
    Warm,
    /// The test's body, between its hand-out and its drop.
    Test,
    /// Dropping the `TestDb` at the end of a test.
    Drop,
}

/// One timing recorded by a pgfresh suite.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub kind: Kind,
    pub took: Duration,
    /// The test process's CPU time in that step (all its threads).
    pub cpu: Duration,
}

/// What one run of one suite produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub wall: Duration,
    pub passed: usize,
    /// Hand-outs and drops (pgfresh suites only).
    pub timings: Vec<Timing>,
    /// Cargo compiled something inside the timed region (should never happen).
    pub compiled: bool,
    /// Share of the machine's CPU time used by other processes during the run.
    pub other_cpu: Option<f64>,
    /// CPU time of the run and the server together (when the benchmark runs the server).
    pub cpu: Option<Duration>,
}

impl Env {
    /// The `cargo` command of a run (or, with `no_run`, of its build), with the same
    /// environment for both suites: the server as `DATABASE_URL` (sqlx) and `DB_URL` with
    /// `PGFRESH_SERVER=url` (pgfresh).
    fn cargo(&self, krate: &Crate, runner: Runner, no_run: bool) -> Command {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        match runner {
            Runner::Test => cmd.arg("test"),
            Runner::Nextest => cmd.args(["nextest", "run"]),
        };
        cmd.args(["--release", "-p", &krate.package()]);
        if no_run {
            cmd.arg("--no-run");
        }
        cmd.current_dir(self.layout.workspace())
            .env("CARGO_TARGET_DIR", self.layout.target())
            .env("DATABASE_URL", &self.url)
            .env("DB_URL", &self.url)
            .env("PGFRESH_SERVER", "url")
            .env_remove("PGFRESH_BENCH_TIMINGS");
        cmd
    }

    /// Compiles a suite's test binary (untimed).
    pub fn build(&self, krate: &Crate) -> Result<Duration, String> {
        self.no_run(krate, Runner::Test)
    }

    /// The run's command with `--no-run`, timed: with the binary built already, cargo's (and
    /// nextest's) own part of a run, checking that nothing needs building.
    pub fn no_run(&self, krate: &Crate, runner: Runner) -> Result<Duration, String> {
        let start = Instant::now();
        let out = self
            .cargo(krate, runner, true)
            .output()
            .map_err(|e| format!("cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building {} failed:\n{}",
                krate.package(),
                tail(&out.stderr, 40)
            ));
        }
        Ok(start.elapsed())
    }

    /// Runs a suite once and times the whole `cargo` command.
    pub fn run(&self, krate: &Crate, runner: Runner, tag: &str) -> Result<Outcome, String> {
        self.run_with(krate, runner, tag, &[])
    }

    /// [`Env::run`] with some variables of the run's environment changed: each set to its
    /// value, or removed when it has none (the clone comparison's other servers and settings).
    pub fn run_with(
        &self,
        krate: &Crate,
        runner: Runner,
        tag: &str,
        vars: &[(&str, Option<String>)],
    ) -> Result<Outcome, String> {
        let timings = self.timings_file(krate, runner, tag);
        let _ = fs::remove_file(&timings);
        let mut cmd = self.cargo(krate, runner, false);
        for (name, value) in vars {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        if krate.suite.records_timings() {
            cmd.env("PGFRESH_BENCH_TIMINGS", &timings);
        }
        let meter = Meter::start(self.server_pid);
        let start = Instant::now();
        let out = cmd.output().map_err(|e| format!("cargo: {e}"))?;
        let wall = start.elapsed();
        let other_cpu = meter.and_then(|m| m.other_share(wall));
        let cpu = meter.and_then(|m| m.used());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!(
                "{} of {} failed ({}):\n{}\n{}",
                runner.label(),
                krate.package(),
                out.status,
                tail(&out.stdout, 30),
                tail(&out.stderr, 30)
            ));
        }
        Ok(Outcome {
            wall,
            passed: passed(&stdout) + passed(&stderr),
            timings: read_timings(&timings)?,
            compiled: stderr
                .lines()
                .any(|l| l.trim_start().starts_with("Compiling ")),
            other_cpu,
            cpu,
        })
    }

    /// The command a run is, as typed in the generated workspace (its environment aside).
    pub fn command_line(krate: &Crate, runner: Runner) -> String {
        let tool = match runner {
            Runner::Test => "cargo test",
            Runner::Nextest => "cargo nextest run",
        };
        format!("{tool} --release -p {}", krate.package())
    }

    fn timings_file(&self, krate: &Crate, runner: Runner, tag: &str) -> PathBuf {
        let runner = match runner {
            Runner::Test => "test",
            Runner::Nextest => "nextest",
        };
        self.layout
            .timings()
            .join(format!("{}-{runner}-{tag}.txt", krate.package()))
    }
}

/// Passed tests summed over `test result: ok. N passed` (cargo test) and
/// `N tests run: M passed` (nextest) lines.
fn passed(output: &str) -> usize {
    output
        .lines()
        .filter(|l| l.contains("test result:") || l.contains(" run: "))
        .filter_map(|l| {
            let before = &l[..l.find(" passed")?];
            before.rsplit([' ', ':']).next()?.parse::<usize>().ok()
        })
        .sum()
}

fn read_timings(path: &PathBuf) -> Result<Vec<Timing>, String> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .map(|line| {
            parse_timing(line).ok_or_else(|| format!("{}: bad line {line:?}", path.display()))
        })
        .collect()
}

/// `warm 1234 567`: a kind, then wall and CPU time in microseconds.
fn parse_timing(line: &str) -> Option<Timing> {
    let mut words = line.split(' ');
    let kind = match words.next()? {
        "start" => Kind::Start,
        "cold" => Kind::Cold,
        "warm" => Kind::Warm,
        "test" => Kind::Test,
        "drop" => Kind::Drop,
        _ => return None,
    };
    let mut micros = || words.next()?.parse().ok().map(Duration::from_micros);
    Some(Timing {
        kind,
        took: micros()?,
        cpu: micros()?,
    })
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
