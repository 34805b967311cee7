//! The question a policy is asked: one DNS query after the host's ingress checks and zone match.

use std::net::IpAddr;

/// Well-known query types, for comparing with [`Query::qtype`].
///
/// ```
/// use zonegate_policy::{qtype, testing};
///
/// let query = testing::query("example.com").qtype(qtype::AAAA).build();
/// assert_eq!(query.qtype, qtype::AAAA);
/// ```
pub mod qtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server.
    pub const NS: u16 = 2;
    /// Canonical name.
    pub const CNAME: u16 = 5;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Domain name pointer (reverse lookups).
    pub const PTR: u16 = 12;
    /// Mail exchange.
    pub const MX: u16 = 15;
    /// Text strings.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Service locator.
    pub const SRV: u16 = 33;
    /// Service binding.
    pub const SVCB: u16 = 64;
    /// HTTPS service binding.
    pub const HTTPS: u16 = 65;
    /// Any type (obsolete, RFC 8482).
    pub const ANY: u16 = 255;
}

/// How the query reached the host.
///
/// ```
/// use zonegate_policy::{testing, Transport};
///
/// assert_eq!(testing::query("example.com").build().transport, Transport::Udp);
/// assert_eq!(testing::query("example.com").transport(Transport::Tcp).build().transport, Transport::Tcp);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Over UDP.
    Udp,
    /// Over TCP.
    Tcp,
}

/// Who sent the query, where the host knows it (the Kubernetes pod behind the client address).
///
/// ```
/// use zonegate_policy::testing;
///
/// let query = testing::query("example.com").identity("payments", "api-0").label("app", "api").build();
/// let identity = query.identity.expect("set by the builder");
/// assert_eq!(identity.namespace, "payments");
/// assert_eq!(identity.label("app"), Some("api"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's labels, as the host lists them.
    pub labels: Vec<(String, String)>,
}

impl Identity {
    /// The value of label `key`, if the pod has it.
    ///
    /// ```
    /// use zonegate_policy::Identity;
    ///
    /// let identity = Identity { labels: vec![("app".into(), "api".into())], ..Identity::default() };
    /// assert_eq!(identity.label("app"), Some("api"));
    /// assert_eq!(identity.label("tier"), None);
    /// ```
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One DNS question as the host sees it after ingress checks and zone match.
///
/// Build one for tests with [`testing::query`](crate::testing::query).
///
/// ```
/// use zonegate_policy::{qtype, testing};
///
/// let query = testing::query("WWW.Example.com").client("10.1.2.3").build();
/// assert_eq!(query.name, "www.example.com.");
/// assert_eq!(query.qtype, qtype::A);
/// assert_eq!(query.client.to_string(), "10.1.2.3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Query name, lowercase, with the trailing dot (`www.example.com.`).
    pub name: String,
    /// Query type (see [`qtype`]).
    pub qtype: u16,
    /// Query class (1 = IN).
    pub qclass: u16,
    /// The client's address.
    pub client: IpAddr,
    /// The listener's view (`kube`, `vnet`, ...).
    pub view: String,
    /// The zone the name matched, lowercase with trailing dot (`.` for the root).
    pub zone: String,
    /// UDP or TCP.
    pub transport: Transport,
    /// The client's identity, where the host knows it.
    pub identity: Option<Identity>,
}
