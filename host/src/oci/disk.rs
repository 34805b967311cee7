//! The on-disk cache: verified blobs by digest (`blobs/sha256/HEX`) and, per tag reference,
//! the last good manifest digest (`refs/HASH.json`), so a restart works with the registry
//! down. Writes go to a temporary file and are renamed, so a crash never leaves half a blob.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::OciError;
use super::layout::sha256;
use super::reference::check_digest;

/// The cache directory.
#[derive(Debug, Clone)]
pub(crate) struct Disk {
    root: PathBuf,
}

/// The last good resolution of a tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RefRecord {
    pub(crate) reference: String,
    pub(crate) digest: String,
}

/// What a garbage collection did.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct GcStats {
    pub(crate) removed: usize,
    pub(crate) bytes_left: u64,
}

impl Disk {
    pub(crate) fn new(root: &Path) -> Self {
        Disk {
            root: root.to_path_buf(),
        }
    }

    fn io(&self, path: &Path, source: io::Error) -> OciError {
        OciError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let d = check_digest(digest).map_err(|reason| OciError::layout(digest, reason))?;
        let hex = &d["sha256:".len()..];
        Ok(self.root.join("blobs").join("sha256").join(hex))
    }

    fn ref_path(&self, key: &str) -> PathBuf {
        let hex = &sha256(key.as_bytes())["sha256:".len()..];
        self.root.join("refs").join(format!("{}.json", &hex[..32]))
    }

    /// A blob, verified against its digest; `None` if absent. A corrupt blob is removed.
    pub(crate) fn read_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        let path = self.blob_path(digest)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&path, e)),
        };
        let actual = sha256(&bytes);
        if actual != digest {
            let _ = std::fs::remove_file(&path);
            return Err(OciError::DigestMismatch {
                reference: format!("cache {}", path.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(Some(bytes))
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Stores a blob after checking it has `digest`.
    pub(crate) fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), OciError> {
        let actual = sha256(bytes);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                reference: "blob".into(),
                expected: digest.to_string(),
                actual,
            });
        }
        let path = self.blob_path(digest)?;
        self.write_atomic(&path, bytes)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), OciError> {
        crate::fsutil::write_atomic(path, bytes).map_err(|e| self.io(path, e))
    }

    /// The last good digest of a tag reference.
    pub(crate) fn read_ref(&self, key: &str) -> Option<RefRecord> {
        let text = std::fs::read(self.ref_path(key)).ok()?;
        let rec: RefRecord = serde_json::from_slice(&text).ok()?;
        (rec.reference == key && check_digest(&rec.digest).is_ok()).then_some(rec)
    }

    pub(crate) fn write_ref(&self, key: &str, digest: &str) -> Result<(), OciError> {
        let rec = RefRecord {
            reference: key.to_string(),
            digest: digest.to_string(),
        };
        let bytes = serde_json::to_vec(&rec).unwrap_or_default();
        self.write_atomic(&self.ref_path(key), &bytes)
    }

    /// Removes blobs not in `keep`, least recently written first, until the blobs total at
    /// most `max_bytes`. Kept blobs are never removed, whatever their size.
    pub(crate) fn gc(&self, keep: &HashSet<String>, max_bytes: u64) -> GcStats {
        let dir = self.root.join("blobs").join("sha256");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return GcStats::default();
        };
        let mut total = 0u64;
        let mut candidates: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            total += meta.len();
            let digest = format!("sha256:{}", e.file_name().to_string_lossy());
            if !keep.contains(&digest) {
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                candidates.push((mtime, meta.len(), e.path()));
            }
        }
        candidates.sort();
        let mut stats = GcStats::default();
        for (_, len, path) in candidates {
            if total <= max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                stats.removed += 1;
            }
        }
        stats.bytes_left = total;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> (Disk, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("zonegate-oci-disk-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Disk::new(&dir), dir)
    }

    #[test]
    fn blobs_are_verified_on_write_and_read() {
        let (d, dir) = temp("verify");
        let digest = sha256(b"hello");
        assert_eq!(d.read_blob(&digest).unwrap(), None);
        assert!(d.write_blob(&sha256(b"other"), b"hello").is_err());
        d.write_blob(&digest, b"hello").unwrap();
        assert_eq!(d.read_blob(&digest).unwrap(), Some(b"hello".to_vec()));
        // Corrupted on disk: rejected and removed.
        std::fs::write(d.blob_path(&digest).unwrap(), b"evil").unwrap();
        assert!(matches!(
            d.read_blob(&digest),
            Err(OciError::DigestMismatch { .. })
        ));
        assert!(!d.has_blob(&digest));
        assert!(d.blob_path("sha256:../../etc/passwd").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn refs_round_trip() {
        let (d, dir) = temp("refs");
        assert_eq!(d.read_ref("r.io/p:1"), None);
        let digest = sha256(b"m");
        d.write_ref("r.io/p:1", &digest).unwrap();
        assert_eq!(d.read_ref("r.io/p:1").map(|r| r.digest), Some(digest));
        assert_eq!(d.read_ref("r.io/p:2"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn gc_keeps_referenced_blobs_and_bounds_the_rest() {
        let (d, dir) = temp("gc");
        let blobs: Vec<(String, Vec<u8>)> = (0..4u8)
            .map(|i| {
                let b = vec![i; 100];
                (sha256(&b), b)
            })
            .collect();
        for (digest, b) in &blobs {
            d.write_blob(digest, b).unwrap();
        }
        let keep: HashSet<String> = [blobs[3].0.clone()].into();
        // Under the bound: nothing removed.
        assert_eq!(d.gc(&keep, 1000).removed, 0);
        // Bound of 250 bytes: two unreferenced blobs go.
        let stats = d.gc(&keep, 250);
        assert_eq!(
            stats,
            GcStats {
                removed: 2,
                bytes_left: 200
            }
        );
        assert!(d.has_blob(&blobs[3].0));
        // A bound below what is kept: every unreferenced blob goes, kept ones stay.
        let stats = d.gc(&keep, 0);
        assert_eq!(stats.bytes_left, 100);
        assert!(d.has_blob(&blobs[3].0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
