//! The MaxCompute Tunnel record stream (`docs/maxcompute-protocol.md` §2.5) and what it is written against: the
//! column types (`schema`), the cell values (`value`) and the codec (`wire`). The encode stage
//! writes blocks with it; the emulator and the tests read them back.

mod compression;
mod error;
mod schema;
mod value;
mod wire;

pub use compression::Compression;
pub use error::{SchemaError, WireError};
pub use schema::{Column, ColumnType, TableSchema};
pub use value::{Value, is_plain_decimal};
pub use wire::{RecordReader, RecordWriter, footer};
