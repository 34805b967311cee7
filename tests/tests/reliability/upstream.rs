//! Upstream faults under load: an outage with serve-stale (immediate and verify), a slow
//! upstream under 10× overload, and a misbehaving upstream.

use std::time::{Duration, Instant};

use zonegate_testkit::proto::rr::rdata::A;
use zonegate_testkit::proto::rr::{RData, RecordType};
use zonegate_testkit::{Behaviour, Client, Load, LoadTransport, Signal};

use crate::support::{self, Cfg, Figures};

/// How many names are cached before the outage.
const CACHED: usize = 50;

/// The address a name gets after the outage, so a fresh answer is recognisable.
fn after_outage(i: usize) -> std::net::Ipv4Addr {
    let [a, b, c, d] = support::address(i).octets();
    std::net::Ipv4Addr::new(a, b | 0x80, c, d)
}

async fn outage(mode: &str, test: &str) {
    let names = support::names("s", CACHED);
    let up = support::upstream(&names, 1);
    let mut cfg = Cfg::new(up.addr());
    cfg.upstream_extra = "timeout = \"200ms\"\nhealth_check = \"200ms\"".into();
    cfg.cache = format!("serve_stale = \"{mode}\"\nverify_timeout = \"300ms\"\nstale_ttl = 5");
    let zg = support::start(cfg.toml()).await;
    let qs = support::questions(&names);
    let warm = Load::new(zg.addr(), &qs)
        .count(CACHED as u64)
        .run()
        .await
        .expect("warm");
    assert_eq!(warm.rcode("NOERROR"), CACHED as u64, "{warm}");

    up.stop();
    let outage = Duration::from_secs(support::pick(3, 60));
    let rate = 500.0;
    let report = Load::new(zg.addr(), &qs)
        .rate(Some(rate))
        .concurrency(256)
        .count(u64::MAX)
        .duration(outage)
        .timeout(Duration::from_secs(2))
        .run()
        .await
        .expect("load");
    eprintln!("{mode} during the outage: {report}");

    // Recovery: every name has a new address; how long until every answer is fresh?
    for (i, n) in names.iter().enumerate() {
        up.set_records(n, RecordType::A, 1, vec![RData::A(A(after_outage(i)))]);
    }
    up.resume().expect("upstream back");
    let resumed = Instant::now();
    let fresh_after = wait_all_fresh(&zg, &names).await;
    let stale = support::metric(&zg, "coredns_cache_served_stale_total", &[]);
    support::record(&Figures {
        scenario: &format!("upstream down, serve_stale = \"{mode}\""),
        test,
        load: format!("{rate} q/s UDP over {CACHED} names cached before the outage"),
        duration: outage,
        report: &report,
        peak_rss_kib: support::peak_rss_kib(&zg),
        notes: format!(
            "{stale} stale answers; every name fresh {:.0} ms after the upstream came back",
            fresh_after.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        ),
    });
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.rcode("NOERROR"), report.answered, "{report}");
    let fresh_after = fresh_after.expect("fresh answers after recovery");
    // One refresh: the health probe (200 ms) notices the server, the next stale answer's
    // refresh (≤ 300 ms upstream timeout) stores the new answer.
    assert!(
        fresh_after < Duration::from_secs(3),
        "fresh after {fresh_after:?} (resumed {:?} ago)",
        resumed.elapsed()
    );
}

/// Polls every name until each answers with its post-outage address; the time that took.
async fn wait_all_fresh(zg: &zonegate_testkit::Zonegate, names: &[String]) -> Option<Duration> {
    let start = Instant::now();
    let client = Client::new().timeout(Duration::from_secs(1));
    let mut pending: Vec<usize> = (0..names.len()).collect();
    while start.elapsed() < Duration::from_secs(10) {
        let mut still = Vec::new();
        for i in pending {
            let fresh = client
                .query_udp(zg.addr(), &names[i], RecordType::A)
                .await
                .is_ok_and(|r| r.ipv4() == vec![after_outage(i)]);
            if !fresh {
                still.push(i);
            }
        }
        if still.is_empty() {
            return Some(start.elapsed());
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_serve_stale_immediate() {
    outage("immediate", "upstream::outage_serve_stale_immediate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_serve_stale_verify() {
    outage("verify", "upstream::outage_serve_stale_verify").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_overloaded_tenfold() {
    let hot = support::names("h", 20);
    let up = support::upstream(&hot, 3600);
    let mut cfg = Cfg::new(up.addr());
    // 20 in flight × 1 s per answer: the group serves 20 q/s.
    cfg.upstream_extra = "timeout = \"3s\"\nmax_concurrent = 20".into();
    let zg = support::start(cfg.toml()).await;
    let hot_qs = support::questions(&hot);
    let hot_load = |duration| {
        Load::new(zg.addr(), &hot_qs)
            .rate(Some(200.0))
            .concurrency(16)
            .count(u64::MAX)
            .duration(duration)
    };
    let warm = Load::new(zg.addr(), &hot_qs)
        .count(hot.len() as u64)
        .run()
        .await
        .expect("warm");
    assert_eq!(warm.rcode("NOERROR"), hot.len() as u64, "{warm}");
    let baseline = hot_load(Duration::from_secs(1))
        .run()
        .await
        .expect("baseline");
    let rss_before = support::peak_rss_kib(&zg);

    up.set_behaviour(Behaviour::Delay(Duration::from_secs(1)));
    let duration = Duration::from_secs(support::pick(4, 60));
    let cold_rate = 200.0;
    // Every cold query a new name: no cache hit, no coalescing.
    let cold = support::names("cold", (cold_rate as usize) * duration.as_secs() as usize);
    let cold_qs = support::questions(&cold);
    let cold_load = Load::new(zg.addr(), &cold_qs)
        .rate(Some(cold_rate))
        .concurrency(512)
        .count(u64::MAX)
        .duration(duration)
        .timeout(Duration::from_secs(5));
    let hot_during = hot_load(duration);
    let (cold_report, hot_report) = tokio::join!(cold_load.run(), hot_during.run());
    let (cold_report, hot_report) = (cold_report.expect("cold"), hot_report.expect("hot"));
    let rss_after = support::peak_rss_kib(&zg);
    let rejects = support::metric(&zg, "coredns_forward_max_concurrent_rejects_total", &[]);
    eprintln!("baseline hot: {baseline}\ncold: {cold_report}\nhot: {hot_report}");
    let report = support::combined(&cold_report, &hot_report);
    support::record(&Figures {
        scenario: "upstream slow (1 s per answer), offered 10× what it can serve",
        test: "upstream::slow_upstream_overloaded_tenfold",
        load: format!(
            "{cold_rate} q/s uncached (group: max_concurrent 20 → 20 q/s) + 200 q/s cached, UDP"
        ),
        duration,
        report: &report,
        peak_rss_kib: rss_after,
        notes: format!(
            "REFUSED {} (max_concurrent rejects counted: {rejects}); cached p99 {:?} before, {:?} during; peak RSS {} → {} KiB",
            cold_report.rcode("REFUSED"),
            baseline.latency.p99,
            hot_report.latency.p99,
            rss_before,
            rss_after
        ),
    });
    assert_eq!(cold_report.lost, 0, "{cold_report}");
    assert!(
        cold_report.rcode("REFUSED") > cold_report.sent / 2,
        "{cold_report}"
    );
    assert!(rejects >= cold_report.rcode("REFUSED") as f64, "{rejects}");
    assert_eq!(hot_report.lost, 0, "{hot_report}");
    assert_eq!(hot_report.rcode("NOERROR"), hot_report.sent, "{hot_report}");
    assert!(
        hot_report.latency.p99 < Duration::from_millis(250),
        "cached answers slowed by the slow upstream: {hot_report}"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "peak RSS grew from {rss_before} to {rss_after} KiB"
    );
}

/// Misbehaviours and the transport they are exercised over.
const MISBEHAVIOURS: [(Behaviour, &str); 6] = [
    (Behaviour::WrongId, "prefer-udp"),
    (Behaviour::WrongQuestion, "prefer-udp"),
    (Behaviour::Garbage, "prefer-udp"),
    (Behaviour::Truncate, "prefer-udp"),
    (Behaviour::CloseTcp, "force-tcp"),
    (Behaviour::Garbage, "force-tcp"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_upstream_is_never_cached() {
    let per = support::pick(200, 2000);
    let names = support::names("m", per * MISBEHAVIOURS.len());
    let up = support::upstream(&names, 300);
    let mut cfg = Cfg::new(up.addr());
    cfg.upstream_extra = "timeout = \"200ms\"\nhealth_check = \"100ms\"".into();
    // The force-tcp behaviours go through a second zonegate whose group speaks TCP only.
    let udp_zg = support::start(cfg.toml()).await;
    cfg.upstream_extra = format!("{}\nprotocol = \"force-tcp\"", cfg.upstream_extra);
    let tcp_zg = support::start(cfg.toml()).await;
    let duration = Duration::from_millis(support::pick(800, 10_000));
    let mut total = zonegate_testkit::LoadReport::default();
    let mut notes = Vec::new();
    for (k, (behaviour, protocol)) in MISBEHAVIOURS.into_iter().enumerate() {
        let zg = if protocol == "force-tcp" {
            &tcp_zg
        } else {
            &udp_zg
        };
        let slice = &names[k * per..(k + 1) * per];
        up.set_behaviour(behaviour);
        let report = Load::new(zg.addr(), &support::questions(slice))
            .rate(Some(per as f64 / duration.as_secs_f64()))
            .concurrency(128)
            .count(per as u64)
            .duration(duration)
            .run()
            .await
            .expect("load");
        eprintln!("{behaviour:?} over {protocol}: {report}");
        notes.push(format!("{behaviour:?}/{protocol}: {:?}", report.rcodes));
        assert_eq!(report.lost, 0, "{behaviour:?}: {report}");
        total.absorb(&report);
        // Back to normal: every name asked during the misbehaviour gets its real answer.
        up.set_behaviour(Behaviour::Answer);
        assert_real_answers(zg, slice, k * per).await;
    }
    for zg in [&udp_zg, &tcp_zg] {
        assert_eq!(zg.health_status().expect("health"), 200);
    }
    support::record(&Figures {
        scenario: "upstream misbehaving (wrong id, wrong question, garbage, TC, TCP resets)",
        test: "upstream::misbehaving_upstream_is_never_cached",
        load: format!("{per} new names per misbehaviour, UDP"),
        duration: duration * MISBEHAVIOURS.len() as u32,
        report: &total,
        peak_rss_kib: support::peak_rss_kib(&udp_zg).max(support::peak_rss_kib(&tcp_zg)),
        notes: notes.join("; "),
    });
    for zg in [udp_zg, tcp_zg] {
        zg.send_signal(Signal::Term).expect("term");
    }
}

/// Every name answers with its own address (nothing wrong was cached); waits for the
/// upstream to be marked healthy again first.
async fn assert_real_answers(zg: &zonegate_testkit::Zonegate, names: &[String], first: usize) {
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    for (j, n) in names.iter().enumerate() {
        let want = vec![support::address(first + j)];
        loop {
            let r = client.query_udp(zg.addr(), n, RecordType::A).await;
            match r {
                Ok(r) if r.ipv4() == want => break,
                Ok(r) if r.ipv4().is_empty() && Instant::now() < deadline => {
                    // SERVFAIL while the upstream is still marked down.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("{n}: want {want:?}, got {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_load_through_a_misbehaving_upstream_is_answered() {
    // TCP clients see the same: every query answered, nothing lost.
    let names = support::names("t", 100);
    let up = support::upstream(&names, 300);
    up.set_behaviour(Behaviour::WrongId);
    let mut cfg = Cfg::new(up.addr());
    cfg.upstream_extra = "timeout = \"200ms\"".into();
    let zg = support::start(cfg.toml()).await;
    let report = Load::new(zg.addr(), &support::questions(&names))
        .transport(LoadTransport::Tcp)
        .concurrency(32)
        .count(100)
        .run()
        .await
        .expect("load");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.rcode("SERVFAIL"), 100, "{report}");
}
