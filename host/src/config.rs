//! Configuration: TOML (or AKS JSON) → raw structs → one validated [`Config`].
//!
//! First step of the process lifecycle: nothing binds until a config validates.

mod model;

pub use model::*;

// TEMPORARY stubs until the config module lands.
use std::path::Path;

/// Every error found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigErrors(pub String);

/// Things the loader reads from the machine (injectable for tests).
#[derive(Debug, Clone, Default)]
pub struct LoadEnv {}

/// Addresses the AKS importer cannot learn from the JSON.
#[derive(Debug, Clone, Default)]
pub struct AksOptions {
    pub cluster_dns: Option<std::net::IpAddr>,
    pub vnet_dns: Vec<std::net::IpAddr>,
}

pub fn load(_path: &Path) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors("not yet".into()))
}
pub fn load_aks(_path: &Path, _o: &AksOptions, _e: &LoadEnv) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors("not yet".into()))
}
pub fn default_config() -> Config {
    unimplemented!()
}
pub fn to_toml(_c: &Config) -> String {
    String::new()
}
