//! What the broker answers a claim with, on every platform: the types; their methods are the
//! transport's (`client`, or `none` where there is no broker).

use crate::address::Address;

/// The connection a [`Lease`] holds: a Unix socket; nothing on Windows, where no lease can be
/// made.
#[cfg(unix)]
pub(super) type Connection = std::os::unix::net::UnixStream;
#[cfg(not(unix))]
pub(super) type Connection = std::convert::Infallible;

/// The connection a [`Turn`] holds, on the test process's runtime.
#[cfg(unix)]
pub(super) type AsyncConnection = tokio::net::UnixStream;
#[cfg(not(unix))]
pub(super) type AsyncConnection = std::convert::Infallible;

/// What the broker said to a claim. Without a broker (Windows) none is ever made.
#[derive(Debug)]
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) enum Claim {
    /// A database.
    Granted(Box<Granted>),
    /// The template is not built and it is this process's turn to build it (itself, as without
    /// a broker); the other processes' claims wait until it drops the [`Turn`].
    Build(Turn),
    /// No broker runs: [`super::Broker::starting`] one.
    NotRunning,
    /// The broker cannot help (the reason is logged): the process claims one itself.
    Declined,
}

/// A database the broker handed out.
#[derive(Debug)]
pub(crate) struct Granted {
    pub address: Address,
    pub lease: Lease,
}

/// This process's run (see [`crate::marker::run_id`]): the broker sweeps what earlier runs
/// kept, and marks what this one keeps.
pub(crate) fn this_run() -> String {
    crate::marker::run_id(i32::try_from(std::process::id()).unwrap_or(0))
}

/// A process's turn to build a template: the broker answers no other claim for it until this
/// is dropped (or the process dies); then the next claim finds it built, or has its own turn.
#[derive(Debug)]
pub(crate) struct Turn {
    pub(super) _stream: AsyncConnection,
}

/// The connection to the broker that holds one test database: dropping it gives the database
/// back (the broker drops it).
#[derive(Debug)]
pub(crate) struct Lease {
    pub(super) stream: Connection,
}
