//! Raw configuration: the TOML as written, deserialized with serde (`deny_unknown_fields`).
//! Values that can be checked alone (durations, addresses, zone names, enums) are parsed here
//! so their errors carry a line; cross-references are checked by `validate`.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::model::{
    IpNet, Jitter, LogFormat, OciOptions, OnError, PolicySource, Protocol, QueryLog, Selection,
    ServeStale,
};
use super::resolv::parse_server;
use super::units::{parse_duration, parse_size};

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawServer {
    pub(crate) workers: usize,
    pub(crate) drain_timeout: Dur,
    pub(crate) udp_payload_size: u16,
    pub(crate) tcp_idle_timeout: Dur,
    pub(crate) tcp_max_connections: usize,
    pub(crate) tcp_max_queries: u32,
    pub(crate) allow_clients: Vec<Net>,
    pub(crate) rate_limit: u32,
}

/// Private, loopback and link-local ranges: who may query by default.
pub(crate) const DEFAULT_ALLOW_CLIENTS: [&str; 9] = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            workers: 0,
            drain_timeout: Dur(Duration::from_secs(5)),
            udp_payload_size: 1232,
            tcp_idle_timeout: Dur(Duration::from_secs(10)),
            tcp_max_connections: 1000,
            tcp_max_queries: 0,
            allow_clients: DEFAULT_ALLOW_CLIENTS
                .iter()
                .filter_map(|s| parse_net(s).ok().map(Net))
                .collect(),
            rate_limit: 0,
        }
    }
}

/// `[observability]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawObservability {
    pub(crate) metrics: SocketAddr,
    pub(crate) health: SocketAddr,
    pub(crate) ready: SocketAddr,
    pub(crate) log_format: RawLogFormat,
}

impl Default for RawObservability {
    fn default() -> Self {
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        RawObservability {
            metrics: any(9253),
            health: any(8080),
            ready: any(8181),
            log_format: RawLogFormat::Text,
        }
    }
}

/// `[cache]`: defaults for every zone cache.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCache {
    pub(crate) capacity: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache { capacity: 10_000 }
    }
}

/// `[oci]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawOci {
    pub(crate) cache_dir: PathBuf,
    pub(crate) refresh: Dur,
    pub(crate) jitter: RawJitter,
    pub(crate) insecure: Vec<String>,
    pub(crate) docker_config: Option<PathBuf>,
    pub(crate) max_cache_size: Size,
    pub(crate) pull_timeout: Dur,
}

impl Default for RawOci {
    fn default() -> Self {
        let d = OciOptions::default();
        RawOci {
            cache_dir: d.cache_dir,
            refresh: Dur(d.refresh),
            jitter: RawJitter(d.jitter),
            insecure: d.insecure,
            docker_config: d.docker_config,
            max_cache_size: Size(d.max_cache_size),
            pull_timeout: Dur(d.pull_timeout),
        }
    }
}

/// `jitter = 0.1` (a fraction of `refresh`) or `jitter = "30s"`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawJitter(pub(crate) Jitter);

impl<'de> Deserialize<'de> for RawJitter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JitterVisitor)
    }
}

struct JitterVisitor;

impl<'de> Visitor<'de> for JitterVisitor {
    type Value = RawJitter;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a fraction of refresh like 0.1, or a duration like \"30s\"")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawJitter, E> {
        if (0.0..=1.0).contains(&v) {
            Ok(RawJitter(Jitter::Fraction(v)))
        } else {
            Err(E::custom(format!(
                "jitter fraction {v} is not between 0 and 1"
            )))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawJitter, E> {
        self.visit_f64(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawJitter, E> {
        self.visit_f64(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawJitter, E> {
        parse_duration(v)
            .map(|d| RawJitter(Jitter::Duration(d)))
            .map_err(E::custom)
    }
}

/// `[[listen]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub(crate) address: SocketAddr,
    #[serde(default = "default_view")]
    pub(crate) view: String,
    #[serde(default = "yes")]
    pub(crate) udp: bool,
    #[serde(default = "yes")]
    pub(crate) tcp: bool,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) servers: Vec<ServerAddr>,
    #[serde(default = "default_protocol")]
    pub(crate) protocol: RawProtocol,
    #[serde(default = "default_selection")]
    pub(crate) selection: RawSelection,
    #[serde(default = "default_max_concurrent")]
    pub(crate) max_concurrent: usize,
    #[serde(default = "default_timeout")]
    pub(crate) timeout: Dur,
    #[serde(default = "default_max_fails")]
    pub(crate) max_fails: u32,
    #[serde(default = "default_health_check")]
    pub(crate) health_check: Dur,
    #[serde(default = "default_expire")]
    pub(crate) expire: Dur,
}

/// `[[zone]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZone {
    #[serde(default = "default_view")]
    pub(crate) view: String,
    pub(crate) name: ZoneName,
    pub(crate) forward: String,
    #[serde(default)]
    pub(crate) cache: RawZoneCache,
    #[serde(default = "default_query_log")]
    pub(crate) query_log: RawQueryLog,
    #[serde(default)]
    pub(crate) policies: Vec<String>,
}

/// `[zone.cache]`: every key optional, defaults from `CacheSettings::default()` and `[cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZoneCache {
    pub(crate) enabled: Option<bool>,
    pub(crate) capacity: Option<u64>,
    pub(crate) max_ttl: Option<u32>,
    pub(crate) min_ttl: Option<u32>,
    pub(crate) negative_max_ttl: Option<u32>,
    pub(crate) servfail_ttl: Option<u32>,
    pub(crate) serve_stale: Option<RawServeStale>,
    pub(crate) stale_for: Option<Dur>,
    pub(crate) stale_ttl: Option<u32>,
    pub(crate) verify_timeout: Option<Dur>,
}

/// `[policies.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub(crate) source: Source,
    #[serde(default = "default_on_error")]
    pub(crate) on_error: RawOnError,
    #[serde(default = "default_policy_timeout")]
    pub(crate) timeout: Dur,
    #[serde(default = "default_memory_limit")]
    pub(crate) memory_limit: Size,
    #[serde(default)]
    pub(crate) settings: Option<toml::Table>,
}

fn default_view() -> String {
    "default".to_string()
}
fn yes() -> bool {
    true
}
fn default_protocol() -> RawProtocol {
    RawProtocol::PreferUdp
}
fn default_selection() -> RawSelection {
    RawSelection::Sequential
}
fn default_max_concurrent() -> usize {
    1000
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_max_fails() -> u32 {
    2
}
fn default_health_check() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_expire() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_query_log() -> RawQueryLog {
    RawQueryLog::Error
}
fn default_on_error() -> RawOnError {
    RawOnError::Deny
}
fn default_policy_timeout() -> Dur {
    Dur(Duration::from_millis(1))
}
fn default_memory_limit() -> Size {
    Size(16 << 20)
}

macro_rules! raw_enum {
    ($raw:ident => $model:ident { $($variant:ident = $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        pub(crate) enum $raw {
            $(#[serde(rename = $text $(, alias = $alias)*)] $variant,)+
        }
        impl From<$raw> for $model {
            fn from(raw: $raw) -> Self {
                match raw { $($raw::$variant => $model::$variant,)+ }
            }
        }
    };
}

raw_enum!(RawProtocol => Protocol { PreferUdp = "prefer-udp", ForceTcp = "force-tcp" });
raw_enum!(RawSelection => Selection {
    Sequential = "sequential", RoundRobin = "round-robin", Random = "random",
});
raw_enum!(RawServeStale => ServeStale {
    Immediate = "immediate", Verify = "verify", Disabled = "disabled" | "disable",
});
raw_enum!(RawQueryLog => QueryLog { Error = "error", Log = "log" });
raw_enum!(RawOnError => OnError { Deny = "deny", Allow = "allow" });
raw_enum!(RawLogFormat => LogFormat { Text = "text", Json = "json" });

/// Deserializes a string through a parse function, so the error names what was expected.
struct ParseVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
    from_int: Option<fn(u64) -> T>,
    _t: PhantomData<T>,
}

impl<'de, T> Visitor<'de> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        match self.from_int {
            Some(f) => Ok(f(v)),
            None => Err(E::invalid_type(de::Unexpected::Unsigned(v), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) if self.from_int.is_some() => self.visit_u64(v),
            _ => Err(E::invalid_type(de::Unexpected::Signed(v), &self)),
        }
    }
}

fn parse_with<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
    from_int: Option<fn(u64) -> T>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_any(ParseVisitor {
        expecting,
        parse,
        from_int,
        _t: PhantomData,
    })
}

macro_rules! parsed_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty), $expecting:literal, $parse:expr, $from_int:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) struct $name(pub(crate) $inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                parse_with(d, $expecting, |s| $parse(s).map($name), $from_int)
            }
        }
    };
}

parsed_newtype!(
    /// A duration string (`"2s"`).
    Dur(Duration), "a duration like \"2s\"", parse_duration, None
);
parsed_newtype!(
    /// A byte size (`"16MiB"` or an integer).
    Size(u64), "a size like \"16MiB\"", parse_size, Some(Size)
);
parsed_newtype!(
    /// An IP prefix (`"10.0.0.0/8"`).
    Net(IpNet), "an IP prefix like \"10.0.0.0/8\"", parse_net, None
);
parsed_newtype!(
    /// A normalized zone name.
    ZoneName(LowerName), "a zone name like \"cluster.local\"", normalize_zone, None
);
parsed_newtype!(
    /// `file:PATH` or `oci://…`.
    Source(PolicySource), "a policy source like \"file:/path.wasm\" or \"oci://…\"", parse_source, None
);

/// An upstream server entry: an address, or every nameserver of resolv.conf.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServerAddr {
    ResolvConf,
    Addr(SocketAddr),
}

impl<'de> Deserialize<'de> for ServerAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parse = |s: &str| match s {
            "resolv.conf" => Ok(ServerAddr::ResolvConf),
            _ => parse_server(s).map(ServerAddr::Addr),
        };
        parse_with(d, "\"IP\", \"IP:PORT\" or \"resolv.conf\"", parse, None)
    }
}

/// Parses `10.0.0.0/8` or a bare address (a host prefix).
pub(crate) fn parse_net(text: &str) -> Result<IpNet, String> {
    let bad = || format!("invalid IP prefix {text:?}: expected like \"10.0.0.0/8\"");
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: std::net::IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(bad)?,
        None => max,
    };
    Ok(IpNet { addr, prefix_len })
}

/// Lowercases, adds the trailing dot and checks the name: `Cluster.Local` → `cluster.local.`.
pub(crate) fn normalize_zone(text: &str) -> Result<LowerName, String> {
    let bad = |why: &str| format!("invalid zone name {text:?}: {why}");
    let trimmed = text.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return Ok(LowerName::from(Name::root()));
    }
    if trimmed.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("labels must be 1 to 63 characters"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("only letters, digits, '-' and '_' are allowed"));
        }
    }
    let name = Name::from_str(&format!("{}.", trimmed.to_ascii_lowercase()))
        .map_err(|e| bad(&e.to_string()))?;
    Ok(LowerName::from(name))
}

fn parse_source(text: &str) -> Result<PolicySource, String> {
    if let Some(path) = text.strip_prefix("file:") {
        if path.is_empty() {
            return Err("invalid policy source \"file:\": missing path".to_string());
        }
        return Ok(PolicySource::File(PathBuf::from(path)));
    }
    if text.starts_with("oci://") {
        // Parsed now, so `check` and a reload reject a malformed reference with its line.
        return text
            .parse::<crate::oci::OciReference>()
            .map(PolicySource::Oci)
            .map_err(|e| e.to_string());
    }
    Err(format!(
        "invalid policy source {text:?}: expected \"file:PATH\" or \"oci://REGISTRY/REPO[:TAG][@DIGEST]\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names() {
        let cases: [(&str, Option<&str>); 10] = [
            (".", Some(".")),
            ("", Some(".")),
            ("cluster.local", Some("cluster.local.")),
            ("Cluster.LOCAL.", Some("cluster.local.")),
            ("_tcp.example.com", Some("_tcp.example.com.")),
            ("a..b", None),
            ("bad name", None),
            ("ex*ample.com", None),
            ("a-b.example", Some("a-b.example.")),
            ("x.", Some("x.")),
        ];
        for (text, want) in cases {
            let got = normalize_zone(text).ok().map(|n| n.to_string());
            assert_eq!(got.as_deref(), want, "{text:?}");
        }
        assert!(normalize_zone(&"a".repeat(64)).is_err());
        assert!(normalize_zone(&["a"; 130].join(".")).is_err());
    }

    #[test]
    fn nets() {
        let cases: [(&str, Option<(&str, u8)>); 6] = [
            ("10.0.0.0/8", Some(("10.0.0.0", 8))),
            ("fe80::/10", Some(("fe80::", 10))),
            ("192.168.1.1", Some(("192.168.1.1", 32))),
            ("10.0.0.0/33", None),
            ("::/129", None),
            ("nope/8", None),
        ];
        for (text, want) in cases {
            let want = want.map(|(a, l)| IpNet {
                addr: a.parse().unwrap(),
                prefix_len: l,
            });
            assert_eq!(parse_net(text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn sources() {
        assert_eq!(
            parse_source("file:/p.wasm"),
            Ok(PolicySource::File("/p.wasm".into()))
        );
        assert_eq!(
            parse_source("oci://ghcr.io/x/y:1"),
            Ok(PolicySource::Oci(
                "oci://ghcr.io/x/y:1"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}"))
            ))
        );
        for bad in ["file:", "oci://", "/p.wasm", "http://x"] {
            assert!(parse_source(bad).is_err(), "{bad}");
        }
        // An oci:// reference is parsed in full: the reason names what is wrong.
        for (bad, reason) in [
            (
                "oci://ghcr.io/x/y",
                "a :TAG or an @sha256:DIGEST is required",
            ),
            ("oci://x/y:1", "is not a registry host"),
            ("oci://ghcr.io/x/y@sha256:abc", "64 lowercase hex digits"),
            ("oci://ghcr.io/x/y:1#", "the #POLICY part"),
        ] {
            let err = parse_source(bad).err().unwrap_or_default();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }
}
