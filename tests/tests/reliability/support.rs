//! Shared by the reliability scenarios: configs, name sets, short/long durations, starting the
//! binary off the runtime's threads, and the figures each scenario records.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use zonegate_testkit::proto::rr::RecordType;
use zonegate_testkit::{AuthServer, LoadReport, Zonegate, proc_status_kib};

/// Whether the long versions run (`ZG_RELIABILITY_LONG=1`).
pub(crate) fn long() -> bool {
    std::env::var_os("ZG_RELIABILITY_LONG").is_some_and(|v| v != "0")
}

/// `short` normally, `long` for the long versions.
pub(crate) fn pick<T>(short: T, long_value: T) -> T {
    if long() { long_value } else { short }
}

/// The zone every scenario's upstream serves.
pub(crate) const ZONE: &str = "example.test.";

/// `count` names `{prefix}{i}.example.test.`.
pub(crate) fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}.{ZONE}")).collect()
}

/// (name, A) for every name.
pub(crate) fn questions(names: &[String]) -> Vec<(&str, RecordType)> {
    names.iter().map(|n| (n.as_str(), RecordType::A)).collect()
}

/// An upstream authoritative for example.test. with an A record (TTL `ttl`) for every name.
pub(crate) fn upstream(names: &[String], ttl: u32) -> AuthServer {
    let mut builder = AuthServer::builder().zone(ZONE).negative_ttl(60);
    for (i, n) in names.iter().enumerate() {
        builder = builder.a(n, ttl, address(i));
    }
    builder.start().expect("upstream")
}

/// The address of the i-th name.
pub(crate) fn address(i: usize) -> Ipv4Addr {
    let i = u32::try_from(i).expect("few names");
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

/// A zonegate config: one listener, one upstream group `up`, the zone `.`; extra TOML per
/// section.
#[derive(Clone, Debug)]
pub(crate) struct Cfg {
    pub(crate) listen: SocketAddr,
    pub(crate) upstream: SocketAddr,
    pub(crate) workers: usize,
    pub(crate) server: String,
    pub(crate) upstream_extra: String,
    pub(crate) zone: String,
    pub(crate) cache: String,
    pub(crate) tail: String,
}

impl Cfg {
    pub(crate) fn new(upstream: SocketAddr) -> Self {
        Cfg {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            upstream,
            workers: 2,
            server: String::new(),
            upstream_extra: "timeout = \"300ms\"".into(),
            zone: String::new(),
            cache: String::new(),
            tail: String::new(),
        }
    }

    pub(crate) fn toml(&self) -> String {
        format!(
            r#"[server]
workers = {workers}
{server}

[observability]
metrics = "127.0.0.1:0"
health = "127.0.0.1:0"
ready = "127.0.0.1:0"

[[listen]]
address = "{listen}"
view = "default"

[upstreams.up]
servers = ["{upstream}"]
{upstream_extra}

[[zone]]
view = "default"
name = "."
forward = "up"
{zone}

[zone.cache]
min_ttl = 1
{cache}

{tail}
"#,
            workers = self.workers,
            server = self.server,
            listen = self.listen,
            upstream = self.upstream,
            upstream_extra = self.upstream_extra,
            zone = self.zone,
            cache = self.cache,
            tail = self.tail,
        )
    }
}

/// Starts zonegate on a blocking thread (the harness polls with sleeps).
pub(crate) async fn start(config: String) -> Zonegate {
    tokio::task::spawn_blocking(move || Zonegate::start(&config))
        .await
        .expect("start task")
        .expect("zonegate starts")
}

/// Starts zonegate with extra files in its directory.
pub(crate) async fn start_with(config: String, files: Vec<(&'static str, Vec<u8>)>) -> Zonegate {
    tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .fold(Zonegate::builder().config(&config), |b, (name, bytes)| {
                b.file(name, bytes)
            })
            .start()
    })
    .await
    .expect("start task")
    .expect("zonegate starts")
}

/// The peak resident set of the zonegate process, KiB.
pub(crate) fn peak_rss_kib(zg: &Zonegate) -> u64 {
    proc_status_kib(zg.pid(), "VmHWM").unwrap_or(0)
}

/// A metric summed over its samples (0 if absent).
pub(crate) fn metric(zg: &Zonegate, name: &str, labels: &[(&str, &str)]) -> f64 {
    zg.metrics().map(|m| m.sum(name, labels)).unwrap_or(0.0)
}

/// The figures of one scenario, as RELIABILITY.md reports them.
pub(crate) struct Figures<'a> {
    pub(crate) scenario: &'a str,
    /// The test that reproduces it.
    pub(crate) test: &'a str,
    pub(crate) load: String,
    pub(crate) duration: Duration,
    pub(crate) report: &'a LoadReport,
    pub(crate) peak_rss_kib: u64,
    pub(crate) notes: String,
}

/// Prints the figures and appends them as one JSON line to `$ZG_RELIABILITY_OUT` if set.
pub(crate) fn record(f: &Figures<'_>) {
    let line = serde_json::json!({
        "scenario": f.scenario,
        "command": format!("cargo test -p zonegate-testkit --test reliability -- --exact {}", f.test),
        "long": long(),
        "load": f.load,
        "duration_s": f.duration.as_secs_f64(),
        "sent": f.report.sent,
        "answered": f.report.answered,
        "lost": f.report.lost,
        "rcodes": f.report.rcodes,
        "latency_us": {
            "p50": f.report.latency.p50.as_micros() as u64,
            "p99": f.report.latency.p99.as_micros() as u64,
            "max": f.report.latency.max.as_micros() as u64,
        },
        "peak_rss_kib": f.peak_rss_kib,
        "notes": f.notes,
    });
    eprintln!("figures: {line}");
    if let Some(path) = std::env::var_os("ZG_RELIABILITY_OUT") {
        let path = PathBuf::from(path);
        append(&path, &line.to_string());
        append(&path.with_extension("md"), &markdown_row(f));
    }
}

/// One row of RELIABILITY.md's table.
fn markdown_row(f: &Figures<'_>) -> String {
    format!(
        "| {} | `{}` | {} | {:.0} s | {} | {} | {} | {:.1} MiB | see fuzz section | {} |",
        f.scenario,
        f.test,
        f.load,
        f.duration.as_secs_f64(),
        f.report.sent,
        f.report.answered,
        f.report.lost,
        f.peak_rss_kib as f64 / 1024.0,
        f.notes.replace('|', "/"),
    )
}

fn append(path: &std::path::Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    writeln!(file, "{line}").expect("write figures");
}

/// Sums two reports (two loads run side by side).
pub(crate) fn combined(a: &LoadReport, b: &LoadReport) -> LoadReport {
    let mut sum = a.clone();
    sum.absorb(b);
    sum
}
