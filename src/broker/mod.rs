//! The broker: one process per environment that claims, hands out and drops the test
//! databases of every test process.
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
//! The files: [`protocol`] is what the two sides say (typed messages, one JSON line each);
//! [`client`] is a test process's side (find or start the broker, claim, and the [`Lease`] or
//! [`Turn`] it holds); [`serve`] is the broker process; [`dir`] the broker's directory and its
//! lock files, which both sides use; [`claim`] the answer's types, on every platform; and
//! [`error`] why the broker could not help. Windows has no broker yet (its transport is a
//! Unix socket): there `none` finds none, and its leases cannot be made.

#[cfg(unix)]
mod ahead;
mod claim;
#[cfg(unix)]
mod client;
#[cfg(unix)]
mod dir;
mod error;
#[cfg(unix)]
mod idle;
#[cfg(not(unix))]
mod none;
#[cfg(unix)]
mod protocol;
/// The broker process: above [`crate::dispense`] (it runs a dispenser), while the rest of this
/// folder is below it (the dispenser is the client's user); so nothing here re-exports it.
#[cfg(unix)]
pub(crate) mod serve;
/// The broker's watch on its server: above [`crate::dispense`] too, used by [`serve`] only.
#[cfg(unix)]
mod watch;

pub(crate) use claim::{Claim, Granted, Lease, Turn, this_run};
#[cfg(unix)]
pub(crate) use client::Broker;
#[cfg(all(unix, feature = "cli"))]
pub(crate) use client::end;
#[cfg(all(unix, feature = "cli"))]
pub(crate) use dir::in_use;
#[cfg(all(unix, feature = "cli"))]
pub(crate) use dir::remove_dir;
#[cfg(not(unix))]
pub(crate) use none::Broker;
