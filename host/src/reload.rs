//! Reload: watches the configuration file and every `file:` policy source (following the
//! `..data` symlink swap Kubernetes does for mounted ConfigMaps), and on a change or SIGHUP
//! builds a complete new snapshot off the hot path and swaps it atomically. Any error keeps
//! the running snapshot, is logged with its reason and counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};

use crate::app::ConfigSource;
use crate::config::{Config, ConfigErrors, PolicySource};
use crate::listener::Shared;
use crate::metrics::{Metrics, ResultLabels};
use crate::pipeline::{BuildError, Snapshot};
use crate::policy::PolicyEngine;

/// How often sources are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Why a reload was rejected (the previous snapshot keeps serving).
#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0} changed: listener and endpoint addresses need a restart")]
    NeedsRestart(&'static str),
    #[error("reload task failed: {0}")]
    Task(String),
}

/// Watches sources and swaps snapshots.
pub struct Reloader {
    source: ConfigSource,
    shared: Arc<Shared>,
    engine: Arc<PolicyEngine>,
    metrics: Arc<Metrics>,
    last: std::sync::Mutex<Fingerprint>,
    /// One reload at a time (a SIGHUP during a file-change reload waits).
    busy: tokio::sync::Mutex<()>,
}

/// What identifies the current content of every watched file: (path, size, mtime, inode)
/// of the resolved target, so a symlink swap is a change even with equal timestamps.
type Fingerprint = Vec<(PathBuf, Option<(u64, SystemTime, u64)>)>;

impl Reloader {
    pub fn new(
        source: ConfigSource,
        shared: Arc<Shared>,
        engine: Arc<PolicyEngine>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let last = fingerprint(&source, &shared.snapshot.load().config).into();
        Reloader {
            source,
            shared,
            engine,
            metrics,
            last,
            busy: Default::default(),
        }
    }

    /// Runs until aborted: SIGHUP forces a reload; a changed fingerprint triggers one.
    ///
    /// The SIGHUP handler is installed here, synchronously, so it is in place before the
    /// caller reports ready: an early SIGHUP must reload, not kill the process (its default).
    pub fn run(self: Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: reload on file change only");
                None
            }
        };
        self.watch(hup)
    }

    async fn watch(self: Arc<Self>, mut hup: Option<tokio::signal::unix::Signal>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = hangup => true,
            };
            if forced || self.changed() {
                let why = if forced { "SIGHUP" } else { "file change" };
                let _ = self.reload(why).await;
            }
        }
    }

    /// Whether a watched file changed since the last look.
    fn changed(&self) -> bool {
        let current = fingerprint(&self.source, &self.shared.snapshot.load().config);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) != current
    }

    /// Loads, builds and swaps; on error keeps the running snapshot.
    pub async fn reload(&self, why: &str) -> Result<(), ReloadError> {
        let _one_at_a_time = self.busy.lock().await;
        // What is seen now is what the next change is measured against, even if this
        // reload fails: a broken file is reported once, not on every tick.
        let seen = fingerprint(&self.source, &self.shared.snapshot.load().config);
        let result = self.try_reload().await;
        match &result {
            Ok(()) => {
                let labels = ResultLabels { result: "success" };
                self.metrics.reloads.get_or_create(&labels).inc();
                tracing::info!(trigger = why, "configuration reloaded");
            }
            Err(e) => {
                let labels = ResultLabels { result: "failure" };
                self.metrics.reloads.get_or_create(&labels).inc();
                self.metrics.reload_failed.inc();
                tracing::error!(
                    trigger = why,
                    "reload rejected, previous configuration keeps serving: {e}"
                );
            }
        }
        // A successful reload may watch new policy files: measure against the new config.
        let seen = if result.is_ok() {
            fingerprint(&self.source, &self.shared.snapshot.load().config)
        } else {
            seen
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        result
    }

    async fn try_reload(&self) -> Result<(), ReloadError> {
        let source = self.source.clone();
        let config = tokio::task::spawn_blocking(move || source.load())
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))??;
        let previous = self.shared.snapshot.load_full();
        check_restart_free(&previous.config, &config)?;
        let (engine, metrics) = (self.engine.clone(), self.metrics.clone());
        // Compiling policies takes milliseconds: keep it off the runtime's workers.
        let snapshot = tokio::task::spawn_blocking(move || {
            Snapshot::build(config, Some(&previous), &engine, &metrics)
        })
        .await
        .map_err(|e| ReloadError::Task(e.to_string()))??;
        self.shared.snapshot.store(Arc::new(snapshot));
        Ok(())
    }
}

/// Listeners and endpoints are bound once: a change to them is rejected, not half-applied.
fn check_restart_free(old: &Config, new: &Config) -> Result<(), ReloadError> {
    if old.listeners != new.listeners {
        return Err(ReloadError::NeedsRestart("listen"));
    }
    if old.observability != new.observability {
        return Err(ReloadError::NeedsRestart("observability"));
    }
    if old.server.workers != new.server.workers {
        return Err(ReloadError::NeedsRestart("server.workers"));
    }
    Ok(())
}

fn fingerprint(source: &ConfigSource, config: &Config) -> Fingerprint {
    let policy_files = config.policies.values().filter_map(|p| match &p.source {
        PolicySource::File(path) => Some(path.as_path()),
        PolicySource::Oci(_) => None,
    });
    source
        .path()
        .into_iter()
        .chain(policy_files)
        .map(|p| (p.to_path_buf(), stat(p)))
        .collect()
}

fn stat(path: &Path) -> Option<(u64, SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows symlinks: a `..data` swap changes the inode we see.
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}
