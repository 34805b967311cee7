//! One cached response: the upstream's wire bytes, the TTL offsets, the key it was stored
//! under, the entry TTL and the serve-stale refresh claim.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{CacheKey, EntryKind, KeyRef};

/// A stored response. Shared (`Arc`) between the map and any `Hit`s being rendered.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The upstream response as received (TTLs are rewritten on render), followed by the
    /// offsets of its 32-bit TTL fields (every record except OPT) as big-endian u16s, then
    /// the key's wire name: one allocation instead of three, which matters at 100,000
    /// entries.
    data: Box<[u8]>,
    /// Length of the response within `data`.
    msg_len: u32,
    /// Where the key's name starts within `data`.
    name_at: u32,
    /// The rest of the key (the map is keyed by its hash; a hit is checked against these).
    group: Arc<str>,
    qtype: u16,
    qclass: u16,
    do_bit: bool,
    cd: bool,
    stored_at: Instant,
    /// Entry TTL, seconds.
    ttl: u32,
    kind: EntryKind,
    /// 0 = no refresh in flight; otherwise 1 + milliseconds from `stored_at` to the claim.
    refresh_claim: AtomicU64,
}

impl Entry {
    /// Copies `response`, its TTL offsets and `key`. Offsets outside the buffer are dropped
    /// rather than trusted (a message is at most 65,535 bytes, so valid offsets fit a u16).
    pub(crate) fn new(
        key: &CacheKey,
        response: &[u8],
        offsets: &[usize],
        ttl: u32,
        kind: EntryKind,
        now: Instant,
    ) -> Self {
        let mut data = Vec::with_capacity(response.len() + 2 * offsets.len() + key.name.len());
        data.extend_from_slice(response);
        for &off in offsets {
            let in_bounds = off.checked_add(4).is_some_and(|end| end <= response.len());
            if let (true, Ok(off)) = (in_bounds, u16::try_from(off)) {
                data.extend_from_slice(&off.to_be_bytes());
            }
        }
        let name_at = u32::try_from(data.len()).unwrap_or(u32::MAX);
        data.extend_from_slice(&key.name);
        Entry {
            data: data.into_boxed_slice(),
            msg_len: u32::try_from(response.len()).unwrap_or(u32::MAX),
            name_at,
            group: key.group.clone(),
            qtype: key.qtype,
            qclass: key.qclass,
            do_bit: key.do_bit,
            cd: key.cd,
            stored_at: now,
            ttl,
            kind,
            refresh_claim: AtomicU64::new(0),
        }
    }

    /// Whether this entry was stored under `key` (and not merely under its hash).
    pub(crate) fn is_for(&self, key: &KeyRef<'_>) -> bool {
        self.qtype == key.qtype
            && self.qclass == key.qclass
            && self.do_bit == key.do_bit
            && self.cd == key.cd
            && self.data.get(self.name_at as usize..) == Some(key.name)
            && *self.group == **key.group
    }

    /// How long after it was stored the entry may be answered: its TTL plus `stale_for`
    /// (serve-stale), or its TTL alone for a SERVFAIL, which is never served stale.
    pub(crate) fn servable_for(&self, stale_for: Duration) -> Duration {
        match self.kind {
            EntryKind::ServFail => self.ttl(),
            _ => self.ttl().saturating_add(stale_for),
        }
    }

    pub(crate) fn kind(&self) -> EntryKind {
        self.kind
    }

    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.ttl))
    }

    /// Time since the entry was stored (zero if `now` is earlier).
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    /// Appends the response to `out` with every TTL set to the entry's remaining TTL at
    /// `now`, or to `stale_ttl`. One value for all records, as CoreDNS does: no record
    /// outlives the entry (cap), and a floor-raised entry never shows a record at TTL 0.
    pub(crate) fn render_into(&self, now: Instant, stale_ttl: Option<u32>, out: &mut Vec<u8>) {
        let age = u32::try_from(self.age(now).as_secs()).unwrap_or(u32::MAX);
        let ttl = stale_ttl
            .unwrap_or(self.ttl.saturating_sub(age))
            .to_be_bytes();
        let (msg, rest) = self.data.split_at(self.msg_len as usize);
        let offsets = &rest[..(self.name_at - self.msg_len) as usize];
        let start = out.len();
        out.extend_from_slice(msg);
        let msg = &mut out[start..];
        for off in offsets.chunks_exact(2) {
            let off = usize::from(u16::from_be_bytes([off[0], off[1]]));
            if let Some(field) = msg.get_mut(off..off + 4) {
                field.copy_from_slice(&ttl);
            }
        }
    }

    /// Claims the background refresh of a stale entry: true for exactly one caller, until
    /// `release_refresh`, or until `rearm_after` has passed since the claim (a refresh that
    /// never reported back must not pin the entry to stale forever).
    pub(crate) fn claim_refresh(&self, now: Instant, rearm_after: Duration) -> bool {
        let stamp = millis(self.age(now)).saturating_add(1);
        let current = self.refresh_claim.load(Ordering::Acquire);
        if current != 0 && stamp.saturating_sub(current) < millis(rearm_after) {
            return false;
        }
        self.refresh_claim
            .compare_exchange(current, stamp, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Lets the next stale lookup claim the refresh again.
    pub(crate) fn release_refresh(&self) {
        self.refresh_claim.store(0, Ordering::Release);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
