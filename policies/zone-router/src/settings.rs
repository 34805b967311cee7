//! The policy's settings: raw JSON structs, then one `validate` into a first-match-wins route
//! table that reports every bad field with its path.

use serde::Deserialize;
use zonegate_policy::{NameMap, Selector};

/// Settings as written in the host's configuration. Every route target is a
/// `routes[].upstream`; the policy declares them (`Policy::routes`), so the host checks them
/// against its upstream groups when it loads the policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsConfig {
    routes: Vec<RouteConfig>,
    #[serde(default = "default_cache_for")]
    cache_for: u32,
}

/// Names matching any `match` entry go to `upstream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    upstream: String,
    #[serde(rename = "match")]
    matches: Vec<MatchConfig>,
}

/// `{ "matchName": ... }`, `{ "matchPattern": ... }` (Cilium semantics) or
/// `{ "suffix": ... }` (the domain and all its subdomains).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
enum MatchConfig {
    #[serde(rename = "matchName")]
    MatchName(String),
    #[serde(rename = "matchPattern")]
    MatchPattern(String),
    #[serde(rename = "suffix")]
    Suffix(String),
}

fn default_cache_for() -> u32 {
    60
}

/// Validated settings.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Selector → index into `upstreams`, in configuration order.
    pub(crate) table: NameMap<usize>,
    pub(crate) upstreams: Vec<String>,
    /// Seconds the host may memoize a verdict; `None` when configured as 0.
    pub(crate) cache_for: Option<u32>,
}

/// Why settings were rejected.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Not JSON, or not this policy's shape (the message names the field).
    #[error("settings: {0}")]
    Json(#[from] serde_json::Error),
    /// Well-formed but invalid values, each with its path.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl SettingsConfig {
    pub(crate) fn parse(json: &str) -> Result<Settings, SettingsError> {
        serde_json::from_str::<SettingsConfig>(json)?.validate()
    }

    fn validate(self) -> Result<Settings, SettingsError> {
        let mut errors = Vec::new();
        let mut table = NameMap::new();
        let mut upstreams = Vec::with_capacity(self.routes.len());
        for (i, route) in self.routes.into_iter().enumerate() {
            let path = format!("routes[{i}]");
            if route.upstream.trim().is_empty() {
                errors.push(format!("{path}.upstream: empty"));
            }
            if route.matches.is_empty() {
                errors.push(format!("{path}.match: empty list routes nothing"));
            }
            for (j, entry) in route.matches.iter().enumerate() {
                match entry.selector() {
                    Ok(selector) => table.insert(selector, i),
                    Err(e) => errors.push(format!("{path}.match[{j}]: {e}")),
                }
            }
            upstreams.push(route.upstream);
        }
        if !errors.is_empty() {
            return Err(SettingsError::Invalid(errors));
        }
        let cache_for = (self.cache_for > 0).then_some(self.cache_for);
        Ok(Settings {
            table,
            upstreams,
            cache_for,
        })
    }
}

impl MatchConfig {
    fn selector(&self) -> Result<Selector, zonegate_policy::SelectorError> {
        match self {
            MatchConfig::MatchName(name) => Selector::name(name),
            MatchConfig::MatchPattern(pattern) => Selector::pattern(pattern),
            MatchConfig::Suffix(domain) => Selector::suffix(domain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (r#"{}"#, "missing field `routes`"),
            (
                r#"{"routes": [{"upstream": "a", "match": [], "to": "b"}]}"#,
                "unknown field `to`",
            ),
            (
                r#"{"routes": [{"upstream": "a", "match": [{"prefix": "x"}]}]}"#,
                "unknown variant `prefix`",
            ),
            (
                r#"{"routes": [{"match": [{"suffix": "x"}]}]}"#,
                "missing field `upstream`",
            ),
            (
                r#"{"routes": [{"upstream": " ", "match": [{"suffix": "x"}]}]}"#,
                "routes[0].upstream: empty",
            ),
            (
                r#"{"routes": [{"upstream": "a", "match": []}]}"#,
                "routes[0].match: empty list routes nothing",
            ),
            (
                r#"{"routes": [{"upstream": "a", "match": [{"suffix": "ok"}]}, {"upstream": "b", "match": [{"suffix": "x"}, {"matchPattern": "*.c/d"}]}]}"#,
                r#"routes[1].match[1]: invalid matchPattern "*.c/d": '/' is not allowed"#,
            ),
            (
                r#"{"routes": [{"upstream": "a", "match": [{"suffix": "*.x"}]}]}"#,
                r#"routes[0].match[0]: invalid suffix "*.x""#,
            ),
        ];
        for (json, want) in cases {
            let got = match SettingsConfig::parse(json) {
                Ok(settings) => panic!("accepted {json}: {settings:?}"),
                Err(err) => err.to_string(),
            };
            assert!(got.contains(want), "{json}\n  got: {got}\n want: {want}");
        }
    }
}
