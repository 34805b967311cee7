//! File writes that readers never see half done.

use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory (named with this
/// process's id, so two processes sharing the directory do not collide) and a rename,
/// creating the directory if needed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
