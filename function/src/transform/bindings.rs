//! Host bindings generated from `wit/transform.wit`: one module per world, sharing the `types`
//! and `host` interfaces so that a row from the parser stage is the same Rust type a row stage
//! takes.

#![allow(missing_debug_implementations, clippy::all)]

/// The `parser-stage` world (Kafka records → rows).
pub mod parser {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "parser-stage",
        additional_derives: [PartialEq],
    });
}

/// The `registry-parser-stage` world: a parser that may also import `registry` (WIT 1.1). Only
/// the `registry` interface is taken from it; the rest is the parser world's.
pub mod registry_parser {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "registry-parser-stage",
        with: {
            "kafka2mc:transform/types": super::parser::kafka2mc::transform::types,
            "kafka2mc:transform/host": super::parser::kafka2mc::transform::host,
            "kafka2mc:transform/parser": super::parser::exports::kafka2mc::transform::parser,
        },
    });
}

/// The `packed-parser-stage` world (WIT 1.3): a parser that also exports `packed-parser`. Only
/// the `packed-parser` interface is taken from it; the rest is the parser world's.
pub mod packed_parser {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "packed-parser-stage",
        with: {
            "kafka2mc:transform/types": super::parser::kafka2mc::transform::types,
            "kafka2mc:transform/host": super::parser::kafka2mc::transform::host,
            "kafka2mc:transform/parser": super::parser::exports::kafka2mc::transform::parser,
        },
    });
}

/// The `packed-records-parser-stage` world (WIT 1.5): a packed parser that also takes its records
/// packed. Only the `packed-records-parser` interface is taken from it; the rest is the packed
/// parser world's.
pub mod packed_records_parser {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "packed-records-parser-stage",
        with: {
            "kafka2mc:transform/types": super::parser::kafka2mc::transform::types,
            "kafka2mc:transform/host": super::parser::kafka2mc::transform::host,
            "kafka2mc:transform/parser": super::parser::exports::kafka2mc::transform::parser,
            "kafka2mc:transform/packed-parser": super::packed_parser::exports::kafka2mc::transform::packed_parser,
        },
    });
}

/// The `row-stage` world (rows → rows).
pub mod row {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "row-stage",
        with: {
            "kafka2mc:transform/types": super::parser::kafka2mc::transform::types,
            "kafka2mc:transform/host": super::parser::kafka2mc::transform::host,
        },
    });
}

/// The `projected-row-stage` world (WIT 1.2): a row stage that also exports `projection`. Only
/// the shared types and the host import are the parser world's.
pub mod projected_row {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "projected-row-stage",
        with: {
            "kafka2mc:transform/types": super::parser::kafka2mc::transform::types,
            "kafka2mc:transform/host": super::parser::kafka2mc::transform::host,
        },
    });
}

/// The `packed-row-stage` world (WIT 1.4): a projected row stage that also exports
/// `packed-row-transform`. Only the shared types and the host import are the parser world's.
pub mod packed_row {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "packed-row-stage",
        with: {
            "kafka2mc:transform/types": super::parser::kafka2mc::transform::types,
            "kafka2mc:transform/host": super::parser::kafka2mc::transform::host,
        },
    });
}

pub use parser::kafka2mc::transform::host::Level;
pub use parser::kafka2mc::transform::types::{
    BatchOutput, Cell, Column, ColumnType, DecimalType, ErrorKind, Header, Instant, KafkaRecord,
    RecordBatch, RecordError, Row, StageInfo,
};
pub use registry_parser::kafka2mc::transform::registry::{
    RegistryError, RegistryErrorKind, Schema, SchemaFormat, SchemaId, SchemaReference,
};
