//! Cilium-style egress DNS allowlist. A query is allowed when a rule that selects its client
//! matches its name (`toFQDNs`: `matchName` / `matchPattern`, Cilium 1.19 semantics); every
//! other query gets `default_action` (REFUSED unless configured).
//!
//! The verdict depends only on the client and the name, so it carries a `cache_for` hint.

mod settings;

use zonegate_policy::{Decision, Policy, Query};

pub use settings::SettingsError;
use settings::{Rule, Settings, SettingsConfig};

/// The policy: compiled rules.
#[derive(Debug)]
pub struct FqdnAllowlist {
    settings: Settings,
}

impl Policy for FqdnAllowlist {
    type Error = SettingsError;

    fn init(settings: &str) -> Result<Self, SettingsError> {
        Ok(FqdnAllowlist {
            settings: SettingsConfig::parse(settings)?,
        })
    }

    fn decide(&self, query: &Query) -> Decision {
        let settings = &self.settings;
        let allowed = settings
            .rules
            .iter()
            .any(|rule| rule.selects(query) && rule.names.contains(&query.name));
        let decision = if allowed {
            Decision::allow()
        } else {
            Decision::deny(settings.default_action)
        };
        match settings.cache_for {
            Some(secs) => decision.cache_for_secs(secs),
            None => decision,
        }
    }
}

impl Rule {
    /// Whether the rule applies to the query's client: every selector given must match, and
    /// `namespace`/`labels` need the host to know the client's identity.
    fn selects(&self, query: &Query) -> bool {
        if self
            .cidrs
            .as_ref()
            .is_some_and(|cidrs| !cidrs.contains(query.client))
        {
            return false;
        }
        if self.namespace.is_none() && self.labels.is_empty() {
            return true;
        }
        let Some(identity) = &query.identity else {
            return false;
        };
        let namespace_ok = self
            .namespace
            .as_ref()
            .is_none_or(|ns| *ns == identity.namespace);
        namespace_ok
            && self
                .labels
                .iter()
                .all(|(key, value)| identity.label(key) == Some(value))
    }
}

zonegate_policy::export!(FqdnAllowlist);

#[cfg(test)]
mod tests {
    use super::*;
    use zonegate_policy::{Action, DenyKind, testing};

    const EXAMPLE: &str = include_str!("../example-settings.json");

    fn action(policy: &FqdnAllowlist, query: testing::QueryBuilder) -> Action {
        policy.decide(&query.build()).action
    }

    #[test]
    fn example_settings_load() {
        let policy = testing::init::<FqdnAllowlist>(EXAMPLE);
        assert_eq!(policy.settings.rules.len(), 3);
    }

    #[test]
    fn decisions_for_the_example_settings() {
        use testing::query;
        let policy = testing::init::<FqdnAllowlist>(EXAMPLE);
        let refused = Action::Deny(DenyKind::Refused);
        let payments = |name| query(name).client("10.1.0.5").identity("payments", "api-0");
        let cases = [
            // Rule 0: namespace payments.
            (payments("api.stripe.com"), Action::Allow),
            (payments("API.Stripe.com."), Action::Allow),
            (payments("stripe.com"), refused.clone()),
            (payments("a.b.stripe.com"), refused.clone()),
            (payments("api.example.com"), Action::Allow),
            (payments("www.example.com"), refused.clone()),
            (
                query("api.stripe.com")
                    .client("10.1.0.5")
                    .identity("shop", "web-0"),
                refused.clone(),
            ),
            (query("api.stripe.com").client("10.1.0.5"), refused.clone()),
            // Rule 1: clients in 10.2.0.0/16 or fd00:2::/32, labelled app=updater.
            (
                query("a.b.debian.org")
                    .client("10.2.3.4")
                    .label("app", "updater"),
                Action::Allow,
            ),
            (
                query("debian.org")
                    .client("10.2.3.4")
                    .label("app", "updater"),
                refused.clone(),
            ),
            (
                query("deb.debian.org")
                    .client("fd00:2::9")
                    .label("app", "updater"),
                Action::Allow,
            ),
            (
                query("deb.debian.org")
                    .client("10.3.0.1")
                    .label("app", "updater"),
                refused.clone(),
            ),
            (
                query("deb.debian.org")
                    .client("10.2.3.4")
                    .label("app", "web"),
                refused.clone(),
            ),
            (query("deb.debian.org").client("10.2.3.4"), refused.clone()),
            // Rule 2: everyone may resolve in-cluster names.
            (
                query("kubernetes.default.svc.cluster.local").client("192.0.2.1"),
                Action::Allow,
            ),
            (query("cluster.local").client("192.0.2.1"), refused.clone()),
            (query("example.org").client("192.0.2.1"), refused.clone()),
        ];
        for (query, want) in cases {
            let built = query.clone().build();
            assert_eq!(
                action(&policy, query),
                want,
                "{} from {}",
                built.name,
                built.client
            );
        }
    }

    #[test]
    fn every_decision_carries_the_cache_hint() {
        let policy = testing::init::<FqdnAllowlist>(EXAMPLE);
        let allowed = policy.decide(&testing::query("x.svc.cluster.local").build());
        let denied = policy.decide(&testing::query("example.org").build());
        assert_eq!((allowed.cache_for, denied.cache_for), (Some(60), Some(60)));
        let uncached = testing::init::<FqdnAllowlist>(r#"{"rules": [], "cache_for": 0}"#);
        assert_eq!(
            uncached
                .decide(&testing::query("example.org").build())
                .cache_for,
            None
        );
    }

    #[test]
    fn default_action_is_configurable() {
        for (kind, want) in [
            ("nxdomain", DenyKind::NxDomain),
            ("nodata", DenyKind::NoData),
            ("refused", DenyKind::Refused),
        ] {
            let settings = format!(
                r#"{{"rules": [{{"toFQDNs": [{{"matchName": "ok.example"}}]}}], "default_action": "{kind}"}}"#
            );
            let policy = testing::init::<FqdnAllowlist>(&settings);
            assert_eq!(
                action(&policy, testing::query("no.example")),
                Action::Deny(want)
            );
            assert_eq!(action(&policy, testing::query("ok.example")), Action::Allow);
        }
    }

    #[test]
    fn lone_star_allows_everything_for_the_selected_clients() {
        let policy = testing::init::<FqdnAllowlist>(
            r#"{"rules": [{"cidrs": ["127.0.0.0/8", "::1"], "toFQDNs": [{"matchPattern": "*"}]}]}"#,
        );
        assert_eq!(
            action(&policy, testing::query(".").client("127.0.0.1")),
            Action::Allow
        );
        assert_eq!(
            action(&policy, testing::query("a.b.c").client("::1")),
            Action::Allow
        );
        assert_eq!(
            action(&policy, testing::query("a.b.c").client("::2")),
            Action::Deny(DenyKind::Refused)
        );
    }

    #[test]
    fn init_errors_reach_the_host_as_text() {
        let err = FqdnAllowlist::init(
            r#"{"rules": [{"toFQDNs": [{"matchPattern": "*.exa$mple.com"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"rules[0].toFQDNs[0]: invalid matchPattern "*.exa$mple.com": '$' is not allowed (only a-z, A-Z, 0-9, '-', '_', '.' and '*')"#
        );
    }
}
