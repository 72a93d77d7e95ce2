//! What the broker asks of its dispenser: a clone of a template only when it is built (the
//! broker never builds one; a test process does, in its turn).

use std::sync::Arc;

use super::Dispenser;
use crate::admin::TemplateDb;
use crate::error::Result;
use crate::server::Server;
use crate::template;

/// A clone of a built template, for the broker to hand out.
pub(crate) struct Built {
    /// The server it is on.
    pub server: Arc<Server>,
    /// The clone's name.
    pub name: String,
    /// What the run's first sweep has to tell the user (empty after the first claim).
    pub notices: Vec<String>,
}

impl Dispenser {
    /// A clone of the template `hash` of `suite` for the run `run`, when that template is
    /// built and complete (`None` when it is not: the caller builds it). For the broker, which
    /// never builds a template.
    pub async fn claim_built(&self, hash: &str, suite: &str, run: &str) -> Result<Option<Built>> {
        let server = self.server().await?;
        let Some(template) = self.find_built(&server, hash, suite).await? else {
            return Ok(None);
        };
        let entry = self.template(hash);
        // A run's first claim waits for the sweep, so that what it tells the user reaches the
        // test process (the broker's own stderr goes nowhere).
        let notices = match Self::first_sweep(&server, &entry, suite, &template.name, run) {
            Some(sweep) => sweep.await,
            None => Vec::new(),
        };
        let name = self
            .clone_template(&server, &entry, &template, hash)
            .await?;
        Ok(Some(Built {
            server,
            name,
            notices,
        }))
    }

    /// Whether this process found the template `hash` built.
    pub fn knows_template(&self, hash: &str) -> bool {
        self.built_template(hash).is_some()
    }

    /// The template `hash`, when this dispenser found it built.
    fn built_template(&self, hash: &str) -> Option<TemplateDb> {
        self.template(hash).name.get()?.as_ref().ok().cloned()
    }

    /// The template `hash` of `suite` when it is built and complete, looked up on `server` once
    /// found (`None` while it is not). For a claim, and for the broker's idle work after a run
    /// whose only claim built the template itself.
    pub async fn find_built(
        &self,
        server: &Server,
        hash: &str,
        suite: &str,
    ) -> Result<Option<TemplateDb>> {
        let entry = self.template(hash);
        if let Some(known) = entry.name.get() {
            return known.clone().map(Some);
        }
        match template::built(server, hash, suite).await? {
            Some(found) => entry
                .name
                .get_or_init(|| async { Ok(found) })
                .await
                .clone()
                .map(Some),
            None => Ok(None),
        }
    }
}
