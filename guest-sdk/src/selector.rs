//! One FQDN selector with Cilium 1.19 semantics (`matchName`, `matchPattern`), plus `suffix`
//! (a domain and all its subdomains). Sets of them are in `name_set`.

use std::fmt;

use crate::name::{self, EntryKind, SelectorError};

/// One configured name selector, compiled.
///
/// * [`Selector::name`] — Cilium `matchName`: exactly this name, case-insensitive, trailing dot
///   implied.
/// * [`Selector::pattern`] — Cilium `matchPattern`: `*` stands for zero or more of
///   `[-a-zA-Z0-9_]` within one label (never a dot); a lone `*` matches every name, the root
///   included; a leading `**.` stands for one or more labels, never the apex.
/// * [`Selector::suffix`] — a domain and all its subdomains (blocklists, routing).
///
/// Match many at once with [`NameSet`](crate::NameSet) or [`NameMap`](crate::NameMap).
///
/// ```
/// use zonegate_policy::Selector;
///
/// let any_depth = Selector::pattern("**.cilium.io")?;
/// assert!(any_depth.matches("a.b.cilium.io."));
/// assert!(!any_depth.matches("cilium.io."));
/// # Ok::<(), zonegate_policy::SelectorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    kind: EntryKind,
    /// The canonical text, for messages.
    text: Box<str>,
    rule: Rule,
}

/// What a selector compiles to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Exactly this canonical name.
    Exact(Box<str>),
    /// Every name whose labels are all plain, and the root (a lone `*`).
    All,
    /// A fixed literal tail, checked by lookup, and what must come before it.
    Tail { tail: Box<str>, head: Head },
}

/// What must come before a selector's literal tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// Nothing or anything: the tail is a domain and the name it or a subdomain (`suffix`).
    Any,
    /// Exactly these labels, left to right (a pattern without `**.`).
    Labels(Box<[Glob]>),
    /// One or more plain labels, then these (a pattern with a leading `**.`).
    Deeper(Box<[Glob]>),
}

/// One label of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Glob {
    /// A lone `*`: any label (the common `*.example.com`), checked without comparisons.
    Star,
    /// Literal parts, with `*` between each two.
    Parts(Box<[Box<str>]>),
}

impl Selector {
    /// Cilium `matchName`: exactly `name`, case-insensitive, trailing dot implied.
    ///
    /// ```
    /// use zonegate_policy::Selector;
    ///
    /// let name = Selector::name("API.example.com")?;
    /// assert!(name.matches("api.example.com."));
    /// assert!(!name.matches("www.api.example.com."));
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn name(name: &str) -> Result<Selector, SelectorError> {
        let text = name::validate(name, EntryKind::Name)?;
        Ok(Selector::exact(EntryKind::Name, text))
    }

    /// Cilium `matchPattern`: see the type's documentation for the wildcards.
    ///
    /// ```
    /// use zonegate_policy::Selector;
    ///
    /// let pattern = Selector::pattern("sub*.cilium.io")?;
    /// assert!(pattern.matches("sub.cilium.io."));
    /// assert!(pattern.matches("subdomain.cilium.io."));
    /// assert!(!pattern.matches("blog.sub.cilium.io."));
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn pattern(pattern: &str) -> Result<Selector, SelectorError> {
        let text = name::validate(pattern, EntryKind::Pattern)?;
        if text
            .strip_suffix('.')
            .is_some_and(|stars| stars.bytes().all(|b| b == b'*'))
        {
            return Ok(Selector {
                kind: EntryKind::Pattern,
                text: text.into(),
                rule: Rule::All,
            });
        }
        if !text.contains('*') {
            return Ok(Selector::exact(EntryKind::Pattern, text));
        }
        let rule = compile_pattern(&text);
        Ok(Selector {
            kind: EntryKind::Pattern,
            text: text.into(),
            rule,
        })
    }

    /// `domain` and every name below it.
    ///
    /// ```
    /// use zonegate_policy::Selector;
    ///
    /// let suffix = Selector::suffix("corp.example")?;
    /// assert!(suffix.matches("corp.example."));
    /// assert!(suffix.matches("db.eu.corp.example."));
    /// assert!(!suffix.matches("notcorp.example."));
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn suffix(domain: &str) -> Result<Selector, SelectorError> {
        let text = name::validate(domain, EntryKind::Suffix)?;
        let rule = Rule::Tail {
            tail: text.clone().into(),
            head: Head::Any,
        };
        Ok(Selector {
            kind: EntryKind::Suffix,
            text: text.into(),
            rule,
        })
    }

    fn exact(kind: EntryKind, text: String) -> Selector {
        let text: Box<str> = text.into();
        Selector {
            kind,
            rule: Rule::Exact(text.clone()),
            text,
        }
    }

    /// Whether `name` (any case, trailing dot optional) is selected.
    ///
    /// ```
    /// use zonegate_policy::Selector;
    ///
    /// let all = Selector::pattern("*")?;
    /// assert!(all.matches("."));
    /// assert!(all.matches("Www.Example.Com"));
    /// # Ok::<(), zonegate_policy::SelectorError>(())
    /// ```
    pub fn matches(&self, name: &str) -> bool {
        let name = name::canonical(name);
        match &self.rule {
            Rule::Exact(exact) => **exact == *name,
            Rule::All => name::is_plain_name(&name),
            Rule::Tail { tail, head } => {
                strip_tail(&name, tail).is_some_and(|prefix| head.matches(prefix))
            }
        }
    }

    pub(crate) fn into_rule(self) -> Rule {
        self.rule
    }
}

impl fmt::Display for Selector {
    /// The settings spelling, canonical: `matchPattern: *.example.com.`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match self.kind {
            EntryKind::Name => "matchName",
            EntryKind::Pattern => "matchPattern",
            EntryKind::Suffix | EntryKind::Domain => "suffix",
        };
        write!(f, "{key}: {}", self.text)
    }
}

/// Split a validated, canonical pattern with at least one `*` (other than a lone one) into its
/// literal tail and what must precede it.
fn compile_pattern(text: &str) -> Rule {
    let stars = text.bytes().take_while(|&b| b == b'*').count();
    let (deeper, rest) = match text.as_bytes().get(stars) {
        Some(b'.') if stars >= 2 => (true, &text[stars + 1..]),
        _ => (false, text),
    };
    let labels: Vec<&str> = rest.strip_suffix('.').unwrap_or(rest).split('.').collect();
    let literal = labels
        .iter()
        .rev()
        .take_while(|label| !label.contains('*'))
        .count();
    let split = labels.len() - literal;
    let tail = match labels[split..].join(".") {
        joined if joined.is_empty() => ".".to_owned(),
        joined => joined + ".",
    };
    let globs: Box<[Glob]> = labels[..split]
        .iter()
        .map(|label| Glob::new(label))
        .collect();
    let head = if deeper {
        Head::Deeper(globs)
    } else {
        Head::Labels(globs)
    };
    Rule::Tail {
        tail: tail.into(),
        head,
    }
}

impl Head {
    /// Whether `prefix` — the part of a canonical name before the tail: empty, or labels each
    /// followed by a dot — is what this head accepts.
    pub(crate) fn matches(&self, prefix: &str) -> bool {
        let (globs, deeper) = match self {
            Head::Any => return true,
            Head::Labels(globs) => (globs, false),
            Head::Deeper(globs) => (globs, true),
        };
        let body = prefix.strip_suffix('.').unwrap_or("");
        match (&**globs, deeper) {
            // One label of any plain bytes (`*.example.com`): one pass, as '.' is not one.
            ([Glob::Star], false) => {
                return !body.is_empty() && body.bytes().all(name::is_label_byte);
            }
            // One label (`api-*.example.com`): no splitting.
            ([glob], false) => {
                return !body.is_empty() && !body.contains('.') && glob.matches(body);
            }
            _ => {}
        }
        let mut labels = (!body.is_empty())
            .then(|| body.split('.'))
            .into_iter()
            .flatten();
        for glob in globs.iter().rev() {
            match labels.next_back() {
                Some(label) if glob.matches(label) => {}
                _ => return false,
            }
        }
        if !deeper {
            return labels.next().is_none();
        }
        let mut rest = labels.peekable();
        rest.peek().is_some()
            && rest.all(|label| !label.is_empty() && label.bytes().all(name::is_label_byte))
    }
}

/// The part of canonical `name` before `tail`, if `tail` is a label-boundary suffix of it
/// (the root tail `.` is a suffix of every name).
pub(crate) fn strip_tail<'a>(name: &'a str, tail: &str) -> Option<&'a str> {
    if tail == "." {
        return Some(if name == "." { "" } else { name });
    }
    let prefix = name.strip_suffix(tail)?;
    (prefix.is_empty() || prefix.ends_with('.')).then_some(prefix)
}

impl Glob {
    fn new(label: &str) -> Glob {
        match label {
            "*" => Glob::Star,
            _ => Glob::Parts(label.split('*').map(Box::from).collect()),
        }
    }

    /// Whether one label of a canonical name matches; `*` takes only label bytes.
    pub(crate) fn matches(&self, label: &str) -> bool {
        let parts = match self {
            Glob::Star => return label.bytes().all(name::is_label_byte),
            Glob::Parts(parts) => parts,
        };
        let [first, middle @ .., last] = &parts[..] else {
            return parts.first().is_some_and(|literal| **literal == *label);
        };
        if !label.bytes().all(name::is_label_byte) || label.len() < first.len() + last.len() {
            return false;
        }
        let Some(mut rest) = label
            .strip_prefix(&**first)
            .and_then(|r| r.strip_suffix(&**last))
        else {
            return false;
        };
        for part in middle.iter().filter(|part| !part.is_empty()) {
            match rest.find(&**part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
