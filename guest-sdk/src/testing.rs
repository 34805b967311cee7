//! Native test support: build the queries the host would send, initialise a policy from its
//! settings, read what it logged. Policies are plain Rust, so `cargo test` needs no runtime.
//!
//! ```
//! use zonegate_policy::{qtype, testing, Decision, Policy, Query};
//!
//! struct OnlyA;
//! impl Policy for OnlyA {
//!     type Error = std::convert::Infallible;
//!     fn init(_settings: &str) -> Result<Self, Self::Error> { Ok(OnlyA) }
//!     fn decide(&self, query: &Query) -> Decision {
//!         if query.qtype == qtype::A { Decision::allow() } else { Decision::deny(zonegate_policy::DenyKind::NoData) }
//!     }
//! }
//!
//! let policy = testing::init::<OnlyA>("{}");
//! assert_eq!(policy.decide(&testing::query("example.com").build()), Decision::allow());
//! ```

use std::net::{IpAddr, Ipv4Addr};

use crate::{Identity, Policy, Query, Transport, name, qtype};

/// Start a query for `name` (any case, trailing dot optional: normalised as the host does).
///
/// Defaults: type A, class IN, client `10.0.0.1`, view `default`, zone `.`, UDP, no identity.
///
/// ```
/// use zonegate_policy::{testing, Transport};
///
/// let query = testing::query("Example.com").build();
/// assert_eq!(query.name, "example.com.");
/// assert_eq!((query.qclass, query.view.as_str(), query.zone.as_str()), (1, "default", "."));
/// assert_eq!(query.transport, Transport::Udp);
/// assert!(query.identity.is_none());
/// ```
pub fn query(name: &str) -> QueryBuilder {
    QueryBuilder {
        query: Query {
            name: name::canonical(name).into_owned(),
            qtype: qtype::A,
            qclass: 1,
            client: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            view: "default".to_owned(),
            zone: ".".to_owned(),
            transport: Transport::Udp,
            identity: None,
        },
    }
}

/// A [`Query`] under construction; see [`query`].
///
/// ```
/// use zonegate_policy::{qtype, testing};
///
/// let query = testing::query("db.corp.example")
///     .qtype(qtype::AAAA)
///     .client("fd00::7")
///     .view("kube")
///     .zone("corp.example")
///     .identity("payments", "api-0")
///     .label("app", "api")
///     .build();
/// assert_eq!(query.zone, "corp.example.");
/// assert_eq!(query.identity.unwrap().labels, vec![("app".into(), "api".into())]);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct QueryBuilder {
    query: Query,
}

impl QueryBuilder {
    /// Set the query type.
    ///
    /// ```
    /// let query = zonegate_policy::testing::query("a.example").qtype(16).build();
    /// assert_eq!(query.qtype, zonegate_policy::qtype::TXT);
    /// ```
    pub fn qtype(mut self, qtype: u16) -> Self {
        self.query.qtype = qtype;
        self
    }

    /// Set the query class.
    ///
    /// ```
    /// let query = zonegate_policy::testing::query("a.example").qclass(3).build();
    /// assert_eq!(query.qclass, 3);
    /// ```
    pub fn qclass(mut self, qclass: u16) -> Self {
        self.query.qclass = qclass;
        self
    }

    /// Set the client address.
    ///
    /// # Panics
    /// If `addr` is not an IPv4 or IPv6 address: a mistake in the test itself.
    ///
    /// ```
    /// let query = zonegate_policy::testing::query("a.example").client("192.0.2.7").build();
    /// assert_eq!(query.client.to_string(), "192.0.2.7");
    /// ```
    pub fn client(mut self, addr: &str) -> Self {
        self.query.client = addr
            .parse()
            .unwrap_or_else(|_| panic!("testing::query: {addr:?} is not an IP address"));
        self
    }

    /// Set the listener's view.
    ///
    /// ```
    /// let query = zonegate_policy::testing::query("a.example").view("vnet").build();
    /// assert_eq!(query.view, "vnet");
    /// ```
    pub fn view(mut self, view: &str) -> Self {
        self.query.view = view.to_owned();
        self
    }

    /// Set the matched zone (normalised like the name).
    ///
    /// ```
    /// let query = zonegate_policy::testing::query("a.example").zone("Example").build();
    /// assert_eq!(query.zone, "example.");
    /// ```
    pub fn zone(mut self, zone: &str) -> Self {
        self.query.zone = name::canonical(zone).into_owned();
        self
    }

    /// Set the transport.
    ///
    /// ```
    /// use zonegate_policy::{testing, Transport};
    ///
    /// let query = testing::query("a.example").transport(Transport::Tcp).build();
    /// assert_eq!(query.transport, Transport::Tcp);
    /// ```
    pub fn transport(mut self, transport: Transport) -> Self {
        self.query.transport = transport;
        self
    }

    /// Give the client a Kubernetes identity: its namespace and pod name.
    ///
    /// ```
    /// let query = zonegate_policy::testing::query("a.example").identity("payments", "api-0").build();
    /// assert_eq!(query.identity.unwrap().pod, "api-0");
    /// ```
    pub fn identity(mut self, namespace: &str, pod: &str) -> Self {
        let identity = self.query.identity.get_or_insert_with(Identity::default);
        identity.namespace = namespace.to_owned();
        identity.pod = pod.to_owned();
        self
    }

    /// Add a pod label (giving the client an identity in namespace `default` if it has none).
    ///
    /// ```
    /// let query = zonegate_policy::testing::query("a.example").label("app", "web").build();
    /// let identity = query.identity.unwrap();
    /// assert_eq!((identity.namespace.as_str(), identity.label("app")), ("default", Some("web")));
    /// ```
    pub fn label(mut self, key: &str, value: &str) -> Self {
        let identity = self.query.identity.get_or_insert_with(|| Identity {
            namespace: "default".to_owned(),
            ..Identity::default()
        });
        identity.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The finished query.
    ///
    /// ```
    /// let query = zonegate_policy::testing::query("a.example").build();
    /// assert_eq!(query.name, "a.example.");
    /// ```
    pub fn build(self) -> Query {
        self.query
    }
}

/// Initialise policy `P` from `settings` as the host would.
///
/// # Panics
/// If `P` rejects the settings, with its message: the test's settings are wrong.
///
/// ```
/// use zonegate_policy::{testing, Decision, Policy, Query};
///
/// struct AllowAll;
/// impl Policy for AllowAll {
///     type Error = String;
///     fn init(settings: &str) -> Result<Self, String> {
///         if settings == "{}" { Ok(AllowAll) } else { Err(format!("unexpected settings {settings}")) }
///     }
///     fn decide(&self, _: &Query) -> Decision { Decision::allow() }
/// }
///
/// let policy = testing::init::<AllowAll>("{}");
/// assert_eq!(policy.decide(&testing::query("a.example").build()), Decision::allow());
/// ```
pub fn init<P: Policy>(settings: &str) -> P {
    P::init(settings).unwrap_or_else(|err| panic!("the policy rejected its settings: {err}"))
}

/// Everything [`log`](crate::log) wrote on this thread since the last call, oldest first.
/// Natively only: in a component the lines go to the host and this is always empty.
///
/// ```
/// use zonegate_policy::{log, testing, Level};
///
/// log(Level::Warn, "slow");
/// assert_eq!(testing::take_logs(), vec![(Level::Warn, "slow".to_string())]);
/// assert!(testing::take_logs().is_empty());
/// ```
pub fn take_logs() -> Vec<(crate::Level, String)> {
    crate::log::imp::take()
}
