//! `config::parse` on arbitrary UTF-8: never panics, every error renders, and an accepted
//! config survives the `to_toml` round trip (what `zonegate import` and `check` rely on).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use zonegate::config::{self, LoadEnv};

/// A resolv.conf of our own, so `"resolv.conf"` upstream entries resolve the same on every
/// machine (written once per process).
static ENV: LazyLock<LoadEnv> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("zonegate-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let resolv_conf: PathBuf = dir.join("resolv.conf");
    std::fs::write(&resolv_conf, "nameserver 10.0.0.10\nnameserver fd00::10\n")
        .expect("resolv.conf");
    LoadEnv { resolv_conf }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, "fuzz.toml", &ENV) {
        Ok(c) => {
            let rendered = config::to_toml(&c);
            let again = config::parse(&rendered, "rendered", &ENV);
            match again {
                // NaN in a policy's free-form settings is never equal to itself.
                Ok(a) => assert!(
                    a == c || text.to_ascii_lowercase().contains("nan"),
                    "{rendered}"
                ),
                Err(e) => panic!("rendered config rejected: {e}\n{rendered}"),
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
        }
    }
});
