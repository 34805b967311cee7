//! TCP connection slots: the connection cap, and making room at the cap. A new connection
//! that finds every slot taken closes an idle one instead of being turned away, so slow
//! clients (slowloris) holding slots cannot starve new ones. In this order:
//! - a connection that never completed a query but sent part of one (stalled mid-frame) once
//!   it is [`EVICT_MIN_IDLE`] old, the oldest first;
//! - one that sent nothing yet, as old;
//! - one that completed queries, once idle for half the idle timeout (the idlest first), so
//!   clients that use their connections keep them.
//!
//! Never one with a query being answered, nor one whose next bytes wait unread in the
//! kernel (`FIONREAD`): a client whose query arrived before its task ran is not idle.
//! When no connection qualifies yet but one will within [`ADMIT_WAIT`] (a flood of young
//! connections), the accept loop waits for it, leaving new connections in the kernel's
//! backlog; otherwise the new one is refused.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A connection idle for less than this is never closed to make room.
pub(crate) const EVICT_MIN_IDLE: Duration = Duration::from_millis(10);

/// Longest the accept loop waits for a connection to become closable rather than refusing
/// the new one.
pub(crate) const ADMIT_WAIT: Duration = Duration::from_millis(25);

/// Every open connection of one listener.
pub(crate) struct Slots {
    cap: usize,
    /// Milliseconds a connection that served queries must be idle to be closed for room.
    served_min_idle: u64,
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
}

/// One connection's activity, and the signal that closes it.
#[derive(Default)]
pub(crate) struct Slot {
    /// The connection's socket, to look for unread bytes (`None` in unit tests).
    fd: Option<RawFd>,
    /// Whether part of a frame arrived and the rest has not.
    partial: AtomicBool,
    /// Milliseconds from the epoch to the connect or the last complete query.
    last_active: AtomicU64,
    /// Queries read and not answered yet.
    busy: AtomicU32,
    /// Whether a complete query ever arrived.
    served: AtomicBool,
    /// Notified (with a stored permit) when the connection must close.
    pub(crate) evict: Notify,
}

/// Holds a slot; frees it when dropped.
pub(crate) struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    pub(crate) slot: Arc<Slot>,
}

/// What `admit` did.
pub(crate) enum Admission {
    Admitted(SlotGuard),
    /// Admitted after telling the idlest connection to close.
    Evicted(SlotGuard),
    Full,
}

impl Slots {
    /// `cap` connections; `idle_timeout` is the listener's.
    pub(crate) fn new(cap: usize, idle_timeout: Duration, epoch: Instant) -> Arc<Self> {
        let served_min_idle = (idle_timeout / 2).max(EVICT_MIN_IDLE);
        Arc::new(Slots {
            cap: cap.max(1),
            served_min_idle: served_min_idle.as_millis() as u64,
            epoch,
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection (socket `fd`) at `now`, closing the idlest connection if
    /// at the cap.
    pub(crate) fn admit(self: &Arc<Self>, fd: Option<RawFd>, now: Instant) -> Admission {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = false;
        if open.len() >= self.cap {
            let Some(victim) = self.idlest(&open, now) else {
                return Admission::Full;
            };
            if let Some(slot) = open.remove(&victim) {
                slot.evict.notify_one();
            }
            evicted = true;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            fd,
            ..Slot::default()
        });
        slot.last_active.store(self.millis(now), Ordering::Release);
        open.insert(id, slot.clone());
        let guard = SlotGuard {
            slots: self.clone(),
            id,
            slot,
        };
        if evicted {
            Admission::Evicted(guard)
        } else {
            Admission::Admitted(guard)
        }
    }

    /// The connection to close: stalled mid-frame, then never served, then served; idle
    /// longest first; none with unread bytes.
    fn idlest(&self, open: &HashMap<u64, Arc<Slot>>, now: Instant) -> Option<u64> {
        let now = self.millis(now);
        let mut candidates: Vec<_> = open
            .iter()
            .filter_map(|(id, s)| {
                let idle = self.closable_after(s, now)?;
                (idle == 0).then_some(((s.rank(), s.idle(now)), *id, s.fd))
            })
            .collect();
        candidates.sort_unstable_by_key(|(key, _, _)| std::cmp::Reverse(*key));
        candidates
            .into_iter()
            .find(|(_, _, fd)| !fd.is_some_and(unread_bytes))
            .map(|(_, id, _)| id)
    }

    /// How soon some open connection becomes closable for room (`None`: none will without
    /// activity, e.g. all are answering queries).
    pub(crate) fn closable_in(&self, now: Instant) -> Option<Duration> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.millis(now);
        open.values()
            .filter_map(|s| self.closable_after(s, now))
            .min()
            .map(Duration::from_millis)
    }

    /// Milliseconds until `slot` may be closed for room (0: now); `None` while it is
    /// answering a query.
    fn closable_after(&self, slot: &Slot, now: u64) -> Option<u64> {
        if slot.busy.load(Ordering::Acquire) != 0 {
            return None;
        }
        let min_idle = if slot.served.load(Ordering::Acquire) {
            self.served_min_idle
        } else {
            EVICT_MIN_IDLE.as_millis() as u64
        };
        Some(min_idle.saturating_sub(slot.idle(now)))
    }

    /// Milliseconds from the epoch.
    pub(crate) fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Connections open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }
}

/// Whether bytes wait unread in the socket's receive queue.
fn unread_bytes(fd: RawFd) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for the call. A
    // closed or reused descriptor only makes the answer meaningless, never unsound.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    rc == 0 && n > 0
}

impl Slot {
    /// Milliseconds since the connect or the last complete query.
    fn idle(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_active.load(Ordering::Acquire))
    }

    /// Which connections go first for room: stalled mid-frame (2), then never served (1),
    /// then served (0).
    fn rank(&self) -> u8 {
        if self.served.load(Ordering::Acquire) {
            0
        } else if self.partial.load(Ordering::Acquire) {
            2
        } else {
            1
        }
    }

    /// A complete query arrived at `millis`.
    pub(crate) fn touch(&self, millis: u64) {
        self.last_active.store(millis, Ordering::Release);
        self.served.store(true, Ordering::Release);
        self.partial.store(false, Ordering::Release);
    }

    /// Part of a frame arrived and the rest has not (yet).
    pub(crate) fn stalled(&self) {
        self.partial.store(true, Ordering::Release);
    }

    /// A query is being answered asynchronously; the connection is not idle until `done`.
    pub(crate) fn start(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done(&self) {
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SlotGuard {
    pub(crate) fn slots(&self) -> &Slots {
        &self.slots
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(a: Admission) -> Option<SlotGuard> {
        match a {
            Admission::Admitted(g) | Admission::Evicted(g) => Some(g),
            Admission::Full => None,
        }
    }

    #[tokio::test]
    async fn at_the_cap_the_idlest_connection_makes_room() {
        let t0 = Instant::now();
        let slots = Slots::new(2, Duration::from_secs(1), t0);
        let a = admitted(slots.admit(None, t0)).unwrap();
        let b = admitted(slots.admit(None, t0 + Duration::from_millis(5))).unwrap();
        // Both younger than EVICT_MIN_IDLE: nobody to close.
        assert!(matches!(
            slots.admit(None, t0 + Duration::from_millis(8)),
            Admission::Full
        ));
        // a has been idle longest: it is told to close, c gets its slot.
        let at = t0 + Duration::from_millis(50);
        let Admission::Evicted(c) = slots.admit(None, at) else {
            panic!("expected an eviction")
        };
        tokio::time::timeout(Duration::from_secs(1), a.slot.evict.notified())
            .await
            .expect("a told to close");
        assert_eq!(slots.len(), 2);
        // b is busy answering, c is active: nobody to close.
        b.slot.start();
        c.slot.touch(slots.millis(at + Duration::from_millis(45)));
        assert!(matches!(
            slots.admit(None, at + Duration::from_millis(50)),
            Admission::Full
        ));
        b.slot.done();
        // b served a query long ago, d never did: d goes first although b is idler.
        let later = at + Duration::from_millis(200);
        b.slot.touch(slots.millis(at));
        drop(c);
        let d = admitted(slots.admit(None, at + Duration::from_millis(100))).unwrap();
        let Admission::Evicted(e) = slots.admit(None, later) else {
            panic!("expected an eviction")
        };
        tokio::time::timeout(Duration::from_secs(1), d.slot.evict.notified())
            .await
            .expect("d told to close");
        let c = e;
        drop(a);
        assert_eq!(slots.len(), 2, "a's slot was already handed to c");
        drop(c);
        assert_eq!(slots.len(), 1);
    }

    #[test]
    fn a_connection_in_use_is_kept() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let slots = Slots::new(1, Duration::from_secs(1), t0);
        let a = admitted(slots.admit(None, t0)).unwrap();
        a.slot.touch(slots.millis(t0 + ms(10)));
        // Used 450 ms ago, idle timeout 1 s: kept; 510 ms ago: closed for room.
        assert!(matches!(slots.admit(None, t0 + ms(460)), Admission::Full));
        assert!(matches!(
            slots.admit(None, t0 + ms(520)),
            Admission::Evicted(_)
        ));
    }

    #[test]
    fn stalled_connections_go_first_and_unread_queries_are_kept() -> std::io::Result<()> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let slots = Slots::new(2, Duration::from_secs(1), t0);
        // a: sent nothing yet; b (younger): sent half a frame and stalled.
        let a = admitted(slots.admit(None, t0)).unwrap();
        let b = admitted(slots.admit(None, t0 + ms(5))).unwrap();
        b.slot.stalled();
        let Admission::Evicted(_c) = slots.admit(None, t0 + ms(20)) else {
            panic!("expected an eviction")
        };
        assert_eq!(slots.len(), 2);
        assert!(
            slots
                .open
                .lock()
                .unwrap()
                .values()
                .any(|s| Arc::ptr_eq(s, &a.slot)),
            "the stalled connection goes first, not the older quiet one"
        );
        drop((a, b));

        // A real socket whose query waits unread in the kernel is not idle.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        let slots = Slots::new(1, Duration::from_secs(1), t0);
        let _d = admitted(slots.admit(Some(server.as_raw_fd()), t0)).unwrap();
        client.write_all(&[0, 1, 0])?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !unread_bytes(server.as_raw_fd()) && Instant::now() < deadline {
            std::thread::sleep(ms(1));
        }
        assert!(matches!(slots.admit(None, t0 + ms(50)), Admission::Full));
        Ok(())
    }
}
