//! Benchmarks pgfresh against `#[sqlx::test]`: the same tests over the same migrations, on the
//! same PostgreSQL server, under `cargo test` and `cargo nextest run`.
//!
//! ```text
//! cargo run --release --example bench                # the full run (several minutes)
//! cargo run --release --example bench -- --quick     # a smoke run
//! cargo run --release --example bench -- --help      # every flag
//! ```
//!
//! # What it builds
//!
//! Under `target/pgfresh-bench/` (never committed) it writes:
//! - `pgfresh/`: a snapshot of the pgfresh checkout being measured (`--pgfresh`, default this
//!   crate), so that edits made while the benchmark runs cannot trigger a rebuild mid-run;
//! - `ws/migrations/mNNNN/`: a synthetic migration set of N migrations, 4 DDL statements each
//!   (`CREATE TABLE`, `CREATE INDEX`, `ALTER TABLE … ADD COLUMN`, `ADD CONSTRAINT … CHECK`);
//! - `ws/crates/`: two test crates per migration set (four for the main one, with the floor's
//!   `shared_…` and the naive harness's `naive_…`, see 5. below), each with the same trivial
//!   tests (insert
//!   one row into one of the tables, read it back): `pgfresh_…` gets its database from
//!   `static HARNESS: Harness = Harness::new(&MIGRATOR)` and appends each hand-out's latency
//!   (`Instant` around `HARNESS.test_db().await`), and how long dropping the `TestDb` took at
//!   the end of the test, to the file named by `PGFRESH_BENCH_TIMINGS`;
//!   `sqlx_…` uses `#[sqlx::test(migrations = "…")]`, with the sqlx version of pgfresh's lock file;
//! - `ws/crates/attribute_…` (`--attribute`, on by default): the main suite's tests written
//!   with pgfresh's attribute, `#[pgfresh::test(migrations = "…")] async fn tNNNN(pool: PgPool)`,
//!   in a crate whose only dependency is `pgfresh` (the bodies use `pgfresh::sqlx`). Its
//!   migrations are the main suite's, so it clones the same template;
//! - `ws/crates/{attribute,sqlx}_…_fNNNN` (`--fixture-rows`, 1,000 by default): the fixture
//!   suite. The main suite's tests, each also reading one row of one of three fixture files
//!   (`src/fixtures/{a,b,c}.sql` beside the tests, where both attributes look for a bare
//!   name: `--fixture-rows` rows each, into `bench_0001`..`bench_0003`, `--rows-per-insert`
//!   rows (100) per `INSERT`), under `#[pgfresh::test(migrations = "…", fixtures("a", "b", "c"))]` (applied
//!   once, into the template) and `#[sqlx::test(migrations = "…", fixtures("a", "b", "c"))]`
//!   (applied to every test's database);
//! - `ws/crates/xfs_{big,small}_m0001_t0010` and `ws/migrations/xfs_{big,small}/`
//!   (`--clone-xfs` only): the clone comparison's suites (7. below), pgfresh's timed fixture
//!   over one migration that creates a table of about 1 GB, or one empty table.
//!
//! All crates share one `CARGO_TARGET_DIR` and are compiled once with `--release`, before
//! anything is timed; a timed run that compiles anything is flagged `(compiled!)`.
//!
//! # What it measures
//!
//! One server serves every run: `DB_URL` when set, otherwise a throwaway cluster from the newest
//! `/usr/lib/postgresql/<major>/bin` (on `/dev/shm`, `fsync`, `synchronous_commit` and
//! `full_page_writes` off, scram password, a free loopback port; run as `postgres` when the
//! benchmark runs as root), removed at the end. Both suites get the same URL: sqlx as
//! `DATABASE_URL`, pgfresh as `DB_URL` with `PGFRESH_SERVER=url`.
//!
//! 1. Each suite runs once per runner untimed (warm-up: pgfresh builds its template there, which
//!    later runs reuse, as they would in a developer's edit-test loop).
//! 2. `--rounds` rounds, each running pgfresh, sqlx, the floor and the naive harness (5.), the
//!    attribute suite and the fixture suite (pgfresh, then sqlx) under each runner: the wall
//!    time of the whole
//!    `cargo test --release -p …` / `cargo nextest run --release -p …` command. Between runs
//!    the benchmark waits until no session on the server is active, so background work one
//!    suite leaves (drops, refills) is not billed to the next.
//! 3. The medians, the pgfresh/sqlx ratio per runner, and pgfresh's hand-out latency p50/p99,
//!    split into cold hand-outs (started before the process had its first database: every
//!    test under nextest) and warm ones, and how long the test spent dropping its `TestDb`.
//!    The attribute suite's median against the `Harness::test_db` suite's (target: no slower,
//!    within noise), with the per-round ratios and the harness suite's own spread; the fixture
//!    suite's pgfresh/sqlx ratio per runner beside its target (≤ 0.2 under `cargo test`,
//!    ≤ 0.3 under nextest), and what the fixtures add per test to each tool.
//! 4. Scaling: smaller suites (`--scale-tests`, 40) over `--scale` migration counts, under
//!    `cargo test`: per-test cost (median suite wall / tests) and cost(largest)/cost(smallest).
//! 5. The floor, to tell what pgfresh could still save from what any harness pays here: a
//!    third suite (`shared_…`) runs the same tests on one database migrated beforehand (no
//!    database per test) in every round; a fourth (`naive_…`, the naive harness) runs them
//!    each on a clone of a template the benchmark migrated beforehand, made when the test asks
//!    and dropped when it ends by a thread of the test process, with nothing around that (no
//!    ready clones, markers, locks or sweeps): its CPU per test less the floor's, under `cargo
//!    test`, is what a clone per test costs in a run. And on the idle server, per migration
//!    count, a template is cloned (`STRATEGY FILE_COPY`) and the clone dropped 20 times, timed,
//!    with the CPU it took; then 40 fresh clones each get the first test's statements on a
//!    connection of their own, twice, and the CPU of the first pass less the second's is what a
//!    test's first touch of a fresh clone costs (its catalogs are not in shared buffers yet).
//!    From these: the least time any harness that clones a database per test could take on
//!    this machine (the floor's wall time, or (the floor run's CPU + tests × a clone per
//!    test's CPU in a run) / cores if that is longer; the idle server's clone, drop and first
//!    touch when there is no naive run), and the least per-test cost at the smallest migration
//!    count for which the scaling target could hold.
//! 6. The edit loop (`--edit-loop N`, 5 by default, 3 with `--quick`, 0 skips it): a developer's
//!    edit, run, edit, run, in which pgfresh's broker uses the idle time between runs (it
//!    refills the ready clones, sized by the last run, and does the run's deferred drops). Per
//!    runner, pgfresh's main suite and then the floor run N times each with a fixed 8 s pause
//!    between runs and no settle (settle only before a sequence's first run). Before the first
//!    runner's pgfresh sequence pgfresh is made cold: the benchmark waits (up to 30 s) until no
//!    session named `pgfresh` is connected, then drops every `pgfresh_*` database (templates,
//!    ready clones, test databases) `WITH (FORCE)`, so that sequence's first run builds the
//!    template. Printed: the median of the warm runs (every run after a pause), pgfresh/shared
//!    per runner beside its target (≤ 1.2 under `cargo test`, ≤ 1.25 under nextest) and the
//!    back-to-back ratio of the timed rounds (runs with no pause); the cold first run beside
//!    the floor's first run; per pause, the machine's busy CPU (`/proc/stat`) and pgfresh's
//!    databases at its end (ready clones `pgfresh_r_*`, and every `pgfresh_*` that is not a
//!    template: count and MB), median and max.
//! 7. The clone comparison (`--clone-xfs`, off unless given, root only; see `xfs.rs`): on a
//!    6 GB sparse XFS image loop-mounted under `target/pgfresh-bench/xfs/`, a PostgreSQL 18
//!    cluster (`scripts/pg-bin.sh 18`) started like the throwaway one above; `CREATE DATABASE
//!    … STRATEGY FILE_COPY` from a 1 GB template and a one-table template with
//!    `file_copy_method` `copy` and `clone` (5 each: the median, and the XFS space one clone
//!    takes); then pgfresh's hand-out from the same two templates (suites `xfs_big_…` and
//!    `xfs_small_…`: 10 tests each, `SELECT 1`), from the url source (that cluster) and the
//!    local source (`PGFRESH_SERVER=local`, `PGFRESH_PG_BIN` the PostgreSQL 18 binaries,
//!    `PGFRESH_RUN_DIR` on the mount), `PGFRESH_READY=0` and `PGFRESH_BROKER=off` so that every
//!    hand-out is one clone made when the test asks: the hand-out p50 per template and source,
//!    and big - small (target ≤ 100 ms). The clusters are stopped and the image unmounted and
//!    deleted at the end, also after a failure.

mod args;
mod context;
mod cpu;
mod edit;
mod generate;
mod report;
mod runner;
mod server;
mod xfs;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use args::{Args, Parsed, Runner, Settings};
use cpu::Meter;
use generate::{Crate, Layout, Suite, naive_template, roundtrip_sql, shared_database};
use report::{Probe, Sample};
use runner::Env;
use server::Server;

fn main() -> ExitCode {
    let resolved = match Args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Help(usage)) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => (*args).resolve(),
        Err(e) => Err(e),
    };
    let settings = match resolved {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    match bench(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(s: &Settings) -> Result<(), String> {
    let started = Instant::now();
    let layout = Layout {
        root: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pgfresh-bench"),
    };
    generate::write_all(&layout, &s.pgfresh, &all_crates(s), s.rows_per_insert)
        .map_err(|e| format!("writing {}: {e}", layout.root.display()))?;
    let server = Server::start()?;
    let mut bench = Bench::new(s, layout, &server)?;
    let version = bench.block_on(server::version(&server.url))?;
    let build = Instant::now();
    for krate in &all_crates(s) {
        progress(&format!("building {}", krate.package()));
        bench.env.build(krate)?;
    }
    let build = build.elapsed();
    let made = [shared_database(s.migrations), naive_template(s.migrations)];
    for database in &made {
        progress(&format!("creating {database}"));
        bench.block_on_str(server::create_migrated(
            &server.url,
            database,
            &bench.env.layout.migrations(s.migrations),
        ))?;
    }
    bench.warm_up()?;
    bench.timed_rounds()?;
    bench.scaling_rounds()?;
    let edit = bench.edit_loop()?;
    for database in &made {
        bench.block_on(server::drop_database(&server.url, database))?;
    }
    let probes = bench.probes()?;
    let server_description = format!("{}; PostgreSQL {version}", server.description);
    server.stop();
    let clone = s.clone_xfs.then(|| bench.clone_comparison());
    context::print_header(s, &server_description, build);
    report::print_all(s, &bench.samples, &probes);
    report::print_edit_loop(s, &bench.samples, &edit, &bench.env);
    if let Some(clone) = &clone {
        report::print_clone(clone);
    }
    context::print_reproduce(s, &bench.env);
    println!(
        "\nwhole benchmark: {:.0?} (build included)",
        started.elapsed()
    );
    match clone.and_then(|c| c.error) {
        Some(e) => Err(format!("the clone comparison: {e}")),
        None => Ok(()),
    }
}

/// The two crates of the main comparison, pgfresh first.
fn main_crates(s: &Settings) -> [Crate; 2] {
    [Suite::Pgfresh, Suite::Sqlx].map(|suite| Crate {
        suite,
        migrations: s.migrations,
        tests: s.tests,
        work: 0,
        fixtures: 0,
        features: None,
    })
}

/// The floor: the main suite's tests on one shared database.
fn floor_crate(s: &Settings) -> Crate {
    Crate {
        suite: Suite::Shared,
        ..main_crates(s)[0]
    }
}

/// The naive harness: the main suite's tests, each cloning the benchmark's template itself.
fn naive_crate(s: &Settings) -> Crate {
    Crate {
        suite: Suite::Naive,
        ..main_crates(s)[0]
    }
}

/// The main suite's tests written with `#[pgfresh::test]`, unless `--attribute off`.
fn attribute_crate(s: &Settings) -> Option<Crate> {
    s.attribute.then(|| Crate {
        suite: Suite::Attribute,
        ..main_crates(s)[0]
    })
}

/// The fixture suite, `#[pgfresh::test]` then `#[sqlx::test]`, unless `--fixture-rows 0`.
fn fixture_crates(s: &Settings) -> Option<[Crate; 2]> {
    (s.fixture_rows > 0).then(|| {
        [Suite::Attribute, Suite::Sqlx].map(|suite| Crate {
            suite,
            fixtures: s.fixture_rows,
            ..main_crates(s)[0]
        })
    })
}

/// Every crate of a round, in the order every round runs them under each runner: the main
/// crates, the floor and the naive harness, then the attribute suite, then the fixture suite.
fn round_crates(s: &Settings) -> Vec<Crate> {
    let [pgfresh, sqlx] = main_crates(s);
    let mut all = vec![pgfresh, sqlx, floor_crate(s), naive_crate(s)];
    all.extend(attribute_crate(s));
    all.extend(fixture_crates(s).into_iter().flatten());
    all
}

/// pgfresh's main suite with `--work` ms in every test body, when asked for.
fn work_crate(s: &Settings) -> Option<Crate> {
    (s.work > 0).then_some(Crate {
        work: s.work,
        ..main_crates(s)[0]
    })
}

/// The scaling crates that are not already main crates, pgfresh then sqlx per count.
fn scale_crates(s: &Settings) -> Vec<Crate> {
    let main = main_crates(s);
    s.scale
        .iter()
        .flat_map(|&migrations| {
            [Suite::Pgfresh, Suite::Sqlx].map(|suite| Crate {
                suite,
                migrations,
                tests: s.scale_tests,
                work: 0,
                fixtures: 0,
                features: None,
            })
        })
        .filter(|c| !main.contains(c))
        .collect()
}

/// The edit loop's pgfresh suites: the main one, then the same built with `--edit-features`
/// only, when asked for (which [`Settings`] allows only with the edit loop).
fn edit_crates(s: &Settings) -> Vec<Crate> {
    let pgfresh = main_crates(s)[0];
    let mut all = vec![pgfresh];
    all.extend(s.edit_features.map(|list| Crate {
        features: Some(list),
        ..pgfresh
    }));
    all
}

fn all_crates(s: &Settings) -> Vec<Crate> {
    let mut all = round_crates(s);
    all.extend(edit_crates(s).into_iter().skip(1));
    all.extend(work_crate(s));
    all.extend(scale_crates(s));
    if s.clone_xfs {
        all.extend(xfs::crates());
    }
    all
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// The runs, in order, and what they recorded.
struct Bench<'a> {
    settings: &'a Settings,
    env: Env,
    rt: tokio::runtime::Runtime,
    samples: Vec<Sample>,
}

impl<'a> Bench<'a> {
    fn new(settings: &'a Settings, layout: Layout, server: &Server) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let env = Env {
            layout,
            url: server.url.clone(),
            server_pid: server.pid(),
        };
        Ok(Self {
            settings,
            env,
            rt,
            samples: Vec::new(),
        })
    }

    fn block_on<T>(&self, probe: impl Future<Output = sqlx::Result<T>>) -> Result<T, String> {
        self.rt.block_on(probe).map_err(|e| format!("server: {e}"))
    }

    fn block_on_str<T>(&self, work: impl Future<Output = Result<T, String>>) -> Result<T, String> {
        self.rt.block_on(work)
    }

    /// Runs one suite, then waits for the server to be idle; round 0 is the warm-up.
    fn record(&mut self, krate: Crate, runner: Runner, round: usize) -> Result<(), String> {
        let tag = match round {
            0 => "warmup".to_owned(),
            _ => format!("r{round}"),
        };
        progress(&format!("{tag}: {} {}", runner.label(), krate.package()));
        let outcome = self.env.run(&krate, runner, &tag)?;
        let after = self.block_on(server::settle(&self.env.url))?;
        self.samples.push(Sample {
            krate,
            runner,
            round,
            outcome,
            after,
        });
        Ok(())
    }

    /// Every suite once per runner it will be timed under, untimed.
    fn warm_up(&mut self) -> Result<(), String> {
        for runner in self.settings.runners.clone() {
            for krate in round_crates(self.settings) {
                self.record(krate, runner, 0)?;
            }
        }
        for krate in work_crate(self.settings)
            .into_iter()
            .chain(scale_crates(self.settings))
        {
            self.record(krate, Runner::Test, 0)?;
        }
        Ok(())
    }

    /// Per round and runner: pgfresh, sqlx, the floor, the attribute suite, the fixture suite
    /// (pgfresh, sqlx); then the warm-set suite under `cargo test`.
    fn timed_rounds(&mut self) -> Result<(), String> {
        for round in 1..=self.settings.rounds {
            for runner in self.settings.runners.clone() {
                for krate in round_crates(self.settings) {
                    self.record(krate, runner, round)?;
                }
            }
            if let Some(krate) = work_crate(self.settings) {
                self.record(krate, Runner::Test, round)?;
            }
        }
        Ok(())
    }

    /// Per round and migration count: pgfresh, then sqlx, under `cargo test`.
    fn scaling_rounds(&mut self) -> Result<(), String> {
        for round in 1..=self.settings.rounds {
            for &migrations in &self.settings.scale.clone() {
                for suite in [Suite::Pgfresh, Suite::Sqlx] {
                    let krate = Crate {
                        suite,
                        migrations,
                        tests: self.settings.scale_tests,
                        work: 0,
                        fixtures: 0,
                        features: None,
                    };
                    self.record(krate, Runner::Test, round)?;
                }
            }
        }
        Ok(())
    }

    /// Per migration count (the main one and the scaling ones): a fresh template, cloned and
    /// the clone dropped [`PROBE_PAIRS`] times on the idle server, with the CPU it took.
    fn probes(&self) -> Result<Vec<Probe>, String> {
        let mut counts = self.settings.scale.clone();
        counts.push(self.settings.migrations);
        counts.sort_unstable();
        counts.dedup();
        let url = &self.env.url;
        let mut probes = Vec::new();
        for migrations in counts {
            let template = format!("bench_probe_m{migrations:04}");
            progress(&format!("clone and drop {template} {PROBE_PAIRS} times"));
            let dir = self.env.layout.migrations(migrations);
            self.block_on_str(server::create_migrated(url, &template, &dir))?;
            self.block_on(server::settle(url))?;
            let meter = Meter::start(self.env.server_pid);
            let pairs = self.block_on(server::clone_and_drop(url, &template, PROBE_PAIRS))?;
            let cpu = meter.and_then(|m| m.used()).map(|c| c / pairs.len() as u32);
            progress(&format!("touch {TOUCHED} clones of {template} twice"));
            let first_touch = self.first_touch(&template)?;
            self.block_on(server::drop_database(url, &template))?;
            probes.push(Probe {
                migrations,
                pairs,
                cpu,
                first_touch,
            });
        }
        Ok(probes)
    }

    /// How much more CPU a test's statements (those of the suites' first test, on a connection
    /// of its own) take on a fresh clone than on a database already used, per clone: on a
    /// fresh clone the catalogs are not in the server's shared buffers yet. Every harness that
    /// clones a database per test pays it on top of the clone. [`TOUCHED`] clones, each touched
    /// once, then each again.
    fn first_touch(&self, template: &str) -> Result<Option<std::time::Duration>, String> {
        let url = &self.env.url;
        let names = self.block_on(server::clone_many(url, template, TOUCHED))?;
        let (insert, select) = roundtrip_sql(1);
        let mut passes = [None, None];
        for pass in &mut passes {
            self.block_on(server::settle(url))?;
            let meter = Meter::start(self.env.server_pid);
            self.block_on(server::touch(url, &names, &insert, &select))?;
            // The ended backends' CPU reaches the postmaster's counters once it has reaped them.
            self.block_on(server::settle(url))?;
            *pass = meter.and_then(|m| m.used());
        }
        for name in &names {
            self.block_on(server::drop_database(url, name))?;
        }
        Ok(passes[0]
            .zip(passes[1])
            .map(|(first, again)| first.saturating_sub(again) / TOUCHED as u32))
    }
}

/// Clone-and-drop pairs timed per migration count.
const PROBE_PAIRS: usize = 20;
/// Fresh clones touched per migration count (see `first_touch`): with CPU counted in 10 ms
/// ticks, enough for the difference to show.
pub const TOUCHED: usize = 40;
