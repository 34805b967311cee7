//! Upstream response bytes through what the pipeline does with them: the upstream's
//! response check (`upstream::response_matches`), `wire::layout`, `Cache::store`, lookup,
//! `Hit::render` (fresh and stale) and `request::finalize` for a client.
//!
//! Input: one control byte (client EDNS/DO/CD, transport, cache settings), then the
//! response. The query is derived from the response's own question so the fuzzer gets past
//! the match check easily; a fixed query checks the mismatch path too.
//!
//! Invariants: nothing panics; a stored answer renders to the same length and re-walks with
//! `wire::layout`; TTLs are aged, never above the entry TTL; the finalized answer re-walks,
//! carries the client's ID, fits its transport, and has an OPT iff the client sent one.
#![no_main]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use zonegate::cache::{Cache, CacheKey, EntryKind, Lookup};
use zonegate::config::{CacheSettings, ServeStale};
use zonegate::policy::Transport;
use zonegate::request::{self, Request};
use zonegate::upstream::{self, UpstreamQuery};
use zonegate::wire::{self, Header};

const OUR_UDP_SIZE: u16 = 1232;
const SERVFAIL_TTL: u32 = 5;

/// One cache per settings variant for the whole run (a cache built per input would
/// dominate the run time); a fresh group name per input keeps the keys apart.
static CACHES: LazyLock<Vec<Cache>> =
    LazyLock::new(|| (0..16u8).map(|v| Cache::new(settings(v << 4))).collect());

fn next_group() -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    Arc::from(format!("g{}", NEXT.fetch_add(1, Ordering::Relaxed)).as_str())
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, resp)) = data.split_first() else {
        return;
    };
    if resp.len() > usize::from(u16::MAX) {
        return; // no DNS message is longer
    }
    let fixed = upstream::query_bytes(&query_for(b"\x03www\x07example\x00", 1, 1, 0), 1232, 7);
    let _ = upstream::response_matches(&fixed, resp);
    let Ok(q) = wire::read_question(resp) else {
        return;
    };
    let upstream_query = UpstreamQuery {
        name: &q.name,
        qtype: q.qtype,
        qclass: q.qclass,
        do_bit: ctl & 1 != 0,
        cd: ctl & 2 != 0,
    };
    let id = Header::new(resp).map_or(0, |h| h.id());
    let query = upstream::query_bytes(&upstream_query, OUR_UDP_SIZE, id);
    if !upstream::response_matches(&query, resp) {
        return;
    }
    let Some(req) = client_request(&q, ctl, resp) else {
        return;
    };
    // What the pipeline's fetch does: walk, drop bytes after the last record, store.
    let Ok(layout) = wire::layout(resp) else {
        return;
    };
    let resp = &resp[..layout.end];
    let cache = &CACHES[usize::from(ctl >> 4)];
    let key = CacheKey {
        group: next_group(),
        name: q.name.as_slice().into(),
        qtype: q.qtype,
        qclass: q.qclass,
        do_bit: upstream_query.do_bit,
        cd: upstream_query.cd,
    };
    let now = Instant::now();
    let answer = match cache.store(key.clone(), resp, &layout, now) {
        Ok(kind) => stored(cache, &key, resp, now, kind),
        Err(_) => resp.to_vec(),
    };
    let out = request::finalize(answer, &req, OUR_UDP_SIZE);
    check_final(&out, &req);
});

fn query_for(name: &[u8], qtype: u16, qclass: u16, ctl: u8) -> UpstreamQuery<'_> {
    UpstreamQuery {
        name,
        qtype,
        qclass,
        do_bit: ctl & 1 != 0,
        cd: ctl & 2 != 0,
    }
}

fn settings(ctl: u8) -> CacheSettings {
    CacheSettings {
        min_ttl: if ctl & 0x10 != 0 { 0 } else { 5 },
        servfail_ttl: if ctl & 0x20 != 0 { SERVFAIL_TTL } else { 0 },
        capacity: 1000,
        serve_stale: if ctl & 0x40 != 0 {
            ServeStale::Verify
        } else {
            ServeStale::Immediate
        },
        ..CacheSettings::default()
    }
}

/// The client's query for the same question (original case from the response), parsed by
/// the real ingress code.
fn client_request(q: &wire::Question, ctl: u8, resp: &[u8]) -> Option<Request> {
    let mut packet = vec![0xab, 0xcd, 0x01, if ctl & 2 != 0 { 0x10 } else { 0 }];
    packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    packet.extend_from_slice(&resp[q.name_range.0..q.name_range.1]);
    packet.extend_from_slice(&q.qtype.to_be_bytes());
    packet.extend_from_slice(&q.qclass.to_be_bytes());
    if ctl & 4 != 0 {
        let size = if ctl & 0x80 != 0 { 4096 } else { 512 };
        wire::push_opt(&mut packet, size, 0, ctl & 1 != 0);
    }
    let transport = if ctl & 8 != 0 {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    request::parse(
        &packet,
        SocketAddr::from(([127, 0, 0, 1], 40000)),
        transport,
    )
    .ok()
}

/// A stored response: it must be found fresh, render to its own length with aged TTLs,
/// re-walk, and (past its TTL) render stale or be gone.
fn stored(cache: &Cache, key: &CacheKey, resp: &[u8], now: Instant, kind: EntryKind) -> Vec<u8> {
    let Lookup::Fresh(hit) = cache.lookup(key, now) else {
        panic!("a stored answer is fresh at once");
    };
    let rendered = hit.render(now);
    assert_eq!(rendered.len(), resp.len());
    let layout = wire::layout(&rendered).expect("a stored answer re-walks after render");
    let shown = layout.min_ttl;
    for &at in &layout.ttl_offsets {
        assert_eq!(
            wire::u32_at(&rendered, at).ok(),
            shown,
            "one TTL for all records"
        );
    }
    // A SERVFAIL entry may have no record to show its TTL on.
    let entry_ttl = match kind {
        EntryKind::ServFail => SERVFAIL_TTL,
        _ => shown.expect("a cached answer has a record"),
    };
    let later = now + Duration::from_secs(u64::from(entry_ttl) + 1);
    match cache.lookup(key, later) {
        Lookup::Fresh(_) => panic!("fresh past its TTL"),
        Lookup::Stale { hit, .. } => {
            let stale = hit.render(later);
            assert_eq!(stale.len(), resp.len());
            assert!(wire::layout(&stale).is_ok());
        }
        Lookup::Miss => {}
    }
    rendered
}

/// The answer as the client gets it (its input walked with `wire::layout`).
fn check_final(out: &[u8], req: &Request) {
    assert!(out.len() <= req.max_response(OUR_UDP_SIZE));
    let h = Header::new(out).expect("a header");
    assert_eq!(h.id(), req.id);
    assert!(
        wire::layout(out).is_ok(),
        "finalized answer re-walks: {out:?}"
    );
    let opt = wire::find_opt(out).expect("walkable");
    match (req.edns, opt) {
        (Some(_), Some(o)) => assert_eq!(o.udp_size, OUR_UDP_SIZE, "our size: {out:?}"),
        (None, None) => {}
        (want, got) => panic!("client EDNS {want:?}, answer OPT {got:?}: {out:?}"),
    }
}
