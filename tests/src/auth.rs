//! `AuthServer`: a real authoritative DNS server for tests, on 127.0.0.1 (UDP and TCP on one port),
//! standing in for the upstream zonegate forwards to. It can be told to misbehave, globally or per
//! name, and counts what it is asked so tests can check what zonegate sent upstream.

mod behave;
mod serve;
#[cfg(test)]
mod tests;
mod zone;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, TXT};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::sync::Notify;

use crate::net::name;
use zone::Zone;

/// How the server treats a query. Set globally with [`AuthServer::set_behaviour`] or for one
/// name with [`AuthServer::set_name_behaviour`]; a name's own behaviour wins over the global one.
/// Behaviours apply to health probes (`. IN NS`) too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer from the records (the default).
    #[default]
    Answer,
    /// Answer from the records after this long (other queries are not held up).
    Delay(Duration),
    /// Never answer.
    Drop,
    /// Over UDP, answer with TC=1 and no records; over TCP, answer fully.
    Truncate,
    /// Answer SERVFAIL.
    ServFail,
    /// Answer REFUSED.
    Refused,
    /// Answer with an id different from the query's.
    WrongId,
    /// Answer with a question different from the one asked.
    WrongQuestion,
    /// Answer with random bytes that do not parse as a DNS message (the id is the query's).
    Garbage,
    /// Over TCP, reset the connection (RST) instead of answering; over UDP, answer.
    CloseTcp,
}

/// The transport a query came over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A UDP datagram.
    Udp,
    /// A length-prefixed message on a TCP connection.
    Tcp,
}

/// The EDNS(0) OPT record of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdnsInfo {
    /// The requester's UDP payload size.
    pub udp_size: u16,
    /// The DO (DNSSEC OK) bit.
    pub dnssec_ok: bool,
    /// The EDNS version.
    pub version: u8,
}

/// What the server saw of the last query for a name.
#[derive(Clone, Debug)]
pub struct QueryInfo {
    /// The transport it came over.
    pub transport: Transport,
    /// The query type.
    pub qtype: RecordType,
    /// The RD bit.
    pub recursion_desired: bool,
    /// The CD (checking disabled) bit.
    pub checking_disabled: bool,
    /// The OPT record, if the query had one.
    pub edns: Option<EdnsInfo>,
    /// The whole query as parsed.
    pub message: Message,
}

/// A running authoritative server; stopped and its thread joined on drop.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use std::net::Ipv4Addr;
/// use zonegate_testkit::{AuthServer, Behaviour, Client, proto::rr::RecordType};
/// let upstream = AuthServer::builder()
///     .a("www.example.test.", 300, Ipv4Addr::new(192, 0, 2, 1))
///     .start()?;
/// upstream.set_name_behaviour("slow.example.test.", Behaviour::Drop);
/// let response = Client::new().query_udp(upstream.addr(), "www.example.test.", RecordType::A).await?;
/// assert_eq!(upstream.queries("www.example.test.", RecordType::A), 1);
/// # Ok(()) }
/// ```
///
/// Names passed as `&str` panic if they do not parse (see [`name`](crate::name)).
pub struct AuthServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runner: serve::Runner,
}

/// Builds an [`AuthServer`]: its zone, records and initial behaviour.
#[derive(Debug)]
pub struct AuthServerBuilder {
    zone: Zone,
    behaviour: Behaviour,
    port: u16,
}

impl AuthServer {
    /// A builder for a server authoritative for `.` with no records.
    pub fn builder() -> AuthServerBuilder {
        AuthServerBuilder {
            zone: Zone::new(Name::root()),
            behaviour: Behaviour::Answer,
            port: 0,
        }
    }

    /// The address it listens on, for UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets how every query is treated, except names with a behaviour of their own.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.state().global = behaviour;
    }

    /// Sets how queries for `owner` (any type; case-insensitive) are treated.
    pub fn set_name_behaviour(&self, owner: &str, behaviour: Behaviour) {
        self.state()
            .per_name
            .insert(name(owner).to_lowercase(), behaviour);
    }

    /// Removes every per-name behaviour.
    pub fn clear_name_behaviours(&self) {
        self.state().per_name.clear();
    }

    /// Replaces the RRset of (owner, rtype) with `data` at `ttl`; an empty `data` removes it.
    pub fn set_records(&self, owner: &str, rtype: RecordType, ttl: u32, data: Vec<RData>) {
        self.state().zone.replace(&name(owner), rtype, ttl, data);
    }

    /// Adds one record; its RRset takes this TTL.
    pub fn add_record(&self, owner: &str, ttl: u32, data: RData) {
        self.state().zone.add(&name(owner), ttl, data);
    }

    /// Removes the RRset of (owner, rtype).
    pub fn remove_records(&self, owner: &str, rtype: RecordType) {
        self.set_records(owner, rtype, 0, Vec::new());
    }

    /// Changes the TTL of the RRset of (owner, rtype); false if there is no such RRset.
    pub fn set_ttl(&self, owner: &str, rtype: RecordType, ttl: u32) -> bool {
        self.state().zone.set_ttl(&name(owner), rtype, ttl)
    }

    /// Sets the SOA MINIMUM, the negative-caching TTL of NXDOMAIN/NODATA answers.
    pub fn set_negative_ttl(&self, ttl: u32) {
        self.state().zone.set_negative_ttl(ttl);
    }

    /// Whether NXDOMAIN/NODATA answers carry the zone SOA in the authority section.
    pub fn set_negative_soa(&self, include: bool) {
        self.state().zone.set_negative_soa(include);
    }

    /// Takes the server down: UDP queries are read (and counted) but never answered, TCP
    /// connections are refused and open ones closed. Returns once that is so.
    pub fn stop(&self) {
        self.state().up = false;
        self.runner.stop_tcp();
    }

    /// Brings a stopped server back up on the same port.
    pub fn resume(&self) -> anyhow::Result<()> {
        let listener = crate::net::bind_tcp(self.addr).context("listen again on the old port")?;
        self.runner.start_tcp(listener)?;
        self.state().up = true;
        Ok(())
    }

    /// Every message read from a socket, parsable or not, whatever the behaviour or state.
    pub fn total_queries(&self) -> u64 {
        self.state().stats.total
    }

    /// Messages read over one transport.
    pub fn transport_queries(&self, transport: Transport) -> u64 {
        self.state()
            .stats
            .by_transport
            .get(&transport)
            .copied()
            .unwrap_or(0)
    }

    /// Queries for (owner, qtype), owner case-insensitive.
    pub fn queries(&self, owner: &str, qtype: RecordType) -> u64 {
        let key = (name(owner).to_lowercase(), qtype);
        self.state()
            .stats
            .by_question
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    /// The last query for `owner` (any type), with its header bits and EDNS.
    pub fn last_query(&self, owner: &str) -> Option<QueryInfo> {
        self.state()
            .stats
            .last
            .get(&name(owner).to_lowercase())
            .cloned()
    }

    /// Zeroes every counter and forgets the last queries.
    pub fn reset_counters(&self) {
        self.state().stats = Stats::default();
    }

    /// Waits until (owner, qtype) has been asked at least `count` times; false on timeout.
    /// For work zonegate does in the background (refreshes, health probes).
    pub async fn wait_for_queries(
        &self,
        owner: &str,
        qtype: RecordType,
        count: u64,
        timeout: Duration,
    ) -> bool {
        self.wait_until(timeout, || self.queries(owner, qtype) >= count)
            .await
    }

    /// Waits until the server has read at least `count` messages in all; false on timeout.
    pub async fn wait_for_total(&self, count: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.total_queries() >= count)
            .await
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so a query counted in between still wakes us.
            let notified = self.shared.received.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done();
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }
}

impl AuthServerBuilder {
    /// The zone the server is authoritative for (default `.`): names outside it get REFUSED,
    /// except `. IN NS`. Its SOA is synthesised at the apex.
    pub fn zone(mut self, origin: &str) -> Self {
        self.zone.set_origin(name(origin));
        self
    }

    /// Adds a record of any type.
    pub fn record(mut self, owner: &str, ttl: u32, data: RData) -> Self {
        self.zone.add(&name(owner), ttl, data);
        self
    }

    /// Adds an A record.
    pub fn a(self, owner: &str, ttl: u32, ip: Ipv4Addr) -> Self {
        self.record(owner, ttl, RData::A(A(ip)))
    }

    /// Adds an AAAA record.
    pub fn aaaa(self, owner: &str, ttl: u32, ip: Ipv6Addr) -> Self {
        self.record(owner, ttl, RData::AAAA(AAAA(ip)))
    }

    /// Adds a CNAME record.
    pub fn cname(self, owner: &str, ttl: u32, target: &str) -> Self {
        self.record(owner, ttl, RData::CNAME(CNAME(name(target))))
    }

    /// Adds a TXT record with one string.
    pub fn txt(self, owner: &str, ttl: u32, text: &str) -> Self {
        self.record(owner, ttl, RData::TXT(TXT::new(vec![text.to_owned()])))
    }

    /// Adds an NS record.
    pub fn ns(self, owner: &str, ttl: u32, host: &str) -> Self {
        self.record(owner, ttl, RData::NS(NS(name(host))))
    }

    /// Adds an MX record.
    pub fn mx(self, owner: &str, ttl: u32, preference: u16, exchange: &str) -> Self {
        self.record(owner, ttl, RData::MX(MX::new(preference, name(exchange))))
    }

    /// TTL of the zone SOA (default 3600).
    pub fn soa_ttl(mut self, ttl: u32) -> Self {
        self.zone.set_soa_ttl(ttl);
        self
    }

    /// SOA MINIMUM, the negative-caching TTL (default 60).
    pub fn negative_ttl(mut self, ttl: u32) -> Self {
        self.zone.set_negative_ttl(ttl);
        self
    }

    /// NXDOMAIN/NODATA answers without the SOA (not cacheable by RFC 2308).
    pub fn without_negative_soa(mut self) -> Self {
        self.zone.set_negative_soa(false);
        self
    }

    /// The initial global behaviour.
    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// Listen on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Binds 127.0.0.1 and starts serving on a thread of its own (usable from sync and async tests).
    pub fn start(self) -> anyhow::Result<AuthServer> {
        let (udp, tcp) = crate::net::bind_udp_tcp(self.port)?;
        let addr = udp.local_addr()?;
        let state = State {
            zone: self.zone,
            global: self.behaviour,
            per_name: HashMap::new(),
            up: true,
            stats: Stats::default(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            received: Notify::new(),
        });
        let runner = serve::Runner::spawn(shared.clone(), udp, tcp)?;
        Ok(AuthServer {
            addr,
            shared,
            runner,
        })
    }
}

/// State shared by the test's handle and the serving thread.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Woken on every message read, for the `wait_for_*` methods.
    received: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide its own failure behind ours.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides what to do with one message read from a socket.
    pub(crate) fn handle(&self, bytes: &[u8], transport: Transport) -> behave::Plan {
        let plan = behave::plan(&mut self.state(), bytes, transport);
        self.received.notify_waiters();
        plan
    }
}

struct State {
    zone: Zone,
    global: Behaviour,
    per_name: HashMap<Name, Behaviour>,
    up: bool,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    total: u64,
    by_transport: HashMap<Transport, u64>,
    by_question: HashMap<(Name, RecordType), u64>,
    last: HashMap<Name, QueryInfo>,
}
