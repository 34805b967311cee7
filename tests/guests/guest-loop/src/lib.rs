//! A policy whose `decide` never returns. The host must cut it off with its epoch deadline,
//! apply the policy's `on_error`, and replace the instance.

use std::hint::black_box;

use zonegate_policy::{Decision, Policy, Query};

/// Accepts any settings; loops in `decide`.
pub struct GuestLoop;

impl Policy for GuestLoop {
    type Error = std::convert::Infallible;

    fn init(_settings: &str) -> Result<Self, Self::Error> {
        Ok(GuestLoop)
    }

    fn decide(&self, query: &Query) -> Decision {
        // black_box keeps the loop a real loop with work in it, not something to optimise away.
        let mut spins = 0u64;
        loop {
            spins = black_box(spins.wrapping_add(query.name.len() as u64));
        }
    }
}

zonegate_policy::export!(GuestLoop);
