//! One loaded policy: its compiled component, limits, `on_error`, metrics handles, and the
//! instantiate → `init` → `decide` calls under those limits. Worker threads call into it.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use wasmtime::Store;

use super::bindings::{GuestDecision, Instance, Phase, Routes, StartError};
use super::engine::{Compiled, PolicyEngine};
use super::store::{GuestState, MemoryCapExceeded};
use super::{DenyKind, PolicyError, PolicyQuery, Verdict};
use crate::config::OnError;
use crate::metrics::{Label, Metrics, PolicyErrorLabels, PolicyLabels, PolicyVerdictLabels};

/// How long `init` may run (large settings, e.g. a 100,000-name blocklist, are compiled there).
const INIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Failures of one policy are logged at most once per this interval.
const LOG_EVERY: Duration = Duration::from_secs(1);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What went wrong with a guest: the `kind` label of `zonegate_policy_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Trap,
    Timeout,
    Memory,
    Instantiate,
    Init,
    /// Skipped the guest while backing off after a failure.
    Backoff,
}

impl FailureKind {
    const COUNT: usize = FailureKind::Backoff as usize + 1;

    pub(crate) fn label(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Instantiate => "instantiate",
            FailureKind::Init => "init",
            FailureKind::Backoff => "backoff",
        }
    }

    pub(crate) fn of(e: &wasmtime::Error) -> Self {
        if e.chain().any(|c| c.is::<MemoryCapExceeded>()) {
            FailureKind::Memory
        } else if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            FailureKind::Timeout
        } else {
            FailureKind::Trap
        }
    }
}

/// A guest failure with its description.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    /// Static for the skips of a back-off (no allocation per skipped query).
    pub(crate) reason: Cow<'static, str>,
}

impl Failure {
    fn from_call(e: &wasmtime::Error) -> Self {
        Failure {
            kind: FailureKind::of(e),
            reason: format!("{e:#}").into(),
        }
    }
}

/// A live instance: one per worker thread and policy.
pub(crate) struct Live {
    store: Store<GuestState>,
    instance: Instance,
}

impl Live {
    /// Arms the per-call deadline before a `decide`.
    pub(crate) fn arm(&mut self, p: &LoadedPolicy) {
        arm(&mut self.store, p.timeout(), p.deadline_ticks());
    }

    /// Decides one query of `p` under the armed deadline; after an error, drop the instance.
    pub(crate) fn decide(
        &mut self,
        p: &LoadedPolicy,
        q: &PolicyQuery<'_>,
        intern: impl FnOnce(&str) -> Arc<str>,
    ) -> wasmtime::Result<GuestDecision> {
        let routes = p.declared_routes.as_deref().unwrap_or_default();
        self.instance.decide(&mut self.store, q, routes, intern)
    }
}

/// Gives the next guest call `budget` of CPU, in windows of `ticks` epochs.
fn arm(store: &mut Store<GuestState>, budget: Duration, ticks: u64) {
    store.data_mut().begin_call(budget, ticks);
    store.set_epoch_deadline(ticks);
}

/// Per-call limits and the settings passed to `init`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    pub(crate) on_error: OnError,
    pub(crate) timeout: Duration,
    pub(crate) memory_limit: usize,
    pub(crate) settings: String,
}

/// Metric handles resolved once at load so the hot path only bumps atomics.
struct Counters {
    allow: Counter,
    deny: Counter,
    route: Counter,
    answer: Counter,
    duration: Histogram,
    errors: Family<PolicyErrorLabels, Counter>,
    /// `errors` handles by [`FailureKind`], resolved on first use (a series appears only
    /// once something failed that way).
    error_handles: [OnceLock<Counter>; FailureKind::COUNT],
}

/// A policy ready to run on any thread.
pub(crate) struct LoadedPolicy {
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) limits: Limits,
    pub(crate) compiled: Compiled,
    engine: PolicyEngine,
    deadline_ticks: u64,
    init_ticks: u64,
    counters: Counters,
    next_log_ms: AtomicU64,
    suppressed: AtomicU64,
    pub(crate) instantiations: AtomicU64,
    /// The upstream groups a 0.2.0 policy declared in `init` (set by `validate`): its
    /// `route(i)` decisions index this list, the one checked against the configuration.
    declared_routes: Option<Routes>,
}

impl Drop for LoadedPolicy {
    fn drop(&mut self) {
        super::worker::policy_dropped();
    }
}

impl LoadedPolicy {
    pub(crate) fn new(
        engine: &PolicyEngine,
        name: &str,
        limits: Limits,
        compiled: Compiled,
        metrics: &Metrics,
    ) -> Self {
        let name: Arc<str> = name.into();
        LoadedPolicy {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            deadline_ticks: engine.ticks(limits.timeout),
            init_ticks: engine.ticks(INIT_TIMEOUT),
            counters: counters(metrics, &name),
            name,
            limits,
            compiled,
            engine: engine.clone(),
            next_log_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            instantiations: AtomicU64::new(0),
            declared_routes: None,
        }
    }

    /// Instantiates and runs `init` with the policy's settings.
    pub(crate) fn instantiate(&self) -> Result<Live, Failure> {
        self.start().map(|(live, _)| live)
    }

    /// [`LoadedPolicy::instantiate`], with the routes the policy declared.
    fn start(&self) -> Result<(Live, Option<Routes>), Failure> {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        let _running = self.engine.guest_running();
        let state = GuestState::new(self.name.clone(), self.limits.memory_limit);
        let mut store = Store::new(self.compiled.pre.engine(), state);
        store.limiter(GuestState::limiter);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().on_deadline());
        arm(&mut store, INIT_TIMEOUT, self.init_ticks);
        match self.compiled.pre.start(&mut store, &self.limits.settings) {
            Ok((instance, routes)) => Ok((Live { store, instance }, routes)),
            Err(StartError::Rejected(msg)) => Err(Failure {
                kind: FailureKind::Init,
                reason: msg.into(),
            }),
            Err(StartError::Trap(e, phase)) => {
                let kind = match (FailureKind::of(&e), phase) {
                    (FailureKind::Memory, _) => FailureKind::Memory,
                    (_, Phase::Instantiate) => FailureKind::Instantiate,
                    (kind, Phase::Init) => kind,
                };
                Err(Failure {
                    kind,
                    reason: format!("{e:#}").into(),
                })
            }
        }
    }

    /// Loads once off the hot path: a failure rejects the policy. Keeps the upstream groups
    /// a 0.2.0 policy declared.
    pub(crate) fn validate(&mut self) -> Result<(), PolicyError> {
        match self.start() {
            Ok((_, routes)) => {
                self.declared_routes = routes;
                Ok(())
            }
            Err(f) => Err(match f.kind {
                FailureKind::Init => PolicyError::InitRejected {
                    policy: self.name.to_string(),
                    message: f.reason.into_owned(),
                },
                kind => PolicyError::Guest {
                    policy: self.name.to_string(),
                    kind: kind.label(),
                    reason: f.reason.into_owned(),
                },
            }),
        }
    }

    /// The upstream groups a 0.2.0 policy declared; `None` for a 0.1.0 policy.
    pub(crate) fn declared_routes(&self) -> Option<&[Arc<str>]> {
        self.declared_routes.as_deref()
    }

    /// Instantiates and decides one query on a fresh instance, reporting any failure.
    pub(crate) fn decide_once(&self, q: &PolicyQuery<'_>) -> Result<Verdict, Failure> {
        let mut live = self.instantiate()?;
        let _running = self.engine.guest_running();
        live.arm(self);
        let d = live.decide(self, q, |r| Arc::from(r));
        Ok(d.map_err(|e| Failure::from_call(&e))?.verdict)
    }

    pub(crate) fn deadline_ticks(&self) -> u64 {
        self.deadline_ticks
    }

    /// The per-call CPU budget.
    pub(crate) fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// The engine that runs this policy (its guard wakes the epoch ticker).
    pub(crate) fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// The verdict standing in for the guest after a failure.
    pub(crate) fn fallback(&self) -> Verdict {
        match self.limits.on_error {
            OnError::Deny => Verdict::Deny(DenyKind::Refused),
            OnError::Allow => Verdict::Allow,
        }
    }

    pub(crate) fn count(&self, v: &Verdict) {
        let c = &self.counters;
        match v {
            Verdict::Allow => c.allow.inc(),
            Verdict::Deny(_) => c.deny.inc(),
            Verdict::Route(_) => c.route.inc(),
            Verdict::Answer(_) => c.answer.inc(),
        };
    }

    pub(crate) fn observe(&self, elapsed: Duration) {
        self.counters.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a failure, logs it (at most once per second per policy) and returns the
    /// `on_error` verdict.
    pub(crate) fn failed(&self, f: &Failure) -> Verdict {
        let c = &self.counters;
        c.error_handles[f.kind as usize]
            .get_or_init(|| {
                let labels = PolicyErrorLabels {
                    policy: Label(self.name.clone()),
                    kind: f.kind.label(),
                };
                c.errors.get_or_create(&labels).clone()
            })
            .inc();
        if self.log_gate() {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(
                policy = %self.name,
                kind = f.kind.label(),
                error = %f.reason,
                suppressed,
                on_error = ?self.limits.on_error,
                "policy failed"
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        self.fallback()
    }

    fn log_gate(&self) -> bool {
        let now = millis_since_start();
        let next = self.next_log_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_log_ms
                .compare_exchange(
                    next,
                    now + LOG_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

fn millis_since_start() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn counters(metrics: &Metrics, name: &Arc<str>) -> Counters {
    let verdict = |v: &'static str| {
        let labels = PolicyVerdictLabels {
            policy: Label(name.clone()),
            verdict: v,
        };
        metrics.policy_decisions.get_or_create(&labels).clone()
    };
    let labels = PolicyLabels {
        policy: Label(name.clone()),
    };
    Counters {
        allow: verdict("allow"),
        deny: verdict("deny"),
        route: verdict("route"),
        answer: verdict("answer"),
        duration: metrics.policy_duration.get_or_create(&labels).clone(),
        errors: metrics.policy_errors.clone(),
        error_handles: Default::default(),
    }
}
