//! The role tests connect as when they should see production's privileges: one that is not a
//! superuser (`PGFRESH_ROLE`, [`crate::Harness::with_role`], the attribute's `role = "…"`).
//!
//! pgfresh makes the role when it is missing: `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`,
//! commented [`COMMENT`] (which makes it pgfresh's to alter, and its templates' owner passed on
//! to their clones), with a password derived from the server's own (the generated password of a
//! server pgfresh started, or `DB_URL`'s): as private as that one, the same in every process of
//! the run, and stored nowhere. The administrative role is made a member of it, so that it may
//! create databases the role owns and drop them. The role owns the template (the migrations run
//! as the role, as an application's deploy would) and every clone; tests connect as it.
//!
//! A role of that name that pgfresh did not make, or a superuser, is refused: pgfresh never
//! changes a role it does not own.

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;

use crate::address::Address;
use crate::config::check_role_name;
use crate::error::{Error, Result};
use crate::server::{Server, Urgency};

/// The comment that marks a role as pgfresh's.
pub(crate) const COMMENT: &str = "pgfresh role";

/// A valid role name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Role(String);

impl Role {
    /// The role `name`, which `var` (a variable, or the API that named it) gave.
    pub fn parse(var: &'static str, name: &str) -> Result<Self> {
        check_role_name(name)
            .map(Self)
            .map_err(|reason| Error::InvalidConfig {
                var,
                value: name.to_owned(),
                reason,
            })
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// The role's password on a server whose own is `server_password` (none without one: the
    /// server then lets pgfresh in without a password, and the role too).
    fn password(&self, server_password: Option<&str>) -> Option<String> {
        let server_password = server_password.filter(|p| !p.is_empty())?;
        let mut h = Sha256::new();
        h.update(b"pgfresh role password\0");
        h.update(server_password.as_bytes());
        h.update(b"\0");
        h.update(self.0.as_bytes());
        Some(
            h.finalize()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    /// `options` and `url` (of the server, whose password is `server_password`) as the role.
    pub fn login(
        &self,
        options: PgConnectOptions,
        url: &url::Url,
        server_password: Option<&str>,
    ) -> (PgConnectOptions, url::Url, Option<String>) {
        let password = self.password(server_password);
        let mut url = url.clone();
        let _ = url.set_username(&self.0);
        let _ = url.set_password(password.as_deref());
        let options = options.username(&self.0);
        let options = match &password {
            Some(p) => options.password(p),
            None => options,
        };
        (options, url, password)
    }

    /// A test database's address (the administrative role's) as the role's.
    pub fn address(&self, address: Address) -> Address {
        let server_password = address.url.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let (options, url, _) =
            self.login(address.options, &address.url, server_password.as_deref());
        Address {
            options,
            url,
            ..address
        }
    }

    /// Makes the role on `server` when it is missing, or checks the one there is pgfresh's and
    /// not a superuser, and sees that the administrative role is a member of it.
    pub async fn ensure(&self, server: &Server) -> Result<()> {
        let mut conn = server
            .admin_conn(Urgency::Now, "make the role tests connect as")
            .await?;
        let name = &self.0;
        // Hex digits: nothing to escape.
        let password = self
            .password(server.password.as_deref())
            .map_or_else(|| "NULL".to_owned(), |p| format!("'{p}'"));
        let attributes = format!("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {password}");
        let (admin, admin_is_superuser): (String, bool) = sqlx::query_as(
            "SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| Error::database("looking up pgfresh's own role", e))?;
        // Members need SET (PostgreSQL 16+) to create databases the role owns, and INHERIT to
        // drop them; 16 grants a CREATEROLE role neither on a role it creates.
        let membership = if server.version >= 160_000 {
            format!(r#"GRANT "{name}" TO "{admin}" WITH INHERIT TRUE, SET TRUE"#)
        } else {
            format!(r#"GRANT "{name}" TO "{admin}""#)
        };
        for _ in 0..2 {
            let found: Option<(bool, Option<String>)> = sqlx::query_as(
                "SELECT rolsuper, shobj_description(oid, 'pg_authid') FROM pg_roles \
                 WHERE rolname = $1",
            )
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| Error::database(format!("looking up role {name}"), e))?;
            let sql = match &found {
                Some((true, _)) => {
                    return Err(self.refused(
                        "is a superuser, and tests that should see production's privileges \
                         need a role that is not",
                        "Name a role that is not a superuser (pgfresh makes it when it is \
                         missing)",
                    ));
                }
                Some((false, comment)) if comment.as_deref() != Some(COMMENT) => {
                    return Err(self.refused(
                        "exists, and pgfresh did not make it: pgfresh does not change a role \
                         it does not own",
                        &format!(
                            "Name another role (pgfresh makes it), or drop this one, or make it \
                             pgfresh's: COMMENT ON ROLE \"{name}\" IS '{COMMENT}';"
                        ),
                    ));
                }
                Some(_) => format!(
                    r#"ALTER ROLE "{name}" {attributes}; {}"#,
                    if admin_is_superuser { "" } else { &membership }
                ),
                None => format!(
                    r#"CREATE ROLE "{name}" {attributes}; COMMENT ON ROLE "{name}" IS '{COMMENT}'; {}"#,
                    if admin_is_superuser { "" } else { &membership }
                ),
            };
            match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut *conn)
                .await
            {
                Ok(_) => return Ok(()),
                // Made by another process a moment ago: look again.
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("42710" | "23505")) => {}
                // Made (and granted) once by a superuser, as the error below asks: used as is.
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("42501") && found.is_some() =>
                {
                    return Ok(());
                }
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
                    return Err(self.refused(
                        &format!(
                            "pgfresh's role {admin} may not make or grant it ({})",
                            e.message()
                        ),
                        &format!(
                            "Give {admin} CREATEROLE, or have a superuser run once: CREATE ROLE \
                             \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD \
                             {password}; COMMENT ON ROLE \"{name}\" IS '{COMMENT}'; GRANT \
                             \"{name}\" TO \"{admin}\";"
                        ),
                    ));
                }
                Err(e) => return Err(Error::database(sql, e)),
            }
        }
        Err(self.refused(
            "was made and dropped again by another process meanwhile",
            "Run again",
        ))
    }

    fn refused(&self, reason: &str, remedy: &str) -> Error {
        Error::Role {
            role: self.0.clone(),
            reason: reason.to_owned(),
            remedy: remedy.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_follows_the_server_s_and_the_address_carries_it() {
        let role = Role::parse("PGFRESH_ROLE", "app_test").unwrap();
        let a = role.password(Some("s3cret")).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(role.password(Some("s3cret")), Some(a.clone()));
        assert_ne!(role.password(Some("other")), Some(a.clone()));
        assert_eq!(role.password(None), None);
        let url = url::Url::parse("postgres://postgres:s3cret@127.0.0.1:5432/pgfresh_x").unwrap();
        let address = Address {
            name: "pgfresh_x".into(),
            options: url.as_str().parse().unwrap(),
            url,
            source: crate::config::ServerSource::Local,
            password_from_user: false,
        };
        let as_role = role.address(address);
        assert_eq!(as_role.url.username(), "app_test");
        assert_eq!(as_role.url.password(), Some(a.as_str()));
        assert_eq!(as_role.options.get_username(), "app_test");
        assert!(Role::parse("Harness::with_role", "Bad").is_err());
    }
}
