//! Demultiplexing of answers by ID (query path step 6), shared by the pipelined TCP
//! connections and the pooled UDP sockets: a query registers under a random free ID and
//! an answer reaches it only if ID and question match; anything else is counted, ignored.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::metrics::{Metrics, ReasonLabels};

use super::message;
use super::server::AttemptError;

/// A query waiting for its answer.
struct Waiter {
    query: Vec<u8>,
    reply: oneshot::Sender<Bytes>,
    /// Which registration this is: an ID is reused as soon as its answer is dispatched,
    /// possibly before the first query's [`Unregister`] runs, which must not remove the
    /// second query's waiter.
    token: u64,
}

#[derive(Default)]
struct State {
    waiters: HashMap<u16, Waiter, BuildHasherDefault<IdHasher>>,
    next_token: u64,
    /// Set under the same lock as registration, so nothing registers once reading stopped.
    dead: bool,
}

/// Hashes a query ID to itself. IDs are drawn at random by us, and an answer only looks
/// one up (a peer cannot insert), so there is nothing to flood; SipHash cost ~5 hashes a
/// query.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // hashbrown takes the top 7 bits as the control byte: spread the 16 bits there too.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u16(&mut self, v: u16) {
        self.0 = u64::from(v);
    }
}

/// The in-flight queries of one socket or connection.
#[derive(Default)]
pub(crate) struct Demux {
    state: Mutex<State>,
}

/// A registered query: its ID, the message to send, where its answer arrives.
pub(crate) struct Registered {
    pub(crate) id: u16,
    pub(crate) token: u64,
    pub(crate) message: Vec<u8>,
    pub(crate) answer: oneshot::Receiver<Bytes>,
}

impl Demux {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `query` under a random ID not in flight here.
    pub(crate) fn register(&self, query: &[u8]) -> Result<Registered, AttemptError> {
        let mut s = self.lock();
        if s.dead {
            return Err(AttemptError::Closed);
        }
        let id = (0..64)
            .map(|_| rand::random::<u16>())
            .find(|id| !s.waiters.contains_key(id))
            .ok_or_else(|| AttemptError::Io("no free query ID".into()))?;
        let message = message::with_id(query, id);
        let (reply, answer) = oneshot::channel();
        let query = message.clone();
        s.next_token += 1;
        let token = s.next_token;
        s.waiters.insert(
            id,
            Waiter {
                query,
                reply,
                token,
            },
        );
        Ok(Registered {
            id,
            token,
            message,
            answer,
        })
    }

    /// Removes registration `token` of `id`, if it is still waiting.
    pub(crate) fn unregister(&self, id: u16, token: u64) {
        let mut s = self.lock();
        if s.waiters.get(&id).is_some_and(|w| w.token == token) {
            s.waiters.remove(&id);
        }
    }

    /// Hands `frame` to the query it answers, or counts it as ignored.
    pub(crate) fn dispatch(&self, frame: Vec<u8>, metrics: &Metrics) {
        let mut s = self.lock();
        let id = crate::wire::Header::new(&frame).map(|h| h.id()).ok();
        let is_answer =
            |id: &u16| (s.waiters.get(id)).is_some_and(|w| message::matches(&w.query, &frame));
        match id.filter(is_answer).and_then(|id| s.waiters.remove(&id)) {
            Some(w) => {
                let _ = w.reply.send(Bytes::from(frame));
            }
            None => ignored(metrics),
        }
    }

    /// Stops accepting queries if none is in flight; false (and nothing changes) otherwise.
    /// One lock for the check and the close: a query registering in between would
    /// otherwise be failed by the close although its socket was about to be retired idle.
    pub(crate) fn close_if_idle(&self) -> bool {
        let mut s = self.lock();
        if !s.waiters.is_empty() {
            return false;
        }
        s.dead = true;
        true
    }

    /// Stops accepting queries and fails the ones in flight (their senders are dropped).
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.dead = true;
        s.waiters.clear();
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.lock().dead
    }
}

/// Unregisters a query when it ends for any reason (answer, timeout, cancellation).
pub(crate) struct Unregister<'a>(pub(crate) &'a Demux, pub(crate) u16, pub(crate) u64);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.unregister(self.1, self.2);
    }
}

/// Counts a response that failed the checks (wrong ID or question, garbage).
pub(crate) fn ignored(metrics: &Metrics) {
    let reason = ReasonLabels {
        reason: "upstream_mismatch",
    };
    metrics.dropped.get_or_create(&reason).inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamQuery;

    #[test]
    fn a_stale_unregister_leaves_a_reused_id_alone() {
        let metrics = Metrics::new();
        let q = UpstreamQuery {
            name: b"\x03www\x07example\x00",
            qtype: 1,
            qclass: 1,
            do_bit: false,
            cd: false,
        };
        let query = message::build_query(&q, 1232);
        let demux = Demux::default();
        let Ok(mut r) = demux.register(&query) else {
            panic!("register")
        };
        // The guard of an earlier registration of the same ID (answered, not yet dropped).
        drop(Unregister(&demux, r.id, r.token.wrapping_sub(1)));
        let mut answer = r.message.clone();
        answer[2] |= 0x80;
        demux.dispatch(answer.clone(), &metrics);
        assert_eq!(r.answer.try_recv().ok().as_deref(), Some(&answer[..]));
        // Its own guard removes it.
        let Ok(r2) = demux.register(&query) else {
            panic!("register")
        };
        drop(Unregister(&demux, r2.id, r2.token));
        assert!(demux.close_if_idle());
    }
}
