//! Many selectors, compiled for lookups whose cost does not grow with their number: exact
//! names in a hash map, everything else keyed by its literal tail and found by one hash lookup
//! per label boundary of the query name.

use std::collections::HashMap;
use std::ops::ControlFlow;

use foldhash::fast::FixedState;

use crate::name;
use crate::selector::{Head, Rule, Selector};

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
    /// Lengths of the exact names and of the tails: a name or suffix of any other length
    /// cannot be in the map, so it is not hashed (most lookups then hash once or never).
    exact_lens: Lengths,
    tail_lens: Lengths,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            exact: HashMap::with_hasher(FixedState::with_seed(HASH_SEED)),
            tails: HashMap::with_hasher(FixedState::with_seed(HASH_SEED)),
            all: None,
            exact_lens: Lengths::default(),
            tail_lens: Lengths::default(),
        }
    }
}

/// A set of string lengths in bytes. Names are at most 255 bytes (256 with the added trailing
/// dot); anything longer is reported present, so the map decides.
#[derive(Debug, Clone, Default)]
struct Lengths([u64; 5]);

impl Lengths {
    fn insert(&mut self, len: usize) {
        if let Some(word) = self.0.get_mut(len / 64) {
            *word |= 1 << (len % 64);
        }
    }

    #[inline]
    fn contains(&self, len: usize) -> bool {
        self.0
            .get(len / 64)
            .is_none_or(|word| word & (1 << (len % 64)) != 0)
    }
}

impl Index {
    fn insert(&mut self, selector: Selector, order: u32) {
        match selector.into_rule() {
            Rule::Exact(name) => {
                self.exact_lens.insert(name.len());
                self.exact.entry(name).or_insert(order);
            }
            Rule::All => {
                self.all.get_or_insert(order);
            }
            Rule::Tail { tail, head } => {
                self.tail_lens.insert(tail.len());
                self.tails.entry(tail).or_default().push((head, order));
            }
        }
    }

    /// Calls `visit` with the insertion order of each entry selecting canonical `name` (the
    /// exact name, the lone `*`, and per tail the first entry whose head matches), until it
    /// breaks. The first match overall is the smallest order visited.
    fn visit(&self, name: &str, mut visit: impl FnMut(u32) -> ControlFlow<()>) {
        if self.exact_lens.contains(name.len())
            && let Some(&order) = self.exact.get(name)
            && visit(order).is_break()
        {
            return;
        }
        if let Some(order) = self.all
            && name::is_plain_name(name)
            && visit(order).is_break()
        {
            return;
        }
        if self.tails.is_empty() {
            return;
        }
        // Each label-boundary suffix of the name, longest first, then the root.
        let body = if name == "." { "" } else { name };
        let mut start = 0;
        while start < body.len() {
            let tail = &body[start..];
            // The length check first: most suffixes stop there, without the call.
            if self.tail_lens.contains(tail.len())
                && let Some(order) = self.tail_match(&body[..start], tail)
                && visit(order).is_break()
            {
                return;
            }
            match body.as_bytes()[start..].iter().position(|&b| b == b'.') {
                Some(dot) => start += dot + 1,
                None => break,
            }
        }
        if self.tail_lens.contains(1)
            && let Some(order) = self.tail_match(body, ".")
        {
            let _ = visit(order);
        }
    }

    /// The first entry under `tail` whose head accepts `prefix`, the labels before it (each
    /// followed by its dot; empty when the name is the tail).
    fn tail_match(&self, prefix: &str, tail: &str) -> Option<u32> {
        let entries = self.tails.get(tail)?;
        let (_, order) = entries.iter().find(|(head, _)| head.matches(prefix))?;
        Some(*order)
    }

    /// Whether any entry selects canonical `name`.
    fn any(&self, name: &str) -> bool {
        let mut found = false;
        self.visit(name, |_| {
            found = true;
            ControlFlow::Break(())
        });
        found
    }

    /// The first entry (in insertion order) selecting canonical `name`.
    fn first(&self, name: &str) -> Option<u32> {
        let mut first: Option<u32> = None;
        self.visit(name, |order| {
            first = Some(first.map_or(order, |f| f.min(order)));
            ControlFlow::Continue(())
        });
        first
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
        self.index.any(&name::canonical(name))
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
        let first = self.index.first(&name::canonical(name))?;
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

    #[test]
    fn lengths_hold_what_was_inserted_and_report_long_ones_present() {
        let mut l = Lengths::default();
        for len in [0, 1, 63, 64, 255, 256] {
            assert!(!l.contains(len), "{len}");
            l.insert(len);
            assert!(l.contains(len), "{len}");
        }
        assert!(!l.contains(2) && !l.contains(65) && !l.contains(254));
        l.insert(400);
        assert!(
            l.contains(320) && l.contains(10_000),
            "beyond the bitmap: ask the map"
        );
    }

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
