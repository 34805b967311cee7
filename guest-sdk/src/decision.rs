//! The answer a policy gives: what the host does with the query next.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// How a denied query is answered.
///
/// Parses from and prints as `nxdomain`, `refused`, `nodata`, the spelling policies use in
/// their settings.
///
/// ```
/// use zonegate_policy::DenyKind;
///
/// assert_eq!("refused".parse::<DenyKind>(), Ok(DenyKind::Refused));
/// assert_eq!(DenyKind::NxDomain.to_string(), "nxdomain");
/// assert!("drop".parse::<DenyKind>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyKind {
    /// RCODE NXDOMAIN: the name does not exist.
    NxDomain,
    /// RCODE REFUSED (Cilium's answer to a denied name).
    Refused,
    /// NOERROR with an empty answer section.
    NoData,
}

impl DenyKind {
    /// The settings spelling: `nxdomain`, `refused` or `nodata`.
    ///
    /// ```
    /// assert_eq!(zonegate_policy::DenyKind::NoData.as_str(), "nodata");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            DenyKind::NxDomain => "nxdomain",
            DenyKind::Refused => "refused",
            DenyKind::NoData => "nodata",
        }
    }
}

impl fmt::Display for DenyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The input was not one of `nxdomain`, `refused`, `nodata`.
///
/// ```
/// let err = "drop".parse::<zonegate_policy::DenyKind>().unwrap_err();
/// assert_eq!(err.to_string(), r#"unknown deny kind "drop" (expected nxdomain, refused or nodata)"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDenyKindError(String);

impl fmt::Display for ParseDenyKindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown deny kind {:?} (expected nxdomain, refused or nodata)",
            self.0
        )
    }
}

impl std::error::Error for ParseDenyKindError {}

impl FromStr for DenyKind {
    type Err = ParseDenyKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nxdomain" => Ok(DenyKind::NxDomain),
            "refused" => Ok(DenyKind::Refused),
            "nodata" => Ok(DenyKind::NoData),
            other => Err(ParseDenyKindError(other.to_owned())),
        }
    }
}

/// The data of a synthesized record.
///
/// ```
/// use std::net::Ipv4Addr;
/// use zonegate_policy::RData;
///
/// let data = RData::A(Ipv4Addr::new(192, 0, 2, 1));
/// assert_ne!(data, RData::Cname("target.example.com.".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// An alias: the absolute target name, with trailing dot.
    Cname(String),
    /// Text strings.
    Txt(Vec<String>),
}

/// A record the policy answers with.
///
/// ```
/// use std::net::Ipv4Addr;
/// use zonegate_policy::{RData, Record};
///
/// let record = Record::new("blocked.example.com.", 60, RData::A(Ipv4Addr::UNSPECIFIED));
/// assert_eq!(record.ttl, 60);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name (absolute, trailing dot).
    pub name: String,
    /// Time to live in seconds.
    pub ttl: u32,
    /// The record data.
    pub data: RData,
}

impl Record {
    /// A record owned by `name`.
    ///
    /// ```
    /// use zonegate_policy::{RData, Record};
    ///
    /// let record = Record::new("alias.example.com.", 300, RData::Cname("www.example.com.".into()));
    /// assert_eq!(record.name, "alias.example.com.");
    /// ```
    pub fn new(name: impl Into<String>, ttl: u32, data: RData) -> Self {
        Record {
            name: name.into(),
            ttl,
            data,
        }
    }
}

/// What to do with the query.
///
/// ```
/// use zonegate_policy::{Action, Decision, DenyKind};
///
/// assert_eq!(Decision::deny(DenyKind::Refused).action, Action::Deny(DenyKind::Refused));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Continue: the next policy decides, and then the cache and the zone's upstream.
    Allow,
    /// Answer with the given denial.
    Deny(DenyKind),
    /// Forward to the named upstream group instead of the zone's own.
    Route(String),
    /// Answer with these records, without asking any upstream.
    Answer(Vec<Record>),
}

/// A policy's verdict for one query: an [`Action`] and an optional memoization hint.
///
/// ```
/// use zonegate_policy::{Action, Decision};
///
/// let decision = Decision::route("corp").cache_for_secs(300);
/// assert_eq!(decision.action, Action::Route("corp".into()));
/// assert_eq!(decision.cache_for, Some(300));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// The same verdict holds for this many seconds for the same (client, view, name, qtype):
    /// the host may memoize it. `None`: ask again for every query.
    pub cache_for: Option<u32>,
}

impl Decision {
    /// Let the query continue to the next policy, the cache and the upstream.
    ///
    /// ```
    /// use zonegate_policy::{Action, Decision};
    ///
    /// assert_eq!(Decision::allow().action, Action::Allow);
    /// assert_eq!(Decision::allow().cache_for, None);
    /// ```
    pub fn allow() -> Self {
        Decision::from(Action::Allow)
    }

    /// Answer with a denial.
    ///
    /// ```
    /// use zonegate_policy::{Action, Decision, DenyKind};
    ///
    /// assert_eq!(Decision::deny(DenyKind::NxDomain).action, Action::Deny(DenyKind::NxDomain));
    /// ```
    pub fn deny(kind: DenyKind) -> Self {
        Decision::from(Action::Deny(kind))
    }

    /// Forward to the upstream group `upstream` instead of the zone's own.
    ///
    /// ```
    /// use zonegate_policy::{Action, Decision};
    ///
    /// assert_eq!(Decision::route("onprem").action, Action::Route("onprem".into()));
    /// ```
    pub fn route(upstream: impl Into<String>) -> Self {
        Decision::from(Action::Route(upstream.into()))
    }

    /// Answer with `records`, without asking any upstream.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use zonegate_policy::{Action, Decision, RData, Record};
    ///
    /// let record = Record::new("a.example.", 30, RData::A(Ipv4Addr::LOCALHOST));
    /// let decision = Decision::answer(vec![record.clone()]);
    /// assert_eq!(decision.action, Action::Answer(vec![record]));
    /// ```
    pub fn answer(records: Vec<Record>) -> Self {
        Decision::from(Action::Answer(records))
    }

    /// Tell the host it may reuse this verdict for `secs` seconds for the same
    /// (client, view, name, qtype). Use it only when the verdict depends on nothing else.
    ///
    /// ```
    /// use zonegate_policy::Decision;
    ///
    /// assert_eq!(Decision::allow().cache_for_secs(60).cache_for, Some(60));
    /// ```
    pub fn cache_for_secs(mut self, secs: u32) -> Self {
        self.cache_for = Some(secs);
        self
    }
}

impl From<Action> for Decision {
    fn from(action: Action) -> Self {
        Decision {
            action,
            cache_for: None,
        }
    }
}
