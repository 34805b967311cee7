//! Talking to a registry through `oci-client`: manifests and blobs, each verified against
//! its digest before anything uses it, and pushes for `policy push`.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, RegistryOperation};

use super::OciError;
use super::auth::Credentials;
use super::layout::{Built, MANIFEST_MEDIA_TYPE, sha256};
use super::reference::OciReference;

/// Docker's manifest type, which some registries answer with for the same content.
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A registry client with per-registry credentials and plain-HTTP opt-ins.
pub(crate) struct Registry {
    client: Client,
    creds: Credentials,
}

/// rustls needs one process-wide crypto provider; ring keeps aws-lc's C build out.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Registry {
    /// `insecure` registries (`host[:port]`) are spoken to over plain HTTP; `timeout` bounds
    /// connecting and each read.
    pub(crate) fn new(
        insecure: &[String],
        docker_config: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, OciError> {
        install_crypto_provider();
        let creds = match docker_config {
            Some(p) => Credentials::load(p)?,
            None => Credentials::default(),
        };
        let protocol = match insecure {
            [] => ClientProtocol::Https,
            hosts => ClientProtocol::HttpsExcept(hosts.to_vec()),
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(timeout),
            read_timeout: Some(timeout),
            platform_resolver: None,
            user_agent: concat!("zonegate/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| OciError::Registry {
            reference: "client".into(),
            reason: e.to_string(),
        })?;
        Ok(Registry { client, creds })
    }

    fn err(r: &OciReference, e: OciDistributionError) -> OciError {
        match e {
            OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            ) => OciError::DigestMismatch {
                reference: r.to_string(),
                expected,
                actual,
            },
            other => OciError::Registry {
                reference: r.to_string(),
                reason: other.to_string(),
            },
        }
    }

    /// The manifest bytes and their digest; a pinned digest must match.
    pub(crate) async fn manifest(&self, r: &OciReference) -> Result<(Vec<u8>, String), OciError> {
        let auth = self.creds.auth_for(&r.registry);
        let accepted = [MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE];
        let (body, _) = self
            .client
            .pull_manifest_raw(&r.client_ref(), &auth, &accepted)
            .await
            .map_err(|e| Self::err(r, e))?;
        let actual = sha256(&body);
        if let Some(pinned) = &r.digest
            && *pinned != actual
        {
            return Err(OciError::DigestMismatch {
                reference: r.to_string(),
                expected: pinned.clone(),
                actual,
            });
        }
        Ok((body.to_vec(), actual))
    }

    /// A blob, verified against the descriptor's digest.
    pub(crate) async fn blob(
        &self,
        r: &OciReference,
        desc: &OciDescriptor,
    ) -> Result<Vec<u8>, OciError> {
        let auth = self.creds.auth_for(&r.registry);
        let image = r.client_ref();
        self.client
            .store_auth_if_needed(image.resolve_registry(), &auth)
            .await;
        let mut out = Vec::with_capacity(usize::try_from(desc.size).unwrap_or(0).min(64 << 20));
        self.client
            .pull_blob(&image, desc, &mut out)
            .await
            .map_err(|e| Self::err(r, e))?;
        let actual = sha256(&out);
        if actual != desc.digest {
            return Err(OciError::DigestMismatch {
                reference: r.to_string(),
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(out)
    }

    /// Uploads every blob, then the manifest under the reference's tag (or digest).
    pub(crate) async fn push(&self, r: &OciReference, built: &Built) -> Result<(), OciError> {
        let auth = self.creds.auth_for(&r.registry);
        let image = r.client_ref();
        self.client
            .auth(&image, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| Self::err(r, e))?;
        for (desc, bytes) in &built.blobs {
            self.client
                .push_blob(&image, bytes.clone(), &desc.digest)
                .await
                .map_err(|e| Self::err(r, e))?;
        }
        let content_type = MANIFEST_MEDIA_TYPE
            .parse()
            .map_err(|_| OciError::Registry {
                reference: r.to_string(),
                reason: "bad manifest content type".into(),
            })?;
        self.client
            .push_manifest_raw(&image, built.manifest.clone(), content_type)
            .await
            .map_err(|e| Self::err(r, e))?;
        Ok(())
    }
}
