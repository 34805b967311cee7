//! The policy's settings: raw JSON (borrowing the domain strings, since lists are large and a
//! policy's memory is capped), then one `validate` that builds the domain set and reports
//! every bad entry with its place.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use zonegate_policy::{DenyKind, DomainSet};

/// At most this many invalid entries are listed in an error; the rest are counted.
const MAX_LISTED_ERRORS: usize = 20;

/// Names hosts files map to loopback addresses; not blocklist entries.
const HOSTS_BOILERPLATE: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Settings as written in the host's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsConfig<'a> {
    #[serde(default, borrow)]
    domains: Vec<Entry<'a>>,
    #[serde(default, borrow)]
    list: Option<Entry<'a>>,
    #[serde(default)]
    action: ActionConfig,
    sinkhole_ipv4: Option<Ipv4Addr>,
    sinkhole_ipv6: Option<Ipv6Addr>,
    sinkhole_ttl: Option<u32>,
    #[serde(default = "default_cache_for")]
    cache_for: u32,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionConfig {
    #[default]
    Nxdomain,
    Refused,
    Nodata,
    Sinkhole,
}

fn default_cache_for() -> u32 {
    60
}

/// A JSON string, borrowed from the settings unless it has escapes.
#[derive(Debug)]
struct Entry<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Entry<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = Entry<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Entry(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Entry(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(EntryVisitor)
    }
}

/// What a blocked name gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    Deny(DenyKind),
    /// A/AAAA queries get these addresses; other types get NODATA.
    Sinkhole {
        ipv4: Ipv4Addr,
        ipv6: Ipv6Addr,
        ttl: u32,
    },
}

/// Validated settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) domains: DomainSet,
    pub(crate) block: Block,
    /// Seconds the host may memoize a verdict; `None` when configured as 0.
    pub(crate) cache_for: Option<u32>,
}

/// Why settings were rejected.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Not JSON, or not this policy's shape (the message names the field).
    #[error("settings: {0}")]
    Json(#[from] serde_json::Error),
    /// Well-formed but invalid values, each with its place.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// Collects invalid values, listing the first few.
#[derive(Default)]
struct Errors {
    listed: Vec<String>,
    more: usize,
}

impl Errors {
    fn push(&mut self, message: String) {
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(message);
        } else {
            self.more += 1;
        }
    }

    fn into_result<T>(mut self, value: T) -> Result<T, SettingsError> {
        if self.more > 0 {
            self.listed
                .push(format!("and {} more invalid entries", self.more));
        }
        if self.listed.is_empty() {
            Ok(value)
        } else {
            Err(SettingsError::Invalid(self.listed))
        }
    }
}

impl SettingsConfig<'_> {
    pub(crate) fn parse(json: &str) -> Result<Settings, SettingsError> {
        serde_json::from_str::<SettingsConfig<'_>>(json)?.validate()
    }

    fn validate(self) -> Result<Settings, SettingsError> {
        let mut errors = Errors::default();
        let block = self.block(&mut errors);
        let list = self.list.as_ref().map_or("", |list| &list.0);
        let (count, bytes) = list_entries(list).fold((self.domains.len(), 0), |(n, b), (_, d)| {
            (n + 1, b + d.len() + 1)
        });
        let bytes = bytes + self.domains.iter().map(|d| d.0.len() + 1).sum::<usize>();
        let mut domains = DomainSet::with_capacity(count, bytes);
        for (i, domain) in self.domains.iter().enumerate() {
            if let Err(e) = domains.insert(&domain.0) {
                errors.push(format!("domains[{i}]: {e}"));
            }
        }
        for (line, domain) in list_entries(list) {
            if let Err(e) = domains.insert(domain) {
                errors.push(format!("list line {line}: {e}"));
            }
        }
        let cache_for = (self.cache_for > 0).then_some(self.cache_for);
        errors.into_result(Settings {
            domains,
            block,
            cache_for,
        })
    }

    fn block(&self, errors: &mut Errors) -> Block {
        let deny = match self.action {
            ActionConfig::Nxdomain => DenyKind::NxDomain,
            ActionConfig::Refused => DenyKind::Refused,
            ActionConfig::Nodata => DenyKind::NoData,
            ActionConfig::Sinkhole => {
                return Block::Sinkhole {
                    ipv4: self.sinkhole_ipv4.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    ipv6: self.sinkhole_ipv6.unwrap_or(Ipv6Addr::UNSPECIFIED),
                    ttl: self.sinkhole_ttl.unwrap_or(60),
                };
            }
        };
        let sinkhole_fields = [
            ("sinkhole_ipv4", self.sinkhole_ipv4.is_some()),
            ("sinkhole_ipv6", self.sinkhole_ipv6.is_some()),
            ("sinkhole_ttl", self.sinkhole_ttl.is_some()),
        ];
        for (field, _) in sinkhole_fields.iter().filter(|(_, set)| *set) {
            errors.push(format!(
                r#"{field}: only used with action "sinkhole" (action is "{deny}")"#
            ));
        }
        Block::Deny(deny)
    }
}

/// The domains of a hosts file (`0.0.0.0 ads.example tracker.example`) or a plain list (one
/// per line), with 1-based line numbers; `#` starts a comment.
fn list_entries(list: &str) -> impl Iterator<Item = (usize, &str)> {
    list.lines().enumerate().flat_map(|(i, line)| {
        let line = line.split_once('#').map_or(line, |(content, _)| content);
        let mut words = line.split_whitespace().peekable();
        let hosts_format = words
            .peek()
            .is_some_and(|first| first.parse::<IpAddr>().is_ok());
        if hosts_format {
            words.next();
        }
        words
            .filter(move |word| !(hosts_format && HOSTS_BOILERPLATE.contains(word)))
            .map(move |word| (i + 1, word))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        match SettingsConfig::parse(json) {
            Ok(settings) => panic!("accepted {json}: {settings:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn hosts_files_and_plain_lists() {
        let list = "# StevenBlack-style header\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n0.0.0.0 0.0.0.0\n\
                    0.0.0.0 ads.example  tracker.example # two on a line\n\n  plain.example\nalso.plain.example\t\n";
        let entries: Vec<_> = list_entries(list).collect();
        assert_eq!(
            entries,
            vec![
                (5, "ads.example"),
                (5, "tracker.example"),
                (7, "plain.example"),
                (8, "also.plain.example")
            ]
        );
    }

    #[test]
    fn escaped_strings_are_accepted() {
        let settings = SettingsConfig::parse(
            r#"{"domains": ["ads\u002eexample"], "list": "a.example\nb.example"}"#,
        )
        .expect("valid");
        for name in ["ads.example.", "a.example.", "x.b.example."] {
            assert!(settings.domains.contains(name), "{name}");
        }
    }

    #[test]
    fn rejections_name_the_field_or_line() {
        let cases = [
            (r#"{"domain": []}"#, "unknown field `domain`"),
            (r#"{"action": "drop"}"#, "unknown variant `drop`"),
            (
                r#"{"action": "sinkhole", "sinkhole_ipv4": "::1"}"#,
                "invalid IPv4 address",
            ),
            (
                r#"{"domains": ["ok.example", "bad..example"]}"#,
                r#"domains[1]: invalid domain "bad..example": empty label"#,
            ),
            (
                r#"{"domains": ["*.ads.example"]}"#,
                r#"domains[0]: invalid domain "*.ads.example": '*' is not allowed"#,
            ),
            (
                r#"{"list": "ok.example\n0.0.0.0 ads.example ||bad^\n"}"#,
                r#"list line 2: invalid domain "||bad^""#,
            ),
            (
                r#"{"sinkhole_ipv4": "0.0.0.0"}"#,
                r#"sinkhole_ipv4: only used with action "sinkhole" (action is "nxdomain")"#,
            ),
            (
                r#"{"action": "refused", "sinkhole_ttl": 5}"#,
                r#"sinkhole_ttl: only used with action "sinkhole" (action is "refused")"#,
            ),
        ];
        for (json, want) in cases {
            let got = error(json);
            assert!(got.contains(want), "{json}\n  got: {got}\n want: {want}");
        }
    }

    #[test]
    fn long_error_lists_are_cut() {
        let list: String = (0..50).map(|i| format!("bad{i}/x\n")).collect();
        let got = error(&serde_json::json!({ "list": list }).to_string());
        assert!(
            got.contains("list line 20:") && !got.contains("list line 21:"),
            "{got}"
        );
        assert!(got.ends_with("and 30 more invalid entries"), "{got}");
    }
}
