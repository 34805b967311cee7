//! End to end: the `zonegate` binary with real `.wasm` policies built from `policies/` and
//! `tests/guests/` (scripts/build-policies.sh → `$ZONEGATE_WASM_DIR`), queried over UDP and TCP.
//! Without `ZONEGATE_WASM_DIR` these tests return at once (scripts/test.sh sets it; CI must).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use zonegate_testkit::proto::op::ResponseCode;
use zonegate_testkit::proto::rr::RecordType;
use zonegate_testkit::{AuthServer, Client, Signal, Zonegate, read_file, wasm_dir, wasm_variant};

fn wasm(file: &str) -> Option<Vec<u8>> {
    Some(read_file(&wasm_dir()?, file))
}

fn upstream() -> AuthServer {
    AuthServer::builder()
        .a("www.allowed.test.", 60, Ipv4Addr::new(192, 0, 2, 1))
        .a("api.example.test.", 60, Ipv4Addr::new(192, 0, 2, 2))
        .a("www.denied.test.", 60, Ipv4Addr::new(192, 0, 2, 3))
        .a("boom.example.", 60, Ipv4Addr::new(192, 0, 2, 4))
        .a("fine.example.", 60, Ipv4Addr::new(192, 0, 2, 5))
        .start()
        .unwrap()
}

/// A config with zone `.` forwarding to `up`, running `policies` (TOML tables follow).
fn config(up: &AuthServer, zone_policies: &str, extra: &str) -> String {
    format!(
        r#"[server]
workers = 2

[observability]
metrics = "127.0.0.1:0"
health = "127.0.0.1:0"
ready = "127.0.0.1:0"

[[listen]]
address = "127.0.0.1:0"
view = "default"

[upstreams.up]
servers = ["{up}"]

[[zone]]
view = "default"
name = "."
forward = "up"
policies = [{zone_policies}]

{extra}
"#,
        up = up.addr()
    )
}

const ALLOWLIST: &str = r#"
[policies.egress]
source = "file:{dir}/fqdn_allowlist.wasm"
on_error = "deny"
timeout = "50ms"
settings = { default_action = "refused", rules = [
  { cidrs = ["127.0.0.0/8"], toFQDNs = [ { matchPattern = "*.allowed.test" }, { matchName = "api.example.test" } ] },
] }
"#;

async fn rcode(addr: std::net::SocketAddr, name: &str, tcp: bool) -> ResponseCode {
    let c = Client::new();
    let r = if tcp {
        c.query_tcp(addr, name, RecordType::A).await
    } else {
        c.query_udp(addr, name, RecordType::A).await
    };
    r.unwrap().rcode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_allows_matching_names_and_refuses_the_rest_over_udp_and_tcp() {
    let Some(policy) = wasm("fqdn_allowlist.wasm") else {
        return;
    };
    let up = upstream();
    let zg = Zonegate::builder()
        .config(&config(&up, "\"egress\"", ALLOWLIST))
        .file("fqdn_allowlist.wasm", policy)
        .start()
        .unwrap();
    for tcp in [false, true] {
        assert_eq!(
            rcode(zg.addr(), "www.allowed.test.", tcp).await,
            ResponseCode::NoError
        );
        assert_eq!(
            rcode(zg.addr(), "API.example.test.", tcp).await,
            ResponseCode::NoError
        );
        assert_eq!(
            rcode(zg.addr(), "www.denied.test.", tcp).await,
            ResponseCode::Refused
        );
        assert_eq!(
            rcode(zg.addr(), "a.b.allowed.test.", tcp).await,
            ResponseCode::Refused,
            "* is one label"
        );
    }
    assert_eq!(
        up.queries("www.denied.test.", RecordType::A),
        0,
        "denied names never reach the upstream"
    );
    let denied = zg
        .metric(
            "zonegate_policy_decisions_total",
            &[("policy", "egress"), ("verdict", "deny")],
        )
        .unwrap();
    assert_eq!(denied, Some(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_router_sends_names_to_the_named_upstream_group() {
    let Some(policy) = wasm("zone_router.wasm") else {
        return;
    };
    let public = upstream();
    let corp = AuthServer::builder()
        .a("db.corp.test.", 60, Ipv4Addr::new(10, 9, 9, 9))
        .start()
        .unwrap();
    let extra = format!(
        r#"[upstreams.corp]
servers = ["{corp}"]

[policies.router]
source = "file:{{dir}}/zone_router.wasm"
settings = {{ routes = [ {{ upstream = "corp", match = [ {{ suffix = "corp.test" }} ] }} ] }}
"#,
        corp = corp.addr()
    );
    let zg = Zonegate::builder()
        .config(&config(&public, "\"router\"", &extra))
        .file("zone_router.wasm", policy)
        .start()
        .unwrap();
    let r = Client::new()
        .query_udp(zg.addr(), "db.corp.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(10, 9, 9, 9)]);
    assert_eq!(public.queries("db.corp.test.", RecordType::A), 0);
    let r = Client::new()
        .query_udp(zg.addr(), "www.allowed.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        r.ipv4(),
        vec![Ipv4Addr::new(192, 0, 2, 1)],
        "unrouted names use the zone's upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_an_undefined_group_is_rejected_at_load() {
    let Some(policy) = wasm("zone_router.wasm") else {
        return;
    };
    let up = upstream();
    let extra = r#"[policies.router]
source = "file:{dir}/zone_router.wasm"
settings = { routes = [ { upstream = "nowhere", match = [ { suffix = "corp.test" } ] } ] }
"#;
    let err = Zonegate::builder()
        .config(&config(&up, "\"router\"", extra))
        .file("zone_router.wasm", policy)
        .start()
        .map(|_| ())
        .expect_err("startup must fail");
    assert!(format!("{err:#}").contains("nowhere"), "{err:#}");
}

/// A 0.2.0 policy routes by index into the groups it declared at load: a declared group is
/// used, and a route it did not declare is answered SERVFAIL and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_the_policy_did_not_declare_is_answered_servfail() {
    let Some(policy) = wasm("guest_echo.wasm") else {
        return;
    };
    let public = upstream();
    let corp = AuthServer::builder()
        .a("db.corp.route.test.", 60, Ipv4Addr::new(10, 9, 9, 9))
        .start()
        .unwrap();
    let extra = format!(
        r#"[upstreams.corp]
servers = ["{corp}"]

[policies.echo]
source = "file:{{dir}}/guest_echo.wasm"
settings = {{ routes = ["corp"] }}
"#,
        corp = corp.addr()
    );
    let zg = Zonegate::builder()
        .config(&config(&public, "\"echo\"", &extra))
        .file("guest_echo.wasm", policy)
        .start()
        .unwrap();
    let r = Client::new()
        .query_udp(zg.addr(), "db.corp.route.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(10, 9, 9, 9)]);
    for tcp in [false, true] {
        assert_eq!(
            rcode(zg.addr(), "db.elsewhere.route.test.", tcp).await,
            ResponseCode::ServFail
        );
    }
    let counted = zg
        .metric(
            "zonegate_policy_errors_total",
            &[("policy", "*"), ("kind", "unknown_route")],
        )
        .unwrap();
    assert_eq!(counted, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocklist_sinkholes_blocked_domains_and_their_subdomains() {
    let Some(policy) = wasm("blocklist.wasm") else {
        return;
    };
    let up = upstream();
    let extra = r#"[policies.block]
source = "file:{dir}/blocklist.wasm"
settings = { domains = ["denied.test"], action = "sinkhole", sinkhole_ipv4 = "0.0.0.0" }
"#;
    let zg = Zonegate::builder()
        .config(&config(&up, "\"block\"", extra))
        .file("blocklist.wasm", policy)
        .start()
        .unwrap();
    let r = Client::new()
        .query_udp(zg.addr(), "www.denied.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::UNSPECIFIED]);
    let r = Client::new()
        .query_udp(zg.addr(), "www.allowed.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_the_policy_file_under_load_fails_no_query() {
    let Some(policy) = wasm("fqdn_allowlist.wasm") else {
        return;
    };
    let up = upstream();
    let zg = Zonegate::builder()
        .config(&config(&up, "\"egress\"", ALLOWLIST))
        .file("fqdn_allowlist.wasm", policy.clone())
        .start()
        .unwrap();
    let addr = zg.addr();
    let path = zg.dir().join("fqdn_allowlist.wasm");
    // Steady load on an allowed and a denied name, bounded in count and time.
    let load = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut ok, mut bad) = (0u32, Vec::new());
        for i in 0..4000u32 {
            if Instant::now() > deadline {
                break;
            }
            let (name, want) = if i % 2 == 0 {
                ("www.allowed.test.", ResponseCode::NoError)
            } else {
                ("www.denied.test.", ResponseCode::Refused)
            };
            match Client::new()
                .timeout(Duration::from_secs(1))
                .query_udp(addr, name, RecordType::A)
                .await
            {
                Ok(r) if r.rcode() == want => ok += 1,
                other => bad.push(format!("{name}: {other:?}")),
            }
        }
        (ok, bad)
    });
    for n in 0..3u8 {
        // Atomic replace, as a ConfigMap's ..data swap is: write aside, rename over.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, wasm_variant(&policy, n)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        zg.send_signal(Signal::Hup).unwrap();
        let want = (n + 1) as f64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while zg
            .metric("zonegate_reload_total", &[("result", "success")])
            .unwrap()
            .unwrap_or(0.0)
            < want
        {
            assert!(
                Instant::now() < deadline,
                "swap {n} not applied: {}",
                zg.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (ok, bad) = load.await.unwrap();
    assert!(
        bad.is_empty(),
        "{} failed queries, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
    assert!(ok > 100, "load ran ({ok} queries)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_guests_are_contained() {
    let (Some(trap), Some(lp), Some(alloc)) = (
        wasm("guest_trap.wasm"),
        wasm("guest_loop.wasm"),
        wasm("guest_alloc.wasm"),
    ) else {
        return;
    };
    let up = upstream();
    let extra = r#"
[[listen]]
address = "127.0.0.2:0"
view = "loop"

[[listen]]
address = "127.0.0.3:0"
view = "alloc"

[[zone]]
view = "loop"
name = "."
forward = "up"
policies = ["spin"]

[[zone]]
view = "alloc"
name = "."
forward = "up"
policies = ["hog"]

[policies.trap]
source = "file:{dir}/guest_trap.wasm"
on_error = "deny"
settings = { trap_on = "boom.example." }

[policies.spin]
source = "file:{dir}/guest_loop.wasm"
on_error = "allow"
timeout = "5ms"

[policies.hog]
source = "file:{dir}/guest_alloc.wasm"
on_error = "deny"
memory_limit = "4MiB"
# Generous: the memory cap, not the deadline, must be what stops it.
timeout = "2s"
"#;
    let zg = Zonegate::builder()
        .config(&config(&up, "\"trap\"", extra))
        .file("guest_trap.wasm", trap)
        .file("guest_loop.wasm", lp)
        .file("guest_alloc.wasm", alloc)
        .start()
        .unwrap();
    // A query of death traps: REFUSED (on_error deny); other names are unaffected.
    assert_eq!(
        rcode(zg.addr(), "boom.example.", false).await,
        ResponseCode::Refused
    );
    assert_eq!(
        rcode(zg.addr(), "fine.example.", false).await,
        ResponseCode::NoError
    );
    // An endless loop hits its deadline: on_error allow lets the query through.
    let spin = zg.listener("loop").unwrap();
    let started = Instant::now();
    assert_eq!(
        rcode(spin, "fine.example.", false).await,
        ResponseCode::NoError
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // Unbounded allocation hits the memory cap: on_error deny.
    assert_eq!(
        rcode(zg.listener("alloc").unwrap(), "fine.example.", true).await,
        ResponseCode::Refused
    );
    let errors = zg.metrics().unwrap();
    for (policy, kind) in [("trap", "trap"), ("spin", "timeout"), ("hog", "memory")] {
        assert!(
            errors.sum(
                "zonegate_policy_errors_total",
                &[("policy", policy), ("kind", kind)]
            ) >= 1.0,
            "{policy} {kind}"
        );
    }
    assert_eq!(zg.health_status().unwrap(), 200, "still alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_rejects_its_settings_stops_startup_with_its_message() {
    let Some(bad) = wasm("guest_bad_settings.wasm") else {
        return;
    };
    let up = upstream();
    let extra = r#"[policies.picky]
source = "file:{dir}/guest_bad_settings.wasm"
"#;
    let err = Zonegate::builder()
        .config(&config(&up, "\"picky\"", extra))
        .file("guest_bad_settings.wasm", bad)
        .start()
        .map(|_| ())
        .expect_err("startup must fail");
    assert!(
        format!("{err:#}").contains("init rejected settings"),
        "{err:#}"
    );
}

#[test]
fn policy_test_and_check_commands_work_for_authors() {
    let Some(_) = wasm("fqdn_allowlist.wasm") else {
        return;
    };
    let dir = std::env::var_os("ZONEGATE_WASM_DIR")
        .map(PathBuf::from)
        .unwrap();
    let policy = dir.join("fqdn_allowlist.wasm");
    let tmp = tempfile::tempdir().unwrap();
    let settings = tmp.path().join("settings.json");
    std::fs::write(
        &settings,
        r#"{"rules": [{"cidrs": ["10.0.0.0/8"], "toFQDNs": [{"matchPattern": "*.stripe.com"}]}], "default_action": "nxdomain"}"#,
    )
    .unwrap();
    let cases = tmp.path().join("cases.json");
    std::fs::write(
        &cases,
        r#"[{"query": "api.stripe.com/A", "client": "10.1.2.3", "expect": "allow"},
            {"query": "api.stripe.com", "client": "192.168.1.1", "expect": "deny:nxdomain"},
            {"query": "stripe.com/AAAA", "client": "10.1.2.3", "expect": "deny:nxdomain"}]"#,
    )
    .unwrap();
    let run = |args: &[&std::ffi::OsStr]| Zonegate::command().unwrap().args(args).output().unwrap();
    let run_cases = || {
        let mut cmd = Zonegate::command().unwrap();
        cmd.args(["policy", "test", "--policy"]).arg(&policy);
        cmd.arg("--settings")
            .arg(&settings)
            .arg("--cases")
            .arg(&cases);
        cmd.output().unwrap()
    };
    let out = run_cases();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 passed, 0 failed"), "{text}");
    // A wrong expectation fails the run.
    std::fs::write(
        &cases,
        r#"[{"query": "api.stripe.com", "client": "10.1.2.3", "expect": "deny:refused"}]"#,
    )
    .unwrap();
    let out = run_cases();
    assert!(!out.status.success());
    let out = run(&["policy".as_ref(), "check".as_ref(), policy.as_os_str()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("implements zonegate:policy/policy@0.2.0")
    );
    let wrong = dir.join("guest_wrong_world.wasm");
    let out = run(&["policy".as_ref(), "check".as_ref(), wrong.as_os_str()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not implement a zonegate:policy world"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
