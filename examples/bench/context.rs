//! What a reader needs besides the numbers: when, on what, against which code, and how to run
//! it again.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::args::Settings;
use crate::generate;
use crate::runner::Env;

/// The settings, the date, the machine, the server and the code measured.
pub fn print_header(s: &Settings, server: &str, build: Duration) {
    println!(
        "pgfresh vs #[sqlx::test]: {} tests over {} migrations ({} DDL statements), {} timed rounds",
        s.tests,
        s.migrations,
        4 * s.migrations,
        s.rounds
    );
    let suites: Vec<String> = crate::round_crates(s).iter().map(|c| c.label()).collect();
    println!(
        "suites in every round, under each runner: {}",
        suites.join(", ")
    );
    println!("date: {}", chrono::Local::now().format("%Y-%m-%d %H:%M %Z"));
    println!("machine: {}", machine());
    println!("server: {server}");
    println!(
        "pgfresh: {} ({}), sqlx {}",
        s.pgfresh.display(),
        git_describe(&s.pgfresh),
        generate::locked_sqlx(&s.pgfresh).unwrap_or_default()
    );
    println!("pgfresh settings: {}", pgfresh_env());
    println!("profile: --release for both suites, built before timing ({build:.0?})");
}

/// The command that reruns this benchmark, and the commands of one run by hand.
pub fn print_reproduce(s: &Settings, env: &Env) {
    println!("\nreproduce");
    println!("  cargo run --release --example bench -- {}", s.flags());
    println!("  # one run by hand, once the benchmark has generated and built the suites;");
    println!("  # URL: DB_URL, or a server started like the one above");
    println!(
        "  cd {} && export CARGO_TARGET_DIR={}",
        env.layout.workspace().display(),
        env.layout.target().display()
    );
    println!("  export DATABASE_URL=$URL DB_URL=$URL PGFRESH_SERVER=url");
    for krate in &crate::round_crates(s) {
        println!(
            "  cargo test --release -p {0}; cargo nextest run --release -p {0}",
            krate.package()
        );
    }
    println!(
        "  # the shared and naive suites need {} and {}: created and migrated by the benchmark,\n  \
         # dropped at its end",
        generate::shared_database(s.migrations),
        generate::naive_template(s.migrations)
    );
}

/// Core count, CPU model, memory and kernel, from `/proc`.
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "?".to_owned(), |v| v.trim().to_owned())
    };
    format!(
        "{} cores, {}, {} RAM, Linux {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        field(&read("/proc/cpuinfo"), "model name"),
        field(&read("/proc/meminfo"), "MemTotal"),
        read("/proc/sys/kernel/osrelease").trim()
    )
}

/// `git describe --always --dirty` of the measured checkout.
fn git_describe(dir: &Path) -> String {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "not a git checkout".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// The `PGFRESH_*` variables the suites inherit besides `PGFRESH_SERVER`.
fn pgfresh_env() -> String {
    let set: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PGFRESH_") && k != "PGFRESH_SERVER")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if set.is_empty() {
        "library defaults (no PGFRESH_* set besides PGFRESH_SERVER=url)".to_owned()
    } else {
        set.join(" ")
    }
}
