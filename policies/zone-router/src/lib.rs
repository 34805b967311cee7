//! Route names to named upstream groups: the first route with a matching `match` entry
//! (`matchName`, `matchPattern` with Cilium semantics, or `suffix` = a domain and everything
//! below it) sends the query to its `upstream`; unmatched names are allowed through to the
//! zone's own upstream.
//!
//! The route depends only on the name, so decisions carry a `cache_for` hint.

mod settings;

use zonegate_policy::{Decision, Policy, Query};

pub use settings::SettingsError;
use settings::{Settings, SettingsConfig};

/// The policy: a first-match-wins route table.
#[derive(Debug)]
pub struct ZoneRouter {
    settings: Settings,
}

impl ZoneRouter {
    /// Every upstream group a route may send to, in configuration order (with repeats).
    pub fn upstreams(&self) -> &[String] {
        &self.settings.upstreams
    }
}

impl Policy for ZoneRouter {
    type Error = SettingsError;

    fn init(settings: &str) -> Result<Self, SettingsError> {
        Ok(ZoneRouter {
            settings: SettingsConfig::parse(settings)?,
        })
    }

    fn decide(&self, query: &Query) -> Decision {
        let settings = &self.settings;
        let route = settings
            .table
            .find(&query.name)
            .and_then(|&i| settings.upstreams.get(i));
        let decision = route.map_or_else(Decision::allow, Decision::route);
        match settings.cache_for {
            Some(secs) => decision.cache_for_secs(secs),
            None => decision,
        }
    }

    /// Each route's upstream group, once: the host checks they exist before loading.
    fn routes(&self) -> Vec<String> {
        let mut groups: Vec<String> = Vec::new();
        for g in &self.settings.upstreams {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        groups
    }
}

zonegate_policy::export!(ZoneRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use zonegate_policy::{Action, testing};

    const EXAMPLE: &str = include_str!("../example-settings.json");

    #[test]
    fn example_routes_first_match_wins() {
        let router = testing::init::<ZoneRouter>(EXAMPLE);
        assert_eq!(router.upstreams(), ["corp-db", "corp", "onprem", "corp"]);
        assert_eq!(router.routes(), ["corp-db", "corp", "onprem"]);
        let route = |upstream: &str| Action::Route(upstream.to_owned());
        let cases = [
            ("db.corp.example.com", route("corp-db")),
            ("DB.corp.example.com.", route("corp-db")),
            ("www.corp.example.com", route("corp")),
            ("a.b.corp.example.com", route("corp")),
            ("corp.example.com", route("corp")),
            ("build.onprem.internal", route("onprem")),
            ("x.build.onprem.internal", Action::Allow),
            ("onprem.internal", Action::Allow),
            ("a.b.legacy.internal", route("corp")),
            ("legacy.internal", Action::Allow),
            ("example.com", Action::Allow),
            (".", Action::Allow),
        ];
        for (name, want) in cases {
            let decision = router.decide(&testing::query(name).build());
            assert_eq!(decision.action, want, "{name}");
            assert_eq!(decision.cache_for, Some(300), "{name}");
        }
    }

    #[test]
    fn earlier_routes_win_over_more_specific_later_ones() {
        let router = testing::init::<ZoneRouter>(
            r#"{"routes": [
                {"upstream": "broad", "match": [{"suffix": "example"}]},
                {"upstream": "narrow", "match": [{"matchName": "www.example"}]}
            ], "cache_for": 0}"#,
        );
        let decision = router.decide(&testing::query("www.example").build());
        assert_eq!(decision, Decision::route("broad"));
    }
}
