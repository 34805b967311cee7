//! In-process zonegate for integration tests: the real server (`app::start`) on
//! 127.0.0.1:0, configured from TOML text the way a user writes it.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;

use zonegate::app::{self, ConfigSource, RunOptions, Running};
use zonegate::config::{self, LoadEnv};
use zonegate_testkit::Metrics;

/// The `[server]`/`[observability]`/`[[listen]]` part every test config shares.
pub fn base() -> String {
    r#"
[server]
workers = 2
drain_timeout = "2s"

[observability]
metrics = "127.0.0.1:0"
health = "127.0.0.1:0"
ready = "127.0.0.1:0"

[[listen]]
address = "127.0.0.1:0"
view = "default"
"#
    .to_string()
}

/// A config forwarding `.` to `upstream` with the given extra `[zone.cache]` lines and
/// `[upstreams.up]` lines.
pub fn forwarding(upstream: SocketAddr, upstream_extra: &str, cache_extra: &str) -> String {
    format!(
        r#"{base}
[upstreams.up]
servers = ["{upstream}"]
timeout = "500ms"
{upstream_extra}

[[zone]]
view = "default"
name = "."
forward = "up"

[zone.cache]
min_ttl = 1
{cache_extra}
"#,
        base = base()
    )
}

/// Starts zonegate in this process from TOML text.
pub async fn start(toml: &str) -> Running {
    let config = config::parse(toml, "test.toml", &LoadEnv::default())
        .unwrap_or_else(|e| panic!("config: {e}"));
    let opts = RunOptions {
        source: ConfigSource::Default,
        ready_file: None,
        cache_dir: None,
        setup: None,
    };
    app::start(opts, config).await.expect("start")
}

/// Starts zonegate from a config file (so `reload` re-reads it).
pub async fn start_file(path: PathBuf) -> Running {
    let config = config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    let opts = RunOptions {
        source: ConfigSource::File(path),
        ready_file: None,
        cache_dir: None,
        setup: None,
    };
    app::start(opts, config).await.expect("start")
}

/// The current metrics, parsed.
pub fn metrics(running: &Running) -> Metrics {
    Metrics::parse(&running.metrics.encode()).expect("metrics parse")
}

/// Sum of every sample of `name` whose labels include `labels`.
pub fn metric_sum(running: &Running, name: &str, labels: &[(&str, &str)]) -> f64 {
    let m = metrics(running);
    m.sum(name, labels)
}
pub mod registry;
