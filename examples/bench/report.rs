//! Statistics and the printed tables.

use std::time::Duration;

use crate::args::{Runner, Settings};
use crate::cpu::cores;
use crate::edit::{EditLoop, Pause};
use crate::generate::{Crate, Suite, toml_features};
use crate::runner::{Env, Kind, Outcome, Timing};
use crate::server::{self, Pair, Quiet, ReadySet};
use crate::xfs::CloneReport;

/// One run of one suite, as recorded.
#[derive(Debug, Clone)]
pub struct Sample {
    pub krate: Crate,
    pub runner: Runner,
    /// 0 for the untimed warm-up.
    pub round: usize,
    pub outcome: Outcome,
    pub after: Quiet,
}

/// Clones of one migration count's template, each dropped again, on the idle server.
#[derive(Debug, Clone)]
pub struct Probe {
    pub migrations: usize,
    pub pairs: Vec<Pair>,
    /// CPU time per pair, client and server (when the benchmark runs the server).
    pub cpu: Option<Duration>,
    /// What a test's statements take more on a fresh clone than on a database already used,
    /// per clone (when the benchmark runs the server).
    pub first_touch: Option<Duration>,
}

/// A plain-text table with left-aligned columns.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, row) in self.rows.iter().enumerate() {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            println!("  {}", line.join("  ").trim_end());
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                println!("  {}", rule.join("  "));
            }
        }
    }
}

/// Median of the wall times (mean of the middle two for an even count).
pub fn median(walls: &[Duration]) -> Option<Duration> {
    let mut sorted = walls.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// The smallest wall time: the run least disturbed by anything else on the machine.
pub fn minimum(walls: &[Duration]) -> Option<Duration> {
    walls.iter().min().copied()
}

/// A statistic over wall times: [`median`] or [`minimum`].
type Stat = fn(&[Duration]) -> Option<Duration>;

/// Nearest-rank percentile, `p` in 0..=100.
pub fn percentile(values: &[Duration], p: usize) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn opt(d: Option<Duration>, show: fn(Duration) -> String) -> String {
    d.map_or_else(|| "-".to_owned(), show)
}

/// `a / b` as a ratio with two decimals.
pub fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".to_owned(),
    }
}

/// Timed wall times of one suite crate under one runner.
fn walls(samples: &[Sample], krate: &Crate, runner: Runner) -> Vec<Duration> {
    samples
        .iter()
        .filter(|s| s.round > 0 && s.krate == *krate && s.runner == runner)
        .map(|s| s.outcome.wall)
        .collect()
}

/// Timings of one kind from the timed runs of one suite crate under one runner: wall times.
fn timings(samples: &[Sample], krate: &Crate, runner: Runner, kind: Kind) -> Vec<Duration> {
    recorded(samples, krate, runner, kind)
        .map(|t| t.took)
        .collect()
}

/// Timings of one kind from the timed runs of one suite crate under one runner.
fn recorded<'a>(
    samples: &'a [Sample],
    krate: &'a Crate,
    runner: Runner,
    kind: Kind,
) -> impl Iterator<Item = &'a Timing> {
    samples
        .iter()
        .filter(move |s| s.round > 0 && s.krate == *krate && s.runner == runner)
        .flat_map(|s| s.outcome.timings.iter())
        .filter(move |t| t.kind == kind)
}

/// The per-run table (warm-up rows marked).
fn print_runs(samples: &[Sample]) {
    let mut table = Table::new(&[
        "round",
        "runner",
        "suite",
        "migr",
        "tests",
        "wall",
        "passed",
        "settle",
        "dbs left pgfresh/sqlx",
        "other CPU",
    ]);
    for s in samples {
        let wall = secs(s.outcome.wall)
            + if s.outcome.compiled {
                " (compiled!)"
            } else {
                ""
            };
        table.row(vec![
            if s.round == 0 {
                "warm-up".to_owned()
            } else {
                s.round.to_string()
            },
            s.runner.label().to_owned(),
            s.krate.label(),
            s.krate.migrations.to_string(),
            s.krate.tests.to_string(),
            wall,
            s.outcome.passed.to_string(),
            secs(s.after.waited),
            format!("{}/{}", s.after.pgfresh_dbs, s.after.sqlx_dbs),
            s.outcome
                .other_cpu
                .map_or_else(|| "-".to_owned(), |share| format!("{:.0} %", share * 100.0)),
        ]);
    }
    table.print();
}

/// Medians per runner and the pgfresh/sqlx ratio.
fn print_summary(samples: &[Sample], main: &[Crate; 2], runners: &[Runner]) {
    let mut table = Table::new(&[
        "runner",
        "pgfresh median",
        "sqlx median",
        "pgfresh/sqlx",
        "pgfresh min",
        "sqlx min",
        "pgfresh/sqlx (min)",
        "runs each",
    ]);
    for &runner in runners {
        let p = walls(samples, &main[0], runner);
        let s = walls(samples, &main[1], runner);
        table.row(vec![
            runner.label().to_owned(),
            opt(median(&p), secs),
            opt(median(&s), secs),
            ratio(median(&p), median(&s)),
            opt(minimum(&p), secs),
            opt(minimum(&s), secs),
            ratio(minimum(&p), minimum(&s)),
            format!("{}/{}", p.len(), s.len()),
        ]);
    }
    table.print();
}

/// `a`'s wall time over `b`'s, per timed round in which both ran under `runner`.
fn round_ratios(samples: &[Sample], a: &Crate, b: &Crate, runner: Runner) -> Vec<f64> {
    let wall = |krate: &Crate, round: usize| {
        samples
            .iter()
            .find(|s| s.round == round && s.krate == *krate && s.runner == runner)
            .map(|s| s.outcome.wall.as_secs_f64())
    };
    let rounds = samples.iter().map(|s| s.round).max().unwrap_or(0);
    (1..=rounds)
        .filter_map(|round| Some(wall(a, round)? / wall(b, round)?))
        .filter(|r| r.is_finite())
        .collect()
}

/// `0.95-1.04`: the smallest and the largest of some ratios.
fn spread(ratios: &[f64]) -> String {
    let lo = ratios.iter().copied().reduce(f64::min);
    let hi = ratios.iter().copied().reduce(f64::max);
    match lo.zip(hi) {
        Some((lo, hi)) => format!("{lo:.2}-{hi:.2}"),
        None => "-".to_owned(),
    }
}

/// The attribute suite against the `Harness::test_db` suite: the same tests, the same
/// template, in the same rounds.
fn print_attribute(samples: &[Sample], harness: &Crate, attribute: &Crate, runners: &[Runner]) {
    let mut table = Table::new(&[
        "runner",
        "harness median",
        "attribute median",
        "attribute/harness",
        "per round",
        "harness max/min",
        "attribute min",
        "attribute/harness (min)",
        "runs each",
    ]);
    for &runner in runners {
        let h = walls(samples, harness, runner);
        let a = walls(samples, attribute, runner);
        table.row(vec![
            runner.label().to_owned(),
            opt(median(&h), secs),
            opt(median(&a), secs),
            ratio(median(&a), median(&h)),
            spread(&round_ratios(samples, attribute, harness, runner)),
            ratio(h.iter().max().copied(), minimum(&h)),
            opt(minimum(&a), secs),
            ratio(minimum(&a), minimum(&h)),
            format!("{}/{}", h.len(), a.len()),
        ]);
    }
    table.print();
}

/// The fixture suite's targets: pgfresh/sqlx at most this, per runner.
fn fixture_target(runner: Runner) -> f64 {
    match runner {
        Runner::Test => 0.2,
        Runner::Nextest => 0.3,
    }
}

/// The fixture suite: pgfresh's attribute against sqlx's, with the targets, and what the
/// fixtures add per test to each tool (against `plain`: the same tests without fixtures,
/// pgfresh's then sqlx's).
fn print_fixtures(samples: &[Sample], pair: &[Crate; 2], plain: &[Crate; 2], runners: &[Runner]) {
    let mut table = Table::new(&[
        "runner",
        "pgfresh median",
        "sqlx median",
        "pgfresh/sqlx",
        "target",
        "per round",
        "pgfresh min",
        "sqlx min",
        "pgfresh/sqlx (min)",
        "runs each",
    ]);
    for &runner in runners {
        let p = walls(samples, &pair[0], runner);
        let s = walls(samples, &pair[1], runner);
        let target = fixture_target(runner);
        let verdict = match median(&p).zip(median(&s)) {
            Some((p, s)) if !s.is_zero() => {
                if p.as_secs_f64() / s.as_secs_f64() <= target {
                    "met"
                } else {
                    "missed"
                }
            }
            _ => "-",
        };
        table.row(vec![
            runner.label().to_owned(),
            opt(median(&p), secs),
            opt(median(&s), secs),
            ratio(median(&p), median(&s)),
            format!("<= {target:.2}: {verdict}"),
            spread(&round_ratios(samples, &pair[0], &pair[1], runner)),
            opt(minimum(&p), secs),
            opt(minimum(&s), secs),
            ratio(minimum(&p), minimum(&s)),
            format!("{}/{}", p.len(), s.len()),
        ]);
    }
    table.print();
    let mut table = Table::new(&[
        "runner",
        &format!("pgfresh: {} - {}", pair[0].label(), plain[0].label()),
        &format!("sqlx: {} - {}", pair[1].label(), plain[1].label()),
    ]);
    for &runner in runners {
        let added = |with: &Crate, without: &Crate| {
            let tests = with.tests.max(1) as f64;
            let with = median(&walls(samples, with, runner));
            let without = median(&walls(samples, without, runner));
            with.zip(without).map_or_else(
                || "-".to_owned(),
                |(w, o)| {
                    let per_test = (w.as_secs_f64() - o.as_secs_f64()) / tests;
                    format!("{:+.1} ms", per_test * 1000.0)
                },
            )
        };
        table.row(vec![
            runner.label().to_owned(),
            added(&pair[0], &plain[0]),
            added(&pair[1], &plain[1]),
        ]);
    }
    println!(
        "  what the fixtures add per test (median suite wall with them - without them) / tests:"
    );
    table.print();
}

/// A pgfresh test process's steps per runner, wall and the process's CPU: its start, its
/// hand-outs cold and warm, the test's body and the drop; then what each test's process took
/// in all (the suite's wall x jobs / tests: under nextest, its exit and nextest's wait on it
/// are the rest).
fn print_steps(samples: &[Sample], pgfresh: &Crate, runners: &[Runner]) {
    let mut table = Table::new(&["runner", "step", "n", "p50", "p99", "max", "CPU p50"]);
    let steps = [
        (Kind::Start, "start: exec to first hand-out"),
        (Kind::Cold, "hand-out, cold (process's first)"),
        (Kind::Warm, "hand-out, warm (the rest)"),
        (Kind::Test, "the test's body"),
        (Kind::Drop, "drop of the TestDb at test end"),
    ];
    for &runner in runners {
        for (kind, what) in steps {
            let took = timings(samples, pgfresh, runner, kind);
            let cpu: Vec<Duration> = recorded(samples, pgfresh, runner, kind)
                .map(|t| t.cpu)
                .collect();
            table.row(vec![
                runner.label().to_owned(),
                what.to_owned(),
                took.len().to_string(),
                opt(percentile(&took, 50), millis),
                opt(percentile(&took, 99), millis),
                opt(took.iter().max().copied(), millis),
                opt(percentile(&cpu, 50), millis),
            ]);
        }
        let per_process = median(&walls(samples, pgfresh, runner))
            .map(|w| w * cores() / pgfresh.tests.max(1) as u32);
        table.row(vec![
            runner.label().to_owned(),
            "a test in all: suite wall x cores / tests (CPU: the run's and the server's)"
                .to_owned(),
            String::new(),
            opt(per_process, millis),
            String::new(),
            String::new(),
            opt(cpu_per_test(samples, pgfresh, runner), millis),
        ]);
    }
    table.print();
}

/// The warm-set suite: its wall time and hand-out latency.
fn print_work(samples: &[Sample], krate: &Crate) {
    let walls = walls(samples, krate, Runner::Test);
    let mut table = Table::new(&["what", "n", "p50", "p99", "max", "suite wall (median)"]);
    for (kind, what) in [
        (Kind::Cold, "hand-out, cold (process's first)"),
        (Kind::Warm, "hand-out, warm (the rest)"),
    ] {
        let took = timings(samples, krate, Runner::Test, kind);
        table.row(vec![
            what.to_owned(),
            took.len().to_string(),
            opt(percentile(&took, 50), millis),
            opt(percentile(&took, 99), millis),
            opt(took.iter().max().copied(), millis),
            opt(median(&walls), secs),
        ]);
    }
    table.print();
}

/// A scaling suite's per-test cost: `stat` of its suite wall times under `cargo test`, / tests.
fn per_test_cost(
    samples: &[Sample],
    stat: Stat,
    suite: Suite,
    migrations: usize,
    tests: usize,
) -> Option<Duration> {
    let krate = Crate {
        suite,
        migrations,
        tests,
        work: 0,
        fixtures: 0,
        features: None,
    };
    stat(&walls(samples, &krate, Runner::Test)).map(|w| w / tests as u32)
}

/// Per-test cost (median suite wall / tests) against the migration count.
fn print_scaling(samples: &[Sample], counts: &[usize], tests: usize) {
    let cost = |stat: Stat, suite: Suite, migrations: usize| {
        per_test_cost(samples, stat, suite, migrations, tests)
    };
    let both = |show: &dyn Fn(Stat) -> String| format!("{} ({})", show(median), show(minimum));
    let mut table = Table::new(&[
        "migrations",
        "DDL",
        "pgfresh per test",
        "sqlx per test",
        "pgfresh/sqlx",
        "pgfresh warm hand-out p50",
    ]);
    for &m in counts {
        let krate = Crate {
            suite: Suite::Pgfresh,
            migrations: m,
            tests,
            work: 0,
            fixtures: 0,
            features: None,
        };
        let warm = timings(samples, &krate, Runner::Test, Kind::Warm);
        table.row(vec![
            m.to_string(),
            (4 * m).to_string(),
            both(&|stat| opt(cost(stat, Suite::Pgfresh, m), millis)),
            both(&|stat| opt(cost(stat, Suite::Sqlx, m), millis)),
            both(&|stat| ratio(cost(stat, Suite::Pgfresh, m), cost(stat, Suite::Sqlx, m))),
            opt(percentile(&warm, 50), millis),
        ]);
    }
    if let (Some(&lo), Some(&hi)) = (counts.first(), counts.last()) {
        let growth = |suite| both(&|stat| ratio(cost(stat, suite, hi), cost(stat, suite, lo)));
        table.row(vec![
            format!("cost({hi})/cost({lo})"),
            String::new(),
            growth(Suite::Pgfresh),
            growth(Suite::Sqlx),
        ]);
    }
    table.print();
}

/// Median CPU time (run and server) per test over the timed runs of one suite.
fn cpu_per_test(samples: &[Sample], krate: &Crate, runner: Runner) -> Option<Duration> {
    let cpu: Vec<Duration> = samples
        .iter()
        .filter(|s| s.round > 0 && s.krate == *krate && s.runner == runner)
        .filter_map(|s| s.outcome.cpu)
        .collect();
    median(&cpu).map(|c| c / krate.tests as u32)
}

/// The floor suite against the other two, and the least wall time a harness that clones a
/// database per test could take here: it runs everything the floor run does, plus a clone and
/// a drop per test, and cannot finish before all cores have done that much CPU work.
fn print_floor(samples: &[Sample], s: &Settings, probes: &[Probe]) {
    let [pgfresh, sqlx] = crate::main_crates(s);
    let (floor, naive) = (crate::floor_crate(s), crate::naive_crate(s));
    let mut table = Table::new(&[
        "runner",
        "floor median",
        "floor/sqlx",
        "CPU per test: floor",
        "naive",
        "pgfresh",
        "sqlx",
        "least with a clone per test",
        "least/sqlx",
        "pgfresh/sqlx",
    ]);
    for &runner in &s.runners {
        let sqlx_wall = median(&walls(samples, &sqlx, runner));
        let floor_cpu = cpu_per_test(samples, &floor, runner);
        let floor_wall = median(&walls(samples, &floor, runner));
        let least = least(samples, s, probes, runner);
        table.row(vec![
            runner.label().to_owned(),
            opt(floor_wall, secs),
            ratio(floor_wall, sqlx_wall),
            opt(floor_cpu, millis),
            opt(cpu_per_test(samples, &naive, runner), millis),
            opt(cpu_per_test(samples, &pgfresh, runner), millis),
            opt(cpu_per_test(samples, &sqlx, runner), millis),
            opt(least, secs),
            ratio(least, sqlx_wall),
            ratio(median(&walls(samples, &pgfresh, runner)), sqlx_wall),
        ]);
    }
    table.print();
    let (in_run, idle) = (clone_in_a_run(samples, s), clone_when_idle(s, probes));
    println!(
        "  a clone per test (clone, first touch, drop), CPU: {} in a run (the naive suite's CPU per test\n  \
         less the floor's, cargo test), {} on the idle server (the probes below: clone and drop + first touch)",
        opt(in_run, millis),
        opt(idle, millis),
    );
}

/// What a clone per test costs in a run: the naive suite's CPU per test less the floor's
/// under `cargo test` (one process: the naive harness's administrative connections are
/// opened once). More than on the idle server: the drop goes to a database that was used, and
/// the checkpoints a clone asks for write what the tests dirtied.
fn clone_in_a_run(samples: &[Sample], s: &Settings) -> Option<Duration> {
    let per_test = |krate: &Crate| cpu_per_test(samples, krate, Runner::Test);
    per_test(&crate::naive_crate(s))?.checked_sub(per_test(&crate::floor_crate(s))?)
}

/// What a clone per test costs on the idle server: the probe's clone and drop, and the first
/// touch of a fresh clone.
fn clone_when_idle(s: &Settings, probes: &[Probe]) -> Option<Duration> {
    probes
        .iter()
        .find(|p| p.migrations == s.migrations)
        .and_then(|p| Some(p.cpu? + p.first_touch?))
}

/// The least wall time a harness that clones a database per test could take under `runner`:
/// the larger of the floor run's wall time (it does all that run does) and its CPU plus, per
/// test, a clone as it costs in a run (else on the idle server), spread over the cores.
fn least(samples: &[Sample], s: &Settings, probes: &[Probe], runner: Runner) -> Option<Duration> {
    let floor = crate::floor_crate(s);
    let per_database = clone_in_a_run(samples, s).or_else(|| clone_when_idle(s, probes));
    cpu_per_test(samples, &floor, runner)
        .zip(per_database)
        .map(|(f, c)| (f + c) * s.tests as u32 / cores())
        .zip(median(&walls(samples, &floor, runner)))
        .map(|(busy, wall)| busy.max(wall))
}

/// The headline: per runner, pgfresh against `#[sqlx::test]` and against the shared database,
/// and the least a harness with a clone per test could do (median suite walls).
fn print_headline(samples: &[Sample], s: &Settings, probes: &[Probe]) {
    let [pgfresh, sqlx] = crate::main_crates(s);
    let (floor, naive) = (crate::floor_crate(s), crate::naive_crate(s));
    let mut table = Table::new(&[
        "runner",
        "pgfresh",
        "sqlx::test",
        "shared",
        "naive",
        "least",
        "pgfresh/sqlx",
        "pgfresh/shared",
        "naive/shared",
        "least/shared",
    ]);
    for &runner in &s.runners {
        let wall = |krate: &Crate| median(&walls(samples, krate, runner));
        let (ours, theirs, shared) = (wall(&pgfresh), wall(&sqlx), wall(&floor));
        let naive = wall(&naive);
        let least = least(samples, s, probes, runner);
        table.row(vec![
            runner.label().to_owned(),
            opt(ours, secs),
            opt(theirs, secs),
            opt(shared, secs),
            opt(naive, secs),
            opt(least, secs),
            ratio(ours, theirs),
            ratio(ours, shared),
            ratio(naive, shared),
            ratio(least, shared),
        ]);
    }
    table.print();
}

/// The clone-and-drop probes, and what they mean for the scaling target.
fn print_probes(samples: &[Sample], s: &Settings, probes: &[Probe]) {
    let mut table = Table::new(&[
        "migrations",
        "clone p50",
        "drop p50",
        "CPU per clone + drop",
        "first touch: more CPU",
    ]);
    for p in probes {
        let clones: Vec<Duration> = p.pairs.iter().map(|x| x.clone).collect();
        let drops: Vec<Duration> = p.pairs.iter().map(|x| x.drop).collect();
        table.row(vec![
            p.migrations.to_string(),
            opt(percentile(&clones, 50), millis),
            opt(percentile(&drops, 50), millis),
            opt(p.cpu, millis),
            opt(p.first_touch, millis),
        ]);
    }
    table.print();
    let (Some(&lo), Some(&hi)) = (s.scale.first(), s.scale.last()) else {
        return;
    };
    let cpu = |m: usize| {
        probes
            .iter()
            .find(|p| p.migrations == m)
            .and_then(|p| p.cpu)
    };
    let Some(grown) = cpu(hi).zip(cpu(lo)).and_then(|(h, l)| h.checked_sub(l)) else {
        return;
    };
    let cost = |suite| per_test_cost(samples, median, suite, lo, s.scale_tests);
    println!(
        "  from {lo} to {hi} migrations a clone and a drop take {} more CPU: with the cores busy, at least\n  \
         {} more wall time per test on {} cores. Per-test cost at {hi} within 1.2 x the cost at {lo} would\n  \
         need a cost at {lo} of at least 5 x that = {} (measured above: pgfresh {}, sqlx {}).",
        millis(grown),
        millis(grown / cores()),
        cores(),
        millis(grown * 5 / cores()),
        opt(cost(Suite::Pgfresh), millis),
        opt(cost(Suite::Sqlx), millis),
    );
}

/// Every table, in order.
pub fn print_all(s: &Settings, samples: &[Sample], probes: &[Probe]) {
    let main = crate::main_crates(s);
    println!("\nruns (warm-up rows are untimed)");
    println!("  settle: wait after the run until no session on the server was active");
    println!(
        "  other CPU: share of the machine's CPU time that went to processes other than the run\n  \
         and the server (other builds, other tests, hypervisor steal); above a few % the run was disturbed"
    );
    print_runs(samples);
    println!("\nsuite wall time over the timed rounds");
    print_summary(samples, &main, &s.runners);
    println!(
        "\nheadline: median suite wall over the timed rounds; shared: the same tests on one database\n  \
         migrated beforehand; naive: the same tests, each cloning a template itself and dropping the clone\n  \
         at its end, nothing around that; least: what a harness with a clone per test can do here (the\n  \
         floor, below)"
    );
    print_headline(samples, s, probes);
    println!(
        "\na pgfresh test process's steps, timed rounds: wall, and CPU of the test process alone\n  \
         (hand-out: around HARNESS.test_db().await; start: from the process's start, in 10 ms ticks)"
    );
    print_steps(samples, &main[0], &s.runners);
    print_first_handout(samples, &main[0]);
    if let Some(attribute) = crate::attribute_crate(s) {
        println!(
            "\nthe attribute: the same tests as #[pgfresh::test(migrations = \"…\")] async fn t(pool: PgPool),\n  \
             beside the HARNESS.test_db() suite (the same template) in every round; target: no slower\n  \
             within noise. per round: that round's attribute/harness; harness max/min: the harness's own\n  \
             spread over the rounds, the noise to judge the ratio by"
        );
        print_attribute(samples, &main[0], &attribute, &s.runners);
    }
    if let Some(pair) = crate::fixture_crates(s) {
        println!(
            "\nfixtures: the same tests, each also reading a row of fixtures a, b and c ({} rows each, {} per\n  \
             INSERT, into bench_0001..3): #[pgfresh::test(migrations = \"…\", fixtures(\"a\", \"b\", \"c\"))] (applied once, into the\n  \
             template) against #[sqlx::test(…, fixtures(\"a\", \"b\", \"c\"))] (applied to every test's database)",
            pair[0].fixtures, s.rows_per_insert
        );
        let plain = [crate::attribute_crate(s).unwrap_or(main[0]), main[1]];
        print_fixtures(samples, &pair, &plain, &s.runners);
    }
    if let Some(krate) = crate::work_crate(s) {
        println!(
            "\nwarm ready set: pgfresh's suite again, each test also spending {} ms in its body (cargo test);\n  \
             the trivial suite above uses databases faster than this machine can clone them",
            krate.work
        );
        print_work(samples, &krate);
    }
    if !s.scale.is_empty() {
        println!(
            "\nscaling: {} tests under cargo test; per test = suite wall / tests, median (min) over the rounds",
            s.scale_tests
        );
        print_scaling(samples, &s.scale, s.scale_tests);
    }
    println!(
        "\nthe floor: the same tests on one database migrated beforehand, no database per test (shared);\n  \
         CPU per test: the run's and the server's CPU time (median run) / tests; least with a clone per test:\n  \
         the larger of the floor's wall time and (the floor run's CPU + tests x a clone per test's CPU as\n  \
         in the naive suite's run, below) / cores: what no harness that clones a database per test can beat\n  \
         here"
    );
    print_floor(samples, s, probes);
    println!(
        "\nclone and drop on the idle server: a fresh template per migration count, {} x CREATE DATABASE …\n  \
         STRATEGY FILE_COPY then DROP DATABASE, one after another on one connection; first touch: the\n  \
         first test's statements on a connection of their own, run on each of {} fresh clones, less the\n  \
         same again (catalogs then in shared buffers), CPU per clone",
        probes.first().map_or(0, |p| p.pairs.len()),
        crate::TOUCHED,
    );
    print_probes(samples, s, probes);
}

/// The very first hand-out of the benchmark's first pgfresh run: server connect, template build
/// (unless the server already had it) and first clone.
fn print_first_handout(samples: &[Sample], pgfresh: &Crate) {
    let first = samples.iter().find(|s| s.krate == *pgfresh).and_then(|s| {
        let handouts =
            (s.outcome.timings.iter()).filter(|t| matches!(t.kind, Kind::Cold | Kind::Warm));
        handouts.map(|t| t.took).max()
    });
    println!(
        "  first warm-up run ({}), slowest hand-out: {} (connect + template build unless cached + clone)",
        samples
            .iter()
            .find(|s| s.krate == *pgfresh)
            .map_or("-", |s| s.runner.label()),
        opt(first, millis)
    );
}

/// The edit loop's targets: pgfresh/shared over the warm runs at most this, per runner.
fn edit_target(runner: Runner) -> f64 {
    match runner {
        Runner::Test => 1.2,
        Runner::Nextest => 1.25,
    }
}

/// `met` or `missed` for `a / b` against at most `target`; `-` without both.
fn verdict(a: Option<Duration>, b: Option<Duration>, target: f64) -> &'static str {
    match a.zip(b) {
        Some((a, b)) if !b.is_zero() => {
            if a.as_secs_f64() / b.as_secs_f64() <= target {
                "met"
            } else {
                "missed"
            }
        }
        _ => "-",
    }
}

/// Median of some counts (mean of the middle two for an even count).
fn median_i64(values: &[i64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0),
    }
}

/// `median (max)` of some counts, each shown by `show`.
fn median_max_i64(values: &[i64], show: fn(f64) -> String) -> String {
    match (median_i64(values), values.iter().max()) {
        (Some(m), Some(&x)) => format!("{} ({})", show(m), show(x as f64)),
        _ => "-".to_owned(),
    }
}

/// The hand-outs' p50 of one run (cold and warm).
fn handout_p50(outcome: &Outcome) -> Option<Duration> {
    let took: Vec<Duration> = outcome
        .timings
        .iter()
        .filter(|t| matches!(t.kind, Kind::Cold | Kind::Warm))
        .map(|t| t.took)
        .collect();
    percentile(&took, 50)
}

/// The edit loop: warm runs against the floor with the targets, the back-to-back rounds beside
/// them, the cold first run, and what happened during the pauses.
pub fn print_edit_loop(s: &Settings, samples: &[Sample], edit: &EditLoop, env: &Env) {
    if s.edit_loop == 0 {
        return;
    }
    let pgfresh = crate::main_crates(s)[0];
    let shared = crate::floor_crate(s);
    let pgfresh_suites = crate::edit_crates(s);
    let mut suites = pgfresh_suites.clone();
    suites.push(shared);
    let pause = crate::edit::PAUSE;
    println!(
        "\nEdit loop: per runner, {} runs of pgfresh's main suite, then {} of the floor (shared), a fixed {} s\n  \
         pause between runs and no settle between them (settle before each sequence's first run); warm runs:\n  \
         every run after a pause. The idle work pgfresh's broker does during the pauses (refilling the\n  \
         ready clones, the run's deferred drops) is what is measured.",
        s.edit_loop,
        s.edit_loop,
        pause.as_secs()
    );
    if let Some(list) = s.edit_features {
        println!(
            "  Between the two, the same {} runs of pgfresh[{list}]: the main suite with pgfresh = {{ …,\n  \
             default-features = false, features = [{}] }}, the same tests and server.",
            s.edit_loop,
            toml_features(list)
        );
    }
    println!(
        "  commands, in {} with CARGO_TARGET_DIR={}\n  and DATABASE_URL=$URL DB_URL=$URL PGFRESH_SERVER=url (the server above):",
        env.layout.workspace().display(),
        env.layout.target().display()
    );
    for &runner in &s.runners {
        for krate in &suites {
            let command = Env::command_line(krate, runner);
            println!(
                "    {command}; sleep {}; {command}; … ({} runs)",
                pause.as_secs(),
                s.edit_loop
            );
        }
    }
    if let (Some(cold), Some(&runner)) = (&edit.cold, s.runners.first()) {
        let templates = cold
            .dropped
            .iter()
            .filter(|d| d.starts_with("pgfresh_t_"))
            .count();
        let ready = cold
            .dropped
            .iter()
            .filter(|d| d.starts_with("pgfresh_r_"))
            .count();
        println!(
            "  made cold before the {} pgfresh sequence: waited {:.1} s until no session named 'pgfresh' was\n  \
             connected{}; dropped {} databases named pgfresh_* WITH (FORCE) (templates: {templates}, ready\n  \
             clones: {ready}, others: {}){}",
            runner.label(),
            cold.waited.as_secs_f64(),
            match cold.sessions_left {
                0 => String::new(),
                n => format!(
                    " (gave up after {} s: {n} still connected)",
                    server::COLD_WAIT.as_secs()
                ),
            },
            cold.dropped.len(),
            cold.dropped.len() - templates - ready,
            match cold.failed.len() {
                0 => String::new(),
                _ => format!("; failed: {}", cold.failed.join("; ")),
            }
        );
    }

    let warm = |krate: &Crate, runner: Runner| -> Vec<Duration> {
        edit.sequence(krate, runner)
            .filter(|r| r.pause.is_some())
            .map(|r| r.outcome.wall)
            .collect()
    };
    let mut table = Table::new(&[
        "runner",
        "suite",
        "pgfresh warm",
        "shared warm",
        "pgfresh/shared",
        "target",
        "back-to-back (timed rounds): pgfresh",
        "shared",
        "pgfresh/shared",
        "warm runs each",
    ]);
    for (&runner, krate) in s
        .runners
        .iter()
        .flat_map(|r| pgfresh_suites.iter().map(move |k| (r, k)))
    {
        let (p, f) = (warm(krate, runner), warm(&shared, runner));
        let (pm, fm) = (median(&p), median(&f));
        let target = edit_target(runner);
        let b2b_p = median(&walls(samples, krate, runner));
        let b2b_f = median(&walls(samples, &shared, runner));
        table.row(vec![
            runner.label().to_owned(),
            krate.label(),
            opt(pm, secs),
            opt(fm, secs),
            ratio(pm, fm),
            format!("<= {target:.2}: {}", verdict(pm, fm, target)),
            opt(b2b_p, secs),
            opt(b2b_f, secs),
            ratio(b2b_p, b2b_f),
            format!("{}/{}", p.len(), f.len()),
        ]);
    }
    println!(
        "  median wall of the warm runs, against the timed rounds' medians (no pause between runs):"
    );
    table.print();

    let mut table = Table::new(&[
        "runner",
        "suite",
        "cargo's part: pgfresh",
        "shared",
        "pgfresh - shared",
        "warm runs less it: pgfresh",
        "shared",
        "pgfresh/shared",
    ]);
    for (&runner, krate) in s
        .runners
        .iter()
        .flat_map(|r| pgfresh_suites.iter().map(move |k| (r, k)))
    {
        let part = |krate: &Crate| {
            (edit.cargo.iter())
                .find(|c| c.krate == *krate && c.runner == runner)
                .and_then(|c| median(&c.took))
        };
        let (pc, fc) = (part(krate), part(&shared));
        let less = |warm: Option<Duration>, part: Option<Duration>| {
            warm.zip(part).and_then(|(w, c)| w.checked_sub(c))
        };
        let (pl, fl) = (
            less(median(&warm(krate, runner)), pc),
            less(median(&warm(&shared, runner)), fc),
        );
        table.row(vec![
            runner.label().to_owned(),
            krate.label(),
            opt(pc, secs),
            opt(fc, secs),
            opt(pc.zip(fc).and_then(|(p, f)| p.checked_sub(f)), secs),
            opt(pl, secs),
            opt(fl, secs),
            ratio(pl, fl),
        ]);
    }
    println!(
        "  cargo's own part of a run: the same command with --no-run once the binary is built (cargo\n  \
         checks that nothing needs building; it grows with the suite's dependency graph), median of {}\n  \
         after the loop, and the warm runs' medians less it:",
        edit.cargo.first().map_or(0, |c| c.took.len())
    );
    table.print();

    let mut table = Table::new(&[
        "runner",
        "suite",
        "pgfresh first run",
        "its slowest hand-out",
        "shared first run",
        "pgfresh/shared",
    ]);
    for ((r, &runner), krate) in
        (s.runners.iter().enumerate()).flat_map(|r| pgfresh_suites.iter().map(move |k| (r, k)))
    {
        let first = |krate: &Crate| {
            (edit.runs.iter()).find(|x| x.krate == *krate && x.runner == runner && x.index == 1)
        };
        let (p, f) = (first(krate), first(&shared));
        let slowest = p.and_then(|p| {
            (p.outcome.timings.iter())
                .filter(|t| matches!(t.kind, Kind::Cold | Kind::Warm))
                .map(|t| t.took)
                .max()
        });
        let what = if r == 0 && *krate == pgfresh && edit.cold.is_some() {
            "cold: builds the template"
        } else {
            "after settle"
        };
        let (pw, fw) = (p.map(|x| x.outcome.wall), f.map(|x| x.outcome.wall));
        table.row(vec![
            runner.label().to_owned(),
            krate.label(),
            format!("{} ({what})", opt(pw, secs)),
            opt(slowest, millis),
            opt(fw, secs),
            ratio(pw, fw),
        ]);
    }
    println!("  the first run of each sequence:");
    table.print();

    let mut table = Table::new(&[
        "runner",
        "suite",
        "pauses",
        "busy CPU per pause: median (max): of the cores' time",
        "ready clones pgfresh_r_*: n",
        "MB",
        "pgfresh_* not templates: n",
        "MB",
    ]);
    let all_cores = pause * cores();
    for &runner in &s.runners {
        for krate in &suites {
            let pauses: Vec<Pause> = edit
                .sequence(krate, runner)
                .filter_map(|r| r.pause)
                .collect();
            let busy: Vec<Duration> = pauses.iter().filter_map(|p| p.busy).collect();
            let ready: Vec<ReadySet> = pauses.iter().filter_map(|p| p.ready).collect();
            let field = |f: fn(&ReadySet) -> i64| ready.iter().map(f).collect::<Vec<i64>>();
            let count = |n: f64| format!("{n:.1}");
            let megabytes = |bytes: f64| format!("{:.1}", bytes / 1e6);
            table.row(vec![
                runner.label().to_owned(),
                krate.label(),
                pauses.len().to_string(),
                match (median(&busy), busy.iter().max()) {
                    (Some(m), Some(&x)) => format!(
                        "{} ({}): {:.1} % ({:.1} %)",
                        secs(m),
                        secs(x),
                        100.0 * m.as_secs_f64() / all_cores.as_secs_f64(),
                        100.0 * x.as_secs_f64() / all_cores.as_secs_f64()
                    ),
                    _ => "-".to_owned(),
                },
                median_max_i64(&field(|r| r.ready), count),
                median_max_i64(&field(|r| r.ready_bytes), megabytes),
                median_max_i64(&field(|r| r.all), count),
                median_max_i64(&field(|r| r.all_bytes), megabytes),
            ]);
        }
    }
    println!(
        "  between runs: the machine's busy CPU during each {} s pause (/proc/stat: user+nice+system+irq+\n  \
         softirq+steal; % of {} cores x the pause; shared's is the idle noise), and pgfresh's databases\n  \
         on the server at its end (median (max) over the pauses)",
        pause.as_secs(),
        cores()
    );
    table.print();

    let mut table = Table::new(&[
        "runner",
        "suite",
        "run",
        "wall",
        "passed",
        "hand-out p50",
        "other CPU",
    ]);
    for run in &edit.runs {
        let wall = secs(run.outcome.wall)
            + if run.outcome.compiled {
                " (compiled!)"
            } else {
                ""
            };
        table.row(vec![
            run.runner.label().to_owned(),
            run.krate.label(),
            match run.index {
                1 => "1 (first)".to_owned(),
                i => format!("{i} (after a pause)"),
            },
            wall,
            run.outcome.passed.to_string(),
            opt(handout_p50(&run.outcome), millis),
            run.outcome
                .other_cpu
                .map_or_else(|| "-".to_owned(), |share| format!("{:.0} %", share * 100.0)),
        ]);
    }
    println!("  every run of the loop:");
    table.print();
}

/// The clone comparison: the raw clone of a 1 GB and a one-table template with each
/// `file_copy_method`, then pgfresh's hand-out from each, per source.
pub fn print_clone(report: &CloneReport) {
    println!(
        "\nClone comparison (--clone-xfs): PostgreSQL 18's file_copy_method on XFS with reflinks"
    );
    for line in &report.setup {
        println!("  {line}");
    }
    if !report.raw.is_empty() {
        println!(
            "  raw: CREATE DATABASE … TEMPLATE big|small STRATEGY FILE_COPY on a connection that ran SET\n  \
             file_copy_method = copy|clone, {} times each after one untimed, each then dropped; XFS used:\n  \
             statvfs of the mount (after syncfs) after the CREATE less before it (once the last clone's\n  \
             blocks were free again)",
            crate::xfs::RAW_CREATES
        );
        let mut table = Table::new(&[
            "template",
            "size",
            "method",
            "CREATE p50",
            "min",
            "max",
            "XFS used by one clone (median)",
        ]);
        for raw in &report.raw {
            let size = report
                .sizes
                .iter()
                .find(|(t, _)| *t == raw.template)
                .map_or_else(|| "-".to_owned(), |(_, b)| crate::xfs::mb(*b));
            table.row(vec![
                raw.template.to_owned(),
                size,
                raw.method.to_owned(),
                opt(median(&raw.creates), millis),
                opt(minimum(&raw.creates), millis),
                opt(raw.creates.iter().max().copied(), millis),
                median_i64(&raw.used).map_or_else(|| "-".to_owned(), |b| crate::xfs::mb(b as i64)),
            ]);
        }
        table.print();
    }
    if !report.handouts.is_empty() {
        println!(
            "  pgfresh's hand-out (around HARNESS.test_db().await) with PGFRESH_READY=0 and PGFRESH_BROKER=off:\n  \
             every hand-out is one clone made when the test asks; {} tests x {} runs under cargo test per\n  \
             template and source, after an untimed first run that builds the template; warm: every hand-out\n  \
             but each test thread's first",
            crate::xfs::HANDOUT_TESTS,
            crate::xfs::HANDOUT_RUNS
        );
        let mut table = Table::new(&[
            "source",
            "template",
            "warm n",
            "warm p50",
            "p99",
            "max",
            "cold p50",
            "suite wall (median)",
            "first run (builds the template)",
        ]);
        let kinds = |source: &str, krate: &Crate, kind: Kind| -> Vec<Duration> {
            (report.handouts.iter())
                .filter(|h| h.source == source && h.krate == *krate && h.round > 0)
                .flat_map(|h| h.outcome.timings.iter())
                .filter(|t| t.kind == kind)
                .map(|t| t.took)
                .collect()
        };
        let sources: Vec<&str> = {
            let mut seen: Vec<&str> = Vec::new();
            for h in &report.handouts {
                if !seen.contains(&h.source) {
                    seen.push(h.source);
                }
            }
            seen
        };
        for &source in &sources {
            for krate in crate::xfs::crates() {
                let warm = kinds(source, &krate, Kind::Warm);
                let cold = kinds(source, &krate, Kind::Cold);
                let runs: Vec<Duration> = (report.handouts.iter())
                    .filter(|h| h.source == source && h.krate == krate && h.round > 0)
                    .map(|h| h.outcome.wall)
                    .collect();
                let first = (report.handouts.iter())
                    .find(|h| h.source == source && h.krate == krate && h.round == 0)
                    .map(|h| h.outcome.wall);
                table.row(vec![
                    source.to_owned(),
                    krate.package(),
                    warm.len().to_string(),
                    opt(percentile(&warm, 50), millis),
                    opt(percentile(&warm, 99), millis),
                    opt(warm.iter().max().copied(), millis),
                    opt(percentile(&cold, 50), millis),
                    opt(median(&runs), secs),
                    opt(first, secs),
                ]);
            }
        }
        table.print();
        for &source in &sources {
            let [big, small] = crate::xfs::crates();
            let p50 = |krate: &Crate| percentile(&kinds(source, krate, Kind::Warm), 50);
            let (b, sm) = (p50(&big), p50(&small));
            let line = match b.zip(sm) {
                Some((b, sm)) => {
                    let diff = b.as_secs_f64() - sm.as_secs_f64();
                    format!(
                        "{:+.1} ms (target <= 100 ms: {})",
                        diff * 1000.0,
                        if diff <= 0.1 { "met" } else { "missed" }
                    )
                }
                None => "-".to_owned(),
            };
            println!("  {source} source: warm hand-out p50, big - small: {line}");
        }
    }
    if let Some(stop) = &report.local_stop {
        println!("  {stop}");
    }
    if !report.commands.is_empty() {
        println!("  commands:");
        for command in &report.commands {
            println!("    {command}");
        }
    }
    if let Some(e) = &report.error {
        println!("  FAILED: {e}");
    }
    for left in &report.cleanup {
        println!("  cleanup: {left}");
    }
}
