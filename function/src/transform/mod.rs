//! The transform stage: user-supplied WebAssembly components (WIT contract `wit/transform.wit`)
//! run in a sandbox under wasmtime. `chain` loads the stages (each a `stage`), `run` runs batches through them and
//! isolates poison records (packing and reading packed rows with `packed`, a projected stage's cells with `projection`); `sandbox` decides what an instance may touch and `output` where
//! its stdout and stderr go; `artifact` loads precompiled `.cwasm`
//! files; `bindings` is generated from the WIT.

mod artifact;
pub mod bindings;
mod chain;
mod error;
mod output;
mod packed;
mod pool;
mod projection;
mod records;
mod registry;
mod run;
mod sandbox;
mod stage;

pub use artifact::{Manifest, Origin, WASMTIME_VERSION, expected_manifest, precompile};
pub use chain::{Chain, TransformHost};
pub use error::TransformError;
pub use pool::{ParallelRun, Transformed};
pub use registry::Registry;
pub use run::{ChainOutput, ChainRun, DeadLetter, StageMetrics};
pub use sandbox::{DEFAULT_CALL_DEADLINE, DEFAULT_MEMORY_LIMIT, Grants, Limits};
pub use stage::StageSpec;

/// Where compiled transforms are cached when no precompiled artifact matches: Lambda's /tmp
/// (`K2MC_ARTIFACT_CACHE` overrides it).
pub fn artifact_cache_dir() -> std::path::PathBuf {
    std::env::var_os("K2MC_ARTIFACT_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("k2mc-cwasm"))
}

/// The chain's stage specs from the config's `[[transforms]]`: settings as text (JSON values
/// other than strings as their JSON), grants and limits.
pub fn stage_specs(config: &crate::config::Config, registry: Option<&Registry>) -> Vec<StageSpec> {
    let add_columns = config.schema_evolution() == crate::config::SchemaEvolution::AddColumns;
    config
        .transforms
        .iter()
        .map(|t| StageSpec {
            name: t.name.clone(),
            wasm: config.resolve_path(&t.wasm),
            config: t
                .settings
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                // A parser granted the registry learns that new fields become columns
                // (wit/README.md, "Settings the host adds").
                .chain(
                    (t.registry && add_columns && !t.settings.contains_key("schema.evolution"))
                        .then(|| ("schema.evolution".to_owned(), "add-columns".to_owned())),
                )
                .collect(),
            grants: Grants {
                clocks: t.clocks,
                random: t.random,
                registry: t.registry,
            },
            limits: Limits {
                memory: t.memory_mb * 1024 * 1024,
                call_deadline: std::time::Duration::from_millis(t.deadline_ms),
            },
            registry: registry.filter(|_| t.registry).cloned(),
        })
        .collect()
}

/// Kafka header pairs (from a fetch or an event) as the transform contract's headers, in the
/// order given.
pub(crate) fn headers_from_pairs(
    pairs: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Vec<bindings::Header> {
    pairs
        .into_iter()
        .map(|(key, value)| bindings::Header {
            key,
            value: Some(value),
        })
        .collect()
}
