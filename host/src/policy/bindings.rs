//! The WIT boundary (`zonegate:policy/policy@0.1.0`): the only module that sees generated
//! bindings. Converts the query into guest values and the guest's decision into a [`Verdict`].

use std::net::IpAddr;
use std::sync::Arc;

use super::{DenyKind, PolicyQuery, RData, Record, Transport, Verdict};

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "zonegate:policy/policy@0.1.0",
});

pub(crate) use zonegate::policy::host::Host as LogHost;
pub(crate) use zonegate::policy::types::Level;
use zonegate::policy::types::{
    Action, DenyKind as WitDeny, IpAddress, Rdata, Transport as WitTransport,
};

/// The world's name, as `zonegate policy check` reports it.
pub const WORLD: &str = "zonegate:policy/policy@0.1.0";
/// The import interface the host provides.
pub(crate) const HOST_IMPORT: &str = "zonegate:policy/host@0.1.0";

pub(crate) type Bindings = Policy;
pub(crate) type BindingsPre<T> = PolicyPre<T>;

/// A guest query kept per worker so filling it for each call reuses its string buffers.
pub(crate) struct QueryBuf(Query);

impl Default for QueryBuf {
    fn default() -> Self {
        QueryBuf(Query {
            name: String::new(),
            qtype: 0,
            qclass: 0,
            client: IpAddress::Ipv4((0, 0, 0, 0)),
            view: String::new(),
            zone: String::new(),
            transport: WitTransport::Udp,
            identity: None,
        })
    }
}

impl QueryBuf {
    /// Copies `q` into the buffer without allocating once the buffers are warm.
    pub(crate) fn fill(&mut self, q: &PolicyQuery<'_>) -> &Query {
        let b = &mut self.0;
        set(&mut b.name, q.name);
        set(&mut b.view, q.view);
        set(&mut b.zone, q.zone);
        b.qtype = q.qtype;
        b.qclass = q.qclass;
        b.client = match q.client {
            IpAddr::V4(a) => {
                let [o0, o1, o2, o3] = a.octets();
                IpAddress::Ipv4((o0, o1, o2, o3))
            }
            IpAddr::V6(a) => {
                let [s0, s1, s2, s3, s4, s5, s6, s7] = a.segments();
                IpAddress::Ipv6((s0, s1, s2, s3, s4, s5, s6, s7))
            }
        };
        b.transport = match q.transport {
            Transport::Udp => WitTransport::Udp,
            Transport::Tcp => WitTransport::Tcp,
        };
        &self.0
    }
}

fn set(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

/// A guest decision as domain values: the verdict and its memoization hint.
pub(crate) struct GuestDecision {
    pub(crate) verdict: Verdict,
    pub(crate) cache_for: Option<u32>,
}

/// Converts a guest decision. `intern` maps a route name to a shared string so repeated
/// routes do not allocate.
pub(crate) fn convert(d: Decision, intern: impl FnOnce(&str) -> Arc<str>) -> GuestDecision {
    let verdict = match d.action {
        Action::Allow => Verdict::Allow,
        Action::Deny(k) => Verdict::Deny(match k {
            WitDeny::Nxdomain => DenyKind::NxDomain,
            WitDeny::Refused => DenyKind::Refused,
            WitDeny::Nodata => DenyKind::NoData,
        }),
        Action::Route(g) => Verdict::Route(intern(&g)),
        Action::Answer(records) => Verdict::Answer(records.into_iter().map(record).collect()),
    };
    GuestDecision {
        verdict,
        cache_for: d.cache_for,
    }
}

fn record(r: zonegate::policy::types::AnswerRecord) -> Record {
    let data = match r.data {
        Rdata::A((a, b, c, d)) => RData::A([a, b, c, d].into()),
        Rdata::Aaaa((a, b, c, d, e, f, g, h)) => RData::Aaaa([a, b, c, d, e, f, g, h].into()),
        Rdata::Cname(n) => RData::Cname(n),
        Rdata::Txt(t) => RData::Txt(t),
    };
    Record {
        name: r.name,
        ttl: r.ttl,
        data,
    }
}

impl zonegate::policy::types::Host for super::store::GuestState {}
