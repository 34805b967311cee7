//! The artifact layout (docs/oci.md): CNCF Wasm OCI artifacts, one policy or a bundle of
//! several, with an optional settings layer. Builds manifests for `policy push` and reads them
//! back on pull.

use std::collections::BTreeMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use sha2::{Digest as _, Sha256};

/// OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// CNCF Wasm artifact config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// CNCF Wasm artifact layer: one component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The older wasm-to-oci layout, accepted on pull.
pub const LEGACY_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Default settings of a bundle: a JSON object, policy name → settings.
pub const SETTINGS_MEDIA_TYPE: &str = "application/vnd.zonegate.policy.settings.v1+json";

/// On each wasm layer: the policy's name. On the manifest: the names, comma-separated.
pub const ANNOTATION_POLICY: &str = "io.zonegate.policy.name";
/// On the manifest: the WIT world the policies implement.
pub const ANNOTATION_WORLD: &str = "io.zonegate.policy.world";
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// The newest policy world (what the SDK builds): the label of a bundle that names none.
pub use crate::policy::WORLD;

/// `sha256:<hex>` of some bytes.
pub fn sha256(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in sum {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// What `policy push` uploads.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// (policy name, component bytes), in layer order.
    pub policies: Vec<(String, Vec<u8>)>,
    /// Default settings by policy name.
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    pub version: Option<String>,
    pub source: Option<String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// The WIT world(s) the components implement (comma-separated when they differ);
    /// `None` labels the bundle with the newest, [`WORLD`].
    pub world: Option<String>,
}

/// A manifest and every blob it refers to, ready to upload.
pub struct Built {
    pub manifest: Vec<u8>,
    pub digest: String,
    /// (descriptor, bytes): the config first, then the layers.
    pub blobs: Vec<(OciDescriptor, Vec<u8>)>,
}

fn descriptor(
    media_type: &str,
    bytes: &[u8],
    annotations: BTreeMap<String, String>,
) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_string(),
        digest: sha256(bytes),
        size: bytes.len() as i64,
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..OciDescriptor::default()
    }
}

impl Bundle {
    /// Lays the bundle out as an OCI manifest (deterministic for the same input).
    pub fn build(&self) -> Result<Built, serde_json::Error> {
        let mut layers = Vec::new();
        for (name, wasm) in &self.policies {
            let a = BTreeMap::from([
                (ANNOTATION_POLICY.to_string(), name.clone()),
                (ANNOTATION_TITLE.to_string(), format!("{name}.wasm")),
            ]);
            layers.push((descriptor(WASM_LAYER_MEDIA_TYPE, wasm, a), wasm.clone()));
        }
        if let Some(settings) = &self.settings {
            let bytes = serde_json::to_vec(settings)?;
            let a = BTreeMap::from([(ANNOTATION_TITLE.to_string(), "settings.json".to_string())]);
            layers.push((descriptor(SETTINGS_MEDIA_TYPE, &bytes, a), bytes));
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "created": self.created,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": layers.iter().map(|(d, _)| d.digest.clone()).collect::<Vec<_>>(),
            "component": { "target": self.target() },
        }))?;
        let config_desc = descriptor(CONFIG_MEDIA_TYPE, &config, BTreeMap::new());
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
            config: config_desc.clone(),
            layers: layers.iter().map(|(d, _)| d.clone()).collect(),
            annotations: Some(self.annotations()),
            ..OciImageManifest::default()
        };
        let bytes = serde_json::to_vec(&manifest)?;
        let mut blobs = vec![(config_desc, config)];
        blobs.extend(layers);
        Ok(Built {
            digest: sha256(&bytes),
            manifest: bytes,
            blobs,
        })
    }

    fn world(&self) -> &str {
        self.world.as_deref().unwrap_or(WORLD)
    }

    /// The config's `component.target` names one world: the first, when a bundle mixes them
    /// (the annotation lists them all).
    fn target(&self) -> &str {
        self.world().split(',').next().unwrap_or(WORLD)
    }

    fn annotations(&self) -> BTreeMap<String, String> {
        let names: Vec<&str> = self.policies.iter().map(|(n, _)| n.as_str()).collect();
        let mut a = BTreeMap::from([
            (ANNOTATION_POLICY.to_string(), names.join(",")),
            (ANNOTATION_WORLD.to_string(), self.world().to_string()),
            (ANNOTATION_CREATED.to_string(), self.created.clone()),
        ]);
        if let Some(v) = &self.version {
            a.insert(ANNOTATION_VERSION.to_string(), v.clone());
        }
        if let Some(s) = &self.source {
            a.insert(ANNOTATION_SOURCE.to_string(), s.clone());
        }
        a
    }
}

/// A pulled manifest, understood.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub manifest: OciImageManifest,
    /// Wasm layers: (policy name if annotated, descriptor).
    pub policies: Vec<(Option<String>, OciDescriptor)>,
    pub settings: Option<OciDescriptor>,
}

impl Artifact {
    /// Reads a manifest: at least one wasm layer, at most one settings layer.
    pub fn parse(manifest_bytes: &[u8]) -> Result<Self, String> {
        let manifest: OciImageManifest = serde_json::from_slice(manifest_bytes)
            .map_err(|e| format!("not an OCI image manifest: {e}"))?;
        let mut policies = Vec::new();
        let mut settings = None;
        for layer in &manifest.layers {
            match layer.media_type.as_str() {
                WASM_LAYER_MEDIA_TYPE | LEGACY_WASM_LAYER_MEDIA_TYPE => {
                    let name = layer
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(ANNOTATION_POLICY).cloned());
                    policies.push((name, layer.clone()));
                }
                SETTINGS_MEDIA_TYPE if settings.is_none() => settings = Some(layer.clone()),
                SETTINGS_MEDIA_TYPE => return Err("more than one settings layer".into()),
                _ => {}
            }
        }
        if policies.is_empty() {
            return Err(format!(
                "no wasm layer ({WASM_LAYER_MEDIA_TYPE} or {LEGACY_WASM_LAYER_MEDIA_TYPE})"
            ));
        }
        Ok(Artifact {
            manifest,
            policies,
            settings,
        })
    }

    /// The layer for a policy: the one named `wanted` (the reference's `#name`), else the one
    /// named like the config's policy, else the only one.
    pub fn select(
        &self,
        wanted: Option<&str>,
        config_name: &str,
    ) -> Result<(String, &OciDescriptor), String> {
        let named = |n: &str| {
            self.policies
                .iter()
                .find(|(name, _)| name.as_deref() == Some(n))
                .map(|(_, d)| (n.to_string(), d))
        };
        if let Some(w) = wanted {
            return named(w)
                .ok_or_else(|| format!("the bundle has no policy named {w:?} ({})", self.names()));
        }
        if let Some(found) = named(config_name) {
            return Ok(found);
        }
        match self.policies.as_slice() {
            [(name, d)] => Ok((name.clone().unwrap_or_else(|| config_name.to_string()), d)),
            _ => Err(format!(
                "the bundle has several policies ({}): name one with #NAME in the source",
                self.names()
            )),
        }
    }

    /// Every blob the artifact needs: config, wasm and settings layers.
    pub fn descriptors(&self) -> Vec<&OciDescriptor> {
        let mut v = vec![&self.manifest.config];
        v.extend(self.policies.iter().map(|(_, d)| d));
        v.extend(self.settings.iter());
        v
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.manifest
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self
            .policies
            .iter()
            .map(|(n, _)| n.as_deref().unwrap_or("<unnamed>"))
            .collect();
        names.join(", ")
    }
}

/// The default settings for `policy` from a settings layer's bytes, as JSON text.
pub fn settings_for(layer: &[u8], policy: &str) -> Result<Option<String>, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(layer)
        .map_err(|e| format!("settings layer is not a JSON object: {e}"))?;
    Ok(map.get(policy).map(ToString::to_string))
}

/// Now as RFC 3339 UTC (`2025-01-02T03:04:05Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_prefixed_hex() {
        assert_eq!(
            sha256(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn bundle(names: &[&str], settings: bool) -> Bundle {
        Bundle {
            policies: names
                .iter()
                .map(|n| (n.to_string(), n.as_bytes().to_vec()))
                .collect(),
            settings: settings.then(|| {
                let mut m = serde_json::Map::new();
                m.insert("a".into(), serde_json::json!({"rules": [1]}));
                m
            }),
            version: Some("1.2.3".into()),
            source: Some("https://example.com/p".into()),
            created: "2025-01-02T03:04:05Z".into(),
            world: None,
        }
    }

    #[test]
    fn build_then_parse_round_trips() {
        let built = bundle(&["a", "b"], true).build().unwrap();
        assert_eq!(built.digest, sha256(&built.manifest));
        let art = Artifact::parse(&built.manifest).unwrap();
        assert_eq!(art.manifest.config.media_type, CONFIG_MEDIA_TYPE);
        assert_eq!(art.policies.len(), 2);
        assert!(art.settings.is_some());
        assert_eq!(art.annotation(ANNOTATION_WORLD), Some(WORLD));
        assert_eq!(art.annotation(ANNOTATION_POLICY), Some("a,b"));
        assert_eq!(art.annotation(ANNOTATION_VERSION), Some("1.2.3"));
        assert_eq!(art.descriptors().len(), 4);
        for (desc, bytes) in &built.blobs {
            assert_eq!(desc.digest, sha256(bytes));
        }
        // Same input, same digest.
        assert_eq!(
            bundle(&["a", "b"], true).build().unwrap().digest,
            built.digest
        );
    }

    #[test]
    fn selects_layers() {
        let two = Artifact::parse(&bundle(&["a", "b"], false).build().unwrap().manifest).unwrap();
        let one = Artifact::parse(&bundle(&["a"], false).build().unwrap().manifest).unwrap();
        let pick = |art: &Artifact, wanted: Option<&str>, config: &str| {
            art.select(wanted, config).map(|(n, _)| n)
        };
        assert_eq!(pick(&two, Some("b"), "x"), Ok("b".into()));
        assert_eq!(pick(&two, None, "a"), Ok("a".into()));
        assert!(pick(&two, None, "x").is_err());
        assert!(pick(&two, Some("c"), "a").is_err());
        assert_eq!(pick(&one, None, "anything"), Ok("a".into()));
    }

    #[test]
    fn accepts_the_legacy_layout_and_rejects_non_wasm() {
        let legacy = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.wasm.config.v1+json", "digest": sha256(b"{}"), "size": 2},
            "layers": [{"mediaType": LEGACY_WASM_LAYER_MEDIA_TYPE, "digest": sha256(b"w"), "size": 1}],
        });
        let art = Artifact::parse(legacy.to_string().as_bytes()).unwrap();
        assert_eq!(art.select(None, "p").unwrap().0, "p");
        let image = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(b"t"), "size": 1}],
        });
        assert!(Artifact::parse(image.to_string().as_bytes()).is_err());
        assert!(Artifact::parse(b"nope").is_err());
    }

    #[test]
    fn settings_and_time() {
        let layer = br#"{"a":{"rules":[1]},"b":{}}"#;
        assert_eq!(
            settings_for(layer, "a"),
            Ok(Some(r#"{"rules":[1]}"#.into()))
        );
        assert_eq!(settings_for(layer, "c"), Ok(None));
        assert!(settings_for(b"[1]", "a").is_err());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_787_045), "2025-01-02T03:04:05Z");
    }
}
