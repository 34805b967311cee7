//! Configuration: TOML (or AKS JSON) → raw structs → one validated [`Config`].
//!
//! First step of the process lifecycle: nothing binds until a config validates.

mod model;

pub use model::*;
