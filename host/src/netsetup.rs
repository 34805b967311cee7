//! Host-network mode (node-local-dns parity): a dummy interface holding the listen addresses
//! and `raw` NOTRACK + `filter` ACCEPT rules for them, re-checked periodically and removed on
//! exit unless told to keep them.
//!
//! What k8s `node-cache -setupinterface -setupiptables` does: the interface is made through
//! netlink ([`link`]), the rules through the system `iptables`/`ip6tables` with `-w` (lock
//! contention crashed node-local-dns) and tagged `-m comment --comment zonegate` so teardown
//! removes exactly ours ([`rules`], [`iptables`]). Errors are counted in
//! `zonegate_setup_errors_total{kind="interface"|"iptables"}` and never panic.

pub mod iptables;
pub mod link;
pub mod rules;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::metrics::{KindLabels, Metrics};

pub use iptables::Iptables;
pub use link::LinkKind;
pub use rules::{Family, RULE_COMMENT, Rule};

/// Default name of the dummy interface (node-local-dns's).
pub const DEFAULT_INTERFACE: &str = "nodelocaldns";
/// Default interval between re-checks (node-cache's default `-syncinterval` is 60 s).
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(60);

/// What to set up on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupOptions {
    /// `Some(name)`: create (or adopt) a dummy interface of that name holding `addresses`.
    pub interface: Option<String>,
    /// The listen addresses: /32 or /128 on the interface, and the subjects of the rules.
    pub addresses: Vec<IpAddr>,
    /// The kind of link to create (default dummy).
    pub kind: LinkKind,
    /// Install the NOTRACK/ACCEPT rules.
    pub iptables: bool,
    /// Ports the rules cover (default `[53]`).
    pub ports: Vec<u16>,
    /// Leave interface and rules in place on exit.
    pub skip_teardown: bool,
    /// Interval between re-checks.
    pub recheck: Duration,
    /// The programs to run for IPv4 and IPv6 rules (default `iptables`, `ip6tables`; e.g.
    /// `iptables-legacy` on nodes whose kube-proxy uses the legacy backend).
    pub programs: Iptables,
}

impl Default for SetupOptions {
    fn default() -> Self {
        Self {
            interface: Some(DEFAULT_INTERFACE.to_owned()),
            addresses: Vec::new(),
            kind: LinkKind::Dummy,
            iptables: false,
            ports: vec![53],
            skip_teardown: false,
            recheck: DEFAULT_RECHECK,
            programs: Iptables::default(),
        }
    }
}

/// Why a setup step failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid interface name {0:?} (1-15 bytes, no '/', ':', whitespace)")]
    InterfaceName(String),
    #[error("no listen addresses to set up")]
    NoAddresses,
    #[error("netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("netlink {op} {name}: {source}")]
    Netlink {
        op: &'static str,
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {name} exists and is not of kind {kind}; refusing to manage it")]
    NotOurKind { name: String, kind: &'static str },
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {args} timed out")]
    Timeout { program: String, args: String },
    #[error("{program} {args} failed ({status}): {stderr}")]
    Command {
        program: String,
        args: String,
        status: String,
        stderr: String,
    },
}

impl SetupError {
    /// The `kind` label of `zonegate_setup_errors_total` for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InterfaceName(_)
            | Self::Socket(_)
            | Self::Netlink { .. }
            | Self::NotOurKind { .. } => "interface",
            Self::NoAddresses => "config",
            Self::Spawn { .. } | Self::Timeout { .. } | Self::Command { .. } => "iptables",
        }
    }
}

/// What one pass repaired (for logs and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// The interface was created, brought up or given a missing address.
    pub interface: usize,
    /// Rules that were missing and inserted.
    pub rules: usize,
    /// Errors counted during the pass.
    pub errors: usize,
}

/// The node's interface and rules, owned from [`NodeSetup::start`] to [`NodeSetup::teardown`].
pub struct NodeSetup {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    passes: watch::Sender<u64>,
}

struct Inner {
    opts: SetupOptions,
    rules: Vec<Rule>,
    metrics: Arc<Metrics>,
    /// Serialises passes and teardown so a re-check never re-creates what teardown removes.
    op: Mutex<()>,
}

impl NodeSetup {
    /// Creates the interface with its addresses and installs the rules once.
    ///
    /// An interface failure is returned (the listeners could not bind without it); rule
    /// failures are counted and logged, and the re-check retries them. Use
    /// [`NodeSetup::start_strict`] to fail on those too.
    pub async fn start(opts: SetupOptions, metrics: Arc<Metrics>) -> Result<NodeSetup, SetupError> {
        let setup = Self::prepare(opts, metrics)?;
        setup.inner.ensure_interface().await?;
        let _ = setup.inner.ensure_rules().await;
        Ok(setup)
    }

    /// Like [`NodeSetup::start`], but the first rule failure is returned as well.
    pub async fn start_strict(
        opts: SetupOptions,
        metrics: Arc<Metrics>,
    ) -> Result<NodeSetup, SetupError> {
        let setup = Self::prepare(opts, metrics)?;
        setup.inner.ensure_interface().await?;
        setup
            .inner
            .ensure_rules()
            .await
            .map_err(|mut errs| errs.remove(0))?;
        Ok(setup)
    }

    fn prepare(opts: SetupOptions, metrics: Arc<Metrics>) -> Result<NodeSetup, SetupError> {
        if let Some(name) = &opts.interface {
            link::validate_name(name)?;
        }
        if opts.addresses.is_empty() && (opts.interface.is_some() || opts.iptables) {
            return Err(SetupError::NoAddresses);
        }
        let rules = if opts.iptables {
            rules::rules_for(&opts.addresses, &opts.ports)
        } else {
            Vec::new()
        };
        let inner = Arc::new(Inner {
            opts,
            rules,
            metrics,
            op: Mutex::new(()),
        });
        Ok(NodeSetup {
            inner,
            stop: watch::channel(false).0,
            passes: watch::channel(0).0,
        })
    }

    /// The rules this setup maintains.
    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// One re-check pass: re-creates whatever is missing; errors are counted, never returned.
    pub async fn check_once(&self) -> Repairs {
        let _op = self.inner.op.lock().await;
        self.inner.pass().await
    }

    /// A receiver of the number of completed background passes (tests wait on it).
    pub fn passes(&self) -> watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// Background task: every `recheck`, re-creates what is missing and counts errors. Ends
    /// when [`NodeSetup::teardown`] runs (or the setup is dropped).
    pub fn spawn_recheck(&self) -> JoinHandle<()> {
        let inner = Arc::clone(&self.inner);
        let mut stop = self.stop.subscribe();
        let passes = self.passes.clone();
        tokio::spawn(async move {
            let period = inner.opts.recheck.max(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(period) => {}
                }
                let _op = inner.op.lock().await;
                if *stop.borrow() {
                    return;
                }
                inner.pass().await;
                passes.send_modify(|n| *n += 1);
            }
        })
    }

    /// Stops the re-check and removes our rules and the interface, unless `skip_teardown`.
    /// Failures are counted and logged.
    pub async fn teardown(self) {
        self.stop.send_replace(true);
        let _op = self.inner.op.lock().await;
        if self.inner.opts.skip_teardown {
            tracing::info!("setup: skip_teardown set, leaving interface and rules in place");
            return;
        }
        self.inner.remove().await;
    }
}

impl Drop for NodeSetup {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl Inner {
    fn count(&self, err: &SetupError) {
        tracing::warn!(error = %err, "setup");
        self.metrics
            .setup_errors
            .get_or_create(&KindLabels { kind: err.kind() })
            .inc();
    }

    async fn ensure_interface(&self) -> Result<usize, SetupError> {
        let Some(name) = &self.opts.interface else {
            return Ok(0);
        };
        let res = link::ensure(name, self.opts.kind, &self.opts.addresses).await;
        match &res {
            Ok(0) => {}
            Ok(n) => tracing::info!(interface = %name, changes = n, "setup: interface ensured"),
            Err(e) => self.count(e),
        }
        res
    }

    /// Inserts every missing rule; returns how many, or every error (each counted).
    async fn ensure_rules(&self) -> Result<usize, Vec<SetupError>> {
        let mut inserted = 0;
        let mut errors = Vec::new();
        for rule in &self.rules {
            match self.opts.programs.ensure(rule).await {
                Ok(true) => inserted += 1,
                Ok(false) => {}
                Err(e) => {
                    self.count(&e);
                    errors.push(e);
                }
            }
        }
        if inserted > 0 {
            tracing::info!(inserted, "setup: iptables rules inserted");
        }
        if errors.is_empty() {
            Ok(inserted)
        } else {
            Err(errors)
        }
    }

    async fn pass(&self) -> Repairs {
        let mut repairs = Repairs::default();
        match self.ensure_interface().await {
            Ok(n) => repairs.interface = n,
            Err(_) => repairs.errors += 1,
        }
        match self.ensure_rules().await {
            Ok(n) => repairs.rules = n,
            Err(errs) => repairs.errors += errs.len(),
        }
        repairs
    }

    async fn remove(&self) {
        if self.opts.iptables {
            for family in rules::families(&self.opts.addresses) {
                if let Err(errs) = self.opts.programs.sweep(family).await {
                    errs.iter().for_each(|e| self.count(e));
                }
            }
        }
        if let Some(name) = &self.opts.interface {
            match link::delete(name, self.opts.kind).await {
                Ok(_) => {}
                Err(e) => self.count(&e),
            }
        }
    }
}
