//! Metrics: one registry for the process, CoreDNS-compatible names plus `zonegate_*`.
//!
//! Sits beside the query path: every stage increments its counters here. Label values are
//! bounded (zone, view, rcode, upstream, policy, verdict) — never a query name or client.
//! The families outlive configuration reloads; `http` serves them with `/health` and `/ready`.

pub mod http;

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A cheaply clonable label value (zone, view, server, upstream, policy names).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(pub Arc<str>);

impl From<&str> for Label {
    fn from(s: &str) -> Self {
        Label(Arc::from(s))
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

/// `coredns_dns_requests_total` labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub server: Label,
    pub zone: Label,
    pub view: Label,
    pub proto: &'static str,
    pub family: &'static str,
    pub r#type: &'static str,
}

/// `coredns_dns_responses_total` labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResponseLabels {
    pub server: Label,
    pub zone: Label,
    pub view: Label,
    pub rcode: &'static str,
    pub plugin: &'static str,
}

/// `coredns_dns_request_duration_seconds` labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DurationLabels {
    pub server: Label,
    pub zone: Label,
    pub view: Label,
    pub r#type: &'static str,
}

/// Request/response size labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SizeLabels {
    pub server: Label,
    pub zone: Label,
    pub view: Label,
    pub proto: &'static str,
}

/// Labels with only `server`, `zone` and `view`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ZoneLabels {
    pub server: Label,
    pub zone: Label,
    pub view: Label,
}

/// Cache metrics: `type` is `success` or `denial`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CacheTypeLabels {
    pub server: Label,
    pub zone: Label,
    pub view: Label,
    pub r#type: &'static str,
}

/// `coredns_proxy_request_duration_seconds` labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProxyLabels {
    pub proxy_name: &'static str,
    pub to: Label,
    pub rcode: &'static str,
}

/// Labels naming one upstream server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpstreamServerLabels {
    pub upstream: Label,
    pub to: Label,
}

/// Labels naming an upstream group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: Label,
}

/// Policy decision labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PolicyVerdictLabels {
    pub policy: Label,
    pub verdict: &'static str,
}

/// Policy error labels (`kind`: trap, timeout, memory, instantiate, unknown_route).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PolicyErrorLabels {
    pub policy: Label,
    pub kind: &'static str,
}

/// Labels with only `policy`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: Label,
}

/// `zonegate_policy_info` labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PolicyInfoLabels {
    pub policy: Label,
    pub digest: Label,
}

/// Labels with only `result` (`success`, `failure`, …).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Labels with only `reason` (why a packet was dropped).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Labels with only `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// `coredns_build_info` labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub revision: &'static str,
    pub goversion: &'static str,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // CoreDNS's buckets: 0.00025 s doubling up to ~8 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.00025, 2.0, 16,
    ))
}

fn size_histogram() -> Histogram {
    Histogram::new([
        0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3,
        64e3,
    ])
}

fn policy_histogram() -> Histogram {
    // Policy calls are sub-microsecond to a millisecond (the default deadline).
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        250e-9, 2.0, 14,
    ))
}

/// Every metric family of the process.
pub struct Metrics {
    registry: Registry,
    // CoreDNS `dns` plugin.
    pub requests: Family<RequestLabels, Counter>,
    pub responses: Family<ResponseLabels, Counter>,
    pub request_duration: Hist<DurationLabels>,
    pub request_size: Hist<SizeLabels>,
    pub response_size: Hist<SizeLabels>,
    pub do_requests: Family<ZoneLabels, Counter>,
    // CoreDNS `cache` plugin.
    pub cache_entries: Family<CacheTypeLabels, Gauge>,
    pub cache_hits: Family<CacheTypeLabels, Counter>,
    pub cache_misses: Family<ZoneLabels, Counter>,
    pub cache_requests: Family<ZoneLabels, Counter>,
    pub cache_served_stale: Family<ZoneLabels, Counter>,
    pub cache_evictions: Family<CacheTypeLabels, Counter>,
    // CoreDNS `forward` plugin.
    pub forward_max_concurrent_rejects: Family<UpstreamLabels, Counter>,
    pub forward_healthcheck_broken: Family<UpstreamLabels, Counter>,
    pub proxy_request_duration: Hist<ProxyLabels>,
    pub proxy_healthcheck_failures: Family<UpstreamServerLabels, Counter>,
    // CoreDNS `reload` plugin.
    pub reload_failed: Counter,
    // zonegate's own.
    pub dropped: Family<ReasonLabels, Counter>,
    pub coalesced: Family<UpstreamLabels, Counter>,
    pub upstream_errors: Family<UpstreamServerLabels, Counter>,
    pub upstream_healthy: Family<UpstreamServerLabels, Gauge>,
    pub stale_refresh_failures: Family<ZoneLabels, Counter>,
    pub reloads: Family<ResultLabels, Counter>,
    pub policy_decisions: Family<PolicyVerdictLabels, Counter>,
    pub policy_errors: Family<PolicyErrorLabels, Counter>,
    pub policy_duration: Hist<PolicyLabels>,
    pub policy_info: Family<PolicyInfoLabels, Gauge>,
    pub oci_pulls: Family<ResultLabels, Counter>,
    pub oci_unavailable: Family<PolicyLabels, Gauge>,
    pub setup_errors: Family<KindLabels, Counter>,
    pub rate_limited: Counter,
    pub acl_refused: Counter,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Arc<Self> {
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            responses: Family::default(),
            request_duration: Family::new_with_constructor(duration_histogram),
            request_size: Family::new_with_constructor(size_histogram),
            response_size: Family::new_with_constructor(size_histogram),
            do_requests: Family::default(),
            cache_entries: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_requests: Family::default(),
            cache_served_stale: Family::default(),
            cache_evictions: Family::default(),
            forward_max_concurrent_rejects: Family::default(),
            forward_healthcheck_broken: Family::default(),
            proxy_request_duration: Family::new_with_constructor(duration_histogram),
            proxy_healthcheck_failures: Family::default(),
            reload_failed: Counter::default(),
            dropped: Family::default(),
            coalesced: Family::default(),
            upstream_errors: Family::default(),
            upstream_healthy: Family::default(),
            stale_refresh_failures: Family::default(),
            reloads: Family::default(),
            policy_decisions: Family::default(),
            policy_errors: Family::default(),
            policy_duration: Family::new_with_constructor(policy_histogram),
            policy_info: Family::default(),
            oci_pulls: Family::default(),
            oci_unavailable: Family::default(),
            setup_errors: Family::default(),
            rate_limited: Counter::default(),
            acl_refused: Counter::default(),
        };
        Arc::new(m.registered())
    }

    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("ZONEGATE_REVISION").unwrap_or("unknown"),
                goversion: "none",
            })
            .set(1);
        r.register("coredns_build_info", "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.", build);
        r.register(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            self.requests.clone(),
        );
        r.register(
            "coredns_dns_responses",
            "Counter of response status codes.",
            self.responses.clone(),
        );
        r.register(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took.",
            self.request_duration.clone(),
        );
        r.register(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP).",
            self.request_size.clone(),
        );
        r.register(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            self.response_size.clone(),
        );
        r.register(
            "coredns_dns_do_requests",
            "Counter of DNS requests with DO bit set per zone.",
            self.do_requests.clone(),
        );
        r.register(
            "coredns_cache_entries",
            "The number of elements in the cache.",
            self.cache_entries.clone(),
        );
        r.register(
            "coredns_cache_hits",
            "The count of cache hits.",
            self.cache_hits.clone(),
        );
        r.register("coredns_cache_misses", "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.", self.cache_misses.clone());
        r.register(
            "coredns_cache_requests",
            "The count of cache requests.",
            self.cache_requests.clone(),
        );
        r.register(
            "coredns_cache_served_stale",
            "The number of requests served from stale cache entries.",
            self.cache_served_stale.clone(),
        );
        r.register(
            "coredns_cache_evictions",
            "The count of cache evictions.",
            self.cache_evictions.clone(),
        );
        r.register("coredns_forward_max_concurrent_rejects", "Counter of the number of queries rejected because the concurrent queries were at maximum.", self.forward_max_concurrent_rejects.clone());
        r.register(
            "coredns_forward_healthcheck_broken",
            "Counter of the number of complete failures of the healthchecks.",
            self.forward_healthcheck_broken.clone(),
        );
        r.register(
            "coredns_proxy_request_duration_seconds",
            "Histogram of the time each request took.",
            self.proxy_request_duration.clone(),
        );
        r.register(
            "coredns_proxy_healthcheck_failures",
            "Counter of the number of failed healthchecks.",
            self.proxy_healthcheck_failures.clone(),
        );
        r.register(
            "coredns_reload_failed",
            "Counter of the number of failed reload attempts.",
            self.reload_failed.clone(),
        );
        r.register(
            "zonegate_dropped_packets",
            "Packets dropped without an answer, by reason.",
            self.dropped.clone(),
        );
        r.register(
            "zonegate_coalesced_queries",
            "Cache misses that joined an identical in-flight upstream query.",
            self.coalesced.clone(),
        );
        r.register(
            "zonegate_upstream_errors",
            "Failed upstream attempts (timeout, network error, bad answer).",
            self.upstream_errors.clone(),
        );
        r.register(
            "zonegate_upstream_healthy",
            "1 while an upstream server is considered healthy.",
            self.upstream_healthy.clone(),
        );
        r.register(
            "zonegate_stale_refresh_failures",
            "Background refreshes of stale entries that failed.",
            self.stale_refresh_failures.clone(),
        );
        r.register(
            "zonegate_reload",
            "Configuration and policy reloads, by result.",
            self.reloads.clone(),
        );
        r.register(
            "zonegate_policy_decisions",
            "Policy decisions, by policy and verdict.",
            self.policy_decisions.clone(),
        );
        r.register(
            "zonegate_policy_errors",
            "Policy failures (trap, timeout, memory, ...), by policy and kind.",
            self.policy_errors.clone(),
        );
        r.register(
            "zonegate_policy_duration_seconds",
            "Time spent in a policy's decide call.",
            self.policy_duration.clone(),
        );
        r.register(
            "zonegate_policy_info",
            "The policy version each policy name runs (1 = current).",
            self.policy_info.clone(),
        );
        r.register(
            "zonegate_oci_pulls",
            "OCI registry pulls, by result.",
            self.oci_pulls.clone(),
        );
        r.register(
            "zonegate_oci_policy_unavailable",
            "1 while an oci:// policy has no verified content (never pulled, nothing cached): its on_error applies.",
            self.oci_unavailable.clone(),
        );
        r.register(
            "zonegate_setup_errors",
            "Interface/iptables setup errors, by kind.",
            self.setup_errors.clone(),
        );
        r.register(
            "zonegate_rate_limited",
            "Queries refused by the per-client rate limit.",
            self.rate_limited.clone(),
        );
        r.register(
            "zonegate_acl_refused",
            "Queries refused because the client is not allowed.",
            self.acl_refused.clone(),
        );
        self
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Every value of the `type` label, in [`qtype_index`] order (`other` last).
pub const QTYPE_LABELS: [&str; 15] = [
    "A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "HTTPS", "SVCB", "ANY", "DS",
    "DNSKEY", "other",
];

/// The index of a query type's `type` label in [`QTYPE_LABELS`].
pub fn qtype_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        28 => 1,
        5 => 2,
        15 => 3,
        2 => 4,
        12 => 5,
        6 => 6,
        33 => 7,
        16 => 8,
        65 => 9,
        64 => 10,
        255 => 11,
        43 => 12,
        48 => 13,
        _ => 14,
    }
}

/// The `type` label for a query type: common types by name, everything else `other`.
pub fn qtype_label(qtype: u16) -> &'static str {
    QTYPE_LABELS[qtype_index(qtype)]
}

/// Every value of the `rcode` label, in [`rcode_index`] order (`other` last).
pub const RCODE_LABELS: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];

/// The index of an RCODE's label in [`RCODE_LABELS`] (`rcode` with the extended bits).
pub fn rcode_index(rcode: u8) -> usize {
    match rcode {
        0..=5 => usize::from(rcode),
        16 => 6,
        _ => 7,
    }
}

/// The `rcode` label.
pub fn rcode_label(rcode: u8) -> &'static str {
    RCODE_LABELS[rcode_index(rcode)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_tables_match_the_labels() {
        let cases: &[(u16, &str)] = &[
            (1, "A"),
            (28, "AAAA"),
            (5, "CNAME"),
            (15, "MX"),
            (2, "NS"),
            (12, "PTR"),
            (6, "SOA"),
            (33, "SRV"),
            (16, "TXT"),
            (65, "HTTPS"),
            (64, "SVCB"),
            (255, "ANY"),
            (43, "DS"),
            (48, "DNSKEY"),
            (99, "other"),
            (0, "other"),
        ];
        for (qtype, want) in cases {
            assert_eq!(qtype_label(*qtype), *want, "{qtype}");
        }
        let rcodes = [
            "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
        ];
        for (code, want) in rcodes.iter().enumerate() {
            assert_eq!(rcode_label(code as u8), *want);
        }
        assert_eq!(rcode_label(16), "BADVERS");
        for code in [6u8, 9, 15, 17, 255] {
            assert_eq!(rcode_label(code), "other");
        }
    }
}
