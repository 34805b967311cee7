//! How OCI content reaches the policy engine: [`prefetch`] once at startup (bounded),
//! [`build_policies`] inside every snapshot build (cache only, candidates checked by loading
//! them), [`watch`] re-resolving tags every `refresh` and asking for a reload on news.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::store::{OciStore, Refreshed};
use super::{OciError, OciReference};
use crate::config::{Config, OnError, PolicySource, PolicySpec};
use crate::listener::Shared;
use crate::metrics::{Label, Metrics, PolicyLabels, ResultLabels};
use crate::policy::{Policies, PolicyEngine, PolicyError, read_source};
use crate::reload::Reloader;

/// How often [`watch`] looks for a configuration that gained `oci://` sources.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// The store for `config`: `previous` when the `[oci]` options are unchanged, a new one when
/// they changed, `None` when no policy has an `oci://` source.
pub fn store_for(config: &Config, previous: Option<&Arc<OciStore>>) -> Option<Arc<OciStore>> {
    let any = config
        .policies
        .values()
        .any(|p| matches!(p.source, PolicySource::Oci(_)));
    if !any {
        return None;
    }
    match previous {
        Some(p) if *p.options() == config.oci => Some(p.clone()),
        _ => Some(Arc::new(OciStore::new(config.oci.clone()))),
    }
}

/// Every artifact the configuration references, once each (bundle fragments dropped).
fn artifacts(config: &Config) -> Vec<OciReference> {
    let mut out: Vec<OciReference> = Vec::new();
    for p in config.policies.values() {
        let PolicySource::Oci(r) = &p.source else {
            continue;
        };
        let mut r = r.clone();
        r.policy = None;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

fn count(metrics: &Metrics, result: &'static str) {
    metrics
        .oci_pulls
        .get_or_create(&ResultLabels { result })
        .inc();
}

/// Counts and logs one refresh; true when it brought new content.
fn report(
    metrics: &Metrics,
    store: &OciStore,
    r: &OciReference,
    result: Result<Refreshed, OciError>,
    startup: bool,
) -> bool {
    match result {
        Ok(Refreshed::New(digest)) => {
            count(metrics, "success");
            tracing::info!(reference = %r, %digest, "pulled policy artifact");
            true
        }
        Ok(Refreshed::Unchanged) => {
            count(metrics, "unchanged");
            false
        }
        Err(e) => {
            count(metrics, e.result_label());
            if !startup {
                tracing::warn!(reference = %r, "OCI refresh failed, the running version keeps serving: {e}");
            } else if store.has_cached(r) {
                count(metrics, "cache");
                tracing::warn!(reference = %r, "registry unavailable, starting with the last good cached version: {e}");
            } else {
                tracing::error!(reference = %r, "cannot pull and nothing cached, the policy's on_error applies until a pull succeeds: {e}");
            }
            false
        }
    }
}

/// Startup: pulls every referenced artifact once, all at the same time, each bounded by
/// `pull_timeout`, so the first snapshot finds them in the cache. Never fails: what could
/// not be pulled is served from the cache or left to the policy's `on_error`.
pub async fn prefetch(config: &Config, metrics: &Arc<Metrics>) -> Option<Arc<OciStore>> {
    let store = store_for(config, None)?;
    let refs = artifacts(config);
    let results = join_all(refs.iter().map(|r| store.refresh(r))).await;
    for (r, result) in refs.iter().zip(results) {
        report(metrics, &store, r, result, true);
    }
    Some(store)
}

/// Runs until aborted: every `refresh` (plus jitter) re-resolves the current snapshot's
/// references; new content triggers a normal reload (compile, init, swap).
pub async fn watch(shared: Arc<Shared>, reloader: Arc<Reloader>) {
    loop {
        let store = shared.snapshot.load().oci.clone();
        let Some(store) = store else {
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        };
        tokio::time::sleep(store.next_delay()).await;
        let snapshot = shared.snapshot.load_full();
        let refs = artifacts(&snapshot.config);
        let metrics = snapshot.metrics.clone();
        drop(snapshot);
        let results = join_all(refs.iter().map(|r| store.refresh(r))).await;
        let mut new = false;
        for (r, result) in refs.iter().zip(results) {
            new |= report(&metrics, &store, r, result, false);
        }
        if new || store.has_candidates() {
            let _ = reloader.reload("OCI update").await;
        }
        let removed = store.gc(&refs);
        if removed > 0 {
            tracing::info!(removed, "OCI cache: removed unreferenced blobs");
        }
    }
}

/// A candidate digest a build used.
struct Used {
    policy: String,
    reference: OciReference,
    digest: String,
}

/// [`Policies::build_with`] with `oci://` modules from the store's cache. A candidate (newly
/// pulled) that fails to load, or routes to an upstream group `group_exists` denies, is
/// rejected and the build retried with the last good version; a policy with nothing cached is
/// left out and marked unavailable (its `on_error` decides).
pub fn build_policies(
    engine: &PolicyEngine,
    specs: &BTreeMap<String, PolicySpec>,
    store: Option<&OciStore>,
    previous: Option<&Policies>,
    metrics: &Arc<Metrics>,
    group_exists: &dyn Fn(&str) -> bool,
) -> Result<Policies, PolicyError> {
    let Some(store) = store else {
        return Policies::build(engine, specs, previous, metrics);
    };
    let (e, used) = match attempt(engine, specs, store, previous, metrics, group_exists) {
        Ok(p) => return Ok(p),
        Err(failed) => failed,
    };
    let culprit = failed_policy(&e);
    let bad: Vec<&Used> = used
        .iter()
        .filter(|u| Some(u.policy.as_str()) == culprit)
        .collect();
    if bad.is_empty() {
        return Err(e);
    }
    for u in bad {
        store.reject(&u.reference, &u.digest);
        count(metrics, "rejected");
        tracing::error!(
            policy = %u.policy, reference = %u.reference, digest = %u.digest,
            "new OCI version rejected, keeping the last good one: {e}"
        );
    }
    attempt(engine, specs, store, previous, metrics, group_exists).map_err(|(e, _)| e)
}

fn attempt(
    engine: &PolicyEngine,
    specs: &BTreeMap<String, PolicySpec>,
    store: &OciStore,
    previous: Option<&Policies>,
    metrics: &Arc<Metrics>,
    group_exists: &dyn Fn(&str) -> bool,
) -> Result<Policies, (PolicyError, Vec<Used>)> {
    let mut effective = BTreeMap::new();
    let mut modules: HashMap<String, Vec<u8>> = HashMap::new();
    let mut used = Vec::new();
    let mut unavailable: Vec<(String, OnError)> = Vec::new();
    for (name, spec) in specs {
        let PolicySource::Oci(r) = &spec.source else {
            effective.insert(name.clone(), spec.clone());
            continue;
        };
        let gauge = metrics.oci_unavailable.get_or_create(&PolicyLabels {
            policy: Label::from(name.as_str()),
        });
        let res = match store.resolve(r, name) {
            Ok(found) => found,
            Err(e) => {
                gauge.set(1);
                tracing::warn!(policy = %name, on_error = ?spec.on_error, "OCI policy unavailable: {e}");
                unavailable.push((name.clone(), spec.on_error));
                continue;
            }
        };
        gauge.set(0);
        let mut spec = spec.clone();
        if let Some(defaults) = res.settings.filter(|_| no_settings(&spec.settings)) {
            spec.settings = defaults;
        }
        if res.candidate {
            used.push(Used {
                policy: name.clone(),
                reference: r.clone(),
                digest: res.digest,
            });
        }
        modules.insert(name.clone(), res.wasm);
        effective.insert(name.clone(), spec);
    }
    let fetch = |spec: &PolicySpec| match modules.get(&spec.name) {
        Some(bytes) => Ok(bytes.clone()),
        None => read_source(spec),
    };
    let mut built = match Policies::build_with(engine, &effective, &fetch, previous, metrics) {
        Ok(p) => p,
        Err(e) => return Err((e, used)),
    };
    // A new version declaring a route the configuration lacks is a bad version: caught here,
    // before it is recorded as the last good one (the snapshot checks every policy again).
    let candidates = used.iter().map(|u| u.policy.as_str());
    if let Some((policy, group)) = built.unknown_route(candidates, group_exists) {
        let e = PolicyError::Load {
            policy,
            reason: format!("routes to upstream group {group:?}, which is not configured"),
        };
        return Err((e, used));
    }
    for (name, on_error) in unavailable {
        built.set_unavailable(&name, on_error);
    }
    for u in used {
        if let Err(e) = store.commit(&u.reference, &u.digest) {
            tracing::warn!(reference = %u.reference, "cannot record the last good digest: {e}");
        }
        tracing::info!(policy = %u.policy, reference = %u.reference, digest = %u.digest, "OCI policy loaded");
    }
    Ok(built)
}

/// Config settings win; an absent (or empty) `settings` table takes the artifact's defaults.
fn no_settings(settings: &str) -> bool {
    matches!(settings.trim(), "" | "{}" | "null")
}

fn failed_policy(e: &PolicyError) -> Option<&str> {
    match e {
        PolicyError::Load { policy, .. }
        | PolicyError::Read { policy, .. }
        | PolicyError::Compile { policy, .. }
        | PolicyError::WrongWorld { policy, .. }
        | PolicyError::InitRejected { policy, .. }
        | PolicyError::Guest { policy, .. } => Some(policy),
        PolicyError::Engine(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_settings_take_the_artifact_defaults() {
        for (s, want) in [
            ("{}", true),
            ("", true),
            ("null", true),
            (r#"{"a":1}"#, false),
        ] {
            assert_eq!(no_settings(s), want, "{s:?}");
        }
    }
}
