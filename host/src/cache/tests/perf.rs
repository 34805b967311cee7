//! The cache's cost at scale: CPU per hit and RSS per entry (ignored; run by hand).

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Instant;

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{key, secs};
use crate::cache::{Cache, CacheKey, Lookup};
use crate::config::CacheSettings;
use crate::wire;

/// Measures CPU ns per lookup+render and the RSS cost per entry. Run optimised:
/// `cargo test -p zonegate --lib --config 'profile.dev.package.zonegate.opt-level=3'
/// cache::tests::perf -- --ignored --nocapture`
#[test]
#[ignore]
fn perf_lookup_render_and_memory_for_100k_entries() {
    const N: usize = 100_000;
    let t0 = Instant::now();
    let data: Vec<(CacheKey, Vec<u8>, wire::Layout)> = (0..N).map(typical_a_answer).collect();
    let cache = Cache::new(CacheSettings {
        // Room to spare: the capacity is enforced per shard, so a full table holds a little less.
        capacity: 2 * N as u64,
        ..CacheSettings::default()
    });
    let rss_before = rss_kib();
    for (k, resp, layout) in &data {
        cache.store(k.clone(), resp, layout, t0).unwrap();
    }
    let rss_after = rss_kib();
    let (entries, _) = cache.entry_counts();
    println!(
        "{entries} entries, response {} B, name {} B: RSS +{} KiB = {:.0} B/entry",
        data[0].1.len(),
        data[0].0.name.len(),
        rss_after - rss_before,
        ((rss_after - rss_before) * 1024) as f64 / entries as f64
    );

    let now = t0 + secs(1.0);
    // All 100,000 names (memory-bound: each lookup misses the CPU caches), then a hot set of
    // 1,000 names (the dnsperf hot-cache workload).
    for (label, hot, rounds) in [("100k names", N, 10), ("1k hot names", 1_000, 1_000)] {
        let keys: Vec<&CacheKey> = data[..hot].iter().map(|(k, _, _)| k).collect();
        let (cpu, wall, hits) = time_hits(&cache, &keys, now, rounds);
        println!("{label}: {hits} lookups+renders, {cpu:.0} ns CPU, {wall:.0} ns wall each");
        assert_eq!(hits, rounds * hot);
    }
}

/// CPU and wall ns per lookup+render over `rounds` passes of `keys`, and the hit count.
fn time_hits(cache: &Cache, keys: &[&CacheKey], now: Instant, rounds: usize) -> (f64, f64, usize) {
    let mut buf = Vec::with_capacity(512);
    let (cpu_start, wall_start) = (thread_cpu_ns(), Instant::now());
    let mut hits = 0;
    for _ in 0..rounds {
        for k in keys {
            if let Lookup::Fresh(hit) = cache.lookup(*k, now) {
                buf.clear();
                hit.render_into(now, &mut buf);
                hits += 1;
            }
        }
    }
    let ops = (rounds * keys.len()) as f64;
    let cpu = (thread_cpu_ns() - cpu_start) as f64 / ops;
    (cpu, wall_start.elapsed().as_nanos() as f64 / ops, hits)
}

/// A ClusterIP-style answer: one A record, ~70 bytes on the wire.
fn typical_a_answer(i: usize) -> (CacheKey, Vec<u8>, wire::Layout) {
    let k = key(&format!("svc-{i}.ns{}.svc.cluster.local.", i % 50), 1);
    let mut m = Message::response(i as u16, OpCode::Query);
    let qname = Name::from_str(&wire::name_to_string(&k.name)).unwrap();
    m.add_query(Query::query(qname.clone(), RecordType::A));
    m.add_answer(Record::from_rdata(
        qname,
        30,
        RData::A(A(Ipv4Addr::from(i as u32))),
    ));
    let resp = m.to_vec().unwrap();
    let layout = wire::layout(&resp).unwrap();
    (k, resp, layout)
}

fn rss_kib() -> u64 {
    proc_field("/proc/self/status", |s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    })
}

/// Nanoseconds this thread has run on a CPU (first field of schedstat): steady on a busy
/// machine where wall time is not.
fn thread_cpu_ns() -> u64 {
    proc_field("/proc/thread-self/schedstat", |s| {
        s.split_whitespace().next()?.parse().ok()
    })
}

fn proc_field(path: &str, parse: impl Fn(&str) -> Option<u64>) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    parse(&text).unwrap()
}
