//! The Tunnel record decoder (`RecordReader`), which the emulator runs on every uploaded block.
//! Input: one byte for the column count, one byte per column choosing its type, then the record
//! stream. Whatever the bytes, decoding returns rows or an error; rows it accepts must encode
//! again (`RecordWriter`) and decode to the same rows.
#![no_main]

use k2mc_formats::tunnel::{ColumnType, RecordReader, RecordWriter};
use libfuzzer_sys::fuzz_target;

/// Column types the schema bytes choose from: every scalar family and the nested shapes.
const TYPES: &[&str] = &[
    "boolean",
    "tinyint",
    "smallint",
    "int",
    "bigint",
    "float",
    "double",
    "decimal",
    "decimal(18,2)",
    "decimal(38,18)",
    "varchar(8)",
    "char(4)",
    "string",
    "binary",
    "json",
    "date",
    "datetime",
    "timestamp",
    "timestamp_ntz",
    "interval_day_time",
    "interval_year_month",
    "array<string>",
    "array<bigint>",
    "map<string,bigint>",
    "struct<a:int,b:string>",
    "array<array<double>>",
];

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let columns = usize::from(count % 8) + 1;
    if rest.len() < columns {
        return;
    }
    let (choices, stream) = rest.split_at(columns);
    let schema: Vec<ColumnType> = choices
        .iter()
        .map(|c| ColumnType::parse(TYPES[usize::from(*c) % TYPES.len()]).expect("a valid type"))
        .collect();
    let Ok(rows) = RecordReader::new(&schema, stream).read_all() else {
        return;
    };
    let mut writer = RecordWriter::new(&schema, Vec::new());
    for row in &rows {
        if let Err(e) = writer.write(row) {
            panic!("the decoder accepted a row the encoder refuses ({e}): {row:?}");
        }
    }
    let encoded = writer.finish().expect("finishing an in-memory stream");
    let again = RecordReader::new(&schema, &encoded)
        .read_all()
        .expect("the encoder's own stream decodes");
    // Debug text, so NaN cells compare equal to themselves.
    assert_eq!(format!("{rows:?}"), format!("{again:?}"));
});
