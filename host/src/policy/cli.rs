//! What `zonegate policy check` and `zonegate policy test` do, as library functions: load a
//! component outside any configuration and report its world or one decision.

use std::sync::Arc;
use std::time::Duration;

use super::engine::PolicyEngine;
use super::loaded::{Limits, LoadedPolicy};
use super::{PolicyError, PolicyQuery, Verdict};
use crate::config::OnError;
use crate::metrics::Metrics;

/// The policy name used in errors and logs of a component checked outside a configuration.
const NAME: &str = "component";

/// What a component implements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldInfo {
    /// `zonegate:policy/policy@0.2.0` or `@0.1.0`.
    pub world: &'static str,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// Its imports: the host interface and WASI interfaces (which trap if called).
    pub imports: Vec<String>,
}

/// Compiles and links `bytes`: the world it implements, or why it cannot be loaded.
pub fn check_component(engine: &PolicyEngine, bytes: &[u8]) -> Result<WorldInfo, PolicyError> {
    let c = engine.compile(NAME, bytes)?;
    Ok(WorldInfo {
        world: c.pre.world(),
        digest: c.digest.to_string(),
        imports: c.imports,
    })
}

/// One component loaded with its settings, deciding queries outside any configuration,
/// with a 16 MiB memory cap and a generous 100 ms deadline (this checks decisions, not
/// speed: a laptop or CI runner under load would trip the production 1 ms). A guest failure
/// is an error here, not an `on_error` verdict.
pub struct PolicyTester {
    policy: Arc<LoadedPolicy>,
}

impl PolicyTester {
    /// Compiles `bytes` and runs `init(settings)`; an `init` error rejects the load.
    pub fn new(engine: &PolicyEngine, bytes: &[u8], settings: &str) -> Result<Self, PolicyError> {
        let compiled = engine.compile(NAME, bytes)?;
        let limits = Limits {
            on_error: OnError::Deny,
            timeout: Duration::from_millis(100),
            memory_limit: 16 << 20,
            settings: settings.to_owned(),
        };
        let metrics = Metrics::new();
        let mut policy = LoadedPolicy::new(engine, NAME, limits, compiled, &metrics);
        policy.validate()?;
        Ok(PolicyTester {
            policy: Arc::new(policy),
        })
    }

    /// Decides one query.
    pub fn decide(&self, q: &PolicyQuery<'_>) -> Result<Verdict, PolicyError> {
        self.policy.decide_once(q).map_err(|f| PolicyError::Guest {
            policy: NAME.into(),
            kind: f.kind.label(),
            reason: f.reason.into_owned(),
        })
    }
}

/// Loads `bytes` with `settings` and decides one query (see [`PolicyTester`]).
pub fn test_decide(
    engine: &PolicyEngine,
    bytes: &[u8],
    settings: &str,
    q: &PolicyQuery<'_>,
) -> Result<Verdict, PolicyError> {
    PolicyTester::new(engine, bytes, settings)?.decide(q)
}
