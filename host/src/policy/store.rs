//! What a guest instance's `Store` carries: its memory cap and the `host.log` import.
//! Kept small because every worker thread holds one per policy.

use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use wasmtime::ResourceLimiter;

use super::bindings::{Level, LogHost};

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

/// The data of a guest `Store`.
pub(crate) struct GuestState {
    policy: Arc<str>,
    memory_limit: usize,
    log_window: Instant,
    log_lines: u32,
}

impl GuestState {
    pub(crate) fn new(policy: Arc<str>, memory_limit: usize) -> Self {
        GuestState {
            policy,
            memory_limit,
            log_window: Instant::now(),
            log_lines: 0,
        }
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        self
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

impl LogHost for GuestState {
    fn log(&mut self, level: Level, message: String) {
        if !self.admit_log_line() {
            return;
        }
        let msg = truncate(&message, LOG_LINE_MAX);
        let policy = &*self.policy;
        match level {
            Level::Trace => tracing::trace!(policy, "{msg}"),
            Level::Debug => tracing::debug!(policy, "{msg}"),
            Level::Info => tracing::info!(policy, "{msg}"),
            Level::Warn => tracing::warn!(policy, "{msg}"),
            Level::Error => tracing::error!(policy, "{msg}"),
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
}
