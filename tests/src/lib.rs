//! Test support for zonegate: real DNS servers and clients on loopback, and harnesses for the
//! `zonegate` binary and for bind9's `named`.
//!
//! - [`AuthServer`]: an in-process authoritative server (UDP and TCP on one port) whose
//!   misbehaviour is switchable at run time, with counters of what it was asked.
//! - [`Client`]: a DNS client that returns the parsed message, the raw bytes and the elapsed time,
//!   and can send malformed bytes.
//! - [`Zonegate`]: starts the `zonegate` binary with a config in a temp dir and waits until it is
//!   ready. End-to-end tests need the binary built first: `cargo build -p zonegate` (or set
//!   `ZONEGATE_BIN`).
//! - [`wasm_dir`], [`wasm_variant`]: the built policy components, and copies with another
//!   digest.
//! - [`Named`]: starts bind9's `named` as a real authoritative upstream.
//! - [`Load`]: a bounded load generator (rate or concurrency window, UDP or TCP, bounded by
//!   count and time) reporting sent/answered/lost, RCODEs and latency percentiles.
//!
//! Everything listens on and talks to 127.0.0.1 only.

mod auth;
mod client;
mod load;
mod metrics;
mod named;
mod net;
mod wasm;
mod zonegate;

pub use auth::{AuthServer, AuthServerBuilder, Behaviour, EdnsInfo, QueryInfo, Transport};
pub use client::{Client, Response, TcpConn};
pub use load::{Latency, Load, LoadReport, LoadTransport, proc_status_kib};
pub use metrics::{HttpResponse, Metrics, Sample, http_get};
pub use named::{Named, named_binary};
pub use net::{free_port, name};
pub use wasm::{read_file, wasm_dir, wasm_variant};
pub use zonegate::{ReadyInfo, Signal, Zonegate, ZonegateBuilder, minimal_config, zonegate_binary};

/// The wire-format crate the kit speaks, re-exported so tests use the same version.
pub use hickory_proto as proto;
