//! A policy whose `decide` allocates without bound. The host's memory limit must stop it (the
//! failed allocation aborts: a trap), then the host applies `on_error` and replaces the
//! instance.

use std::hint::black_box;

use zonegate_policy::{Decision, Policy, Query};

/// Accepts any settings; allocates in `decide` until it traps.
pub struct GuestAlloc;

/// Each step touches every byte it allocates, so the memory is really used.
const STEP: usize = 1 << 20;

impl Policy for GuestAlloc {
    type Error = std::convert::Infallible;

    fn init(_settings: &str) -> Result<Self, Self::Error> {
        Ok(GuestAlloc)
    }

    fn decide(&self, _query: &Query) -> Decision {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xa5; STEP]);
            black_box(&hoard);
        }
    }
}

zonegate_policy::export!(GuestAlloc);
