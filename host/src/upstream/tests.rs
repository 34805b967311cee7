//! Upstream groups against a fake upstream on real loopback sockets.

mod fake;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;

use super::*;
use crate::config::Protocol;
use fake::{Fake, Mode};

fn spec(servers: &[SocketAddr], protocol: Protocol) -> UpstreamGroupSpec {
    UpstreamGroupSpec {
        name: "up".into(),
        servers: servers.to_vec(),
        protocol,
        selection: Selection::Sequential,
        max_concurrent: 100,
        timeout: Duration::from_millis(300),
        max_fails: 2,
        health_check: Duration::from_millis(50),
        expire: Duration::from_secs(10),
    }
}

fn group(spec: &UpstreamGroupSpec) -> (UpstreamGroup, Arc<Metrics>) {
    let m = Metrics::new();
    (UpstreamGroup::new(spec, DEFAULT_UDP_PAYLOAD_SIZE, &m), m)
}

/// `label.example.` in wire format.
fn wire_name(label: &str) -> Vec<u8> {
    let mut v = vec![label.len() as u8];
    v.extend_from_slice(label.as_bytes());
    v.extend_from_slice(b"\x07example\x00");
    v
}

fn query(name: &[u8]) -> UpstreamQuery<'_> {
    UpstreamQuery {
        name,
        qtype: 1,
        qclass: 1,
        do_bit: false,
        cd: false,
    }
}

async fn ask(g: &UpstreamGroup, label: &str) -> Result<Message, UpstreamError> {
    let name = wire_name(label);
    let a = g.forward(&query(&name)).await?;
    Ok(Message::from_vec(&a.bytes).expect("answer parses"))
}

fn metric(m: &Metrics, needle: &str) -> f64 {
    let text = m.encode();
    let line = text.lines().find(|l| l.starts_with(needle));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    for protocol in [Protocol::PreferUdp, Protocol::ForceTcp] {
        let f = Fake::start(Mode::Answer).await;
        let (g, m) = group(&spec(&[f.addr], protocol));
        let msg = ask(&g, "www").await.expect("answer");
        assert_eq!(msg.answers.len(), 1, "{protocol:?}");
        assert_eq!(msg.queries[0].name().to_string(), "www.example.");
        assert_eq!(f.query_count(), 1);
        let tcp = f.tcp.load(Ordering::SeqCst);
        assert_eq!(tcp, usize::from(protocol == Protocol::ForceTcp));
        let key = "coredns_proxy_request_duration_seconds_count{proxy_name=\"forward\"";
        assert_eq!(metric(&m, key), 1.0);
    }
}

#[tokio::test]
async fn sends_rd_do_cd_edns_size_and_random_ids() {
    for (do_bit, cd) in [(false, false), (true, true), (true, false), (false, true)] {
        let f = Fake::start(Mode::Answer).await;
        let (g, _) = group(&spec(&[f.addr], Protocol::PreferUdp));
        let name = wire_name("DNSsec");
        let q = UpstreamQuery {
            do_bit,
            cd,
            ..query(&name)
        };
        for _ in 0..4 {
            g.forward(&q).await.expect("answer");
        }
        let sent = f.queries();
        let m = Message::from_vec(&sent[0]).expect("query parses");
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.metadata.checking_disabled, cd);
        let edns = m.edns.as_ref().expect("edns");
        assert_eq!((edns.max_payload(), edns.flags().dnssec_ok), (1232, do_bit));
        assert_eq!(
            &sent[0][12..19],
            b"\x06dnssec",
            "the name goes out lowercased"
        );
        let ids: std::collections::HashSet<_> = sent.iter().map(|q| [q[0], q[1]]).collect();
        assert!(ids.len() > 1, "IDs are random per query");
    }
}

#[tokio::test]
async fn servfail_is_an_answer() {
    let f = Fake::start(Mode::Servfail).await;
    let (g, _) = group(&spec(&[f.addr], Protocol::PreferUdp));
    let msg = ask(&g, "www").await.expect("answer");
    assert_eq!(
        msg.metadata.response_code,
        hickory_proto::op::ResponseCode::ServFail
    );
    assert!(!g.inner.servers[0].is_down());
}

#[tokio::test]
async fn truncated_udp_is_retried_over_tcp() {
    let f = Fake::start(Mode::TruncateUdp).await;
    let (g, _) = group(&spec(&[f.addr], Protocol::PreferUdp));
    let msg = ask(&g, "big").await.expect("answer");
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 1);
    assert_eq!(f.udp.load(Ordering::SeqCst), 1);
    assert_eq!(f.tcp.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn misbehaving_responses_are_ignored_and_counted() {
    let modes = [
        Mode::WrongIdFirst,
        Mode::WrongQuestionFirst,
        Mode::GarbageFirst,
    ];
    for protocol in [Protocol::PreferUdp, Protocol::ForceTcp] {
        for mode in modes {
            let f = Fake::start(mode).await;
            let (g, m) = group(&spec(&[f.addr], protocol));
            let msg = ask(&g, "www").await.expect("the right answer wins");
            assert_eq!(msg.answers.len(), 1, "{mode:?} {protocol:?}");
            let dropped = "zonegate_dropped_packets_total{reason=\"upstream_mismatch\"}";
            assert_eq!(metric(&m, dropped), 1.0, "{mode:?} {protocol:?}");
        }
    }
}

#[tokio::test]
async fn only_wrong_answers_or_silence_time_out() {
    for mode in [Mode::OnlyWrongId, Mode::Drop] {
        let f = Fake::start(mode).await;
        let mut s = spec(&[f.addr], Protocol::PreferUdp);
        s.timeout = Duration::from_millis(100);
        let (g, m) = group(&s);
        let start = Instant::now();
        assert_eq!(ask(&g, "www").await.err(), Some(UpstreamError::Timeout));
        assert!(start.elapsed() >= Duration::from_millis(100));
        let errors = "zonegate_upstream_errors_total{upstream=\"up\"";
        assert_eq!(metric(&m, errors), 1.0);
    }
}

#[tokio::test]
async fn answers_from_another_address_are_never_accepted() {
    let f = Fake::start(Mode::WrongSource).await;
    let mut s = spec(&[f.addr], Protocol::PreferUdp);
    s.timeout = Duration::from_millis(100);
    let (g, _) = group(&s);
    assert_eq!(ask(&g, "www").await.err(), Some(UpstreamError::Timeout));
}

#[tokio::test]
async fn udp_sockets_use_random_ports_and_are_retired() {
    let f = Fake::start(Mode::Answer).await;
    let (g, _) = group(&spec(&[f.addr], Protocol::PreferUdp));
    let n = udp::QUERIES_PER_SOCKET as usize * udp::POOL_SIZE * 2;
    for i in 0..n {
        ask(&g, &format!("p{i}")).await.expect("answer");
    }
    let peers = f.peers.lock().expect("lock").clone();
    let ports: std::collections::HashSet<_> = peers.iter().map(|p| p.port()).collect();
    // Every socket carries at most QUERIES_PER_SOCKET queries.
    assert!(
        ports.len() >= n / udp::QUERIES_PER_SOCKET as usize,
        "{}",
        ports.len()
    );
    for port in &ports {
        let used = peers.iter().filter(|p| p.port() == *port).count();
        assert!(used <= udp::QUERIES_PER_SOCKET as usize);
    }
}

#[tokio::test]
async fn an_unreachable_port_fails_fast_and_fails_over() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    let f = Fake::start(Mode::Answer).await;
    let mut s = spec(&[dead, f.addr], Protocol::PreferUdp);
    s.timeout = Duration::from_secs(2);
    let (g, _) = group(&s);
    let start = Instant::now();
    ask(&g, "www").await.expect("the second server answers");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "ICMP unreachable, not a timeout"
    );
}

#[tokio::test]
async fn tcp_pipelines_on_one_connection_answered_out_of_order() {
    const N: usize = 8;
    let f = Fake::start(Mode::ReverseBatch(N)).await;
    let (g, _) = group(&spec(&[f.addr], Protocol::ForceTcp));
    let labels: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
    let all = futures_util::future::join_all(labels.iter().map(|l| ask(&g, l))).await;
    for (label, r) in labels.iter().zip(all) {
        let msg = r.expect("answer");
        assert_eq!(
            msg.queries[0].name().to_string(),
            format!("{label}.example.")
        );
    }
    assert_eq!(f.tcp_conns.load(Ordering::SeqCst), 1);
    assert_eq!(f.tcp.load(Ordering::SeqCst), N);
}

#[tokio::test]
async fn tcp_reconnects_after_a_reset() {
    let f = Fake::start(Mode::Answer).await;
    let (g, _) = group(&spec(&[f.addr], Protocol::ForceTcp));
    ask(&g, "one").await.expect("first");
    ask(&g, "two").await.expect("reuses the connection");
    assert_eq!(f.tcp_conns.load(Ordering::SeqCst), 1);
    f.resets.store(1, Ordering::SeqCst);
    ask(&g, "three").await.expect("retried on a new connection");
    assert_eq!(f.tcp_conns.load(Ordering::SeqCst), 2);
    ask(&g, "four").await.expect("new connection reused");
    assert_eq!(f.tcp_conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn sequential_fails_over_then_skips_the_down_server_until_it_answers_a_probe() {
    let (bad, good) = (
        Fake::start(Mode::Drop).await,
        Fake::start(Mode::Answer).await,
    );
    let mut s = spec(&[bad.addr, good.addr], Protocol::PreferUdp);
    s.timeout = Duration::from_millis(100);
    let (g, m) = group(&s);
    let mut health = g.inner.servers[0].health();
    for label in ["a", "b"] {
        ask(&g, label).await.expect("failover answers");
    }
    assert_eq!((bad.query_count(), good.query_count()), (2, 2));
    assert!(g.inner.servers[0].is_down(), "down after max_fails");
    let gauge = |addr| format!("zonegate_upstream_healthy{{upstream=\"up\",to=\"{addr}\"}}");
    assert_eq!(metric(&m, &gauge(bad.addr)), 0.0);
    assert_eq!(metric(&m, &gauge(good.addr)), 1.0);
    ask(&g, "c").await.expect("answer");
    assert_eq!(bad.query_count(), 2, "a down server is skipped");
    bad.wait_until(|f| f.probes.load(Ordering::SeqCst) >= 2)
        .await;
    assert!(metric(&m, "coredns_proxy_healthcheck_failures_total") >= 1.0);
    bad.set_mode(Mode::Answer);
    health
        .wait_for(|up| *up)
        .await
        .expect("probe brings it back");
    assert_eq!(metric(&m, &gauge(bad.addr)), 1.0);
    ask(&g, "d").await.expect("answer");
    assert_eq!(
        bad.query_count(),
        3,
        "sequential prefers the first server again"
    );
}

#[tokio::test]
async fn round_robin_and_random_spread_queries() {
    for selection in [Selection::RoundRobin, Selection::Random] {
        let fakes = [
            Fake::start(Mode::Answer).await,
            Fake::start(Mode::Answer).await,
            Fake::start(Mode::Answer).await,
        ];
        let addrs: Vec<_> = fakes.iter().map(|f| f.addr).collect();
        let mut s = spec(&addrs, Protocol::PreferUdp);
        s.selection = selection;
        let (g, _) = group(&s);
        for i in 0..60 {
            ask(&g, &format!("q{i}")).await.expect("answer");
        }
        let counts: Vec<_> = fakes.iter().map(|f| f.query_count()).collect();
        match selection {
            Selection::RoundRobin => assert_eq!(counts, [20, 20, 20]),
            _ => assert!(counts.iter().all(|&c| c > 0), "{counts:?}"),
        }
    }
}

#[tokio::test]
async fn all_servers_down_still_tries_them_and_counts_broken() {
    let (a, b) = (Fake::start(Mode::Drop).await, Fake::start(Mode::Drop).await);
    let mut s = spec(&[a.addr, b.addr], Protocol::PreferUdp);
    s.timeout = Duration::from_millis(100);
    s.max_fails = 1;
    s.health_check = Duration::from_secs(60);
    let (g, m) = group(&s);
    assert_eq!(ask(&g, "x").await.err(), Some(UpstreamError::Timeout));
    assert!(g.inner.servers.iter().all(|s| s.is_down()));
    b.set_mode(Mode::Answer);
    ask(&g, "y").await.expect("a down server is still tried");
    assert_eq!(metric(&m, "coredns_forward_healthcheck_broken_total"), 1.0);
    assert!(!g.inner.servers[1].is_down(), "an answer brings it back");
}

#[tokio::test]
async fn max_concurrent_rejects_at_once_without_health_failure() {
    let f = Fake::start(Mode::Delay(Duration::from_millis(300))).await;
    let mut s = spec(&[f.addr], Protocol::PreferUdp);
    s.max_concurrent = 2;
    s.max_fails = 1;
    s.timeout = Duration::from_secs(2);
    let (g, m) = group(&s);
    let g = Arc::new(g);
    let held: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|l| {
            let g = g.clone();
            tokio::spawn(async move { ask(&g, l).await.map(|_| ()) })
        })
        .collect();
    f.wait_until(|f| f.query_count() == 2).await;
    let start = Instant::now();
    assert_eq!(ask(&g, "c").await.err(), Some(UpstreamError::Overloaded));
    assert!(start.elapsed() < Duration::from_millis(250));
    assert_eq!(
        metric(&m, "coredns_forward_max_concurrent_rejects_total"),
        1.0
    );
    for h in held {
        h.await.expect("task").expect("answer");
    }
    assert!(
        !g.inner.servers[0].is_down(),
        "a rejection is not a failure"
    );
    ask(&g, "d").await.expect("permits are released");
}

#[tokio::test]
async fn identical_in_flight_queries_are_coalesced() {
    const N: usize = 10;
    let f = Fake::start(Mode::Delay(Duration::from_millis(100))).await;
    let (g, m) = group(&spec(&[f.addr], Protocol::PreferUdp));
    let all = futures_util::future::join_all((0..N).map(|_| ask(&g, "same"))).await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(f.query_count(), 1);
    assert_eq!(
        metric(&m, "zonegate_coalesced_queries_total"),
        (N - 1) as f64
    );
    assert_eq!(g.inner.inflight.len(), 0);
    // DO differs: a separate upstream question.
    let name = wire_name("same");
    let q = UpstreamQuery {
        do_bit: true,
        ..query(&name)
    };
    let plain = query(&name);
    let (a, b) = tokio::join!(g.forward(&plain), g.forward(&q));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(f.query_count(), 3);
}

#[tokio::test]
async fn a_joiner_gets_the_answer_when_the_leader_is_cancelled() {
    let f = Fake::start(Mode::Delay(Duration::from_millis(100))).await;
    let (g, _) = group(&spec(&[f.addr], Protocol::PreferUdp));
    let g = Arc::new(g);
    let spawn_ask = |g: Arc<UpstreamGroup>| tokio::spawn(async move { ask(&g, "same").await });
    let leader = spawn_ask(g.clone());
    f.wait_until(|f| f.query_count() == 1).await;
    let joiner = spawn_ask(g.clone());
    // Let the joiner reach the in-flight entry before the leader goes.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    leader.abort();
    let msg = joiner.await.expect("task").expect("answer");
    assert_eq!(msg.answers.len(), 1);
    assert_eq!(f.query_count(), 2, "the joiner led a new exchange");
    assert_eq!(g.inner.inflight.len(), 0);
}

#[tokio::test]
async fn build_reuses_unchanged_groups_and_dropping_ends_probes() {
    let f = Fake::start(Mode::Drop).await;
    let m = Metrics::new();
    let mut specs = BTreeMap::new();
    specs.insert("up".to_string(), spec(&[f.addr], Protocol::PreferUdp));
    let first = Upstreams::build(&specs, None, &m);
    let same = Upstreams::build(&specs, Some(&first), &m);
    let (a, b) = (
        first.get("up").expect("group"),
        same.get("up").expect("group"),
    );
    assert!(Arc::ptr_eq(a, b));
    specs.get_mut("up").expect("spec").max_concurrent = 7;
    let changed = Upstreams::build(&specs, Some(&same), &m);
    assert!(!Arc::ptr_eq(a, changed.get("up").expect("group")));
    assert!(changed.get("other").is_none());

    // A down server's probe holds only a weak reference between probes: dropping the
    // group frees the server and the probe ends at its next wake-up.
    let mut s = spec(&[f.addr], Protocol::PreferUdp);
    s.max_fails = 1;
    s.timeout = Duration::from_millis(50);
    s.health_check = Duration::from_secs(60);
    let (g, _) = group(&s);
    let _ = ask(&g, "x").await;
    assert!(g.inner.servers[0].is_down());
    let server = Arc::downgrade(&g.inner.servers[0]);
    drop(g);
    for _ in 0..1000 {
        if server.upgrade().is_none() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(server.upgrade().is_none());
}

/// CPU time of this thread (ns), from the scheduler's accounting.
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `n` iterations of `f`; returns (wall µs, CPU µs) per iteration. The runtime is
/// single-threaded, so CPU covers both zonegate's side and the fake's.
async fn per_query<F: std::future::Future<Output = ()>>(
    n: u32,
    mut f: impl FnMut(u32) -> F,
) -> (f64, f64) {
    let (start, cpu) = (Instant::now(), thread_cpu_ns());
    for i in 0..n {
        f(i).await;
    }
    let wall = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    (wall, (thread_cpu_ns() - cpu) as f64 / 1e3 / f64::from(n))
}

/// Not a timed assertion: prints µs per forwarded query from a bounded loop against the
/// local fake, on one thread (`cargo test -p zonegate --lib upstream::tests::bench --
/// --ignored --nocapture`). Fake and client share the thread: CPU µs include both.
#[tokio::test]
#[ignore]
async fn bench_forward_loop() {
    const N: u32 = 3000;
    let f = Fake::start(Mode::Answer).await;
    let m = Metrics::new();
    let q = message::build_query(&query(&wire_name("base")), 1232);
    // Baseline: one long-lived connected socket, no checks.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sock.connect(f.addr).await.expect("connect");
    let (wall, cpu) = per_query(N, |_| async {
        let mut buf = [0u8; 512];
        sock.send(&q).await.expect("send");
        sock.recv(&mut buf).await.expect("recv");
    })
    .await;
    println!("reused UDP socket, no checks: {wall:.1} µs wall, {cpu:.1} µs CPU");
    let (wall, cpu) = per_query(N, |_| async {
        let s = tokio::net::UdpSocket::bind("0.0.0.0:0")
            .await
            .expect("bind");
        s.connect(f.addr).await.expect("connect");
    })
    .await;
    println!("fresh connected UDP socket alone: {wall:.1} µs wall, {cpu:.1} µs CPU");
    let pool = udp::UdpPool::new(f.addr, Duration::from_secs(10), m.clone());
    let (wall, cpu) = per_query(N, |_| async {
        let t = Duration::from_secs(1);
        pool.exchange(&q, t).await.expect("answer");
    })
    .await;
    println!("UdpPool::exchange alone: {wall:.1} µs wall, {cpu:.1} µs CPU");
    for protocol in [Protocol::PreferUdp, Protocol::ForceTcp] {
        let (g, _) = group(&spec(&[f.addr], protocol));
        let names: Vec<Vec<u8>> = (0..N).map(|i| wire_name(&format!("b{i}"))).collect();
        let (wall, cpu) = per_query(N, |i| {
            let name = &names[i as usize];
            let g = &g;
            async move {
                g.forward(&query(name)).await.expect("answer");
            }
        })
        .await;
        println!("forward {protocol:?}: {wall:.1} µs wall, {cpu:.1} µs CPU per query");
        let (wall, cpu) = per_query(N / 50, |i| {
            let chunk = &names[(i * 50) as usize..(i * 50 + 50) as usize];
            let g = &g;
            async move {
                let qs: Vec<_> = chunk.iter().map(|n| query(n)).collect();
                let all = futures_util::future::join_all(qs.iter().map(|q| g.forward(q)));
                assert!(all.await.iter().all(Result::is_ok));
            }
        })
        .await;
        let (wall, cpu) = (wall / 50.0, cpu / 50.0);
        println!(
            "forward {protocol:?}, 50 in flight: {wall:.1} µs wall, {cpu:.1} µs CPU per query"
        );
    }
}
