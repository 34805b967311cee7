//! A policy built with the SDK (world `zonegate:policy/policy@0.2.0`) that shows what crossed
//! the boundary, for the host's tests of that world:
//!
//! - names under `echo.test.` are answered with one TXT record holding the query as the guest
//!   saw it: `name qtype qclass client view zone transport identity`;
//! - names under `route.test.` are routed to the group named by their first label
//!   (`corp.route.test.` → `corp`), declared or not;
//! - every other name is allowed.
//!
//! Settings: `{"routes": ["corp", ...]}`, the groups it declares (default none).

use serde::Deserialize;
use zonegate_policy::{Decision, Policy, Query, RData, Record, Transport};

/// Echoes queries back as TXT records, or routes them.
pub struct GuestEcho {
    routes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    routes: Vec<String>,
}

/// The query as one line of text.
pub fn describe(query: &Query) -> String {
    let transport = match query.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let identity = query
        .identity
        .as_ref()
        .map_or("-".to_owned(), |id| format!("{}/{}", id.namespace, id.pod));
    format!(
        "{} {} {} {} {} {} {transport} {identity}",
        query.name, query.qtype, query.qclass, query.client, query.view, query.zone
    )
}

impl Policy for GuestEcho {
    type Error = serde_json::Error;

    fn init(settings: &str) -> Result<Self, Self::Error> {
        let settings: Settings = serde_json::from_str(settings)?;
        Ok(GuestEcho {
            routes: settings.routes,
        })
    }

    fn decide(&self, query: &Query) -> Decision {
        if query.name.ends_with(".echo.test.") || query.name == "echo.test." {
            let txt = RData::Txt(vec![describe(query)]);
            return Decision::answer(vec![Record::new(query.name.clone(), 5, txt)]);
        }
        if let Some(group) = query.name.strip_suffix(".route.test.") {
            return Decision::route(group.rsplit('.').next().unwrap_or(group));
        }
        Decision::allow()
    }

    fn routes(&self) -> Vec<String> {
        self.routes.clone()
    }
}

zonegate_policy::export!(GuestEcho);

#[cfg(test)]
mod tests {
    use super::*;
    use zonegate_policy::{Action, testing};

    #[test]
    fn echoes_routes_and_allows() {
        let p = testing::init::<GuestEcho>(r#"{"routes": ["corp"]}"#);
        assert_eq!(p.routes(), ["corp"]);
        let q = testing::query("a.echo.test").client("10.0.0.7").view("vnet");
        let Action::Answer(records) = p.decide(&q.build()).action else {
            panic!("not an answer");
        };
        assert_eq!(
            records[0].data,
            RData::Txt(vec!["a.echo.test. 1 1 10.0.0.7 vnet . udp -".into()])
        );
        let routed = p.decide(&testing::query("x.corp.route.test").build()).action;
        assert_eq!(routed, Action::Route("corp".into()));
        assert_eq!(p.decide(&testing::query("a.example").build()).action, Action::Allow);
    }
}
