//! Per-worker-thread guest instances (a wasmtime `Store` is not `Sync`): created lazily on
//! first use, reused across calls, dropped on failure and re-created with back-off, and
//! swept once the policy they belong to is unloaded. Also the per-thread memo of decisions
//! that carried a cache hint. This is the hot path: no locks, no allocation once warm.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::loaded::{Failure, FailureKind, Live, LoadedPolicy};
use super::memo::Memo;
use super::{PolicyQuery, Verdict};

/// First back-off after a failure; doubles per failure up to `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A failure this long after the previous one starts the back-off over.
const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// One call in this many is timed for `zonegate_policy_duration_seconds`.
const SAMPLE_EVERY: u32 = 16;
/// Route names interned per slot (a policy routes to a handful of groups).
const ROUTES_MAX: usize = 16;
/// Failures in a row (no success between them) before the whole policy backs off on this
/// thread. Fewer look like a query of death: only the failing (name, type) is quarantined.
const FAILURES_BEFORE_BACKOFF: u32 = 3;
/// Quarantined (name, type) keys kept per slot.
const QUARANTINE_MAX: usize = 1024;

/// Bumped whenever a loaded policy is dropped: workers then sweep their dead instances.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::new(Worker::default());
}

pub(crate) fn policy_dropped() {
    GENERATION.fetch_add(1, Ordering::Release);
}

/// Runs one policy on this thread's instance of it.
pub(crate) fn decide(p: &Arc<LoadedPolicy>, q: &PolicyQuery<'_>) -> Verdict {
    let run = |w: &RefCell<Worker>| match w.try_borrow_mut() {
        Ok(mut w) => w.decide(p, q),
        // Re-entered from a guest import: never happens with the current WIT; stay safe.
        Err(_) => p.fallback(),
    };
    // The thread-local is gone only while the thread exits.
    WORKER.try_with(run).unwrap_or_else(|_| p.fallback())
}

/// Live instances on this thread (tests check reuse and sweeping).
pub(crate) fn instances_on_this_thread() -> usize {
    WORKER.with_borrow_mut(|w| {
        w.sweep();
        w.slots.iter().filter(|s| s.live.is_some()).count()
    })
}

#[derive(Default)]
struct Worker {
    seen: u64,
    /// One per policy this thread ran: a handful, so a scan beats hashing the id.
    slots: Vec<Slot>,
    memo: Memo,
    calls: u32,
}

struct Slot {
    /// `LoadedPolicy::id`.
    id: u64,
    policy: Weak<LoadedPolicy>,
    /// The policy gave a decision with a cache hint on this thread: only then is the memo
    /// consulted (hashing the query costs more than a short guest call).
    memoizes: bool,
    live: Option<Live>,
    backoff: Backoff,
    /// Failures since the last successful call.
    failures_in_a_row: u32,
    /// Queries that made the guest fail, each backing off on its own: a query of death
    /// affects only itself, not the other names the policy decides.
    quarantine: HashMap<u64, Backoff>,
    routes: Vec<Arc<str>>,
}

impl Worker {
    fn sweep(&mut self) {
        let g = GENERATION.load(Ordering::Acquire);
        if g != self.seen {
            self.seen = g;
            self.slots.retain(|s| s.policy.strong_count() > 0);
            let slots = &self.slots;
            self.memo.retain(|id| slots.iter().any(|s| s.id == id));
        }
    }

    fn decide(&mut self, p: &Arc<LoadedPolicy>, q: &PolicyQuery<'_>) -> Verdict {
        self.sweep();
        let at = match self.slots.iter().position(|s| s.id == p.id) {
            Some(at) => at,
            None => {
                self.slots.push(Slot::new(p));
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[at];
        if slot.memoizes
            && let Some(v) = self.memo.get(p.id, q)
        {
            p.count(&v);
            return v;
        }
        // Hashed only when something is quarantined: the common path skips it.
        if !slot.quarantine.is_empty()
            && let Some(b) = slot.quarantine.get(&quarantine_key(q))
            && !b.ready(Instant::now())
        {
            let reason = "this query made the policy fail: quarantined".into();
            return p.failed(&Failure {
                kind: FailureKind::Backoff,
                reason,
            });
        }
        if slot.live.is_none()
            && let Err(fallback) = slot.start(p)
        {
            return fallback;
        }
        self.calls = self.calls.wrapping_add(1);
        let timed = self.calls.is_multiple_of(SAMPLE_EVERY);
        let Some(live) = slot.live.as_mut() else {
            return p.fallback();
        };
        let start = timed.then(Instant::now);
        let running = p.engine().guest_running();
        live.arm(p);
        let routes = &mut slot.routes;
        let result = live.decide(p, q, |r| intern(routes, r));
        drop(running);
        if let Some(start) = start {
            p.observe(start.elapsed());
        }
        match result {
            Ok(d) => {
                slot.failures_in_a_row = 0;
                p.count(&d.verdict);
                if let Some(secs) = d.cache_for.filter(|s| *s > 0) {
                    slot.memoizes = true;
                    self.memo.insert(p.id, q, &d.verdict, secs);
                }
                d.verdict
            }
            Err(e) => {
                let now = Instant::now();
                slot.live = None;
                slot.failures_in_a_row += 1;
                slot.backoff.failed(now);
                if slot.quarantine.len() >= QUARANTINE_MAX {
                    slot.quarantine.retain(|_, b| !b.ready(now));
                }
                if slot.quarantine.len() < QUARANTINE_MAX {
                    slot.quarantine
                        .entry(quarantine_key(q))
                        .or_default()
                        .failed(now);
                }
                p.failed(&Failure {
                    kind: FailureKind::of(&e),
                    reason: format!("{e:#}").into(),
                })
            }
        }
    }
}

impl Slot {
    fn new(p: &Arc<LoadedPolicy>) -> Self {
        Slot {
            id: p.id,
            policy: Arc::downgrade(p),
            memoizes: false,
            live: None,
            backoff: Backoff::default(),
            failures_in_a_row: 0,
            quarantine: HashMap::new(),
            routes: Vec::new(),
        }
    }

    /// Creates this thread's instance unless backing off; `Err` carries the `on_error` verdict.
    fn start(&mut self, p: &LoadedPolicy) -> Result<(), Verdict> {
        let now = Instant::now();
        if self.failures_in_a_row >= FAILURES_BEFORE_BACKOFF && !self.backoff.ready(now) {
            let reason = "backing off after a failure".into();
            return Err(p.failed(&Failure {
                kind: FailureKind::Backoff,
                reason,
            }));
        }
        match p.instantiate() {
            Ok(live) => {
                self.live = Some(live);
                Ok(())
            }
            Err(f) => {
                // Counts toward the back-off like a failed call: without it a policy whose
                // instance cannot be created would be re-instantiated on every query.
                self.failures_in_a_row += 1;
                self.backoff.failed(now);
                Err(p.failed(&f))
            }
        }
    }
}

/// A 0.1.0 policy's route name as a shared string: a policy routes to a handful of groups.
fn intern(routes: &mut Vec<Arc<str>>, route: &str) -> Arc<str> {
    if let Some(r) = routes.iter().find(|r| &***r == route) {
        return r.clone();
    }
    let r: Arc<str> = route.into();
    if routes.len() < ROUTES_MAX {
        routes.push(r.clone());
    }
    r
}

/// The quarantine key of a query: its name and type.
fn quarantine_key(q: &PolicyQuery<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    q.name.hash(&mut h);
    q.qtype.hash(&mut h);
    h.finish()
}

/// Exponential back-off (per thread and policy, and per quarantined query), so a query of
/// death cannot make a worker spin re-creating instances.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Backoff {
    until: Option<Instant>,
    delay: Duration,
    last_failure: Option<Instant>,
}

impl Backoff {
    pub(crate) fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now >= u)
    }

    pub(crate) fn failed(&mut self, now: Instant) {
        self.delay = match self.last_failure {
            Some(t) if now.saturating_duration_since(t) < BACKOFF_RESET => {
                (self.delay * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
            }
            _ => BACKOFF_MIN,
        };
        self.last_failure = Some(now);
        self.until = Some(now + self.delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets_after_quiet() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready(t0));
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            b.failed(now);
            delays.push(b.delay);
            assert!(!b.ready(now));
            now += b.delay;
            assert!(b.ready(now));
        }
        assert_eq!(delays[0], BACKOFF_MIN);
        assert_eq!(delays[1], BACKOFF_MIN * 2);
        assert_eq!(*delays.last().unwrap_or(&Duration::ZERO), BACKOFF_MAX);
        b.failed(now + BACKOFF_RESET);
        assert_eq!(b.delay, BACKOFF_MIN);
    }
}
