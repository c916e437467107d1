//! Precompiled transform artifacts. JIT-compiling a JavaScript or Python component takes seconds,
//! so the package ships `<name>.cwasm` beside `<name>.wasm` with a manifest binding it to the
//! component's sha256, the wasmtime version and the engine configuration. A missing or stale
//! artifact is compiled once, cached under the function's temporary directory, and logged as a
//! warning.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::TransformError;

/// The wasmtime version artifacts are built for.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// What a `.cwasm` was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub wasm_sha256: String,
    pub wasmtime_version: String,
    /// Hash of the engine settings that affect compiled code.
    pub engine: String,
    pub target: String,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A shipped `.cwasm` whose manifest matched.
    Precompiled,
    /// A `.cwasm` this host compiled earlier and cached.
    Cached,
    /// Compiled now (and cached for next time).
    Compiled,
}

/// The manifest a `.cwasm` of `wasm` must carry for `engine`.
pub fn expected_manifest(engine: &Engine, wasm: &[u8]) -> Manifest {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    Manifest {
        wasm_sha256: hex(&Sha256::digest(wasm)),
        wasmtime_version: WASMTIME_VERSION.to_owned(),
        engine: format!("{:016x}", hasher.finish()),
        target: std::env::consts::ARCH.to_owned(),
    }
}

/// Compiles `wasm` and writes `<out_dir>/<stem>.cwasm` and its manifest; returns the artifact path.
pub fn precompile(
    engine: &Engine,
    stage: &str,
    wasm: &Path,
    out_dir: &Path,
) -> Result<PathBuf, TransformError> {
    let bytes = read(stage, wasm)?;
    let stem = wasm.file_stem().and_then(|s| s.to_str()).unwrap_or(stage);
    let out = out_dir.join(format!("{stem}.cwasm"));
    write_artifact(engine, stage, wasm, &bytes, &out)?;
    Ok(out)
}

/// Loads the component of `stage` from `wasm`, using a precompiled artifact when one matches.
/// Also returns the component's SHA-256, which identifies the transform version in the log.
pub(crate) fn load(
    engine: &Engine,
    stage: &str,
    wasm: &Path,
    cache_dir: &Path,
) -> Result<(Component, Origin, String), TransformError> {
    let bytes = read(stage, wasm)?;
    let expected = expected_manifest(engine, &bytes);
    let shipped = wasm.with_extension("cwasm");
    let cached = cache_dir.join(format!(
        "{}-{}.cwasm",
        expected.wasm_sha256, expected.engine
    ));
    for (path, origin) in [(&shipped, Origin::Precompiled), (&cached, Origin::Cached)] {
        if !path.exists() {
            continue;
        }
        match std::fs::read(manifest_path(path))
            .ok()
            .and_then(|m| serde_json::from_slice::<Manifest>(&m).ok())
        {
            Some(found) if found == expected => {
                if let Ok(component) = deserialize(engine, path) {
                    return Ok((component, origin, expected.wasm_sha256.clone()));
                }
                tracing::warn!(stage, artifact = %path.display(), "precompiled artifact did not load; recompiling");
            }
            found => tracing::warn!(
                stage,
                artifact = %path.display(),
                ?found,
                ?expected,
                "precompiled artifact is stale (component, wasmtime or engine settings changed); recompiling"
            ),
        }
    }
    // Said before the wait, with its likely length: a JavaScript or Python component compiles
    // for tens of seconds and the first run must not look hung.
    let mb = bytes.len() as f64 / 1e6;
    tracing::warn!(stage, wasm = %wasm.display(), cache = %cache_dir.display(), "compiling {stage} ({mb:.1} MB) for this machine: under a second for a Rust component, 20-40 s for a JavaScript or Python one; cached afterwards. Precompile transforms when packaging (k2mc transforms precompile) so a cold start never compiles");
    let component = Component::new(engine, &bytes).map_err(|e| compile_error(stage, wasm, &e))?;
    if let Err(e) = std::fs::create_dir_all(cache_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let serialized = component.serialize().map_err(|e| e.to_string())?;
            std::fs::write(&cached, serialized).map_err(|e| e.to_string())?;
            let manifest = serde_json::to_vec_pretty(&expected).map_err(|e| e.to_string())?;
            std::fs::write(manifest_path(&cached), manifest).map_err(|e| e.to_string())
        })
    {
        tracing::warn!(stage, error = %e, "could not cache the compiled artifact");
    }
    Ok((component, Origin::Compiled, expected.wasm_sha256))
}

/// Deserializes an artifact whose manifest matched.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the file be an artifact produced by `Component::serialize`
    // or `Engine::precompile_component` and not modified since. We only get here for files our
    // own packaging or cache wrote, whose manifest names this component's sha256, this wasmtime
    // version and this engine configuration; wasmtime itself also rejects artifacts from another
    // version or configuration.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_artifact(
    engine: &Engine,
    stage: &str,
    wasm: &Path,
    bytes: &[u8],
    out: &Path,
) -> Result<(), TransformError> {
    let compiled = engine
        .precompile_component(bytes)
        .map_err(|e| compile_error(stage, wasm, &e))?;
    let io = |source| TransformError::Read {
        stage: stage.to_owned(),
        path: out.to_owned(),
        source,
    };
    std::fs::write(out, compiled).map_err(io)?;
    let manifest = serde_json::to_vec_pretty(&expected_manifest(engine, bytes)).unwrap_or_default();
    std::fs::write(manifest_path(out), manifest).map_err(io)
}

fn manifest_path(cwasm: &Path) -> PathBuf {
    let mut name = cwasm.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

fn read(stage: &str, path: &Path) -> Result<Vec<u8>, TransformError> {
    std::fs::read(path).map_err(|source| TransformError::Read {
        stage: stage.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn compile_error(stage: &str, path: &Path, e: &wasmtime::Error) -> TransformError {
    TransformError::Compile {
        stage: stage.to_owned(),
        path: path.to_owned(),
        reason: format!("{e:#}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
