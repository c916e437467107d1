//! The function's configuration, read once at cold start; every stage takes its settings from
//! here. The file format, the environment overrides and the checks live in
//! `k2mc_formats::config` (pure, fuzzed); secret references are resolved by `secrets`.

pub use k2mc_formats::config::*;
