//! The process's one wasmtime `Engine`: epoch ticker, compilation deduplicated by content
//! digest with an on-disk artifact cache, and linking a component into an `InstancePre`.
//! Runs off the hot path (load and reload).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use crate::oci::layout::sha256;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::PolicyError;
use super::bindings::{Pre, provides};

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where precompiled artifacts are kept across restarts; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Epoch tick: the granularity of call deadlines. Each tick wakes a thread while guest
    /// code runs, so it costs CPU: 250 µs cost ≈ 3% of a core under steady policy load (the
    /// dnsperf run with a policy on every query: 0.2 µs per query), 1 ms ≈ 0.8%.
    pub epoch_tick: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_dir: None,
            epoch_tick: Duration::from_millis(1),
        }
    }
}

/// The wasmtime engine shared by every policy of the process (create one, clone freely).
/// It is built on the first compile: a process without policies has no engine, compiler
/// state or ticker thread (and does not page in their code).
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    tick: Duration,
    cache_dir: Option<PathBuf>,
    built: OnceLock<Built>,
    /// Held while building, so two first compiles do not both build.
    building: Mutex<()>,
}

/// The engine once built.
struct Built {
    engine: Engine,
    compat: String,
    ticker: Arc<Ticker>,
}

impl Drop for Built {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::SeqCst);
        self.ticker.thread.unpark();
    }
}

/// Ticks (epoch increments) the ticker thread keeps making after the last guest call ended
/// before it parks: a process whose policies are idle (or that has none) pays no wake-ups.
const IDLE_TICKS: u32 = 400;

/// The epoch ticker's state. Guest code runs only inside [`GuestRunning`], which wakes a
/// parked ticker, so every call's epoch deadline is enforced.
struct Ticker {
    /// Guest calls (instantiate, init, decide) running now.
    active: AtomicUsize,
    /// True while the ticker thread is parked (or about to park).
    parked: AtomicBool,
    stop: AtomicBool,
    thread: Thread,
}

/// Marks guest code running on this thread; the ticker keeps ticking until it drops.
pub(crate) struct GuestRunning<'a>(Option<&'a Ticker>);

impl Drop for GuestRunning<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            t.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A compiled, linked component, shared by every policy loaded from the same bytes.
#[derive(Clone)]
pub(crate) struct Compiled {
    pub(crate) digest: Arc<str>,
    pub(crate) pre: Pre,
    pub(crate) imports: Vec<String>,
}

impl PolicyEngine {
    /// A handle on the engine; it is built (and its epoch ticker thread started, stopped
    /// when the last clone is dropped) by the first compile.
    pub fn new(opts: EngineOptions) -> Self {
        PolicyEngine {
            inner: Arc::new(Inner {
                tick: opts.epoch_tick.max(Duration::from_micros(10)),
                cache_dir: opts.cache_dir,
                built: OnceLock::new(),
                building: Mutex::new(()),
            }),
        }
    }

    /// The engine, built now if this is the first use.
    fn built(&self) -> Result<&Built, PolicyError> {
        if let Some(b) = self.inner.built.get() {
            return Ok(b);
        }
        let _building = self
            .inner
            .building
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = self.inner.built.get() {
            return Ok(b);
        }
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.concurrency_support(false);
        let engine = Engine::new(&config).map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        let compat = compat_hash(&engine);
        let ticker = spawn_ticker(engine.clone(), self.inner.tick)?;
        Ok(self.inner.built.get_or_init(|| Built {
            engine,
            compat,
            ticker,
        }))
    }

    /// Call before running guest code (keep the guard for the whole call): wakes the epoch
    /// ticker if it parked, so the call's epoch deadline is enforced. (Guest code exists only
    /// once something compiled, so the engine is built.)
    pub(crate) fn guest_running(&self) -> GuestRunning<'_> {
        let Some(t) = self.inner.built.get().map(|b| &*b.ticker) else {
            return GuestRunning(None);
        };
        t.active.fetch_add(1, Ordering::SeqCst);
        if t.parked.load(Ordering::SeqCst) {
            t.thread.unpark();
        }
        GuestRunning(Some(t))
    }

    /// Epoch ticks covering at least `d` (one extra: the first tick may come at once).
    pub(crate) fn ticks(&self, d: Duration) -> u64 {
        let tick = self.inner.tick.as_nanos().max(1);
        u64::try_from(d.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX / 2) + 1
    }

    /// Compiles (or loads from the disk cache) and links `bytes`; `policy` names errors.
    pub(crate) fn compile(&self, policy: &str, bytes: &[u8]) -> Result<Compiled, PolicyError> {
        let built = self.built()?;
        let digest = sha256(bytes);
        let component = self.component(built, policy, bytes, &digest)?;
        link(&built.engine, policy, &component, digest.into())
    }

    fn component(
        &self,
        built: &Built,
        policy: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, PolicyError> {
        let engine = &built.engine;
        let cached = self.cache_path(&built.compat, digest);
        if let Some(c) = cached.as_deref().and_then(|path| load_cached(engine, path)) {
            return Ok(c);
        }
        let component = Component::new(engine, bytes).map_err(|e| PolicyError::Compile {
            policy: policy.into(),
            reason: format!("{e:#}"),
        })?;
        if let Some(path) = &cached {
            store_cached(&component, path);
        }
        Ok(component)
    }

    fn cache_path(&self, compat: &str, digest: &str) -> Option<PathBuf> {
        let dir = self.inner.cache_dir.as_ref()?;
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        Some(dir.join(format!("{hex}-{compat}.cwasm")))
    }
}

/// Links a compiled component; `policy` names errors.
fn link(
    engine: &Engine,
    policy: &str,
    c: &Component,
    digest: Arc<str>,
) -> Result<Compiled, PolicyError> {
    let wrong = |reason: String| PolicyError::WrongWorld {
        policy: policy.into(),
        reason,
    };
    let imports = check_imports(engine, c).map_err(wrong)?;
    let pre = Pre::link(engine, c).map_err(wrong)?;
    Ok(Compiled {
        digest,
        pre,
        imports,
    })
}

fn compat_hash(engine: &Engine) -> String {
    // DefaultHasher::new() has fixed keys: stable for one build of the binary, which is
    // all the artifact cache needs (a new build has a new compatibility hash anyway).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Starts the epoch ticker. It parks after [`IDLE_TICKS`] ticks with no guest call running
/// and is woken by [`PolicyEngine::guest_running`]: `active` and `parked` are a Dekker pair
/// (both sides store, then load the other, all `SeqCst`), so either the caller sees
/// `parked` and unparks, or the ticker sees `active` and does not park.
fn spawn_ticker(engine: Engine, tick: Duration) -> Result<Arc<Ticker>, PolicyError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Ticker>>(1);
    let handle = std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            let Ok(t) = rx.recv() else { return };
            drop(rx);
            let mut idle = 0u32;
            while !t.stop.load(Ordering::SeqCst) {
                if t.active.load(Ordering::SeqCst) > 0 {
                    idle = 0;
                } else {
                    idle += 1;
                }
                if idle > IDLE_TICKS {
                    t.parked.store(true, Ordering::SeqCst);
                    if t.active.load(Ordering::SeqCst) == 0 && !t.stop.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                    t.parked.store(false, Ordering::SeqCst);
                    idle = 0;
                    continue;
                }
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .map_err(|e| PolicyError::Engine(format!("epoch thread: {e}")))?;
    let ticker = Arc::new(Ticker {
        active: AtomicUsize::new(0),
        parked: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        thread: handle.thread().clone(),
    });
    // The thread waits for its state; it cannot have exited, so the send succeeds.
    let _ = tx.send(ticker.clone());
    Ok(ticker)
}

/// Imports must be the host interface of this version or WASI (stubbed as traps): anything
/// else means the component was built for another host.
fn check_imports(engine: &Engine, c: &Component) -> Result<Vec<String>, String> {
    let ty = c.component_type();
    let mut names = Vec::new();
    for (name, _) in ty.imports(engine) {
        if !name.starts_with("wasi:") && !provides(name) {
            return Err(format!(
                "imports `{name}`, which this host does not provide"
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

fn load_cached(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.is_file() {
        return None;
    }
    // SAFETY: the file is in our own cache directory, written by `store_cached` from a
    // component this engine compiled, and named by the engine's compatibility hash.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring bad cached policy artifact");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

fn store_cached(c: &Component, path: &Path) {
    let write = || -> std::io::Result<()> {
        let bytes = c.serialize().map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(path, &bytes)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled policy");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_is_built_by_the_first_compile() -> Result<(), PolicyError> {
        let e = PolicyEngine::new(EngineOptions::default());
        assert!(
            e.inner.built.get().is_none(),
            "nothing built without a policy"
        );
        drop(e.guest_running());
        assert!(matches!(
            e.compile("p", b"not wasm"),
            Err(PolicyError::Compile { .. })
        ));
        assert!(e.inner.built.get().is_some());
        let ticker = e.inner.built.get().map(|b| b.ticker.clone());
        drop(e);
        assert!(
            ticker.is_some_and(|t| t.stop.load(Ordering::SeqCst)),
            "the ticker stops with the last handle"
        );
        Ok(())
    }

    #[test]
    fn ticks_cover_the_deadline() {
        let e = PolicyEngine::new(EngineOptions {
            cache_dir: None,
            epoch_tick: Duration::from_micros(250),
        });
        for (d, want) in [(1000, 5), (250, 2), (1, 2), (1001, 6)] {
            assert_eq!(e.ticks(Duration::from_micros(d)), want, "{d} µs");
        }
    }
}
