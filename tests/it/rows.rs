//! Rows of every MaxCompute type, shared by the client and codec tests: NULLs, empty strings,
//! unicode, DECIMAL at precision 38, DATETIME before 1970, TIMESTAMP nanoseconds, nested
//! arrays/maps/structs with NULLs, and a seeded random mix.

use k2mc::maxcompute::{Column, ColumnType, TableSchema, Value};
use rand::{Rng, SeedableRng};

/// (name, type) of the every-type table. TIMESTAMPs stay within pandas' nanosecond range
/// (1677..2262) so that pyodps can hold them.
pub const COLUMNS: &[(&str, &str)] = &[
    ("c_bool", "boolean"),
    ("c_tinyint", "tinyint"),
    ("c_smallint", "smallint"),
    ("c_int", "int"),
    ("c_bigint", "bigint"),
    ("c_float", "float"),
    ("c_double", "double"),
    ("c_decimal", "decimal(38,18)"),
    ("c_varchar", "varchar(10)"),
    ("c_char", "char(4)"),
    ("c_string", "string"),
    ("c_binary", "binary"),
    ("c_date", "date"),
    ("c_datetime", "datetime"),
    ("c_timestamp", "timestamp"),
    ("c_timestamp_ntz", "timestamp_ntz"),
    ("c_array", "array<array<string>>"),
    ("c_map", "map<string,struct<a:bigint,b:array<double>>>"),
    ("c_struct", "struct<x:decimal(38,0),y:timestamp>"),
];

pub fn schema() -> TableSchema {
    TableSchema {
        columns: COLUMNS
            .iter()
            .map(|(n, t)| Column::new(*n, ColumnType::parse(t).unwrap()))
            .collect(),
        partition_keys: vec![Column::new("ds", ColumnType::String)],
    }
}

/// `[[name, type], ...]` for the pyodps script.
pub fn schema_json() -> String {
    serde_json::to_string(&COLUMNS.iter().map(|(n, t)| [*n, *t]).collect::<Vec<_>>()).unwrap()
}

/// The DDL column list.
pub fn ddl_columns() -> String {
    COLUMNS
        .iter()
        .map(|(n, t)| format!("`{n}` {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

pub fn edge_rows() -> Vec<Vec<Value>> {
    let full = vec![
        Value::Boolean(true),
        Value::Int(-128),
        Value::Int(32767),
        Value::Int(i64::from(i32::MIN)),
        Value::Int(i64::MAX),
        Value::Float(3.25),
        Value::Double(-0.1),
        Value::Decimal(format!("-{}.{}", "9".repeat(20), "9".repeat(18))),
        s("ünï😀cødé"),
        s("ab"),
        s(""),
        Value::Binary(vec![0, 0xff, b'\n', 0x80]),
        Value::Date(-1),
        Value::Datetime(-301_233_600_877),
        Value::Timestamp {
            seconds: 1_704_067_200,
            nanos: 123_456_789,
        },
        Value::Timestamp {
            seconds: -2_208_988_800,
            nanos: 1,
        },
        Value::Array(vec![
            Value::Array(vec![s("x"), Value::Null, s("")]),
            Value::Null,
            Value::Array(vec![]),
        ]),
        Value::Map(vec![
            (
                s("k"),
                Value::Struct(vec![
                    Value::Int(7),
                    Value::Array(vec![Value::Double(1.5), Value::Null]),
                ]),
            ),
            (s("null"), Value::Null),
            (s("empty"), Value::Struct(vec![Value::Null, Value::Null])),
        ]),
        Value::Struct(vec![
            Value::Decimal("9".repeat(38)),
            Value::Timestamp {
                seconds: 0,
                nanos: 999_999_999,
            },
        ]),
    ];
    vec![full, vec![Value::Null; COLUMNS.len()]]
}

/// `n` seeded random rows with NULLs sprinkled in.
pub fn random_rows(n: usize, seed: u64) -> Vec<Vec<Value>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut row = vec![
                Value::Boolean(rng.random()),
                Value::Int(rng.random_range(-128..=127)),
                Value::Int(rng.random_range(-32768..=32767)),
                Value::Int(rng.random::<i32>().into()),
                Value::Int(rng.random()),
                Value::Float(rng.random_range(-1e6f32..1e6)),
                Value::Double(rng.random_range(-1e12..1e12)),
                Value::Decimal(format!(
                    "{}.{:018}",
                    rng.random::<i64>(),
                    rng.random_range(0..1_000_000_000_000_000_000u64)
                )),
                s(&format!("v{}", rng.random_range(0..1_000_000))),
                s("abcd"),
                s(&format!("row {i} \u{4e2d}\u{6587} \"quoted\", comma")),
                Value::Binary((0..rng.random_range(0..16)).map(|_| rng.random()).collect()),
                Value::Date(rng.random_range(-100_000..100_000)),
                Value::Datetime(rng.random_range(-2_000_000_000_000..4_000_000_000_000)),
                Value::Timestamp {
                    seconds: rng.random_range(-9_000_000_000..9_000_000_000),
                    nanos: rng.random_range(0..1_000_000_000),
                },
                Value::Timestamp {
                    seconds: rng.random_range(0..2_000_000_000),
                    nanos: rng.random_range(0..1_000_000_000),
                },
                Value::Array(vec![Value::Array(vec![s(&i.to_string())])]),
                Value::Map(vec![(
                    s("m"),
                    Value::Struct(vec![
                        Value::Int(i as i64),
                        Value::Array(vec![Value::Double(0.5)]),
                    ]),
                )]),
                Value::Struct(vec![
                    Value::Decimal(rng.random::<u64>().to_string()),
                    Value::Null,
                ]),
            ];
            for cell in row.iter_mut() {
                if rng.random_ratio(1, 10) {
                    *cell = Value::Null;
                }
            }
            row
        })
        .collect()
}

/// Rows in canonical JSON, for comparison with pyodps output.
pub fn canonical(rows: &[Vec<Value>]) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|r| serde_json::Value::Array(r.iter().map(Value::to_canonical_json).collect()))
        .collect()
}

/// Parses pyodps output: one canonical JSON row per line.
pub fn parse_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Compares row lists one row at a time, so that a failure names the first differing row.
pub fn assert_same(got: &[serde_json::Value], want: &[serde_json::Value]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "row {i} differs");
    }
    assert_eq!(got.len(), want.len(), "row counts differ");
}
