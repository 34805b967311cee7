//! A policy that rejects every settings value: the host must refuse to load it and report
//! the message.

use zonegate_policy::{Decision, DenyKind, Policy, Query};

/// Never built.
pub struct GuestBadSettings;

/// The error `init` returns, whatever the settings.
#[derive(Debug)]
pub struct Rejected {
    len: usize,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "guest-bad-settings rejects every settings value (got {} bytes)",
            self.len
        )
    }
}

impl Policy for GuestBadSettings {
    type Error = Rejected;

    fn init(settings: &str) -> Result<Self, Rejected> {
        Err(Rejected {
            len: settings.len(),
        })
    }

    fn decide(&self, _query: &Query) -> Decision {
        Decision::deny(DenyKind::Refused)
    }
}

zonegate_policy::export!(GuestBadSettings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_always_fails_with_the_message() {
        for settings in ["{}", "", r#"{"anything": true}"#] {
            let err = GuestBadSettings::init(settings)
                .err()
                .map(|e| e.to_string());
            let want = format!(
                "guest-bad-settings rejects every settings value (got {} bytes)",
                settings.len()
            );
            assert_eq!(err, Some(want));
        }
    }
}
