//! Metric handles of one (listener, zone), resolved on first use: the query path bumps
//! atomics instead of hashing a label set into a family (and taking its lock) per metric
//! per query. Label sets appear in the output exactly when they did before: on first use.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::cache::EntryKind;
use crate::metrics::{
    CacheTypeLabels, DurationLabels, Label, Metrics, QTYPE_LABELS, RCODE_LABELS, RequestLabels,
    ResponseLabels, SizeLabels, ZoneLabels, qtype_index, rcode_index,
};
use crate::policy::Transport;

use super::Zone;

const TYPES: usize = QTYPE_LABELS.len();
const RCODES: usize = RCODE_LABELS.len();
/// Values of the `plugin` label of `coredns_dns_responses_total`.
pub(super) const PLUGINS: [&str; 4] = ["cache", "forward", "policy", ""];
const PROTOS: [&str; 2] = ["udp", "tcp"];
const FAMILIES: [&str; 2] = ["1", "2"];

/// The `proto` label of a transport.
pub(super) fn proto(t: Transport) -> &'static str {
    PROTOS[proto_index(t)]
}

fn proto_index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    }
}

/// The handles of one (listener, zone).
pub(super) struct ZoneStats {
    metrics: Arc<Metrics>,
    labels: ZoneLabels,
    requests: [OnceLock<Counter>; PROTOS.len() * FAMILIES.len() * TYPES],
    request_size: [OnceLock<Histogram>; PROTOS.len()],
    do_requests: OnceLock<Counter>,
    responses: [OnceLock<Counter>; RCODES * PLUGINS.len()],
    request_duration: [OnceLock<Histogram>; TYPES],
    response_size: [OnceLock<Histogram>; PROTOS.len()],
    cache_requests: OnceLock<Counter>,
    cache_misses: OnceLock<Counter>,
    cache_served_stale: OnceLock<Counter>,
    cache_hits: [OnceLock<Counter>; 2],
}

/// Each getter clones the handle out of its family in one statement, so no family guard is
/// held while another family is touched.
impl ZoneStats {
    fn new(metrics: &Arc<Metrics>, labels: ZoneLabels) -> Self {
        ZoneStats {
            metrics: metrics.clone(),
            labels,
            requests: [const { OnceLock::new() }; PROTOS.len() * FAMILIES.len() * TYPES],
            request_size: [const { OnceLock::new() }; PROTOS.len()],
            do_requests: OnceLock::new(),
            responses: [const { OnceLock::new() }; RCODES * PLUGINS.len()],
            request_duration: [const { OnceLock::new() }; TYPES],
            response_size: [const { OnceLock::new() }; PROTOS.len()],
            cache_requests: OnceLock::new(),
            cache_misses: OnceLock::new(),
            cache_served_stale: OnceLock::new(),
            cache_hits: [const { OnceLock::new() }; 2],
        }
    }

    fn server(&self) -> Label {
        self.labels.server.clone()
    }
    fn zone(&self) -> Label {
        self.labels.zone.clone()
    }
    fn view(&self) -> Label {
        self.labels.view.clone()
    }

    /// `coredns_dns_requests_total`.
    pub(super) fn request(&self, t: Transport, ipv4: bool, qtype: u16) {
        let (p, f, ty) = (proto_index(t), usize::from(!ipv4), qtype_index(qtype));
        let cell = &self.requests[(p * FAMILIES.len() + f) * TYPES + ty];
        cell.get_or_init(|| {
            let labels = RequestLabels {
                server: self.server(),
                zone: self.zone(),
                view: self.view(),
                proto: PROTOS[p],
                family: FAMILIES[f],
                r#type: QTYPE_LABELS[ty],
            };
            self.metrics.requests.get_or_create(&labels).clone()
        })
        .inc();
    }

    /// `coredns_dns_request_size_bytes`.
    pub(super) fn request_size(&self, t: Transport, size: f64) {
        let p = proto_index(t);
        self.request_size[p]
            .get_or_init(|| {
                let labels = self.size_labels(p);
                self.metrics.request_size.get_or_create(&labels).clone()
            })
            .observe(size);
    }

    /// `coredns_dns_do_requests_total`.
    pub(super) fn do_request(&self) {
        self.do_requests
            .get_or_init(|| self.metrics.do_requests.get_or_create(&self.labels).clone())
            .inc();
    }

    /// `coredns_dns_responses_total`; `plugin` indexes [`PLUGINS`].
    pub(super) fn response(&self, rcode: u8, plugin: usize) {
        let r = rcode_index(rcode);
        let cell = &self.responses[r * PLUGINS.len() + plugin];
        cell.get_or_init(|| {
            let labels = ResponseLabels {
                server: self.server(),
                zone: self.zone(),
                view: self.view(),
                rcode: RCODE_LABELS[r],
                plugin: PLUGINS[plugin],
            };
            self.metrics.responses.get_or_create(&labels).clone()
        })
        .inc();
    }

    /// `coredns_dns_request_duration_seconds`.
    pub(super) fn duration(&self, qtype: u16, seconds: f64) {
        let ty = qtype_index(qtype);
        self.request_duration[ty]
            .get_or_init(|| {
                let labels = DurationLabels {
                    server: self.server(),
                    zone: self.zone(),
                    view: self.view(),
                    r#type: QTYPE_LABELS[ty],
                };
                self.metrics.request_duration.get_or_create(&labels).clone()
            })
            .observe(seconds);
    }

    /// `coredns_dns_response_size_bytes`.
    pub(super) fn response_size(&self, t: Transport, size: f64) {
        let p = proto_index(t);
        self.response_size[p]
            .get_or_init(|| {
                let labels = self.size_labels(p);
                self.metrics.response_size.get_or_create(&labels).clone()
            })
            .observe(size);
    }

    /// `coredns_cache_requests_total`.
    pub(super) fn cache_request(&self) {
        let m = &self.metrics;
        (self.cache_requests)
            .get_or_init(|| m.cache_requests.get_or_create(&self.labels).clone())
            .inc();
    }

    /// `coredns_cache_misses_total`.
    pub(super) fn cache_miss(&self) {
        let m = &self.metrics;
        (self.cache_misses)
            .get_or_init(|| m.cache_misses.get_or_create(&self.labels).clone())
            .inc();
    }

    /// `coredns_cache_served_stale_total`.
    pub(super) fn served_stale(&self) {
        let m = &self.metrics;
        (self.cache_served_stale)
            .get_or_init(|| m.cache_served_stale.get_or_create(&self.labels).clone())
            .inc();
    }

    /// `coredns_cache_hits_total`.
    pub(super) fn cache_hit(&self, kind: EntryKind) {
        let i = kind.slot();
        self.cache_hits[i]
            .get_or_init(|| {
                let labels = CacheTypeLabels {
                    server: self.server(),
                    zone: self.zone(),
                    view: self.view(),
                    r#type: kind.label(),
                };
                self.metrics.cache_hits.get_or_create(&labels).clone()
            })
            .inc();
    }

    fn size_labels(&self, p: usize) -> SizeLabels {
        SizeLabels {
            server: self.server(),
            zone: self.zone(),
            view: self.view(),
            proto: PROTOS[p],
        }
    }
}

/// The per-listener handle slots of one zone, indexed by [`ListenerInfo::index`].
pub(super) struct ZoneStatsSlots(Box<[OnceLock<ZoneStats>]>);

impl ZoneStatsSlots {
    pub(super) fn new(listeners: usize) -> Self {
        ZoneStatsSlots((0..listeners).map(|_| OnceLock::new()).collect())
    }
}

/// Borrowed handles, or (for a listener without a slot) handles made for this query.
pub(super) enum StatsRef<'a> {
    Slot(&'a ZoneStats),
    Owned(Box<ZoneStats>),
}

impl Deref for StatsRef<'_> {
    type Target = ZoneStats;
    fn deref(&self) -> &ZoneStats {
        match self {
            StatsRef::Slot(s) => s,
            StatsRef::Owned(s) => s,
        }
    }
}

/// The handles of `zone` for the listener at `index` (its `ListenerInfo::index`), whose
/// `server` label is `server`.
pub(super) fn of<'a>(
    metrics: &Arc<Metrics>,
    zone: &'a Zone,
    server: &Label,
    index: usize,
) -> StatsRef<'a> {
    let labels = || ZoneLabels {
        server: server.clone(),
        zone: zone.label.clone(),
        view: zone.view.clone(),
    };
    match zone.stats.0.get(index) {
        Some(cell) => {
            let s = cell.get_or_init(|| ZoneStats::new(metrics, labels()));
            // A slot belongs to the listener that filled it: a listener whose index
            // collides (not one the app bound) still gets its own labels.
            if Arc::ptr_eq(&s.labels.server.0, &server.0) || s.labels.server == *server {
                StatsRef::Slot(s)
            } else {
                StatsRef::Owned(Box::new(ZoneStats::new(metrics, labels())))
            }
        }
        None => StatsRef::Owned(Box::new(ZoneStats::new(metrics, labels()))),
    }
}
