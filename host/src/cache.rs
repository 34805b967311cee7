//! Response cache (query path step 5 and 7): wire-format answers keyed by
//! (upstream group, name, qtype, qclass, DO, CD), TTLs aged on read, negative caching,
//! serve-stale. STUB: API contract only.

use std::sync::Arc;
use std::time::Instant;

use crate::config::CacheSettings;
use crate::wire::Layout;

/// The cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub group: Arc<str>,
    /// Lowercased, uncompressed wire-format name.
    pub name: Box<[u8]>,
    pub qtype: u16,
    pub qclass: u16,
    pub do_bit: bool,
    pub cd: bool,
}

/// `success` or `denial` (CoreDNS cache metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Success,
    Denial,
    ServFail,
}

/// A cached answer.
#[derive(Debug, Clone)]
pub struct Hit {}

impl Hit {
    pub fn kind(&self) -> EntryKind {
        EntryKind::Success
    }
    /// The response bytes with TTLs aged to `now` (or set to the stale TTL when stale).
    /// The ID and question case are the caller's to patch.
    pub fn render(&self, _now: Instant) -> Vec<u8> {
        Vec::new()
    }
}

/// The result of a lookup.
#[derive(Debug)]
pub enum Lookup {
    Fresh(Hit),
    /// Expired but within `stale_for`; `refresh` is true for exactly one caller per entry
    /// until the refresh completes (`store`) or fails (`refresh_failed`).
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
    Rcode(u8),
    ZeroTtl,
}

/// One zone's cache.
pub struct Cache {
    settings: CacheSettings,
}

impl Cache {
    pub fn new(settings: CacheSettings) -> Self {
        Cache { settings }
    }
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }
    pub fn lookup(&self, _key: &CacheKey, _now: Instant) -> Lookup {
        Lookup::Miss
    }
    /// Stores an upstream response (already validated). `layout` is `wire::layout(response)`.
    pub fn store(
        &self,
        _key: CacheKey,
        _response: &[u8],
        _layout: &Layout,
        _now: Instant,
    ) -> Result<EntryKind, NotStored> {
        Err(NotStored::Disabled)
    }
    /// A background refresh of a stale entry failed: let another caller try.
    pub fn refresh_failed(&self, _key: &CacheKey) {}
    /// Entries by kind (success, denial), for `coredns_cache_entries`.
    pub fn entry_counts(&self) -> (u64, u64) {
        (0, 0)
    }
}
