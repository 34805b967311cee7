//! Cache admission: which upstream responses are stored, as what kind, and for how long
//! (TTL clamps, RFC 2308 negative TTLs, the SERVFAIL policy).

use crate::config::CacheSettings;
use crate::wire::{self, Header, Layout};

use super::{EntryKind, NotStored};

const NOERROR: u8 = 0;
const SERVFAIL: u8 = 2;
const NXDOMAIN: u8 = 3;

/// Decides whether `response` may be cached: its kind and entry TTL in seconds.
///
/// Positive answers live for min(record TTLs), floored at `min_ttl` and capped at `max_ttl`
/// (the cap wins if the two conflict). Negative answers (NXDOMAIN, or NOERROR with an empty
/// answer section) live for min(SOA TTL, SOA MINIMUM) — bounded by any smaller record TTL —
/// floored at `min_ttl` and capped at `negative_max_ttl`. A record TTL of 0 means "do not
/// cache" and is honoured before the floor.
pub(crate) fn admit(
    settings: &CacheSettings,
    response: &[u8],
    layout: &Layout,
) -> Result<(EntryKind, u32), NotStored> {
    if !settings.enabled {
        return Err(NotStored::Disabled);
    }
    let header = Header::new(response).map_err(|_| NotStored::Rcode(0xff))?;
    if header.tc() {
        return Err(NotStored::Truncated);
    }
    match wire::full_rcode(response, header.rcode(), layout.opt.as_ref()) {
        NOERROR if header.ancount() > 0 => {
            let ttl = nonzero(layout.min_ttl)?;
            Ok((
                EntryKind::Success,
                clamp(ttl, settings.min_ttl, settings.max_ttl),
            ))
        }
        NOERROR | NXDOMAIN => {
            let soa = layout
                .soa_negative_ttl
                .ok_or(NotStored::NegativeWithoutSoa)?;
            let ttl = nonzero(Some(layout.min_ttl.map_or(soa, |m| m.min(soa))))?;
            let ttl = clamp(ttl, settings.min_ttl, settings.negative_max_ttl);
            Ok((EntryKind::Denial, ttl))
        }
        SERVFAIL if settings.servfail_ttl > 0 => Ok((EntryKind::ServFail, settings.servfail_ttl)),
        SERVFAIL => Err(NotStored::ServFail),
        other => Err(NotStored::Rcode(other)),
    }
}

/// Floor then cap: the cap is never exceeded, even when misconfigured below the floor.
fn clamp(ttl: u32, floor: u32, cap: u32) -> u32 {
    ttl.max(floor).min(cap)
}

fn nonzero(ttl: Option<u32>) -> Result<u32, NotStored> {
    match ttl {
        Some(0) | None => Err(NotStored::ZeroTtl),
        Some(t) => Ok(t),
    }
}
