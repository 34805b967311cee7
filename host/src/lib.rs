//! zonegate: a node-local DNS cache and forwarder whose decisions are programmable in
//! sandboxed WebAssembly. See DESIGN.md for the path of a query; each module below owns one
//! step of it.

pub mod cache;
pub mod config;
pub mod metrics;
pub mod policy;
pub mod upstream;
pub mod wire;
