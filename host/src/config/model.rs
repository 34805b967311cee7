//! Validated configuration: the typed values every other module consumes.
//!
//! Produced only by `config::validate` (native TOML) or `config::aks` (AKS LocalDNS JSON);
//! everything here has already been checked, so consumers never re-validate.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::LowerName;

/// A complete, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: Server,
    pub observability: Observability,
    pub listeners: Vec<Listen>,
    /// Upstream groups by name.
    pub upstreams: BTreeMap<String, UpstreamGroupSpec>,
    pub zones: Vec<ZoneSpec>,
    /// Policies by name.
    pub policies: BTreeMap<String, PolicySpec>,
    /// How `oci://` policy sources are pulled and cached.
    pub oci: OciOptions,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// UDP sockets per listener and runtime worker threads (already resolved: never 0).
    pub workers: usize,
    pub drain_timeout: Duration,
    /// Our EDNS0 UDP payload size (default 1232).
    pub udp_payload_size: u16,
    pub tcp_idle_timeout: Duration,
    pub tcp_max_connections: usize,
    /// Queries per client TCP connection; 0 = unlimited.
    pub tcp_max_queries: u32,
    /// Clients allowed to query; others are REFUSED.
    pub allow_clients: Vec<IpNet>,
    /// Queries per second per client address; 0 = off.
    pub rate_limit: u32,
}

/// An IP prefix (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// Where the HTTP endpoints listen.
#[derive(Debug, Clone, PartialEq)]
pub struct Observability {
    pub metrics: SocketAddr,
    pub health: SocketAddr,
    pub ready: SocketAddr,
    pub log_format: LogFormat,
}

/// How log lines are written (`[observability] log_format`, and `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// One listening address (UDP and/or TCP), tagged with a view.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    /// Port 0 = chosen by the kernel at bind time (tests).
    pub address: SocketAddr,
    pub view: String,
    pub udp: bool,
    pub tcp: bool,
}

/// An upstream group.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamGroupSpec {
    pub name: String,
    /// Resolved addresses (`resolv.conf` already expanded, port defaulted to 53).
    pub servers: Vec<SocketAddr>,
    pub protocol: Protocol,
    pub selection: Selection,
    pub max_concurrent: usize,
    /// Read timeout per attempt.
    pub timeout: Duration,
    pub max_fails: u32,
    pub health_check: Duration,
    /// Idle upstream TCP connections are closed after this.
    pub expire: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// UDP, retried over TCP when the answer is truncated.
    PreferUdp,
    /// Reused, pipelined TCP connections only.
    ForceTcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    Sequential,
    RoundRobin,
    Random,
}

/// A zone (server block) within a view.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneSpec {
    pub view: String,
    /// Lowercased, fully qualified (`cluster.local.`, or `.` for the root).
    pub name: LowerName,
    /// Name of the upstream group (exists in `Config::upstreams`).
    pub forward: String,
    pub cache: CacheSettings,
    pub query_log: QueryLog,
    /// Names of policies (exist in `Config::policies`), applied in order.
    pub policies: Vec<String>,
}

/// Per-zone cache settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub enabled: bool,
    /// Maximum number of entries.
    pub capacity: u64,
    /// Cap on positive TTLs, seconds.
    pub max_ttl: u32,
    /// Floor on TTLs, seconds.
    pub min_ttl: u32,
    /// Cap on negative TTLs (from the SOA minimum), seconds.
    pub negative_max_ttl: u32,
    /// TTL for SERVFAIL answers; 0 = never cached.
    pub servfail_ttl: u32,
    pub serve_stale: ServeStale,
    /// How long past expiry an entry may still be served.
    pub stale_for: Duration,
    /// TTL put on stale answers.
    pub stale_ttl: u32,
    /// Verify mode: how long to wait for the upstream before answering stale.
    pub verify_timeout: Duration,
}

impl Default for CacheSettings {
    /// The AKS LocalDNS defaults.
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            capacity: 10_000,
            max_ttl: 3600,
            min_ttl: 5,
            negative_max_ttl: 1800,
            servfail_ttl: 0,
            serve_stale: ServeStale::Immediate,
            stale_for: Duration::from_secs(3600),
            stale_ttl: 30,
            verify_timeout: Duration::from_millis(1800),
        }
    }
}

/// RFC 8767 serve-stale mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeStale {
    /// Answer stale at once and refresh in the background.
    Immediate,
    /// Refresh first; answer stale only if the upstream fails or is too slow.
    Verify,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLog {
    /// Only failures (SERVFAIL, REFUSED from an upstream error, timeouts).
    Error,
    /// One line per query.
    Log,
}

/// A policy module and how it is run.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySpec {
    pub name: String,
    pub source: PolicySource,
    pub on_error: OnError,
    /// Epoch deadline per call.
    pub timeout: Duration,
    /// Linear memory cap per instance, bytes.
    pub memory_limit: usize,
    /// The policy's own settings, serialized JSON, passed to `init`.
    pub settings: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    File(PathBuf),
    /// `oci://registry/repo[:tag][@sha256:…][#policy]`, parsed when the config is read.
    Oci(crate::oci::OciReference),
}

/// `[oci]`: pulling policies from OCI registries.
#[derive(Debug, Clone, PartialEq)]
pub struct OciOptions {
    /// Content-addressed cache of pulled blobs and the last good tag → digest mappings.
    pub cache_dir: PathBuf,
    /// How often tags are re-resolved.
    pub refresh: Duration,
    /// Random delay added to each refresh, so nodes do not hit the registry together.
    pub jitter: Jitter,
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// A docker `config.json` with registry credentials; anonymous when `None`.
    pub docker_config: Option<PathBuf>,
    /// Upper bound of the cache; unreferenced digests are removed beyond it.
    pub max_cache_size: u64,
    /// Bound on one pull (startup waits at most this long for a registry).
    pub pull_timeout: Duration,
}

impl Default for OciOptions {
    fn default() -> Self {
        OciOptions {
            cache_dir: PathBuf::from("/var/lib/zonegate/oci"),
            refresh: Duration::from_secs(300),
            jitter: Jitter::Fraction(0.1),
            insecure: Vec::new(),
            docker_config: None,
            max_cache_size: 512 << 20,
            pull_timeout: Duration::from_secs(10),
        }
    }
}

/// Jitter as a fraction of the refresh interval (`0.1`) or a duration (`"30s"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    Fraction(f64),
    Duration(Duration),
}

impl Jitter {
    /// The largest random delay added to `refresh`.
    pub fn max_delay(self, refresh: Duration) -> Duration {
        match self {
            Jitter::Fraction(f) => refresh.mul_f64(f.clamp(0.0, 1.0)),
            Jitter::Duration(d) => d,
        }
    }
}

/// What a policy failure (trap, timeout, memory) means for the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Answer REFUSED.
    Deny,
    /// Continue as if the policy allowed the query.
    Allow,
}
