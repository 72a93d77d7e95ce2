//! How a dispenser has the next databases ready after each claim: the [`Restock`] of a test
//! process tops up the ready clones any process of the role may claim ([`ReadyClones`]); the
//! broker's makes its own next databases ahead (`crate::broker`'s `MadeAhead`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::admin::{self, TemplateDb};
use crate::error::Result;
use crate::server::Server;

/// A restock's background work.
pub(crate) type Work = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// How a dispenser has the next databases of a template ready.
pub(crate) trait Restock: Send + Sync + 'static {
    /// A database made ahead from the template `hash` for this dispenser alone, if any: the
    /// next claim takes it without a statement.
    fn take(&self, hash: &str) -> Option<String>;

    /// Tops the databases ready from `template` (of `hash`) up to `target`, in the
    /// background; one at a time per template (the dispenser sees to that).
    fn top_up(
        self: Arc<Self>,
        server: Arc<Server>,
        template: TemplateDb,
        hash: String,
        target: usize,
    ) -> Work;

    /// No more are made from the template `hash` (the disk is full, or the process ends); the
    /// ones made ahead for it are returned, for the caller to drop.
    fn forget(&self, hash: &str) -> Vec<String>;
}

/// A test process's restock: ready clones, marked as such, that any process of the role may
/// claim; it may answer one claim and exit, and leaves them for the next.
#[derive(Debug, Default)]
pub(crate) struct ReadyClones;

impl Restock for ReadyClones {
    fn take(&self, _hash: &str) -> Option<String> {
        None
    }

    fn top_up(
        self: Arc<Self>,
        server: Arc<Server>,
        template: TemplateDb,
        hash: String,
        target: usize,
    ) -> Work {
        Box::pin(async move { admin::refill_ready(&server, &template, &hash, target).await })
    }

    fn forget(&self, _hash: &str) -> Vec<String> {
        Vec::new()
    }
}
