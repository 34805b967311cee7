//! A policy whose `decide` traps (a Rust panic aborts the instance).
//!
//! Settings: `{}` traps on every query; `{"trap_on": "boom.example."}` traps only for that
//! name (compared lowercase, trailing dot implied) and allows everything else — so a test can
//! check that one bad query does not poison the next.

use serde::Deserialize;
use zonegate_policy::{Decision, Policy, Query};

/// Traps on every name, or only on `trap_on`.
pub struct GuestTrap {
    trap_on: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    trap_on: Option<String>,
}

impl Policy for GuestTrap {
    type Error = serde_json::Error;

    fn init(settings: &str) -> Result<Self, Self::Error> {
        let settings: Settings = serde_json::from_str(settings)?;
        let trap_on = settings.trap_on.map(|name| {
            let name = name.to_ascii_lowercase();
            if name.ends_with('.') {
                name
            } else {
                name + "."
            }
        });
        Ok(GuestTrap { trap_on })
    }

    fn decide(&self, query: &Query) -> Decision {
        match &self.trap_on {
            Some(name) if *name != query.name => Decision::allow(),
            _ => panic!("guest-trap: deliberate trap deciding {}", query.name),
        }
    }
}

zonegate_policy::export!(GuestTrap);

#[cfg(test)]
mod tests {
    use super::*;
    use zonegate_policy::testing;

    #[test]
    fn allows_other_names() {
        let policy = testing::init::<GuestTrap>(r#"{"trap_on": "Boom.Example"}"#);
        assert_eq!(
            policy.decide(&testing::query("fine.example").build()),
            Decision::allow()
        );
    }

    #[test]
    #[should_panic(expected = "deliberate trap deciding boom.example.")]
    fn traps_on_the_configured_name() {
        let policy = testing::init::<GuestTrap>(r#"{"trap_on": "boom.example."}"#);
        policy.decide(&testing::query("boom.example").build());
    }

    #[test]
    #[should_panic(expected = "deliberate trap deciding any.example.")]
    fn traps_on_everything_without_trap_on() {
        testing::init::<GuestTrap>("{}").decide(&testing::query("any.example").build());
    }

    #[test]
    fn rejects_unknown_settings() {
        assert!(GuestTrap::init(r#"{"trap": "x"}"#).is_err());
    }
}
