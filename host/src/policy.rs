//! Policy chain (query path step 3): each zone's WebAssembly policies in order; the first
//! non-allow verdict wins. STUB: API contract only.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use thiserror::Error;

use crate::config::PolicySpec;
use crate::metrics::Metrics;

/// How a query reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The query as a policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyQuery<'a> {
    /// Lowercase, trailing dot.
    pub name: &'a str,
    pub qtype: u16,
    pub qclass: u16,
    pub client: IpAddr,
    pub view: &'a str,
    /// Matched zone, lowercase, trailing dot.
    pub zone: &'a str,
    pub transport: Transport,
}

/// How a denied query is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyKind {
    NxDomain,
    Refused,
    NoData,
}

/// Data of a synthesized record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(std::net::Ipv4Addr),
    Aaaa(std::net::Ipv6Addr),
    /// Absolute name with trailing dot.
    Cname(String),
    Txt(Vec<String>),
}

/// A synthesized record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

/// The chain's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(DenyKind),
    /// Forward to this upstream group (the pipeline checks it exists: SERVFAIL if not).
    Route(Arc<str>),
    Answer(Vec<Record>),
}

/// Why policies could not be loaded.
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("policy {policy}: {reason}")]
    Load { policy: String, reason: String },
}

/// The compiled policies of one configuration.
#[derive(Default)]
pub struct Policies {
    _by_name: HashMap<String, ()>,
}

impl Policies {
    /// Compiles, instantiates and `init`s every policy (off the hot path), reusing
    /// compiled modules of `previous` with the same content digest.
    pub fn build(
        _engine: &PolicyEngine,
        specs: &BTreeMap<String, PolicySpec>,
        _previous: Option<&Policies>,
        _metrics: &Arc<Metrics>,
    ) -> Result<Self, PolicyError> {
        if let Some(name) = specs.keys().next() {
            return Err(PolicyError::Load {
                policy: name.clone(),
                reason: "policies are not supported yet".into(),
            });
        }
        Ok(Policies::default())
    }
    /// The chain for a zone's policy list (names exist: validated with the config).
    pub fn chain(&self, _names: &[String]) -> PolicyChain {
        PolicyChain {}
    }
}

/// A zone's policies, in order.
#[derive(Clone, Default)]
pub struct PolicyChain {}

impl PolicyChain {
    pub fn is_empty(&self) -> bool {
        true
    }
    /// Runs the chain on the current thread (per-worker instances); never panics or blocks
    /// beyond each policy's deadline: failures apply the policy's `on_error`.
    pub fn decide(&self, _q: &PolicyQuery<'_>) -> Verdict {
        Verdict::Allow
    }
}

/// The process's one WebAssembly engine. STUB.
#[derive(Default)]
pub struct PolicyEngine {}

impl PolicyEngine {
    pub fn new(_cache_dir: Option<std::path::PathBuf>) -> Result<Self, PolicyError> {
        Ok(PolicyEngine {})
    }
}
