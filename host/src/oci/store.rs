//! [`OciStore`]: the cache of one `[oci]` configuration. Reads are synchronous and local;
//! refreshes talk to the registry. A newly pulled digest is a *candidate* until a snapshot
//! built from it succeeds (then it is committed as the last good digest) or fails (then it
//! is rejected and not tried again until the tag moves).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::OciError;
use super::disk::{Disk, GcStats};
use super::layout::{Artifact, settings_for};
use super::reference::OciReference;
use super::registry::Registry;
use crate::config::OciOptions;

/// A policy module from the cache.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest digest.
    pub digest: String,
    /// The policy's name in the artifact.
    pub name: String,
    pub wasm: Vec<u8>,
    /// Default settings from the artifact's settings layer, JSON.
    pub settings: Option<String>,
    /// Pulled but not yet loaded successfully.
    pub candidate: bool,
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// Nothing new: the cache already has what the reference names.
    Unchanged,
    /// New content, verified and cached: a reload will pick it up.
    New(String),
}

#[derive(Default)]
struct TagState {
    candidate: Option<String>,
    rejected: HashSet<String>,
}

/// Pulled policy content for one `[oci]` configuration.
pub struct OciStore {
    options: OciOptions,
    disk: Disk,
    registry: Mutex<Option<Arc<Registry>>>,
    tags: Mutex<HashMap<String, TagState>>,
}

impl OciStore {
    /// Nothing is read or created until content is needed.
    pub fn new(options: OciOptions) -> Self {
        OciStore {
            disk: Disk::new(&options.cache_dir),
            options,
            registry: Mutex::new(None),
            tags: Mutex::new(HashMap::new()),
        }
    }

    pub fn options(&self) -> &OciOptions {
        &self.options
    }

    fn tags(&self) -> std::sync::MutexGuard<'_, HashMap<String, TagState>> {
        self.tags.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn registry(&self) -> Result<Arc<Registry>, OciError> {
        let mut slot = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = &*slot {
            return Ok(r.clone());
        }
        let o = &self.options;
        let r = Arc::new(Registry::new(
            &o.insecure,
            o.docker_config.as_deref(),
            o.pull_timeout,
        )?);
        *slot = Some(r.clone());
        Ok(r)
    }

    /// The manifest digest to use now: the pinned one; else a pending candidate; else the
    /// last good one.
    fn current(&self, r: &OciReference) -> Option<(String, bool)> {
        if let Some(d) = &r.digest {
            return Some((d.clone(), false));
        }
        let key = r.artifact();
        if let Some(c) = self.tags().get(&key).and_then(|t| t.candidate.clone()) {
            return Some((c, true));
        }
        self.disk.read_ref(&key).map(|rec| (rec.digest, false))
    }

    /// Whether the cache holds usable content for the reference.
    pub fn has_cached(&self, r: &OciReference) -> bool {
        self.current(r).is_some_and(|(d, _)| self.complete(&d))
    }

    /// The module for policy `policy` (the config's name) from the cache only.
    pub fn resolve(&self, r: &OciReference, policy: &str) -> Result<Resolved, OciError> {
        let not_cached = || OciError::NotCached {
            reference: r.to_string(),
        };
        let layout = |reason: String| OciError::layout(r, reason);
        let (digest, candidate) = self.current(r).ok_or_else(not_cached)?;
        let manifest = self.disk.read_blob(&digest)?.ok_or_else(not_cached)?;
        let art = Artifact::parse(&manifest).map_err(layout)?;
        let (name, desc) = art.select(r.policy.as_deref(), policy).map_err(layout)?;
        let wasm = self.disk.read_blob(&desc.digest)?.ok_or_else(not_cached)?;
        let settings = match &art.settings {
            Some(d) => {
                let bytes = self.disk.read_blob(&d.digest)?.ok_or_else(not_cached)?;
                settings_for(&bytes, &name).map_err(layout)?
            }
            None => None,
        };
        Ok(Resolved {
            digest,
            name,
            wasm,
            settings,
            candidate,
        })
    }

    /// Manifest and every blob it names are cached.
    fn complete(&self, digest: &str) -> bool {
        let Ok(Some(m)) = self.disk.read_blob(digest) else {
            return false;
        };
        Artifact::parse(&m).is_ok_and(|a| {
            a.descriptors()
                .iter()
                .all(|d| self.disk.has_blob(&d.digest))
        })
    }

    /// Asks the registry what the reference names now and caches new content (bounded by
    /// `pull_timeout`).
    pub async fn refresh(&self, r: &OciReference) -> Result<Refreshed, OciError> {
        let timeout = self.options.pull_timeout;
        match tokio::time::timeout(timeout, self.refresh_unbounded(r)).await {
            Ok(result) => result,
            Err(_) => Err(OciError::Timeout {
                reference: r.to_string(),
                timeout,
            }),
        }
    }

    async fn refresh_unbounded(&self, r: &OciReference) -> Result<Refreshed, OciError> {
        if let Some(pinned) = &r.digest
            && self.complete(pinned)
        {
            return Ok(Refreshed::Unchanged);
        }
        let registry = self.registry()?;
        let (manifest, digest) = registry.manifest(r).await?;
        if r.digest.is_some() {
            self.download(&registry, r, &manifest, &digest).await?;
            return Ok(Refreshed::New(digest));
        }
        let key = r.artifact();
        let good = self.disk.read_ref(&key).map(|rec| rec.digest);
        {
            let tags = self.tags();
            let state = tags.get(&key);
            let seen = state.is_some_and(|t| {
                t.rejected.contains(&digest) || t.candidate.as_deref() == Some(&digest)
            });
            if seen {
                return Ok(Refreshed::Unchanged);
            }
        }
        if good.as_deref() == Some(&digest) && self.complete(&digest) {
            return Ok(Refreshed::Unchanged);
        }
        self.download(&registry, r, &manifest, &digest).await?;
        if good.as_deref() == Some(&digest) {
            return Ok(Refreshed::Unchanged);
        }
        self.tags().entry(key).or_default().candidate = Some(digest.clone());
        Ok(Refreshed::New(digest))
    }

    /// Fetches and verifies every missing blob, then stores the manifest (last, so a
    /// cached manifest always has its blobs).
    async fn download(
        &self,
        registry: &Registry,
        r: &OciReference,
        manifest: &[u8],
        digest: &str,
    ) -> Result<(), OciError> {
        let art = Artifact::parse(manifest).map_err(|reason| OciError::layout(r, reason))?;
        for desc in art.descriptors() {
            if !self.disk.has_blob(&desc.digest) {
                let bytes = registry.blob(r, desc).await?;
                self.disk.write_blob(&desc.digest, &bytes)?;
            }
        }
        self.disk.write_blob(digest, manifest)
    }

    /// A candidate loaded: it becomes the last good digest (also across restarts).
    pub fn commit(&self, r: &OciReference, digest: &str) -> Result<(), OciError> {
        if r.digest.is_some() {
            return Ok(());
        }
        let key = r.artifact();
        self.disk.write_ref(&key, digest)?;
        let mut tags = self.tags();
        if let Some(t) = tags.get_mut(&key)
            && t.candidate.as_deref() == Some(digest)
        {
            t.candidate = None;
        }
        Ok(())
    }

    /// A candidate failed to load: the last good digest stays; it is not retried until the
    /// tag moves.
    pub fn reject(&self, r: &OciReference, digest: &str) {
        let mut tags = self.tags();
        let t = tags.entry(r.artifact()).or_default();
        if t.candidate.as_deref() == Some(digest) {
            t.candidate = None;
        }
        t.rejected.insert(digest.to_string());
    }

    /// Whether a candidate is waiting to be loaded.
    pub fn has_candidates(&self) -> bool {
        self.tags().values().any(|t| t.candidate.is_some())
    }

    /// Removes cached content no reference in `in_use` needs, beyond `max_cache_size`.
    pub fn gc(&self, in_use: &[OciReference]) -> usize {
        let mut keep = HashSet::new();
        let mut digests: Vec<String> = Vec::new();
        for r in in_use {
            digests.extend(self.current(r).map(|(d, _)| d));
            if r.digest.is_none() {
                digests.extend(self.disk.read_ref(&r.artifact()).map(|rec| rec.digest));
            }
        }
        for d in digests {
            if let Ok(Some(m)) = self.disk.read_blob(&d)
                && let Ok(art) = Artifact::parse(&m)
            {
                keep.extend(art.descriptors().iter().map(|x| x.digest.clone()));
            }
            keep.insert(d);
        }
        let GcStats { removed, .. } = self.disk.gc(&keep, self.options.max_cache_size);
        removed
    }

    /// `refresh` plus a random share of the jitter.
    pub fn next_delay(&self) -> Duration {
        let o = &self.options;
        let jitter = o.jitter.max_delay(o.refresh);
        let extra = match jitter.as_millis() {
            0 => 0,
            ms => rand::random_range(0..u64::try_from(ms).unwrap_or(u64::MAX)),
        };
        o.refresh + Duration::from_millis(extra)
    }
}
