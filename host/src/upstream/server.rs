//! One upstream server (query path step 6): its transports, its health state and the
//! background probe that brings it back (CoreDNS `forward` health checking).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::watch;

use crate::config::Protocol;
use crate::metrics::{
    Label, Metrics, ProxyLabels, RCODE_LABELS, UpstreamServerLabels, rcode_index,
};

use super::message;
use super::tcp::TcpClient;
use super::udp::UdpPool;

/// Why one attempt against one server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AttemptError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(String),
    #[error("connection closed")]
    Closed,
}

impl From<std::io::Error> for AttemptError {
    fn from(e: std::io::Error) -> Self {
        AttemptError::Io(e.to_string())
    }
}

/// What a group tells each of its servers.
#[derive(Clone)]
pub(crate) struct ServerSettings {
    pub(crate) protocol: Protocol,
    pub(crate) timeout: Duration,
    pub(crate) max_fails: u32,
    pub(crate) health_check: Duration,
    pub(crate) expire: Duration,
    pub(crate) udp_size: u16,
    pub(crate) metrics: Arc<Metrics>,
}

/// An upstream server and its health.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    labels: UpstreamServerLabels,
    settings: ServerSettings,
    udp: UdpPool,
    tcp: TcpClient,
    fails: AtomicU32,
    down: AtomicBool,
    /// `coredns_proxy_request_duration_seconds` handles by RCODE label, resolved on first use.
    durations: [OnceLock<Histogram>; RCODE_LABELS.len()],
    /// `true` while up; lets tests (and later, readiness) observe health changes.
    up: watch::Sender<bool>,
}

impl Server {
    pub(crate) fn new(group: &str, addr: SocketAddr, settings: ServerSettings) -> Arc<Self> {
        let labels = UpstreamServerLabels {
            upstream: Label::from(group),
            to: Label::from(addr.to_string().as_str()),
        };
        settings
            .metrics
            .upstream_healthy
            .get_or_create(&labels)
            .set(1);
        let udp = UdpPool::new(addr, settings.expire, settings.metrics.clone());
        let tcp = TcpClient::new(addr, settings.expire, settings.metrics.clone());
        Arc::new(Server {
            addr,
            labels,
            settings,
            udp,
            tcp,
            fails: AtomicU32::new(0),
            down: AtomicBool::new(false),
            durations: [const { OnceLock::new() }; RCODE_LABELS.len()],
            up: watch::Sender::new(true),
        })
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Observes health changes (`true` = up).
    #[cfg(test)]
    pub(crate) fn health(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// One attempt: the configured transport, and over TCP again when UDP says TC=1.
    pub(crate) async fn exchange(&self, query: &Bytes) -> Result<Bytes, AttemptError> {
        let timeout = self.settings.timeout;
        match self.settings.protocol {
            Protocol::ForceTcp => self.tcp.exchange(query, timeout).await,
            Protocol::PreferUdp => {
                let resp = self.udp.exchange(query, timeout).await?;
                if crate::wire::Header::new(&resp).is_ok_and(|h| h.tc()) {
                    return self.tcp.exchange(query, timeout).await;
                }
                Ok(resp)
            }
        }
    }

    /// A query attempt, with its metrics and health bookkeeping.
    pub(crate) async fn forward(self: &Arc<Self>, query: &Bytes) -> Result<Bytes, AttemptError> {
        let start = Instant::now();
        let result = self.exchange(query).await;
        match &result {
            Ok(resp) => {
                let rcode = crate::wire::Header::new(resp).map_or(0, |h| h.rcode());
                let r = rcode_index(rcode);
                let m = &self.settings.metrics;
                let labels = || ProxyLabels {
                    proxy_name: "forward",
                    to: self.labels.to.clone(),
                    rcode: RCODE_LABELS[r],
                };
                self.durations[r]
                    .get_or_init(|| m.proxy_request_duration.get_or_create(&labels()).clone())
                    .observe(start.elapsed().as_secs_f64());
                self.fails.store(0, Ordering::Relaxed);
                if self.is_down() {
                    // Tried because every server was down, and it answered.
                    self.mark_up();
                }
            }
            Err(_) => self.failed(),
        }
        result
    }

    /// Counts a failed attempt; at `max_fails` consecutive ones the server goes down and a
    /// probe starts (0 disables health checking, as in CoreDNS).
    fn failed(self: &Arc<Self>) {
        let m = &self.settings.metrics;
        m.upstream_errors.get_or_create(&self.labels).inc();
        let max = self.settings.max_fails;
        let fails = self.fails.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if max == 0 || fails < max || self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(upstream = %self.labels.upstream, to = %self.addr, "upstream server down");
        m.upstream_healthy.get_or_create(&self.labels).set(0);
        self.up.send_replace(false);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(probe(Arc::downgrade(self)));
        }
    }

    fn mark_up(&self) {
        if !self.down.swap(false, Ordering::AcqRel) {
            return;
        }
        tracing::info!(upstream = %self.labels.upstream, to = %self.addr, "upstream server up");
        self.fails.store(0, Ordering::Relaxed);
        let m = &self.settings.metrics;
        m.upstream_healthy.get_or_create(&self.labels).set(1);
        self.up.send_replace(true);
    }
}

/// Probes a down server with `. IN NS` every `health_check` until it answers. Holds only a
/// weak reference between probes, so the task ends once the group is dropped (reload).
async fn probe(server: Weak<Server>) {
    loop {
        let Some(s) = server.upgrade() else { return };
        let interval = s.settings.health_check;
        drop(s);
        tokio::time::sleep(interval).await;
        let Some(s) = server.upgrade() else { return };
        if !s.is_down() {
            return; // an answer to a real query brought it back
        }
        let q = message::probe_query(s.settings.udp_size);
        if s.exchange(&q).await.is_ok() {
            s.mark_up();
            return;
        }
        let m = &s.settings.metrics;
        m.proxy_healthcheck_failures.get_or_create(&s.labels).inc();
    }
}
