//! The component boundary (wasm32 only): the generated bindings, the one policy instance, and
//! the conversions between WIT types and the SDK's plain ones. Only `export!` reaches in here.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Action, Decision, DenyKind, Identity, Level, Policy, Query, RData, Record, Transport};
use bindings::zonegate::policy::types as wit;

pub use bindings::Guest;
pub use std::string::String;
pub use wit::{Decision as WitDecision, Query as WitQuery};

#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__zonegate_export_world",
    });
}

/// The object-safe face of a policy, so one non-generic slot can hold any of them.
trait Decide {
    fn decide(&self, query: &Query) -> Decision;
}

impl<P: Policy> Decide for P {
    fn decide(&self, query: &Query) -> Decision {
        Policy::decide(self, query)
    }
}

thread_local! {
    /// The policy `init` built. A component instance is single-threaded.
    static INSTANCE: RefCell<Option<Box<dyn Decide>>> = const { RefCell::new(None) };
}

/// `init` export: build `P` from its settings and keep it for `decide`. A failed init clears any
/// previous instance, so a rejected reload never leaves stale rules deciding.
pub fn init<P: Policy>(settings: String) -> Result<(), String> {
    let built = P::init(&settings);
    drop(settings);
    let (instance, result) = match built {
        Ok(policy) => (Some(Box::new(policy) as Box<dyn Decide>), Ok(())),
        Err(err) => (None, Err(err.to_string())),
    };
    INSTANCE.set(instance);
    result
}

/// `decide` export. Before a successful `init` there is nothing to ask: refuse, and say why.
pub fn decide(query: WitQuery) -> WitDecision {
    let query = from_wit(query);
    let decision =
        INSTANCE.with_borrow(|instance| instance.as_ref().map(|policy| policy.decide(&query)));
    let decision = decision.unwrap_or_else(|| {
        crate::log(
            Level::Error,
            "decide called before a successful init: refusing",
        );
        Decision::deny(DenyKind::Refused)
    });
    to_wit(decision)
}

fn from_wit(query: WitQuery) -> Query {
    let client = match query.client {
        wit::IpAddress::Ipv4((a, b, c, d)) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        wit::IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
        }
    };
    let transport = match query.transport {
        wit::Transport::Udp => Transport::Udp,
        wit::Transport::Tcp => Transport::Tcp,
    };
    let identity = query.identity.map(|id| Identity {
        namespace: id.namespace,
        pod: id.pod,
        labels: id.labels,
    });
    Query {
        name: query.name,
        qtype: query.qtype,
        qclass: query.qclass,
        client,
        view: query.view,
        zone: query.zone,
        transport,
        identity,
    }
}

fn to_wit(decision: Decision) -> WitDecision {
    let action = match decision.action {
        Action::Allow => wit::Action::Allow,
        Action::Deny(kind) => wit::Action::Deny(match kind {
            DenyKind::NxDomain => wit::DenyKind::Nxdomain,
            DenyKind::Refused => wit::DenyKind::Refused,
            DenyKind::NoData => wit::DenyKind::Nodata,
        }),
        Action::Route(upstream) => wit::Action::Route(upstream),
        Action::Answer(records) => {
            wit::Action::Answer(records.into_iter().map(record_to_wit).collect())
        }
    };
    WitDecision {
        action,
        cache_for: decision.cache_for,
    }
}

fn record_to_wit(record: Record) -> wit::AnswerRecord {
    let data = match record.data {
        RData::A(v4) => {
            let [a, b, c, d] = v4.octets();
            wit::Rdata::A((a, b, c, d))
        }
        RData::Aaaa(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.segments();
            wit::Rdata::Aaaa((a, b, c, d, e, f, g, h))
        }
        RData::Cname(target) => wit::Rdata::Cname(target),
        RData::Txt(strings) => wit::Rdata::Txt(strings),
    };
    wit::AnswerRecord {
        name: record.name,
        ttl: record.ttl,
        data,
    }
}
