//! The broker's wire protocol: what a test process and the broker say to each other over the
//! socket, one JSON message per line.
//!
//! A connection carries one database's life: the test process sends a [`Request::Claim`]; the
//! broker answers [`Reply::Waiting`] every so often while another process builds the template,
//! then once with [`Reply::Granted`], [`Reply::Build`] or [`Reply::Declined`]. After a grant
//! the process either sends [`Request::Keep`] or [`Request::Drop`] (answered [`Reply::Done`] or
//! [`Reply::Failed`]), or closes the connection, which gives the database back.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::BrokerError;

/// How often the broker tells a claim waiting for a build that it still waits.
pub(crate) const STILL_WAITING: Duration = Duration::from_secs(10);

/// What a test process asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request {
    /// A clone of the template `hash` (of the migration set `suite`), for the run `run`.
    Claim {
        hash: String,
        suite: String,
        run: String,
    },
    /// Keep the granted database for the run `run` of `suite` (the test failed).
    Keep { run: String, suite: String },
    /// Drop the granted database now, and say when it is done.
    Drop,
    /// The granted database could not be reached (the reason): check the server, then drop
    /// the database, or say the server is gone.
    Unreachable { reason: String },
    /// End now (`pgfresh gc`, about to remove the servers): hand nothing more out, and leave
    /// without waiting for the databases held (they go with their servers). The first and only
    /// message of its connection.
    Leave,
}

/// What the broker answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reply {
    /// Still waiting for another process's build of the template.
    Waiting,
    /// A database.
    Granted(Grant),
    /// The template is not built, and it is this process's turn to build it.
    Build,
    /// The broker cannot help, for `reason`: the process does the work itself.
    Declined { reason: String },
    /// The keep or drop asked for is done.
    Done,
    /// The keep or drop asked for failed, for `reason`.
    Failed { reason: String },
    /// The broker's server is gone, for `reason`: the broker hands nothing more out.
    ServerGone { reason: String },
}

/// A database the broker hands out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub name: String,
    /// The database's URL, password included.
    pub url: String,
    /// The server source (`url`, `docker`, `local`).
    pub source: String,
    /// The password came from the user (`DB_URL`): never print it.
    pub password_from_user: bool,
    /// What the broker's sweep would have told the user, had it run in the test process.
    pub notices: Vec<String>,
}

/// `message` as one line of the protocol, newline included.
pub(crate) fn line<T: Serialize>(message: &T) -> String {
    let mut line = serde_json::to_string(message).expect("protocol messages serialize");
    line.push('\n');
    line
}

/// The message a line holds.
pub(crate) fn parse<T: DeserializeOwned>(line: &str) -> Result<T, BrokerError> {
    serde_json::from_str(line.trim_end()).map_err(|source| BrokerError::Protocol {
        line: line.trim_end().to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(message: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let text = line(&message);
        assert!(
            text.ends_with('\n') && !text[..text.len() - 1].contains('\n'),
            "{text}"
        );
        assert_eq!(parse::<T>(&text).unwrap(), message, "{text}");
    }

    #[test]
    fn every_request_round_trips_on_one_line() {
        round_trips(Request::Claim {
            hash: "ab12".into(),
            suite: "cd34".into(),
            run: "c42.1700".into(),
        });
        round_trips(Request::Keep {
            run: "c42.1700".into(),
            suite: "cd34".into(),
        });
        round_trips(Request::Drop);
        round_trips(Request::Unreachable {
            reason: "Connection refused".into(),
        });
        round_trips(Request::Leave);
    }

    #[test]
    fn every_reply_round_trips_on_one_line() {
        round_trips(Reply::Waiting);
        round_trips(Reply::Granted(Grant {
            name: "pgfresh_ab12_7_x".into(),
            url: "postgres://postgres:pw@127.0.0.1:5432/pgfresh_ab12_7_x".into(),
            source: "local".into(),
            password_from_user: false,
            notices: vec!["pgfresh: swept 2 databases\nof a dead run".into()],
        }));
        round_trips(Reply::Build);
        round_trips(Reply::Declined {
            reason: "the server is gone".into(),
        });
        round_trips(Reply::Done);
        round_trips(Reply::Failed {
            reason: "cannot drop".into(),
        });
        round_trips(Reply::ServerGone {
            reason: "at 127.0.0.1:5432/postgres stopped answering".into(),
        });
    }

    #[test]
    fn a_line_that_is_not_the_protocol_is_an_error_that_shows_it() {
        let e = parse::<Reply>("{\"granted\": 3}\n").unwrap_err();
        // The line, quoted (so that control characters in it show as escapes).
        assert!(e.to_string().contains(r#""{\"granted\": 3}""#), "{e}");
        assert!(parse::<Request>("claim please").is_err());
    }
}
