//! Raw sections → one validated [`Config`]: cross-references, ranges and defaults, every
//! error collected with its path.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use super::LoadEnv;
use super::document::RawDocument;
use super::error::Collector;
use super::model::{
    CacheSettings, Config, Listen, Observability, OciOptions, PolicySpec, ServeStale, Server,
    UpstreamGroupSpec, ZoneSpec,
};
use super::raw::{
    RawListen, RawOci, RawPolicy, RawServer, RawUpstream, RawZone, RawZoneCache, ServerAddr,
};
use super::resolv::read_resolv_conf;

/// Validates every section; errors go to `errs`, the result is only meaningful if none.
pub(crate) fn validate(doc: RawDocument, env: &LoadEnv, errs: &mut Collector<'_>) -> Config {
    let server = server(doc.server, errs);
    let observability = Observability {
        metrics: doc.observability.metrics,
        health: doc.observability.health,
        ready: doc.observability.ready,
        log_format: doc.observability.log_format.into(),
    };
    let listeners = listeners(&doc.listen, doc.listen_failed, errs);
    let mut resolv = ResolvConf::new(env);
    let upstreams = doc
        .upstreams
        .into_iter()
        .map(|(name, raw)| {
            let group = upstream(&name, raw, &listeners, &mut resolv, errs);
            (name, group)
        })
        .collect();
    let policies = doc
        .policies
        .into_iter()
        .map(|(name, raw)| (name.clone(), policy(name, raw, errs)))
        .collect();
    let refs = Refs {
        views: listeners.iter().map(|l| l.view.clone()).collect(),
        check_views: !doc.listen_failed,
        upstreams: &doc.upstream_names,
        policies: &doc.policy_names,
        capacity: doc.cache.capacity,
    };
    let zones = zones(doc.zones, &refs, errs);
    let oci = oci(doc.oci, errs);
    Config {
        server,
        observability,
        listeners,
        upstreams,
        zones,
        policies,
        oci,
    }
}

fn oci(raw: RawOci, errs: &mut Collector<'_>) -> OciOptions {
    positive(errs, "oci", "refresh", raw.refresh.0.as_nanos());
    positive(errs, "oci", "pull_timeout", raw.pull_timeout.0.as_nanos());
    positive(
        errs,
        "oci",
        "max_cache_size",
        u128::from(raw.max_cache_size.0),
    );
    if raw.cache_dir.as_os_str().is_empty() {
        errs.at("oci.cache_dir", "must not be empty");
    }
    for (i, host) in raw.insecure.iter().enumerate() {
        let ok = !host.is_empty() && !host.contains("://") && !host.contains('/');
        if !ok {
            errs.at(
                format!("oci.insecure[{i}]"),
                format!("{host:?} is not a registry like \"127.0.0.1:5000\" (no scheme, no path)"),
            );
        }
    }
    OciOptions {
        cache_dir: raw.cache_dir,
        refresh: raw.refresh.0,
        jitter: raw.jitter.0,
        insecure: raw.insecure,
        docker_config: raw.docker_config,
        max_cache_size: raw.max_cache_size.0,
        pull_timeout: raw.pull_timeout.0,
    }
}

/// The `[server]` defaults, resolved (used by importers that have no `[server]` of their own).
pub(crate) fn default_server() -> Server {
    let mut errs = Collector::new("", "");
    server(RawServer::default(), &mut errs)
}

fn server(raw: RawServer, errs: &mut Collector<'_>) -> Server {
    if raw.udp_payload_size < 512 {
        errs.at("server.udp_payload_size", "must be at least 512");
    }
    if raw.tcp_max_connections == 0 {
        errs.at("server.tcp_max_connections", "must be greater than 0");
    }
    let workers = match raw.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    Server {
        workers,
        drain_timeout: raw.drain_timeout.0,
        udp_payload_size: raw.udp_payload_size,
        tcp_idle_timeout: raw.tcp_idle_timeout.0,
        tcp_max_connections: raw.tcp_max_connections,
        tcp_max_queries: raw.tcp_max_queries,
        allow_clients: raw.allow_clients.into_iter().map(|n| n.0).collect(),
        rate_limit: raw.rate_limit,
    }
}

fn listeners(raw: &[(usize, RawListen)], failed: bool, errs: &mut Collector<'_>) -> Vec<Listen> {
    if raw.is_empty() && !failed {
        errs.at("listen", "at least one [[listen]] address is required");
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, raw) in raw {
        let path = format!("listen[{i}]");
        if raw.view.is_empty() {
            errs.at(format!("{path}.view"), "must not be empty");
        }
        if !raw.udp && !raw.tcp {
            errs.at(&path, "udp and tcp are both false: nothing to listen on");
        }
        let port_zero = raw.address.port() == 0;
        match seen.get(&raw.address) {
            Some(first) if !port_zero => errs.at(
                format!("{path}.address"),
                format!("{} is already used by listen[{first}]", raw.address),
            ),
            _ => {
                seen.insert(raw.address, *i);
            }
        }
        out.push(Listen {
            address: raw.address,
            view: raw.view.clone(),
            udp: raw.udp,
            tcp: raw.tcp,
        });
    }
    out
}

/// The resolv.conf nameservers, read at most once per load.
struct ResolvConf<'e> {
    env: &'e LoadEnv,
    servers: Option<Result<Vec<SocketAddr>, String>>,
}

impl<'e> ResolvConf<'e> {
    fn new(env: &'e LoadEnv) -> Self {
        ResolvConf { env, servers: None }
    }

    fn get(&mut self) -> Result<Vec<SocketAddr>, String> {
        self.servers
            .get_or_insert_with(|| read_resolv_conf(&self.env.resolv_conf))
            .clone()
    }
}

fn upstream(
    name: &str,
    raw: RawUpstream,
    listeners: &[Listen],
    resolv: &mut ResolvConf<'_>,
    errs: &mut Collector<'_>,
) -> UpstreamGroupSpec {
    let path = format!("upstreams.{name}");
    let mut servers = Vec::new();
    for entry in &raw.servers {
        match entry {
            ServerAddr::Addr(addr) => servers.push(*addr),
            ServerAddr::ResolvConf => match resolv.get() {
                Ok(found) => servers.extend(found),
                Err(why) => errs.at(format!("{path}.servers"), why),
            },
        }
    }
    if raw.servers.is_empty() {
        errs.at(format!("{path}.servers"), "at least one server is required");
    }
    for addr in &servers {
        if listeners.iter().any(|l| l.address == *addr) {
            errs.at(
                format!("{path}.servers"),
                format!("{addr} is one of our own listeners (forwarding loop)"),
            );
        }
    }
    positive(errs, &path, "max_concurrent", raw.max_concurrent as u128);
    positive(errs, &path, "timeout", raw.timeout.0.as_nanos());
    positive(errs, &path, "health_check", raw.health_check.0.as_nanos());
    UpstreamGroupSpec {
        name: name.to_string(),
        servers,
        protocol: raw.protocol.into(),
        selection: raw.selection.into(),
        max_concurrent: raw.max_concurrent,
        timeout: raw.timeout.0,
        max_fails: raw.max_fails,
        health_check: raw.health_check.0,
        expire: raw.expire.0,
    }
}

fn positive(errs: &mut Collector<'_>, path: &str, key: &str, value: u128) {
    if value == 0 {
        errs.at(format!("{path}.{key}"), "must be greater than 0");
    }
}

fn policy(name: String, raw: RawPolicy, errs: &mut Collector<'_>) -> PolicySpec {
    let path = format!("policies.{name}");
    positive(errs, &path, "timeout", raw.timeout.0.as_nanos());
    if raw.memory_limit.0 < 64 << 10 {
        errs.at(
            format!("{path}.memory_limit"),
            "must be at least 64KiB (one WebAssembly page)",
        );
    }
    let memory_limit = usize::try_from(raw.memory_limit.0).unwrap_or_else(|_| {
        errs.at(format!("{path}.memory_limit"), "too large for this machine");
        0
    });
    let settings = raw.settings.unwrap_or_default();
    let settings = serde_json::to_string(&settings).unwrap_or_else(|e| {
        errs.at(
            format!("{path}.settings"),
            format!("cannot be expressed as JSON: {e}"),
        );
        String::new()
    });
    PolicySpec {
        name,
        source: raw.source.0,
        on_error: raw.on_error.into(),
        timeout: raw.timeout.0,
        memory_limit,
        settings,
    }
}

/// What zones may refer to.
struct Refs<'d> {
    views: BTreeSet<String>,
    check_views: bool,
    upstreams: &'d BTreeSet<String>,
    policies: &'d BTreeSet<String>,
    capacity: u64,
}

fn zones(raw: Vec<(usize, RawZone)>, refs: &Refs<'_>, errs: &mut Collector<'_>) -> Vec<ZoneSpec> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, zone) in raw {
        let path = format!("zone[{i}]");
        let name = zone.name.0.to_string();
        if let Some(first) = seen.insert((zone.view.clone(), name.clone()), i) {
            errs.at(
                &path,
                format!(
                    "zone {name:?} in view {:?} is already defined by zone[{first}]",
                    zone.view
                ),
            );
        }
        if refs.check_views && !refs.views.contains(&zone.view) {
            errs.at(
                format!("{path}.view"),
                format!("no [[listen]] serves view {:?}", zone.view),
            );
        }
        if !refs.upstreams.contains(&zone.forward) {
            errs.at(
                format!("{path}.forward"),
                format!("unknown upstream {:?}", zone.forward),
            );
        }
        for (j, p) in zone.policies.iter().enumerate() {
            if !refs.policies.contains(p) {
                errs.at(
                    format!("{path}.policies[{j}]"),
                    format!("unknown policy {p:?}"),
                );
            }
        }
        let cache = cache(zone.cache, refs.capacity, &format!("{path}.cache"), errs);
        out.push(ZoneSpec {
            view: zone.view,
            name: zone.name.0,
            forward: zone.forward,
            cache,
            query_log: zone.query_log.into(),
            policies: zone.policies,
        });
    }
    out
}

/// `[zone.cache]` over `CacheSettings::default()`, with `[cache] capacity` as the capacity.
fn cache(raw: RawZoneCache, capacity: u64, path: &str, errs: &mut Collector<'_>) -> CacheSettings {
    let d = CacheSettings::default();
    let c = CacheSettings {
        enabled: raw.enabled.unwrap_or(d.enabled),
        capacity: raw.capacity.unwrap_or(capacity),
        max_ttl: raw.max_ttl.unwrap_or(d.max_ttl),
        min_ttl: raw.min_ttl.unwrap_or(d.min_ttl),
        negative_max_ttl: raw.negative_max_ttl.unwrap_or(d.negative_max_ttl),
        servfail_ttl: raw.servfail_ttl.unwrap_or(d.servfail_ttl),
        serve_stale: raw.serve_stale.map_or(d.serve_stale, Into::into),
        stale_for: raw.stale_for.map_or(d.stale_for, |v| v.0),
        stale_ttl: raw.stale_ttl.unwrap_or(d.stale_ttl),
        verify_timeout: raw.verify_timeout.map_or(d.verify_timeout, |v| v.0),
    };
    if c.enabled && c.capacity == 0 {
        errs.at(
            format!("{path}.capacity"),
            "must be greater than 0 (set enabled = false to turn the cache off)",
        );
    }
    if c.min_ttl > c.max_ttl {
        errs.at(
            format!("{path}.min_ttl"),
            format!("{} is above max_ttl {}", c.min_ttl, c.max_ttl),
        );
    }
    if c.serve_stale == ServeStale::Verify && c.verify_timeout.is_zero() {
        errs.at(
            format!("{path}.verify_timeout"),
            "must be greater than 0 with serve_stale = \"verify\"",
        );
    }
    c
}

#[cfg(test)]
mod tests;
