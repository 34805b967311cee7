//! The WIT boundary: the only module that sees generated bindings. The host runs every
//! released version of the world (`guest-sdk/wit/<version>/`): 0.2.0, which the SDK builds,
//! and 0.1.0. Links a component to the version it implements, and converts the query into
//! guest values and the guest's decision into a [`Verdict`].

use std::net::IpAddr;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::store::GuestState;
use super::{DenyKind, PolicyQuery, RData, Record, Transport, Verdict};

mod v1 {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit/0.1.0",
        world: "zonegate:policy/policy@0.1.0",
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

mod v2 {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit/0.2.0",
        world: "zonegate:policy/policy@0.2.0",
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use v1::zonegate::policy::types as t1;
use v2::zonegate::policy::types as t2;

/// The newest world: what the SDK builds and what bundles are labelled with by default.
pub const WORLD: &str = WORLD_V2;
const WORLD_V1: &str = "zonegate:policy/policy@0.1.0";
const WORLD_V2: &str = "zonegate:policy/policy@0.2.0";

/// Whether the host provides an import of this name (the host interface and the types of
/// each version; WASI is stubbed separately).
pub(crate) fn provides(import: &str) -> bool {
    [
        "zonegate:policy/host@0.1.0",
        "zonegate:policy/host@0.2.0",
        "zonegate:policy/types@0.1.0",
        "zonegate:policy/types@0.2.0",
    ]
    .contains(&import)
}

/// The upstream groups a 0.2.0 policy declares in `init`.
pub(crate) type Routes = Vec<Arc<str>>;

/// A component linked to the world version it implements, ready to instantiate.
#[derive(Clone)]
pub(crate) enum Pre {
    V1(v1::PolicyPre<GuestState>),
    V2(v2::PolicyPre<GuestState>),
}

/// Why [`Pre::start`] failed.
pub(crate) enum StartError {
    /// Instantiation or `init` trapped (or ran out of time or memory).
    Trap(wasmtime::Error, Phase),
    /// `init` rejected the settings with this message.
    Rejected(String),
}

/// Where a start failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Instantiate,
    Init,
}

impl Pre {
    /// The engine the component was linked in.
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::V1(p) => p.engine(),
            Pre::V2(p) => p.engine(),
        }
    }

    /// Links `c` with the host's imports (WASI ones trap if called) and checks its exports
    /// against each world, newest first.
    pub(crate) fn link(engine: &wasmtime::Engine, c: &Component) -> Result<Pre, String> {
        let mut linker = Linker::<GuestState>::new(engine);
        let add = v2::Policy::add_to_linker::<_, HasSelf<GuestState>>(&mut linker, |s| s)
            .and_then(|()| v1::Policy::add_to_linker::<_, HasSelf<GuestState>>(&mut linker, |s| s));
        add.map_err(|e| format!("linking the host interface: {e:#}"))?;
        // wasm32-wasip2 guests import WASI interfaces they never call: calling one traps.
        linker
            .define_unknown_imports_as_traps(c)
            .map_err(|e| format!("{e:#}"))?;
        let pre = linker.instantiate_pre(c).map_err(|e| format!("{e:#}"))?;
        let e2 = match v2::PolicyPre::new(pre.clone()) {
            Ok(p) => return Ok(Pre::V2(p)),
            Err(e) => e,
        };
        let e1 = match v1::PolicyPre::new(pre) {
            Ok(p) => return Ok(Pre::V1(p)),
            Err(e) => e,
        };
        Err(format!("as {WORLD_V2}: {e2:#}; as {WORLD_V1}: {e1:#}"))
    }

    /// The world the component implements.
    pub(crate) fn world(&self) -> &'static str {
        match self {
            Pre::V1(_) => WORLD_V1,
            Pre::V2(_) => WORLD_V2,
        }
    }

    /// Instantiates and runs `init(settings)`; with the instance, the upstream groups a
    /// 0.2.0 policy declared it routes to (`None` for 0.1.0, which does not declare them).
    pub(crate) fn start(
        &self,
        store: &mut Store<GuestState>,
        settings: &str,
    ) -> Result<(Instance, Option<Routes>), StartError> {
        let trap = |phase| move |e| StartError::Trap(e, phase);
        match self {
            Pre::V1(pre) => {
                let b = pre
                    .instantiate(&mut *store)
                    .map_err(trap(Phase::Instantiate))?;
                b.call_init(&mut *store, settings)
                    .map_err(trap(Phase::Init))?
                    .map_err(StartError::Rejected)?;
                Ok((Instance::V1(b), None))
            }
            Pre::V2(pre) => {
                let b = pre
                    .instantiate(&mut *store)
                    .map_err(trap(Phase::Instantiate))?;
                let setup = b
                    .call_init(&mut *store, settings)
                    .map_err(trap(Phase::Init))?
                    .map_err(StartError::Rejected)?;
                let instance = Instance::V2 {
                    bindings: b,
                    view: None,
                    zone: None,
                };
                Ok((
                    instance,
                    Some(setup.routes.into_iter().map(Arc::from).collect()),
                ))
            }
        }
    }
}

/// A live instance of a policy, after a successful `init`.
pub(crate) enum Instance {
    V1(v1::Policy),
    V2 {
        bindings: v2::Policy,
        /// View and zone sent in the previous call: not sent again while they stay the same.
        view: Option<String>,
        zone: Option<String>,
    },
}

/// A guest decision as domain values: the verdict and its memoization hint.
pub(crate) struct GuestDecision {
    pub(crate) verdict: Verdict,
    pub(crate) cache_for: Option<u32>,
}

impl Instance {
    /// Decides one query. A 0.2.0 `route(i)` names `routes[i]`: the groups the policy
    /// declared when it was loaded and checked. `intern` maps a 0.1.0 route name to a shared
    /// string so repeated routes do not allocate. After an error the instance must be dropped.
    pub(crate) fn decide(
        &mut self,
        store: &mut Store<GuestState>,
        q: &PolicyQuery<'_>,
        routes: &[Arc<str>],
        intern: impl FnOnce(&str) -> Arc<str>,
    ) -> wasmtime::Result<GuestDecision> {
        match self {
            Instance::V1(b) => {
                let d = b.call_decide(&mut *store, query_v1(q))?;
                Ok(decision_v1(d, intern))
            }
            Instance::V2 {
                bindings,
                view,
                zone,
            } => {
                let send_view = view.as_deref() != Some(q.view);
                let send_zone = zone.as_deref() != Some(q.zone);
                let query = t2::Query {
                    name: q.name,
                    qtype: q.qtype,
                    qclass: q.qclass,
                    client: match q.client {
                        IpAddr::V4(a) => t2::IpAddress::Ipv4(a.to_bits()),
                        IpAddr::V6(a) => {
                            let bits = a.to_bits();
                            t2::IpAddress::Ipv6(((bits >> 64) as u64, bits as u64))
                        }
                    },
                    view: send_view.then_some(q.view),
                    zone: send_zone.then_some(q.zone),
                    transport: match q.transport {
                        Transport::Udp => t2::Transport::Udp,
                        Transport::Tcp => t2::Transport::Tcp,
                    },
                    has_identity: false,
                };
                let d = bindings.call_decide(&mut *store, query)?;
                if send_view {
                    remember(view, q.view);
                }
                if send_zone {
                    remember(zone, q.zone);
                }
                let verdict = match d.action {
                    t2::Action::Allow => Verdict::Allow,
                    t2::Action::Deny(k) => Verdict::Deny(deny_v2(k)),
                    t2::Action::Route(i) => Verdict::Route(match routes.get(i as usize) {
                        Some(r) => r.clone(),
                        // Not a group name (they are identifiers): answered SERVFAIL and
                        // counted as an unknown route, like 0.1.0's unknown names.
                        None => format!("(route #{i} of {} declared)", routes.len()).into(),
                    }),
                    t2::Action::Answer => {
                        let records = bindings.call_answer(&mut *store)?;
                        Verdict::Answer(records.into_iter().map(record_v2).collect())
                    }
                };
                Ok(GuestDecision {
                    verdict,
                    cache_for: d.cache_for,
                })
            }
        }
    }
}

fn remember(slot: &mut Option<String>, value: &str) {
    let s = slot.get_or_insert_with(String::new);
    s.clear();
    s.push_str(value);
}

fn query_v1<'a>(q: &PolicyQuery<'a>) -> t1::Query<'a> {
    t1::Query {
        name: q.name,
        qtype: q.qtype,
        qclass: q.qclass,
        client: match q.client {
            IpAddr::V4(a) => {
                let [o0, o1, o2, o3] = a.octets();
                t1::IpAddress::Ipv4((o0, o1, o2, o3))
            }
            IpAddr::V6(a) => {
                let [s0, s1, s2, s3, s4, s5, s6, s7] = a.segments();
                t1::IpAddress::Ipv6((s0, s1, s2, s3, s4, s5, s6, s7))
            }
        },
        view: q.view,
        zone: q.zone,
        transport: match q.transport {
            Transport::Udp => t1::Transport::Udp,
            Transport::Tcp => t1::Transport::Tcp,
        },
        identity: None,
    }
}

fn decision_v1(d: t1::Decision, intern: impl FnOnce(&str) -> Arc<str>) -> GuestDecision {
    let verdict = match d.action {
        t1::Action::Allow => Verdict::Allow,
        t1::Action::Deny(k) => Verdict::Deny(match k {
            t1::DenyKind::Nxdomain => DenyKind::NxDomain,
            t1::DenyKind::Refused => DenyKind::Refused,
            t1::DenyKind::Nodata => DenyKind::NoData,
        }),
        t1::Action::Route(g) => Verdict::Route(intern(&g)),
        t1::Action::Answer(records) => {
            Verdict::Answer(records.into_iter().map(record_v1).collect())
        }
    };
    GuestDecision {
        verdict,
        cache_for: d.cache_for,
    }
}

fn record_v1(r: t1::AnswerRecord) -> Record {
    let data = match r.data {
        t1::Rdata::A((a, b, c, d)) => RData::A([a, b, c, d].into()),
        t1::Rdata::Aaaa((a, b, c, d, e, f, g, h)) => RData::Aaaa([a, b, c, d, e, f, g, h].into()),
        t1::Rdata::Cname(n) => RData::Cname(n),
        t1::Rdata::Txt(t) => RData::Txt(t),
    };
    Record {
        name: r.name,
        ttl: r.ttl,
        data,
    }
}

fn deny_v2(k: t2::DenyKind) -> DenyKind {
    match k {
        t2::DenyKind::Nxdomain => DenyKind::NxDomain,
        t2::DenyKind::Refused => DenyKind::Refused,
        t2::DenyKind::Nodata => DenyKind::NoData,
    }
}

fn record_v2(r: t2::AnswerRecord) -> Record {
    let data = match r.data {
        t2::Rdata::A(a) => RData::A(a.into()),
        t2::Rdata::Aaaa((hi, lo)) => RData::Aaaa((u128::from(hi) << 64 | u128::from(lo)).into()),
        t2::Rdata::Cname(n) => RData::Cname(n),
        t2::Rdata::Txt(t) => RData::Txt(t),
    };
    Record {
        name: r.name,
        ttl: r.ttl,
        data,
    }
}

fn level_v1(l: t1::Level) -> tracing::Level {
    match l {
        t1::Level::Trace => tracing::Level::TRACE,
        t1::Level::Debug => tracing::Level::DEBUG,
        t1::Level::Info => tracing::Level::INFO,
        t1::Level::Warn => tracing::Level::WARN,
        t1::Level::Error => tracing::Level::ERROR,
    }
}

fn level_v2(l: t2::Level) -> tracing::Level {
    match l {
        t2::Level::Trace => tracing::Level::TRACE,
        t2::Level::Debug => tracing::Level::DEBUG,
        t2::Level::Info => tracing::Level::INFO,
        t2::Level::Warn => tracing::Level::WARN,
        t2::Level::Error => tracing::Level::ERROR,
    }
}

impl t1::Host for GuestState {}
impl t2::Host for GuestState {}

impl v1::zonegate::policy::host::Host for GuestState {
    fn log(&mut self, level: t1::Level, message: String) {
        self.log_line(level_v1(level), &message);
    }
}

impl v2::zonegate::policy::host::Host for GuestState {
    fn log(&mut self, level: t2::Level, message: String) {
        self.log_line(level_v2(level), &message);
    }

    /// The host does not learn pod identities yet (`has-identity` is always false).
    fn identity(&mut self) -> Option<t2::ClientIdentity> {
        None
    }
}
