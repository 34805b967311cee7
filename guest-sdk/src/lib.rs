//! Write zonegate DNS policies in plain Rust.
//!
//! A policy is a type implementing [`Policy`]: `init` parses its JSON settings once per load,
//! `decide` answers each [`Query`] with a [`Decision`]. [`export!`] turns it into the
//! `zonegate:policy@0.2.0` component when built for `wasm32-wasip2`; natively it stays a plain
//! type that `cargo test` exercises with [`testing`].
//!
//! Matchers follow Cilium 1.19's `toFQDNs` rules: [`Selector`] (`matchName`, `matchPattern`,
//! `suffix`), [`NameSet`] and [`NameMap`] for many of them, [`DomainSet`] for blocklists and
//! [`CidrSet`] for client addresses.
//!
//! ```
//! use zonegate_policy::{testing, Decision, DenyKind, NameSet, Policy, Query, Selector, SelectorError};
//!
//! /// Allow only names under `*.example.com`; refuse the rest.
//! pub struct ExampleOnly {
//!     allowed: NameSet,
//! }
//!
//! impl Policy for ExampleOnly {
//!     type Error = SelectorError;
//!
//!     fn init(_settings: &str) -> Result<Self, Self::Error> {
//!         Ok(ExampleOnly { allowed: [Selector::pattern("*.example.com")?].into_iter().collect() })
//!     }
//!
//!     fn decide(&self, query: &Query) -> Decision {
//!         if self.allowed.contains(&query.name) {
//!             Decision::allow().cache_for_secs(60)
//!         } else {
//!             Decision::deny(DenyKind::Refused).cache_for_secs(60)
//!         }
//!     }
//! }
//!
//! zonegate_policy::export!(ExampleOnly);
//!
//! let policy = testing::init::<ExampleOnly>("{}");
//! assert_eq!(policy.decide(&testing::query("www.example.com").build()), Decision::allow().cache_for_secs(60));
//! assert_eq!(
//!     policy.decide(&testing::query("example.org").build()).action,
//!     zonegate_policy::Action::Deny(DenyKind::Refused),
//! );
//! ```
#![deny(missing_docs)]

mod cidr;
mod decision;
mod domain_set;
mod log;
mod name;
mod name_set;
mod query;
mod selector;
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private {
    //! Used by `export!` only; not part of the API.
    pub use crate::guest::*;
}
#[cfg(target_arch = "wasm32")]
mod guest;

pub use cidr::{Cidr, CidrError, CidrSet};
pub use decision::{Action, Decision, DenyKind, ParseDenyKindError, RData, Record};
pub use domain_set::DomainSet;
pub use log::{Level, log};
pub use name::SelectorError;
pub use name_set::{NameMap, NameSet};
pub use query::{Identity, Query, Transport, qtype};
pub use selector::Selector;

/// The README's code, compiled and run as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// A DNS policy: built once from its settings, then asked about each query.
///
/// The host creates one instance per worker and may recreate it at any time (after a trap, a
/// timeout or a reload), so `decide` must depend only on the settings and the query.
///
/// ```
/// use zonegate_policy::{testing, Decision, DenyKind, Policy, Query};
///
/// struct DenyAll(DenyKind);
///
/// impl Policy for DenyAll {
///     type Error = zonegate_policy::ParseDenyKindError;
///
///     fn init(settings: &str) -> Result<Self, Self::Error> {
///         Ok(DenyAll(settings.trim_matches('"').parse()?))
///     }
///
///     fn decide(&self, _query: &Query) -> Decision {
///         Decision::deny(self.0)
///     }
/// }
///
/// let policy = testing::init::<DenyAll>(r#""nxdomain""#);
/// assert_eq!(policy.decide(&testing::query("a.example").build()), Decision::deny(DenyKind::NxDomain));
/// assert!(DenyAll::init(r#""drop""#).is_err());
/// ```
pub trait Policy: Sized + 'static {
    /// Why settings were rejected; its message goes back to the host and into its log, so it
    /// should name the bad field or value.
    type Error: std::fmt::Display;

    /// Parse and validate `settings` (the JSON from the host's configuration).
    ///
    /// ```
    /// # use zonegate_policy::{Decision, Policy, Query};
    /// struct Strict;
    /// impl Policy for Strict {
    ///     type Error = String;
    ///     fn init(settings: &str) -> Result<Self, String> {
    ///         if settings.trim() == "{}" { Ok(Strict) } else { Err("this policy takes no settings".into()) }
    ///     }
    ///     fn decide(&self, _: &Query) -> Decision { Decision::allow() }
    /// }
    /// assert!(Strict::init(r#"{"x": 1}"#).is_err());
    /// ```
    fn init(settings: &str) -> Result<Self, Self::Error>;

    /// Decide one query. Panicking traps the instance: the host applies the policy's
    /// `on_error` and starts a fresh one.
    ///
    /// ```
    /// # use zonegate_policy::{testing, Decision, DenyKind, Policy, Query};
    /// struct NoAny;
    /// impl Policy for NoAny {
    ///     type Error = std::convert::Infallible;
    ///     fn init(_: &str) -> Result<Self, Self::Error> { Ok(NoAny) }
    ///     fn decide(&self, query: &Query) -> Decision {
    ///         if query.qtype == zonegate_policy::qtype::ANY { Decision::deny(DenyKind::NoData) } else { Decision::allow() }
    ///     }
    /// }
    /// let query = testing::query("example.com").qtype(zonegate_policy::qtype::ANY).build();
    /// assert_eq!(NoAny.decide(&query), Decision::deny(DenyKind::NoData));
    /// ```
    fn decide(&self, query: &Query) -> Decision;

    /// The upstream groups [`Decision::route`] may name. The host checks at load time that
    /// each exists in its configuration and refuses the policy otherwise; a route to a group
    /// not listed here is answered SERVFAIL. Called once, after `init`. Default: none.
    ///
    /// ```
    /// # use zonegate_policy::{testing, Decision, Policy, Query};
    /// struct CorpToOnPrem;
    /// impl Policy for CorpToOnPrem {
    ///     type Error = std::convert::Infallible;
    ///     fn init(_: &str) -> Result<Self, Self::Error> { Ok(CorpToOnPrem) }
    ///     fn decide(&self, query: &Query) -> Decision {
    ///         if query.name.ends_with(".corp.example.") { Decision::route("onprem") } else { Decision::allow() }
    ///     }
    ///     fn routes(&self) -> Vec<String> { vec!["onprem".into()] }
    /// }
    /// assert_eq!(CorpToOnPrem.routes(), ["onprem"]);
    /// ```
    fn routes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Export a [`Policy`] as the component's `init`, `decide` and `answer` (world
/// `zonegate:policy/policy@0.2.0`).
///
/// Use it once, at the root of a `cdylib` crate. For `wasm32` it generates the component
/// exports: `init` builds and keeps the instance (an error rejects the load) and declares its
/// [`Policy::routes`], `decide` asks it, `answer` hands over an answer decision's records; a
/// `decide` before a successful `init` is answered REFUSED and logged. Natively it only checks
/// that the type is a `Policy`, so the crate still builds and tests as plain Rust.
///
/// ```
/// use zonegate_policy::{Decision, Policy, Query};
///
/// struct AllowAll;
/// impl Policy for AllowAll {
///     type Error = std::convert::Infallible;
///     fn init(_: &str) -> Result<Self, Self::Error> { Ok(AllowAll) }
///     fn decide(&self, _: &Query) -> Decision { Decision::allow() }
/// }
///
/// zonegate_policy::export!(AllowAll);
/// ```
#[macro_export]
macro_rules! export {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct ZonegatePolicyExports;

            impl $crate::__private::Guest for ZonegatePolicyExports {
                fn init(
                    settings: $crate::__private::String,
                ) -> ::core::result::Result<$crate::__private::WitSetup, $crate::__private::String>
                {
                    $crate::__private::init::<$policy>(settings)
                }

                fn decide(query: $crate::__private::WitQuery) -> $crate::__private::WitDecision {
                    $crate::__private::decide(query)
                }

                fn answer() -> $crate::__private::Vec<$crate::__private::WitAnswerRecord> {
                    $crate::__private::answer()
                }
            }

            $crate::__private::bindings::__zonegate_export_world!(
                ZonegatePolicyExports with_types_in $crate::__private::bindings
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn exported<P: $crate::Policy>() {}
            exported::<$policy>();
        };
    };
}
