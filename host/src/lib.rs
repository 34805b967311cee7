//! zonegate: a node-local DNS cache and forwarder whose decisions are programmable in
//! sandboxed WebAssembly. See DESIGN.md for the path of a query; each module below owns one
//! step of it.

pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub(crate) mod fsutil;
pub mod listener;
pub mod metrics;
pub(crate) mod mmsg;
pub mod netsetup;
pub mod oci;
pub mod pipeline;
pub mod policy;
pub mod ratelimit;
pub mod reload;
pub mod request;
pub mod upstream;
pub mod wire;
pub mod zones;

/// Our EDNS0 UDP payload size unless configured otherwise (DNS flag day 2020).
pub const DEFAULT_UDP_SIZE: u16 = 1232;
