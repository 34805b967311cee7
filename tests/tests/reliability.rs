//! Reliability scenarios (issue 6) against the real `zonegate` binary on loopback, each under
//! load from the testkit's bounded load generator: upstream outage with serve-stale, a slow
//! upstream under 10× overload, a misbehaving upstream, rolling restart, reloads and policy
//! swaps, a query of death, and exposure (client ACL, rate limit, TCP limits).
//!
//! Each test is short (a few seconds). `ZG_RELIABILITY_LONG=1` runs the long versions
//! (`scripts/reliability.sh` does, and writes RELIABILITY.md's figures); with
//! `ZG_RELIABILITY_OUT=FILE` every scenario appends one JSON line of figures to FILE.
//! Needs `cargo build -p zonegate` first; the policy scenarios need `$ZONEGATE_WASM_DIR`
//! (`scripts/build-policies.sh`) and are skipped without it outside CI.

#[path = "reliability/support.rs"]
mod support;

#[path = "reliability/exposure.rs"]
mod exposure;
#[path = "reliability/policy.rs"]
mod policy;
#[path = "reliability/restart.rs"]
mod restart;
#[path = "reliability/upstream.rs"]
mod upstream;
