//! Per-thread memo of decisions that carried a cache hint (`cache-for`), keyed by
//! (policy load, client, view, name, qtype). Bounded; lookups do not allocate.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{PolicyQuery, Verdict};

/// Entries per thread; when full, expired entries go, then everything.
const CAPACITY: usize = 4096;
/// Longest memoization honoured, whatever the guest asks.
const MAX_SECS: u32 = 300;

struct Entry {
    id: u64,
    client: IpAddr,
    qtype: u16,
    view: Box<str>,
    name: Box<str>,
    verdict: Verdict,
    expires: Instant,
}

#[derive(Default)]
pub(crate) struct Memo {
    hasher: RandomState,
    entries: HashMap<u64, Entry>,
}

impl Memo {
    fn key(&self, id: u64, q: &PolicyQuery<'_>) -> u64 {
        self.hasher
            .hash_one((id, q.client, q.qtype, q.view, q.name))
    }

    pub(crate) fn get(&mut self, id: u64, q: &PolicyQuery<'_>) -> Option<Verdict> {
        if self.entries.is_empty() {
            return None;
        }
        let key = self.key(id, q);
        let e = self.entries.get(&key)?;
        let same = e.id == id
            && e.client == q.client
            && e.qtype == q.qtype
            && &*e.view == q.view
            && &*e.name == q.name;
        if !same {
            return None;
        }
        if Instant::now() >= e.expires {
            self.entries.remove(&key);
            return None;
        }
        Some(e.verdict.clone())
    }

    pub(crate) fn insert(&mut self, id: u64, q: &PolicyQuery<'_>, v: &Verdict, secs: u32) {
        let now = Instant::now();
        if self.entries.len() >= CAPACITY {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= CAPACITY {
                self.entries.clear();
            }
        }
        let entry = Entry {
            id,
            client: q.client,
            qtype: q.qtype,
            view: q.view.into(),
            name: q.name.into(),
            verdict: v.clone(),
            expires: now + Duration::from_secs(u64::from(secs.min(MAX_SECS))),
        };
        let key = self.key(id, q);
        self.entries.insert(key, entry);
    }

    /// Keeps entries whose policy load is still alive.
    pub(crate) fn retain(&mut self, mut alive: impl FnMut(u64) -> bool) {
        self.entries.retain(|_, e| alive(e.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DenyKind, Transport};

    fn q<'a>(name: &'a str, client: &str) -> PolicyQuery<'a> {
        PolicyQuery {
            name,
            qtype: 1,
            qclass: 1,
            client: client.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            view: "kube",
            zone: ".",
            transport: Transport::Udp,
        }
    }

    #[test]
    fn hits_only_the_same_key() {
        let mut m = Memo::default();
        let deny = Verdict::Deny(DenyKind::NxDomain);
        m.insert(1, &q("a.example.", "10.0.0.1"), &deny, 30);
        let cases = [
            (1, q("a.example.", "10.0.0.1"), Some(deny.clone())),
            (2, q("a.example.", "10.0.0.1"), None),
            (1, q("b.example.", "10.0.0.1"), None),
            (1, q("a.example.", "10.0.0.2"), None),
        ];
        for (id, query, want) in cases {
            assert_eq!(m.get(id, &query), want, "{id} {query:?}");
        }
        m.retain(|id| id != 1);
        assert_eq!(m.get(1, &q("a.example.", "10.0.0.1")), None);
    }

    #[test]
    fn stays_bounded() {
        let mut m = Memo::default();
        let names: Vec<String> = (0..CAPACITY + 10).map(|i| format!("n{i}.")).collect();
        for n in &names {
            m.insert(1, &q(n, "10.0.0.1"), &Verdict::Allow, 30);
        }
        assert!(m.entries.len() <= CAPACITY);
    }
}
