//! One-shot registry operations behind `zonegate policy push|pull|inspect`: no cache, every
//! blob still verified.

use std::path::PathBuf;
use std::time::Duration;

use super::layout::{Artifact, Bundle};
use super::registry::Registry;
use super::{OciError, OciReference};

/// How the CLI reaches a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Speak plain HTTP to the reference's registry.
    pub insecure: bool,
    pub docker_config: Option<PathBuf>,
    pub timeout: Duration,
}

impl ClientOptions {
    fn registry(&self, r: &OciReference) -> Result<Registry, OciError> {
        let insecure: Vec<String> = if self.insecure {
            vec![r.registry.clone()]
        } else {
            Vec::new()
        };
        Registry::new(&insecure, self.docker_config.as_deref(), self.timeout)
    }
}

/// A pulled artifact with its blobs.
pub struct Pulled {
    pub digest: String,
    pub manifest: Vec<u8>,
    pub artifact: Artifact,
    /// (policy name, component bytes), in layer order.
    pub policies: Vec<(String, Vec<u8>)>,
    /// The settings layer (JSON object, policy name → settings).
    pub settings: Option<Vec<u8>>,
}

/// Uploads a bundle under `r`'s tag; returns the manifest digest.
pub async fn push(
    r: &OciReference,
    bundle: &Bundle,
    opts: &ClientOptions,
) -> Result<String, OciError> {
    let built = bundle.build().map_err(|e| OciError::layout(r, e))?;
    opts.registry(r)?.push(r, &built).await?;
    Ok(built.digest)
}

/// The manifest, its digest and what it means.
pub async fn inspect(
    r: &OciReference,
    opts: &ClientOptions,
) -> Result<(Vec<u8>, String, Artifact), OciError> {
    let (manifest, digest) = opts.registry(r)?.manifest(r).await?;
    let artifact = Artifact::parse(&manifest).map_err(|reason| OciError::layout(r, reason))?;
    Ok((manifest, digest, artifact))
}

/// Manifest and every policy and settings layer, verified.
pub async fn pull(r: &OciReference, opts: &ClientOptions) -> Result<Pulled, OciError> {
    let registry = opts.registry(r)?;
    let (manifest, digest) = registry.manifest(r).await?;
    let artifact = Artifact::parse(&manifest).map_err(|reason| OciError::layout(r, reason))?;
    let mut policies = Vec::new();
    for (i, (name, desc)) in artifact.policies.iter().enumerate() {
        let name = name.clone().unwrap_or_else(|| format!("policy{i}"));
        policies.push((name, registry.blob(r, desc).await?));
    }
    let settings = match &artifact.settings {
        Some(d) => Some(registry.blob(r, d).await?),
        None => None,
    };
    Ok(Pulled {
        digest,
        manifest,
        artifact,
        policies,
        settings,
    })
}
