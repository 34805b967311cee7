//! The component boundary (wasm32 only): the generated bindings of world
//! `zonegate:policy/policy@0.2.0`, the one policy instance, and the conversions between WIT
//! types and the SDK's plain ones. Only `export!` reaches in here.
//!
//! 0.2.0 keeps each call cheap, and this glue hides how: the view and zone arrive only when
//! they change (the last ones are kept here), routes travel as indices into the list `init`
//! declared, and an answer's records wait here until the host calls `answer`.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Action, Decision, DenyKind, Identity, Level, Policy, Query, RData, Record, Transport};
use bindings::zonegate::policy::host;
use bindings::zonegate::policy::types as wit;

pub use bindings::Guest;
pub use std::string::String;
pub use std::vec::Vec;
pub use wit::{
    AnswerRecord as WitAnswerRecord, Decision as WitDecision, Query as WitQuery, Setup as WitSetup,
};

#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "wit/0.2.0",
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

/// What the instance keeps between calls. A component instance is single-threaded.
struct State {
    /// The policy `init` built.
    policy: Option<Box<dyn Decide>>,
    /// The upstream groups `init` declared: a route is sent as an index into this list.
    routes: Vec<String>,
    /// The last query: its view and zone stay until the host sends new ones.
    query: Query,
    /// The records of the last `answer` decision, until the host fetches them.
    answer: Vec<Record>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State {
        policy: None,
        routes: Vec::new(),
        query: Query {
            name: String::new(),
            qtype: 0,
            qclass: 0,
            client: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            view: String::new(),
            zone: String::new(),
            transport: Transport::Udp,
            identity: None,
        },
        answer: Vec::new(),
    });
}

/// `init` export: build `P` from its settings and keep it for `decide`. A failed init clears any
/// previous instance, so a rejected reload never leaves stale rules deciding.
pub fn init<P: Policy>(settings: String) -> Result<WitSetup, String> {
    let built = P::init(&settings);
    drop(settings);
    STATE.with_borrow_mut(|state| match built {
        Ok(policy) => {
            state.routes = policy.routes();
            state.policy = Some(Box::new(policy));
            Ok(WitSetup {
                routes: state.routes.clone(),
            })
        }
        Err(err) => {
            state.policy = None;
            state.routes.clear();
            Err(err.to_string())
        }
    })
}

/// `decide` export. Before a successful `init` there is nothing to ask: refuse, and say why.
pub fn decide(query: WitQuery) -> WitDecision {
    STATE.with_borrow_mut(|state| {
        let State {
            policy,
            routes,
            query: q,
            answer,
        } = state;
        fill(q, query);
        let Some(policy) = policy else {
            crate::log(
                Level::Error,
                "decide called before a successful init: refusing",
            );
            return to_wit(Decision::deny(DenyKind::Refused), routes, answer);
        };
        let decision = policy.decide(q);
        to_wit(decision, routes, answer)
    })
}

/// `answer` export: the records of the last `answer` decision.
pub fn answer() -> Vec<WitAnswerRecord> {
    let records = STATE.with_borrow_mut(|state| std::mem::take(&mut state.answer));
    records.into_iter().map(record_to_wit).collect()
}

fn fill(q: &mut Query, query: WitQuery) {
    q.name = query.name;
    q.qtype = query.qtype;
    q.qclass = query.qclass;
    q.client = match query.client {
        wit::IpAddress::Ipv4(bits) => IpAddr::V4(Ipv4Addr::from_bits(bits)),
        wit::IpAddress::Ipv6((hi, lo)) => {
            IpAddr::V6(Ipv6Addr::from_bits(u128::from(hi) << 64 | u128::from(lo)))
        }
    };
    if let Some(view) = query.view {
        q.view = view;
    }
    if let Some(zone) = query.zone {
        q.zone = zone;
    }
    q.transport = match query.transport {
        wit::Transport::Udp => Transport::Udp,
        wit::Transport::Tcp => Transport::Tcp,
    };
    q.identity = if query.has_identity {
        host::identity().map(|id| Identity {
            namespace: id.namespace,
            pod: id.pod,
            labels: id.labels,
        })
    } else {
        None
    };
}

fn to_wit(decision: Decision, routes: &[String], answer: &mut Vec<Record>) -> WitDecision {
    let action = match decision.action {
        Action::Allow => wit::Action::Allow,
        Action::Deny(kind) => wit::Action::Deny(match kind {
            DenyKind::NxDomain => wit::DenyKind::Nxdomain,
            DenyKind::Refused => wit::DenyKind::Refused,
            DenyKind::NoData => wit::DenyKind::Nodata,
        }),
        Action::Route(upstream) => wit::Action::Route(route_index(routes, &upstream)),
        Action::Answer(records) => {
            *answer = records;
            wit::Action::Answer
        }
    };
    WitDecision {
        action,
        cache_for: decision.cache_for,
    }
}

/// The index of `upstream` in the declared routes. An undeclared group gets an index past the
/// end, which the host answers SERVFAIL: say why in the host's log.
fn route_index(routes: &[String], upstream: &str) -> u32 {
    match routes.iter().position(|r| r == upstream) {
        Some(i) => u32::try_from(i).unwrap_or(u32::MAX),
        None => {
            crate::log(
                Level::Error,
                &format!(
                    "route to {upstream:?}, which Policy::routes does not declare: answered SERVFAIL"
                ),
            );
            u32::MAX
        }
    }
}

fn record_to_wit(record: Record) -> WitAnswerRecord {
    let data = match record.data {
        RData::A(v4) => wit::Rdata::A(v4.to_bits()),
        RData::Aaaa(v6) => {
            let bits = v6.to_bits();
            wit::Rdata::Aaaa(((bits >> 64) as u64, bits as u64))
        }
        RData::Cname(target) => wit::Rdata::Cname(target),
        RData::Txt(strings) => wit::Rdata::Txt(strings),
    };
    WitAnswerRecord {
        name: record.name,
        ttl: record.ttl,
        data,
    }
}
