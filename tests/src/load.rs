//! `Load`: a bounded DNS load generator for reliability tests and scripts.
//!
//! A fixed window of workers (the concurrency) each own one UDP socket or one TCP connection
//! and ask one question at a time. Queries are numbered; query `i` is not sent before
//! `start + i / rate` (when a rate is set), so the offered load is paced, and nothing is sent
//! once `count` queries have been sent or `duration` has passed — both bounds always apply.
//! The report counts what was sent, answered (by RCODE) and lost (no answer within the
//! timeout, or the connection failed), with latency percentiles of the answered queries.
//!
//! Over TCP a worker whose connection was closed before the answer arrived reconnects and
//! resends once, as RFC 7766 clients do; such retries are counted, and a second failure is a
//! loss.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::client::Client;

/// Largest number of latency samples kept per worker (bounds memory on long runs; later
/// samples replace earlier ones at random positions, so percentiles stay representative).
const MAX_SAMPLES_PER_WORKER: usize = 200_000;

/// The transport the load is sent over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadTransport {
    /// One connected UDP socket per worker.
    Udp,
    /// One TCP connection per worker, reopened when the server closes it.
    Tcp,
}

/// What to send, how fast, and for how long. Build with [`Load::new`].
#[derive(Clone, Debug)]
pub struct Load {
    target: SocketAddr,
    transport: LoadTransport,
    questions: Arc<Vec<(String, RecordType)>>,
    rate: Option<f64>,
    concurrency: usize,
    count: u64,
    duration: Duration,
    timeout: Duration,
    source: IpAddr,
    stop: Arc<AtomicBool>,
}

/// Latency percentiles of the answered queries.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest answer.
    pub max: Duration,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Queries sent (a TCP resend is not counted twice).
    pub sent: u64,
    /// Queries that got an answer with their id and question.
    pub answered: u64,
    /// Queries without an answer: timeout, connection failure, or an unparsable answer.
    pub lost: u64,
    /// Answers by RCODE (`NOERROR`, `REFUSED`, …).
    pub rcodes: BTreeMap<String, u64>,
    /// Queries per question that were lost or not answered NOERROR/NXDOMAIN.
    pub failures_by_name: BTreeMap<String, u64>,
    /// TCP reconnects after the server closed a connection.
    pub reconnects: u64,
    /// Latency of the answered queries.
    pub latency: Latency,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Load {
    /// Load against `target` cycling through `questions`: defaults are UDP, as fast as
    /// possible with 8 workers, at most 1000 queries and 10 s, 2 s timeout per query.
    ///
    /// # Panics
    /// If `questions` is empty.
    pub fn new(target: SocketAddr, questions: &[(&str, RecordType)]) -> Self {
        assert!(!questions.is_empty(), "load needs at least one question");
        Load {
            target,
            transport: LoadTransport::Udp,
            questions: Arc::new(
                questions
                    .iter()
                    .map(|(n, t)| ((*n).to_owned(), *t))
                    .collect(),
            ),
            rate: None,
            concurrency: 8,
            count: 1000,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            source: IpAddr::V4(Ipv4Addr::LOCALHOST),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A third bound: no query is sent once `stop` is set (for load that lasts as long as
    /// something else does).
    pub fn stop_when(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = stop;
        self
    }

    /// The local address queries come from (default 127.0.0.1; any 127.0.0.0/8 address works
    /// on Linux loopback, so tests can have several clients).
    pub fn source(mut self, ip: IpAddr) -> Self {
        self.source = ip;
        self
    }

    /// UDP or TCP.
    pub fn transport(mut self, transport: LoadTransport) -> Self {
        self.transport = transport;
        self
    }

    /// Queries per second in all (None: as fast as the window allows).
    pub fn rate(mut self, per_second: Option<f64>) -> Self {
        self.rate = per_second.filter(|r| *r > 0.0);
        self
    }

    /// Queries outstanding at once (workers); at least 1.
    pub fn concurrency(mut self, workers: usize) -> Self {
        self.concurrency = workers.max(1);
        self
    }

    /// At most this many queries.
    pub fn count(mut self, count: u64) -> Self {
        self.count = count;
        self
    }

    /// No query is sent after this long.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// How long one query waits for its answer before it counts as lost.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the load to its bounds and reports. Ends at the latest `duration + timeout` (plus
    /// one TCP reconnect) after it starts.
    pub async fn run(&self) -> anyhow::Result<LoadReport> {
        let start = Instant::now();
        let plan = Arc::new(Plan {
            load: self.clone(),
            next: AtomicU64::new(0),
            start,
        });
        let mut tasks = Vec::with_capacity(self.concurrency);
        for _ in 0..self.concurrency {
            let plan = plan.clone();
            tasks.push(tokio::spawn(async move { plan.worker().await }));
        }
        let mut report = LoadReport::default();
        let mut samples = Vec::new();
        for task in tasks {
            let tally = task.await.context("load worker panicked")??;
            report.merge(&tally);
            samples.extend(tally.samples);
        }
        report.latency = Latency::of(&mut samples);
        report.elapsed = start.elapsed();
        Ok(report)
    }
}

/// Shared by the workers of one run.
struct Plan {
    load: Load,
    next: AtomicU64,
    start: Instant,
}

/// One worker's counts.
#[derive(Default)]
struct Tally {
    sent: u64,
    answered: u64,
    lost: u64,
    reconnects: u64,
    rcodes: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
    samples: Vec<Duration>,
    seen: u64,
}

/// The result of one query.
enum Outcome {
    Answered(ResponseCode, Duration),
    Lost,
}

impl Plan {
    /// The next query's number, once its time has come; None when a bound is reached.
    async fn ticket(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.load.count {
            return None;
        }
        let end = self.start + self.load.duration;
        if let Some(rate) = self.load.rate {
            let due = self.start + Duration::from_secs_f64(i as f64 / rate);
            if due >= end {
                return None;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        (Instant::now() < end && !self.load.stop.load(Ordering::Relaxed)).then_some(i)
    }

    async fn worker(&self) -> anyhow::Result<Tally> {
        let mut tally = Tally::default();
        let mut conn = Conn::open(self.load.transport, self.load.source, self.load.target).await?;
        while let Some(i) = self.ticket().await {
            let index = (i % self.load.questions.len() as u64) as usize;
            let (qname, qtype) = &self.load.questions[index];
            let query = Client::new().build_query(qname, *qtype);
            tally.sent += 1;
            let outcome = conn.exchange(&query, self.load.timeout, &mut tally).await;
            tally.record(qname, outcome);
        }
        Ok(tally)
    }
}

impl Tally {
    fn record(&mut self, qname: &str, outcome: Outcome) {
        match outcome {
            Outcome::Answered(rcode, latency) => {
                self.answered += 1;
                *self.rcodes.entry(mnemonic(rcode)).or_default() += 1;
                if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
                    *self.failures.entry(qname.to_owned()).or_default() += 1;
                }
                self.sample(latency);
            }
            Outcome::Lost => {
                self.lost += 1;
                *self.failures.entry(qname.to_owned()).or_default() += 1;
            }
        }
    }

    fn sample(&mut self, latency: Duration) {
        self.seen += 1;
        if self.samples.len() < MAX_SAMPLES_PER_WORKER {
            self.samples.push(latency);
        } else {
            // Reservoir sampling: every answer has the same chance to be kept.
            let slot = rand::random_range(0..self.seen);
            if let Some(s) = self.samples.get_mut(slot as usize) {
                *s = latency;
            }
        }
    }
}

impl LoadReport {
    fn merge(&mut self, t: &Tally) {
        self.sent += t.sent;
        self.answered += t.answered;
        self.lost += t.lost;
        self.reconnects += t.reconnects;
        for (k, v) in &t.rcodes {
            *self.rcodes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &t.failures {
            *self.failures_by_name.entry(k.clone()).or_default() += v;
        }
    }

    /// Adds another run's counts (two loads side by side). Latency percentiles cannot be
    /// merged exactly: each becomes the larger of the two, a conservative bound.
    pub fn absorb(&mut self, other: &LoadReport) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.lost += other.lost;
        self.reconnects += other.reconnects;
        for (k, v) in &other.rcodes {
            *self.rcodes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.failures_by_name {
            *self.failures_by_name.entry(k.clone()).or_default() += v;
        }
        let l = &mut self.latency;
        let o = &other.latency;
        (l.p50, l.p90, l.p99, l.max) = (
            l.p50.max(o.p50),
            l.p90.max(o.p90),
            l.p99.max(o.p99),
            l.max.max(o.max),
        );
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// Answers with this RCODE (`"NOERROR"`, `"REFUSED"`, …).
    pub fn rcode(&self, rcode: &str) -> u64 {
        self.rcodes.get(rcode).copied().unwrap_or(0)
    }

    /// Achieved answers per second.
    pub fn answered_per_second(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report as JSON (durations in microseconds).
    pub fn to_json(&self) -> serde_json::Value {
        let us = |d: Duration| d.as_micros() as u64;
        serde_json::json!({
            "sent": self.sent,
            "answered": self.answered,
            "lost": self.lost,
            "rcodes": self.rcodes,
            "failures_by_name": self.failures_by_name,
            "reconnects": self.reconnects,
            "latency_us": {
                "p50": us(self.latency.p50),
                "p90": us(self.latency.p90),
                "p99": us(self.latency.p99),
                "max": us(self.latency.max),
            },
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "answered_per_second": self.answered_per_second().round(),
        })
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} answered {} lost {} in {:.2?} ({:.0}/s); rcodes {:?}; latency p50 {:.2?} p90 {:.2?} p99 {:.2?} max {:.2?}",
            self.sent,
            self.answered,
            self.lost,
            self.elapsed,
            self.answered_per_second(),
            self.rcodes,
            self.latency.p50,
            self.latency.p90,
            self.latency.p99,
            self.latency.max,
        )?;
        if self.reconnects > 0 {
            write!(f, "; {} TCP reconnects", self.reconnects)?;
        }
        if !self.failures_by_name.is_empty() {
            // A handful is enough to see a pattern; the full map is in the struct.
            let shown: Vec<_> = self.failures_by_name.iter().take(5).collect();
            write!(f, "; failures by name {shown:?}")?;
            let more = self.failures_by_name.len().saturating_sub(shown.len());
            if more > 0 {
                write!(f, " and {more} more names")?;
            }
        }
        Ok(())
    }
}

impl Latency {
    fn of(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// A worker's socket or connection.
enum Conn {
    Udp(UdpSocket, Vec<u8>),
    Tcp(Option<TcpStream>, IpAddr, SocketAddr),
}

impl Conn {
    async fn open(
        transport: LoadTransport,
        source: IpAddr,
        target: SocketAddr,
    ) -> anyhow::Result<Self> {
        Ok(match transport {
            LoadTransport::Udp => {
                let socket = UdpSocket::bind((source, 0)).await?;
                socket.connect(target).await?;
                Conn::Udp(socket, vec![0; 65_535])
            }
            LoadTransport::Tcp => Conn::Tcp(None, source, target),
        })
    }

    async fn exchange(&mut self, query: &Message, timeout: Duration, t: &mut Tally) -> Outcome {
        let Ok(bytes) = query.to_vec() else {
            return Outcome::Lost;
        };
        match self {
            Conn::Udp(socket, buf) => udp_exchange(socket, buf, &bytes, query, timeout).await,
            Conn::Tcp(stream, source, target) => {
                tcp_exchange(stream, (*source, *target), &bytes, query, timeout, t).await
            }
        }
    }
}

async fn udp_exchange(
    socket: &UdpSocket,
    buf: &mut [u8],
    bytes: &[u8],
    query: &Message,
    timeout: Duration,
) -> Outcome {
    let sent_at = Instant::now();
    if socket.send(bytes).await.is_err() {
        return Outcome::Lost;
    }
    let deadline = tokio::time::Instant::from_std(sent_at + timeout);
    // Late answers to earlier (lost) queries may still arrive: skip them.
    loop {
        let Ok(Ok(len)) = tokio::time::timeout_at(deadline, socket.recv(buf)).await else {
            return Outcome::Lost;
        };
        if let Some(rcode) = matches(&buf[..len], query) {
            return Outcome::Answered(rcode, sent_at.elapsed());
        }
    }
}

async fn tcp_exchange(
    stream: &mut Option<TcpStream>,
    ends: (IpAddr, SocketAddr),
    bytes: &[u8],
    query: &Message,
    timeout: Duration,
    t: &mut Tally,
) -> Outcome {
    let sent_at = Instant::now();
    for attempt in 0..2 {
        if attempt > 0 {
            t.reconnects += 1;
        }
        let reused = stream.is_some();
        let result = tokio::time::timeout(timeout, tcp_once(stream, ends, bytes)).await;
        match result {
            Ok(Ok(answer)) => {
                return match matches(&answer, query) {
                    Some(rcode) => Outcome::Answered(rcode, sent_at.elapsed()),
                    None => {
                        *stream = None;
                        Outcome::Lost
                    }
                };
            }
            // Closed under us (idle timeout, query cap): one retry on a new connection.
            Ok(Err(_)) if reused => *stream = None,
            _ => {
                *stream = None;
                return Outcome::Lost;
            }
        }
    }
    Outcome::Lost
}

/// Connects if needed, sends one frame, reads one frame.
async fn tcp_once(
    stream: &mut Option<TcpStream>,
    (source, target): (IpAddr, SocketAddr),
    bytes: &[u8],
) -> anyhow::Result<Vec<u8>> {
    if stream.is_none() {
        let socket = match source {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let s = socket.connect(target).await?;
        s.set_nodelay(true)?;
        *stream = Some(s);
    }
    let Some(s) = stream.as_mut() else {
        bail!("no connection");
    };
    let len = u16::try_from(bytes.len())?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    s.write_all(&framed).await?;
    let len = s.read_u16().await?;
    let mut answer = vec![0; usize::from(len)];
    s.read_exact(&mut answer).await?;
    Ok(answer)
}

/// `NOERROR`, `SERVFAIL`, … as dig prints them.
fn mnemonic(rcode: ResponseCode) -> String {
    match u16::from(rcode) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

/// The RCODE if `raw` answers `query` (same id and question).
fn matches(raw: &[u8], query: &Message) -> Option<ResponseCode> {
    let answer = Message::from_vec(raw).ok()?;
    let same_question = answer.queries.first().map(|q| (q.name(), q.query_type()))
        == query.queries.first().map(|q| (q.name(), q.query_type()));
    (answer.id == query.id && same_question).then_some(answer.response_code)
}

/// A `/proc/PID/status` field in KiB (`VmHWM` is the peak resident set, `VmRSS` the current).
pub fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = line.trim().trim_end_matches("kB").trim();
    kib.parse()
        .with_context(|| format!("{field} value {kib:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthServer;

    fn upstream() -> AuthServer {
        AuthServer::builder()
            .a("a.load.test.", 60, Ipv4Addr::new(192, 0, 2, 1))
            .a("b.load.test.", 60, Ipv4Addr::new(192, 0, 2, 2))
            .start()
            .unwrap()
    }

    #[tokio::test]
    async fn udp_and_tcp_load_is_answered_and_counted() {
        let up = upstream();
        let questions = [
            ("a.load.test.", RecordType::A),
            ("b.load.test.", RecordType::A),
        ];
        for transport in [LoadTransport::Udp, LoadTransport::Tcp] {
            let report = Load::new(up.addr(), &questions)
                .transport(transport)
                .concurrency(4)
                .count(200)
                .run()
                .await
                .unwrap();
            assert_eq!((report.sent, report.answered, report.lost), (200, 200, 0));
            assert_eq!(report.rcode("NOERROR"), 200, "{report}");
            assert!(report.latency.p50 <= report.latency.max);
        }
        assert_eq!(up.queries("a.load.test.", RecordType::A), 200);
    }

    #[tokio::test]
    async fn a_rate_paces_and_a_duration_bounds() {
        let up = upstream();
        let report = Load::new(up.addr(), &[("a.load.test.", RecordType::A)])
            .rate(Some(100.0))
            .count(1_000_000)
            .duration(Duration::from_millis(300))
            .run()
            .await
            .unwrap();
        // 100/s for 0.3 s: queries 0..=29 are due before the end.
        assert!((25..=30).contains(&report.sent), "{report}");
        assert!(report.elapsed < Duration::from_secs(1), "{report}");
    }

    #[tokio::test]
    async fn unanswered_queries_are_lost_by_name() {
        let up = upstream();
        up.set_name_behaviour("b.load.test.", crate::Behaviour::Drop);
        let report = Load::new(
            up.addr(),
            &[
                ("a.load.test.", RecordType::A),
                ("b.load.test.", RecordType::A),
            ],
        )
        .concurrency(2)
        .count(10)
        .timeout(Duration::from_millis(100))
        .run()
        .await
        .unwrap();
        assert_eq!((report.sent, report.answered, report.lost), (10, 5, 5));
        assert_eq!(
            report.failures_by_name.get("b.load.test."),
            Some(&5),
            "{report}"
        );
    }

    #[test]
    fn percentiles_of_sorted_samples() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let l = Latency::of(&mut samples);
        assert_eq!(l.p50, Duration::from_millis(51));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.max, Duration::from_millis(100));
        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn reads_our_own_peak_rss() {
        let kib = proc_status_kib(std::process::id(), "VmHWM").unwrap();
        assert!(kib > 0);
        assert!(proc_status_kib(std::process::id(), "NoSuchField").is_err());
    }
}
