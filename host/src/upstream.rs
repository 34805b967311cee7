//! Upstream groups (query path step 6): servers, UDP/TCP clients, selection, health,
//! concurrency limit and coalescing of identical in-flight queries. STUB: API contract only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use crate::config::UpstreamGroupSpec;
use crate::metrics::Metrics;

/// What to ask an upstream.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamQuery<'a> {
    /// Lowercased, uncompressed wire-format name.
    pub name: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub do_bit: bool,
    pub cd: bool,
}

/// Why a query could not be answered by the group.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    #[error("max_concurrent reached")]
    Overloaded,
    #[error("no upstream server answered in time")]
    Timeout,
    #[error("every upstream server failed: {0}")]
    Failed(String),
}

/// A validated upstream response (ID, question and source already checked).
#[derive(Debug, Clone)]
pub struct Answer {
    pub bytes: Bytes,
}

/// One upstream group.
pub struct UpstreamGroup {
    name: Arc<str>,
}

impl UpstreamGroup {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
    pub async fn forward(&self, _q: &UpstreamQuery<'_>) -> Result<Answer, UpstreamError> {
        Err(UpstreamError::Failed("not built".into()))
    }
}

/// All groups of a configuration.
#[derive(Default)]
pub struct Upstreams {
    groups: HashMap<String, Arc<UpstreamGroup>>,
}

impl Upstreams {
    /// Builds the groups, reusing `previous` groups whose spec did not change (their
    /// connections and health state survive a reload). Must run inside a tokio runtime.
    pub fn build(
        specs: &BTreeMap<String, UpstreamGroupSpec>,
        _previous: Option<&Upstreams>,
        _metrics: &Arc<Metrics>,
    ) -> Self {
        let groups = specs
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    Arc::new(UpstreamGroup {
                        name: Arc::from(k.as_str()),
                    }),
                )
            })
            .collect();
        Upstreams { groups }
    }
    pub fn get(&self, name: &str) -> Option<&Arc<UpstreamGroup>> {
        self.groups.get(name)
    }
}
