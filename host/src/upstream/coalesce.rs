//! Coalescing of identical in-flight upstream queries (query path step 6): the first cache
//! miss for a key leads one upstream exchange; later identical misses join it and get a
//! clone of its result. The leader runs the exchange in its own future (no task spawn
//! per query); if it is cancelled its entry goes and joiners start over.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

use super::{Answer, UpstreamError, UpstreamQuery};

/// Everything that makes two queries the same upstream question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    name: Vec<u8>,
    qtype: u16,
    qclass: u16,
    do_bit: bool,
    cd: bool,
}

impl Key {
    pub(crate) fn new(q: &UpstreamQuery<'_>) -> Self {
        Key {
            name: q.name.to_ascii_lowercase(),
            qtype: q.qtype,
            qclass: q.qclass,
            do_bit: q.do_bit,
            cd: q.cd,
        }
    }

    /// The lowercased query name.
    pub(crate) fn name(&self) -> &[u8] {
        &self.name
    }
}

/// `None` until the leader's exchange ends.
pub(crate) type Outcome = Option<Result<Answer, UpstreamError>>;

/// How a query takes part in an exchange.
pub(crate) enum Role<P> {
    /// An identical exchange is in flight: wait for its result.
    Join(watch::Receiver<Outcome>),
    /// This query runs the exchange and publishes its result on `tx`.
    Lead {
        tx: watch::Sender<Outcome>,
        admit: P,
    },
}

/// The in-flight exchanges of one group.
#[derive(Default)]
pub(crate) struct InFlight {
    map: Mutex<HashMap<Key, watch::Receiver<Outcome>>>,
}

impl InFlight {
    /// Joins the exchange for `key`, or — when `admit` allows a new one — leads it.
    pub(crate) fn join_or_lead<P>(
        &self,
        key: &Key,
        admit: impl FnOnce() -> Result<P, UpstreamError>,
    ) -> Result<Role<P>, UpstreamError> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = map.get(key) {
            return Ok(Role::Join(rx.clone()));
        }
        let admit = admit()?;
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx);
        Ok(Role::Lead { tx, admit })
    }

    /// Ends the exchange for `key`: later queries start a new one.
    pub(crate) fn finish(&self, key: &Key) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(key);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Waits for the leader's result; `None` when the leader was cancelled before it had one.
pub(crate) async fn wait(
    mut rx: watch::Receiver<Outcome>,
) -> Option<Result<Answer, UpstreamError>> {
    rx.wait_for(Option::is_some).await.ok()?.clone()
}
