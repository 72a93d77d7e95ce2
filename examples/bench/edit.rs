//! The edit loop: a developer's edit, run, edit, run. Between two runs the machine is idle for
//! a while (the developer edits), and pgfresh's broker uses that time: it refills the ready
//! clones, sized by the last run, and does the run's deferred drops. So here each suite runs
//! [`Settings::edit_loop`](crate::args::Settings) times in a row with a fixed [`PAUSE`] between
//! runs and no `settle` (the idle work is what is measured), pgfresh's main suite (and, with
//! `--edit-features`, the same built with only those features of pgfresh) against the floor
//! (`shared_…`), under each runner; the first pgfresh sequence starts cold. At the end,
//! cargo's own part of a run is timed ([`CargoPart`]): what each suite's dependency graph costs
//! every run before its first test starts.

use std::time::Duration;

use crate::args::Runner;
use crate::cpu;
use crate::generate::Crate;
use crate::runner::Outcome;
use crate::server::{self, Cold, ReadySet};
use crate::{Bench, progress};

/// The developer's edit between two runs.
pub const PAUSE: Duration = Duration::from_secs(8);

/// One pause of the loop, read at its end, just before the next run.
#[derive(Debug, Clone, Copy)]
pub struct Pause {
    /// The machine's busy CPU time during the pause (every process: the broker's idle work,
    /// and whatever else ran).
    pub busy: Option<Duration>,
    /// pgfresh's databases on the server at the pause's end.
    pub ready: Option<ReadySet>,
}

/// One run of the loop.
#[derive(Debug, Clone)]
pub struct EditRun {
    pub krate: Crate,
    pub runner: Runner,
    /// 1 for the sequence's first run (after `settle`), then 2, 3, … (each after a pause).
    pub index: usize,
    /// The pause before this run (none before the first).
    pub pause: Option<Pause>,
    pub outcome: Outcome,
}

/// How many times each suite's [`CargoPart`] is timed.
const CARGO_PART_RUNS: usize = 3;

/// Cargo's own part of one suite's runs under one runner: the run's command with `--no-run`,
/// once the binary is built ([`Env::no_run`](crate::runner::Env::no_run)), timed
/// [`CARGO_PART_RUNS`] times after the loop, once the server has settled.
#[derive(Debug, Clone)]
pub struct CargoPart {
    pub krate: Crate,
    pub runner: Runner,
    pub took: Vec<Duration>,
}

/// What the loop recorded.
#[derive(Debug, Clone, Default)]
pub struct EditLoop {
    pub runs: Vec<EditRun>,
    /// Per suite and runner.
    pub cargo: Vec<CargoPart>,
    /// How pgfresh was made cold before the first runner's pgfresh sequence, whose first run
    /// is then the cold first run.
    pub cold: Option<Cold>,
}

impl EditLoop {
    /// The runs of one suite under one runner, in order.
    pub fn sequence<'a>(
        &'a self,
        krate: &'a Crate,
        runner: Runner,
    ) -> impl Iterator<Item = &'a EditRun> {
        self.runs
            .iter()
            .filter(move |r| r.krate == *krate && r.runner == runner)
    }
}

impl Bench<'_> {
    /// Per runner: pgfresh's main suite (then its `--edit-features` build), then the floor,
    /// each [`Settings::edit_loop`] times with a [`PAUSE`] between runs; `settle` only before
    /// each sequence's first run. Before the first runner's pgfresh sequence every `pgfresh_`
    /// database is dropped (see [`server::make_cold`]), so its first run builds the template.
    ///
    /// [`Settings::edit_loop`]: crate::args::Settings
    pub fn edit_loop(&mut self) -> Result<EditLoop, String> {
        let mut recorded = EditLoop::default();
        let runs = self.settings.edit_loop;
        if runs == 0 {
            return Ok(recorded);
        }
        let pgfresh = crate::main_crates(self.settings)[0];
        let mut suites = crate::edit_crates(self.settings);
        suites.push(crate::floor_crate(self.settings));
        let url = self.env.url.clone();
        for (r, runner) in self.settings.runners.clone().into_iter().enumerate() {
            for &krate in &suites {
                if r == 0 && krate == pgfresh {
                    progress("edit loop: making pgfresh cold (no broker, no pgfresh_* database)");
                    let cold = self.block_on(server::make_cold(&url))?;
                    progress(&format!(
                        "edit loop: waited {:.1?} for pgfresh's sessions, dropped {} databases",
                        cold.waited,
                        cold.dropped.len()
                    ));
                    recorded.cold = Some(cold);
                }
                self.block_on(server::settle(&url))?;
                for index in 1..=runs {
                    let pause = (index > 1).then(|| self.pause(&url));
                    progress(&format!(
                        "edit loop {index}/{runs}: {} {}",
                        runner.label(),
                        krate.package()
                    ));
                    let outcome = self.env.run(&krate, runner, &format!("edit{index}"))?;
                    recorded.runs.push(EditRun {
                        krate,
                        runner,
                        index,
                        pause,
                        outcome,
                    });
                }
            }
        }
        self.block_on(server::settle(&url))?;
        // Once the broker's idle work is done, so that it does not compete.
        for runner in self.settings.runners.clone() {
            for &krate in &suites {
                let took = (0..CARGO_PART_RUNS)
                    .map(|_| self.env.no_run(&krate, runner))
                    .collect::<Result<_, _>>()?;
                recorded.cargo.push(CargoPart {
                    krate,
                    runner,
                    took,
                });
            }
        }
        Ok(recorded)
    }

    /// Sleeps [`PAUSE`], reading the machine's busy CPU time around it, then pgfresh's
    /// databases on the server.
    fn pause(&self, url: &str) -> Pause {
        let before = cpu::machine_busy();
        std::thread::sleep(PAUSE);
        let after = cpu::machine_busy();
        let busy = after.zip(before).and_then(|(a, b)| a.checked_sub(b));
        let ready = self.block_on(server::ready_set(url)).ok();
        Pause { busy, ready }
    }
}
