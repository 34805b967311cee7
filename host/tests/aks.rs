//! AKS LocalDNS compatibility, in process: a `localdnsconfig.json` in the AKS schema loaded
//! unchanged, served on its two views, each zone forwarding where AKS would.

use std::net::Ipv4Addr;

use zonegate::app::{self, ConfigSource, RunOptions};
use zonegate::config::{self, AksOptions, LoadEnv};
use zonegate_testkit::proto::op::ResponseCode;
use zonegate_testkit::proto::rr::RecordType;
use zonegate_testkit::{AuthServer, Client, Transport};

pub const LOCALDNSCONFIG: &str = r#"{
  "mode": "Required",
  "vnetDNSOverrides": {
    ".": {"queryLogging": "Error", "protocol": "PreferUDP", "forwardDestination": "VnetDNS",
          "forwardPolicy": "Sequential", "maxConcurrent": 1000, "cacheDurationInSeconds": 3600,
          "serveStaleDurationInSeconds": 3600, "serveStale": "Immediate"},
    "cluster.local": {"queryLogging": "Error", "protocol": "ForceTCP", "forwardDestination": "ClusterCoreDNS",
          "forwardPolicy": "Sequential", "maxConcurrent": 1000, "cacheDurationInSeconds": 3600,
          "serveStaleDurationInSeconds": 3600, "serveStale": "Immediate"}
  },
  "kubeDNSOverrides": {
    ".": {"queryLogging": "Error", "protocol": "PreferUDP", "forwardDestination": "ClusterCoreDNS",
          "forwardPolicy": "Sequential", "maxConcurrent": 1000, "cacheDurationInSeconds": 3600,
          "serveStaleDurationInSeconds": 3600, "serveStale": "Disabled"},
    "cluster.local": {"queryLogging": "Log", "protocol": "ForceTCP", "forwardDestination": "ClusterCoreDNS",
          "forwardPolicy": "Sequential", "maxConcurrent": 1000, "cacheDurationInSeconds": 3600,
          "serveStaleDurationInSeconds": 3600, "serveStale": "Immediate"}
  }
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_localdnsconfig_serves_both_views() {
    let vnet = AuthServer::builder()
        .a("www.example.test.", 60, Ipv4Addr::new(192, 0, 2, 7))
        .start()
        .unwrap();
    let coredns = AuthServer::builder()
        .a(
            "kubernetes.default.svc.cluster.local.",
            5,
            Ipv4Addr::new(10, 0, 0, 1),
        )
        .a("www.example.test.", 60, Ipv4Addr::new(192, 0, 2, 8))
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("localdnsconfig.json");
    std::fs::write(&path, LOCALDNSCONFIG).unwrap();
    let options = AksOptions {
        vnet_listen: "127.0.0.1:0".parse().unwrap(),
        kube_listen: "127.0.0.2:0".parse().unwrap(),
        vnet_dns: vec![vnet.addr()],
        cluster_dns: vec![coredns.addr()],
    };
    let mut config =
        config::load_aks(&path, &options, &LoadEnv::default()).expect("valid AKS config");
    for addr in [
        &mut config.observability.metrics,
        &mut config.observability.health,
        &mut config.observability.ready,
    ] {
        *addr = "127.0.0.1:0".parse().unwrap();
    }
    let opts = RunOptions {
        source: ConfigSource::Aks { path, options },
        ready_file: None,
        cache_dir: None,
        setup: None,
    };
    let zg = app::start(opts, config).await.unwrap();
    let addr = |view: &str| zg.listeners.iter().find(|(v, _)| v == view).unwrap().1;
    let client = Client::new();

    // kube view: cluster.local over TCP to the cluster DNS; "." also to the cluster DNS.
    let r = client
        .query_udp(
            addr("kube"),
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
        )
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(10, 0, 0, 1)]);
    assert_eq!(coredns.transport_queries(Transport::Udp), 0, "ForceTCP");
    let r = client
        .query_udp(addr("kube"), "www.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 8)]);

    // vnet view: "." to the VNet DNS over UDP.
    let r = client
        .query_udp(addr("vnet"), "www.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    assert!(vnet.transport_queries(Transport::Udp) >= 1);
    let r = client
        .query_udp(
            addr("vnet"),
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
        )
        .await
        .unwrap();
    assert_eq!(
        r.rcode(),
        ResponseCode::NoError,
        "vnet cluster.local goes to the cluster DNS"
    );
    zg.drain().await;
}

#[test]
fn aks_rules_are_enforced() {
    let bad = LOCALDNSCONFIG
        .replacen(
            r#""forwardDestination": "VnetDNS""#,
            r#""forwardDestination": "ClusterCoreDNS""#,
            1,
        )
        .replacen(
            r#""serveStale": "Disabled""#,
            r#""serveStale": "Disabled", "extra": 1"#,
            1,
        );
    let options = AksOptions {
        cluster_dns: vec!["10.0.0.10:53".parse().unwrap()],
        ..AksOptions::default()
    };
    let err = config::parse_aks(&bad, "localdnsconfig.json", &options, &LoadEnv::default())
        .map(|_| ())
        .expect_err("rejected");
    let text = err.to_string();
    assert!(text.contains("ClusterCoreDNS"), "{text}");
    assert!(text.contains("extra"), "{text}");
}
