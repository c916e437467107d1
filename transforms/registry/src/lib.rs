//! `registry`: the parser stage for records written with a schema registry serializer. It reads
//! the schema id from the record's framing (`framing`), gets the writer schema from the host
//! (WIT `registry` interface; the stage itself has no network), decodes the payload and
//! resolves it onto the reader schema (the configured subject's version: the table's shape),
//! and emits one row per record in the columns `plan` derived from that schema.
//!
//! Formats: Avro (`avro`), Protobuf (`protobuf`) and JSON Schema (`json_schema`), each mapped
//! onto the format-independent column model (`model`).
//! Dead-letter codes: `bad-framing`, `unknown-schema`, `bad-schema`, `unsupported-format`,
//! `incompatible-schema`, `bad-payload`, `bad-key`, `tombstone`. A registry that cannot be reached
//! fails the batch (`fatal`), so no record is skipped while it is down.

pub mod avro;
pub mod decode;
pub mod framing;
pub mod json_schema;
pub mod model;
pub mod plan;
pub mod protobuf;

/// The component glue: WIT bindings and the exported stage. Only built for WebAssembly, so
/// the pure logic above also compiles natively (unit tests, the fuzz targets).
#[cfg(target_arch = "wasm32")]
mod component;
