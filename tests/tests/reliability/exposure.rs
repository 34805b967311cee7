//! Exposure: the client ACL, the per-client rate limit, and the TCP limits (connection cap,
//! idle timeout, per-connection query cap) under a slow-client flood.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use zonegate_testkit::proto::rr::RecordType;
use zonegate_testkit::{Client, Load, LoadTransport};

use crate::support::{self, Cfg, Figures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_allow_clients_are_refused() {
    let names = support::names("a", 10);
    let up = support::upstream(&names, 300);
    let mut cfg = Cfg::new(up.addr());
    // Loopback is not in the list: this client is an outsider.
    cfg.server = r#"allow_clients = ["10.0.0.0/8", "127.0.0.2/32"]"#.into();
    let zg = support::start(cfg.toml()).await;
    let duration = Duration::from_secs(support::pick(1, 10));
    let load = |source: Ipv4Addr| {
        Load::new(zg.addr(), &support::questions(&names))
            .source(IpAddr::V4(source))
            .rate(Some(500.0))
            .concurrency(8)
            .count(u64::MAX)
            .duration(duration)
    };
    let (outsider, insider) = (load(Ipv4Addr::LOCALHOST), load(Ipv4Addr::new(127, 0, 0, 2)));
    let (outsider, insider) = tokio::join!(outsider.run(), insider.run());
    let (outsider, insider) = (outsider.expect("outsider"), insider.expect("insider"));
    let refused = support::metric(&zg, "zonegate_acl_refused_total", &[]);
    support::record(&Figures {
        scenario: "client ACL: a client outside allow_clients",
        test: "exposure::clients_outside_allow_clients_are_refused",
        load: "500 q/s UDP from 127.0.0.1 (not allowed) + 500 q/s from 127.0.0.2 (allowed)".into(),
        duration,
        report: &support::combined(&outsider, &insider),
        peak_rss_kib: support::peak_rss_kib(&zg),
        notes: format!(
            "outsider: {:?}; insider: {:?}; zonegate_acl_refused_total {refused}; upstream asked {} times",
            outsider.rcodes,
            insider.rcodes,
            up.total_queries()
        ),
    });
    assert_eq!(outsider.lost, 0, "{outsider}");
    assert_eq!(outsider.rcode("REFUSED"), outsider.sent, "{outsider}");
    assert_eq!(refused, outsider.sent as f64);
    assert_eq!(insider.rcode("NOERROR"), insider.sent, "{insider}");
    assert_eq!(
        up.total_queries(),
        names.len() as u64,
        "only the insider's misses went upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_a_noisy_client_only() {
    let names = support::names("l", 10);
    let up = support::upstream(&names, 300);
    let mut cfg = Cfg::new(up.addr());
    let limit = 100u32;
    cfg.server = format!("rate_limit = {limit}");
    let zg = support::start(cfg.toml()).await;
    let duration = Duration::from_secs(support::pick(2, 30));
    let qs = support::questions(&names);
    let noisy = Load::new(zg.addr(), &qs)
        .rate(Some(1000.0))
        .concurrency(16)
        .count(u64::MAX)
        .duration(duration);
    let quiet = Load::new(zg.addr(), &qs)
        .source(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)))
        .rate(Some(f64::from(limit) / 2.0))
        .concurrency(4)
        .count(u64::MAX)
        .duration(duration);
    let (noisy, quiet) = tokio::join!(noisy.run(), quiet.run());
    let (noisy, quiet) = (noisy.expect("noisy"), quiet.expect("quiet"));
    let limited = support::metric(&zg, "zonegate_rate_limited_total", &[]);
    // A burst of one second's worth, then the rate.
    let allowed = f64::from(limit) * (1.0 + duration.as_secs_f64());
    support::record(&Figures {
        scenario: "per-client rate limit (rate_limit = 100)",
        test: "exposure::rate_limit_refuses_a_noisy_client_only",
        load: "1000 q/s UDP from one client + 50 q/s from another".into(),
        duration,
        report: &support::combined(&noisy, &quiet),
        peak_rss_kib: support::peak_rss_kib(&zg),
        notes: format!(
            "noisy: {:?} (at most {allowed} allowed); quiet: {:?}; zonegate_rate_limited_total {limited}",
            noisy.rcodes, quiet.rcodes
        ),
    });
    assert_eq!(noisy.lost + quiet.lost, 0, "{noisy}\n{quiet}");
    let admitted = noisy.rcode("NOERROR") as f64;
    assert!(
        admitted <= allowed + 1.0 && admitted >= allowed * 0.8,
        "{admitted} admitted, {allowed} allowed: {noisy}"
    );
    assert_eq!(noisy.rcode("REFUSED") as f64, limited, "{noisy}");
    assert_eq!(quiet.rcode("NOERROR"), quiet.sent, "{quiet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_limits_hold_under_a_slow_client_flood() {
    let names = support::names("t", 10);
    let up = support::upstream(&names, 300);
    let mut cfg = Cfg::new(up.addr());
    let cap = 64;
    cfg.server =
        format!("tcp_max_connections = {cap}\ntcp_idle_timeout = \"1s\"\ntcp_max_queries = 1000");
    let zg = support::start(cfg.toml()).await;
    let qs = support::questions(&names);
    let duration = Duration::from_secs(support::pick(3, 30));
    // Well-behaved clients: TCP connections opened before the flood, and UDP.
    let tcp = Load::new(zg.addr(), &qs)
        .transport(LoadTransport::Tcp)
        .rate(Some(200.0))
        .concurrency(8)
        .count(u64::MAX)
        .duration(duration);
    let udp = Load::new(zg.addr(), &qs)
        .rate(Some(500.0))
        .concurrency(8)
        .count(u64::MAX)
        .duration(duration);
    let tcp = tokio::spawn(async move { tcp.run().await });
    let udp = tokio::spawn(async move { udp.run().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = zg.addr();
    let fresh = tokio::spawn(async move { fresh_connections(addr, duration).await });
    let flood = slowloris(zg.addr(), cap * 4, duration).await;
    let fresh = fresh.await.expect("fresh");
    let (tcp, udp) = (
        tcp.await.expect("tcp").expect("tcp load"),
        udp.await.expect("udp").expect("udp load"),
    );
    // At the cap a new connection closes a slow one (evicted) or, when none is closable
    // within the admission wait, is closed itself (limit).
    let dropped =
        |reason| support::metric(&zg, "zonegate_dropped_packets_total", &[("reason", reason)]);
    let (evicted, limited) = (dropped("tcp_idle_evicted"), dropped("tcp_connection_limit"));
    eprintln!("tcp: {tcp}\nudp: {udp}\nflood: {flood:?}\nnew connections: {fresh:?}");
    let capped = query_cap_closes_after(&zg, 1000).await;
    support::record(&Figures {
        scenario: "TCP slow-client flood (slowloris) against cap, idle timeout, query cap",
        test: "exposure::tcp_limits_hold_under_a_slow_client_flood",
        load: format!(
            "{} slowloris connections kept open (cap {cap}, idle 1 s) + 200 q/s TCP + 500 q/s UDP",
            cap * 4
        ),
        duration,
        report: &support::combined(&tcp, &udp),
        peak_rss_kib: support::peak_rss_kib(&zg),
        notes: format!(
            "slowloris: {} connects, {} closed at once by the cap, longest held {:?}; {evicted} counted as tcp_idle_evicted and {limited} as tcp_connection_limit; query cap: closed after {capped} answers; queries on new connections during the flood: {} of {} answered",
            flood.connects, flood.refused, flood.longest_held, fresh.0, fresh.1
        ),
    });
    assert_eq!(tcp.lost, 0, "{tcp}");
    assert_eq!(udp.lost, 0, "{udp}");
    assert!(flood.refused > 0, "the cap refused nothing: {flood:?}");
    assert!(evicted + limited > 0.0, "nothing counted at the cap");
    assert!(
        flood.longest_held < Duration::from_millis(2500),
        "a slow client held a slot for {:?} (idle timeout 1 s)",
        flood.longest_held
    );
    assert_eq!(capped, 1000);
    // Slow clients do not starve new ones. In listener/slots.rs: before eviction 1 of 29
    // answered; with eviction by age alone 14–30 of 29–30; with stalled-first eviction,
    // unread-query protection and the admission wait 29–30 of 30.
    assert!(
        fresh.0 * 10 >= fresh.1 * 8,
        "new connections starved: {fresh:?}"
    );
}

/// One query per new TCP connection, ten a second, during the flood: (answered, asked).
async fn fresh_connections(addr: std::net::SocketAddr, duration: Duration) -> (u64, u64) {
    let client = Client::new().timeout(Duration::from_secs(2));
    let name = support::names("t", 1).remove(0);
    let end = Instant::now() + duration;
    let (mut answered, mut asked) = (0, 0);
    while Instant::now() < end {
        asked += 1;
        if client.query_tcp(addr, &name, RecordType::A).await.is_ok() {
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (answered, asked)
}

#[derive(Debug, Default)]
struct Flood {
    connects: u64,
    /// Connections the server closed before the idle timeout could have (the cap).
    refused: u64,
    longest_held: Duration,
}

/// Keeps `n` slow connections open for `duration`: each sends one byte of a length prefix
/// and nothing more, and is reopened when the server closes it.
async fn slowloris(addr: std::net::SocketAddr, n: usize, duration: Duration) -> Flood {
    let end = Instant::now() + duration;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let mut f = Flood::default();
                let client = Client::new().timeout(Duration::from_secs(5));
                while Instant::now() < end {
                    let Ok(mut conn) = client.connect_tcp(addr).await else {
                        continue;
                    };
                    f.connects += 1;
                    let opened = Instant::now();
                    let _ = conn.stream().write_all(&[0]).await;
                    let closed = conn.closed_by_peer().await;
                    let held = opened.elapsed();
                    if closed && held < Duration::from_millis(500) {
                        f.refused += 1;
                        // Bounded flood: retry a refused slot ten times a second.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    f.longest_held = f.longest_held.max(held);
                }
                f
            })
        })
        .collect();
    let mut total = Flood::default();
    for t in tasks {
        if let Ok(f) = t.await {
            total.connects += f.connects;
            total.refused += f.refused;
            total.longest_held = total.longest_held.max(f.longest_held);
        }
    }
    total
}

/// Pipelines `cap + 10` queries on one connection, 100 at a time (reading each hundred's
/// answers before sending more, so neither side's socket buffers fill up); the answers
/// before the server closes it.
async fn query_cap_closes_after(zg: &zonegate_testkit::Zonegate, cap: usize) -> usize {
    let client = Client::new();
    let mut conn = client.connect_tcp(zg.addr()).await.expect("connect");
    let name = support::names("t", 1).remove(0);
    let mut answers = 0;
    let mut id = 0u16;
    'outer: while usize::from(id) < cap + 10 {
        let round = (cap + 10 - usize::from(id)).min(100);
        for _ in 0..round {
            let mut q = client.build_query(&name, RecordType::A);
            q.metadata.id = id;
            id += 1;
            if conn.send(&q).await.is_err() {
                break;
            }
        }
        for _ in 0..round {
            if conn.recv_frame().await.is_none() {
                break 'outer;
            }
            answers += 1;
        }
    }
    answers
}
