//! OCI-distributed policies against a real registry (Debian's `docker-registry`): push/pull
//! round trips (our CLI and skopeo), a moved tag swapped under load, digest mismatches,
//! restarts with the registry down, bundles, and a registry that never answers.
//! Needs `$ZONEGATE_WASM_DIR` (scripts/build-policies.sh); skipped when unset.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::registry::Registry;
use support::{base, metric_sum, start_file};
use zonegate::app::Running;
use zonegate::oci::layout::{ANNOTATION_POLICY, ANNOTATION_WORLD, WORLD, sha256};
use zonegate::oci::{Bundle, ClientOptions, OciError, OciReference};
use zonegate_testkit::proto::op::ResponseCode;
use zonegate_testkit::proto::rr::RecordType;
use zonegate_testkit::{AuthServer, Client, read_file, wasm_dir, wasm_variant};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zonegate-oci-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn opts() -> ClientOptions {
    ClientOptions {
        insecure: true,
        docker_config: None,
        timeout: Duration::from_secs(10),
    }
}

/// A blocklist bundle denying `blocked` with NXDOMAIN (settings in the settings layer).
fn blocklist(dir: &Path, tag: u8, blocked: &str) -> Bundle {
    let settings = serde_json::json!({ "domains": [blocked], "action": "nxdomain" });
    Bundle {
        policies: vec![(
            "p".into(),
            wasm_variant(&read_file(dir, "blocklist.wasm"), tag),
        )],
        settings: Some(serde_json::Map::from_iter([("p".to_string(), settings)])),
        version: Some(format!("0.{tag}.0")),
        source: Some("https://example.com/zonegate/policies".into()),
        created: "2025-01-01T00:00:00Z".into(),
        world: None,
    }
}

async fn push(reference: &str, bundle: &Bundle) -> String {
    let r: OciReference = reference.parse().expect("reference");
    zonegate::oci::push(&r, bundle, &opts())
        .await
        .expect("push")
}

fn upstream() -> AuthServer {
    let ip = Ipv4Addr::new(192, 0, 2, 1);
    AuthServer::builder()
        .a("ok.test.", 300, ip)
        .a("one.test.", 300, ip)
        .a("two.test.", 300, ip)
        .a("bad.test.", 300, ip)
        .start()
        .expect("upstream")
}

/// A config file: `.` forwarded to `up` through `zone_policies`, `[oci]` on `cache`.
/// Policies get a 100 ms deadline: tests share two busy cores with other test binaries.
fn write_config(
    dir: &Path,
    up: SocketAddr,
    registry: &str,
    cache: &Path,
    policies: &str,
    zone_policies: &str,
) -> PathBuf {
    let text = format!(
        r#"{base}
[upstreams.up]
servers = ["{up}"]
timeout = "2s"

[[zone]]
view = "default"
name = "."
forward = "up"
policies = {zone_policies}

{policies}

[oci]
cache_dir = "{cache}"
refresh = "1s"
jitter = 0.0
insecure = ["{registry}"]
pull_timeout = "2s"
"#,
        base = base(),
        cache = cache.display(),
    );
    let path = dir.join("zonegate.toml");
    std::fs::write(&path, text).expect("config");
    path
}

async fn rcode(zg: &Running, name: &str) -> ResponseCode {
    Client::new()
        .query_udp(zg.addr(), name, RecordType::A)
        .await
        .expect("answer")
        .rcode()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_zonegate")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cli_push_pull_inspect_and_skopeo_reads_it() {
    let Some(dir) = wasm_dir() else { return };
    let reg = Registry::start("cli");
    let tmp = temp_dir("cli");
    let settings = tmp.join("settings.json");
    std::fs::write(&settings, r#"{"domains":["bad.test"]}"#).unwrap();
    let reference = reg.oci("policies/blocklist:v1");
    let wasm_path = dir.join("blocklist.wasm");
    let started = Instant::now();
    let digest = run(Command::new(bin())
        .args(["policy", "push", "--insecure", "--policy-version", "1.0.0"])
        .arg("--settings")
        .arg(&settings)
        .arg(&wasm_path)
        .arg(&reference));
    let push_time = started.elapsed();
    let digest = digest.trim();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // Our pull: the same bytes back, and the manifest has the printed digest.
    let out = tmp.join("pulled");
    let started = Instant::now();
    let pulled = run(Command::new(bin())
        .args(["policy", "pull", "--insecure", &reference, "-o"])
        .arg(&out));
    eprintln!("push {push_time:?}, pull {:?}", started.elapsed());
    assert_eq!(pulled.trim(), digest);
    assert_eq!(
        read_file(&out, "blocklist.wasm"),
        read_file(&dir, "blocklist.wasm")
    );
    assert_eq!(
        read_file(&out, "settings.json"),
        br#"{"blocklist":{"domains":["bad.test"]}}"#
    );
    assert_eq!(sha256(&read_file(&out, "manifest.json")), digest);
    let shown = run(Command::new(bin()).args(["policy", "inspect", "--insecure", &reference]));
    assert!(shown.contains(&format!("world:      {WORLD}")), "{shown}");
    assert!(
        shown.contains("org.opencontainers.image.version: 1.0.0"),
        "{shown}"
    );
    assert!(
        shown.contains("policy blocklist: application/wasm"),
        "{shown}"
    );

    // skopeo, a tool we did not write, reads the same manifest and config.
    let docker = format!("docker://{}/policies/blocklist:v1", reg.host());
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &docker]));
    assert_eq!(sha256(raw.as_bytes()), digest);
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(m["annotations"][ANNOTATION_WORLD], WORLD);
    assert_eq!(m["annotations"][ANNOTATION_POLICY], "blocklist");
    let config = run(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &docker,
    ]));
    let c: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(c["component"]["target"], WORLD);
    let _ = std::fs::remove_dir_all(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_mismatches_are_rejected() {
    let Some(dir) = wasm_dir() else { return };
    let reg = Registry::start("mismatch");
    let reference = reg.oci("p:v1");
    let bundle = blocklist(&dir, 1, "one.test");
    let digest = push(&reference, &bundle).await;
    // A pin that names other content than the registry serves for it.
    let other = push(&reg.oci("p:v2"), &blocklist(&dir, 2, "two.test")).await;
    let r: OciReference = format!("{}@{other}", reg.oci("p:v1")).parse().unwrap();
    assert_eq!(r.client_ref().digest(), Some(other.as_str()));
    // Corrupt the wasm layer inside the registry's own storage: it now serves other bytes.
    let layer = sha256(&bundle.policies[0].1);
    std::fs::write(reg.blob_path(&layer), b"not the pushed component").unwrap();
    let err = zonegate::oci::pull(&reference.parse().unwrap(), &opts())
        .await
        .err();
    assert!(
        matches!(err, Some(OciError::DigestMismatch { .. })),
        "{err:?}"
    );
    // Corrupt the manifest: pinned pulls see bytes that do not hash to the pin.
    std::fs::write(reg.blob_path(&digest), br#"{"schemaVersion":2}"#).unwrap();
    let pinned: OciReference = format!("{reference}@{digest}").parse().unwrap();
    let err = zonegate::oci::inspect(&pinned, &opts()).await.err();
    assert!(
        matches!(err, Some(OciError::DigestMismatch { .. })),
        "{err:?}"
    );

    // A zonegate pinned to that digest never runs the content: on_error = deny → REFUSED.
    let up = upstream();
    let tmp = temp_dir("mismatch");
    let policies = format!(
        "[policies.p]\nsource = \"{reference}@{digest}\"\ntimeout = \"100ms\"\non_error = \"deny\"\n"
    );
    let path = write_config(
        &tmp,
        up.addr(),
        &reg.host(),
        &tmp.join("cache"),
        &policies,
        "[\"p\"]",
    );
    let zg = start_file(path).await;
    assert_eq!(rcode(&zg, "ok.test.").await, ResponseCode::Refused);
    assert_eq!(
        metric_sum(&zg, "zonegate_oci_pulls_total", &[("result", "mismatch")]),
        1.0
    );
    assert_eq!(
        metric_sum(&zg, "zonegate_oci_policy_unavailable", &[("policy", "p")]),
        1.0
    );
    zg.drain().await;
    let _ = std::fs::remove_dir_all(tmp);
}

/// Sends queries for `ok.test.` until stopped (at most 60 s); counts answers and failures.
fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let client = Client::new().timeout(Duration::from_secs(2));
        let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match client.query_udp(addr, "ok.test.", RecordType::A).await {
                Ok(r) if r.rcode() == ResponseCode::NoError => ok.fetch_add(1, Ordering::Relaxed),
                _ => failed.fetch_add(1, Ordering::Relaxed),
            };
        }
        (ok.into_inner(), failed.into_inner())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_is_swapped_within_a_refresh_under_load() {
    let Some(dir) = wasm_dir() else { return };
    let reg = Registry::start("swap");
    let reference = reg.oci("policies/blocklist:live");
    let v1 = blocklist(&dir, 1, "one.test");
    push(&reference, &v1).await;
    let up = upstream();
    let tmp = temp_dir("swap");
    // No settings in the config: the artifact's settings layer applies.
    let policies = format!(
        "[policies.p]\nsource = \"{reference}\"\ntimeout = \"100ms\"\non_error = \"deny\"\n"
    );
    let path = write_config(
        &tmp,
        up.addr(),
        &reg.host(),
        &tmp.join("cache"),
        &policies,
        "[\"p\"]",
    );
    let zg = start_file(path).await;
    let digest = |zg: &Running| {
        zg.shared
            .snapshot
            .load()
            .policies
            .digest("p")
            .map(str::to_string)
    };
    assert_eq!(digest(&zg), Some(sha256(&v1.policies[0].1)));
    assert_eq!(rcode(&zg, "one.test.").await, ResponseCode::NXDomain);
    assert_eq!(rcode(&zg, "two.test.").await, ResponseCode::NoError);

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4).map(|_| load(zg.addr(), stop.clone())).collect();
    let v2 = blocklist(&dir, 2, "two.test");
    let want = Some(sha256(&v2.policies[0].1));
    let unchanged =
        |zg: &Running| metric_sum(zg, "zonegate_oci_pulls_total", &[("result", "unchanged")]);
    // The tag moves when the push's last request (the manifest) is done.
    push(&reference, &v2).await;
    let pushed = Instant::now();
    let checks_before = unchanged(&zg);
    // Observe the swap: the refresh interval is 1 s; allow generous time for a loaded CI.
    let mut pulled = None;
    while digest(&zg) != want && pushed.elapsed() < Duration::from_secs(15) {
        let success = metric_sum(&zg, "zonegate_oci_pulls_total", &[("result", "success")]);
        if pulled.is_none() && success == 2.0 {
            pulled = Some(pushed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let swap = pushed.elapsed();
    let missed = unchanged(&zg) - checks_before;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for l in loads {
        let (o, f) = l.await.unwrap();
        ok += o;
        failed += f;
    }
    eprintln!(
        "tag moved → pulled after {pulled:?}, swapped in {swap:?} (refresh 1s); {ok} queries answered, {failed} failed"
    );
    assert_eq!(digest(&zg), want, "not swapped after {swap:?}");
    // Within one refresh interval: at most the check already under way when the tag moved
    // still saw the old digest; the next one swapped (wall time also counts compiling).
    assert!(missed <= 1.0, "{missed} refreshes missed the new digest");
    assert_eq!(failed, 0);
    assert!(ok > 0);
    assert_eq!(rcode(&zg, "one.test.").await, ResponseCode::NoError);
    assert_eq!(rcode(&zg, "two.test.").await, ResponseCode::NXDomain);
    assert_eq!(
        metric_sum(&zg, "zonegate_oci_pulls_total", &[("result", "success")]),
        2.0
    );
    let info = [("policy", "p"), ("digest", want.as_deref().unwrap())];
    assert_eq!(metric_sum(&zg, "zonegate_policy_info", &info), 1.0);
    zg.drain().await;
    let _ = std::fs::remove_dir_all(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_registry_down_serves_the_cached_version() {
    let Some(dir) = wasm_dir() else { return };
    let mut reg = Registry::start("restart");
    let reference = reg.oci("p:stable");
    let v1 = blocklist(&dir, 1, "one.test");
    push(&reference, &v1).await;
    let up = upstream();
    let tmp = temp_dir("restart");
    let policies = format!(
        "[policies.p]\nsource = \"{reference}\"\ntimeout = \"100ms\"\non_error = \"deny\"\n"
    );
    let path = write_config(
        &tmp,
        up.addr(),
        &reg.host(),
        &tmp.join("cache"),
        &policies,
        "[\"p\"]",
    );
    let zg = start_file(path.clone()).await;
    assert_eq!(rcode(&zg, "one.test.").await, ResponseCode::NXDomain);
    zg.drain().await;

    reg.stop();
    let started = Instant::now();
    let zg = start_file(path).await;
    eprintln!(
        "restart with the registry down: serving after {:?}",
        started.elapsed()
    );
    assert_eq!(rcode(&zg, "one.test.").await, ResponseCode::NXDomain);
    assert_eq!(rcode(&zg, "ok.test.").await, ResponseCode::NoError);
    assert_eq!(
        metric_sum(&zg, "zonegate_oci_pulls_total", &[("result", "cache")]),
        1.0
    );
    assert_eq!(
        metric_sum(&zg, "zonegate_oci_pulls_total", &[("result", "failure")]),
        1.0
    );
    let info = [("policy", "p"), ("digest", &sha256(&v1.policies[0].1))];
    assert_eq!(metric_sum(&zg, "zonegate_policy_info", &info[..]), 1.0);
    zg.drain().await;
    let _ = std::fs::remove_dir_all(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_carries_two_policies_and_their_settings() {
    let Some(dir) = wasm_dir() else { return };
    let reg = Registry::start("bundle");
    let reference = reg.oci("bundles/egress:1");
    let allow = serde_json::json!({
        "rules": [{ "toFQDNs": [{ "matchPattern": "*.test" }] }],
        "default_action": "refused",
    });
    let block = serde_json::json!({ "domains": ["bad.test"], "action": "nxdomain" });
    let bundle = Bundle {
        policies: vec![
            ("allow".into(), read_file(&dir, "fqdn_allowlist.wasm")),
            ("block".into(), read_file(&dir, "blocklist.wasm")),
        ],
        settings: Some(serde_json::Map::from_iter([
            ("allow".to_string(), allow),
            ("block".to_string(), block),
        ])),
        created: "2025-01-01T00:00:00Z".into(),
        ..Bundle::default()
    };
    push(&reference, &bundle).await;
    let up = upstream();
    let tmp = temp_dir("bundle");
    // One by its name in the bundle, one picked with #NAME under another config name.
    let policies = format!(
        "[policies.allow]\nsource = \"{reference}\"\ntimeout = \"100ms\"\n\n[policies.deny-list]\nsource = \"{reference}#block\"\ntimeout = \"100ms\"\n"
    );
    let path = write_config(
        &tmp,
        up.addr(),
        &reg.host(),
        &tmp.join("cache"),
        &policies,
        "[\"allow\", \"deny-list\"]",
    );
    let zg = start_file(path).await;
    assert_eq!(rcode(&zg, "ok.test.").await, ResponseCode::NoError);
    assert_eq!(rcode(&zg, "bad.test.").await, ResponseCode::NXDomain);
    assert_eq!(
        rcode(&zg, "elsewhere.example.").await,
        ResponseCode::Refused
    );
    let snap = zg.shared.snapshot.load();
    assert_eq!(
        snap.policies.digest("allow"),
        Some(sha256(&bundle.policies[0].1).as_str())
    );
    assert_eq!(
        snap.policies.digest("deny-list"),
        Some(sha256(&bundle.policies[1].1).as_str())
    );
    drop(snap);
    // One pull for both policies.
    assert_eq!(
        metric_sum(&zg, "zonegate_oci_pulls_total", &[("result", "success")]),
        1.0
    );
    zg.drain().await;
    let _ = std::fs::remove_dir_all(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_without_cache_applies_on_error_and_recovers() {
    let Some(dir) = wasm_dir() else { return };
    let port = zonegate_testkit::free_port().expect("free port");
    let host = format!("127.0.0.1:{port}");
    let up = upstream();
    let tmp = temp_dir("unreachable");
    let policies = format!(
        "[policies.open]\nsource = \"oci://{host}/p:1\"\ntimeout = \"100ms\"\non_error = \"allow\"\n\n\
         [policies.closed]\nsource = \"oci://{host}/p:1\"\ntimeout = \"100ms\"\non_error = \"deny\"\n"
    );
    let text = format!(
        r#"{base}
[upstreams.up]
servers = ["{up}"]

[[zone]]
name = "."
forward = "up"
policies = ["open"]

[[zone]]
name = "two.test."
forward = "up"
policies = ["closed"]

{policies}
[oci]
cache_dir = "{cache}"
refresh = "1s"
jitter = "100ms"
insecure = ["{host}"]
pull_timeout = "2s"
"#,
        base = base(),
        up = up.addr(),
        cache = tmp.join("cache").display(),
    );
    let path = tmp.join("zonegate.toml");
    std::fs::write(&path, text).unwrap();
    let started = Instant::now();
    let zg = start_file(path).await;
    let startup = started.elapsed();
    assert!(startup < Duration::from_secs(5), "startup took {startup:?}");
    // allow → the zone runs without the policy; deny → the zone answers REFUSED.
    assert_eq!(rcode(&zg, "one.test.").await, ResponseCode::NoError);
    assert_eq!(rcode(&zg, "two.test.").await, ResponseCode::Refused);
    assert_eq!(
        metric_sum(
            &zg,
            "zonegate_oci_policy_unavailable",
            &[("policy", "closed")]
        ),
        1.0
    );
    assert!(metric_sum(&zg, "zonegate_oci_pulls_total", &[("result", "failure")]) >= 1.0);
    // Ready regardless (documented in docs/oci.md): the listeners serve, on_error decides.
    let ready = http_get_ready(zg.ready_addr).await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    // The registry comes up with the artifact: the next refresh loads it.
    let reg = Registry::start_on("unreachable", port);
    let bundle = blocklist(&dir, 3, "two.test");
    let r: OciReference = reg.oci("p:1").parse().unwrap();
    zonegate::oci::push(&r, &bundle, &opts())
        .await
        .expect("push");
    let pushed = Instant::now();
    while rcode(&zg, "two.test.").await != ResponseCode::NXDomain
        && pushed.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "startup without registry {startup:?}; recovered {:?} after the push",
        pushed.elapsed()
    );
    assert_eq!(rcode(&zg, "two.test.").await, ResponseCode::NXDomain);
    assert_eq!(rcode(&zg, "ok.test.").await, ResponseCode::NoError);
    assert_eq!(
        metric_sum(
            &zg,
            "zonegate_oci_policy_unavailable",
            &[("policy", "closed")]
        ),
        0.0
    );
    zg.drain().await;
    let _ = std::fs::remove_dir_all(tmp);
}

/// `GET /ready` with a plain socket: the status line.
async fn http_get_ready(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_fails_init_is_rejected_and_the_old_keeps_serving() {
    let Some(dir) = wasm_dir() else { return };
    let reg = Registry::start("reject");
    let reference = reg.oci("p:live");
    let v1 = blocklist(&dir, 1, "one.test");
    push(&reference, &v1).await;
    let up = upstream();
    let tmp = temp_dir("reject");
    let policies = format!(
        "[policies.p]\nsource = \"{reference}\"\ntimeout = \"100ms\"\non_error = \"deny\"\n"
    );
    let cache = tmp.join("cache");
    let path = write_config(&tmp, up.addr(), &reg.host(), &cache, &policies, "[\"p\"]");
    let zg = start_file(path.clone()).await;
    // v2's settings layer is something the blocklist's init refuses.
    let mut v2 = blocklist(&dir, 2, "two.test");
    v2.settings = Some(serde_json::Map::from_iter([(
        "p".to_string(),
        serde_json::json!({ "domains": 5 }),
    )]));
    push(&reference, &v2).await;
    let kept = Kept {
        policy: "p",
        digest: sha256(&v1.policies[0].1),
        name: "one.test.",
        rcode: ResponseCode::NXDomain,
    };
    rejected_and_kept(zg, path, &kept).await;
    let _ = std::fs::remove_dir_all(tmp);
}

/// The last good version a rejected one leaves serving, and a query that shows it.
struct Kept {
    policy: &'static str,
    digest: String,
    name: &'static str,
    rcode: ResponseCode,
}

/// Waits for the version just pushed to be rejected, then checks that the node keeps serving
/// the last good one, and that a restart starts from it (the rejected one is never recorded).
async fn rejected_and_kept(zg: Running, path: PathBuf, kept: &Kept) {
    let rejected =
        |zg: &Running| metric_sum(zg, "zonegate_oci_pulls_total", &[("result", "rejected")]);
    let pushed = Instant::now();
    while rejected(&zg) < 1.0 && pushed.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rejected(&zg), 1.0);
    let digest = |zg: &Running| {
        let snap = zg.shared.snapshot.load_full();
        snap.policies.digest(kept.policy).map(str::to_owned)
    };
    assert_eq!(digest(&zg).as_deref(), Some(kept.digest.as_str()));
    assert_eq!(rcode(&zg, kept.name).await, kept.rcode);
    zg.drain().await;
    let zg = start_file(path).await;
    assert_eq!(digest(&zg).as_deref(), Some(kept.digest.as_str()));
    zg.drain().await;
}

/// A new version of a 0.2.0 policy that declares a route to a group the configuration lacks
/// is a bad version too: rejected before it is recorded, so neither the running node nor a
/// restart takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_routing_to_an_unknown_group_is_rejected() {
    let Some(dir) = wasm_dir() else { return };
    let reg = Registry::start("reroute");
    let reference = reg.oci("router:live");
    let router = |tag: u8, group: &str| Bundle {
        policies: vec![(
            "r".into(),
            wasm_variant(&read_file(&dir, "zone_router.wasm"), tag),
        )],
        settings: Some(serde_json::Map::from_iter([(
            "r".to_string(),
            serde_json::json!({ "routes": [ { "upstream": group, "match": [ { "suffix": "one.test" } ] } ] }),
        )])),
        created: "2025-01-01T00:00:00Z".into(),
        ..Bundle::default()
    };
    let v1 = router(1, "up");
    push(&reference, &v1).await;
    let up = upstream();
    let tmp = temp_dir("reroute");
    let policies = format!("[policies.r]\nsource = \"{reference}\"\ntimeout = \"100ms\"\n");
    let cache = tmp.join("cache");
    let path = write_config(&tmp, up.addr(), &reg.host(), &cache, &policies, "[\"r\"]");
    let zg = start_file(path.clone()).await;
    push(&reference, &router(2, "nowhere")).await;
    let kept = Kept {
        policy: "r",
        digest: sha256(&v1.policies[0].1),
        name: "one.test.",
        rcode: ResponseCode::NoError,
    };
    rejected_and_kept(zg, path, &kept).await;
    let _ = std::fs::remove_dir_all(tmp);
}
