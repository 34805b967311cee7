//! Upstream groups (query path step 6): servers, UDP/TCP clients, selection, health,
//! concurrency limit and coalescing of identical in-flight queries.
//!
//! `forward` builds the query itself (random ID per attempt, RD=1, the client's CD and DO,
//! our EDNS0 size), tries the group's servers in selection order within one bound (each
//! server at most once, `timeout` per attempt) and returns the first response that matches
//! ID, question and server address. SERVFAIL and other RCODEs are answers: the pipeline
//! decides what to do with them.

mod coalesce;
mod demux;
mod message;
mod server;
mod tcp;
mod udp;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Selection, UpstreamGroupSpec};
use crate::metrics::{Label, Metrics, UpstreamLabels};

use coalesce::{InFlight, Key, Role};
use server::{AttemptError, Server, ServerSettings};

/// Our EDNS0 UDP payload size when none is given (the DNS flag day 2020 value).
pub const DEFAULT_UDP_PAYLOAD_SIZE: u16 = 1232;

/// What to ask an upstream.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamQuery<'a> {
    /// Lowercased, uncompressed wire-format name.
    pub name: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub do_bit: bool,
    pub cd: bool,
}

/// Why a query could not be answered by the group.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    #[error("max_concurrent reached")]
    Overloaded,
    #[error("no upstream server answered in time")]
    Timeout,
    #[error("every upstream server failed: {0}")]
    Failed(String),
}

/// A validated upstream response (ID, question and source already checked).
#[derive(Debug, Clone)]
pub struct Answer {
    pub bytes: Bytes,
}

/// One upstream group.
pub struct UpstreamGroup {
    name: Arc<str>,
    spec: UpstreamGroupSpec,
    inner: Arc<GroupInner>,
}

/// The part of a group that spawned exchanges keep alive until they end.
struct GroupInner {
    labels: UpstreamLabels,
    servers: Vec<Arc<Server>>,
    selection: Selection,
    next: AtomicUsize,
    limit: Arc<Semaphore>,
    inflight: InFlight,
    udp_size: u16,
    metrics: Arc<Metrics>,
}

impl UpstreamGroup {
    /// A new group with fresh connections and every server healthy.
    pub fn new(spec: &UpstreamGroupSpec, udp_size: u16, metrics: &Arc<Metrics>) -> Self {
        let settings = ServerSettings {
            protocol: spec.protocol,
            timeout: spec.timeout,
            max_fails: spec.max_fails,
            health_check: spec.health_check,
            expire: spec.expire,
            udp_size,
            metrics: metrics.clone(),
        };
        let servers = (spec.servers.iter())
            .map(|a| Server::new(&spec.name, *a, settings.clone()))
            .collect();
        // CoreDNS: max_concurrent 0 means no limit.
        let permits = match spec.max_concurrent {
            0 => Semaphore::MAX_PERMITS,
            n => n.min(Semaphore::MAX_PERMITS),
        };
        let inner = GroupInner {
            labels: UpstreamLabels {
                upstream: Label::from(spec.name.as_str()),
            },
            servers,
            selection: spec.selection,
            next: AtomicUsize::new(0),
            limit: Arc::new(Semaphore::new(permits)),
            inflight: InFlight::default(),
            udp_size,
            metrics: metrics.clone(),
        };
        UpstreamGroup {
            name: Arc::from(spec.name.as_str()),
            spec: spec.clone(),
            inner: Arc::new(inner),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Forwards `q`, joining an identical in-flight query if there is one. Beyond
    /// `max_concurrent` exchanges it fails at once with `Overloaded` (not a health failure).
    /// Must run inside a tokio runtime.
    pub async fn forward(&self, q: &UpstreamQuery<'_>) -> Result<Answer, UpstreamError> {
        let inner = &self.inner;
        let key = Key::new(q);
        // A joiner whose leader was cancelled (its caller dropped the future) finds no
        // result and tries again, leading the next exchange itself.
        for _ in 0..MAX_JOIN_RETRIES {
            match inner.inflight.join_or_lead(&key, || inner.admit())? {
                Role::Join(rx) => {
                    if let Some(result) = coalesce::wait(rx).await {
                        inner.metrics.coalesced.get_or_create(&inner.labels).inc();
                        return result;
                    }
                }
                Role::Lead { tx, admit } => {
                    let finish = Finish(inner, &key);
                    let lower = UpstreamQuery {
                        name: key.name(),
                        ..*q
                    };
                    let query = message::build_query(&lower, inner.udp_size);
                    let result = inner.exchange(&query).await;
                    drop(finish);
                    // Only joiners hold receivers now (`finish` dropped the map's): with
                    // none, nothing to publish (and no clone of the answer).
                    if tx.receiver_count() > 0 {
                        tx.send_replace(Some(result.clone()));
                    }
                    drop(admit);
                    return result;
                }
            }
        }
        Err(UpstreamError::Failed(
            "coalesced exchange cancelled repeatedly".into(),
        ))
    }
}

/// How often a joiner starts over after its leader was cancelled.
const MAX_JOIN_RETRIES: usize = 4;

/// Ends the in-flight entry when the leader finishes or is cancelled.
struct Finish<'a>(&'a GroupInner, &'a Key);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.inflight.finish(self.1);
    }
}

impl GroupInner {
    fn admit(&self) -> Result<OwnedSemaphorePermit, UpstreamError> {
        self.limit.clone().try_acquire_owned().map_err(|_| {
            let m = &self.metrics;
            m.forward_max_concurrent_rejects
                .get_or_create(&self.labels)
                .inc();
            UpstreamError::Overloaded
        })
    }

    /// Tries the servers in selection order, each at most once, skipping down ones — unless
    /// all are down, then all of them from a random one (CoreDNS never gives up entirely).
    async fn exchange(&self, query: &Bytes) -> Result<Answer, UpstreamError> {
        let n = self.servers.len();
        let all_down = self.servers.iter().all(|s| s.is_down());
        if all_down && n > 0 {
            let m = &self.metrics;
            m.forward_healthcheck_broken
                .get_or_create(&self.labels)
                .inc();
        }
        let first = self.first(n, all_down);
        let mut last: Option<(AttemptError, std::net::SocketAddr)> = None;
        let mut all_timeouts = true;
        for i in 0..n {
            let s = &self.servers[(first + i) % n];
            if !all_down && s.is_down() {
                continue;
            }
            match s.forward(query).await {
                Ok(bytes) => return Ok(Answer { bytes }),
                Err(e) => {
                    all_timeouts &= e == AttemptError::Timeout;
                    last = Some((e, s.addr));
                }
            }
        }
        Err(match last {
            Some(_) if all_timeouts => UpstreamError::Timeout,
            Some((e, addr)) => UpstreamError::Failed(format!("{addr}: {e}")),
            None => UpstreamError::Failed("no servers".into()),
        })
    }

    /// Index of the first server to try.
    fn first(&self, n: usize, all_down: bool) -> usize {
        if n == 0 {
            return 0;
        }
        match self.selection {
            _ if all_down => rand::random_range(0..n),
            Selection::Sequential => 0,
            Selection::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            Selection::Random => rand::random_range(0..n),
        }
    }
}

/// All groups of a configuration.
#[derive(Default)]
pub struct Upstreams {
    groups: HashMap<String, Arc<UpstreamGroup>>,
}

impl Upstreams {
    /// Builds the groups, reusing `previous` groups whose spec did not change (their
    /// connections and health state survive a reload). Must run inside a tokio runtime.
    pub fn build(
        specs: &BTreeMap<String, UpstreamGroupSpec>,
        previous: Option<&Upstreams>,
        metrics: &Arc<Metrics>,
    ) -> Self {
        Self::build_sized(specs, previous, metrics, DEFAULT_UDP_PAYLOAD_SIZE)
    }

    /// `build` with our EDNS0 UDP payload size (`server.udp_payload_size`).
    pub fn build_sized(
        specs: &BTreeMap<String, UpstreamGroupSpec>,
        previous: Option<&Upstreams>,
        metrics: &Arc<Metrics>,
        udp_size: u16,
    ) -> Self {
        let reuse = |name: &str, spec: &UpstreamGroupSpec| {
            let old = previous?.groups.get(name)?;
            (old.spec == *spec && old.inner.udp_size == udp_size).then(|| old.clone())
        };
        let groups = (specs.iter())
            .map(|(name, spec)| {
                let group = reuse(name, spec)
                    .unwrap_or_else(|| Arc::new(UpstreamGroup::new(spec, udp_size, metrics)));
                (name.clone(), group)
            })
            .collect();
        Upstreams { groups }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<UpstreamGroup>> {
        self.groups.get(name)
    }
}

/// The query `forward` sends for `q` (ID 0, RD=1, the client's CD and DO, an OPT advertising
/// `udp_size`) with `id`. Exposed for the fuzz targets (host/fuzz).
#[doc(hidden)]
pub fn query_bytes(q: &UpstreamQuery<'_>, udp_size: u16, id: u16) -> Vec<u8> {
    message::with_id(&message::build_query(q, udp_size), id)
}

/// The check every upstream response passes before it is used: same ID, QR=1, one question
/// equal to the query's. Exposed for the fuzz targets (host/fuzz).
#[doc(hidden)]
pub fn response_matches(query: &[u8], response: &[u8]) -> bool {
    message::matches(query, response)
}
