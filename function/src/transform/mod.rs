//! The transform stage: user-supplied WebAssembly components (WIT contract `wit/transform.wit`)
//! run in a sandbox under wasmtime. `chain` runs batches through the stages and isolates poison
//! records; `sandbox` decides what an instance may touch; `artifact` loads precompiled `.cwasm`
//! files; `bindings` is generated from the WIT.

mod artifact;
pub mod bindings;
mod chain;
mod error;
mod sandbox;

pub use artifact::{Manifest, Origin, WASMTIME_VERSION, expected_manifest, precompile};
pub use chain::{Chain, ChainOutput, ChainRun, DeadLetter, StageMetrics, StageSpec, TransformHost};
pub use error::TransformError;
pub use sandbox::{DEFAULT_CALL_DEADLINE, DEFAULT_MEMORY_LIMIT, Grants, Limits};
