//! The Cilium 1.19 FQDN table (REFERENCE.md) row by row, then every pattern shape checked
//! against an independent backtracking matcher written from Cilium's regex translation.

use super::*;
use crate::{NameMap, NameSet};

fn name(s: &str) -> Selector {
    Selector::name(s).unwrap_or_else(|e| panic!("{e}"))
}

fn pattern(s: &str) -> Selector {
    Selector::pattern(s).unwrap_or_else(|e| panic!("{e}"))
}

/// Each row: selector, names it matches, names it does not.
fn cilium_table() -> Vec<(Selector, Vec<&'static str>, Vec<&'static str>)> {
    vec![
        (
            name("api.example.com"),
            vec!["api.example.com.", "api.example.com", "API.Example.COM."],
            vec![
                "www.api.example.com.",
                "example.com.",
                "api.example.com.evil.",
                "api-example.com.",
                ".",
            ],
        ),
        (
            pattern("*"),
            vec![
                ".",
                "com.",
                "www.cilium.io.",
                "a.b.c.d.e.",
                "_srv._tcp.x-y.example.",
            ],
            vec![],
        ),
        (
            pattern("*.cilium.io"),
            vec!["www.cilium.io.", "WWW.cilium.io", "_x.cilium.io."],
            vec![
                "cilium.io.",
                "a.b.cilium.io.",
                "www.cilium.io.evil.",
                "wwwcilium.io.",
            ],
        ),
        (
            pattern("*cilium.io"),
            vec!["cilium.io.", "subcilium.io."],
            vec!["www.cilium.io.", "cilium.io.x.", "io."],
        ),
        (
            pattern("sub*.cilium.io"),
            vec!["sub.cilium.io.", "subdomain.cilium.io."],
            vec![
                "blog.sub.cilium.io.",
                "su.cilium.io.",
                "asub.cilium.io.",
                "cilium.io.",
            ],
        ),
        (
            pattern("**.cilium.io"),
            vec!["app.cilium.io.", "a.b.cilium.io.", "x.y.z.cilium.io."],
            vec!["cilium.io.", "io.", "acilium.io.", "."],
        ),
    ]
}

#[test]
fn cilium_reference_table_single_selector() {
    for (selector, matches, misses) in cilium_table() {
        for name in matches {
            assert!(selector.matches(name), "{selector} should match {name:?}");
        }
        for name in misses {
            assert!(
                !selector.matches(name),
                "{selector} should not match {name:?}"
            );
        }
    }
}

#[test]
fn cilium_reference_table_in_sets() {
    for (selector, matches, misses) in cilium_table() {
        // Alone, and among unrelated entries of every kind, so the index paths are exercised.
        let noise = [
            "*.other.io",
            "**.cilium.org",
            "x*.io",
            "io.example",
            "*",
            "sub",
        ];
        for with_noise in [false, true] {
            let mut set = NameSet::new();
            let mut map = NameMap::new();
            if with_noise {
                for n in noise.iter().filter(|n| **n != "*") {
                    set.insert(pattern(n));
                    map.insert(pattern(n), "noise");
                }
            }
            set.insert(selector.clone());
            map.insert(selector.clone(), "row");
            for name in &matches {
                assert!(
                    set.contains(name),
                    "set with {selector} should contain {name:?}"
                );
                assert!(
                    map.find(name).is_some(),
                    "map with {selector} should find {name:?}"
                );
            }
            for name in misses.iter().filter(|_| !with_noise) {
                assert!(
                    !set.contains(name),
                    "set with {selector} should not contain {name:?}"
                );
                assert_eq!(map.find(name), None, "map with {selector}: {name:?}");
            }
        }
    }
}

#[test]
fn pattern_edge_cases() {
    let cases: &[(&str, &str, bool)] = &[
        // Runs of stars act as one; only a leading run followed by a dot means "any depth".
        ("**", "a.b.c.", true),
        ("**.", ".", true),
        ("***.cilium.io", "a.b.cilium.io.", true),
        ("***.cilium.io", "cilium.io.", false),
        ("**cilium.io", "subcilium.io.", true),
        ("**cilium.io", "a.cilium.io.", false),
        ("a.**.io", "a.b.io.", true),
        ("a.**.io", "a.b.c.io.", false),
        // `*` is within one label and never a dot; it may be empty.
        ("a*b.io", "ab.io.", true),
        ("a*b.io", "a-x_yb.io.", true),
        ("a*b.io", "a.b.io.", false),
        ("*.*.io", "a.b.io.", true),
        ("*.*.io", "a.io.", false),
        ("*-*.io", "x-y.io.", true),
        ("*-*.io", "xy.io.", false),
        ("a*a*a.io", "aaa.io.", true),
        ("a*a*a.io", "aa.io.", false),
        ("www.*", "www.io.", true),
        ("www.*", "www.", false),
        ("www.*", "www.a.io.", false),
        // Wildcards take only [-a-zA-Z0-9_].
        ("*.io", "a\\.b.io.", false),
        ("*", "a b.io.", false),
        ("**.io", "a\\.b.io.", false),
        // A trailing dot in the pattern changes nothing; case never matters.
        ("*.Cilium.IO.", "www.cilium.io.", true),
        ("API.example.com", "api.EXAMPLE.com", true),
        ("api.example.com", "www.api.example.com.", false),
        // `**.` with wildcards after it.
        ("**.*.example", "a.b.example.", true),
        ("**.*.example", "b.example.", false),
        ("**.api-*.example", "x.api-1.example.", true),
        ("**.api-*.example", "api-1.example.", false),
    ];
    for (p, n, want) in cases {
        assert_eq!(pattern(p).matches(n), *want, "matchPattern {p:?} vs {n:?}");
        assert_eq!(reference::matches(p, n), *want, "reference {p:?} vs {n:?}");
    }
}

#[test]
fn invalid_patterns_are_rejected_with_the_reason() {
    let cases = [
        ("api.example.com/", "'/' is not allowed"),
        ("[a-z]+.io", "'[' is not allowed"),
        ("a..io", "empty label"),
        ("", "it is empty"),
        ("*.exa mple.com", "' ' is not allowed"),
    ];
    for (input, reason) in cases {
        let err = Selector::pattern(input).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("invalid matchPattern {input:?}: ")),
            "{err}"
        );
        assert!(err.contains(reason), "{input:?}: {err}");
    }
    let err = Selector::name("*.example.com").unwrap_err().to_string();
    assert!(err.contains("use a matchPattern"), "{err}");
}

#[test]
fn suffix_is_the_domain_and_everything_below() {
    let suffix = Selector::suffix("corp.example").expect("valid");
    for (n, want) in [
        ("corp.example.", true),
        ("a.corp.example.", true),
        ("a b.corp.example.", true),
        ("xcorp.example.", false),
        ("example.", false),
        ("corp.example.com.", false),
    ] {
        assert_eq!(suffix.matches(n), want, "{n:?}");
    }
}

#[test]
fn display_uses_the_settings_spelling() {
    assert_eq!(
        pattern("*.Example.com").to_string(),
        "matchPattern: *.example.com."
    );
    assert_eq!(name("a.example").to_string(), "matchName: a.example.");
    assert_eq!(
        Selector::suffix("a.example").expect("valid").to_string(),
        "suffix: a.example."
    );
}

const PATTERNS: &[&str] = &[
    "*",
    "**",
    "*.io",
    "*.b.io",
    "**.io",
    "**.b.io",
    "**.*.io",
    "*b.io",
    "a*.io",
    "a*b*.io",
    "*.*",
    "*.*.*",
    "a.*",
    "a.*.io",
    "**.a.*",
    "*-*.io",
    "_*.io",
    "**.x-y.io",
    "a.b.io",
    "***.b.io",
    "a**b.io",
    "**a.io",
];

/// Every name of up to three labels over a small alphabet that exercises the pattern parts.
fn names() -> Vec<String> {
    let labels = ["a", "b", "io", "ab", "ba", "x-y", "_t", "a\\.b", "ab-b"];
    let mut names = vec![".".to_owned()];
    let mut last = vec![String::new()];
    for _ in 0..3 {
        let next: Vec<String> = last
            .iter()
            .flat_map(|suffix| labels.iter().map(move |l| format!("{l}.{suffix}")))
            .collect();
        names.extend(next.iter().cloned());
        last = next;
    }
    names
}

#[test]
fn patterns_agree_with_the_reference_matcher() {
    let names = names();
    for p in PATTERNS {
        let selector = pattern(p);
        for n in &names {
            assert_eq!(
                selector.matches(n),
                reference::matches(p, n),
                "matchPattern {p:?} vs {n:?}"
            );
        }
    }
}

#[test]
fn sets_and_maps_agree_with_their_selectors() {
    let selectors: Vec<Selector> = PATTERNS
        .iter()
        .filter(|p| !p.bytes().all(|b| b == b'*'))
        .map(|p| pattern(p))
        .chain(["a.b.io", "ab.io"].map(name))
        .chain(["b.io", "io"].map(|s| Selector::suffix(s).expect("valid")))
        .collect();
    let set: NameSet = selectors.iter().cloned().collect();
    let map: NameMap<usize> = selectors.iter().cloned().zip(0..).collect();
    for n in names() {
        let first = selectors.iter().position(|s| s.matches(&n));
        assert_eq!(set.contains(&n), first.is_some(), "set vs {n:?}");
        assert_eq!(map.find(&n).copied(), first, "map vs {n:?}");
    }
}

/// Cilium turns a pattern into a regex: a lone run of stars (optionally with a dot) matches
/// `(^([-a-zA-Z0-9_]+[.])+$)|(^[.]$)`; a leading run of two or more stars followed by a dot
/// becomes `[-a-zA-Z0-9_]+([.][-a-zA-Z0-9_]+)*[.]`; any other run of stars `[-a-zA-Z0-9_]*`;
/// everything else is literal. This matcher follows that text with plain backtracking.
mod reference {
    use crate::name::is_label_byte;

    enum Token {
        Deep,
        Star,
        Byte(u8),
    }

    pub(super) fn matches(pattern: &str, name: &str) -> bool {
        let pattern = pattern.to_ascii_lowercase();
        let name = name.to_ascii_lowercase();
        let name = if name.ends_with('.') {
            name
        } else {
            format!("{name}.")
        };
        let body = pattern.strip_suffix('.').unwrap_or(&pattern);
        if body.bytes().all(|b| b == b'*') {
            return name == "."
                || name
                    .split_terminator('.')
                    .all(|l| !l.is_empty() && l.bytes().all(is_label_byte));
        }
        let pattern = format!("{body}.");
        let stars = pattern.bytes().take_while(|&b| b == b'*').count();
        let mut tokens = Vec::new();
        let mut rest = pattern.as_bytes();
        if stars >= 2 && pattern.as_bytes()[stars] == b'.' {
            tokens.push(Token::Deep);
            rest = &rest[stars + 1..];
        }
        for &b in rest {
            match (b, tokens.last()) {
                (b'*', Some(Token::Star)) => {}
                (b'*', _) => tokens.push(Token::Star),
                (b, _) => tokens.push(Token::Byte(b)),
            }
        }
        run(&tokens, name.as_bytes())
    }

    fn run(tokens: &[Token], name: &[u8]) -> bool {
        match tokens.split_first() {
            None => name.is_empty(),
            Some((Token::Byte(b), rest)) => name.first() == Some(b) && run(rest, &name[1..]),
            Some((Token::Star, rest)) => {
                let max = name.iter().take_while(|&&b| is_label_byte(b)).count();
                (0..=max).any(|n| run(rest, &name[n..]))
            }
            Some((Token::Deep, rest)) => {
                // One or more plain labels, each followed by a dot.
                let mut at = 0;
                loop {
                    let label = name[at..].iter().take_while(|&&b| is_label_byte(b)).count();
                    if label == 0 || name.get(at + label) != Some(&b'.') {
                        return false;
                    }
                    at += label + 1;
                    if run(rest, &name[at..]) {
                        return true;
                    }
                }
            }
        }
    }
}
