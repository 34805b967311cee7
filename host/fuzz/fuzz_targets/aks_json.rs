//! `config::parse_aks` on arbitrary UTF-8: never panics, every error renders, and an
//! accepted import renders to native TOML that parses back to the same config.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use zonegate::config::{self, AksOptions, LoadEnv};

static ENV: LazyLock<(LoadEnv, AksOptions)> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("zonegate-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let resolv_conf: PathBuf = dir.join("resolv.conf");
    std::fs::write(&resolv_conf, "nameserver 10.0.0.10\n").expect("resolv.conf");
    let opts = AksOptions {
        cluster_dns: vec![([10, 0, 0, 10], 53).into()],
        ..AksOptions::default()
    };
    (LoadEnv { resolv_conf }, opts)
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (env, opts) = &*ENV;
    match config::parse_aks(text, "fuzz.json", opts, env) {
        Ok(import) => {
            let rendered = config::to_toml(&import.config);
            match config::parse(&rendered, "rendered", env) {
                Ok(c) => assert!(c == import.config, "{rendered}"),
                Err(e) => panic!("rendered import rejected: {e}\n{rendered}"),
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
        }
    }
});
