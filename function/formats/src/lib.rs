//! The formats kafka-to-maxcompute reads and writes, with no I/O and no runtime: the config file
//! (`config`, `secret`), the Lambda invocation events (`event`), the MaxCompute Tunnel record
//! stream (`tunnel`), the dead-letter lines (`dead_letter`) and log scopes (`scope`). The function (`k2mc`) and the emulator build on them; being small, they are
//! what the fuzz targets under `tests/fuzz/` exercise, without compiling wasmtime or the AWS SDK.

pub mod config;
pub mod dead_letter;
pub mod event;
pub mod scope;
pub mod secret;
pub mod tunnel;
