//! Why the broker could not help: the client logs it and does the work itself; the broker's
//! own process exits with it.

use std::io;
use std::path::PathBuf;

/// Why the broker could not help. Without a broker (Windows) most are never made.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) enum BrokerError {
    /// A file or folder of the broker's directory could not be opened, made or locked.
    #[error("{what} {}: {source}", path.display())]
    Dir {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The broker's directory could not be made private to this user.
    #[error("the broker's directory: {0}")]
    Private(#[source] Box<crate::Error>),
    /// Lock files kept disappearing under this process (brokers leaving, one after another).
    #[error("{} keeps being removed", .0.display())]
    KeepsVanishing(PathBuf),
    /// Another process holds the spawn lock and has not started a broker.
    #[error("another process has been starting the broker for {0} s")]
    StartedElsewhere(u64),
    /// A broker holds its lock but does not answer: it is leaving, or stuck.
    #[error("the broker is leaving")]
    Leaving,
    /// Another broker already serves the directory.
    #[error("another broker serves this directory")]
    Taken,
    /// The broker could not be started, or did not say it was ready in time.
    #[error("starting the broker: {0}")]
    Start(#[source] io::Error),
    /// The socket broke, or a blocking step could not run.
    #[error("talking to the broker: {0}")]
    Io(#[from] io::Error),
    /// The broker ended before it answered (killed, or its server went away).
    #[error("the broker ended before it answered")]
    Ended,
    /// The broker's server is gone: the broker hands nothing more out.
    #[error("{0}")]
    ServerGone(String),
    /// A broker asked to leave still serves its directory.
    #[cfg(feature = "cli")]
    #[error("the broker still runs {0} s after it was asked to leave")]
    StillServing(u64),
    /// No answer in time.
    #[error("no answer from the broker within {0} s")]
    NoAnswer(u64),
    /// A line that is not a message of the protocol.
    #[error("not a message of pgfresh's broker protocol: {line:?}: {source}")]
    Protocol {
        line: String,
        #[source]
        source: serde_json::Error,
    },
    /// A message of the protocol, but not one that fits here.
    #[error("an answer that does not fit the request: {0}")]
    Unexpected(String),
    /// The broker declined the claim, or a keep or drop failed there.
    #[error("{0}")]
    Refused(String),
    /// The database the broker handed out has an address this process cannot use.
    #[error("the address the broker gave: {0}")]
    Address(String),
    /// The broker's server, or its runtime, could not be had.
    #[error("the broker's server: {0}")]
    Server(#[source] Box<crate::Error>),
}

impl BrokerError {
    /// `source` from `what` on the file `path` of the broker's directory.
    #[cfg(unix)]
    pub(crate) fn dir(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Dir {
            what,
            path: path.into(),
            source,
        }
    }
}
