//! Where there is no broker (Windows: its transport is a Unix socket): [`Broker::find`] finds
//! none, so no claim is sent and no [`Lease`] or [`Turn`] is ever made; their methods exist
//! only for the callers to compile, and cannot be reached.

use std::convert::Infallible;

use super::claim::{Claim, Lease};
use super::error::BrokerError;
use crate::config::Config;

/// A broker, which cannot exist here.
#[derive(Debug)]
pub(crate) struct Broker(Infallible);

/// The right to start a broker, which cannot exist here.
#[derive(Debug)]
pub(crate) struct Starting(Infallible);

impl Broker {
    /// Always `None`: there is no broker on this platform.
    pub fn find(_config: &Config) -> Option<Self> {
        None
    }

    pub async fn claim(&self, _hash: &str, _suite: &str) -> Claim {
        match self.0 {}
    }

    pub async fn starting(&self) -> Result<Option<Starting>, BrokerError> {
        match self.0 {}
    }
}

impl Starting {
    pub async fn start(self) -> Result<(), BrokerError> {
        match self.0 {}
    }
}

impl Lease {
    pub fn release(self) -> bool {
        match self.stream {}
    }

    pub fn keep(self, _run: &str, _suite: &str) -> Result<(), BrokerError> {
        match self.stream {}
    }

    pub fn drop_now(self) -> Result<(), BrokerError> {
        match self.stream {}
    }

    pub fn unreachable(self, _reason: String) -> Option<String> {
        match self.stream {}
    }
}
