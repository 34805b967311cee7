//! Lookup cost against set size: a `NameSet` of exact names, `**.` patterns, one-label
//! wildcards and suffixes, and a `DomainSet`, at 100, 10,000 and 100,000 entries. The cost
//! should not grow with the size. Prints ns per lookup.
//!
//! `cargo bench` (from guest-sdk/)

use std::hint::black_box;
use std::time::Instant;

use zonegate_policy::{DomainSet, NameSet, Selector};

fn selector(i: usize) -> Selector {
    let built = match i % 4 {
        0 => Selector::name(&format!("api{i}.svc{}.example.com", i % 31)),
        1 => Selector::pattern(&format!("**.cdn{i}.example.net")),
        2 => Selector::pattern(&format!("web-*.team{i}.example.org")),
        _ => Selector::suffix(&format!("corp{i}.example")),
    };
    built.expect("valid selector")
}

/// Names that hit each kind of entry, and names that miss.
fn names(entries: usize) -> Vec<String> {
    (0..1_000)
        .map(|n| {
            // An entry of the kind this name is meant to hit (selector `i` has kind `i % 4`).
            let i = (n * 7919 % (entries / 4)) * 4 + n % 5;
            match n % 5 {
                0 => format!("api{i}.svc{}.example.com.", i % 31),
                1 => format!("a.b.cdn{i}.example.net."),
                2 => format!("web-7.team{i}.example.org."),
                3 => format!("db.eu.corp{i}.example."),
                _ => format!("www.miss{i}.example.com."),
            }
        })
        .collect()
}

fn ns_per_lookup(names: &[String], mut lookup: impl FnMut(&str) -> bool) -> f64 {
    let rounds = 200;
    let start = Instant::now();
    for _ in 0..rounds {
        for name in names {
            black_box(lookup(black_box(name)));
        }
    }
    start.elapsed().as_nanos() as f64 / (rounds * names.len()) as f64
}

fn main() {
    for entries in [100, 10_000, 100_000] {
        let set: NameSet = (0..entries).map(selector).collect();
        let mut domains = DomainSet::new();
        for i in 0..entries {
            domains
                .insert(&format!("corp{i}.example"))
                .expect("valid domain");
        }
        let names = names(entries);
        let hits = names.iter().filter(|n| set.contains(n)).count();
        assert_eq!(hits, 800, "every name but the misses is in the set");
        let set_ns = ns_per_lookup(&names, |n| set.contains(n));
        let domain_ns = ns_per_lookup(&names, |n| domains.contains(n));
        println!(
            "{entries:>7} entries: NameSet {set_ns:6.1} ns/lookup, DomainSet {domain_ns:6.1} ns/lookup"
        );
    }
}
