use std::net::SocketAddr;
use std::time::Duration;

use super::super::tests::TestEnv;
use super::*;
use crate::config::{parse, to_toml};

/// REFERENCE.md's example, with the kube map written out.
const EXAMPLE: &str = r#"{
  "mode": "Required",
  "vnetDNSOverrides": {
    ".":             {"queryLogging": "Error", "protocol": "PreferUDP", "forwardDestination": "VnetDNS",
                      "forwardPolicy": "Sequential", "maxConcurrent": 1000, "cacheDurationInSeconds": 3600,
                      "serveStaleDurationInSeconds": 3600, "serveStale": "Immediate"},
    "cluster.local": {"queryLogging": "Error", "protocol": "ForceTCP", "forwardDestination": "ClusterCoreDNS",
                      "forwardPolicy": "Sequential", "maxConcurrent": 1000, "cacheDurationInSeconds": 3600,
                      "serveStaleDurationInSeconds": 3600, "serveStale": "Immediate"}
  },
  "kubeDNSOverrides": {
    ".":             {"queryLogging": "Error", "protocol": "PreferUDP", "forwardDestination": "ClusterCoreDNS",
                      "forwardPolicy": "Sequential", "maxConcurrent": 1000, "cacheDurationInSeconds": 3600,
                      "serveStaleDurationInSeconds": 3600, "serveStale": "Immediate"},
    "cluster.local": {"queryLogging": "Error", "protocol": "ForceTCP", "forwardDestination": "ClusterCoreDNS",
                      "forwardPolicy": "Sequential", "maxConcurrent": 1000, "cacheDurationInSeconds": 3600,
                      "serveStaleDurationInSeconds": 3600, "serveStale": "Immediate"}
  }
}"#;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn opts() -> AksOptions {
    AksOptions {
        cluster_dns: vec![sa("10.0.0.10:53")],
        ..AksOptions::default()
    }
}

fn import(name: &str, text: &str, opts: &AksOptions) -> Result<AksImport, Vec<String>> {
    let t = TestEnv::new(&format!("aks-{name}"), "nameserver 168.63.129.16\n");
    parse_aks(text, "localdnsconfig.json", opts, &t.env)
        .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
}

#[test]
fn reference_example_imports() {
    let AksImport { mode, config: c } = import("example", EXAMPLE, &opts()).unwrap();
    assert_eq!(mode, AksMode::Required);
    let listens: Vec<_> = c
        .listeners
        .iter()
        .map(|l| (l.view.as_str(), l.address, l.udp && l.tcp))
        .collect();
    assert_eq!(
        listens,
        vec![
            ("vnet", sa("169.254.10.10:53"), true),
            ("kube", sa("169.254.10.11:53"), true)
        ]
    );
    let groups: Vec<_> = c
        .upstreams
        .iter()
        .map(|(n, g)| (n.as_str(), g.servers.clone(), g.protocol))
        .collect();
    assert_eq!(
        groups,
        vec![
            (
                "clustercoredns-tcp-sequential-1000",
                vec![sa("10.0.0.10:53")],
                Protocol::ForceTcp
            ),
            (
                "clustercoredns-udp-sequential-1000",
                vec![sa("10.0.0.10:53")],
                Protocol::PreferUdp
            ),
            (
                "vnetdns-udp-sequential-1000",
                vec![sa("168.63.129.16:53")],
                Protocol::PreferUdp
            ),
        ]
    );
    let zones: Vec<_> = c
        .zones
        .iter()
        .map(|z| (z.view.as_str(), z.name.to_string(), z.forward.as_str()))
        .collect();
    assert_eq!(
        zones,
        vec![
            ("vnet", ".".to_string(), "vnetdns-udp-sequential-1000"),
            (
                "vnet",
                "cluster.local.".to_string(),
                "clustercoredns-tcp-sequential-1000"
            ),
            (
                "kube",
                ".".to_string(),
                "clustercoredns-udp-sequential-1000"
            ),
            (
                "kube",
                "cluster.local.".to_string(),
                "clustercoredns-tcp-sequential-1000"
            ),
        ]
    );
    for z in &c.zones {
        assert_eq!(
            (z.cache.max_ttl, z.cache.servfail_ttl, z.cache.serve_stale),
            (3600, 0, ServeStale::Immediate)
        );
        assert_eq!(z.cache.stale_for, Duration::from_secs(3600));
        assert_eq!(z.query_log, QueryLog::Error);
    }
    assert_eq!(c.observability.metrics, sa("0.0.0.0:9253"));
    assert_eq!(c.observability.health, sa("0.0.0.0:8080"));
    assert_eq!(c.observability.ready, sa("0.0.0.0:8181"));
}

#[test]
fn defaults_fill_empty_entries_and_missing_maps() {
    let text = r#"{"vnetDNSOverrides": {".": {}, "cluster.local": {}, "example.com": {"serveStale": "Verify", "cacheDurationInSeconds": 2}}}"#;
    let AksImport { mode, config: c } = import("defaults", text, &opts()).unwrap();
    assert_eq!(mode, AksMode::Preferred);
    assert_eq!(
        c.zones.len(),
        5,
        "the kube map defaults to . and cluster.local"
    );
    let forward = |view: &str, name: &str| {
        let z = c
            .zones
            .iter()
            .find(|z| z.view == view && z.name.to_string() == name)
            .unwrap();
        (z.forward.clone(), z.cache.clone())
    };
    assert_eq!(forward("vnet", ".").0, "vnetdns-udp-sequential-1000");
    assert_eq!(
        forward("vnet", "cluster.local.").0,
        "clustercoredns-tcp-sequential-1000"
    );
    assert_eq!(forward("kube", ".").0, "clustercoredns-udp-sequential-1000");
    assert_eq!(
        forward("kube", "cluster.local.").0,
        "clustercoredns-tcp-sequential-1000"
    );
    let (fwd, cache) = forward("vnet", "example.com.");
    assert_eq!(fwd, "vnetdns-udp-sequential-1000");
    assert_eq!(
        (cache.serve_stale, cache.max_ttl, cache.min_ttl),
        (ServeStale::Verify, 2, 2)
    );
}

#[test]
fn disable_and_disabled_are_both_accepted() {
    for spelling in ["Disable", "Disabled"] {
        let text = format!(
            r#"{{"mode": "Disabled", "kubeDNSOverrides": {{".": {{"serveStale": "{spelling}"}}}}}}"#
        );
        let got = import(spelling, &text, &opts()).unwrap();
        assert_eq!(got.mode, AksMode::Disabled);
        let root = got.config.zones.iter().find(|z| z.view == "kube").unwrap();
        assert_eq!(root.cache.serve_stale, ServeStale::Disabled, "{spelling}");
    }
}

/// Each case: the JSON and every error it must produce (prefixes), in order.
#[test]
fn aks_rules_reject_with_json_paths_and_lines() {
    let cases: [(&str, &str, &[&str]); 8] = [
        (
            "vnet-root-to-core",
            "{\"vnetDNSOverrides\": {\n \".\": {\"forwardDestination\": \"ClusterCoreDNS\"}}}",
            &[
                "localdnsconfig.json:2:8: vnetDNSOverrides[\".\"].forwardDestination: the vnet \".\" zone cannot forward to ClusterCoreDNS",
            ],
        ),
        (
            "cluster-local-to-vnet",
            "{\"vnetDNSOverrides\": {\"cluster.local\": {\"forwardDestination\": \"VnetDNS\"}},\n \
             \"kubeDNSOverrides\": {\"Cluster.Local.\": {\"forwardDestination\": \"VnetDNS\"}}}",
            &[
                "localdnsconfig.json:1:41: vnetDNSOverrides[\"cluster.local\"].forwardDestination: cluster.local cannot forward to VnetDNS",
                "localdnsconfig.json:2:42: kubeDNSOverrides[\"Cluster.Local.\"].forwardDestination: cluster.local cannot forward to VnetDNS",
            ],
        ),
        (
            "tcp-verify",
            "{\"kubeDNSOverrides\": {\"cluster.local\": {\"serveStale\": \"Verify\"},\n \
             \"x.com\": {\"protocol\": \"ForceTCP\", \"serveStale\": \"Verify\"}, \".\": {\"serveStale\": \"Verify\"}}}",
            &[
                "localdnsconfig.json:1:41: kubeDNSOverrides[\"cluster.local\"].serveStale: serveStale Verify cannot be used with protocol ForceTCP",
                "localdnsconfig.json:2:36: kubeDNSOverrides[\"x.com\"].serveStale: serveStale Verify",
            ],
        ),
        (
            "unknown-property",
            "{\"kubeDNSOverrides\": {\".\": {\"cacheTTL\": 5},\n \"y.com\": {\"protocol\": \"QUIC\"}}}",
            &[
                "localdnsconfig.json:1:23: kubeDNSOverrides[\".\"]: unknown field `cacheTTL`",
                "localdnsconfig.json:2:2: kubeDNSOverrides[\"y.com\"]: unknown variant `QUIC`",
            ],
        ),
        (
            "unknown-top-level",
            "{\n\"mode\": \"Required\", \"state\": \"Enabled\"}",
            &[
                "localdnsconfig.json:2:27: unknown field `state`, expected one of `mode`, `vnetDNSOverrides`, `kubeDNSOverrides`",
            ],
        ),
        (
            "duplicate-zone",
            "{\"kubeDNSOverrides\": {\"a.com\": {}, \"A.com.\": {}}}",
            &["localdnsconfig.json:1:23: kubeDNSOverrides[\"a.com\"]: zone a.com. is listed twice"],
        ),
        (
            "bad-mode",
            "{\"mode\": \"Sometimes\"}",
            &["localdnsconfig.json:1:20: unknown variant `Sometimes`"],
        ),
        (
            "syntax",
            "{\n  \"mode\": \"Required\",\n}",
            &["localdnsconfig.json:3:1: trailing comma"],
        ),
    ];
    let mut mismatches = Vec::new();
    for (name, text, want) in cases {
        let got = import(name, text, &opts()).err().unwrap_or_default();
        let matches =
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.starts_with(w));
        if !matches {
            mismatches.push(format!("{name}: got {got:#?}\nwant prefixes {want:#?}"));
        }
        if got.iter().any(|g| g.contains(" at line ")) {
            mismatches.push(format!(
                "{name}: position repeated in the message: {got:#?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn several_rule_violations_are_reported_at_once() {
    let text = r#"{"mode": "Required",
      "vnetDNSOverrides": {".": {"forwardDestination": "ClusterCoreDNS"}, "cluster.local": {"forwardDestination": "VnetDNS"}},
      "kubeDNSOverrides": {"cluster.local": {"serveStale": "Verify", "maxConcurrent": 0}, "bad name": {}}}"#;
    let got = import("several", text, &opts()).unwrap_err();
    assert_eq!(got.len(), 5, "{got:#?}");
}

#[test]
fn cluster_core_dns_needs_an_address() {
    let got = import("no-cluster-dns", EXAMPLE, &AksOptions::default()).unwrap_err();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains("ClusterCoreDNS needs the cluster DNS service address"),
        "{got:?}"
    );
}

#[test]
fn vnet_dns_option_wins_and_loops_are_rejected() {
    let mut o = opts();
    o.vnet_dns = vec![sa("10.1.0.4:53")];
    let c = import("vnet-dns", EXAMPLE, &o).unwrap().config;
    assert_eq!(
        c.upstreams["vnetdns-udp-sequential-1000"].servers,
        vec![sa("10.1.0.4:53")]
    );
    o.vnet_dns = vec![sa("169.254.10.10:53")];
    let got = import("vnet-loop", EXAMPLE, &o).unwrap_err();
    assert!(
        got.len() == 1 && got[0].contains("forwarding loop"),
        "{got:?}"
    );
}

#[test]
fn imported_config_round_trips_through_native_toml() {
    let text = include_str!("../testdata/round-trip.json");
    let mut o = opts();
    o.cluster_dns = vec![sa("10.0.0.10:53"), sa("[fd00::a]:53")];
    let c = import("round-trip", text, &o).unwrap().config;
    let rendered = to_toml(&c);
    let t = TestEnv::new("aks-round-trip-parse", "nameserver 1.1.1.1\n");
    assert_eq!(parse(&rendered, "rendered", &t.env), Ok(c), "{rendered}");
}

#[test]
fn load_aks_reads_a_file() {
    let t = TestEnv::new("aks-load", "nameserver 168.63.129.16\n");
    let path = t.dir.join("localdnsconfig.json");
    std::fs::write(&path, EXAMPLE).unwrap();
    let c = load_aks(&path, &opts(), &t.env).unwrap();
    assert_eq!(c.zones.len(), 4);
    assert!(load_aks(&t.dir.join("missing.json"), &opts(), &t.env).is_err());
}

#[test]
fn both_maps_empty_is_an_error() {
    // Found by the aks_json fuzz target: `{}` for both maps imported as a config with no
    // listener and no zone, which the native loader (rightly) refuses.
    let text = r#"{"vnetDNSOverrides": {}, "kubeDNSOverrides": {}}"#;
    let errs = import("empty-maps", text, &opts()).unwrap_err();
    assert!(errs.iter().any(|e| e.contains("no zones")), "{errs:?}");
    let one_empty = r#"{"vnetDNSOverrides": {}, "kubeDNSOverrides": {".": {}}}"#;
    assert!(import("one-empty", one_empty, &opts()).is_ok());
}
