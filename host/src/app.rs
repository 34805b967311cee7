//! The process lifecycle in three phases: load and validate the configuration → bind every
//! socket → serve until SIGTERM, then drain (stop reading, finish in-flight queries within
//! `drain_timeout`, exit 0). [`start`] runs phases 2 and 3 and returns a handle, so the
//! integration tests run the real server in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, AksOptions, Config, LoadEnv};
use crate::listener::{self, Bound, Inflight, Shared};
use crate::metrics::http::{self, Endpoints};
use crate::metrics::{CacheTypeLabels, Label, Metrics};
use crate::netsetup::{NodeSetup, SetupOptions};
use crate::pipeline::Snapshot;
use crate::policy::{EngineOptions, PolicyEngine};
use crate::reload::{ReloadError, Reloader};

/// Where the configuration comes from (and is reloaded from).
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// The embedded default.
    Default,
    /// Native TOML.
    File(PathBuf),
    /// AKS LocalDNS `localdnsconfig.json`.
    Aks { path: PathBuf, options: AksOptions },
}

impl ConfigSource {
    /// Loads and validates the configuration.
    pub fn load(&self) -> Result<Config, config::ConfigErrors> {
        match self {
            ConfigSource::Default => config::default_config(),
            ConfigSource::File(p) => config::load(p),
            ConfigSource::Aks { path, options } => {
                config::load_aks(path, options, &LoadEnv::default())
            }
        }
    }
    /// The file to watch, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            ConfigSource::Default => None,
            ConfigSource::File(p) | ConfigSource::Aks { path: p, .. } => Some(p),
        }
    }
}

/// Options of `zonegate run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub source: ConfigSource,
    /// Written (JSON, atomically) once every socket is bound: the real addresses.
    pub ready_file: Option<PathBuf>,
    /// Where compiled policies (and pulled OCI content) are cached.
    pub cache_dir: Option<PathBuf>,
    /// Host-network mode: interface and iptables set-up before binding.
    pub setup: Option<SetupOptions>,
}

/// Phase 1 happened in the caller (the config is valid); builds the runtime and runs until
/// SIGTERM or SIGINT.
pub fn run(opts: RunOptions, config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.workers)
        .thread_name("zonegate-worker")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let metrics = Metrics::new();
        // The interface must hold the listen addresses before they can be bound.
        let setup = match opts.setup.clone() {
            Some(o) => Some(
                NodeSetup::start(o, metrics.clone())
                    .await
                    .context("setting up the node interface")?,
            ),
            None => None,
        };
        let recheck = setup.as_ref().map(NodeSetup::spawn_recheck);
        // Handlers first: a SIGTERM right after "ready" must drain, not kill.
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let running = start_with(opts, config, metrics).await?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        running.drain().await;
        if let Some(task) = recheck {
            task.abort();
        }
        if let Some(setup) = setup {
            setup.teardown().await;
        }
        Ok(())
    })
}

/// A serving zonegate.
pub struct Running {
    /// (view, address) of every listener, ports resolved.
    pub listeners: Vec<(String, SocketAddr)>,
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub ready_addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    endpoints: Arc<Endpoints>,
    reloader: Arc<Reloader>,
    shutdown: watch::Sender<bool>,
    listener_tasks: Vec<JoinHandle<()>>,
    other_tasks: Vec<JoinHandle<()>>,
}

/// Phases 2 and 3: builds the first snapshot, binds everything, then serves.
pub async fn start(opts: RunOptions, config: Config) -> anyhow::Result<Running> {
    start_with(opts, config, Metrics::new()).await
}

/// [`start`] with the process's metrics registry.
pub async fn start_with(
    opts: RunOptions,
    config: Config,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Running> {
    let engine = Arc::new(PolicyEngine::new(EngineOptions {
        cache_dir: opts.cache_dir.as_ref().map(|d| d.join("compiled")),
        ..EngineOptions::default()
    }));
    let oci = crate::oci::prefetch(&config, &metrics).await;
    let snapshot = Snapshot::build_with_oci(config, None, oci, &engine, &metrics)
        .context("loading policies")?;
    let config = snapshot.config.clone();

    // Phase 2: bind everything before serving anything.
    let mut bound = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let b = listener::bind(l, i, config.server.workers)
            .with_context(|| format!("binding {}", l.address))?;
        bound.push(b);
    }
    let obs = &config.observability;
    let (metrics_l, metrics_addr) = http::bind(obs.metrics)
        .await
        .with_context(|| format!("binding metrics {}", obs.metrics))?;
    let (health_l, health_addr) = http::bind(obs.health)
        .await
        .with_context(|| format!("binding health {}", obs.health))?;
    let (ready_l, ready_addr) = http::bind(obs.ready)
        .await
        .with_context(|| format!("binding ready {}", obs.ready))?;

    // Phase 3: serve.
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        inflight: Inflight::default(),
        shutdown: shutdown_rx,
    });
    let endpoints = Arc::new(Endpoints {
        metrics: metrics.clone(),
        ready: false.into(),
        refresh: Box::new(refresh_gauges(shared.clone())),
    });
    let listeners: Vec<(String, SocketAddr)> = bound
        .iter()
        .map(|b| (b.info.view.to_string(), b.address))
        .collect();
    let listener_tasks = spawn_listeners(bound, &shared)?;
    let reloader = Arc::new(Reloader::new(
        opts.source.clone(),
        shared.clone(),
        engine,
        metrics.clone(),
    ));
    let other_tasks = vec![
        tokio::spawn(http::serve(metrics_l, endpoints.clone())),
        tokio::spawn(http::serve(health_l, endpoints.clone())),
        tokio::spawn(http::serve(ready_l, endpoints.clone())),
        tokio::spawn(reloader.clone().run()),
        tokio::spawn(crate::oci::watch(shared.clone(), reloader.clone())),
        tokio::spawn(sweep_caches(shared.clone())),
    ];
    for (view, addr) in &listeners {
        tracing::info!(%addr, view, "listening (udp+tcp)");
    }
    if let Some(path) = &opts.ready_file {
        write_ready_file(path, &listeners, metrics_addr, health_addr, ready_addr)?;
    }
    endpoints.ready.store(true, Ordering::Release);
    tracing::info!(%metrics_addr, %health_addr, %ready_addr, "ready");
    Ok(Running {
        listeners,
        metrics_addr,
        health_addr,
        ready_addr,
        shared,
        metrics,
        endpoints,
        reloader,
        shutdown,
        listener_tasks,
        other_tasks,
    })
}

impl Running {
    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listeners[0].1
    }

    /// Reloads now, as SIGHUP does.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        self.reloader.reload("request").await
    }

    /// Stops reading, lets in-flight queries finish (bounded by `drain_timeout`), stops.
    /// UDP sockets first leave the `SO_REUSEPORT` selection and answer what is queued on
    /// them (`listener::udp`), so a process started on the same addresses gets every new
    /// datagram and none is dropped with a closing socket; TCP listeners close.
    pub async fn drain(self) {
        self.endpoints.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        let drain = self.shared.snapshot.load().config.server.drain_timeout;
        for t in self.listener_tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(drain, t).await.is_err() {
                abort.abort();
            }
        }
        if tokio::time::timeout(drain, self.shared.inflight.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.shared.inflight.count(),
                "drain timeout: abandoning in-flight queries"
            );
        }
        for t in &self.other_tasks {
            t.abort();
        }
        tracing::info!("stopped");
    }
}

fn spawn_listeners(bound: Vec<Bound>, shared: &Arc<Shared>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for b in bound {
        for s in b.udp {
            let s = UdpSocket::from_std(s).context("registering a UDP socket")?;
            tasks.push(tokio::spawn(listener::serve_udp(
                s,
                b.info.clone(),
                shared.clone(),
            )));
        }
        if let Some(l) = b.tcp {
            let l = TcpListener::from_std(l).context("registering a TCP listener")?;
            tasks.push(tokio::spawn(listener::serve_tcp(
                l,
                b.info.clone(),
                shared.clone(),
            )));
        }
    }
    Ok(tasks)
}

/// How often entries past their servable window are removed from the caches.
const CACHE_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Reclaims the memory of cache entries that can no longer be served, every
/// [`CACHE_SWEEP_INTERVAL`], off the worker threads (a pass over 100,000 entries takes a few
/// milliseconds).
async fn sweep_caches(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(CACHE_SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let snap = shared.snapshot.load_full();
        let swept = tokio::task::spawn_blocking(move || {
            for zone in &snap.zones {
                zone.cache.sweep(Instant::now());
            }
        });
        if let Err(e) = swept.await {
            tracing::warn!(error = %e, "cache sweep");
        }
    }
}

/// Refreshes gauges that are read from live state (`coredns_cache_entries`) before a scrape.
fn refresh_gauges(shared: Arc<Shared>) -> impl Fn() + Send + Sync {
    move || {
        let snap = shared.snapshot.load();
        for zone in &snap.zones {
            let (success, denial) = zone.cache.entry_counts();
            for (kind, n) in [("success", success), ("denial", denial)] {
                let labels = CacheTypeLabels {
                    server: Label::from(""),
                    zone: zone.label.clone(),
                    view: zone.view.clone(),
                    r#type: kind,
                };
                snap.metrics
                    .cache_entries
                    .get_or_create(&labels)
                    .set(n as i64);
            }
        }
    }
}

fn write_ready_file(
    path: &std::path::Path,
    listeners: &[(String, SocketAddr)],
    metrics: SocketAddr,
    health: SocketAddr,
    ready: SocketAddr,
) -> anyhow::Result<()> {
    let listeners: Vec<_> = listeners
        .iter()
        .map(|(view, a)| serde_json::json!({"view": view, "address": a.to_string()}))
        .collect();
    let doc = serde_json::json!({
        "listeners": listeners,
        "metrics": metrics.to_string(),
        "health": health.to_string(),
        "ready": ready.to_string(),
    });
    crate::fsutil::write_atomic(path, doc.to_string().as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
