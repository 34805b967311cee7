//! The policy's settings: raw JSON structs, then one `validate` into compiled rules that
//! reports every bad field with its path.

use std::collections::BTreeMap;

use serde::Deserialize;
use zonegate_policy::{CidrSet, DenyKind, NameSet, Selector};

/// Settings as written in the host's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsConfig {
    rules: Vec<RuleConfig>,
    #[serde(default)]
    default_action: DenyKindConfig,
    #[serde(default = "default_cache_for")]
    cache_for: u32,
}

/// One egress rule: which clients (every field given must match) may resolve which names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    cidrs: Option<Vec<String>>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "toFQDNs")]
    to_fqdns: Vec<FqdnConfig>,
}

/// Cilium's `toFQDNs` entry: `{ "matchName": ... }` or `{ "matchPattern": ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
enum FqdnConfig {
    #[serde(rename = "matchName")]
    MatchName(String),
    #[serde(rename = "matchPattern")]
    MatchPattern(String),
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DenyKindConfig {
    #[default]
    Refused,
    Nxdomain,
    Nodata,
}

fn default_cache_for() -> u32 {
    60
}

/// Validated settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) rules: Vec<Rule>,
    pub(crate) default_action: DenyKind,
    /// Seconds the host may memoize a verdict; `None` when configured as 0.
    pub(crate) cache_for: Option<u32>,
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    /// `None`: any client address.
    pub(crate) cidrs: Option<CidrSet>,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) names: NameSet,
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
        let rules = self
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, rule)| rule.validate(&format!("rules[{i}]"), &mut errors))
            .collect();
        if !errors.is_empty() {
            return Err(SettingsError::Invalid(errors));
        }
        let default_action = match self.default_action {
            DenyKindConfig::Refused => DenyKind::Refused,
            DenyKindConfig::Nxdomain => DenyKind::NxDomain,
            DenyKindConfig::Nodata => DenyKind::NoData,
        };
        let cache_for = (self.cache_for > 0).then_some(self.cache_for);
        Ok(Settings {
            rules,
            default_action,
            cache_for,
        })
    }
}

impl RuleConfig {
    fn validate(self, path: &str, errors: &mut Vec<String>) -> Rule {
        let cidrs = self.cidrs.map(|cidrs| {
            if cidrs.is_empty() {
                errors.push(format!(
                    "{path}.cidrs: empty list selects no client (omit it to select every client)"
                ));
            }
            let parsed = cidrs.iter().enumerate().filter_map(|(i, cidr)| {
                cidr.parse()
                    .map_err(|e| errors.push(format!("{path}.cidrs[{i}]: {e}")))
                    .ok()
            });
            parsed.collect::<CidrSet>()
        });
        if self.namespace.as_deref() == Some("") {
            errors.push(format!("{path}.namespace: empty"));
        }
        if self.to_fqdns.is_empty() {
            errors.push(format!("{path}.toFQDNs: empty list allows nothing"));
        }
        let names = self.to_fqdns.iter().enumerate().filter_map(|(i, fqdn)| {
            let selector = match fqdn {
                FqdnConfig::MatchName(name) => Selector::name(name),
                FqdnConfig::MatchPattern(pattern) => Selector::pattern(pattern),
            };
            selector
                .map_err(|e| errors.push(format!("{path}.toFQDNs[{i}]: {e}")))
                .ok()
        });
        let names = names.collect::<NameSet>();
        let labels = self.labels.unwrap_or_default().into_iter().collect();
        Rule {
            cidrs,
            namespace: self.namespace,
            labels,
            names,
        }
    }
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
    fn defaults() {
        let settings = SettingsConfig::parse(r#"{"rules": []}"#).expect("valid");
        assert_eq!(settings.default_action, DenyKind::Refused);
        assert_eq!(settings.cache_for, Some(60));
        assert!(settings.rules.is_empty());
        let settings =
            SettingsConfig::parse(r#"{"rules": [], "cache_for": 0, "default_action": "nodata"}"#)
                .expect("valid");
        assert_eq!(
            (settings.cache_for, settings.default_action),
            (None, DenyKind::NoData)
        );
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (r#"{}"#, "missing field `rules`"),
            (r#"{"rules": [], "extra": 1}"#, "unknown field `extra`"),
            (
                r#"{"rules": [], "default_action": "drop"}"#,
                "unknown variant `drop`",
            ),
            (
                r#"{"rules": [{"toFQDNs": [], "namespace": "a", "team": "x"}]}"#,
                "unknown field `team`",
            ),
            (
                r#"{"rules": [{"toFQDNs": [{"matchRegex": "a"}]}]}"#,
                "unknown variant `matchRegex`",
            ),
            (
                r#"{"rules": [{"toFQDNs": [{"matchName": "a.b", "matchPattern": "c"}]}]}"#,
                "settings:",
            ),
            (
                r#"{"rules": [{"toFQDNs": []}]}"#,
                "rules[0].toFQDNs: empty list allows nothing",
            ),
            (
                r#"{"rules": [{"toFQDNs": [{"matchName": "ok.example"}]}, {"toFQDNs": [{"matchName": "ok"}, {"matchPattern": "a/*"}]}]}"#,
                r#"rules[1].toFQDNs[1]: invalid matchPattern "a/*": '/' is not allowed"#,
            ),
            (
                r#"{"rules": [{"cidrs": ["10.0.0.1/8"], "toFQDNs": [{"matchName": "a"}]}]}"#,
                r#"rules[0].cidrs[0]: invalid CIDR "10.0.0.1/8""#,
            ),
            (
                r#"{"rules": [{"cidrs": [], "toFQDNs": [{"matchName": "a"}]}]}"#,
                "rules[0].cidrs: empty list selects no client",
            ),
            (
                r#"{"rules": [{"namespace": "", "toFQDNs": [{"matchName": "a"}]}]}"#,
                "rules[0].namespace: empty",
            ),
        ];
        for (json, want) in cases {
            let got = error(json);
            assert!(got.contains(want), "{json}\n  got: {got}\n want: {want}");
        }
    }

    #[test]
    fn every_invalid_value_is_reported() {
        let got = error(
            r#"{"rules": [{"cidrs": ["nope"], "toFQDNs": [{"matchName": "*.a"}]}, {"toFQDNs": [{"matchPattern": "a b"}]}]}"#,
        );
        for want in [
            "rules[0].cidrs[0]",
            "rules[0].toFQDNs[0]",
            "rules[1].toFQDNs[0]",
        ] {
            assert!(got.contains(want), "{want} missing from: {got}");
        }
    }
}
