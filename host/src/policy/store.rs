//! What a guest instance's `Store` carries: its memory cap, its CPU deadline and the
//! `host.log` import. Kept small because every worker thread holds one per policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use wasmtime::{ResourceLimiter, UpdateDeadline};

/// Raised inside the guest when it tries to grow memory beyond its cap, so a failure can be
/// told apart from an ordinary trap.
#[derive(Debug, Error)]
#[error("memory limit of {limit} bytes exceeded (wanted {desired})")]
pub(crate) struct MemoryCapExceeded {
    pub(crate) limit: usize,
    pub(crate) desired: usize,
}

/// Log lines a guest may write per second and instance; the rest are counted and dropped.
const LOG_LINES_PER_SEC: u32 = 50;
/// Longest guest log line kept.
const LOG_LINE_MAX: usize = 1024;
/// Table elements a guest may grow to (function references; Rust guests need a few hundred).
const TABLE_ELEMENTS_MAX: usize = 100_000;

/// Deadline extensions a call may get while its thread is preempted (bounds wall time).
const EXTENSIONS_MAX: u32 = 50;

/// The data of a guest `Store`.
pub(crate) struct GuestState {
    policy: Arc<str>,
    memory_limit: usize,
    log_window: Instant,
    log_lines: u32,
    deadline: CallDeadline,
}

/// A call's deadline in CPU time, enforced with the engine's wall-clock epochs.
///
/// The epoch deadline passes after the call's budget of *wall* time. A busy node (or a CPU
/// limit) may have preempted the thread meanwhile, so instead of trapping at once the first
/// expiry starts a measured window of one more budget: the guest is stopped only if it
/// actually ran for at least half of that window. An endless loop is stopped after about two
/// budgets; a preempted call is not. Nothing is measured on calls that finish in time.
#[derive(Debug, Clone, Copy, Default)]
struct CallDeadline {
    budget: Duration,
    ticks: u64,
    mark: Option<Duration>,
    extensions: u32,
}

impl CallDeadline {
    /// The epoch deadline passed with the thread at `cpu` CPU time: `Some(ticks)` to give
    /// the call another window, `None` to stop it.
    fn expired(&mut self, cpu: Option<Duration>) -> Option<u64> {
        let now = cpu?;
        let ran = self.mark.map(|mark| now.saturating_sub(mark));
        if ran.is_some_and(|ran| ran >= self.budget / 2) || self.extensions >= EXTENSIONS_MAX {
            return None;
        }
        if self.mark.is_some() {
            self.extensions += 1;
        }
        self.mark = Some(now);
        Some(self.ticks.max(1))
    }
}

impl GuestState {
    pub(crate) fn new(policy: Arc<str>, memory_limit: usize) -> Self {
        GuestState {
            policy,
            memory_limit,
            log_window: Instant::now(),
            log_lines: 0,
            deadline: CallDeadline::default(),
        }
    }

    /// Arms the deadline for the next call: `budget` of CPU, `ticks` epochs per window.
    pub(crate) fn begin_call(&mut self, budget: Duration, ticks: u64) {
        self.deadline = CallDeadline {
            budget,
            ticks,
            mark: None,
            extensions: 0,
        };
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        self
    }

    /// The store's epoch-deadline callback.
    pub(crate) fn on_deadline(&mut self) -> wasmtime::Result<UpdateDeadline> {
        match self.deadline.expired(thread_cpu_time()) {
            Some(ticks) => Ok(UpdateDeadline::Continue(ticks)),
            None => Err(wasmtime::Trap::Interrupt.into()),
        }
    }

    fn admit_log_line(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.log_window).as_secs() >= 1 {
            if self.log_lines > LOG_LINES_PER_SEC {
                let dropped = self.log_lines - LOG_LINES_PER_SEC;
                tracing::warn!(policy = %self.policy, dropped, "policy log lines dropped");
            }
            self.log_window = now;
            self.log_lines = 0;
        }
        self.log_lines = self.log_lines.saturating_add(1);
        self.log_lines <= LOG_LINES_PER_SEC
    }
}

impl ResourceLimiter for GuestState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(MemoryCapExceeded {
                limit: self.memory_limit,
                desired,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}

impl GuestState {
    /// A line the guest logs through `host.log`: rate-limited, truncated, tagged with the
    /// policy's name.
    pub(crate) fn log_line(&mut self, level: tracing::Level, message: &str) {
        if !self.admit_log_line() {
            return;
        }
        let msg = truncate(message, LOG_LINE_MAX);
        let policy = &*self.policy;
        match level {
            tracing::Level::TRACE => tracing::trace!(policy, "{msg}"),
            tracing::Level::DEBUG => tracing::debug!(policy, "{msg}"),
            tracing::Level::INFO => tracing::info!(policy, "{msg}"),
            tracing::Level::WARN => tracing::warn!(policy, "{msg}"),
            tracing::Level::ERROR => tracing::error!(policy, "{msg}"),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// CPU time used by the calling thread.
fn thread_cpu_time() -> Option<Duration> {
    use nix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(Duration::new(
        u64::try_from(t.tv_sec()).ok()?,
        u32::try_from(t.tv_nsec()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        for (input, max, want) in [("abc", 5, "abc"), ("abcdef", 3, "abc"), ("aé", 2, "a")] {
            assert_eq!(truncate(input, max), want);
        }
    }

    #[test]
    fn memory_cap_is_an_error_not_a_refusal() {
        let mut s = GuestState::new("p".into(), 1 << 20);
        assert!(s.memory_growing(0, 1 << 20, None).unwrap_or(false));
        let err = s.memory_growing(1 << 20, 2 << 20, None).err();
        assert!(err.is_some_and(|e| e.downcast_ref::<MemoryCapExceeded>().is_some()));
    }

    #[test]
    fn a_spinning_call_stops_after_a_measured_window_and_a_preempted_one_goes_on() {
        let ms = Duration::from_millis;
        let armed = CallDeadline {
            budget: ms(1),
            ticks: 4,
            mark: None,
            extensions: 0,
        };
        // Spinning: the window after the first expiry is all CPU.
        let mut d = armed;
        assert_eq!(d.expired(Some(ms(10))), Some(4));
        assert_eq!(d.expired(Some(ms(11))), None);
        // Preempted: little CPU per window, extended, up to the bound.
        let mut d = armed;
        assert_eq!(d.expired(Some(ms(10))), Some(4));
        let mut cpu = ms(10);
        for _ in 0..EXTENSIONS_MAX {
            cpu += Duration::from_micros(100);
            assert_eq!(d.expired(Some(cpu)), Some(4));
        }
        assert_eq!(
            d.expired(Some(cpu + Duration::from_micros(100))),
            None,
            "wall time is bounded too"
        );
        // No CPU clock: stop, as a plain deadline would.
        assert_eq!(armed.clone().expired(None), None);
    }
}
