//! Configuration: TOML (or AKS JSON) → raw structs → one validated [`Config`].
//!
//! First step of the process lifecycle: nothing binds until a config validates. Every error
//! is collected with its origin and path (and line, where the text has one), so
//! `zonegate check` can print them all at once.

pub mod aks;
mod document;
mod error;
mod model;
mod raw;
mod render;
pub mod resolv;
pub mod units;
mod validate;

use std::path::{Path, PathBuf};

pub use aks::{AksImport, AksMode, AksOptions, load_aks, parse_aks};
pub use error::{ConfigError, ConfigErrors};
pub use model::*;
pub use render::to_toml;

/// The embedded default configuration (`zonegate run` without `--config`).
pub const DEFAULT_TOML: &str = include_str!("config/default.toml");

/// What a load reads besides the config text; tests point it at their own files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadEnv {
    /// Where `"resolv.conf"` upstream entries (and AKS VnetDNS) take their nameservers from.
    pub resolv_conf: PathBuf,
}

impl Default for LoadEnv {
    fn default() -> Self {
        LoadEnv {
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// Reads and validates a native TOML config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with(path, &LoadEnv::default())
}

/// [`load`] with an explicit environment.
pub fn load_with(path: &Path, env: &LoadEnv) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::single(&origin, format!("cannot read: {e}")))?;
    parse(&text, &origin, env)
}

/// Validates native TOML text; `origin` names it in errors (usually the file name).
pub fn parse(text: &str, origin: &str, env: &LoadEnv) -> Result<Config, ConfigErrors> {
    let mut errs = error::Collector::new(origin, text);
    let Some(doc) = document::read(text, &mut errs) else {
        return Err(errs.into_errors());
    };
    let config = validate::validate(doc, env, &mut errs);
    errs.finish(config)
}

/// The embedded default: 127.0.0.1:5353, `.` forwarded to the resolv.conf nameservers, AKS
/// LocalDNS cache defaults, endpoints on loopback. Fails only if resolv.conf has no nameserver.
pub fn default_config() -> Result<Config, ConfigErrors> {
    default_config_with(&LoadEnv::default())
}

/// [`default_config`] with an explicit environment.
pub fn default_config_with(env: &LoadEnv) -> Result<Config, ConfigErrors> {
    parse(DEFAULT_TOML, "<embedded default>", env)
}

#[cfg(test)]
mod tests;
