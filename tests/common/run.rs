//! The outcome of one run of the `pgfresh` command, for the tests that run it (cli,
//! check_cli). They take this file alone (`#[path = "common/run.rs"] mod run;`): they are built
//! on Windows too, and the rest of tests/common is Unix-only.
#![allow(dead_code)] // each test file uses the parts it needs

use std::process::Output;

/// A finished `pgfresh` run: its exit code and what it printed.
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
