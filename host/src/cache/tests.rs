//! Cache tests: real DNS messages built with hickory-proto, the clock injected.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::config::{CacheSettings, ServeStale};
use crate::wire;

mod perf;

const QNAME: &str = "www.example.com.";

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn base(rcode: ResponseCode) -> Message {
    let mut m = Message::response(0x1234, OpCode::Query);
    m.metadata.response_code = rcode;
    m.add_query(Query::query(name(QNAME), RecordType::A));
    m
}

fn a(ttl: u32, last_octet: u8) -> Record {
    Record::from_rdata(
        name(QNAME),
        ttl,
        RData::A(A(Ipv4Addr::new(192, 0, 2, last_octet))),
    )
}

fn soa(ttl: u32, minimum: u32) -> Record {
    let rdata = SOA::new(
        name("ns.example.com."),
        name("h.example.com."),
        1,
        7200,
        900,
        86400,
        minimum,
    );
    Record::from_rdata(name("example.com."), ttl, RData::SOA(rdata))
}

fn cname(ttl: u32) -> Record {
    Record::from_rdata(
        name(QNAME),
        ttl,
        RData::CNAME(CNAME(name("gone.example.com."))),
    )
}

/// A NOERROR answer with one A record per TTL, plus an OPT record (whose TTL field must
/// never be touched).
fn positive(ttls: &[u32]) -> Vec<u8> {
    let mut m = base(ResponseCode::NoError);
    for (i, &t) in ttls.iter().enumerate() {
        m.add_answer(a(t, i as u8 + 1));
    }
    m.set_edns(Edns::new());
    m.to_vec().unwrap()
}

fn negative(rcode: ResponseCode, answers: Vec<Record>, authority: Option<Record>) -> Vec<u8> {
    let mut m = base(rcode);
    m.add_answers(answers);
    if let Some(r) = authority {
        m.add_authority(r);
    }
    m.to_vec().unwrap()
}

fn truncated() -> Vec<u8> {
    let mut m = base(ResponseCode::NoError);
    m.metadata.truncation = true;
    m.add_answer(a(300, 1));
    m.to_vec().unwrap()
}

fn key(qname: &str, qtype: u16) -> CacheKey {
    let mut wire_name = Vec::new();
    for label in qname.split('.').filter(|l| !l.is_empty()) {
        wire_name.push(label.len() as u8);
        wire_name.extend(label.as_bytes());
    }
    wire_name.push(0);
    CacheKey {
        group: Arc::from("default"),
        name: wire_name.into_boxed_slice(),
        qtype,
        qclass: 1,
        do_bit: false,
        cd: false,
    }
}

fn store(cache: &Cache, k: CacheKey, resp: &[u8], now: Instant) -> Result<EntryKind, NotStored> {
    let layout = wire::layout(resp).unwrap();
    cache.store(k, resp, &layout, now)
}

/// TTLs of every record except OPT, in message order.
fn ttls(resp: &[u8]) -> Vec<u32> {
    let m = Message::from_vec(resp).unwrap();
    m.answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .map(|r| r.ttl)
        .collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn settings(serve_stale: ServeStale) -> CacheSettings {
    CacheSettings {
        serve_stale,
        stale_for: Duration::from_secs(100),
        ..CacheSettings::default()
    }
}

type Admitted = Result<(EntryKind, u32), NotStored>;

#[test]
fn admission_kinds_and_ttls() {
    let servfail = negative(ResponseCode::ServFail, vec![], None);
    let with = |f: fn(&mut CacheSettings)| {
        let mut s = CacheSettings::default();
        f(&mut s);
        s
    };
    let defaults = CacheSettings::default();
    let cases: Vec<(&str, CacheSettings, Vec<u8>, Admitted)> = vec![
        (
            "one record",
            defaults.clone(),
            positive(&[300]),
            Ok((EntryKind::Success, 300)),
        ),
        (
            "min of records",
            defaults.clone(),
            positive(&[300, 60, 900]),
            Ok((EntryKind::Success, 60)),
        ),
        (
            "max_ttl caps",
            defaults.clone(),
            positive(&[86400]),
            Ok((EntryKind::Success, 3600)),
        ),
        (
            "min_ttl floors",
            defaults.clone(),
            positive(&[2]),
            Ok((EntryKind::Success, 5)),
        ),
        (
            "cap beats floor",
            with(|s| {
                s.min_ttl = 100;
                s.max_ttl = 50
            }),
            positive(&[10]),
            Ok((EntryKind::Success, 50)),
        ),
        (
            "ttl 0 not cached",
            defaults.clone(),
            positive(&[300, 0]),
            Err(NotStored::ZeroTtl),
        ),
        (
            "nxdomain soa minimum",
            defaults.clone(),
            negative(ResponseCode::NXDomain, vec![], Some(soa(900, 60))),
            Ok((EntryKind::Denial, 60)),
        ),
        (
            "nxdomain soa ttl",
            defaults.clone(),
            negative(ResponseCode::NXDomain, vec![], Some(soa(30, 600))),
            Ok((EntryKind::Denial, 30)),
        ),
        (
            "negative cap",
            defaults.clone(),
            negative(ResponseCode::NXDomain, vec![], Some(soa(7200, 7200))),
            Ok((EntryKind::Denial, 1800)),
        ),
        (
            "negative floor",
            defaults.clone(),
            negative(ResponseCode::NXDomain, vec![], Some(soa(1, 1))),
            Ok((EntryKind::Denial, 5)),
        ),
        (
            "negative cname bounds",
            defaults.clone(),
            negative(ResponseCode::NXDomain, vec![cname(10)], Some(soa(300, 300))),
            Ok((EntryKind::Denial, 10)),
        ),
        (
            "nodata",
            defaults.clone(),
            negative(ResponseCode::NoError, vec![], Some(soa(300, 120))),
            Ok((EntryKind::Denial, 120)),
        ),
        (
            "nxdomain without soa",
            defaults.clone(),
            negative(ResponseCode::NXDomain, vec![], None),
            Err(NotStored::NegativeWithoutSoa),
        ),
        (
            "nodata without soa",
            defaults.clone(),
            negative(ResponseCode::NoError, vec![], None),
            Err(NotStored::NegativeWithoutSoa),
        ),
        (
            "negative soa ttl 0",
            defaults.clone(),
            negative(ResponseCode::NXDomain, vec![], Some(soa(0, 60))),
            Err(NotStored::ZeroTtl),
        ),
        (
            "truncated",
            defaults.clone(),
            truncated(),
            Err(NotStored::Truncated),
        ),
        (
            "servfail by default",
            defaults.clone(),
            servfail.clone(),
            Err(NotStored::ServFail),
        ),
        (
            "servfail_ttl",
            with(|s| s.servfail_ttl = 10),
            servfail.clone(),
            Ok((EntryKind::ServFail, 10)),
        ),
        (
            "refused",
            defaults.clone(),
            negative(ResponseCode::Refused, vec![], None),
            Err(NotStored::Rcode(5)),
        ),
        (
            "formerr",
            defaults.clone(),
            negative(ResponseCode::FormErr, vec![], None),
            Err(NotStored::Rcode(1)),
        ),
        (
            "notimp",
            defaults.clone(),
            negative(ResponseCode::NotImp, vec![], None),
            Err(NotStored::Rcode(4)),
        ),
        (
            "disabled",
            with(|s| s.enabled = false),
            positive(&[300]),
            Err(NotStored::Disabled),
        ),
    ];
    for (what, s, resp, want) in cases {
        let layout = wire::layout(&resp).unwrap();
        assert_eq!(admit::admit(&s, &resp, &layout), want, "{what}");
        let cache = Cache::new(s);
        let got = cache.store(key(QNAME, 1), &resp, &layout, Instant::now());
        assert_eq!(got, want.map(|(kind, _)| kind), "{what} (store)");
    }
}

#[test]
fn extended_rcode_is_not_noerror() {
    // BADVERS (16): header RCODE 0, the high bits in the OPT record.
    let mut m = base(ResponseCode::BADVERS);
    m.add_answer(a(300, 1));
    m.set_edns(Edns::new());
    let resp = m.to_vec().unwrap();
    let layout = wire::layout(&resp).unwrap();
    let got = admit::admit(&CacheSettings::default(), &resp, &layout);
    assert_eq!(got, Err(NotStored::Rcode(16)));
}

#[test]
fn render_ages_and_clamps_every_ttl() {
    let t0 = Instant::now();
    let cases: &[(&str, &[u32], f64, Vec<u32>)] = &[
        ("at store", &[300], 0.0, vec![300]),
        ("aged, floor of seconds", &[300], 100.9, vec![200]),
        ("last second", &[300], 299.5, vec![1]),
        ("records clamped to min", &[300, 60], 0.0, vec![60, 60]),
        ("records clamped and aged", &[300, 60], 59.0, vec![1, 1]),
        ("max_ttl cap", &[86400], 10.0, vec![3590]),
        ("floor raises records", &[2, 2], 3.0, vec![2, 2]),
    ];
    for (what, record_ttls, age, want) in cases {
        let cache = Cache::new(CacheSettings::default());
        let resp = positive(record_ttls);
        store(&cache, key(QNAME, 1), &resp, t0).unwrap();
        let Lookup::Fresh(hit) = cache.lookup(&key(QNAME, 1), t0 + secs(*age)) else {
            panic!("{what}: not fresh");
        };
        let out = hit.render(t0 + secs(*age));
        assert_eq!(&ttls(&out), want, "{what}");
        let opt = Message::from_vec(&out).unwrap().edns;
        assert!(opt.is_some(), "{what}: OPT kept");
        assert_eq!(out.len(), resp.len(), "{what}");
        assert_eq!(out[..12], resp[..12], "{what}: header untouched");
    }
}

#[test]
fn stale_windows_by_mode() {
    use ServeStale::*;
    let t0 = Instant::now();
    // (mode, age in seconds, expected: "fresh" | "stale" | "miss"); TTL 60, stale_for 100.
    let cases = [
        (Immediate, 59.9, "fresh"),
        (Immediate, 60.0, "stale"),
        (Immediate, 159.9, "stale"),
        (Immediate, 160.0, "miss"),
        (Verify, 60.0, "stale"),
        (Verify, 159.0, "stale"),
        (Verify, 161.0, "miss"),
        (Disabled, 59.0, "fresh"),
        (Disabled, 60.0, "miss"),
        (Disabled, 61.0, "miss"),
    ];
    for (mode, age, want) in cases {
        let cache = Cache::new(settings(mode));
        store(&cache, key(QNAME, 1), &positive(&[60]), t0).unwrap();
        let now = t0 + secs(age);
        let got = match cache.lookup(&key(QNAME, 1), now) {
            Lookup::Fresh(h) => {
                assert!(!h.is_stale());
                "fresh"
            }
            Lookup::Stale { hit, .. } => {
                assert!(hit.is_stale());
                assert_eq!(ttls(&hit.render(now)), vec![30], "stale TTL");
                "stale"
            }
            Lookup::Miss => "miss",
        };
        assert_eq!(got, want, "{mode:?} at {age}s");
    }
}

#[test]
fn servfail_entries_are_never_served_stale_nor_replace_good_ones() {
    let t0 = Instant::now();
    let s = CacheSettings {
        servfail_ttl: 10,
        ..settings(ServeStale::Immediate)
    };
    let cache = Cache::new(s);
    let servfail = negative(ResponseCode::ServFail, vec![], None);
    assert_eq!(
        store(&cache, key("a.example.", 1), &servfail, t0),
        Ok(EntryKind::ServFail)
    );
    let Lookup::Fresh(hit) = cache.lookup(&key("a.example.", 1), t0 + secs(9.0)) else {
        panic!("servfail not cached");
    };
    assert_eq!(hit.kind(), EntryKind::ServFail);
    assert!(matches!(
        cache.lookup(&key("a.example.", 1), t0 + secs(10.0)),
        Lookup::Miss
    ));

    // A good entry in its stale window survives a SERVFAIL refresh, re-armed.
    store(&cache, key(QNAME, 1), &positive(&[60]), t0).unwrap();
    let later = t0 + secs(70.0);
    assert!(matches!(
        cache.lookup(&key(QNAME, 1), later),
        Lookup::Stale { refresh: true, .. }
    ));
    assert_eq!(
        store(&cache, key(QNAME, 1), &servfail, later),
        Err(NotStored::ServFail)
    );
    let Lookup::Stale { hit, refresh } = cache.lookup(&key(QNAME, 1), later) else {
        panic!("good entry lost");
    };
    assert!(refresh, "re-armed");
    assert_eq!(hit.kind(), EntryKind::Success);
}

#[test]
fn exactly_one_refresh_until_store_failure_or_rearm() {
    let t0 = Instant::now();
    let cache = Cache::new(settings(ServeStale::Immediate));
    let k = key(QNAME, 1);
    store(&cache, k.clone(), &positive(&[60]), t0).unwrap();
    let stale_at = t0 + secs(61.0);
    let refresh = |now: Instant| match cache.lookup(&k, now) {
        Lookup::Stale { refresh, .. } => refresh,
        other => panic!("expected stale, got {other:?}"),
    };
    assert!(refresh(stale_at));
    for i in 0..10 {
        assert!(
            !refresh(stale_at + secs(i as f64 * 0.1)),
            "second claim {i}"
        );
    }
    cache.refresh_failed(&k);
    assert!(refresh(stale_at + secs(1.0)), "re-armed by refresh_failed");
    assert!(!refresh(stale_at + secs(2.0)));
    // Nobody reports back: re-armed after max(2 × verify_timeout, 5 s) = 5 s.
    assert!(!refresh(stale_at + secs(5.9)));
    assert!(refresh(stale_at + secs(6.0)), "re-armed by time");
    assert!(!refresh(stale_at + secs(6.1)));
    // A store replaces the entry: fresh again, and its own refresh is unclaimed.
    store(&cache, k.clone(), &positive(&[60]), stale_at).unwrap();
    assert!(matches!(
        cache.lookup(&k, stale_at + secs(1.0)),
        Lookup::Fresh(_)
    ));
    assert!(refresh(stale_at + secs(61.0)));
}

#[test]
fn concurrent_stale_lookups_grant_one_refresh() {
    let t0 = Instant::now();
    let cache = Arc::new(Cache::new(settings(ServeStale::Verify)));
    store(&cache, key(QNAME, 1), &positive(&[60]), t0).unwrap();
    let now = t0 + secs(90.0);
    let granted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..1000)
                        .filter(|_| {
                            matches!(
                                cache.lookup(&key(QNAME, 1), now),
                                Lookup::Stale { refresh: true, .. }
                            )
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(granted, 1);
}

#[test]
fn keys_are_separated_by_group_qtype_do_and_cd() {
    let t0 = Instant::now();
    let cache = Cache::new(CacheSettings::default());
    let base_key = key(QNAME, 1);
    store(&cache, base_key.clone(), &positive(&[300]), t0).unwrap();
    let variants = [
        CacheKey {
            group: Arc::from("other"),
            ..base_key.clone()
        },
        CacheKey {
            qtype: 28,
            ..base_key.clone()
        },
        CacheKey {
            qclass: 3,
            ..base_key.clone()
        },
        CacheKey {
            do_bit: true,
            ..base_key.clone()
        },
        CacheKey {
            cd: true,
            ..base_key.clone()
        },
        key("other.example.com.", 1),
    ];
    for k in &variants {
        assert!(matches!(cache.lookup(k, t0), Lookup::Miss), "{k:?}");
    }
    assert!(matches!(cache.lookup(&base_key, t0), Lookup::Fresh(_)));
}

#[test]
fn disabled_cache_never_hits() {
    let t0 = Instant::now();
    let cache = Cache::new(CacheSettings {
        enabled: false,
        ..CacheSettings::default()
    });
    assert_eq!(
        store(&cache, key(QNAME, 1), &positive(&[300]), t0),
        Err(NotStored::Disabled)
    );
    assert!(matches!(cache.lookup(&key(QNAME, 1), t0), Lookup::Miss));
}

#[test]
fn counts_entries_by_kind_and_capacity_evictions() {
    let t0 = Instant::now();
    let counters = EvictionCounters::default();
    let cache = Cache::with_eviction_counters(
        CacheSettings {
            capacity: 50,
            ..CacheSettings::default()
        },
        counters.clone(),
    );
    let nx = negative(ResponseCode::NXDomain, vec![], Some(soa(300, 300)));
    for i in 0..10 {
        store(&cache, key(&format!("n{i}.example."), 1), &nx, t0).unwrap();
    }
    for i in 0..10 {
        store(
            &cache,
            key(&format!("p{i}.example."), 1),
            &positive(&[300]),
            t0,
        )
        .unwrap();
    }
    // Replacing an entry with another kind moves it between the counts.
    store(&cache, key("n0.example.", 1), &positive(&[300]), t0).unwrap();
    assert_eq!(cache.entry_counts(), (11, 9));
    assert_eq!(cache.evictions(), (0, 0));

    for i in 0..200 {
        store(
            &cache,
            key(&format!("x{i}.example."), 1),
            &positive(&[300]),
            t0,
        )
        .unwrap();
    }
    let (success, denial) = cache.entry_counts();
    assert!(success + denial <= 50, "{success} + {denial}");
    assert_eq!(success + denial, cache.len() as u64);
    let (ev_success, ev_denial) = cache.evictions();
    assert_eq!(ev_success + ev_denial + success + denial, 220);
    assert_eq!(counters.success.get(), ev_success);
    assert_eq!(counters.denial.get(), ev_denial);
}

#[test]
fn negative_answers_age_and_go_stale_like_positive_ones() {
    let t0 = Instant::now();
    let cache = Cache::new(settings(ServeStale::Immediate));
    let nx = negative(ResponseCode::NXDomain, vec![cname(300)], Some(soa(900, 60)));
    assert_eq!(store(&cache, key(QNAME, 1), &nx, t0), Ok(EntryKind::Denial));
    let Lookup::Fresh(hit) = cache.lookup(&key(QNAME, 1), t0 + secs(10.0)) else {
        panic!("not fresh");
    };
    assert_eq!(hit.kind(), EntryKind::Denial);
    let out = hit.render(t0 + secs(10.0));
    assert_eq!(
        ttls(&out),
        vec![50, 50],
        "CNAME clamped to the SOA-derived TTL"
    );
    assert_eq!(
        Message::from_vec(&out).unwrap().metadata.response_code,
        ResponseCode::NXDomain
    );
    let Lookup::Stale { hit, refresh: true } = cache.lookup(&key(QNAME, 1), t0 + secs(61.0)) else {
        panic!("not stale");
    };
    assert_eq!(ttls(&hit.render(t0 + secs(61.0))), vec![30, 30]);
    assert_eq!(cache.entry_counts(), (0, 1));
}

#[test]
fn sweep_reclaims_only_what_can_no_longer_be_served() {
    let t0 = Instant::now();
    let cache = Cache::new(settings(ServeStale::Immediate));
    let stale_for = cache.settings().stale_for;
    store(&cache, key("short.example.", 1), &positive(&[10]), t0).unwrap();
    store(&cache, key("long.example.", 1), &positive(&[3000]), t0).unwrap();
    let nx = negative(ResponseCode::NXDomain, vec![], Some(soa(300, 5)));
    store(&cache, key("gone.example.", 1), &nx, t0).unwrap();
    assert_eq!(cache.entry_counts(), (2, 1));

    // Past the short TTLs but within the stale window: nothing goes.
    let stale = t0 + secs(60.0);
    cache.sweep(stale);
    assert_eq!(cache.len(), 3);
    assert!(matches!(
        cache.lookup(&key("short.example.", 1), stale),
        Lookup::Stale { .. }
    ));

    // Past TTL + stale window for the short ones only.
    let later = t0 + secs(11.0) + stale_for;
    cache.sweep(later);
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.entry_counts(), (1, 0));
    assert!(matches!(
        cache.lookup(&key("long.example.", 1), later),
        Lookup::Stale { .. } | Lookup::Fresh(_)
    ));
    assert_eq!(
        cache.evictions(),
        (0, 0),
        "expiry is not a capacity eviction"
    );
}

#[test]
fn an_entry_answers_only_for_its_own_key() {
    // The map is keyed by the key's hash; the entry keeps the key and every hit is checked.
    let t0 = Instant::now();
    let resp = positive(&[300]);
    let layout = wire::layout(&resp).unwrap();
    let k = key(QNAME, 1);
    let e = entry::Entry::new(&k, &resp, &layout.ttl_offsets, 300, EntryKind::Success, t0);
    assert!(e.is_for(&k.as_ref()));
    let others = [
        CacheKey {
            qtype: 28,
            ..k.clone()
        },
        CacheKey {
            qclass: 3,
            ..k.clone()
        },
        CacheKey {
            do_bit: true,
            ..k.clone()
        },
        CacheKey {
            cd: true,
            ..k.clone()
        },
        CacheKey {
            group: Arc::from("other"),
            ..k.clone()
        },
        key("www.example.org.", 1),
        key("ww.example.com.", 1),
    ];
    for other in &others {
        assert!(!e.is_for(&other.as_ref()), "{other:?}");
    }
    // The rendered answer is the response alone, not the key appended to it.
    let mut out = Vec::new();
    e.render_into(t0, None, &mut out);
    assert_eq!(out.len(), resp.len());
    assert_eq!(ttls(&out), vec![300]);
}
