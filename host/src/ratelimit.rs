//! Per-client rate limit (`server.rate_limit`, queries per second per client address): a token
//! bucket per address in a bounded, sharded map. A query over the limit is answered REFUSED
//! (never forwarded, never cached) and counted in `zonegate_rate_limited_total`.
//!
//! REFUSED rather than silence: a REFUSED answer is no larger than the query, so it gives a
//! spoofing attacker no amplification, and a legitimate client that bursts learns at once
//! instead of waiting out its timeout and retrying (which would add load).
//!
//! Each bucket holds one second's worth of queries (the burst) and refills continuously. The
//! map holds at most [`SHARDS`] × [`SHARD_CAPACITY`] addresses. When a shard is full it is
//! cut back to 7/8 of its capacity in one pass, dropping first the buckets that have refilled
//! completely (idle clients, indistinguishable from new ones), then those that sent a single
//! query (what a flood of spoofed sources looks like), and only then arbitrary ones. So such
//! a flood costs bounded memory and one pass per capacity/8 new sources (not one per query),
//! and clients being limited keep their buckets unless the shard holds nothing else.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Number of independently locked shards.
pub const SHARDS: usize = 16;
/// Addresses tracked per shard.
pub const SHARD_CAPACITY: usize = 4096;

/// The per-client token buckets of one configured rate.
#[derive(Debug)]
pub struct RateLimiter {
    /// Queries per second per client; 0 = off.
    rate: u32,
    hasher: std::hash::RandomState,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
    shard_capacity: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter of `rate` queries/s per client address (0 = every query admitted).
    pub fn new(rate: u32) -> Self {
        Self::with_capacity(rate, SHARD_CAPACITY)
    }

    fn with_capacity(rate: u32, shard_capacity: usize) -> Self {
        let shards = if rate == 0 { 0 } else { SHARDS };
        RateLimiter {
            rate,
            hasher: std::hash::RandomState::new(),
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            shard_capacity: shard_capacity.max(1),
        }
    }

    /// The previous snapshot's limiter if its rate is unchanged (buckets survive a reload),
    /// else a new one.
    pub fn carry(previous: Option<&Arc<RateLimiter>>, rate: u32) -> Arc<RateLimiter> {
        match previous {
            Some(p) if p.rate == rate => p.clone(),
            _ => Arc::new(RateLimiter::new(rate)),
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Whether a query from `client` at `now` is within the limit (and takes a token if so).
    pub fn admit(&self, client: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let client = client.to_canonical();
        let shard = (self.hasher.hash_one(client) as usize) % self.shards.len();
        let mut map = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let burst = f64::from(self.rate);
        if !map.contains_key(&client) && map.len() >= self.shard_capacity {
            self.make_room(&mut map, now);
        }
        let bucket = map.entry(client).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let refill = now.saturating_duration_since(bucket.last).as_secs_f64() * burst;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last = now.max(bucket.last);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Cuts a full shard back to [`RateLimiter::room_target`] addresses: idle buckets first,
    /// then single-query ones, then arbitrary ones.
    fn make_room(&self, map: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let burst = f64::from(self.rate);
        let target = self.room_target();
        let tokens = |b: &Bucket| {
            (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * burst).min(burst)
        };
        // At a rate of 1 a single-query source has no token left, like a limited client:
        // only the first tier applies.
        for floor in [burst, burst - 1.0].into_iter().filter(|f| *f > 0.0) {
            if map.len() <= target {
                return;
            }
            map.retain(|_, b| tokens(b) < floor);
        }
        let excess = map.len().saturating_sub(target);
        let victims: Vec<IpAddr> = map.keys().take(excess).copied().collect();
        for victim in victims {
            map.remove(&victim);
        }
    }

    /// Addresses a full shard is cut back to: 7/8 of its capacity, so the next capacity/8
    /// new sources are admitted without another pass.
    fn room_target(&self) -> usize {
        self.shard_capacity - self.shard_capacity.div_ceil(8)
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    /// How many of `n` queries sent at `t0 + i * gap` are admitted.
    fn admitted(l: &RateLimiter, client: IpAddr, t0: Instant, n: u32, gap: Duration) -> u32 {
        (0..n).filter(|i| l.admit(client, t0 + gap * *i)).count() as u32
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        for (rate, n, gap, want) in [
            // A burst at one instant: exactly one second's worth.
            (10, 50, Duration::ZERO, 10),
            (1, 5, Duration::ZERO, 1),
            // Spaced exactly at the rate: all pass.
            (10, 50, Duration::from_millis(100), 50),
            // Twice the rate for 2 s: the burst plus 2 s of refill.
            (10, 40, Duration::from_millis(50), 10 + 19),
        ] {
            let l = RateLimiter::new(rate);
            assert_eq!(
                admitted(&l, ip(1), t0, n, gap),
                want,
                "rate {rate} gap {gap:?}"
            );
        }
    }

    #[test]
    fn clients_have_their_own_buckets_and_zero_is_off() {
        let t0 = Instant::now();
        let l = RateLimiter::new(2);
        assert_eq!(admitted(&l, ip(1), t0, 5, Duration::ZERO), 2);
        assert_eq!(admitted(&l, ip(2), t0, 5, Duration::ZERO), 2);
        // IPv4-mapped IPv6 is the same client as the IPv4 address.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert!(!l.admit(mapped, t0));
        let off = RateLimiter::new(0);
        assert_eq!(admitted(&off, ip(1), t0, 1000, Duration::ZERO), 1000);
        assert_eq!(off.tracked(), 0);
    }

    #[test]
    fn a_clock_going_backwards_grants_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let l = RateLimiter::new(1);
        assert!(l.admit(ip(1), t0));
        assert!(!l.admit(ip(1), t0 - Duration::from_secs(5)));
        assert!(!l.admit(ip(1), t0));
        assert!(l.admit(ip(1), t0 + Duration::from_secs(1)));
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_sources() {
        let t0 = Instant::now();
        let l = RateLimiter::with_capacity(5, 8);
        for i in 0..10_000u32 {
            let v6 = Ipv6Addr::from(u128::from(i) << 64);
            assert!(l.admit(IpAddr::V6(v6), t0), "a new source gets its burst");
        }
        assert!(l.tracked() <= SHARDS * 8, "{} tracked", l.tracked());
        // A client over its limit stays limited while the flood goes on elsewhere.
        let busy = ip(9);
        assert_eq!(admitted(&l, busy, t0, 10, Duration::ZERO), 5);
        assert!(!l.admit(busy, t0));
    }

    #[test]
    fn a_full_shard_is_cut_back_keeping_limited_clients() {
        let t0 = Instant::now();
        let l = RateLimiter::with_capacity(4, 64);
        let fill = |tokens: &[f64]| -> HashMap<IpAddr, Bucket> {
            (0..64u32)
                .map(|i| {
                    let b = Bucket {
                        tokens: tokens[i as usize % tokens.len()],
                        last: t0,
                    };
                    (IpAddr::V6(Ipv6Addr::from(u128::from(i))), b)
                })
                .collect()
        };
        // Half limited clients (no tokens left), half single-query sources: only the latter go.
        let mut map = fill(&[0.0, 3.0]);
        l.make_room(&mut map, t0);
        assert_eq!(map.len(), 32);
        assert!(map.values().all(|b| b.tokens == 0.0));
        // Idle buckets go before single-query ones.
        let mut map = fill(&[4.0, 3.0]);
        l.make_room(&mut map, t0);
        assert_eq!(map.len(), 32);
        assert!(map.values().all(|b| b.tokens == 3.0));
        // Nothing but limited clients: arbitrary ones, down to 7/8 of the capacity.
        let mut map = fill(&[0.5]);
        l.make_room(&mut map, t0);
        assert_eq!(map.len(), 56);
        // At a rate of 1, limited clients are not taken for single-query sources.
        let one = RateLimiter::with_capacity(1, 64);
        let mut map = fill(&[0.0, 1.0]);
        one.make_room(&mut map, t0);
        assert_eq!(map.len(), 32);
        assert!(map.values().all(|b| b.tokens == 0.0));
        // A shard with room is left alone.
        let mut map: HashMap<IpAddr, Bucket> = fill(&[4.0]).into_iter().take(56).collect();
        l.make_room(&mut map, t0);
        assert_eq!(map.len(), 56);
    }

    #[test]
    fn carry_keeps_buckets_only_for_the_same_rate() {
        let t0 = Instant::now();
        let first = Arc::new(RateLimiter::new(1));
        assert!(first.admit(ip(1), t0));
        let same = RateLimiter::carry(Some(&first), 1);
        assert!(!same.admit(ip(1), t0), "still limited after a reload");
        let changed = RateLimiter::carry(Some(&first), 2);
        assert!(changed.admit(ip(1), t0));
        assert_eq!(RateLimiter::carry(None, 3).rate(), 3);
    }
}
