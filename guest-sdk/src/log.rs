//! `host.log`: the one thing a policy may ask of the host besides being called.

/// Log levels for [`log`].
///
/// ```
/// use zonegate_policy::Level;
///
/// assert!(Level::Warn > Level::Info);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something looks wrong but the policy carries on.
    Warn,
    /// Something failed.
    Error,
}

/// Write a line to the host's log, tagged with the policy's name.
///
/// Natively (in `cargo test`) the line is kept for [`testing::take_logs`](crate::testing::take_logs)
/// instead. Logging is not free on the host: keep it off the per-query path, or rare.
///
/// ```
/// use zonegate_policy::{log, testing, Level};
///
/// log(Level::Info, "loaded 3 rules");
/// assert_eq!(testing::take_logs(), vec![(Level::Info, "loaded 3 rules".to_string())]);
/// ```
pub fn log(level: Level, message: &str) {
    imp::log(level, message);
}

#[cfg(target_arch = "wasm32")]
pub(crate) mod imp {
    use super::Level;
    use crate::guest::bindings::zonegate::policy::host;
    use crate::guest::bindings::zonegate::policy::types::Level as WitLevel;

    pub(super) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => WitLevel::Trace,
            Level::Debug => WitLevel::Debug,
            Level::Info => WitLevel::Info,
            Level::Warn => WitLevel::Warn,
            Level::Error => WitLevel::Error,
        };
        host::log(level, message);
    }

    /// Lines went to the host: nothing is kept.
    pub(crate) fn take() -> Vec<(Level, String)> {
        Vec::new()
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod imp {
    use super::Level;
    use std::cell::RefCell;

    thread_local! {
        static LINES: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn log(level: Level, message: &str) {
        LINES.with_borrow_mut(|lines| lines.push((level, message.to_owned())));
    }

    pub(crate) fn take() -> Vec<(Level, String)> {
        LINES.with_borrow_mut(std::mem::take)
    }
}
