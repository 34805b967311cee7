//! AKS LocalDNS import: `localdnsconfig.json` (the AKS schema, unchanged) → [`Config`], with
//! the AKS validation rules. See REFERENCE.md "AKS LocalDNS".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::LowerName;
use serde::Deserialize;

use super::LoadEnv;
use super::error::{Collector, ConfigErrors};
use super::model::{
    CacheSettings, Config, Listen, LogFormat, Observability, Protocol, QueryLog, Selection,
    ServeStale, UpstreamGroupSpec, ZoneSpec,
};
use super::raw::normalize_zone;
use super::resolv::read_resolv_conf;
use super::validate::default_server;

/// Where the AKS views listen and where their destinations are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AksOptions {
    /// `vnetDNSOverrides` listener (AKS: 169.254.10.10:53).
    pub vnet_listen: SocketAddr,
    /// `kubeDNSOverrides` listener (AKS: 169.254.10.11:53).
    pub kube_listen: SocketAddr,
    /// `VnetDNS` servers; empty = the nameservers of `LoadEnv::resolv_conf`.
    pub vnet_dns: Vec<SocketAddr>,
    /// `ClusterCoreDNS` servers (the kube-dns service IP); required if any zone uses it.
    pub cluster_dns: Vec<SocketAddr>,
}

impl Default for AksOptions {
    fn default() -> Self {
        AksOptions {
            vnet_listen: SocketAddr::from(([169, 254, 10, 10], 53)),
            kube_listen: SocketAddr::from(([169, 254, 10, 11], 53)),
            vnet_dns: Vec::new(),
            cluster_dns: Vec::new(),
        }
    }
}

/// AKS `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AksMode {
    /// Enforced: fail if prerequisites are unmet.
    Required,
    /// Validated; enabled only where supported (the AKS default).
    Preferred,
    /// Validated, not enabled.
    Disabled,
}

/// The result of an import: the AKS mode and the equivalent native config.
#[derive(Debug, Clone, PartialEq)]
pub struct AksImport {
    pub mode: AksMode,
    pub config: Config,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAks {
    mode: Option<AksMode>,
    #[serde(rename = "vnetDNSOverrides")]
    vnet: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "kubeDNSOverrides")]
    kube: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOverride {
    query_logging: Option<AksQueryLogging>,
    protocol: Option<AksProtocol>,
    forward_destination: Option<Destination>,
    forward_policy: Option<AksForwardPolicy>,
    max_concurrent: Option<usize>,
    cache_duration_in_seconds: Option<u32>,
    serve_stale_duration_in_seconds: Option<u64>,
    serve_stale: Option<AksServeStale>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum AksQueryLogging {
    Error,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
enum AksProtocol {
    #[serde(rename = "PreferUDP")]
    PreferUdp,
    #[serde(rename = "ForceTCP")]
    ForceTcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
enum Destination {
    #[serde(rename = "VnetDNS")]
    VnetDns,
    #[serde(rename = "ClusterCoreDNS")]
    ClusterCoreDns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
enum AksForwardPolicy {
    Sequential,
    RoundRobin,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum AksServeStale {
    Verify,
    Immediate,
    /// The API enum spells it `Disable`, the docs `Disabled`.
    #[serde(alias = "Disabled")]
    Disable,
}

/// Which override map a zone came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Map {
    Vnet,
    Kube,
}

impl Map {
    fn key(self) -> &'static str {
        match self {
            Map::Vnet => "vnetDNSOverrides",
            Map::Kube => "kubeDNSOverrides",
        }
    }

    fn view(self) -> &'static str {
        match self {
            Map::Vnet => "vnet",
            Map::Kube => "kube",
        }
    }
}

/// One override with every AKS default applied.
#[derive(Debug, Clone)]
struct Override {
    map: Map,
    key: String,
    name: LowerName,
    query_log: QueryLog,
    group: GroupKey,
    cache_duration: u32,
    stale_for: u64,
    serve_stale: ServeStale,
}

/// Zones sharing all four share one upstream group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    destination: Destination,
    protocol: AksProtocol,
    policy: AksForwardPolicy,
    max_concurrent: usize,
}

impl GroupKey {
    fn name(&self) -> String {
        let dest = match self.destination {
            Destination::VnetDns => "vnetdns",
            Destination::ClusterCoreDns => "clustercoredns",
        };
        let proto = match self.protocol {
            AksProtocol::PreferUdp => "udp",
            AksProtocol::ForceTcp => "tcp",
        };
        let policy = match self.policy {
            AksForwardPolicy::Sequential => "sequential",
            AksForwardPolicy::RoundRobin => "round-robin",
            AksForwardPolicy::Random => "random",
        };
        format!("{dest}-{proto}-{policy}-{}", self.max_concurrent)
    }
}

/// Reads `localdnsconfig.json` and returns the equivalent native config.
pub fn load_aks(path: &Path, opts: &AksOptions, env: &LoadEnv) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::single(&origin, format!("cannot read: {e}")))?;
    parse_aks(&text, &origin, opts, env).map(|import| import.config)
}

/// Validates AKS JSON text with the AKS rules and maps it onto a native config.
pub fn parse_aks(
    text: &str,
    origin: &str,
    opts: &AksOptions,
    env: &LoadEnv,
) -> Result<AksImport, ConfigErrors> {
    let mut errs = Collector::new(origin, text);
    let raw: RawAks = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            // serde_json appends " at line L column C"; the position is already in front.
            let message = e.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m);
            errs.at_line((e.line(), e.column()), "", message);
            return Err(errs.into_errors());
        }
    };
    let mode = raw.mode.unwrap_or(AksMode::Preferred);
    let mut overrides = Vec::new();
    for (map, entries) in [(Map::Vnet, raw.vnet), (Map::Kube, raw.kube)] {
        let entries = entries.unwrap_or_else(default_overrides);
        for (key, value) in entries {
            if let Some(o) = read_override(text, map, key, value, &mut errs) {
                overrides.push(o);
            }
        }
    }
    check_rules(text, &overrides, &mut errs);
    let config = build(text, &overrides, opts, env, &mut errs);
    errs.finish(AksImport { mode, config })
}

/// What AKS uses when a map is left out: `.` and `cluster.local` with the defaults.
fn default_overrides() -> BTreeMap<String, serde_json::Value> {
    [".", "cluster.local"]
        .into_iter()
        .map(|k| {
            (
                k.to_string(),
                serde_json::Value::Object(serde_json::Map::new()),
            )
        })
        .collect()
}

fn zone_path(map: Map, key: &str) -> String {
    format!("{}[{key:?}]", map.key())
}

/// Best-effort line of a zone (or a property of it) in the text, for messages.
fn locate(text: &str, map: Map, key: &str, property: Option<&str>) -> Option<(usize, usize)> {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut at = text.find(&quoted(map.key()))?;
    let mut targets = vec![quoted(key)];
    targets.extend(property.map(quoted));
    for target in &targets {
        at += text.get(at..)?.find(target.as_str())?;
    }
    Some(super::error::line_col(text, at))
}

fn report(
    errs: &mut Collector<'_>,
    text: &str,
    map: Map,
    key: &str,
    property: Option<&str>,
    msg: String,
) {
    let mut path = zone_path(map, key);
    if let Some(p) = property {
        path = format!("{path}.{p}");
    }
    match locate(text, map, key, property) {
        Some(pos) => errs.at_line(pos, path, msg),
        None => errs.at(path, msg),
    }
}

fn read_override(
    text: &str,
    map: Map,
    key: String,
    value: serde_json::Value,
    errs: &mut Collector<'_>,
) -> Option<Override> {
    let raw: RawOverride = serde_json::from_value(value)
        .map_err(|e| report(errs, text, map, &key, None, e.to_string()))
        .ok()?;
    let name = normalize_zone(&key)
        .map_err(|e| report(errs, text, map, &key, None, e))
        .ok()?;
    let cluster = is_cluster_local(&name);
    let default_destination = match (map, cluster) {
        (_, true) | (Map::Kube, _) => Destination::ClusterCoreDns,
        (Map::Vnet, false) => Destination::VnetDns,
    };
    let default_protocol = if cluster {
        AksProtocol::ForceTcp
    } else {
        AksProtocol::PreferUdp
    };
    let group = GroupKey {
        destination: raw.forward_destination.unwrap_or(default_destination),
        protocol: raw.protocol.unwrap_or(default_protocol),
        policy: raw.forward_policy.unwrap_or(AksForwardPolicy::Sequential),
        max_concurrent: raw.max_concurrent.unwrap_or(1000),
    };
    if group.max_concurrent == 0 {
        report(
            errs,
            text,
            map,
            &key,
            Some("maxConcurrent"),
            "must be greater than 0".to_string(),
        );
    }
    let serve_stale = match raw.serve_stale.unwrap_or(AksServeStale::Immediate) {
        AksServeStale::Verify => ServeStale::Verify,
        AksServeStale::Immediate => ServeStale::Immediate,
        AksServeStale::Disable => ServeStale::Disabled,
    };
    let query_log = match raw.query_logging.unwrap_or(AksQueryLogging::Error) {
        AksQueryLogging::Error => QueryLog::Error,
        AksQueryLogging::Log => QueryLog::Log,
    };
    Some(Override {
        map,
        key,
        name,
        query_log,
        group,
        cache_duration: raw.cache_duration_in_seconds.unwrap_or(3600),
        stale_for: raw.serve_stale_duration_in_seconds.unwrap_or(3600),
        serve_stale,
    })
}

fn is_cluster_local(name: &LowerName) -> bool {
    name.to_string() == "cluster.local."
}

/// The AKS validation rules, every violation reported.
fn check_rules(text: &str, overrides: &[Override], errs: &mut Collector<'_>) {
    if overrides.is_empty() {
        // Both maps given and empty (or every entry invalid): nothing to listen on, which
        // the native config rejects too.
        errs.at(
            "",
            "no zones: vnetDNSOverrides and kubeDNSOverrides are both empty",
        );
    }
    let mut seen = std::collections::HashSet::new();
    for o in overrides {
        if !seen.insert((o.map.view(), o.name.clone())) {
            let msg = format!("zone {} is listed twice", o.name);
            report(errs, text, o.map, &o.key, None, msg);
        }
        let dest = o.group.destination;
        if o.map == Map::Vnet && o.name.is_root() && dest == Destination::ClusterCoreDns {
            let msg = "the vnet \".\" zone cannot forward to ClusterCoreDNS".to_string();
            report(errs, text, o.map, &o.key, Some("forwardDestination"), msg);
        }
        if is_cluster_local(&o.name) && dest == Destination::VnetDns {
            let msg = "cluster.local cannot forward to VnetDNS".to_string();
            report(errs, text, o.map, &o.key, Some("forwardDestination"), msg);
        }
        if o.group.protocol == AksProtocol::ForceTcp && o.serve_stale == ServeStale::Verify {
            let msg = "serveStale Verify cannot be used with protocol ForceTCP".to_string();
            report(errs, text, o.map, &o.key, Some("serveStale"), msg);
        }
    }
}

fn build(
    text: &str,
    overrides: &[Override],
    opts: &AksOptions,
    env: &LoadEnv,
    errs: &mut Collector<'_>,
) -> Config {
    let listeners = listeners(overrides, opts);
    let mut upstreams = BTreeMap::new();
    let mut servers = Servers::new(text, opts, env, &listeners);
    let mut zones = Vec::new();
    for o in overrides {
        let name = o.group.name();
        if !upstreams.contains_key(&name) {
            let found = servers.get(o, errs);
            upstreams.insert(name.clone(), group(&name, &o.group, found));
        }
        zones.push(zone(o, name));
    }
    Config {
        server: default_server(),
        observability: Observability {
            metrics: SocketAddr::from(([0, 0, 0, 0], 9253)),
            health: SocketAddr::from(([0, 0, 0, 0], 8080)),
            ready: SocketAddr::from(([0, 0, 0, 0], 8181)),
            log_format: LogFormat::Text,
        },
        listeners,
        upstreams,
        zones,
        policies: BTreeMap::new(),
        oci: Default::default(),
    }
}

/// One listener per view that has zones.
fn listeners(overrides: &[Override], opts: &AksOptions) -> Vec<Listen> {
    [(Map::Vnet, opts.vnet_listen), (Map::Kube, opts.kube_listen)]
        .into_iter()
        .filter(|(map, _)| overrides.iter().any(|o| o.map == *map))
        .map(|(map, address)| Listen {
            address,
            view: map.view().to_string(),
            udp: true,
            tcp: true,
        })
        .collect()
}

/// Resolves destinations to addresses, each problem reported once.
struct Servers<'a> {
    text: &'a str,
    opts: &'a AksOptions,
    env: &'a LoadEnv,
    listeners: &'a [Listen],
    vnet: Option<Vec<SocketAddr>>,
    reported_cluster: bool,
}

impl<'a> Servers<'a> {
    fn new(text: &'a str, opts: &'a AksOptions, env: &'a LoadEnv, listeners: &'a [Listen]) -> Self {
        Servers {
            text,
            opts,
            env,
            listeners,
            vnet: None,
            reported_cluster: false,
        }
    }

    fn get(&mut self, o: &Override, errs: &mut Collector<'_>) -> Vec<SocketAddr> {
        match o.group.destination {
            Destination::VnetDns => self.vnet(o, errs),
            Destination::ClusterCoreDns => {
                if self.opts.cluster_dns.is_empty() && !self.reported_cluster {
                    self.reported_cluster = true;
                    let msg = "forwardDestination ClusterCoreDNS needs the cluster DNS service address (--cluster-dns IP)";
                    report(errs, self.text, o.map, &o.key, None, msg.to_string());
                }
                self.opts.cluster_dns.clone()
            }
        }
    }

    fn vnet(&mut self, o: &Override, errs: &mut Collector<'_>) -> Vec<SocketAddr> {
        if let Some(found) = &self.vnet {
            return found.clone();
        }
        let found = if self.opts.vnet_dns.is_empty() {
            read_resolv_conf(&self.env.resolv_conf).unwrap_or_else(|why| {
                report(
                    errs,
                    self.text,
                    o.map,
                    &o.key,
                    None,
                    format!("VnetDNS: {why} (--vnet-dns IP)"),
                );
                Vec::new()
            })
        } else {
            self.opts.vnet_dns.clone()
        };
        for addr in &found {
            if self.listeners.iter().any(|l| l.address == *addr) {
                let msg = format!(
                    "VnetDNS server {addr} is our own listener (forwarding loop): pass --vnet-dns IP"
                );
                report(errs, self.text, o.map, &o.key, None, msg);
            }
        }
        self.vnet = Some(found.clone());
        found
    }
}

fn group(name: &str, key: &GroupKey, servers: Vec<SocketAddr>) -> UpstreamGroupSpec {
    UpstreamGroupSpec {
        name: name.to_string(),
        servers,
        protocol: match key.protocol {
            AksProtocol::PreferUdp => Protocol::PreferUdp,
            AksProtocol::ForceTcp => Protocol::ForceTcp,
        },
        selection: match key.policy {
            AksForwardPolicy::Sequential => Selection::Sequential,
            AksForwardPolicy::RoundRobin => Selection::RoundRobin,
            AksForwardPolicy::Random => Selection::Random,
        },
        max_concurrent: key.max_concurrent,
        timeout: Duration::from_secs(2),
        max_fails: 2,
        health_check: Duration::from_millis(500),
        expire: Duration::from_secs(10),
    }
}

fn zone(o: &Override, forward: String) -> ZoneSpec {
    ZoneSpec {
        view: o.map.view().to_string(),
        name: o.name.clone(),
        forward,
        cache: CacheSettings {
            max_ttl: o.cache_duration,
            // A floor above the cap would be rejected by `validate` when re-read.
            min_ttl: CacheSettings::default().min_ttl.min(o.cache_duration),
            servfail_ttl: 0,
            serve_stale: o.serve_stale,
            stale_for: Duration::from_secs(o.stale_for),
            ..CacheSettings::default()
        },
        query_log: o.query_log,
        policies: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
