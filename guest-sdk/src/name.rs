//! Names in the one form every matcher compares: ASCII lowercase and absolute (trailing dot),
//! and the validation of the names and patterns policies are configured with.

use std::borrow::Cow;
use std::fmt;

/// Longest name or pattern accepted, as Cilium's `MaxFQDNLength`.
const MAX_LEN: usize = 255;

/// The characters `*` stands for, and the only ones a label may hold in names and patterns.
pub(crate) fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `name` lowercased with a trailing dot; the empty name is the root. Borrows when the name
/// is already in that form, as the host always sends it.
pub(crate) fn canonical(name: &str) -> Cow<'_, str> {
    if name.ends_with('.') && !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(name);
    }
    let mut owned = name.to_ascii_lowercase();
    if !owned.ends_with('.') {
        owned.push('.');
    }
    Cow::Owned(owned)
}

/// Whether every label of a canonical name is non-empty and made of label bytes (the root
/// counts): what a lone `*` pattern accepts.
pub(crate) fn is_plain_name(name: &str) -> bool {
    name == "." || all_plain_labels(name)
}

/// Whether `labels` (canonical, ending in a dot, possibly empty) splits into non-empty labels of
/// label bytes only.
pub(crate) fn all_plain_labels(labels: &str) -> bool {
    labels.strip_suffix('.').is_some_and(|body| {
        body.split('.')
            .all(|label| !label.is_empty() && label.bytes().all(is_label_byte))
    })
}

/// The byte offsets where the label-boundary suffixes of a canonical name start, longest
/// first: `www.example.com.` gives 0, 4 and 12. The root itself is not included.
pub(crate) fn suffix_starts(name: &str) -> impl Iterator<Item = usize> + '_ {
    let body = if name == "." { "" } else { name };
    let after_dots = body
        .bytes()
        .enumerate()
        .filter(|&(_, b)| b == b'.')
        .map(|(i, _)| i + 1);
    std::iter::once(0)
        .chain(after_dots)
        .take_while(move |&start| start < body.len())
}

/// Which kind of configured entry was invalid, named as settings spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Name,
    Pattern,
    Suffix,
    Domain,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::Name => "matchName",
            EntryKind::Pattern => "matchPattern",
            EntryKind::Suffix => "suffix",
            EntryKind::Domain => "domain",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reason {
    Empty,
    TooLong(usize),
    Character(char),
    EmptyLabel,
    Wildcard,
}

/// A name, pattern or domain that cannot be matched against; its message names the input and
/// the reason.
///
/// ```
/// use zonegate_policy::Selector;
///
/// let err = Selector::pattern("api/*.example.com").unwrap_err();
/// assert_eq!(err.input(), "api/*.example.com");
/// assert!(err.to_string().contains("'/' is not allowed"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    kind: EntryKind,
    input: String,
    reason: Reason,
}

impl SelectorError {
    /// The input as it was given.
    ///
    /// ```
    /// let err = zonegate_policy::Selector::name("a..b").unwrap_err();
    /// assert_eq!(err.input(), "a..b");
    /// ```
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: ", self.kind.as_str(), self.input)?;
        match &self.reason {
            Reason::Empty => f.write_str("it is empty"),
            Reason::TooLong(len) => write!(f, "{len} characters, more than {MAX_LEN}"),
            Reason::Character(c) => {
                let allowed = match self.kind {
                    EntryKind::Pattern => "a-z, A-Z, 0-9, '-', '_', '.' and '*'",
                    _ => "a-z, A-Z, 0-9, '-', '_' and '.'",
                };
                write!(f, "{c:?} is not allowed (only {allowed})")
            }
            Reason::EmptyLabel => f.write_str("empty label (leading dot or two dots in a row)"),
            Reason::Wildcard => f.write_str("'*' is not allowed here (use a matchPattern)"),
        }
    }
}

impl std::error::Error for SelectorError {}

/// Check a configured name or pattern and return it in canonical form: lowercase, with a
/// trailing dot. Rules are Cilium's CRD validation: labels of `[-a-zA-Z0-9_]` (plus `*` in
/// patterns), at most one dot between labels, at most 255 characters.
pub(crate) fn validate(input: &str, kind: EntryKind) -> Result<String, SelectorError> {
    let error = |reason| SelectorError {
        kind,
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(error(Reason::Empty));
    }
    if input.len() > MAX_LEN {
        return Err(error(Reason::TooLong(input.len())));
    }
    if let Some(c) = input
        .chars()
        .find(|&c| !(c.is_ascii() && is_pattern_byte(c as u8)))
    {
        return Err(error(Reason::Character(c)));
    }
    if kind != EntryKind::Pattern && input.contains('*') {
        return Err(error(Reason::Wildcard));
    }
    let body = input.strip_suffix('.').unwrap_or(input);
    if body.split('.').any(str::is_empty) {
        return Err(error(Reason::EmptyLabel));
    }
    Ok(format!("{}.", body.to_ascii_lowercase()))
}

fn is_pattern_byte(b: u8) -> bool {
    is_label_byte(b) || b == b'.' || b == b'*'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_lowercases_and_adds_the_dot() {
        let cases = [
            ("www.example.com.", "www.example.com."),
            ("WWW.Example.COM", "www.example.com."),
            ("example.com", "example.com."),
            ("", "."),
            (".", "."),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input), want, "{input:?}");
        }
        assert!(matches!(canonical("a.b."), Cow::Borrowed(_)));
    }

    #[test]
    fn suffix_starts_walk_label_boundaries() {
        let name = "www.example.com.";
        let got: Vec<_> = suffix_starts(name).map(|i| &name[i..]).collect();
        assert_eq!(got, vec!["www.example.com.", "example.com.", "com."]);
        assert_eq!(suffix_starts(".").count(), 0);
    }

    #[test]
    fn plain_names() {
        let cases = [
            (".", true),
            ("a-b_c.d0.", true),
            ("a b.", false),
            ("a\\.b.c.", false),
            ("a..b.", false),
            ("", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_plain_name(name), want, "{name:?}");
        }
    }

    #[test]
    fn validation_table() {
        use EntryKind::*;
        let cases: &[(&str, EntryKind, Result<&str, &str>)] = &[
            ("API.Example.com", Name, Ok("api.example.com.")),
            ("api.example.com.", Name, Ok("api.example.com.")),
            ("_srv._tcp.example", Name, Ok("_srv._tcp.example.")),
            ("*.example.com", Pattern, Ok("*.example.com.")),
            ("**.Example.com", Pattern, Ok("**.example.com.")),
            ("*.example.com", Name, Err("'*' is not allowed here")),
            ("*.example.com", Domain, Err("'*' is not allowed here")),
            ("", Pattern, Err("it is empty")),
            (".", Name, Err("empty label")),
            ("a..b", Suffix, Err("empty label")),
            (".a.b", Name, Err("empty label")),
            (
                "a/b",
                Pattern,
                Err("'/' is not allowed (only a-z, A-Z, 0-9, '-', '_', '.' and '*')"),
            ),
            (" a.b", Pattern, Err("' ' is not allowed")),
            (
                "a.b ",
                Name,
                Err("' ' is not allowed (only a-z, A-Z, 0-9, '-', '_' and '.')"),
            ),
            ("bücher.de", Domain, Err("'ü' is not allowed")),
            ("[a-z].com", Pattern, Err("'[' is not allowed")),
        ];
        for (input, kind, want) in cases {
            let got = validate(input, *kind).map_err(|e| e.to_string());
            match (want, &got) {
                (Ok(want), Ok(got)) => assert_eq!(got, want, "{input:?}"),
                (Err(want), Err(got)) => assert!(got.contains(want), "{input:?}: {got}"),
                _ => panic!("{input:?} as {kind:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn validation_limits_length() {
        let long = format!("{}.com", "a.".repeat(130));
        let err = validate(&long, EntryKind::Name).unwrap_err();
        assert!(err.to_string().contains("more than 255"), "{err}");
        let fits = format!("{}.com", "a".repeat(251));
        assert!(validate(&fits, EntryKind::Name).is_ok());
    }
}
