//! Response cache (query path step 5 and 7): wire-format answers keyed by
//! (upstream group, name, qtype, qclass, DO, CD), TTLs aged on read, negative caching,
//! serve-stale (RFC 8767).
//!
//! Entries are the upstream's wire bytes plus their TTL offsets, so a hit is one map `get`,
//! one copy and a few 32-bit writes — never a message decode. The clock is passed in (`now`)
//! so freshness, aging and stale windows are testable without sleeping.
//!
//! The map is `quick_cache` (CLOCK-Pro eviction, sharded, entries in a slab) rather than
//! moka: moka's bookkeeping costs ≈ 340 B per entry (measured: 100,000 entries of an 8-byte
//! value, 34 MiB), quick_cache's ≈ 40 B, and an entry itself is ≈ 150 B. With moka the
//! 100,000-name memory target (40 MiB for the whole process) was out of reach. quick_cache
//! has no expiry of its own: an entry past its TTL plus stale window is never served (the
//! lookup checks), and [`Cache::sweep`] reclaims its memory (a housekeeping task calls it
//! every 30 s), so memory stays bounded by the capacity either way.

mod admit;
mod entry;
#[cfg(test)]
mod tests;

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use quick_cache::sync::{EntryAction, EntryResult};
use quick_cache::{Lifecycle, OptionsBuilder, UnitWeighter};

use crate::config::{CacheSettings, ServeStale};
use crate::wire::Layout;

use entry::Entry;

/// A stale entry whose refresh never reported back (`store` or `refresh_failed`) may be
/// claimed again after max(2 × verify_timeout, this).
pub const MIN_REFRESH_REARM: Duration = Duration::from_secs(5);

/// The cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub group: Arc<str>,
    /// Lowercased, uncompressed wire-format name.
    pub name: Box<[u8]>,
    pub qtype: u16,
    pub qclass: u16,
    pub do_bit: bool,
    pub cd: bool,
}

/// A cache key borrowed from a query, for lookups (no allocation on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef<'a> {
    pub group: &'a Arc<str>,
    /// Lowercased, uncompressed wire-format name.
    pub name: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub do_bit: bool,
    pub cd: bool,
}

impl CacheKey {
    pub fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            group: &self.group,
            name: &self.name,
            qtype: self.qtype,
            qclass: self.qclass,
            do_bit: self.do_bit,
            cd: self.cd,
        }
    }
}

impl KeyRef<'_> {
    pub fn to_owned(&self) -> CacheKey {
        CacheKey {
            group: self.group.clone(),
            name: self.name.into(),
            qtype: self.qtype,
            qclass: self.qclass,
            do_bit: self.do_bit,
            cd: self.cd,
        }
    }
}

impl<'a> From<&'a CacheKey> for KeyRef<'a> {
    fn from(k: &'a CacheKey) -> Self {
        k.as_ref()
    }
}

/// Hashed with three hasher writes instead of the derive's eight: the key is hashed on every
/// lookup. Unambiguous because the wire name is self-delimiting (it ends at its root label)
/// and the group comes last. The map is keyed by this hash (SipHash with a per-cache random
/// key, so clients cannot aim names at one slot) and every hit is checked against the full
/// key kept in the entry: 100,000 keys cost 8 bytes each in the map instead of 40 plus an
/// allocation.
impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.name);
        let packed = u64::from(self.qtype)
            | (u64::from(self.qclass) << 16)
            | (u64::from(self.do_bit) << 32)
            | (u64::from(self.cd) << 33);
        state.write_u64(packed);
        state.write(self.group.as_bytes());
    }
}

/// What an entry holds. The CoreDNS `type` label is `success` for `Success` and `denial`
/// for `Denial` and `ServFail` (CoreDNS keeps SERVFAIL in its denial cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Success,
    Denial,
    ServFail,
}

impl EntryKind {
    /// The CoreDNS cache metric `type` label.
    pub fn label(self) -> &'static str {
        match self {
            EntryKind::Success => "success",
            EntryKind::Denial | EntryKind::ServFail => "denial",
        }
    }

    /// The index of the kind's `type` label: 0 success, 1 denial.
    pub(crate) fn slot(self) -> usize {
        match self {
            EntryKind::Success => 0,
            EntryKind::Denial | EntryKind::ServFail => 1,
        }
    }
}

/// A cached answer.
#[derive(Debug, Clone)]
pub struct Hit {
    entry: Arc<Entry>,
    /// Some(stale TTL) when served past expiry.
    stale_ttl: Option<u32>,
}

impl Hit {
    pub fn kind(&self) -> EntryKind {
        self.entry.kind()
    }
    /// The response bytes with TTLs aged to `now` (or set to the stale TTL when stale).
    /// The ID and question case are the caller's to patch.
    pub fn render(&self, now: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(now, &mut out);
        out
    }
    /// As [`Hit::render`], appending to a caller-owned buffer.
    pub fn render_into(&self, now: Instant, out: &mut Vec<u8>) {
        self.entry.render_into(now, self.stale_ttl, out);
    }
    /// Whether this hit is past its TTL (served under serve-stale).
    pub fn is_stale(&self) -> bool {
        self.stale_ttl.is_some()
    }
}

/// The result of a lookup.
#[derive(Debug)]
pub enum Lookup {
    Fresh(Hit),
    /// Expired but within `stale_for`; `refresh` is true for exactly one caller per entry
    /// until the refresh completes (`store`) or fails (`refresh_failed`), or until the
    /// claim is older than the re-arm bound (see [`MIN_REFRESH_REARM`]).
    Stale {
        hit: Hit,
        refresh: bool,
    },
    Miss,
}

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Disabled,
    Truncated,
    ServFail,
    NegativeWithoutSoa,
    /// Any other RCODE (REFUSED, FORMERR, NOTIMP, extended codes…); 255 = no header.
    Rcode(u8),
    ZeroTtl,
}

/// Prometheus counters for `coredns_cache_evictions_total{type}`, already labelled for one
/// zone; the cache increments them from its eviction listener.
#[derive(Debug, Clone, Default)]
pub struct EvictionCounters {
    pub success: Counter,
    pub denial: Counter,
}

/// Entry and eviction tallies, maintained by `store`, `sweep` and the map's eviction hook.
#[derive(Debug, Default)]
struct Tally {
    entries: [AtomicI64; 2],
    evictions: [AtomicU64; 2],
    observer: Option<EvictionCounters>,
}

impl Tally {
    fn added(&self, kind: EntryKind) {
        self.entries[kind.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// An entry left the map: replaced, expired, or (`evicted`) pushed out for capacity.
    fn removed(&self, kind: EntryKind, evicted: bool) {
        self.entries[kind.slot()].fetch_sub(1, Ordering::Relaxed);
        // Only capacity pressure is an eviction in CoreDNS's sense; expiry and replacement
        // are the normal life of an entry.
        if !evicted {
            return;
        }
        self.evictions[kind.slot()].fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &self.observer {
            match kind.slot() {
                0 => c.success.inc(),
                _ => c.denial.inc(),
            };
        }
    }
}

/// The map's eviction hook: counts capacity evictions.
#[derive(Debug, Clone)]
struct Evictions(Arc<Tally>);

impl Lifecycle<u64, Arc<Entry>> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: u64, entry: Arc<Entry>) {
        self.0.removed(entry.kind(), true);
    }
}

/// The map's hasher: its keys are already SipHash values ([`Cache::slot`]).
#[derive(Debug, Clone, Copy, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in rather than drop it.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = quick_cache::sync::Cache<
    u64,
    Arc<Entry>,
    UnitWeighter,
    BuildHasherDefault<Prehashed>,
    Evictions,
>;

/// Entries the map is sized for up front (at most [`PRESIZE_MAX`]): every growth step of
/// the table rehashes every key.
fn initial_capacity(capacity: u64) -> usize {
    usize::try_from(capacity.min(PRESIZE_MAX)).unwrap_or(0)
}

/// The largest table sized up front: only the pages entries land in become resident.
const PRESIZE_MAX: u64 = 1 << 17;

/// One zone's cache.
pub struct Cache {
    settings: CacheSettings,
    map: Map,
    /// Keys the map's slots ([`Cache::slot`]).
    hasher: RandomState,
    tally: Arc<Tally>,
    /// The stale window, zero when serve-stale is disabled.
    stale_for: Duration,
    rearm_after: Duration,
}

impl Cache {
    pub fn new(settings: CacheSettings) -> Self {
        Self::build(settings, None)
    }

    /// A cache that also increments `counters` on every capacity eviction.
    pub fn with_eviction_counters(settings: CacheSettings, counters: EvictionCounters) -> Self {
        Self::build(settings, Some(counters))
    }

    fn build(settings: CacheSettings, observer: Option<EvictionCounters>) -> Self {
        let stale_for = match settings.serve_stale {
            ServeStale::Disabled => Duration::ZERO,
            ServeStale::Immediate | ServeStale::Verify => settings.stale_for,
        };
        let tally = Arc::new(Tally {
            observer,
            ..Tally::default()
        });
        let options = OptionsBuilder::new()
            .estimated_items_capacity(initial_capacity(settings.capacity))
            .weight_capacity(settings.capacity.max(1))
            .build()
            .expect("capacity options are valid");
        let map = Map::with_options(
            options,
            UnitWeighter,
            BuildHasherDefault::default(),
            Evictions(Arc::clone(&tally)),
        );
        Cache {
            rearm_after: settings
                .verify_timeout
                .saturating_mul(2)
                .max(MIN_REFRESH_REARM),
            settings,
            map,
            hasher: RandomState::new(),
            tally,
            stale_for,
        }
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// The entry for `key` at `now`: fresh, stale (with whether this caller refreshes it),
    /// or a miss.
    pub fn lookup<'a>(&self, key: impl Into<KeyRef<'a>>, now: Instant) -> Lookup {
        let key = key.into();
        if !self.settings.enabled {
            return Lookup::Miss;
        }
        let Some(entry) = self.get(&key) else {
            return Lookup::Miss;
        };
        let age = entry.age(now);
        if age < entry.ttl() {
            return Lookup::Fresh(Hit {
                entry,
                stale_ttl: None,
            });
        }
        // Past its TTL here, so a SERVFAIL entry (servable for its TTL only) is a miss.
        if age >= entry.servable_for(self.stale_for) {
            return Lookup::Miss;
        }
        let refresh = entry.claim_refresh(now, self.rearm_after);
        let hit = Hit {
            entry,
            stale_ttl: Some(self.settings.stale_ttl),
        };
        Lookup::Stale { hit, refresh }
    }

    /// Stores an upstream response (already validated). `layout` is `wire::layout(response)`.
    ///
    /// A SERVFAIL (when `servfail_ttl` > 0) never replaces an entry that serve-stale could
    /// still answer: the old entry stays, its refresh is re-armed, and `ServFail` is returned.
    pub fn store(
        &self,
        key: CacheKey,
        response: &[u8],
        layout: &Layout,
        now: Instant,
    ) -> Result<EntryKind, NotStored> {
        self.store_hit(key, response, layout, now)
            .map(|hit| hit.kind())
    }

    /// As [`Cache::store`], returning the stored entry as a fresh hit (what a lookup at
    /// `now` would return), so the caller can answer from it without a second lookup.
    pub fn store_hit(
        &self,
        key: CacheKey,
        response: &[u8],
        layout: &Layout,
        now: Instant,
    ) -> Result<Hit, NotStored> {
        let (kind, ttl) = admit::admit(&self.settings, response, layout)?;
        if kind == EntryKind::ServFail && self.keeps_stale(&key, now) {
            return Err(NotStored::ServFail);
        }
        let entry = Arc::new(Entry::new(
            &key,
            response,
            &layout.ttl_offsets,
            ttl,
            kind,
            now,
        ));
        // Counted before the insert so an eviction of it never sees the count go below what
        // it was. Replacing an entry in place moves it between the counts.
        self.tally.added(kind);
        // A different key with the same hash (2^-64 per pair) is replaced: a miss for it later.
        let replaced = self.map.entry(&self.slot(&key.as_ref()), None, |_, old| {
            let previous = old.kind();
            *old = entry.clone();
            EntryAction::Retain(previous)
        });
        match replaced {
            EntryResult::Retained(previous) => self.tally.removed(previous, false),
            EntryResult::Vacant(guard) => {
                if guard.insert(entry.clone()).is_err() {
                    self.tally.removed(kind, false);
                }
            }
            // Not returned for the `Retain` action without a timeout; were it, the entry is
            // simply not stored.
            EntryResult::Removed(..) | EntryResult::Replaced(..) | EntryResult::Timeout => {
                self.tally.removed(kind, false)
            }
        }
        Ok(Hit {
            entry,
            stale_ttl: None,
        })
    }

    /// Whether an existing entry for `key` can still be served (fresh or stale) and is not
    /// itself a SERVFAIL; if so its refresh claim is released.
    fn keeps_stale(&self, key: &CacheKey, now: Instant) -> bool {
        let Some(old) = self.get(&key.as_ref()) else {
            return false;
        };
        let keep =
            old.kind() != EntryKind::ServFail && old.age(now) < old.servable_for(self.stale_for);
        if keep {
            old.release_refresh();
        }
        keep
    }

    /// A background refresh of a stale entry failed: let another caller try.
    pub fn refresh_failed(&self, key: &CacheKey) {
        if let Some(entry) = self.get(&key.as_ref()) {
            entry.release_refresh();
        }
    }

    /// The map slot of `key`.
    fn slot(&self, key: &KeyRef<'_>) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The entry stored under `key`, if any.
    fn get(&self, key: &KeyRef<'_>) -> Option<Arc<Entry>> {
        self.map.get(&self.slot(key)).filter(|e| e.is_for(key))
    }

    /// Entries by kind (success, denial), for `coredns_cache_entries`. SERVFAIL entries count
    /// as denial. Includes entries past their servable window until the next [`Cache::sweep`].
    pub fn entry_counts(&self) -> (u64, u64) {
        let read =
            |i: usize| u64::try_from(self.tally.entries[i].load(Ordering::Relaxed)).unwrap_or(0);
        (read(0), read(1))
    }

    /// Capacity evictions so far by kind (success, denial), for
    /// `coredns_cache_evictions_total` when no [`EvictionCounters`] were given.
    pub fn evictions(&self) -> (u64, u64) {
        let read = |i: usize| self.tally.evictions[i].load(Ordering::Relaxed);
        (read(0), read(1))
    }

    /// Removes every entry that can no longer be served at `now` (past its TTL plus the
    /// stale window; SERVFAIL entries past their TTL), reclaiming its memory. One pass over
    /// the map, a shard at a time.
    pub fn sweep(&self, now: Instant) {
        self.map.retain(|_, entry| {
            let keep = entry.age(now) < entry.servable_for(self.stale_for);
            if !keep {
                self.tally.removed(entry.kind(), false);
            }
            keep
        });
    }

    /// Entries in the map (all kinds, servable or not).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
