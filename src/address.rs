//! Where a test database is: the one address type that the hand-out, the broker's grant and
//! [`crate::TestDb`] share. Only copies of the server's settings: the server itself stays on
//! the worker's runtime.

use std::fmt;

use sqlx::postgres::PgConnectOptions;

use crate::config::{ServerSource, redact_url};

/// A test database's name and how to reach it.
#[derive(Clone)]
pub(crate) struct Address {
    pub name: String,
    /// How to connect to the database.
    pub options: PgConnectOptions,
    /// The same as a URL, password included.
    pub url: url::Url,
    pub source: ServerSource,
    /// The server's password came from the user (`DB_URL`): never print it.
    pub password_from_user: bool,
}

impl Address {
    /// The URL to show a person: the password is hidden when it came from the user.
    pub fn shown_url(&self) -> String {
        if self.password_from_user {
            redact_url(self.url.as_str())
        } else {
            self.url.to_string()
        }
    }
}

/// Never the password: the name, the source and the URL without it.
impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Address")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("url", &redact_url(self.url.as_str()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let url = url::Url::parse("postgres://me:s3cret@127.0.0.1:5432/pgfresh_x").unwrap();
        let address = Address {
            name: "pgfresh_x".into(),
            options: url.as_str().parse().unwrap(),
            url,
            source: ServerSource::Url,
            password_from_user: true,
        };
        let shown = format!("{address:?} {}", address.shown_url());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("pgfresh_x"), "{shown}");
    }
}
