//! The policy components the tests load: where they are, and copies with another digest.

use std::path::{Path, PathBuf};

/// The directory of the built `.wasm` files (`$ZONEGATE_WASM_DIR`, filled by
/// `scripts/build-policies.sh`). `None` skips the calling test outside CI; in CI (`$CI` set)
/// a missing directory fails it, so no policy test passes without running.
pub fn wasm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ZONEGATE_WASM_DIR").map(PathBuf::from);
    match dir {
        Some(d) if d.is_dir() => Some(d),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set ZONEGATE_WASM_DIR (scripts/build-policies.sh)"
            );
            eprintln!("skipped: ZONEGATE_WASM_DIR not set (scripts/build-policies.sh)");
            None
        }
    }
}

/// The bytes of `file` in `dir` (a component, or a pulled bundle's file); panics with the path
/// if it cannot be read.
pub fn read_file(dir: &Path, file: &str) -> Vec<u8> {
    let path = dir.join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The same component with another digest: a custom section `zonegate-test-variant`
/// holding `tag` appended (a real recompile and swap for the host).
pub fn wasm_variant(bytes: &[u8], tag: u8) -> Vec<u8> {
    let name = b"zonegate-test-variant";
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + 1) as u8); // section size (< 128: one LEB128 byte)
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.push(tag);
    out
}
