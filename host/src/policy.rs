//! Policy chain (query path step 3): each zone's WebAssembly policies in order; the first
//! non-allow verdict wins. Loading (compile, link, `init`) happens off the hot path in
//! [`Policies::build`]; [`PolicyChain::decide`] runs on the worker thread's own instances.

mod bindings;
mod cli;
mod engine;
mod loaded;
mod memo;
mod store;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use thiserror::Error;

use crate::config::{OnError, PolicySource, PolicySpec};
use crate::metrics::{Label, Metrics, PolicyInfoLabels};

pub use bindings::WORLD;
pub use cli::{PolicyTester, WorldInfo, check_component, test_decide};
use engine::Compiled;
pub use engine::{EngineOptions, PolicyEngine};
use loaded::{Limits, LoadedPolicy};

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
    #[error("policy {policy}: cannot read {}: {source}", path.display())]
    Read {
        policy: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy {policy}: not a valid component: {reason}")]
    Compile { policy: String, reason: String },
    #[error(
        "policy {policy}: does not implement a zonegate:policy world (0.2.0 or 0.1.0): {reason}"
    )]
    WrongWorld { policy: String, reason: String },
    #[error("policy {policy}: init rejected settings: {message}")]
    InitRejected { policy: String, message: String },
    #[error("policy {policy}: {kind}: {reason}")]
    Guest {
        policy: String,
        kind: &'static str,
        reason: String,
    },
    #[error("policy engine: {0}")]
    Engine(String),
}

/// Where a policy's bytes come from; the default reads `file:` sources.
pub type Fetch<'a> = dyn Fn(&PolicySpec) -> Result<Vec<u8>, PolicyError> + 'a;

/// Reads a `file:` source (following symlinks, so Kubernetes' `..data` swap is seen);
/// `oci:` sources must be fetched by the caller through [`Policies::build_with`].
pub fn read_source(spec: &PolicySpec) -> Result<Vec<u8>, PolicyError> {
    match &spec.source {
        PolicySource::File(path) => std::fs::read(path).map_err(|source| PolicyError::Read {
            policy: spec.name.clone(),
            path: path.clone(),
            source,
        }),
        PolicySource::Oci(r) => Err(PolicyError::Load {
            policy: spec.name.clone(),
            reason: format!("{r}: OCI sources are fetched by the oci module"),
        }),
    }
}

/// The compiled policies of one configuration.
#[derive(Default)]
pub struct Policies {
    by_name: HashMap<String, Arc<LoadedPolicy>>,
    /// Policies whose module could not be fetched (an OCI registry down, nothing cached).
    unavailable: HashMap<String, OnError>,
}

impl Policies {
    /// Compiles, instantiates and `init`s every policy (off the hot path), reusing
    /// compiled modules of `previous` with the same content digest, and unchanged policies
    /// (same bytes, same settings and limits) as they are, warm instances included.
    pub fn build(
        engine: &PolicyEngine,
        specs: &BTreeMap<String, PolicySpec>,
        previous: Option<&Policies>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, PolicyError> {
        Self::build_with(engine, specs, &read_source, previous, metrics)
    }

    /// [`Policies::build`] with the module bytes supplied by `fetch` (OCI, tests).
    pub fn build_with(
        engine: &PolicyEngine,
        specs: &BTreeMap<String, PolicySpec>,
        fetch: &Fetch<'_>,
        previous: Option<&Policies>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, PolicyError> {
        let mut compiled: HashMap<Arc<str>, Compiled> = HashMap::new();
        if let Some(prev) = previous {
            for p in prev.by_name.values() {
                compiled.insert(p.compiled.digest.clone(), p.compiled.clone());
            }
        }
        let mut by_name = HashMap::new();
        for (name, spec) in specs {
            let bytes = fetch(spec)?;
            let p = load_one(engine, name, spec, &bytes, &mut compiled, previous, metrics)?;
            by_name.insert(name.clone(), p);
        }
        let built = Policies {
            by_name,
            unavailable: HashMap::new(),
        };
        built.publish_info(previous, metrics);
        Ok(built)
    }

    /// The chain for a zone's policy list (names exist: validated with the config).
    pub fn chain(&self, names: &[String]) -> PolicyChain {
        let policies: Vec<_> = names
            .iter()
            .filter_map(|n| self.by_name.get(n).cloned())
            .collect();
        let refuse = names
            .iter()
            .any(|n| self.unavailable.get(n) == Some(&OnError::Deny));
        PolicyChain {
            policies: policies.into(),
            refuse,
        }
    }

    /// Records a policy left out because its module could not be fetched: zones using it
    /// answer REFUSED when its `on_error` is deny, and run without it when allow.
    pub fn set_unavailable(&mut self, name: &str, on_error: OnError) {
        self.unavailable.insert(name.to_string(), on_error);
    }

    /// Upstream groups a policy may route to, so the configuration can check they exist at
    /// load time: those a 0.2.0 policy declared in `init`; for a 0.1.0 policy, those its
    /// settings name (`routes[].upstream`), where it follows that convention.
    pub fn route_targets(&self, name: &str) -> Vec<String> {
        let Some(p) = self.by_name.get(name) else {
            return Vec::new();
        };
        match p.declared_routes() {
            Some(routes) => routes.iter().map(|r| r.to_string()).collect(),
            None => route_targets(&p.limits.settings),
        }
    }

    /// The first of `names` that may route to an upstream group `group_exists` denies, with
    /// that group: (policy, group).
    pub fn unknown_route<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        group_exists: impl Fn(&str) -> bool,
    ) -> Option<(String, String)> {
        names.into_iter().find_map(|name| {
            let group = self
                .route_targets(name)
                .into_iter()
                .find(|g| !group_exists(g))?;
            Some((name.to_string(), group))
        })
    }

    /// The content digest a policy was loaded from.
    pub fn digest(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(|p| &*p.compiled.digest)
    }

    /// Instances created for a policy so far, across threads (tests, diagnostics).
    pub fn instantiations(&self, name: &str) -> u64 {
        self.by_name
            .get(name)
            .map_or(0, |p| p.instantiations.load(Ordering::Relaxed))
    }

    /// `zonegate_policy_info`: 1 for each current (policy, digest); series of digests no
    /// longer loaded are removed.
    fn publish_info(&self, previous: Option<&Policies>, metrics: &Metrics) {
        let labels = |name: &str, p: &LoadedPolicy| PolicyInfoLabels {
            policy: Label::from(name),
            digest: Label(p.compiled.digest.clone()),
        };
        for (name, p) in previous.map(|p| &p.by_name).into_iter().flatten() {
            let current = self.by_name.get(name);
            if current.is_none_or(|c| c.compiled.digest != p.compiled.digest) {
                metrics.policy_info.remove(&labels(name, p));
            }
        }
        for (name, p) in &self.by_name {
            metrics.policy_info.get_or_create(&labels(name, p)).set(1);
        }
    }
}

fn load_one(
    engine: &PolicyEngine,
    name: &str,
    spec: &PolicySpec,
    bytes: &[u8],
    compiled: &mut HashMap<Arc<str>, Compiled>,
    previous: Option<&Policies>,
    metrics: &Metrics,
) -> Result<Arc<LoadedPolicy>, PolicyError> {
    let digest: Arc<str> = crate::oci::layout::sha256(bytes).into();
    let limits = Limits {
        on_error: spec.on_error,
        timeout: spec.timeout,
        memory_limit: spec.memory_limit,
        settings: spec.settings.clone(),
    };
    if let Some(old) = previous.and_then(|p| p.by_name.get(name))
        && old.compiled.digest == digest
        && old.limits == limits
    {
        return Ok(old.clone());
    }
    let c = match compiled.get(&digest) {
        Some(c) => c.clone(),
        None => {
            let c = engine.compile(name, bytes)?;
            compiled.insert(digest, c.clone());
            c
        }
    };
    let mut p = LoadedPolicy::new(engine, name, limits, c, metrics);
    p.validate()?;
    Ok(Arc::new(p))
}

fn route_targets(settings: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(settings) else {
        return Vec::new();
    };
    let routes = v.get("routes").and_then(|r| r.as_array());
    let upstreams = routes
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("upstream")?.as_str());
    let mut out: Vec<String> = upstreams.map(str::to_owned).collect();
    out.sort();
    out.dedup();
    out
}

/// A zone's policies, in order.
#[derive(Clone, Default)]
pub struct PolicyChain {
    policies: Arc<[Arc<LoadedPolicy>]>,
    /// A deny-on-error policy of the chain is unavailable: every query is REFUSED.
    refuse: bool,
}

impl PolicyChain {
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && !self.refuse
    }

    /// Runs the chain on the current thread (per-worker instances); never panics or blocks
    /// beyond each policy's deadline: failures apply the policy's `on_error`.
    pub fn decide(&self, q: &PolicyQuery<'_>) -> Verdict {
        if self.refuse {
            return Verdict::Deny(DenyKind::Refused);
        }
        for p in self.policies.iter() {
            let v = worker::decide(p, q);
            if v != Verdict::Allow {
                return v;
            }
        }
        Verdict::Allow
    }
}

/// Live guest instances on the calling thread, after sweeping unloaded policies
/// (diagnostics and tests of per-worker reuse).
#[doc(hidden)]
pub fn instances_on_this_thread() -> usize {
    worker::instances_on_this_thread()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_targets_from_settings() {
        let cases = [
            (
                r#"{"routes":[{"upstream":"corp"},{"upstream":"dmz"},{"upstream":"corp"}]}"#,
                vec!["corp", "dmz"],
            ),
            (r#"{"routes":[{"names":["a."]}]}"#, vec![]),
            (r#"{"rules":[]}"#, vec![]),
            ("not json", vec![]),
        ];
        for (settings, want) in cases {
            assert_eq!(route_targets(settings), want, "{settings}");
        }
    }
}
