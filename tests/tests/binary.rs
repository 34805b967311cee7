//! End to end: the real `zonegate` binary, queried with `dig` (bind9-dnsutils), forwarding to
//! a real bind9 `named` and to the testkit's authoritative server. Needs
//! `cargo build -p zonegate` first (scripts/test.sh does it).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use zonegate_testkit::{AuthServer, Named, Signal, Zonegate, minimal_config};

/// `dig +short` (or the full answer with `+tcp` etc. in `extra`) against `server`.
fn dig(server: SocketAddr, name: &str, qtype: &str, extra: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            name,
            qtype,
            "+time=2",
            "+tries=1",
        ])
        .args(extra)
        .output()
        .expect("dig is installed (bind9-dnsutils)");
    assert!(
        out.status.success(),
        "dig failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const ZONE: &str = "$TTL 300
@   IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60
@   IN NS  ns.example.test.
ns  IN A   127.0.0.1
www IN A   192.0.2.10
www IN AAAA 2001:db8::10
alias IN CNAME www
";

#[test]
fn dig_resolves_through_zonegate_from_a_real_bind9() {
    let Some(named) = Named::start(0, &[("example.test.", ZONE)]).unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "bind9 must be installed in CI"
        );
        return;
    };
    let zg = Zonegate::start(&minimal_config(named.addr())).unwrap();
    assert_eq!(
        dig(zg.addr(), "www.example.test", "A", &["+short"]).trim(),
        "192.0.2.10"
    );
    assert_eq!(
        dig(zg.addr(), "www.example.test", "AAAA", &["+short", "+tcp"]).trim(),
        "2001:db8::10"
    );
    let cname = dig(zg.addr(), "alias.example.test", "A", &["+short"]);
    assert_eq!(
        cname.lines().collect::<Vec<_>>(),
        vec!["www.example.test.", "192.0.2.10"]
    );
    let nx = dig(zg.addr(), "nope.example.test", "A", &[]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    // A cached answer: its TTL has been aged or equals the original, never above it.
    let again = dig(zg.addr(), "www.example.test", "A", &["+noall", "+answer"]);
    let ttl: u32 = again.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(ttl <= 300, "{again}");
    let hits = zg
        .metric("coredns_cache_hits_total", &[("type", "success")])
        .unwrap();
    assert_eq!(hits, Some(1.0));
}

#[test]
fn health_ready_and_metrics_endpoints_answer() {
    let up = AuthServer::builder()
        .a("www.example.test.", 60, Ipv4Addr::new(192, 0, 2, 1))
        .start()
        .unwrap();
    let zg = Zonegate::start(&minimal_config(up.addr())).unwrap();
    assert_eq!(zg.health_status().unwrap(), 200);
    assert_eq!(zg.ready_status().unwrap(), 200);
    dig(zg.addr(), "www.example.test", "A", &["+short"]);
    let text = zg.metrics_text().unwrap();
    for family in [
        "coredns_dns_requests_total",
        "coredns_dns_responses_total",
        "coredns_dns_request_duration_seconds",
        "coredns_cache_misses_total",
        "coredns_build_info",
    ] {
        assert!(text.contains(family), "{family} missing from /metrics");
    }
    assert!(
        !text.contains("www.example.test"),
        "no query names in labels"
    );
}

#[test]
fn the_configured_log_format_is_used() {
    let up = AuthServer::builder().start().unwrap();
    let config = minimal_config(up.addr()).replace(
        "[observability]\n",
        "[observability]\nlog_format = \"json\"\n",
    );
    assert!(config.contains("log_format = \"json\""));
    let zg = Zonegate::start(&config).unwrap();
    assert_eq!(zg.ready_status().unwrap(), 200);
    let logs = zg.stderr();
    let first = logs.lines().next().unwrap_or_default();
    let line: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("not JSON ({e}): {logs}"));
    assert!(line.get("level").is_some(), "{first}");
}

#[test]
fn sighup_reloads_and_sigterm_drains_and_exits_zero() {
    let up = AuthServer::builder()
        .a("www.example.test.", 60, Ipv4Addr::new(192, 0, 2, 1))
        .start()
        .unwrap();
    let mut zg = Zonegate::start(&minimal_config(up.addr())).unwrap();
    let broken =
        minimal_config(up.addr()).replace("forward = \"upstream\"", "forward = \"missing\"");
    zg.write_config(&broken).unwrap();
    zg.send_signal(Signal::Hup).unwrap();
    assert!(
        zg.wait_for_log("reload rejected", Duration::from_secs(5)),
        "{}",
        zg.stderr()
    );
    assert_eq!(
        dig(zg.addr(), "www.example.test", "A", &["+short"]).trim(),
        "192.0.2.1"
    );
    zg.send_signal(Signal::Term).unwrap();
    let status = zg.wait(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "exit status {status:?}: {}", zg.stderr());
}

#[test]
fn check_reports_every_error_with_its_path_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let bad = minimal_config("127.0.0.1:53".parse().unwrap())
        .replace("forward = \"upstream\"", "forward = \"missing\"")
        .replace(
            "view = \"default\"\n\n[upstreams",
            "view = \"default\"\n\n[upstreams.other]\nservers = [\"not-an-ip\"]\n\n[upstreams",
        );
    std::fs::write(&path, bad).unwrap();
    let out = Zonegate::command()
        .unwrap()
        .args(["check"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing"), "{err}");
    assert!(err.contains("not-an-ip"), "{err}");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, minimal_config("127.0.0.1:53".parse().unwrap())).unwrap();
    let out = Zonegate::command()
        .unwrap()
        .args(["check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn import_aks_prints_native_toml_that_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("localdnsconfig.json");
    std::fs::write(
        &json,
        r#"{"mode": "Preferred",
            "vnetDNSOverrides": {".": {"forwardDestination": "VnetDNS", "serveStale": "Disable"}},
            "kubeDNSOverrides": {"cluster.local": {"protocol": "ForceTCP", "serveStale": "Immediate"}}}"#,
    )
    .unwrap();
    let out = Zonegate::command()
        .unwrap()
        .args([
            "import-aks",
            "--cluster-dns",
            "10.0.0.10",
            "--vnet-dns",
            "168.63.129.16",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    assert!(
        toml.contains("169.254.10.10:53") && toml.contains("169.254.10.11:53"),
        "{toml}"
    );
    assert!(
        toml.contains("10.0.0.10:53") && toml.contains("force-tcp"),
        "{toml}"
    );
    let native = dir.path().join("zonegate.toml");
    std::fs::write(&native, &toml).unwrap();
    let check = Zonegate::command()
        .unwrap()
        .arg("check")
        .arg(&native)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let verify_tcp = r#"{"vnetDNSOverrides": {"cluster.local": {"protocol": "ForceTCP", "serveStale": "Verify"}}}"#;
    std::fs::write(&json, verify_tcp).unwrap();
    let bad = Zonegate::command()
        .unwrap()
        .args(["check", "--aks", "--cluster-dns", "10.0.0.10"])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(64),
        "ForceTCP with Verify is rejected"
    );
}
