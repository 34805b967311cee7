//! The path of one query (DESIGN.md "One query, end to end"), as numbered steps.
//!
//! A [`Snapshot`] is everything one configuration needs to answer queries: zones, their caches
//! and policy chains, upstream groups. The listeners load the current snapshot per query
//! (`reload` swaps it atomically). `prepare` runs the synchronous steps (ingress, client
//! check, zone match, policy, cache lookup) so cache hits are answered without a task;
//! only a miss becomes a [`Pending`] that `complete` forwards asynchronously.

mod answer;
mod respond;
mod stats;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::rr::LowerName;
use thiserror::Error;

use crate::cache::{Cache, CacheKey, EvictionCounters, Hit, KeyRef, Lookup};
use crate::config::{Config, IpNet, ServeStale, ZoneSpec};
use crate::metrics::{CacheTypeLabels, Label, Metrics, ReasonLabels, ZoneLabels};

use crate::policy::{
    Policies, PolicyChain, PolicyEngine, PolicyError, PolicyQuery, Transport, Verdict,
};
use crate::ratelimit::RateLimiter;
use crate::request::{self, Rejected, Request, rcode};
use crate::upstream::{UpstreamError, UpstreamGroup, UpstreamQuery, Upstreams};
use crate::wire;
use crate::zones::ZoneTable;
use stats::{ZoneStats, ZoneStatsSlots};

pub use respond::Outcome;

/// Why a snapshot could not be built from a validated config.
#[derive(Debug, Error)]
pub enum BuildError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("zone {zone}: upstream group {group:?} missing")]
    MissingUpstream { zone: String, group: String },
    #[error(
        "policy {policy}: routes to upstream group {group:?}, which the configuration does not define"
    )]
    UnknownRoute { policy: String, group: String },
}

/// One zone, ready to serve.
pub struct Zone {
    pub spec: ZoneSpec,
    /// The zone name as text (`cluster.local.`), also its metric label.
    pub label: Label,
    pub view: Label,
    pub cache: Arc<Cache>,
    pub chain: PolicyChain,
    pub upstream: Arc<UpstreamGroup>,
    /// Metric handles per listener.
    stats: ZoneStatsSlots,
}

/// What a listener tells the pipeline about itself.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    pub view: Arc<str>,
    /// `dns://127.0.0.1:53`, the `server` metric label.
    pub server: Label,
    /// The listener's position in `config.listeners`: its slot for per-zone metric handles.
    pub index: usize,
}

/// Everything one configuration needs to answer queries.
pub struct Snapshot {
    pub config: Config,
    table: ZoneTable,
    pub zones: Vec<Zone>,
    pub upstreams: Upstreams,
    pub policies: Policies,
    /// Where `oci://` policy modules come from (`None`: the config has none).
    pub oci: Option<Arc<crate::oci::OciStore>>,
    allow_clients: Vec<IpNet>,
    /// Per-client rate limit; carried over reloads while the rate is unchanged.
    pub ratelimit: Arc<RateLimiter>,
    pub(crate) metrics: Arc<Metrics>,
    udp_size: u16,
}

/// The synchronous steps' result.
pub enum Step {
    /// Send these bytes.
    Reply(Vec<u8>),
    /// Send nothing.
    Drop,
    /// Needs an upstream: hand to [`Snapshot::complete`].
    Forward(Box<Pending>),
}

/// A query waiting for its upstream.
pub struct Pending {
    req: Request,
    zone: usize,
    group: Arc<UpstreamGroup>,
    key: CacheKey,
    /// Verify mode: the stale entry to answer with if the upstream fails or is slow.
    stale: Option<Hit>,
    started: Instant,
    server: Label,
    listener: usize,
}

impl Snapshot {
    /// Builds a snapshot, reusing from `previous` the caches whose settings did not change,
    /// the upstream groups whose spec did not change, and compiled policies.
    /// Must run inside the tokio runtime (upstream groups start health tasks).
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        engine: &PolicyEngine,
        metrics: &Arc<Metrics>,
    ) -> Result<Snapshot, BuildError> {
        let oci = crate::oci::store_for(&config, previous.and_then(|p| p.oci.as_ref()));
        Self::build_with_oci(config, previous, oci, engine, metrics)
    }

    /// [`Snapshot::build`] taking `oci://` modules from `oci` (startup passes the store
    /// `oci::prefetch` filled).
    pub fn build_with_oci(
        config: Config,
        previous: Option<&Snapshot>,
        oci: Option<Arc<crate::oci::OciStore>>,
        engine: &PolicyEngine,
        metrics: &Arc<Metrics>,
    ) -> Result<Snapshot, BuildError> {
        let policies = crate::oci::build_policies(
            engine,
            &config.policies,
            oci.as_deref(),
            previous.map(|p| &p.policies),
            metrics,
            &|group| config.upstreams.contains_key(group),
        )?;
        let upstreams = Upstreams::build_sized(
            &config.upstreams,
            previous.map(|p| &p.upstreams),
            metrics,
            config.server.udp_payload_size,
        );
        // The groups a policy may route to (declared by a 0.2.0 policy's `init`; for 0.1.0,
        // named by its settings) must exist. A guest that returns another one at run time is
        // answered SERVFAIL and counted.
        let names = config.policies.keys().map(String::as_str);
        if let Some((policy, group)) = policies.unknown_route(names, |g| upstreams.get(g).is_some())
        {
            return Err(BuildError::UnknownRoute { policy, group });
        }
        let mut zones = Vec::with_capacity(config.zones.len());
        for spec in &config.zones {
            let upstream = upstreams.get(&spec.forward).cloned().ok_or_else(|| {
                BuildError::MissingUpstream {
                    zone: spec.name.to_ascii(),
                    group: spec.forward.clone(),
                }
            })?;
            let cache = previous
                .and_then(|p| {
                    p.zones
                        .iter()
                        .find(|z| z.spec.view == spec.view && z.spec.name == spec.name)
                })
                .filter(|z| z.spec.cache == spec.cache)
                .map(|z| z.cache.clone())
                .unwrap_or_else(|| Arc::new(new_cache(spec, metrics)));
            zones.push(Zone {
                label: Label::from(spec.name.to_ascii().as_str()),
                view: Label::from(spec.view.as_str()),
                chain: policies.chain(&spec.policies),
                spec: spec.clone(),
                cache,
                upstream,
                stats: ZoneStatsSlots::new(config.listeners.len()),
            });
        }
        let names: Vec<Vec<u8>> = config
            .zones
            .iter()
            .map(|z| zone_wire_name(&z.name))
            .collect();
        let table = ZoneTable::build(
            config
                .zones
                .iter()
                .zip(&names)
                .map(|(z, n)| (z.view.as_str(), n.as_slice())),
        );
        Ok(Snapshot {
            allow_clients: config.server.allow_clients.clone(),
            ratelimit: RateLimiter::carry(previous.map(|p| &p.ratelimit), config.server.rate_limit),
            udp_size: config.server.udp_payload_size,
            config,
            table,
            zones,
            upstreams,
            policies,
            oci,
            metrics: metrics.clone(),
        })
    }

    /// Steps 1–5: ingress, client check, zone match, policy, cache lookup.
    pub fn prepare(
        self: &Arc<Self>,
        packet: &[u8],
        client: SocketAddr,
        transport: Transport,
        listener: &ListenerInfo,
        started: Instant,
    ) -> Step {
        // 1. Ingress.
        let req = match request::parse(packet, client, transport) {
            Ok(req) => req,
            Err(Rejected::Drop(reason)) => {
                self.metrics
                    .dropped
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
                return Step::Drop;
            }
            Err(Rejected::Answer(e)) => {
                return Step::Reply(self.rejected(listener, e.reply));
            }
        };
        // Exposure: only the clients we serve.
        if !self.client_allowed(client.ip()) {
            self.metrics.acl_refused.inc();
            let reply = request::reply_with_rcode(&req, rcode::REFUSED, self.udp_size);
            return Step::Reply(self.rejected(listener, reply));
        }
        if !self.ratelimit.admit(client.ip(), started) {
            self.metrics.rate_limited.inc();
            let reply = request::reply_with_rcode(&req, rcode::REFUSED, self.udp_size);
            return Step::Reply(self.rejected(listener, reply));
        }
        // 2. Zone match.
        let Some(zi) = self.table.find(&listener.view, &req.question.name) else {
            let reply = request::reply_with_rcode(&req, rcode::REFUSED, self.udp_size);
            return Step::Reply(self.rejected(listener, reply));
        };
        let zone = &self.zones[zi];
        let stats = stats::of(&self.metrics, zone, &listener.server, listener.index);
        self.count_request(&stats, &req);
        // 3. Policy chain.
        let mut group = &zone.upstream;
        if !zone.chain.is_empty() {
            let name = wire::name_to_string(&req.question.name);
            match zone
                .chain
                .decide(&self.policy_query(zone, listener, &req, &name))
            {
                Verdict::Allow => {}
                Verdict::Route(target) => match self.upstreams.get(&target) {
                    Some(g) => group = g,
                    None => {
                        return Step::Reply(self.unknown_route(zi, &stats, &req, &target, started));
                    }
                },
                Verdict::Deny(kind) => {
                    let reply = answer::denial(&req, kind, self.udp_size);
                    return Step::Reply(self.finish(
                        zi,
                        &stats,
                        &req,
                        reply,
                        Outcome::Policy,
                        started,
                    ));
                }
                Verdict::Answer(records) => {
                    let reply = answer::synthesize(&req, &records, self.udp_size);
                    return Step::Reply(self.finish(
                        zi,
                        &stats,
                        &req,
                        reply,
                        Outcome::Policy,
                        started,
                    ));
                }
            }
        }
        // 4. Cache lookup.
        let key = KeyRef {
            group: group.name(),
            name: req.question.name.as_slice(),
            qtype: req.question.qtype,
            qclass: req.question.qclass,
            do_bit: req.do_bit(),
            cd: req.cd,
        };
        // The query's arrival time is recent enough to age TTLs by (whole seconds).
        let now = started;
        stats.cache_request();
        let stale = match zone.cache.lookup(key, now) {
            Lookup::Fresh(hit) => {
                stats.cache_hit(hit.kind());
                let reply = request::finalize(hit.render(now), &req, self.udp_size);
                return Step::Reply(self.finish(zi, &stats, &req, reply, Outcome::Cache, started));
            }
            Lookup::Stale { hit, refresh }
                if zone.spec.cache.serve_stale == ServeStale::Immediate =>
            {
                stats.served_stale();
                if refresh {
                    self.spawn_refresh(zi, group.clone(), key.to_owned());
                }
                let reply = request::finalize(hit.render(now), &req, self.udp_size);
                return Step::Reply(self.finish(zi, &stats, &req, reply, Outcome::Stale, started));
            }
            Lookup::Stale { hit, .. } => Some(hit),
            Lookup::Miss => {
                stats.cache_miss();
                None
            }
        };
        // 5. Forward (asynchronously).
        let key = key.to_owned();
        Step::Forward(Box::new(Pending {
            req,
            zone: zi,
            group: group.clone(),
            key,
            stale,
            started,
            server: listener.server.clone(),
            listener: listener.index,
        }))
    }

    /// Steps 6–8: forward, cache store, egress.
    pub async fn complete(self: Arc<Self>, p: Box<Pending>) -> Vec<u8> {
        let zone = &self.zones[p.zone];
        let stats = stats::of(&self.metrics, zone, &p.server, p.listener);
        let result = match &p.stale {
            // Verify: refresh first, in a task of its own so a slow answer still lands in
            // the cache after we have answered stale.
            Some(_) => {
                let task = self
                    .clone()
                    .spawn_fetch(p.zone, p.group.clone(), p.key.clone());
                match tokio::time::timeout(zone.spec.cache.verify_timeout, task).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) | Err(_) => Err(UpstreamError::Timeout),
                }
            }
            None => self.fetch(p.zone, &p.group, p.key).await,
        };
        let (reply, outcome) = match (result, p.stale) {
            (Ok(bytes), _) => (
                request::finalize(bytes, &p.req, self.udp_size),
                Outcome::Forward,
            ),
            (Err(_), Some(hit)) => {
                stats.served_stale();
                let reply = request::finalize(hit.render(Instant::now()), &p.req, self.udp_size);
                (reply, Outcome::Stale)
            }
            (Err(UpstreamError::Overloaded), None) => (
                request::reply_with_rcode(&p.req, rcode::REFUSED, self.udp_size),
                Outcome::Overloaded,
            ),
            (Err(e), None) => {
                tracing::debug!(zone = %zone.label, error = %e, "upstream failed");
                (
                    request::reply_with_rcode(&p.req, rcode::SERVFAIL, self.udp_size),
                    Outcome::UpstreamFailed,
                )
            }
        };
        self.finish(p.zone, &stats, &p.req, reply, outcome, p.started)
    }

    /// Asks the group and stores the answer; returns the bytes to answer with (TTLs as the
    /// cache renders them when stored).
    async fn fetch(
        &self,
        zi: usize,
        group: &UpstreamGroup,
        key: CacheKey,
    ) -> Result<Vec<u8>, UpstreamError> {
        let q = UpstreamQuery {
            name: &key.name,
            qtype: key.qtype,
            qclass: key.qclass,
            do_bit: key.do_bit,
            cd: key.cd,
        };
        let answer = group.forward(&q).await?;
        let Ok(layout) = wire::layout(&answer.bytes) else {
            return Err(UpstreamError::Failed("malformed answer records".into()));
        };
        // Bytes after the last record are nobody's: drop them before caching or answering.
        let bytes = &answer.bytes[..layout.end];
        let cache = &self.zones[zi].cache;
        let now = Instant::now();
        match cache.store_hit(key, bytes, &layout, now) {
            Ok(hit) => Ok(hit.render(now)),
            Err(_) => Ok(bytes.to_vec()),
        }
    }

    fn spawn_fetch(
        self: Arc<Self>,
        zi: usize,
        group: Arc<UpstreamGroup>,
        key: CacheKey,
    ) -> tokio::task::JoinHandle<Result<Vec<u8>, UpstreamError>> {
        tokio::spawn(async move {
            let r = self.fetch(zi, &group, key.clone()).await;
            if r.is_err() {
                self.zones[zi].cache.refresh_failed(&key);
                let z = &self.zones[zi];
                let labels = ZoneLabels {
                    server: Label::from(""),
                    zone: z.label.clone(),
                    view: z.view.clone(),
                };
                self.metrics
                    .stale_refresh_failures
                    .get_or_create(&labels)
                    .inc();
            }
            r
        })
    }

    fn spawn_refresh(self: &Arc<Self>, zi: usize, group: Arc<UpstreamGroup>, key: CacheKey) {
        drop(self.clone().spawn_fetch(zi, group, key));
    }

    fn client_allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow_clients.iter().any(|net| net_contains(net, ip))
    }

    fn policy_query<'a>(
        &self,
        zone: &'a Zone,
        listener: &'a ListenerInfo,
        req: &Request,
        name: &'a str,
    ) -> PolicyQuery<'a> {
        PolicyQuery {
            name,
            qtype: req.question.qtype,
            qclass: req.question.qclass,
            client: req.client.ip().to_canonical(),
            view: &listener.view,
            zone: &zone.label.0,
            transport: req.transport,
        }
    }

    fn unknown_route(
        &self,
        zi: usize,
        stats: &ZoneStats,
        req: &Request,
        target: &str,
        started: Instant,
    ) -> Vec<u8> {
        tracing::warn!(zone = %self.zones[zi].label, route = target, "policy routed to an unknown upstream group");
        self.metrics
            .policy_errors
            .get_or_create(&crate::metrics::PolicyErrorLabels {
                policy: Label::from("*"),
                kind: "unknown_route",
            })
            .inc();
        let reply = request::reply_with_rcode(req, rcode::SERVFAIL, self.udp_size);
        self.finish(zi, stats, req, reply, Outcome::Policy, started)
    }
}

/// A zone's cache, counting its evictions in `coredns_cache_evictions_total`.
fn new_cache(spec: &ZoneSpec, metrics: &Metrics) -> Cache {
    let labels = |r#type| CacheTypeLabels {
        server: Label::from(""),
        zone: Label::from(spec.name.to_ascii().as_str()),
        view: Label::from(spec.view.as_str()),
        r#type,
    };
    // One statement per family access: a `get_or_create` guard held across a second call
    // that inserts would deadlock on the family's lock.
    let success = metrics
        .cache_evictions
        .get_or_create(&labels("success"))
        .clone();
    let denial = metrics
        .cache_evictions
        .get_or_create(&labels("denial"))
        .clone();
    let counters = EvictionCounters { success, denial };
    Cache::with_eviction_counters(spec.cache.clone(), counters)
}

/// `cluster.local.` → wire format. From the ASCII form: `Display` shows IDN labels
/// (`xn--…`) in Unicode, which is not what queries carry.
fn zone_wire_name(name: &LowerName) -> Vec<u8> {
    let text = name.to_ascii();
    let mut v = Vec::with_capacity(text.len() + 2);
    // A parsed zone name has valid labels, so nothing is cut short.
    let _ = answer::push_name(&mut v, &text);
    v
}

/// Whether `ip` is inside `net`.
pub fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    match (net.addr, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(net.prefix_len))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(net.prefix_len))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn zone_wire_names_use_the_ascii_form() {
        // Found by the aks_json fuzz target: `Display` turns `xn--` labels into Unicode, so
        // an IDN zone never matched its own queries.
        let cases: &[(&str, &[u8])] = &[
            (".", b"\x00"),
            ("Cluster.Local.", b"\x07cluster\x05local\x00"),
            (
                "xn--bcher-kva.example.",
                b"\x0dxn--bcher-kva\x07example\x00",
            ),
        ];
        for (text, want) in cases {
            let name = LowerName::from_str(text).unwrap();
            assert_eq!(zone_wire_name(&name), *want, "{text}");
        }
    }
}
