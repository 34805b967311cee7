//! `oci://REGISTRY/REPO[:TAG][@sha256:HEX][#POLICY]` as written in a policy `source`.
//! The registry is always explicit (no Docker Hub defaulting); a digest wins over a tag.

use std::fmt;
use std::str::FromStr;

use super::OciError;

/// A parsed OCI policy reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OciReference {
    /// `host[:port]`.
    pub registry: String,
    pub repository: String,
    /// Informative when a digest is pinned.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`: the manifest digest the content must have.
    pub digest: Option<String>,
    /// Which policy of a bundle (`#name`); default: the config's policy name, or the only one.
    pub policy: Option<String>,
}

impl OciReference {
    /// Registry, repository and tag/digest without the `#policy` part: the artifact itself.
    pub fn artifact(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The reference oci-client pulls: by digest when pinned, else by tag.
    pub fn client_ref(&self) -> oci_client::Reference {
        let (registry, repo) = (self.registry.clone(), self.repository.clone());
        match (&self.digest, &self.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(registry, repo, d.clone()),
            (None, Some(t)) => oci_client::Reference::with_tag(registry, repo, t.clone()),
            (None, None) => oci_client::Reference::with_tag(registry, repo, "latest".into()),
        }
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}", self.artifact())?;
        if let Some(p) = &self.policy {
            write!(f, "#{p}")?;
        }
        Ok(())
    }
}

impl FromStr for OciReference {
    type Err = OciError;

    fn from_str(text: &str) -> Result<Self, OciError> {
        parse(text).map_err(|reason| OciError::Reference {
            reference: text.to_string(),
            reason,
        })
    }
}

fn parse(text: &str) -> Result<OciReference, String> {
    let rest = text
        .strip_prefix("oci://")
        .ok_or("expected oci://REGISTRY/REPO[:TAG][@sha256:DIGEST]")?;
    let (rest, policy) = match rest.split_once('#') {
        Some((r, p)) if valid_policy_name(p) => (r, Some(p.to_string())),
        Some(_) => return Err("the #POLICY part must be a non-empty policy name".into()),
        None => (rest, None),
    };
    let (rest, digest) = match rest.split_once('@') {
        Some((r, d)) => (r, Some(check_digest(d)?)),
        None => (rest, None),
    };
    let (registry, path) = rest
        .split_once('/')
        .ok_or("expected REGISTRY/REPO: the registry is required")?;
    if registry.is_empty() || !(registry.contains(['.', ':']) || registry == "localhost") {
        return Err(format!(
            "{registry:?} is not a registry host (expected like ghcr.io or 127.0.0.1:5000)"
        ));
    }
    let (repository, tag) = match path.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(check_tag(t)?)),
        _ => (path, None),
    };
    check_repository(repository)?;
    if tag.is_none() && digest.is_none() {
        return Err("a :TAG or an @sha256:DIGEST is required".into());
    }
    Ok(OciReference {
        registry: registry.to_string(),
        repository: repository.to_string(),
        tag,
        digest,
        policy,
    })
}

fn valid_policy_name(p: &str) -> bool {
    !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `sha256:` and 64 lowercase hex digits (also what keeps cache paths safe).
pub(crate) fn check_digest(d: &str) -> Result<String, String> {
    let hex = d
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {d:?} must start with sha256:"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "digest {d:?} must be sha256: and 64 lowercase hex digits"
        ));
    }
    Ok(d.to_string())
}

fn check_tag(t: &str) -> Result<String, String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(t.to_string())
    } else {
        Err(format!("invalid tag {t:?}"))
    }
}

fn check_repository(r: &str) -> Result<(), String> {
    let ok = !r.is_empty()
        && r.split('/').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid repository {r:?}: lowercase letters, digits, '.', '_', '-' and '/'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// (registry, repository, tag, pinned, policy)
    type Parts<'a> = (&'a str, &'a str, Option<&'a str>, bool, Option<&'a str>);

    #[test]
    fn parses_tags_digests_and_fragments() {
        let cases: [(String, Option<Parts<'_>>); 11] = [
            (
                "oci://ghcr.io/z/p:1".into(),
                Some(("ghcr.io", "z/p", Some("1"), false, None)),
            ),
            (
                format!("oci://127.0.0.1:5000/p@{D}"),
                Some(("127.0.0.1:5000", "p", None, true, None)),
            ),
            (
                format!("oci://r.io/a/b/c:v1.2@{D}#egress"),
                Some(("r.io", "a/b/c", Some("v1.2"), true, Some("egress"))),
            ),
            (
                "oci://localhost/p:latest".into(),
                Some(("localhost", "p", Some("latest"), false, None)),
            ),
            (
                "oci://127.0.0.1:5000/p:t#x".into(),
                Some(("127.0.0.1:5000", "p", Some("t"), false, Some("x"))),
            ),
            ("oci://ghcr.io/z/p".into(), None),
            ("oci://p:1".into(), None),
            ("oci://team/p:1".into(), None),
            ("oci://ghcr.io/Z/p:1".into(), None),
            ("oci://ghcr.io/z/p@sha256:abc".into(), None),
            ("oci://ghcr.io/z/p:1#".into(), None),
        ];
        for (text, want) in cases {
            let got = text.parse::<OciReference>().ok().map(|r| {
                (
                    r.registry,
                    r.repository,
                    r.tag,
                    r.digest.is_some(),
                    r.policy,
                )
            });
            let want = want.map(|(reg, repo, tag, dig, pol)| {
                (
                    reg.to_string(),
                    repo.to_string(),
                    tag.map(String::from),
                    dig,
                    pol.map(String::from),
                )
            });
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn displays_as_written_and_digest_wins() {
        let text = format!("oci://r.io/a:1@{D}#p");
        let r: OciReference = text.parse().unwrap();
        assert_eq!(r.to_string(), text);
        assert_eq!(r.client_ref().digest(), Some(D));
        let t: OciReference = "oci://r.io/a:1".parse().unwrap();
        assert_eq!(t.client_ref().tag(), Some("1"));
        assert_eq!(t.artifact(), "r.io/a:1");
    }
}
