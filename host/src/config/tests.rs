//! Tests of the public loaders: the embedded default, files, and a shared test environment.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A directory of its own for each test, with a resolv.conf holding `nameservers`.
pub(crate) struct TestEnv {
    pub(crate) dir: PathBuf,
    pub(crate) env: LoadEnv,
}

impl TestEnv {
    pub(crate) fn new(name: &str, resolv_conf: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("zonegate-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        std::fs::write(&path, resolv_conf).unwrap();
        TestEnv {
            dir,
            env: LoadEnv { resolv_conf: path },
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn embedded_default_validates() {
    let t = TestEnv::new("default", "nameserver 10.1.2.3\nnameserver 10.1.2.4\n");
    let c = default_config_with(&t.env).unwrap();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].address, "127.0.0.1:5353".parse().unwrap());
    assert!(c.listeners[0].udp && c.listeners[0].tcp);
    assert_eq!(c.listeners[0].view, "default");
    let system = &c.upstreams["system"];
    assert_eq!(
        system.servers,
        vec![
            "10.1.2.3:53".parse().unwrap(),
            "10.1.2.4:53".parse().unwrap()
        ]
    );
    assert_eq!(system.protocol, Protocol::PreferUdp);
    assert_eq!(system.selection, Selection::Sequential);
    assert_eq!(system.max_concurrent, 1000);
    assert_eq!(c.zones.len(), 1);
    assert_eq!(c.zones[0].name.to_string(), ".");
    assert_eq!(c.zones[0].forward, "system");
    let cache = &c.zones[0].cache;
    assert_eq!((cache.max_ttl, cache.servfail_ttl), (3600, 0));
    assert_eq!(cache.serve_stale, ServeStale::Immediate);
    assert_eq!(cache.stale_for, Duration::from_secs(3600));
    assert_eq!(c.observability.metrics, "127.0.0.1:9253".parse().unwrap());
    assert_eq!(c.observability.health, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.observability.ready, "127.0.0.1:8181".parse().unwrap());
    assert!(c.server.workers >= 1);
}

#[test]
fn embedded_default_fails_clearly_without_nameservers() {
    let t = TestEnv::new("default-empty", "# nothing\n");
    let err = default_config_with(&t.env).unwrap_err().to_string();
    assert!(
        err.contains("upstreams.system.servers: no usable nameserver in"),
        "{err}"
    );
}

#[test]
fn reference_file_validates() {
    let t = TestEnv::new("reference", "nameserver 10.0.0.10\n");
    let text = include_str!("../../../docs/config-reference.toml");
    let c = parse(text, "config-reference.toml", &t.env).unwrap();
    assert_eq!(c.zones[0].cache, CacheSettings::default());
    assert_eq!(c.server.allow_clients.len(), 9);
}

#[test]
fn load_reads_files_and_reports_unreadable_ones() {
    let t = TestEnv::new("load", "nameserver 10.0.0.10\n");
    let path = t.dir.join("zonegate.toml");
    std::fs::write(&path, DEFAULT_TOML).unwrap();
    assert!(load_with(&path, &t.env).is_ok());
    let missing = t.dir.join("missing.toml");
    let err = load(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: cannot read", missing.display())),
        "{err}"
    );
}

#[test]
fn to_toml_round_trips_the_default() {
    let t = TestEnv::new(
        "round-default",
        "nameserver 10.0.0.10\nnameserver fe80::1%3\n",
    );
    let c = default_config_with(&t.env).unwrap();
    let text = to_toml(&c);
    assert_eq!(parse(&text, "rendered", &t.env), Ok(c), "{text}");
}

#[test]
fn to_toml_round_trips_a_rich_config() {
    let t = TestEnv::new("round-rich", "nameserver 10.0.0.10\n");
    let text = include_str!("testdata/rich.toml");
    let c = parse(text, "rich.toml", &t.env).unwrap();
    let rendered = to_toml(&c);
    assert_eq!(parse(&rendered, "rendered", &t.env), Ok(c), "{rendered}");
}

#[test]
fn oci_section_defaults_and_errors() {
    let t = TestEnv::new("oci", "nameserver 10.0.0.10\n");
    let c = default_config_with(&t.env).unwrap();
    assert_eq!(c.oci, OciOptions::default());
    assert_eq!(c.oci.refresh, Duration::from_secs(300));
    let frac = parse("[oci]\njitter = 0.25\n", "j.toml", &t.env);
    // A config without listeners fails, but not because of [oci].
    let errs = frac.unwrap_err().to_string();
    assert!(!errs.contains("oci"), "{errs}");
    let cases = [
        (
            "[oci]\nrefresh = \"0s\"\n",
            "oci.refresh: must be greater than 0",
        ),
        (
            "[oci]\njitter = 1.5\n",
            "jitter fraction 1.5 is not between 0 and 1",
        ),
        ("[oci]\njitter = \"soon\"\n", "invalid duration"),
        ("[oci]\ninsecure = [\"http://r:5000\"]\n", "oci.insecure[0]"),
        (
            "[oci]\nmax_cache_size = 0\n",
            "oci.max_cache_size: must be greater than 0",
        ),
        ("[oci]\nbogus = 1\n", "unknown field"),
    ];
    for (text, want) in cases {
        let err = parse(text, "o.toml", &t.env).unwrap_err().to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
    let d = Jitter::Fraction(0.5).max_delay(Duration::from_secs(10));
    assert_eq!(d, Duration::from_secs(5));
    assert_eq!(
        Jitter::Duration(Duration::from_secs(3)).max_delay(Duration::from_secs(10)),
        Duration::from_secs(3)
    );
}

#[test]
fn to_toml_keeps_idn_zone_names_in_ascii() {
    // Found by the aks_json fuzz target: an `xn--` zone rendered in Unicode, which the
    // parser (rightly) rejects, so `zonegate import` produced a config that did not load.
    let t = TestEnv::new("round-idn", "nameserver 10.0.0.10\n");
    let text = r#"
[[listen]]
address = "127.0.0.1:5300"
view = "default"
[upstreams.up]
servers = ["10.0.0.10:53"]
[[zone]]
name = "xn--bcher-kva.example"
forward = "up"
"#;
    let c = parse(text, "idn.toml", &t.env).unwrap();
    let rendered = to_toml(&c);
    assert!(
        rendered.contains("\"xn--bcher-kva.example.\""),
        "{rendered}"
    );
    assert_eq!(parse(&rendered, "rendered", &t.env), Ok(c), "{rendered}");
}
