//! Registry credentials from a docker `config.json` (the file a Kubernetes image pull secret
//! of type `kubernetes.io/dockerconfigjson` mounts): `auths.REGISTRY.auth` (base64
//! `user:password`) or `username`/`password`. Registries without an entry are anonymous.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::OciError;

/// Credentials by registry host (`host[:port]`).
#[derive(Default, Clone)]
pub(crate) struct Credentials {
    by_registry: HashMap<String, (String, String)>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Credentials {
    /// Reads a docker config file.
    pub(crate) fn load(path: &Path) -> Result<Self, OciError> {
        let bad = |reason: String| OciError::DockerConfig {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Self::parse(&text).map_err(bad)
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let doc: DockerConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut by_registry = HashMap::new();
        for (key, entry) in doc.auths {
            let pair = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => decode(&auth)
                    .ok_or_else(|| format!("auths.{key}.auth: not base64 of user:password"))?,
                (_, Some(u), Some(p)) => (u, p),
                _ => continue,
            };
            by_registry.insert(registry_host(&key), pair);
        }
        Ok(Credentials { by_registry })
    }

    /// What to present to `registry`.
    pub(crate) fn auth_for(&self, registry: &str) -> RegistryAuth {
        match self.by_registry.get(registry) {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

fn decode(auth: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `r.io:5000` stays.
fn registry_host(key: &str) -> String {
    let no_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    no_scheme.split('/').next().unwrap_or(no_scheme).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_and_username_password_forms() {
        // "alice:s3cret:x" — the password may contain ':'.
        let text = r#"{"auths": {
            "https://ghcr.io/v2/": {"auth": "YWxpY2U6czNjcmV0Ong="},
            "127.0.0.1:5000": {"username": "bob", "password": "pw"},
            "empty.io": {}
        }}"#;
        let c = Credentials::parse(text).unwrap();
        let basic = |r: &str| match c.auth_for(r) {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        };
        assert_eq!(basic("ghcr.io"), Some(("alice".into(), "s3cret:x".into())));
        assert_eq!(basic("127.0.0.1:5000"), Some(("bob".into(), "pw".into())));
        assert_eq!(basic("empty.io"), None);
        assert_eq!(basic("other.io"), None);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(Credentials::parse("not json").is_err());
        assert!(Credentials::parse(r#"{"auths":{"r.io":{"auth":"!!"}}}"#).is_err());
        assert!(Credentials::parse("{}").is_ok());
    }
}
