//! A test process's side of the broker (the broker itself is [`crate::broker`]).
//!
//! Under `cargo nextest run` every test is a process, and a process that claims its own
//! database pays for an administrative connection (a backend start and a password exchange),
//! an owner lock, a sweep, and a wait at exit for its database's drop. Instead, the first
//! process of a run starts a broker, and every process asks it for a database over a Unix
//! socket in the broker's directory, then keeps that socket open for as long as its test holds
//! the database: the [`Lease`]. Closing it (which the kernel also does when the process dies,
//! however it dies) tells the broker to drop the database. A test process then opens only its
//! own pool and waits for nothing at exit.
//!
//! The broker is found by the environment that chooses and configures the server (every
//! `PGFRESH_*`, `DB_URL`, `DATABASE_URL` and `PG*` variable, and the working directory): tests
//! run with the same environment share one, tests run with another get their own.
//!
//! Wherever the broker cannot help (`PGFRESH_BROKER=off`, it cannot be started, it answers with
//! an error, or it is gone when a test ends) the process does the work itself, as it would
//! without a broker; every failure a user can meet is reported by that path, in its own words.
//! So does the one process at a time the broker gives the [`Turn`] to build a template that is
//! not built yet.

//!
//! [`claim`] holds what a claim is answered with; [`socket`] talks to the broker over a Unix
//! socket (Linux, macOS). Windows has no broker yet: there [`none`] has the same types, which
//! cannot be made, and [`Broker::find`] finds none.

mod claim;
#[cfg(not(unix))]
mod none;
#[cfg(unix)]
mod socket;

pub(crate) use claim::{Claim, Granted, Lease, Turn, this_run};
#[cfg(not(unix))]
pub(crate) use none::Broker;
#[cfg(all(unix, feature = "cli"))]
pub(crate) use socket::in_use;
#[cfg(unix)]
pub(crate) use socket::{
    ALIVE_LOCK, Broker, READY_LINE, SERVE_VAR, SOCKET, STILL_WAITING, private_file, remove_dir,
};
