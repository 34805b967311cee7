//! Many selectors, compiled for lookups whose cost does not grow with their number: exact
//! names in a hash map, everything else keyed by its literal tail and found by one hash lookup
//! per label boundary of the query name.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use crate::name;
use crate::selector::{Head, Rule, Selector, strip_tail};

/// A fixed seed: std's random one would import WASI randomness into every policy, and the keys
/// come from settings, not from clients.
pub(crate) const HASH_SEED: u64 = 0x7a6f_6e65_6761_7465;

/// The selectors of a [`NameSet`] or [`NameMap`], each tagged with its insertion order.
#[derive(Debug, Clone)]
struct Index {
    exact: HashMap<Box<str>, u32, FixedState>,
    /// Entries by literal tail (`.` for patterns that end in a wildcard label), each list in
    /// insertion order.
    tails: HashMap<Box<str>, Vec<(Head, u32)>, FixedState>,
    /// The first lone `*`.
    all: Option<u32>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            exact: HashMap::with_hasher(FixedState::with_seed(HASH_SEED)),
            tails: HashMap::with_hasher(FixedState::with_seed(HASH_SEED)),
            all: None,
        }
    }
}

impl Index {
    fn insert(&mut self, selector: Selector, order: u32) {
        match selector.into_rule() {
            Rule::Exact(name) => {
                self.exact.entry(name).or_insert(order);
            }
            Rule::All => {
                self.all.get_or_insert(order);
            }
            Rule::Tail { tail, head } => self.tails.entry(tail).or_default().push((head, order)),
        }
    }

    /// The insertion order of entries selecting canonical `name`: the smallest among the exact
    /// names, the lone `*`, and each tail's entries, so the first match overall is among them.
    fn matches<'a>(&'a self, name: &'a str) -> impl Iterator<Item = u32> + 'a {
        let exact = self.exact.get(name).copied();
        let all = self.all.filter(|_| name::is_plain_name(name));
        let tails = (!self.tails.is_empty()).then(|| {
            let suffixes = name::suffix_starts(name).map(|start| &name[start..]);
            suffixes.chain(Some(".")).filter_map(|tail| {
                let entries = self.tails.get(tail)?;
                let prefix = strip_tail(name, tail)?;
                let (_, order) = entries.iter().find(|(head, _)| head.matches(prefix))?;
                Some(*order)
            })
        });
        exact
            .into_iter()
            .chain(all)
            .chain(tails.into_iter().flatten())
    }
}

/// A set of [`Selector`]s: does any of them select a name?
///
/// Exact names cost one hash lookup whatever the set's size; patterns and suffixes one lookup
/// per label of the query name plus a check of the few entries sharing the matching tail.
///
/// ```
/// use zonegate_policy::{NameSet, Selector};
///
/// let set: NameSet = [
///     Selector::name("api.example.com")?,
///     Selector::pattern("*.stripe.com")?,
///     Selector::pattern("**.corp.example")?,
/// ]
/// .into_iter()
/// .collect();
/// assert!(set.contains("api.example.com."));
/// assert!(set.contains("js.stripe.com."));
/// assert!(set.contains("a.b.corp.example."));
/// assert!(!set.contains("stripe.com."));
/// assert!(!set.contains("corp.example."));
/// # Ok::<(), zonegate_policy::SelectorError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct NameSet {
    index: Index,
    len: usize,
}

impl NameSet {
    /// An empty set: it contains no name.
    ///
    /// ```
    /// let set = zonegate_policy::NameSet::new();
    /// assert!(set.is_empty());
    /// assert!(!set.contains("example.com."));
    /// ```
    pub fn new() -> Self {
        NameSet::default()
    }

    /// Add a selector.
    ///
    /// ```
    /// use zonegate_policy::{NameSet, Selector};
    ///
    /// let mut set = NameSet::new();
    /// set.insert(Selector::pattern("*")?);
    /// assert!(set.contains("."));
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn insert(&mut self, selector: Selector) {
        let order = u32::try_from(self.len).unwrap_or(u32::MAX);
        self.index.insert(selector, order);
        self.len += 1;
    }

    /// Whether any selector selects `name` (any case, trailing dot optional).
    ///
    /// ```
    /// use zonegate_policy::{NameSet, Selector};
    ///
    /// let set: NameSet = [Selector::name("api.example.com")?].into_iter().collect();
    /// assert!(set.contains("API.example.com"));
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        let name = name::canonical(name);
        self.index.matches(&name).next().is_some()
    }

    /// How many selectors were inserted.
    ///
    /// ```
    /// use zonegate_policy::{NameSet, Selector};
    ///
    /// let set: NameSet = [Selector::name("a.example")?, Selector::name("a.example")?].into_iter().collect();
    /// assert_eq!(set.len(), 2);
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no selector was inserted.
    ///
    /// ```
    /// assert!(zonegate_policy::NameSet::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl FromIterator<Selector> for NameSet {
    fn from_iter<I: IntoIterator<Item = Selector>>(iter: I) -> Self {
        let mut set = NameSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<Selector> for NameSet {
    fn extend<I: IntoIterator<Item = Selector>>(&mut self, iter: I) {
        for selector in iter {
            self.insert(selector);
        }
    }
}

/// Selectors with a value each: the value of the first inserted selector that selects a name
/// (first match wins, as in a route table). Lookups cost what [`NameSet`] lookups cost.
///
/// ```
/// use zonegate_policy::{NameMap, Selector};
///
/// let mut routes = NameMap::new();
/// routes.insert(Selector::name("db.corp.example")?, "corp-db");
/// routes.insert(Selector::suffix("corp.example")?, "corp");
/// assert_eq!(routes.find("db.corp.example."), Some(&"corp-db"));
/// assert_eq!(routes.find("www.corp.example."), Some(&"corp"));
/// assert_eq!(routes.find("example.com."), None);
/// # Ok::<(), zonegate_policy::SelectorError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NameMap<T> {
    index: Index,
    values: Vec<T>,
}

impl<T> Default for NameMap<T> {
    fn default() -> Self {
        NameMap {
            index: Index::default(),
            values: Vec::new(),
        }
    }
}

impl<T> NameMap<T> {
    /// An empty map.
    ///
    /// ```
    /// let map = zonegate_policy::NameMap::<u8>::new();
    /// assert_eq!(map.find("example.com."), None);
    /// ```
    pub fn new() -> Self {
        NameMap::default()
    }

    /// Add a selector with its value, after every selector already in the map.
    ///
    /// ```
    /// use zonegate_policy::{NameMap, Selector};
    ///
    /// let mut map = NameMap::new();
    /// map.insert(Selector::suffix("example.com")?, 1);
    /// map.insert(Selector::name("www.example.com")?, 2);
    /// assert_eq!(map.find("www.example.com."), Some(&1), "the earlier entry wins");
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn insert(&mut self, selector: Selector, value: T) {
        let order = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.index.insert(selector, order);
        self.values.push(value);
    }

    /// The value of the first inserted selector that selects `name` (any case, trailing dot
    /// optional).
    ///
    /// ```
    /// use zonegate_policy::{NameMap, Selector};
    ///
    /// let mut map = NameMap::new();
    /// map.insert(Selector::pattern("*.example.com")?, "one label");
    /// assert_eq!(map.find("WWW.example.com"), Some(&"one label"));
    /// assert_eq!(map.find("a.b.example.com"), None);
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn find(&self, name: &str) -> Option<&T> {
        let name = name::canonical(name);
        let first = self.index.matches(&name).min()?;
        self.values.get(first as usize)
    }

    /// How many selectors were inserted.
    ///
    /// ```
    /// use zonegate_policy::{NameMap, Selector};
    ///
    /// let map: NameMap<()> = [(Selector::name("a.example")?, ())].into_iter().collect();
    /// assert_eq!(map.len(), 1);
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no selector was inserted.
    ///
    /// ```
    /// assert!(zonegate_policy::NameMap::<()>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl<T> FromIterator<(Selector, T)> for NameMap<T> {
    fn from_iter<I: IntoIterator<Item = (Selector, T)>>(iter: I) -> Self {
        let mut map = NameMap::new();
        for (selector, value) in iter {
            map.insert(selector, value);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thousands of entries of every kind, several sharing tails: lookups find exactly the
    /// entries that match, and a map returns the earliest.
    #[test]
    fn thousands_of_entries() {
        let mut map = NameMap::new();
        for i in 0..5_000 {
            let selector = match i % 5 {
                0 => Selector::name(&format!("api{i}.example.com")),
                1 => Selector::pattern(&format!("**.cdn{i}.example.net")),
                2 => Selector::pattern(&format!("web-*.team{i}.example.org")),
                3 => Selector::pattern(&format!("*x{i}.example.io")),
                _ => Selector::suffix(&format!("corp{i}.example")),
            };
            map.insert(selector.expect("valid"), i);
        }
        // Later entries that also match some names: never chosen over the earlier ones.
        map.insert(Selector::suffix("example.com").expect("valid"), 9_000);
        map.insert(Selector::pattern("*").expect("valid"), 9_001);
        let cases = [
            ("api0.example.com.", Some(0)),
            ("api4995.example.com.", Some(4995)),
            ("api1.example.com.", Some(9_000)),
            ("a.b.cdn4996.example.net.", Some(4996)),
            ("cdn4996.example.net.", Some(9_001)),
            ("web-1.team4997.example.org.", Some(4997)),
            ("web.team4997.example.org.", Some(9_001)),
            ("x4998.example.io.", Some(4998)),
            ("abcx4998.example.io.", Some(4998)),
            ("a.x4998.example.io.", Some(9_001)),
            ("corp4999.example.", Some(4999)),
            ("a.b.corp4999.example.", Some(4999)),
            ("bad name.corp4999.example.", Some(4999)),
            ("bad name.example.", None),
        ];
        for (name, want) in cases {
            assert_eq!(map.find(name).copied(), want, "{name}");
        }
        let set: NameSet = (0..5_000)
            .map(|i| Selector::name(&format!("n{i}.example")).expect("valid"))
            .collect();
        assert_eq!(set.len(), 5_000);
        assert!(set.contains("n4999.example.") && !set.contains("n5000.example."));
    }
}
