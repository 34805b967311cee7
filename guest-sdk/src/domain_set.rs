//! Blocklist-sized sets of "this domain and everything below it", stored compactly: all domains
//! in one string, the hash table holding only offsets into it. A policy's memory is capped
//! (16 MiB by default), so 100,000 entries must stay a few MiB.

use std::fmt;
use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use crate::name::{self, EntryKind, SelectorError};
use crate::name_set::HASH_SEED;

/// A set of domains, each standing for itself and all its subdomains.
///
/// Lookups cost one hash probe per label of the query name, whatever the set's size.
///
/// ```
/// use zonegate_policy::DomainSet;
///
/// let mut blocked = DomainSet::new();
/// blocked.insert("ads.example.com")?;
/// assert!(blocked.contains("ads.example.com."));
/// assert!(blocked.contains("x.y.ads.example.com."));
/// assert!(!blocked.contains("example.com."));
/// assert!(!blocked.contains("bads.example.com."));
/// # Ok::<(), zonegate_policy::SelectorError>(())
/// ```
#[derive(Clone)]
pub struct DomainSet {
    /// Every domain, canonical (with its trailing dot), one after the other.
    text: String,
    /// Byte ranges of `text`, one per domain.
    table: HashTable<(usize, usize)>,
    hasher: FixedState,
}

impl Default for DomainSet {
    fn default() -> Self {
        DomainSet {
            text: String::new(),
            table: HashTable::new(),
            hasher: FixedState::with_seed(HASH_SEED),
        }
    }
}

impl fmt::Debug for DomainSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainSet")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl DomainSet {
    /// An empty set.
    ///
    /// ```
    /// assert!(zonegate_policy::DomainSet::new().is_empty());
    /// ```
    pub fn new() -> Self {
        DomainSet::default()
    }

    /// An empty set with room for `domains` domains totalling about `bytes` bytes, to spare
    /// regrowing while loading a list whose size is known.
    ///
    /// ```
    /// let set = zonegate_policy::DomainSet::with_capacity(100_000, 2_500_000);
    /// assert!(set.is_empty());
    /// ```
    pub fn with_capacity(domains: usize, bytes: usize) -> Self {
        let mut set = DomainSet::new();
        set.text.reserve(bytes);
        set.table.reserve(domains, |_| 0);
        set
    }

    /// Add `domain` (any case, trailing dot optional); returns whether it was new. Invalid
    /// domains (characters outside `[-a-zA-Z0-9_.]`, empty labels, `*`) are rejected.
    ///
    /// ```
    /// use zonegate_policy::DomainSet;
    ///
    /// let mut set = DomainSet::new();
    /// assert_eq!(set.insert("Tracker.example"), Ok(true));
    /// assert_eq!(set.insert("tracker.example."), Ok(false));
    /// assert!(set.insert("*.tracker.example").is_err());
    /// ```
    pub fn insert(&mut self, domain: &str) -> Result<bool, SelectorError> {
        let domain = name::validate(domain, EntryKind::Domain)?;
        let hash = self.hasher.hash_one(domain.as_str());
        let text = &self.text;
        if self
            .table
            .find(hash, |&(start, end)| text[start..end] == *domain)
            .is_some()
        {
            return Ok(false);
        }
        let start = self.text.len();
        self.text.push_str(&domain);
        let (text, hasher) = (&self.text, &self.hasher);
        let range = (start, self.text.len());
        self.table.insert_unique(hash, range, |&(start, end)| {
            hasher.hash_one(&text[start..end])
        });
        Ok(true)
    }

    /// Whether `name` (any case, trailing dot optional) is one of the domains or below one.
    ///
    /// ```
    /// use zonegate_policy::DomainSet;
    ///
    /// let mut set = DomainSet::new();
    /// set.insert("example.org")?;
    /// assert!(set.contains("WWW.Example.ORG"));
    /// assert!(!set.contains("."));
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        if self.table.is_empty() {
            return false;
        }
        let name = name::canonical(name);
        name::suffix_starts(&name).any(|start| self.contains_exact(&name[start..]))
    }

    fn contains_exact(&self, domain: &str) -> bool {
        let hash = self.hasher.hash_one(domain);
        self.table
            .find(hash, |&(start, end)| self.text[start..end] == *domain)
            .is_some()
    }

    /// How many distinct domains the set holds.
    ///
    /// ```
    /// use zonegate_policy::DomainSet;
    ///
    /// let mut set = DomainSet::new();
    /// set.insert("a.example")?;
    /// set.insert("A.example.")?;
    /// assert_eq!(set.len(), 1);
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the set is empty.
    ///
    /// ```
    /// assert!(zonegate_policy::DomainSet::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_and_subdomains_table() {
        let mut set = DomainSet::new();
        for domain in ["ads.example.com", "tracker.net.", "UPPER.example"] {
            set.insert(domain).expect("valid domain");
        }
        let cases = [
            ("ads.example.com.", true),
            ("ads.example.com", true),
            ("a.b.c.ads.example.com.", true),
            ("ADS.Example.Com.", true),
            ("tracker.net.", true),
            ("cdn.tracker.net.", true),
            ("upper.example.", true),
            ("example.com.", false),
            ("com.", false),
            ("bads.example.com.", false),
            ("ads.example.com.evil.", false),
            ("net.", false),
            (".", false),
            ("", false),
        ];
        for (name, want) in cases {
            assert_eq!(set.contains(name), want, "{name:?}");
        }
    }

    #[test]
    fn many_domains_stay_exact() {
        let mut set = DomainSet::with_capacity(10_000, 200_000);
        for i in 0..10_000 {
            assert_eq!(set.insert(&format!("d{i}.example")), Ok(true));
        }
        assert_eq!(set.len(), 10_000);
        for i in (0..10_000).step_by(97) {
            assert!(set.contains(&format!("www.d{i}.example.")), "d{i}");
            assert!(!set.contains(&format!("d{i}x.example.")), "d{i}x");
        }
        assert!(!set.contains("example."));
    }

    #[test]
    fn rejects_invalid_domains_with_the_reason() {
        let mut set = DomainSet::new();
        let err = set.insert("ads example.com").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid domain "ads example.com": ' ' is not allowed (only a-z, A-Z, 0-9, '-', '_' and '.')"#
        );
        assert!(set.is_empty());
    }
}
