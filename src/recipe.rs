//! What a template is built from: its steps (a sqlx migration set, a migration tool, Rust
//! code, or nothing) and the seed files (`with_fixtures`) applied after them, with the hash
//! that names the template and the suite it belongs to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;

use crate::error::{Error, Result};
use crate::migrations::{MigrationSet, Origin, crate_name, hex};
use crate::role::Role;
use crate::server::Server;
use crate::{seed, sqlerror, tool};

/// A seed file (`with_fixtures`, the attribute's `fixtures(…)`): SQL applied to the template
/// once, after its migrations. Not to be confused with an rstest fixture.
#[derive(Debug)]
pub(crate) struct SeedFile {
    /// The file as given, for messages.
    pub path: String,
    pub sql: String,
}

/// A seed file (a SQL file of the attribute's `fixtures(…)`) embedded by the attribute.
#[derive(Debug)]
pub struct EmbeddedSeedFile {
    /// The file as the attribute names it, for messages.
    pub path: &'static str,
    /// Its SQL.
    pub contents: &'static str,
}

/// What builds the template before the seed files. A `Harness` holds them as given
/// ([`Given`]: the set where it comes from, the inputs as paths); a recipe holds them read
/// (the set loaded, the inputs hashed).
#[derive(Debug, Clone)]
pub(crate) enum Steps<Set = Arc<MigrationSet>, Inputs = Vec<u8>> {
    /// Nothing: an empty database (`#[pgfresh::test(migrations = false)]`).
    Nothing,
    /// A sqlx migration set, applied up to `upto` (inclusive; head when `None`).
    Sqlx { set: Set, upto: Option<i64> },
    /// A migration tool run as a command (`Harness::from_command`).
    Command(Tool<tool::Command, Inputs>),
    /// Rust code (`Harness::from_fn`).
    Function(Tool<tool::Function, Inputs>),
}

/// The steps as a `Harness` is given them, before the first `test_db` reads them.
pub(crate) type Given = Steps<Origin, Vec<PathBuf>>;

impl Given {
    /// The steps read: the migration set loaded, the tool's inputs hashed.
    pub async fn read(&self) -> Result<Steps> {
        Ok(match self {
            Self::Nothing => Steps::Nothing,
            Self::Sqlx { set, upto } => Steps::Sqlx {
                set: Arc::new(set.load().await?),
                upto: *upto,
            },
            Self::Command(t) => Steps::Command(t.read()?),
            Self::Function(t) => Steps::Function(t.read()?),
        })
    }
}

/// A tool, its inputs (`Harness::inputs`: the paths, then their hash), and how long it may
/// take.
#[derive(Debug, Clone)]
pub(crate) struct Tool<T, Inputs = Vec<u8>> {
    pub tool: T,
    pub inputs: Inputs,
    pub timeout: Duration,
}

impl<T: Clone> Tool<T, Vec<PathBuf>> {
    /// A tool given its inputs as paths, with the default timeout.
    pub fn given(tool: T) -> Self {
        Self {
            tool,
            inputs: Vec::new(),
            timeout: tool::DEFAULT_TIMEOUT,
        }
    }

    /// The tool with its inputs hashed.
    fn read(&self) -> Result<Tool<T>> {
        Ok(Tool {
            tool: self.tool.clone(),
            inputs: tool::hash_inputs(&self.inputs)?,
            timeout: self.timeout,
        })
    }
}

/// A template's recipe. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Recipe {
    pub steps: Steps,
    pub fixtures: Arc<[SeedFile]>,
    /// The role the template is built as and belongs to, when it is not pgfresh's own.
    role: Option<Role>,
    hash: String,
    suite: String,
}

impl Recipe {
    pub fn new(steps: Steps, fixtures: Arc<[SeedFile]>) -> Self {
        let krate = crate_name();
        let (base, suite) = match &steps {
            Steps::Nothing => (digest(&[b"nothing"]), digest(&[krate.as_bytes()])),
            Steps::Sqlx { set, upto } => (set.hash(*upto), set.suite.clone()),
            Steps::Command(t) => {
                let argv: Vec<&[u8]> = t.tool.argv.iter().map(|a| a.as_bytes()).collect();
                let dir = t
                    .tool
                    .current_dir
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""));
                let dir = dir.as_os_str().as_encoded_bytes();
                (
                    digest(&[&[b"command".as_slice()], &argv[..], &[&t.inputs]].concat()),
                    digest(&[&[krate.as_bytes(), b"command", dir], &argv[..]].concat())[..8]
                        .to_owned(),
                )
            }
            Steps::Function(t) => {
                let key = t.tool.key.as_bytes();
                (
                    digest(&[b"function", key, &t.inputs]),
                    digest(&[krate.as_bytes(), b"function", key])[..8].to_owned(),
                )
            }
        };
        let (hash, suite) = if fixtures.is_empty() {
            (base, suite)
        } else {
            // Every fixture's name and bytes make the hash; the names alone the suite, so that
            // the same migrations with and without fixtures are templates of two suites.
            let mut hash_parts: Vec<&[u8]> = vec![base.as_bytes()];
            let mut suite_parts: Vec<&[u8]> = vec![suite.as_bytes()];
            for f in fixtures.iter() {
                hash_parts.extend([f.path.as_bytes(), f.sql.as_bytes()]);
                suite_parts.push(f.path.as_bytes());
            }
            (digest(&hash_parts), digest(&suite_parts)[..8].to_owned())
        };
        Self {
            steps,
            fixtures,
            role: None,
            hash,
            suite,
        }
    }

    /// The same recipe built as `role` (see [`crate::role`]): another template, whose hash
    /// says so.
    pub fn with_role(mut self, role: Option<Role>) -> Self {
        if let Some(role) = &role {
            self.hash = digest(&[self.hash.as_bytes(), b"role", role.name().as_bytes()]);
        }
        self.role = role;
        self
    }

    /// The role the template is built as, when it is not pgfresh's own.
    pub fn role(&self) -> Option<&Role> {
        self.role.as_ref()
    }

    /// The hash the template's name carries: everything that changes what the build produces.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The test suite the template belongs to (see [`crate::sweep`]).
    pub fn suite(&self) -> &str {
        &self.suite
    }

    /// Where the template comes from, for messages.
    pub fn origin(&self) -> String {
        match &self.steps {
            Steps::Nothing => "no migrations".to_owned(),
            Steps::Sqlx { set, .. } => set.origin.clone(),
            Steps::Command(t) => format!("`{}`", t.tool.shown()),
            Steps::Function(t) => format!("Harness::from_fn({:?})", t.tool.key),
        }
    }

    /// The migration set, when the template is built from one.
    pub fn set(&self) -> Option<&Arc<MigrationSet>> {
        match &self.steps {
            Steps::Sqlx { set, .. } => Some(set),
            _ => None,
        }
    }

    /// Builds the template `name`, which exists and is empty: the steps, then the fixtures.
    pub async fn build(&self, server: &Server, name: &str) -> Result<()> {
        let (options, mut url, password) = match &self.role {
            Some(role) => role.login(
                server.options.clone(),
                &server.url,
                server.password.as_deref(),
            ),
            None => (
                server.options.clone(),
                server.url.clone(),
                server.password.clone(),
            ),
        };
        let options = options.database(name);
        match &self.steps {
            Steps::Command(t) => {
                url.set_path(name);
                let target = tool::Target {
                    url: &url,
                    options: &options,
                    password: password.as_deref(),
                    template: name,
                };
                t.tool.run(&target, t.timeout).await?;
            }
            Steps::Function(t) => t.tool.run(options.clone(), name, t.timeout).await?,
            Steps::Nothing | Steps::Sqlx { .. } => {}
        }
        if matches!(self.steps, Steps::Sqlx { .. }) || !self.fixtures.is_empty() {
            // A one-connection pool rather than a bare connection: the migrator's future over
            // `&mut PgConnection` is not `Send` for every lifetime, which the worker's tasks
            // need.
            let db = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .map_err(|e| Error::database(format!("connecting to template {name}"), e))?;
            let applied = self.apply(&db, name).await;
            db.close().await;
            applied.map_err(|e| self.as_role(e))?;
        }
        Ok(())
    }

    /// `e`, which a migration or fixture run as the recipe's role met, saying so when it was
    /// refused a privilege.
    fn as_role(&self, mut e: Error) -> Error {
        let Some(role) = &self.role else {
            return e;
        };
        if let Error::Migration { message, .. } | Error::Fixture { message, .. } = &mut e {
            let refused = [
                "permission denied",
                "must be superuser",
                "Must be superuser",
            ]
            .iter()
            .any(|m| message.contains(m));
            if refused {
                message.push_str(&format!(
                    " (it ran as role {}, which is not a superuser, as the application's role \
                     in production is not: a statement that needs more cannot run there either)",
                    role.name()
                ));
            }
        }
        e
    }

    /// The sqlx migrations, then the fixtures.
    async fn apply(&self, db: &sqlx::PgPool, name: &str) -> Result<()> {
        if let Steps::Sqlx { set, upto } = &self.steps {
            let migrated = match upto {
                Some(version) => set.migrator.run_to(*version, db).await,
                None => set.migrator.run(db).await,
            };
            migrated.map_err(|e| migration_error(set, name, e))?;
        }
        for fixture in self.fixtures.iter() {
            seed::apply(db, &fixture.path, &fixture.sql)
                .await
                .map_err(|e| match e {
                    Error::Seed {
                        file,
                        line,
                        column,
                        message,
                    } => Error::Fixture {
                        file,
                        line,
                        column,
                        message,
                        template: name.to_owned(),
                    },
                    other => other,
                })?;
        }
        Ok(())
    }
}

fn migration_error(set: &MigrationSet, template: &str, e: sqlx::migrate::MigrateError) -> Error {
    match e {
        sqlx::migrate::MigrateError::ExecuteMigration(source, version) => {
            let migration = set.up(version);
            Error::Migration {
                version,
                description: migration.map_or_else(String::new, |m| m.description.to_string()),
                file: set.file_of(version),
                template: template.into(),
                message: migration.map_or_else(
                    || source.to_string(),
                    |m| sqlerror::in_migration(m, &source),
                ),
            }
        }
        other => Error::MigrationSource {
            location: set.origin.clone(),
            reason: other.to_string(),
        },
    }
}

/// 16 hex digits of the SHA-256 of `parts`, each followed by a zero byte.
fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(crate::migrations::TEMPLATE_FORMAT);
    for part in parts {
        h.update([0]);
        h.update(part);
    }
    hex(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str, sql: &str) -> SeedFile {
        SeedFile {
            path: path.into(),
            sql: sql.into(),
        }
    }

    #[test]
    fn fixtures_make_another_template_of_another_suite() {
        let bare = Recipe::new(Steps::Nothing, Arc::new([]));
        let seeded = Recipe::new(Steps::Nothing, Arc::new([fixture("a.sql", "SELECT 1")]));
        let edited = Recipe::new(Steps::Nothing, Arc::new([fixture("a.sql", "SELECT 2")]));
        let two = Recipe::new(
            Steps::Nothing,
            Arc::new([fixture("a.sql", "SELECT 1"), fixture("b.sql", "")]),
        );
        let hashes = [bare.hash(), seeded.hash(), edited.hash(), two.hash()];
        for (i, a) in hashes.iter().enumerate() {
            assert_eq!(a.len(), 16);
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(bare.suite(), seeded.suite());
        assert_eq!(seeded.suite(), edited.suite(), "an edit keeps the suite");
    }
}
