//! Block a large list of domains and all their subdomains: deny them (NXDOMAIN unless
//! configured) or sinkhole them (A/AAAA answers with fixed addresses). Everything else is
//! allowed through to the next policy.
//!
//! Lookups cost one hash probe per label of the query name, whatever the list's size.

mod settings;

use zonegate_policy::{Decision, DenyKind, Level, Policy, Query, RData, Record, log, qtype};

pub use settings::SettingsError;
use settings::{Block, Settings, SettingsConfig};

/// The policy: the domain set and what a blocked name gets.
#[derive(Debug)]
pub struct Blocklist {
    settings: Settings,
}

impl Blocklist {
    /// How many distinct domains are blocked.
    pub fn len(&self) -> usize {
        self.settings.domains.len()
    }

    /// Whether nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.settings.domains.is_empty()
    }

    fn blocked(&self, query: &Query) -> Decision {
        match self.settings.block {
            Block::Deny(kind) => Decision::deny(kind),
            Block::Sinkhole { ipv4, ipv6, ttl } => {
                let data = match query.qtype {
                    qtype::A => RData::A(ipv4),
                    qtype::AAAA => RData::Aaaa(ipv6),
                    _ => return Decision::deny(DenyKind::NoData),
                };
                Decision::answer(vec![Record::new(query.name.clone(), ttl, data)])
            }
        }
    }
}

impl Policy for Blocklist {
    type Error = SettingsError;

    fn init(settings: &str) -> Result<Self, SettingsError> {
        let settings = SettingsConfig::parse(settings)?;
        if settings.domains.is_empty() {
            log(
                Level::Warn,
                "the blocklist is empty: every query is allowed",
            );
        }
        Ok(Blocklist { settings })
    }

    fn decide(&self, query: &Query) -> Decision {
        let decision = if self.settings.domains.contains(&query.name) {
            self.blocked(query)
        } else {
            Decision::allow()
        };
        match self.settings.cache_for {
            Some(secs) => decision.cache_for_secs(secs),
            None => decision,
        }
    }
}

zonegate_policy::export!(Blocklist);

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use zonegate_policy::{Action, testing};

    const EXAMPLE: &str = include_str!("../example-settings.json");

    fn action(policy: &Blocklist, name: &str, qtype: u16) -> Action {
        policy
            .decide(&testing::query(name).qtype(qtype).build())
            .action
    }

    #[test]
    fn example_settings_block_domains_and_subdomains() {
        let policy = testing::init::<Blocklist>(EXAMPLE);
        assert_eq!(policy.len(), 5);
        let nxdomain = Action::Deny(DenyKind::NxDomain);
        let cases = [
            ("doubleclick.net", nxdomain.clone()),
            ("ad.doubleclick.net", nxdomain.clone()),
            ("x.y.Ads.Example.com.", nxdomain.clone()),
            ("tracker.example.org", nxdomain.clone()),
            ("telemetry.example.net", nxdomain.clone()),
            ("example.com", Action::Allow),
            ("notdoubleclick.net", Action::Allow),
            ("doubleclick.net.example", Action::Allow),
            (".", Action::Allow),
        ];
        for (name, want) in cases {
            assert_eq!(action(&policy, name, qtype::A), want, "{name}");
        }
    }

    #[test]
    fn sinkhole_answers_a_and_aaaa_and_nodata_otherwise() {
        let policy = testing::init::<Blocklist>(
            r#"{"domains": ["ads.example"], "action": "sinkhole", "sinkhole_ipv4": "192.0.2.1", "sinkhole_ttl": 30}"#,
        );
        let a = Record::new("x.ads.example.", 30, RData::A(Ipv4Addr::new(192, 0, 2, 1)));
        let aaaa = Record::new("ads.example.", 30, RData::Aaaa(Ipv6Addr::UNSPECIFIED));
        assert_eq!(
            action(&policy, "x.ads.example", qtype::A),
            Action::Answer(vec![a])
        );
        assert_eq!(
            action(&policy, "ads.example", qtype::AAAA),
            Action::Answer(vec![aaaa])
        );
        assert_eq!(
            action(&policy, "ads.example", qtype::TXT),
            Action::Deny(DenyKind::NoData)
        );
        assert_eq!(action(&policy, "example", qtype::A), Action::Allow);
    }

    #[test]
    fn deny_kinds_and_cache_hint() {
        for (kind, want) in [
            ("refused", DenyKind::Refused),
            ("nodata", DenyKind::NoData),
            ("nxdomain", DenyKind::NxDomain),
        ] {
            let policy = testing::init::<Blocklist>(&format!(
                r#"{{"domains": ["b.example"], "action": "{kind}", "cache_for": 300}}"#
            ));
            let decision = policy.decide(&testing::query("a.b.example").build());
            assert_eq!(decision, Decision::deny(want).cache_for_secs(300));
            assert_eq!(
                policy.decide(&testing::query("example").build()),
                Decision::allow().cache_for_secs(300)
            );
        }
        let uncached = testing::init::<Blocklist>(r#"{"domains": ["b.example"], "cache_for": 0}"#);
        assert_eq!(
            uncached
                .decide(&testing::query("b.example").build())
                .cache_for,
            None
        );
    }

    #[test]
    fn empty_blocklist_warns() {
        let policy = testing::init::<Blocklist>("{}");
        assert!(policy.is_empty());
        assert_eq!(
            testing::take_logs(),
            vec![(
                Level::Warn,
                "the blocklist is empty: every query is allowed".to_owned()
            )]
        );
        assert_eq!(action(&policy, "anything.example", qtype::A), Action::Allow);
    }

    #[test]
    fn hundred_thousand_entries() {
        let domains: Vec<String> = (0..100_000)
            .map(|i| format!("host{i}.tracker{}.example", i % 997))
            .collect();
        let list: String = (0..1_000)
            .map(|i| format!("0.0.0.0 hosts{i}.example\n"))
            .collect();
        let settings = serde_json::json!({ "domains": domains, "list": list }).to_string();
        let policy = testing::init::<Blocklist>(&settings);
        assert_eq!(policy.len(), 101_000);
        let nxdomain = Action::Deny(DenyKind::NxDomain);
        for i in (0..100_000).step_by(1_009) {
            assert_eq!(
                action(
                    &policy,
                    &format!("www.host{i}.tracker{}.example", i % 997),
                    qtype::A
                ),
                nxdomain
            );
            assert_eq!(
                action(
                    &policy,
                    &format!("host{i}.tracker{}.example", (i + 1) % 997),
                    qtype::A
                ),
                Action::Allow
            );
        }
        assert_eq!(action(&policy, "a.hosts999.example", qtype::A), nxdomain);
        assert_eq!(action(&policy, "tracker5.example", qtype::A), Action::Allow);
    }
}
