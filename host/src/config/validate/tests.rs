use std::time::Duration;

use super::super::tests::TestEnv;
use crate::config::{CacheSettings, Config, OnError, PolicySource, Protocol, ServeStale, parse};

const BASE: &str = r#"
[[listen]]
address = "127.0.0.1:5353"

[upstreams.up]
servers = ["10.0.0.10"]
"#;

fn check(name: &str, text: &str) -> Result<Config, Vec<String>> {
    let t = TestEnv::new(
        name,
        "nameserver 10.9.9.9\noptions ndots:5\nnameserver 10.9.9.8:5353\n",
    );
    parse(text, "z.toml", &t.env).map_err(|e| e.errors.iter().map(ToString::to_string).collect())
}

fn zone(extra: &str) -> String {
    format!("{BASE}\n[[zone]]\nname = \".\"\nforward = \"up\"\n{extra}\n")
}

#[test]
fn minimal_config_gets_every_default() {
    let c = check("minimal", &zone("")).unwrap();
    assert!(c.server.workers >= 1);
    assert_eq!(c.server.drain_timeout, Duration::from_secs(5));
    assert_eq!(c.server.udp_payload_size, 1232);
    assert_eq!(c.server.tcp_max_connections, 1000);
    assert_eq!(c.server.allow_clients.len(), 9);
    assert_eq!(c.observability.metrics, "0.0.0.0:9253".parse().unwrap());
    assert_eq!(c.listeners[0].view, "default");
    let up = &c.upstreams["up"];
    assert_eq!(up.servers, vec!["10.0.0.10:53".parse().unwrap()]);
    assert_eq!(
        (up.protocol, up.max_concurrent, up.max_fails),
        (Protocol::PreferUdp, 1000, 2)
    );
    assert_eq!(
        (up.timeout, up.health_check, up.expire),
        (
            Duration::from_secs(2),
            Duration::from_millis(500),
            Duration::from_secs(10)
        )
    );
    assert_eq!(c.zones[0].view, "default");
    assert_eq!(c.zones[0].cache, CacheSettings::default());
    assert!(c.policies.is_empty());
}

#[test]
fn zone_cache_overrides_defaults_and_global_capacity() {
    let text = format!(
        "[cache]\ncapacity = 500\n{BASE}\n\
         [[zone]]\nname = \".\"\nforward = \"up\"\n\
         [[zone]]\nname = \"Example.COM\"\nforward = \"up\"\n\
         [zone.cache]\ncapacity = 7\nmax_ttl = 60\nserve_stale = \"disable\"\nstale_for = \"10m\"\nverify_timeout = \"1s\"\n\
         [[zone]]\nname = \"cluster.local\"\nforward = \"up\"\ncache = {{ serve_stale = \"verify\", enabled = false }}\n"
    );
    let c = check("zone-cache", &text).unwrap();
    assert_eq!(c.zones[0].cache.capacity, 500);
    let z = &c.zones[1];
    assert_eq!(z.name.to_string(), "example.com.");
    assert_eq!(
        (z.cache.capacity, z.cache.max_ttl, z.cache.serve_stale),
        (7, 60, ServeStale::Disabled)
    );
    assert_eq!(
        (z.cache.stale_for, z.cache.verify_timeout),
        (Duration::from_secs(600), Duration::from_secs(1))
    );
    assert_eq!(z.cache.min_ttl, CacheSettings::default().min_ttl);
    assert_eq!(
        (c.zones[2].cache.serve_stale, c.zones[2].cache.enabled),
        (ServeStale::Verify, false)
    );
}

#[test]
fn resolv_conf_servers_expand_in_place() {
    let text = zone("").replace(
        r#"["10.0.0.10"]"#,
        r#"["1.1.1.1", "resolv.conf", "[::1]:5300"]"#,
    );
    let c = check("resolv-expand", &text).unwrap();
    let want: Vec<std::net::SocketAddr> =
        ["1.1.1.1:53", "10.9.9.9:53", "10.9.9.8:5353", "[::1]:5300"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
    assert_eq!(c.upstreams["up"].servers, want);
}

#[test]
fn force_tcp_with_verify_is_allowed_natively() {
    let text = zone("cache = { serve_stale = \"verify\" }")
        .replace("servers = [", "protocol = \"force-tcp\"\nservers = [");
    let c = check("tcp-verify", &text).unwrap();
    assert_eq!(c.upstreams["up"].protocol, Protocol::ForceTcp);
    assert_eq!(c.zones[0].cache.serve_stale, ServeStale::Verify);
}

#[test]
fn policies_and_settings_become_json() {
    let text = format!(
        "{}\n[policies.egress]\nsource = \"file:/p/a.wasm\"\nmemory_limit = \"32MiB\"\ntimeout = \"2ms\"\n\
         settings = {{ rules = [{{ allow = [\"*.stripe.com\"], n = 1 }}] }}\n\
         [policies.oci]\nsource = \"oci://ghcr.io/z/p:1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\non_error = \"allow\"\n",
        zone("policies = [\"egress\", \"oci\"]")
    );
    let c = check("policies", &text).unwrap();
    let p = &c.policies["egress"];
    assert_eq!(p.source, PolicySource::File("/p/a.wasm".into()));
    assert_eq!(
        (p.memory_limit, p.timeout, p.on_error),
        (32 << 20, Duration::from_millis(2), OnError::Deny)
    );
    let settings: serde_json::Value = serde_json::from_str(&p.settings).unwrap();
    assert_eq!(
        settings,
        serde_json::json!({"rules": [{"allow": ["*.stripe.com"], "n": 1}]})
    );
    let o = &c.policies["oci"];
    assert_eq!(
        (o.settings.as_str(), o.on_error, o.memory_limit),
        ("{}", OnError::Allow, 16 << 20)
    );
    assert_eq!(c.zones[0].policies, vec!["egress", "oci"]);
}

#[test]
fn workers_are_kept_when_set() {
    let c = check("workers", &format!("[server]\nworkers = 3\n{}", zone(""))).unwrap();
    assert_eq!(c.server.workers, 3);
}

/// Each case: the config text and every error it must produce (prefixes), in order.
#[test]
fn every_error_is_reported_with_its_path() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "no-listener",
            "[upstreams.up]\nservers = [\"1.1.1.1\"]\n".into(),
            vec!["z.toml: listen: at least one [[listen]]"],
        ),
        (
            "dup-listen",
            format!(
                "{BASE}[[listen]]\naddress = \"127.0.0.1:5353\"\nview = \"x\"\n[[listen]]\naddress = \"127.0.0.1:53\"\nudp = false\ntcp = false\n"
            ),
            vec![
                "z.toml: listen[1].address: 127.0.0.1:5353 is already used by listen[0]",
                "z.toml: listen[2]: udp and tcp are both false",
            ],
        ),
        (
            "refs",
            format!(
                "{BASE}[[zone]]\nname = \".\"\nforward = \"up\"\n[[zone]]\nname = \"corp.example\"\nview = \"kube\"\nforward = \"up\"\n\
                 [[zone]]\nname = \"CORP.example.\"\nview = \"kube\"\nforward = \"corp\"\npolicies = [\"nope\"]\n"
            ),
            vec![
                "z.toml: zone[1].view: no [[listen]] serves view \"kube\"",
                "z.toml: zone[2]: zone \"corp.example.\" in view \"kube\" is already defined by zone[1]",
                "z.toml: zone[2].view: no [[listen]] serves view \"kube\"",
                "z.toml: zone[2].forward: unknown upstream \"corp\"",
                "z.toml: zone[2].policies[0]: unknown policy \"nope\"",
            ],
        ),
        (
            "ranges",
            format!(
                "[server]\nudp_payload_size = 100\ntcp_max_connections = 0\n{}\n[upstreams.z]\nservers = []\nmax_concurrent = 0\ntimeout = \"0s\"\n\
                 [policies.p]\nsource = \"file:/x\"\nmemory_limit = 1024\ntimeout = \"0ms\"\n",
                zone(
                    "cache = { capacity = 0, min_ttl = 10, max_ttl = 5, serve_stale = \"verify\", verify_timeout = \"0s\" }"
                )
            ),
            vec![
                "z.toml: server.udp_payload_size: must be at least 512",
                "z.toml: server.tcp_max_connections: must be greater than 0",
                "z.toml: upstreams.z.servers: at least one server",
                "z.toml: upstreams.z.max_concurrent: must be greater than 0",
                "z.toml: upstreams.z.timeout: must be greater than 0",
                "z.toml: policies.p.timeout: must be greater than 0",
                "z.toml: policies.p.memory_limit: must be at least 64KiB",
                "z.toml: zone[0].cache.capacity: must be greater than 0",
                "z.toml: zone[0].cache.min_ttl: 10 is above max_ttl 5",
                "z.toml: zone[0].cache.verify_timeout: must be greater than 0",
            ],
        ),
        (
            "loop",
            zone("").replace("\"10.0.0.10\"", "\"127.0.0.1:5353\""),
            vec!["z.toml: upstreams.up.servers: 127.0.0.1:5353 is one of our own listeners"],
        ),
        (
            "typed",
            format!(
                "[server]\ndrain_timeout = 5\n[observability]\nmetrics = \"localhost\"\nlog_format = \"xml\"\n{BASE}\
                 [[zone]]\nname = \"bad name\"\nforward = \"up\"\n[[zone]]\nname = \".\"\nforward = \"up\"\ncache = {{ serve_stale = \"sometimes\" }}\n\
                 [policies.p]\nsource = \"http://x\"\n[policies.q]\nsource = \"file:/q\"\nmemory_limit = \"16 furlongs\"\n"
            ),
            vec![
                "z.toml:5:14: observability: unknown variant `xml`, expected `text` or `json`",
                "z.toml:20:10: policies.p: invalid policy source \"http://x\"",
                "z.toml:23:16: policies.q: invalid size \"16 furlongs\"",
                "z.toml:2:17: server: invalid type: integer `5`, expected a duration like \"2s\"",
                "z.toml:13:8: zone[0]: invalid zone name \"bad name\"",
                "z.toml:18:25: zone[1]: unknown variant `sometimes`, expected one of `immediate`, `verify`, `disable`, `disabled`",
            ],
        ),
        (
            "unknown-keys",
            format!(
                "[server]\nworkerz = 1\n[listen]\naddress = \"127.0.0.1:1\"\n{}",
                zone("").replace("[[listen]]\naddress = \"127.0.0.1:5353\"", "")
            ),
            vec![
                "z.toml:3:1: listen: expected an array of tables",
                "z.toml:2:1: server: unknown field `workerz`",
            ],
        ),
    ];
    for (name, text, want) in cases {
        let got = check(name, &text).err().unwrap_or_default();
        assert_eq!(got.len(), want.len(), "{name}: {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(g.starts_with(w), "{name}: got {g:?}, want prefix {w:?}");
        }
    }
}

#[test]
fn empty_resolv_conf_is_an_error() {
    let t = TestEnv::new("resolv-empty", "search example.com\n");
    let text = zone("").replace("\"10.0.0.10\"", "\"resolv.conf\"");
    let err = parse(&text, "z.toml", &t.env).unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert!(
        err.errors[0]
            .to_string()
            .starts_with("z.toml: upstreams.up.servers: no usable nameserver"),
        "{err}"
    );
}

#[test]
fn a_failed_element_does_not_cause_follow_up_errors() {
    // The upstream and the listener fail to parse: no "unknown upstream" or "no listener" noise.
    let text = "[[listen]]\naddress = \"nope\"\n[upstreams.up]\nservers = [\"x\"]\n[[zone]]\nname = \".\"\nforward = \"up\"\n";
    let got = check("no-follow-up", text).unwrap_err();
    assert_eq!(got.len(), 2, "{got:#?}");
}
