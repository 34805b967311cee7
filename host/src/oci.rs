//! OCI-distributed policies (off the query path, feeding the policy step): `oci://` sources
//! are pulled from registries, every blob verified against its digest, kept in a
//! content-addressed on-disk cache, and re-resolved every `refresh` so a moved tag is swapped
//! in like a changed file. Layout and operations: docs/oci.md.
//!
//! [`OciStore::resolve`] is synchronous and reads only the cache (snapshot builds call it);
//! [`OciStore::refresh`] talks to the registry. [`prefetch`] runs once at startup,
//! bounded by `pull_timeout`; [`watch`] re-resolves tags and triggers reloads.

mod auth;
mod disk;
pub mod layout;
mod lifecycle;
mod reference;
mod registry;
mod store;
mod tools;

use std::path::PathBuf;

use thiserror::Error;

pub use layout::{Artifact, Bundle};
pub use lifecycle::{build_policies, prefetch, store_for, watch};
pub use reference::OciReference;
pub use store::{OciStore, Refreshed, Resolved};
pub use tools::{ClientOptions, Pulled, inspect, pull, push};

/// Why OCI content could not be had.
#[derive(Debug, Error)]
pub enum OciError {
    #[error("invalid OCI reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    #[error("{reference}: registry: {reason}")]
    Registry { reference: String, reason: String },
    #[error("{reference}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: {reason}")]
    Layout { reference: String, reason: String },
    #[error("{reference}: not in the local cache (never pulled)")]
    NotCached { reference: String },
    #[error("{reference}: no answer from the registry within {timeout:?}")]
    Timeout {
        reference: String,
        timeout: std::time::Duration,
    },
    #[error("OCI cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("docker config {}: {reason}", path.display())]
    DockerConfig { path: PathBuf, reason: String },
}

impl OciError {
    /// The `result` label of `zonegate_oci_pulls_total` for this failure.
    pub fn result_label(&self) -> &'static str {
        match self {
            OciError::DigestMismatch { .. } => "mismatch",
            OciError::Layout { .. } => "invalid",
            _ => "failure",
        }
    }

    /// A layout error of `reference` (an artifact that is not what it should be).
    pub fn layout(reference: impl ToString, reason: impl ToString) -> OciError {
        OciError::Layout {
            reference: reference.to_string(),
            reason: reason.to_string(),
        }
    }
}
