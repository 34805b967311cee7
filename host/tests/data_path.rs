//! The data path end to end, in process: real sockets on 127.0.0.1, a real authoritative
//! upstream (the testkit's `AuthServer`), a real client.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::{forwarding, metric_sum, start};
use zonegate_testkit::proto::op::ResponseCode;
use zonegate_testkit::proto::rr::RecordType;
use zonegate_testkit::{AuthServer, Behaviour, Client, Transport};

const WWW: &str = "www.example.test.";

fn upstream() -> AuthServer {
    AuthServer::builder()
        .zone("example.test.")
        .a(WWW, 300, Ipv4Addr::new(192, 0, 2, 1))
        .a("short.example.test.", 1, Ipv4Addr::new(192, 0, 2, 2))
        .negative_ttl(60)
        .start()
        .expect("upstream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_udp_and_tcp_then_from_cache() {
    let up = upstream();
    let zg = start(&forwarding(up.addr(), "", "")).await;
    let client = Client::new();
    let r = client
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    let r = client
        .query_tcp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(
        up.queries(WWW, RecordType::A),
        1,
        "second answer came from the cache"
    );
    assert_eq!(
        metric_sum(&zg, "coredns_cache_hits_total", &[("type", "success")]),
        1.0
    );
    assert_eq!(
        metric_sum(&zg, "coredns_dns_requests_total", &[("proto", "tcp")]),
        1.0
    );
    assert_eq!(
        metric_sum(&zg, "coredns_dns_responses_total", &[("rcode", "NOERROR")]),
        2.0
    );
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_age_in_the_cache_and_are_capped() {
    let up = upstream();
    let zg = start(&forwarding(up.addr(), "", "max_ttl = 100")).await;
    let client = Client::new();
    let first = client
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        first.min_ttl(),
        Some(100),
        "upstream TTL 300 capped to max_ttl"
    );
    // TTL aging is a property of elapsed time: wait just over one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = client
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    let ttl = later.min_ttl().unwrap();
    assert!((98..=99).contains(&ttl), "aged TTL {ttl}");
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answers_are_cached_from_the_soa_and_servfail_is_not() {
    let up = upstream();
    let zg = start(&forwarding(up.addr(), "", "")).await;
    let client = Client::new();
    for _ in 0..2 {
        let r = client
            .query_udp(zg.addr(), "nope.example.test.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(r.rcode(), ResponseCode::NXDomain);
    }
    assert_eq!(up.queries("nope.example.test.", RecordType::A), 1);
    assert_eq!(
        metric_sum(&zg, "coredns_cache_hits_total", &[("type", "denial")]),
        1.0
    );

    up.set_name_behaviour("broken.example.test.", Behaviour::ServFail);
    for _ in 0..2 {
        let r = client
            .query_udp(zg.addr(), "broken.example.test.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(r.rcode(), ResponseCode::ServFail);
    }
    assert_eq!(
        up.queries("broken.example.test.", RecordType::A),
        2,
        "SERVFAIL never cached"
    );
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soa_less_negative_answers_are_not_cached() {
    let up = AuthServer::builder()
        .zone("example.test.")
        .without_negative_soa()
        .start()
        .unwrap();
    let zg = start(&forwarding(up.addr(), "", "")).await;
    for _ in 0..2 {
        let r = Client::new()
            .query_udp(zg.addr(), "nope.example.test.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(r.rcode(), ResponseCode::NXDomain);
    }
    assert_eq!(up.queries("nope.example.test.", RecordType::A), 2);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_misses_are_coalesced_into_one_upstream_query() {
    let up = upstream();
    up.set_name_behaviour(WWW, Behaviour::Delay(Duration::from_millis(300)));
    let zg = start(&forwarding(up.addr(), "", "")).await;
    let addr = zg.addr();
    let queries = (0..20).map(|_| {
        tokio::spawn(async move { Client::new().query_udp(addr, WWW, RecordType::A).await })
    });
    for q in queries.collect::<Vec<_>>() {
        assert_eq!(q.await.unwrap().unwrap().rcode(), ResponseCode::NoError);
    }
    assert_eq!(
        up.queries(WWW, RecordType::A),
        1,
        "20 identical misses → 1 upstream query"
    );
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_answers_refused_uncached_and_counted() {
    let up = upstream();
    up.set_behaviour(Behaviour::Delay(Duration::from_millis(400)));
    let zg = start(&forwarding(up.addr(), "max_concurrent = 2", "")).await;
    let addr = zg.addr();
    let names: Vec<String> = (0..6).map(|i| format!("n{i}.example.test.")).collect();
    let tasks = ask_all(addr, &names);
    let mut refused = 0;
    for t in tasks {
        if t.await.unwrap() == ResponseCode::Refused {
            refused += 1;
        }
    }
    assert_eq!(refused, 4, "2 in flight, 4 refused");
    assert_eq!(
        metric_sum(&zg, "coredns_forward_max_concurrent_rejects_total", &[]),
        4.0
    );
    // Not cached, and the upstream was not marked down: the same name now resolves.
    up.set_behaviour(Behaviour::Answer);
    let again = Client::new()
        .query_udp(addr, &names[5], RecordType::A)
        .await
        .unwrap();
    assert_eq!(again.rcode(), ResponseCode::NXDomain);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_udp_answers_are_retried_over_tcp() {
    let up = upstream();
    up.set_behaviour(Behaviour::Truncate);
    let zg = start(&forwarding(up.addr(), "protocol = \"prefer-udp\"", "")).await;
    let r = Client::new()
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert!(!r.truncated());
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(up.transport_queries(Transport::Tcp) >= 1);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_tcp_uses_only_tcp_upstream() {
    let up = upstream();
    let zg = start(&forwarding(up.addr(), "protocol = \"force-tcp\"", "")).await;
    let r = Client::new()
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert_eq!(up.transport_queries(Transport::Udp), 0);
    assert_eq!(up.transport_queries(Transport::Tcp), 1);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stale_immediate_answers_while_the_upstream_is_down() {
    let up = upstream();
    let zg = start(&forwarding(up.addr(), "", "serve_stale = \"immediate\"")).await;
    let client = Client::new();
    let name = "short.example.test.";
    assert_eq!(
        client
            .query_udp(zg.addr(), name, RecordType::A)
            .await
            .unwrap()
            .min_ttl(),
        Some(1)
    );
    up.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await; // let the 1 s TTL expire
    let stale = client
        .query_udp(zg.addr(), name, RecordType::A)
        .await
        .unwrap();
    assert_eq!(stale.rcode(), ResponseCode::NoError);
    assert_eq!(stale.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 2)]);
    assert_eq!(
        stale.min_ttl(),
        Some(30),
        "stale answers carry the stale TTL"
    );
    assert!(metric_sum(&zg, "coredns_cache_served_stale_total", &[]) >= 1.0);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stale_verify_refreshes_first_and_falls_back_when_slow() {
    let up = upstream();
    let zg = start(&forwarding(
        up.addr(),
        "",
        "serve_stale = \"verify\"\nverify_timeout = \"200ms\"",
    ))
    .await;
    let client = Client::new();
    let name = "short.example.test.";
    client
        .query_udp(zg.addr(), name, RecordType::A)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Upstream healthy: verify refreshes, the answer is fresh (TTL 1, not the stale 30).
    let fresh = client
        .query_udp(zg.addr(), name, RecordType::A)
        .await
        .unwrap();
    assert_eq!(fresh.min_ttl(), Some(1));
    assert_eq!(up.queries(name, RecordType::A), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Upstream slow: stale after verify_timeout.
    up.set_name_behaviour(name, Behaviour::Delay(Duration::from_secs(1)));
    let stale = client
        .query_udp(zg.addr(), name, RecordType::A)
        .await
        .unwrap();
    assert_eq!(stale.min_ttl(), Some(30));
    assert!(
        stale.elapsed < Duration::from_millis(900),
        "answered after verify_timeout, {:?}",
        stale.elapsed
    );
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_and_cd_bits_reach_the_upstream_and_split_the_cache() {
    let up = upstream();
    let zg = start(&forwarding(up.addr(), "", "")).await;
    Client::new()
        .dnssec_ok(true)
        .checking_disabled(true)
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    let seen = up.last_query(WWW).unwrap();
    assert!(seen.checking_disabled);
    assert!(seen.edns.unwrap().dnssec_ok);
    Client::new()
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        up.queries(WWW, RecordType::A),
        2,
        "DO/CD are part of the cache key"
    );
    let plain = up.last_query(WWW).unwrap();
    assert!(!plain.checking_disabled && !plain.edns.unwrap().dnssec_ok);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_udp_answers_are_truncated_for_the_client() {
    let mut b = AuthServer::builder().zone("example.test.");
    for i in 0..40 {
        b = b.txt(
            "big.example.test.",
            300,
            &format!("{i:02}-{}", "x".repeat(40)),
        );
    }
    let up = b.start().unwrap();
    let zg = start(&forwarding(up.addr(), "", "")).await;
    let small = Client::new()
        .no_edns()
        .query_udp(zg.addr(), "big.example.test.", RecordType::TXT)
        .await
        .unwrap();
    assert!(small.truncated() && small.answers().is_empty());
    let tcp = Client::new()
        .query_tcp(zg.addr(), "big.example.test.", RecordType::TXT)
        .await
        .unwrap();
    assert_eq!(tcp.answers().len(), 40);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_get_formerr_or_are_dropped_and_counted() {
    let up = upstream();
    let zg = start(&forwarding(up.addr(), "", "")).await;
    let client = Client::new();
    let mut q = client.build_query(WWW, RecordType::A).to_vec().unwrap();
    q[5] = 2; // two questions announced, one present
    let reply = client
        .send_raw_udp(zg.addr(), &q)
        .await
        .expect("FORMERR reply");
    assert_eq!(reply[3] & 0x0f, 1);
    let mut response = client.build_query(WWW, RecordType::A).to_vec().unwrap();
    response[2] |= 0x80;
    assert!(
        client.send_raw_udp(zg.addr(), &response).await.is_none(),
        "QR=1 dropped"
    );
    assert!(
        client.send_raw_udp(zg.addr(), &[1, 2, 3]).await.is_none(),
        "short packet dropped"
    );
    assert_eq!(metric_sum(&zg, "zonegate_dropped_packets_total", &[]), 2.0);
    assert_eq!(up.total_queries(), 0);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_match_by_longest_suffix_within_the_view() {
    let corp = AuthServer::builder()
        .zone("corp.test.")
        .a("db.corp.test.", 60, Ipv4Addr::new(10, 1, 1, 1))
        .start()
        .unwrap();
    let public = upstream();
    let toml = format!(
        r#"{base}
[[listen]]
address = "127.0.0.2:0"
view = "other"

[upstreams.corp]
servers = ["{corp}"]
[upstreams.public]
servers = ["{public}"]

[[zone]]
view = "default"
name = "."
forward = "public"

[[zone]]
view = "default"
name = "Corp.Test"
forward = "corp"

[[zone]]
view = "other"
name = "corp.test."
forward = "corp"
"#,
        base = support::base(),
        corp = corp.addr(),
        public = public.addr()
    );
    let zg = start(&toml).await;
    let client = Client::new();
    let r = client
        .query_udp(zg.addr(), "DB.corp.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(10, 1, 1, 1)]);
    let r = client
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    // The other view has no root zone: names outside corp.test are REFUSED.
    let other = zg.listeners[1].1;
    let r = client.query_udp(other, WWW, RecordType::A).await.unwrap();
    assert_eq!(r.rcode(), ResponseCode::Refused);
    let r = client
        .query_udp(other, "db.corp.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.rcode(), ResponseCode::NoError);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_tcp_queries_are_answered_on_one_connection() {
    let up = upstream();
    up.set_name_behaviour(
        "n0.example.test.",
        Behaviour::Delay(Duration::from_millis(200)),
    );
    let zg = start(&forwarding(up.addr(), "", "")).await;
    let names: Vec<String> = (0..5).map(|i| format!("n{i}.example.test.")).collect();
    let queries: Vec<(&str, RecordType)> =
        names.iter().map(|n| (n.as_str(), RecordType::A)).collect();
    let answers = Client::new()
        .query_tcp_pipelined(zg.addr(), &queries)
        .await
        .unwrap();
    assert_eq!(answers.len(), 5);
    assert!(answers.iter().all(|a| a.rcode() == ResponseCode::NXDomain));
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_server_is_skipped_and_the_next_one_answers() {
    let dead = AuthServer::builder()
        .behaviour(Behaviour::Drop)
        .start()
        .unwrap();
    let good = upstream();
    let upstream_extra = "selection = \"sequential\"\nmax_fails = 1";
    let toml = forwarding(dead.addr(), upstream_extra, "").replace(
        &format!("servers = [\"{}\"]", dead.addr()),
        &format!("servers = [\"{}\", \"{}\"]", dead.addr(), good.addr()),
    );
    let zg = start(&toml).await;
    let r = Client::new()
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        r.rcode(),
        ResponseCode::NoError,
        "failover to the second server"
    );
    // The first server is now down: the next query goes straight to the good one.
    let r = Client::new()
        .query_udp(zg.addr(), "www2.example.test.", RecordType::A)
        .await
        .unwrap();
    assert!(
        r.elapsed < Duration::from_millis(400),
        "down server skipped ({:?})",
        r.elapsed
    );
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_the_allow_list_are_refused() {
    let up = upstream();
    let toml = forwarding(up.addr(), "", "").replace(
        "drain_timeout = \"2s\"",
        "drain_timeout = \"2s\"\nallow_clients = [\"10.0.0.0/8\"]",
    );
    let zg = start(&toml).await;
    let r = Client::new()
        .query_udp(zg.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.rcode(), ResponseCode::Refused);
    assert_eq!(up.total_queries(), 0);
    assert_eq!(metric_sum(&zg, "zonegate_acl_refused_total", &[]), 1.0);
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_an_address_with_so_reuseport() {
    let up = upstream();
    let first = start(&forwarding(up.addr(), "", "")).await;
    let port = first.addr().port();
    let toml = forwarding(up.addr(), "", "").replace(
        "address = \"127.0.0.1:0\"",
        &format!("address = \"127.0.0.1:{port}\""),
    );
    let second = start(&toml).await;
    assert_eq!(second.addr(), first.addr());
    first.drain().await;
    let r = Client::new()
        .query_udp(second.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        r.rcode(),
        ResponseCode::NoError,
        "the second instance serves after the first drained"
    );
    second.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_in_flight_when_the_drain_starts_are_answered() {
    let up = upstream();
    up.set_behaviour(Behaviour::Delay(Duration::from_millis(300)));
    let zg = start(&forwarding(up.addr(), "", "")).await;
    let addr = zg.addr();
    let mut names: Vec<String> = (0..5).map(|i| format!("d{i}.example.test.")).collect();
    names.push(WWW.to_string());
    let tasks = ask_all(addr, &names);
    // Every query is at the upstream (answering in 300 ms) when the drain starts.
    assert!(up.wait_for_total(6, Duration::from_secs(5)).await);
    let drained = tokio::spawn(zg.drain());
    for (i, t) in tasks.into_iter().enumerate() {
        let want = if i < 5 {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        assert_eq!(t.await.unwrap(), want, "query {i}");
    }
    drained.await.unwrap();
}

/// Asks each name (type A, over UDP) in a task of its own; each task returns the rcode.
fn ask_all(addr: SocketAddr, names: &[String]) -> Vec<tokio::task::JoinHandle<ResponseCode>> {
    names
        .iter()
        .cloned()
        .map(|n| {
            tokio::spawn(async move {
                Client::new()
                    .query_udp(addr, &n, RecordType::A)
                    .await
                    .unwrap()
                    .rcode()
            })
        })
        .collect()
}
