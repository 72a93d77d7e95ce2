//! How much of the machine went elsewhere during a run: CPU time used by processes that are
//! neither the run (cargo and everything it waited for) nor the local server. On a 2-core machine
//! this is the noise that matters, so every run reports it. The run's and the server's own CPU
//! time is what the floor (see the crate docs) is computed from.

use std::fs;
use std::time::Duration;

/// Linux reports process and system CPU time in `USER_HZ` ticks, fixed at 100 per second.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU counters taken just before a run.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    system: u64,
    accounted: u64,
    server: Option<u32>,
}

impl Meter {
    /// Starts measuring; `server` is the postmaster's pid when this benchmark runs the server.
    pub fn start(server: Option<u32>) -> Option<Self> {
        Some(Self {
            system: system_busy()?,
            accounted: accounted(server)?,
            server,
        })
    }

    /// The share of all cores' time, over `wall`, that went to other processes (including
    /// time the hypervisor gave to other machines, `steal`).
    pub fn other_share(&self, wall: Duration) -> Option<f64> {
        let system = system_busy()?.checked_sub(self.system)?;
        let ours = accounted(self.server)?.checked_sub(self.accounted)?;
        let other = system.saturating_sub(ours) as f64 / TICKS_PER_SECOND;
        Some(other / (wall.as_secs_f64() * f64::from(cores())))
    }

    /// CPU time used since the start by this process, everything it waited for (the run) and
    /// the server, client and server together; `None` unless this benchmark runs the server.
    pub fn used(&self) -> Option<Duration> {
        self.server?;
        let ticks = accounted(self.server)?.checked_sub(self.accounted)?;
        Some(Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND))
    }
}

/// The machine's cores.
pub fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// This process's and the server's CPU time, children included.
fn accounted(server: Option<u32>) -> Option<u64> {
    let own = tree_ticks("self")?;
    let server = match server {
        Some(pid) => tree_ticks(&pid.to_string())? + live_children_ticks(pid),
        None => 0,
    };
    Some(own + server)
}

/// The machine's busy CPU time since boot, all cores (`/proc/stat`'s first line: user, nice,
/// system, irq, softirq and steal): the difference of two readings is what the machine did
/// in between, whoever did it.
pub fn machine_busy() -> Option<Duration> {
    Some(Duration::from_secs_f64(
        system_busy()? as f64 / TICKS_PER_SECOND,
    ))
}

/// Busy ticks of all cores: `user nice system idle iowait irq softirq steal` minus idle and iowait.
fn system_busy() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = fields[..] else {
        return None;
    };
    Some(user + nice + system + irq + softirq + steal)
}

/// `utime + stime + cutime + cstime` of a process: itself and every child it has waited for.
fn tree_ticks(pid: &str) -> Option<u64> {
    let fields = stat_fields(pid)?;
    (11..15).map(|i| fields.get(i)?.parse::<u64>().ok()).sum()
}

/// CPU time of the server's children that are still running (checkpointer, walwriter, the
/// backends of open connections); finished ones are already in the postmaster's `cutime`.
fn live_children_ticks(parent: u32) -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| {
            let fields = stat_fields(&pid)?;
            (fields.get(1)?.parse::<u32>().ok()? == parent).then_some(())?;
            tree_ticks(&pid)
        })
        .sum()
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is the state, 1 the
/// parent pid, 11 to 14 utime, stime, cutime, cstime.
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}
