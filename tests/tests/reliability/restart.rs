//! Rolling restart: a second zonegate binds the same addresses (SO_REUSEPORT), the first gets
//! SIGTERM and drains, under steady UDP and TCP load — zero queries lost.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use zonegate_testkit::{Behaviour, Load, LoadTransport, Signal, free_port};

use crate::support::{self, Cfg, Figures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_loses_no_query() {
    let names = support::names("r", 200);
    let up = support::upstream(&names, 300);
    // Every query goes upstream and takes a while, so the old process has forwards in
    // flight (and a socket kept open by them) when it is told to stop.
    up.set_behaviour(Behaviour::Delay(Duration::from_millis(20)));
    let port = free_port().expect("free port");
    let mut cfg = Cfg::new(up.addr());
    cfg.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    cfg.upstream_extra = "timeout = \"1s\"".into();
    cfg.cache = "enabled = false".into();
    let restarts = support::pick(2, 10);
    let period = Duration::from_millis(support::pick(1500, 5000));
    let total = period * (restarts + 1);
    let udp_rate = 1000.0;
    let tcp_rate = 200.0;

    let mut old = support::start(cfg.toml()).await;
    let qs = support::questions(&names);
    let udp = Load::new(old.addr(), &qs)
        .rate(Some(udp_rate))
        .concurrency(64)
        .count(u64::MAX)
        .duration(total);
    let tcp = udp
        .clone()
        .transport(LoadTransport::Tcp)
        .rate(Some(tcp_rate))
        .concurrency(16);
    let udp = tokio::spawn(async move { udp.run().await });
    let tcp = tokio::spawn(async move { tcp.run().await });

    let mut peak = 0;
    for _ in 0..restarts {
        tokio::time::sleep(period).await;
        let new = support::start(cfg.toml()).await;
        assert_eq!(new.addr(), old.addr());
        peak = peak.max(support::peak_rss_kib(&old));
        old.send_signal(Signal::Term).expect("SIGTERM");
        let status = tokio::task::spawn_blocking(move || {
            let status = old.wait(Duration::from_secs(10));
            (old, status)
        })
        .await
        .expect("wait task");
        let (stopped, status) = status;
        let status = status.expect("old zonegate exits");
        assert!(status.success(), "{status:?}: {}", stopped.stderr());
        old = new;
    }
    let udp = udp.await.expect("udp load").expect("udp load runs");
    let tcp = tcp.await.expect("tcp load").expect("tcp load runs");
    eprintln!("udp: {udp}\ntcp: {tcp}");
    let report = support::combined(&udp, &tcp);
    support::record(&Figures {
        scenario: "rolling restart (SIGTERM + second process on the same port)",
        test: "restart::rolling_restart_loses_no_query",
        load: format!(
            "{udp_rate} q/s UDP + {tcp_rate} q/s TCP, cache off, upstream 20 ms; {restarts} restarts"
        ),
        duration: total,
        report: &report,
        peak_rss_kib: peak.max(support::peak_rss_kib(&old)),
        notes: format!(
            "UDP lost {}, TCP lost {} ({} TCP reconnects after a drained connection closed)",
            udp.lost, tcp.lost, tcp.reconnects
        ),
    });
    assert_eq!(udp.lost, 0, "UDP: {udp}");
    assert_eq!(tcp.lost, 0, "TCP: {tcp}");
    assert_eq!(report.rcode("NOERROR"), report.answered, "{report}");
}
