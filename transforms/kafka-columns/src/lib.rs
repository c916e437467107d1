//! `kafka-columns`: the parser stage with DataWorks Kafka Reader semantics.
//!
//! Configuration (string map):
//! - `columns`: a JSON array of `{"name", "type", "source"?, "nullable"?}`. `type` is MaxCompute
//!   type text. `source` defaults to the name and is one of the default fields `__key__`,
//!   `__value__`, `__partition__`, `__headers__`, `__offset__`, `__timestamp__` (plus
//!   `__topic__`), a JSON path into the value (`a.a1`, `c[1]`, `d[0].AA`, `a\.b` or `["a.b"]` for
//!   keys with dots), or a constant in single quotes. Without `columns`, the six default fields.
//! - `key-type`, `value-type`: BYTEARRAY, DOUBLE, FLOAT, INTEGER, LONG, SHORT or STRING (default).
//! - `encoding`: UTF-8 (the only one supported).
//!
//! A value that is not JSON when a path needs it (`bad-json`), or a value that does not fit its
//! column (`type-mismatch`, naming the column and the value), makes the record a dead letter.

pub mod columns;
pub mod packed;
pub mod path;
pub mod records;
pub mod select;

/// Talc instead of the C library's dlmalloc: every row, cell and string crossing into and out of
/// the stage is one allocation, and dlmalloc's were a fifth of the stage's time
/// (`docs/bench/README.md`, "Talc in the shipped components").
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// The component glue: WIT bindings and the exported stage. Only built for WebAssembly, so
/// the pure logic above also compiles natively (unit tests, the benchmark's native baseline).
#[cfg(target_arch = "wasm32")]
mod component;
