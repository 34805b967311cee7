//! The policy engine against real components: the test guests of `tests/guests`
//! (`guest_probe.wasm`, `guest_wrong_world.wasm`) built for wasm32-wasip2 into
//! `$ZONEGATE_WASM_DIR` by `scripts/build-policies.sh`. Without that variable the tests return
//! early (scripts/test.sh sets it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use zonegate::config::{OnError, PolicySource, PolicySpec};
use zonegate::metrics::Metrics;
use zonegate::policy::{
    DenyKind, EngineOptions, Policies, PolicyEngine, PolicyError, PolicyQuery, RData, Transport,
    Verdict, check_component, instances_on_this_thread, test_decide,
};
use zonegate_testkit::{read_file, wasm_dir, wasm_variant};

fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| PolicyEngine::new(EngineOptions::default()))
}

fn spec(name: &str, path: &Path, settings: &str, on_error: OnError) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        source: PolicySource::File(path.to_owned()),
        on_error,
        // Generous: tests share two busy cores, and a preempted call runs out of epoch
        // ticks. Deadline tests set the production default of 1 ms.
        timeout: Duration::from_millis(100),
        memory_limit: 16 << 20,
        settings: settings.into(),
    }
}

fn probe(dir: &Path, name: &str, settings: &str, on_error: OnError) -> (String, PolicySpec) {
    (
        name.to_owned(),
        spec(name, &dir.join("guest_probe.wasm"), settings, on_error),
    )
}

fn timeout(ms: u64, (name, mut spec): (String, PolicySpec)) -> (String, PolicySpec) {
    spec.timeout = Duration::from_millis(ms);
    (name, spec)
}

fn build(
    specs: Vec<(String, PolicySpec)>,
    metrics: &Arc<Metrics>,
) -> Result<Policies, PolicyError> {
    let specs: BTreeMap<_, _> = specs.into_iter().collect();
    Policies::build(engine(), &specs, None, metrics)
}

fn query(name: &str) -> PolicyQuery<'_> {
    PolicyQuery {
        name,
        qtype: 1,
        qclass: 1,
        client: "10.1.2.3".parse().expect("ip"),
        view: "kube",
        zone: ".",
        transport: Transport::Udp,
    }
}

fn chain(p: &Policies, names: &[&str]) -> zonegate::policy::PolicyChain {
    p.chain(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

/// The TXT payload of a `count` probe's answer: calls seen by the instance that answered.
fn count(v: &Verdict) -> String {
    match v {
        Verdict::Answer(r) => match &r[0].data {
            RData::Txt(t) => t.join(""),
            other => panic!("not TXT: {other:?}"),
        },
        other => panic!("not an answer: {other:?}"),
    }
}

fn errors(metrics: &Metrics, policy: &str, kind: &str) -> u64 {
    let needle = format!("zonegate_policy_errors_total{{policy=\"{policy}\",kind=\"{kind}\"}} ");
    let text = metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |n| n.trim().parse().expect("count"))
}

#[test]
fn chain_runs_in_order_and_first_non_allow_wins() {
    let Some(dir) = wasm_dir() else { return };
    let m = Metrics::new();
    let p = build(
        vec![
            probe(
                &dir,
                "allow",
                r#"{"mode":"allow","log":true}"#,
                OnError::Deny,
            ),
            probe(
                &dir,
                "nx",
                r#"{"mode":"deny","kind":"nxdomain"}"#,
                OnError::Deny,
            ),
            probe(
                &dir,
                "nodata",
                r#"{"mode":"deny","kind":"nodata"}"#,
                OnError::Deny,
            ),
            probe(
                &dir,
                "route",
                r#"{"mode":"route","upstream":"corp","routes":[{"upstream":"corp"}]}"#,
                OnError::Deny,
            ),
            probe(&dir, "answer", r#"{"mode":"answer"}"#, OnError::Deny),
            probe(
                &dir,
                "list",
                r#"{"mode":"allowlist","allow":["*.stripe.com.","api.example.com."]}"#,
                OnError::Deny,
            ),
        ],
        &m,
    )
    .expect("build");
    let a = Verdict::Answer(vec![zonegate::policy::Record {
        name: "www.example.".into(),
        ttl: 60,
        data: RData::A([10, 0, 0, 1].into()),
    }]);
    let cases: Vec<(&[&str], &str, Verdict)> = vec![
        (&[], "www.example.", Verdict::Allow),
        (&["allow"], "www.example.", Verdict::Allow),
        (
            &["allow", "nx", "route"],
            "www.example.",
            Verdict::Deny(DenyKind::NxDomain),
        ),
        (
            &["nodata", "nx"],
            "www.example.",
            Verdict::Deny(DenyKind::NoData),
        ),
        (
            &["allow", "route"],
            "www.example.",
            Verdict::Route("corp".into()),
        ),
        (&["answer", "nx"], "www.example.", a),
        (&["list"], "api.stripe.com.", Verdict::Allow),
        (&["list"], "api.example.com.", Verdict::Allow),
        (
            &["list"],
            "a.b.stripe.com.",
            Verdict::Deny(DenyKind::Refused),
        ),
        (
            &["list", "route"],
            "stripe.com.",
            Verdict::Deny(DenyKind::Refused),
        ),
    ];
    for (names, qname, want) in cases {
        let c = chain(&p, names);
        assert_eq!(c.is_empty(), names.is_empty());
        assert_eq!(c.decide(&query(qname)), want, "{names:?} {qname}");
    }
    assert_eq!(p.route_targets("route"), vec!["corp".to_string()]);
    assert!(p.route_targets("nx").is_empty());
    let text = m.encode();
    assert!(
        text.contains(r#"zonegate_policy_decisions_total{policy="nx",verdict="deny"} 1"#),
        "{text}"
    );
    let digest = p.digest("nx").expect("digest");
    assert!(text.contains(&format!(
        r#"zonegate_policy_info{{policy="nx",digest="{digest}"}} 1"#
    )));
}

/// World 0.2.0, through an SDK-built guest that echoes what it was asked: view and zone
/// (sent only when they change) are right as they change, routes travel as indices into the
/// groups `init` declared, and an answer's records come from the second export.
#[test]
fn world_0_2_0_carries_queries_routes_and_answers() {
    let Some(dir) = wasm_dir() else { return };
    let bytes = read_file(&dir, "guest_echo.wasm");
    let info = check_component(engine(), &bytes).expect("echo");
    assert_eq!(info.world, "zonegate:policy/policy@0.2.0");

    let m = Metrics::new();
    let echo = spec(
        "echo",
        &dir.join("guest_echo.wasm"),
        r#"{"routes": ["corp", "onprem"]}"#,
        OnError::Deny,
    );
    let p = build(vec![("echo".into(), echo)], &m).expect("load");
    assert_eq!(p.route_targets("echo"), ["corp", "onprem"]);
    let c = chain(&p, &["echo"]);
    let seen = |q: &PolicyQuery<'_>| count(&c.decide(q));

    let v6: std::net::IpAddr = "fd00:2::9".parse().expect("ip");
    let cases = [
        ("kube", ".", "10.1.2.3".parse().expect("ip"), Transport::Udp),
        ("kube", ".", v6, Transport::Tcp),
        ("vnet", ".", v6, Transport::Udp),
        ("vnet", "echo.test.", v6, Transport::Udp),
        (
            "kube",
            "echo.test.",
            "10.1.2.3".parse().expect("ip"),
            Transport::Udp,
        ),
        ("kube", ".", "10.1.2.3".parse().expect("ip"), Transport::Udp),
    ];
    for (view, zone, client, transport) in cases {
        let q = PolicyQuery {
            view,
            zone,
            client,
            transport,
            qtype: 28,
            ..query("a.echo.test.")
        };
        let t = match transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        assert_eq!(
            seen(&q),
            format!("a.echo.test. 28 1 {client} {view} {zone} {t} -"),
            "{view} {zone}"
        );
    }

    let routed = c.decide(&query("x.onprem.route.test."));
    assert_eq!(routed, Verdict::Route("onprem".into()));
    // Not declared: a name that is no group, so the pipeline answers SERVFAIL.
    let Verdict::Route(undeclared) = c.decide(&query("x.elsewhere.route.test.")) else {
        panic!("not a route");
    };
    assert!(undeclared.starts_with("(route #"), "{undeclared}");
    assert_eq!(c.decide(&query("www.example.com.")), Verdict::Allow);
}

#[test]
fn init_rejection_and_wrong_world_fail_the_load() {
    let Some(dir) = wasm_dir() else { return };
    let m = Metrics::new();
    let err = build(
        vec![probe(
            &dir,
            "egress",
            r#"{"reject":"rules: expected a list"}"#,
            OnError::Deny,
        )],
        &m,
    )
    .err()
    .expect("rejected");
    assert_eq!(
        err.to_string(),
        "policy egress: init rejected settings: rules: expected a list"
    );

    let wrong = spec(
        "wrong",
        &dir.join("guest_wrong_world.wasm"),
        "{}",
        OnError::Deny,
    );
    let err = build(vec![("wrong".into(), wrong)], &m)
        .err()
        .expect("wrong world");
    assert!(matches!(err, PolicyError::WrongWorld { .. }), "{err}");
    assert!(
        err.to_string().contains("zonegate:policy/policy@0.1.0"),
        "{err}"
    );

    let too_big = r#"{"init_alloc":33554432}"#;
    let err = build(vec![probe(&dir, "big", too_big, OnError::Deny)], &m)
        .err()
        .expect("memory");
    assert!(
        matches!(err, PolicyError::Guest { kind: "memory", .. }),
        "{err}"
    );

    let missing = spec("gone", &dir.join("no-such.wasm"), "{}", OnError::Deny);
    let err = build(vec![("gone".into(), missing)], &m)
        .err()
        .expect("missing file");
    assert!(matches!(err, PolicyError::Read { .. }), "{err}");
}

#[test]
fn check_and_test_decide_for_the_cli() {
    let Some(dir) = wasm_dir() else { return };
    let info = check_component(engine(), &read_file(&dir, "guest_probe.wasm")).expect("probe");
    assert_eq!(info.world, "zonegate:policy/policy@0.1.0");
    assert!(info.digest.starts_with("sha256:"));
    assert!(
        info.imports
            .iter()
            .any(|i| i == "zonegate:policy/host@0.1.0"),
        "{:?}",
        info.imports
    );
    let err =
        check_component(engine(), &read_file(&dir, "guest_wrong_world.wasm")).expect_err("wrong");
    assert!(matches!(err, PolicyError::WrongWorld { .. }), "{err}");
    let err = check_component(engine(), b"\0asm not really").expect_err("garbage");
    assert!(matches!(err, PolicyError::Compile { .. }), "{err}");

    let bytes = read_file(&dir, "guest_probe.wasm");
    let v = test_decide(
        engine(),
        &bytes,
        r#"{"mode":"deny","kind":"nxdomain"}"#,
        &query("a."),
    );
    assert_eq!(v.expect("decide"), Verdict::Deny(DenyKind::NxDomain));
    let err = test_decide(engine(), &bytes, r#"{"mode":"loop"}"#, &query("a.")).err();
    assert!(
        matches!(
            err,
            Some(PolicyError::Guest {
                kind: "timeout",
                ..
            })
        ),
        "{err:?}"
    );
    let err = test_decide(engine(), &bytes, r#"{"reject":"no"}"#, &query("a.")).err();
    assert!(
        matches!(err, Some(PolicyError::InitRejected { .. })),
        "{err:?}"
    );
}

#[test]
fn misbehaving_guests_are_contained_and_apply_on_error() {
    let Some(dir) = wasm_dir() else { return };
    let m = Metrics::new();
    let p = build(
        vec![
            timeout(
                1,
                probe(&dir, "loop-deny", r#"{"mode":"loop"}"#, OnError::Deny),
            ),
            timeout(
                1,
                probe(&dir, "loop-allow", r#"{"mode":"loop"}"#, OnError::Allow),
            ),
            probe(&dir, "alloc", r#"{"mode":"alloc"}"#, OnError::Deny),
            probe(&dir, "trap", r#"{"mode":"trap"}"#, OnError::Deny),
            probe(
                &dir,
                "nx",
                r#"{"mode":"deny","kind":"nxdomain"}"#,
                OnError::Deny,
            ),
        ],
        &m,
    )
    .expect("build");
    let cases = [
        (
            &["loop-deny"][..],
            Verdict::Deny(DenyKind::Refused),
            "loop-deny",
            "timeout",
        ),
        (
            &["loop-allow", "nx"][..],
            Verdict::Deny(DenyKind::NxDomain),
            "loop-allow",
            "timeout",
        ),
        (
            &["alloc"][..],
            Verdict::Deny(DenyKind::Refused),
            "alloc",
            "memory",
        ),
        (
            &["trap"][..],
            Verdict::Deny(DenyKind::Refused),
            "trap",
            "trap",
        ),
    ];
    for (names, want, policy, kind) in cases {
        let start = Instant::now();
        assert_eq!(
            chain(&p, names).decide(&query("a.example.")),
            want,
            "{names:?}"
        );
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{names:?}: {:?}",
            start.elapsed()
        );
        assert_eq!(
            errors(&m, policy, kind),
            1,
            "{policy} {kind}\n{}",
            m.encode()
        );
    }
}

#[test]
fn backoff_bounds_reinstantiation_after_a_query_of_death() {
    let Some(dir) = wasm_dir() else { return };
    let m = Metrics::new();
    let p = build(
        vec![probe(
            &dir,
            "qod",
            r#"{"mode":"allow","trap_on":"death."}"#,
            OnError::Allow,
        )],
        &m,
    )
    .expect("build");
    let c = chain(&p, &["qod"]);
    assert_eq!(c.decide(&query("fine.")), Verdict::Allow);
    let before = p.instantiations("qod");
    for _ in 0..200 {
        assert_eq!(c.decide(&query("death.")), Verdict::Allow);
    }
    // Without back-off each of the 200 would re-create the instance; with it, only the
    // calls after each (≥ 10 ms, doubling) pause do.
    let extra = p.instantiations("qod") - before;
    assert!(extra <= 3, "re-instantiated {extra} times");
    assert!(errors(&m, "qod", "trap") >= 1);
    assert!(errors(&m, "qod", "backoff") >= 190, "{}", m.encode());
}

#[test]
fn instances_are_per_thread_and_reused() {
    let Some(dir) = wasm_dir() else { return };
    let m = Metrics::new();
    let p = build(
        vec![probe(&dir, "count", r#"{"mode":"count"}"#, OnError::Deny)],
        &m,
    )
    .expect("build");
    let c = chain(&p, &["count"]);
    let here: Vec<String> = (0..3).map(|_| count(&c.decide(&query("a.")))).collect();
    assert_eq!(here, ["1", "2", "3"]);
    assert_eq!(instances_on_this_thread(), 1);
    let c2 = c.clone();
    let there = std::thread::spawn(move || count(&c2.decide(&query("a."))))
        .join()
        .expect("thread");
    assert_eq!(there, "1");
    assert_eq!(count(&c.decide(&query("a."))), "4");
    drop((c, p));
    assert_eq!(
        instances_on_this_thread(),
        0,
        "unloaded policy's instance swept"
    );
}

#[test]
fn cache_hint_memoizes_per_query() {
    let Some(dir) = wasm_dir() else { return };
    let m = Metrics::new();
    let p = build(
        vec![
            probe(
                &dir,
                "memo",
                r#"{"mode":"count","cache_for":60}"#,
                OnError::Deny,
            ),
            probe(&dir, "plain", r#"{"mode":"count"}"#, OnError::Deny),
        ],
        &m,
    )
    .expect("build");
    let (memo, plain) = (chain(&p, &["memo"]), chain(&p, &["plain"]));
    let got: Vec<String> = ["a.", "a.", "b.", "a."]
        .iter()
        .map(|n| count(&memo.decide(&query(n))))
        .collect();
    assert_eq!(got, ["1", "1", "2", "1"]);
    let got: Vec<String> = ["a.", "a."]
        .iter()
        .map(|n| count(&plain.decide(&query(n))))
        .collect();
    assert_eq!(got, ["1", "2"]);
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zonegate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn swap_keeps_the_old_version_serving_until_the_new_one_is_built() {
    let Some(dir) = wasm_dir() else { return };
    let tmp = temp_dir("swap");
    let file = tmp.join("p.wasm");
    let bytes = read_file(&dir, "guest_probe.wasm");
    std::fs::write(&file, wasm_variant(&bytes, 1)).expect("write");
    let m = Metrics::new();
    let specs = |settings: &str| {
        BTreeMap::from([("p".to_string(), spec("p", &file, settings, OnError::Deny))])
    };
    let nx = r#"{"mode":"deny","kind":"nxdomain"}"#;
    let v1 = Policies::build(engine(), &specs(nx), None, &m).expect("v1");
    let old = chain(&v1, &["p"]);
    assert_eq!(old.decide(&query("a.")), Verdict::Deny(DenyKind::NxDomain));

    // Unchanged: the same loaded policy, warm instance and all.
    let same = Policies::build(engine(), &specs(nx), Some(&v1), &m).expect("same");
    assert_eq!(same.instantiations("p"), v1.instantiations("p"));
    drop(same);

    // A bad module leaves the old one serving.
    std::fs::write(&file, b"\0asm garbage").expect("write");
    assert!(Policies::build(engine(), &specs(nx), Some(&v1), &m).is_err());
    assert_eq!(old.decide(&query("a.")), Verdict::Deny(DenyKind::NxDomain));

    std::fs::write(&file, wasm_variant(&bytes, 2)).expect("write");
    let v2 = Policies::build(
        engine(),
        &specs(r#"{"mode":"deny","kind":"nodata"}"#),
        Some(&v1),
        &m,
    )
    .expect("v2");
    assert_ne!(v1.digest("p"), v2.digest("p"));
    assert_eq!(
        old.decide(&query("a.")),
        Verdict::Deny(DenyKind::NxDomain),
        "in-flight on v1"
    );
    let new = chain(&v2, &["p"]);
    assert_eq!(new.decide(&query("a.")), Verdict::Deny(DenyKind::NoData));
    assert_eq!(instances_on_this_thread(), 2);
    let text = m.encode();
    let (d1, d2) = (
        v1.digest("p").expect("d1").to_string(),
        v2.digest("p").expect("d2").to_string(),
    );
    assert!(!text.contains(&d1), "old digest series removed");
    assert!(text.contains(&format!(
        r#"zonegate_policy_info{{policy="p",digest="{d2}"}} 1"#
    )));
    drop((old, v1));
    assert_eq!(instances_on_this_thread(), 1);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn compiled_artifacts_are_cached_on_disk() {
    let Some(dir) = wasm_dir() else { return };
    let cache = temp_dir("artifacts");
    let opts = EngineOptions {
        cache_dir: Some(cache.clone()),
        ..EngineOptions::default()
    };
    let bytes = wasm_variant(&read_file(&dir, "guest_probe.wasm"), 3);
    let first = PolicyEngine::new(opts.clone());
    check_component(&first, &bytes).expect("compile");
    let files: Vec<_> = std::fs::read_dir(&cache).expect("dir").flatten().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let second = PolicyEngine::new(opts);
    let start = Instant::now();
    let v = test_decide(&second, &bytes, r#"{"mode":"deny"}"#, &query("a.")).expect("decide");
    assert_eq!(v, Verdict::Deny(DenyKind::Refused));
    eprintln!(
        "load from artifact + instantiate + decide: {:?}",
        start.elapsed()
    );
    let _ = std::fs::remove_dir_all(&cache);
}

/// Per-batch cost of `decide`, to spot anything that grows per call (run with --release).
#[test]
#[ignore]
fn decide_cost_is_flat() {
    let Some(dir) = wasm_dir() else { return };
    let m = Metrics::new();
    let p = build(
        vec![probe(&dir, "count", r#"{"mode":"allow"}"#, OnError::Deny)],
        &m,
    )
    .expect("build");
    let c = chain(&p, &["count"]);
    for batch in 0..10 {
        let start = Instant::now();
        for _ in 0..200_000 {
            std::hint::black_box(c.decide(&query("www.example.com.")));
        }
        eprintln!("batch {batch}: {:?}/decide", start.elapsed() / 200_000);
    }
}

/// The epoch ticker parks when no guest has run for a while (an idle node pays no wake-ups);
/// the next guest call must wake it, or a looping guest would never be stopped.
#[test]
fn a_parked_epoch_ticker_wakes_for_the_next_call() {
    let Some(dir) = wasm_dir() else { return };
    // An engine of its own: the shared one may be kept ticking by other tests.
    let engine = PolicyEngine::new(EngineOptions::default());
    let m = Metrics::new();
    let spec = timeout(1, probe(&dir, "loop", r#"{"mode":"loop"}"#, OnError::Deny));
    let specs: BTreeMap<_, _> = [spec].into_iter().collect();
    let p = Policies::build(&engine, &specs, None, &m).expect("build");
    // Well past the 400 idle ticks (0.4 s at the default 1 ms) after which it parks.
    std::thread::sleep(Duration::from_millis(800));
    let (tx, rx) = std::sync::mpsc::channel();
    let c = chain(&p, &["loop"]);
    std::thread::spawn(move || {
        let _ = tx.send(c.decide(&query("a.example.")));
    });
    let verdict = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a looping guest was not stopped: the parked ticker did not wake");
    assert_eq!(verdict, Verdict::Deny(DenyKind::Refused));
    assert_eq!(errors(&m, "loop", "timeout"), 1);
}
