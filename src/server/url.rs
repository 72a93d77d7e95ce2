//! The url source: an existing server named by `DB_URL` (or `DATABASE_URL`).
//!
//! pgfresh connects to the database the URL names only to issue `CREATE DATABASE`,
//! `DROP DATABASE` (of its own databases) and catalog queries; it never writes into it.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::Started;
use crate::config::{Config, ServerSource, redact_url};
use crate::error::{Error, Result};

pub(super) fn start(config: &Config) -> Result<Started> {
    let setting = config
        .url
        .as_ref()
        .expect("config validation guarantees a URL for the url source");
    let options = parse(&setting.url).map_err(|reason| Error::InvalidConfig {
        var: setting.var,
        value: redact_url(&setting.url),
        reason,
    })?;
    let url = url::Url::parse(&setting.url).map_err(|e| Error::InvalidConfig {
        var: setting.var,
        value: redact_url(&setting.url),
        reason: format!("the URL could not be parsed ({e})"),
    })?;
    let password = url.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    Ok(Started {
        source: ServerSource::Url,
        options,
        url,
        password_from_user: true,
        password,
        data_dir: None,
        hint: format!("{} is right", setting.var),
        keepalive: Box::new(()),
        connection: None,
    })
}

fn parse(url: &str) -> Result<PgConnectOptions, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected a URL like postgres://user:password@host:5432/database".into());
    }
    // The driver's message may quote the URL; say what is wrong without repeating it.
    PgConnectOptions::from_str(url).map_err(|e| {
        let msg = e.to_string();
        if msg.contains(url) {
            "the URL could not be parsed".to_owned()
        } else {
            format!("the URL could not be parsed ({msg})")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let o = parse("postgres://u:p@db.example:6543/app").unwrap();
        assert_eq!((o.get_host(), o.get_port()), ("db.example", 6543));
        assert!(parse("mysql://u:p@h/db").is_err());
        assert!(parse("postgres://u:p@h:notaport/db").is_err());
    }
}
