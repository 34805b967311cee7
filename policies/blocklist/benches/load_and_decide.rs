//! Measures the blocklist's budget: 100,000 entries must load well under a second and a
//! decision must cost under a microsecond. Prints the figures; exits non-zero over budget.
//!
//! `cargo bench -p blocklist`

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use blocklist::Blocklist;
use zonegate_policy::{Policy, Query, testing};

const ENTRIES: usize = 100_000;
const LOAD_BUDGET: Duration = Duration::from_millis(500);
const DECIDE_BUDGET: Duration = Duration::from_nanos(1_000);

/// Domains shaped like real blocklist entries: two to four labels, varied lengths.
fn domain(i: usize) -> String {
    match i % 3 {
        0 => format!("ads{i}.example{}.com", i % 101),
        1 => format!("t{i}.metrics.tracker{}.net", i % 53),
        _ => format!("cdn-{i}-x.ad{}.io", i % 7),
    }
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = None;
    let mut value = None;
    for _ in 0..runs {
        let start = Instant::now();
        let v = f();
        let took = start.elapsed();
        best = Some(best.map_or(took, |b: Duration| b.min(took)));
        value = Some(v);
    }
    (best.unwrap_or_default(), value.expect("at least one run"))
}

fn main() -> ExitCode {
    let domains: Vec<String> = (0..ENTRIES).map(domain).collect();
    let as_json = serde_json::json!({ "domains": domains }).to_string();
    let hosts: String = domains.iter().map(|d| format!("0.0.0.0 {d}\n")).collect();
    let as_hosts = serde_json::json!({ "list": hosts }).to_string();

    let (load_json, policy) = best_of(5, || Blocklist::init(&as_json).expect("valid settings"));
    let (load_hosts, _) = best_of(5, || Blocklist::init(&as_hosts).expect("valid settings"));
    assert_eq!(policy.len(), ENTRIES);

    // Half blocked (subdomains of entries), half not (same shapes, other names).
    let queries: Vec<Query> = (0..1_000)
        .map(|i| match i % 2 {
            0 => testing::query(&format!("www.{}", domain(i * 97))).build(),
            _ => testing::query(&format!("www.api{i}.service.example.org")).build(),
        })
        .collect();
    let rounds = 1_000;
    let (decide_total, _) = best_of(3, || {
        for _ in 0..rounds {
            for query in &queries {
                black_box(policy.decide(black_box(query)));
            }
        }
    });
    let per_decision = decide_total / (rounds * queries.len()) as u32;

    println!(
        "blocklist: {ENTRIES} entries as a JSON array load in {load_json:?}, as a hosts file in {load_hosts:?}"
    );
    println!("blocklist: {per_decision:?} per decision (half blocked, half allowed)");
    let over = [
        (load_json > LOAD_BUDGET, "JSON load", load_json, LOAD_BUDGET),
        (
            load_hosts > LOAD_BUDGET,
            "hosts-file load",
            load_hosts,
            LOAD_BUDGET,
        ),
        (
            per_decision > DECIDE_BUDGET,
            "decision",
            per_decision,
            DECIDE_BUDGET,
        ),
    ];
    let mut code = ExitCode::SUCCESS;
    for (_, what, took, budget) in over.iter().filter(|o| o.0) {
        eprintln!("over budget: {what} took {took:?}, budget {budget:?}");
        code = ExitCode::FAILURE;
    }
    code
}
