//! One `decide` through the engine: the chain, the per-worker instance, the WIT boundary
//! under epoch interruption and the policy's own work. Target (issue 3): ≤ 0.5 µs median
//! for an allowlist of 20 rules.
//!
//!     ZONEGATE_WASM_DIR=target/wasm cargo bench -p zonegate --bench policy
//!
//! Needs `$ZONEGATE_WASM_DIR` with `guest_probe.wasm` (tests/guests) and, when
//! present, `fqdn_allowlist.wasm` (policies/); without the variable the bench does nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use zonegate::config::{OnError, PolicySource, PolicySpec};
use zonegate::metrics::Metrics;
use zonegate::policy::{EngineOptions, Policies, PolicyEngine, PolicyQuery, Transport};

/// 20 rules: 10 exact names and 10 one-label wildcards.
fn rules() -> Vec<String> {
    let exact = (0..10).map(|i| format!("api{i}.example.com."));
    let wild = (0..10).map(|i| format!("*.svc{i}.example.net."));
    exact.chain(wild).collect()
}

fn spec(name: &str, path: &Path, settings: String) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        source: PolicySource::File(path.to_owned()),
        on_error: OnError::Deny,
        timeout: Duration::from_millis(1),
        memory_limit: 16 << 20,
        settings,
    }
}

fn probe_settings(cache_for: Option<u32>) -> String {
    let rules = serde_json::to_string(&rules()).unwrap_or_default();
    let hint = cache_for
        .map(|n| format!(r#","cache_for":{n}"#))
        .unwrap_or_default();
    format!(r#"{{"mode":"allowlist","allow":{rules}{hint}}}"#)
}

/// fqdn-allowlist settings; `cache_for: 0` turns its memoization hint off.
fn fqdn_settings(cache_for: u32) -> String {
    if let Ok(custom) = std::env::var("ZONEGATE_BENCH_FQDN_SETTINGS") {
        return custom;
    }
    let names: Vec<String> = rules()
        .iter()
        .map(|r| format!(r#"{{"matchPattern":"{r}"}}"#))
        .collect();
    let names = names.join(",");
    format!(r#"{{"rules":[{{"toFQDNs":[{names}]}}],"cache_for":{cache_for}}}"#)
}

fn bench(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("ZONEGATE_WASM_DIR").map(PathBuf::from) else {
        return;
    };
    // Cargo runs benches in host/: a relative directory is meant from the workspace root.
    let dir = if dir.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir)
    } else {
        dir
    };
    let engine = PolicyEngine::new(EngineOptions::default());
    let mut specs = BTreeMap::new();
    let probe = dir.join("guest_probe.wasm");
    specs.insert(
        "probe".to_string(),
        spec("probe", &probe, probe_settings(None)),
    );
    specs.insert(
        "probe-memo".to_string(),
        spec("probe-memo", &probe, probe_settings(Some(60))),
    );
    let metrics = Metrics::new();
    let fqdn = dir.join("fqdn_allowlist.wasm");
    if fqdn.is_file() {
        let mut with_fqdn = specs.clone();
        with_fqdn.insert(
            "fqdn-memo".to_string(),
            spec("fqdn-memo", &fqdn, fqdn_settings(60)),
        );
        with_fqdn.insert("fqdn".to_string(), spec("fqdn", &fqdn, fqdn_settings(0)));
        // Settings of the real policy may differ from the guess: then bench the probe only.
        match Policies::build(&engine, &with_fqdn, None, &metrics) {
            Ok(_) => specs = with_fqdn,
            Err(e) => eprintln!("skipping fqdn_allowlist (set ZONEGATE_BENCH_FQDN_SETTINGS): {e}"),
        }
    }
    let policies = Policies::build(&engine, &specs, None, &metrics).expect("build");
    let q = PolicyQuery {
        name: "www.svc7.example.net.",
        qtype: 1,
        qclass: 1,
        client: "10.1.2.3".parse().expect("ip"),
        view: "kube",
        zone: ".",
        transport: Transport::Udp,
    };
    for name in specs.keys() {
        let chain = policies.chain(std::slice::from_ref(name));
        c.bench_function(&format!("decide/{name}-20-rules"), |b| {
            b.iter(|| chain.decide(&q))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
