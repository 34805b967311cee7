//! Per-worker-thread guest instances (a wasmtime `Store` is not `Sync`): created lazily on
//! first use, reused across calls, dropped on failure and re-created with back-off, and
//! swept once the policy they belong to is unloaded. A call that fails quarantines its
//! query name (answered with `on_error` without calling the guest, with a back-off of its
//! own) rather than the whole policy, so a query of death does not take other names down;
//! the whole policy backs off when a second name fails while one is quarantined. Also the per-thread memo of decisions
//! that carried a cache hint. This is the hot path: no locks, no allocation once warm.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::bindings::{QueryBuf, convert};
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
        w.slots.values().filter(|s| s.live.is_some()).count()
    })
}

#[derive(Default)]
struct Worker {
    seen: u64,
    slots: HashMap<u64, Slot>,
    query: QueryBuf,
    memo: Memo,
    calls: u32,
}

struct Slot {
    policy: Weak<LoadedPolicy>,
    live: Option<Live>,
    backoff: Backoff,
    routes: Vec<Arc<str>>,
    /// The last name whose call failed, and its own back-off.
    poison: Option<(Box<str>, Backoff)>,
}

impl Worker {
    fn sweep(&mut self) {
        let g = GENERATION.load(Ordering::Acquire);
        if g != self.seen {
            self.seen = g;
            self.slots.retain(|_, s| s.policy.strong_count() > 0);
            let slots = &self.slots;
            self.memo.retain(|id| slots.contains_key(&id));
        }
    }

    fn decide(&mut self, p: &Arc<LoadedPolicy>, q: &PolicyQuery<'_>) -> Verdict {
        self.sweep();
        if let Some(v) = self.memo.get(p.id, q) {
            p.count(&v);
            return v;
        }
        let slot = self.slots.entry(p.id).or_insert_with(|| Slot::new(p));
        if let Some(fallback) = slot.quarantined(p, q.name) {
            return fallback;
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
        live.store.set_epoch_deadline(p.deadline_ticks());
        let result = live
            .bindings
            .call_decide(&mut live.store, self.query.fill(q));
        if let Some(start) = start {
            p.observe(start.elapsed());
        }
        match result {
            Ok(d) => {
                let d = convert(d, |r| slot.intern(r));
                p.count(&d.verdict);
                if let Some(secs) = d.cache_for.filter(|s| *s > 0) {
                    self.memo.insert(p.id, q, &d.verdict, secs);
                }
                d.verdict
            }
            Err(e) => {
                slot.live = None;
                slot.call_failed(q.name, Instant::now());
                p.failed(&Failure {
                    kind: FailureKind::of(&e),
                    reason: format!("{e:#}"),
                })
            }
        }
    }
}

impl Slot {
    fn new(p: &Arc<LoadedPolicy>) -> Self {
        Slot {
            policy: Arc::downgrade(p),
            live: None,
            backoff: Backoff::default(),
            routes: Vec::new(),
            poison: None,
        }
    }

    /// The `on_error` verdict if `name` failed recently and is still backing off.
    fn quarantined(&self, p: &LoadedPolicy, name: &str) -> Option<Verdict> {
        if self.poison.is_none() || !self.is_quarantined(name, Instant::now()) {
            return None;
        }
        Some(p.failed(&Failure {
            kind: FailureKind::Backoff,
            reason: format!("{name} made the policy fail: backing off that name"),
        }))
    }

    fn is_quarantined(&self, name: &str, now: Instant) -> bool {
        self.poison
            .as_ref()
            .is_some_and(|(poisoned, backoff)| **poisoned == *name && !backoff.ready(now))
    }

    /// A call for `name` failed: quarantine the name; if another name is still quarantined,
    /// the guest fails on more than one name, so back off the whole policy too.
    fn call_failed(&mut self, name: &str, now: Instant) {
        match &mut self.poison {
            Some((poisoned, backoff)) if **poisoned == *name => backoff.failed(now),
            other => {
                if other.as_ref().is_some_and(|(_, b)| !b.ready(now)) {
                    self.backoff.failed(now);
                }
                let mut backoff = Backoff::default();
                backoff.failed(now);
                *other = Some((name.into(), backoff));
            }
        }
    }

    /// Creates this thread's instance unless backing off; `Err` carries the `on_error` verdict.
    fn start(&mut self, p: &LoadedPolicy) -> Result<(), Verdict> {
        let now = Instant::now();
        if !self.backoff.ready(now) {
            let reason = "backing off after a failure".to_string();
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
                self.backoff.failed(now);
                Err(p.failed(&f))
            }
        }
    }

    fn intern(&mut self, route: &str) -> Arc<str> {
        if let Some(r) = self.routes.iter().find(|r| &***r == route) {
            return r.clone();
        }
        let r: Arc<str> = route.into();
        if self.routes.len() < ROUTES_MAX {
            self.routes.push(r.clone());
        }
        r
    }
}

/// Exponential back-off per thread and policy, so a query of death cannot make a worker
/// spin re-creating instances.
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

    #[test]
    fn a_failing_name_is_quarantined_alone_until_a_second_name_fails() {
        let mut slot = Slot {
            policy: Weak::new(),
            live: None,
            backoff: Backoff::default(),
            routes: Vec::new(),
            poison: None,
        };
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        slot.call_failed("boom.", t0);
        assert!(slot.is_quarantined("boom.", t0));
        assert!(!slot.is_quarantined("fine.", t0));
        assert!(slot.backoff.ready(t0), "other names still reach the guest");
        // The same name again: its own back-off doubles, the policy's is untouched.
        slot.call_failed("boom.", t0 + BACKOFF_MIN);
        assert!(slot.is_quarantined("boom.", t0 + BACKOFF_MIN + ms(15)));
        assert!(!slot.is_quarantined("boom.", t0 + BACKOFF_MIN * 3));
        assert!(slot.backoff.ready(t0 + BACKOFF_MIN));
        // A second name failing while the first is quarantined: the whole policy backs off.
        let t1 = t0 + BACKOFF_MIN * 3;
        slot.call_failed("boom.", t1);
        slot.call_failed("other.", t1 + ms(1));
        assert!(!slot.backoff.ready(t1 + ms(1)));
        assert!(slot.is_quarantined("other.", t1 + ms(1)));
    }
}
