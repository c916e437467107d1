//! Codec tests: the pyodps test vector of `docs/maxcompute-protocol.md` §2.5, round trips of every type and
//! corruption detection.

use super::*;

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn vector_schema() -> Vec<ColumnType> {
    [
        "bigint",
        "string",
        "double",
        "boolean",
        "datetime",
        "decimal(18,2)",
        "array<string>",
    ]
    .iter()
    .map(|t| ColumnType::parse(t).unwrap())
    .collect()
}

fn vector_rows() -> Vec<Vec<Value>> {
    let mut second = vec![Value::Null; 7];
    second[0] = Value::Int(-2);
    vec![
        vec![
            Value::Int(1),
            Value::String("hi".into()),
            Value::Double(1.5),
            Value::Boolean(true),
            Value::Datetime(1_704_067_200_000),
            Value::Decimal("12.34".into()),
            Value::Array(vec![Value::String("x".into()), Value::Null]),
        ],
        second,
    ]
}

/// pyodps 0.13.2 output for the brief's two rows, with its 10-byte sign-extended CRC varint.
const PYODPS_BYTES: &str = "08 02 12 02 68 69 19 00 00 00 00 00 00 f8 3f 20 01 28 80 d0 8f a5 98 63 32 05 31 32 2e 33 34 3a 02 00 01 78 01
80 c0 ff 7f 95 a4 a8 b3 01 08 03 80 c0 ff 7f 87 ca 8b bb f9 ff ff ff ff 01 f0 ff ff 7f 04 f8 ff ff 7f f7 bb fc e9 06";

#[test]
fn writes_the_brief_vector_in_canonical_form() {
    let schema = vector_schema();
    let mut w = RecordWriter::new(&schema, Vec::new());
    for row in vector_rows() {
        w.write(&row).unwrap();
    }
    let bytes = w.finish().unwrap();
    let mut expected = hex(PYODPS_BYTES);
    // Same bytes but the second record CRC in its 5-byte canonical form.
    let long = hex("87 ca 8b bb f9 ff ff ff ff 01");
    let at = expected
        .windows(long.len())
        .position(|w| w == long)
        .unwrap();
    expected.splice(at..at + long.len(), hex("87 ca 8b bb 09"));
    assert_eq!(bytes.len(), 71);
    assert_eq!(bytes, expected);
}

#[test]
fn reads_pyodps_bytes_with_ten_byte_crc_varints() {
    let schema = vector_schema();
    let rows = RecordReader::new(&schema, &hex(PYODPS_BYTES))
        .read_all()
        .unwrap();
    assert_eq!(rows, vector_rows());
}

#[test]
fn every_flipped_byte_is_rejected() {
    let schema = vector_schema();
    let good = hex(PYODPS_BYTES);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let result = RecordReader::new(&schema, &bad).read_all();
        // A flip may still decode to the same values (e.g. inside the redundant high bytes of the
        // sign-extended varint); it must never decode to different values without an error.
        if let Ok(rows) = result {
            assert_eq!(
                rows,
                vector_rows(),
                "byte {i} flipped decoded to other rows"
            );
        }
    }
}

#[test]
fn round_trips_every_type() {
    let types = [
        "boolean",
        "tinyint",
        "smallint",
        "int",
        "bigint",
        "float",
        "double",
        "decimal(38,18)",
        "varchar(4)",
        "char(2)",
        "string",
        "binary",
        "json",
        "date",
        "datetime",
        "timestamp",
        "timestamp_ntz",
        "interval_day_time",
        "interval_year_month",
        "array<array<int>>",
        "map<string,struct<a:bigint,b:array<string>>>",
    ];
    let schema: Vec<ColumnType> = types
        .iter()
        .map(|t| ColumnType::parse(t).unwrap())
        .collect();
    let full = vec![
        Value::Boolean(false),
        Value::Int(-128),
        Value::Int(32767),
        Value::Int(i64::from(i32::MIN)),
        Value::Int(i64::MAX),
        Value::Float(-1.25),
        Value::Double(f64::MIN_POSITIVE),
        Value::Decimal(format!("-{}.{}", "9".repeat(20), "1".repeat(18))),
        Value::String("ünï".into()),
        Value::String("ab".into()),
        Value::String(String::new()),
        Value::Binary(vec![0, 255, 10]),
        Value::String("{\"a\":1}".into()),
        Value::Date(-719_162),
        Value::Datetime(-62_135_596_800_000),
        Value::Timestamp {
            seconds: -1,
            nanos: 999_999_999,
        },
        Value::Timestamp {
            seconds: 253_402_300_799,
            nanos: 1,
        },
        Value::IntervalDayTime {
            seconds: 86_400,
            nanos: 5,
        },
        Value::IntervalYearMonth(-13),
        Value::Array(vec![
            Value::Array(vec![Value::Int(1), Value::Null]),
            Value::Null,
        ]),
        Value::Map(vec![
            (
                Value::String("k".into()),
                Value::Struct(vec![
                    Value::Null,
                    Value::Array(vec![Value::String("v".into())]),
                ]),
            ),
            (Value::String("n".into()), Value::Null),
        ]),
    ];
    let nulls = vec![Value::Null; schema.len()];
    let mut w = RecordWriter::new(&schema, Vec::new());
    w.write(&full).unwrap();
    w.write(&nulls).unwrap();
    let bytes = w.finish().unwrap();
    let rows = RecordReader::new(&schema, &bytes).read_all().unwrap();
    assert_eq!(rows, vec![full, nulls]);
}

#[test]
fn rejects_values_that_do_not_fit_and_stays_usable() {
    let schema = vec![ColumnType::Tinyint, ColumnType::Varchar(2)];
    let mut w = RecordWriter::new(&schema, Vec::new());
    let err = w.write(&[Value::Int(128), Value::Null]).unwrap_err();
    assert!(err.to_string().contains("column 0"), "{err}");
    let err = w
        .write(&[Value::Null, Value::String("abc".into())])
        .unwrap_err();
    assert!(err.to_string().contains("varchar(2)"), "{err}");
    let err = w
        .write(&[Value::String("1".into()), Value::Null])
        .unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TypeMismatch {
                column: Some(0),
                ..
            }
        ),
        "{err}"
    );
    w.write(&[Value::Int(1), Value::String("ok".into())])
        .unwrap();
    let bytes = w.finish().unwrap();
    assert_eq!(
        RecordReader::new(&schema, &bytes).read_all().unwrap().len(),
        1
    );
}

#[test]
fn truncated_streams_are_errors() {
    let schema = vector_schema();
    let good = hex(PYODPS_BYTES);
    for len in 0..good.len() {
        assert!(
            RecordReader::new(&schema, &good[..len]).read_all().is_err(),
            "len {len}"
        );
    }
}

/// Found by fuzzing (tests/fuzz/regressions/tunnel_records/decimal-text-unchecked): the reader took any
/// text as a decimal, and any integer or string whatever the column's range or length, so the
/// emulator accepted blocks MaxCompute refuses. A stream written for a looser column (same wire
/// type, valid CRCs) must not read as the stricter one.
#[test]
fn cells_outside_their_column_type_are_refused_when_read() {
    let cases: [(&str, Value, &str); 6] = [
        (
            "string",
            Value::String("\u{b}\0\0\x004".into()),
            "decimal(18,2)",
        ),
        ("string", Value::String("123.456".into()), "decimal(18,2)"),
        ("bigint", Value::Int(300), "tinyint"),
        ("bigint", Value::Int(i64::from(i32::MAX) + 1), "int"),
        ("string", Value::String("five!".into()), "varchar(4)"),
        ("string", Value::String("ab".into()), "char(1)"),
    ];
    for (loose, value, strict) in cases {
        let loose = [ColumnType::parse(loose).unwrap()];
        let mut w = RecordWriter::new(&loose, Vec::new());
        w.write(std::slice::from_ref(&value)).unwrap();
        let bytes = w.finish().unwrap();
        let strict = [ColumnType::parse(strict).unwrap()];
        let err = RecordReader::new(&strict, &bytes).read_all().unwrap_err();
        assert!(
            matches!(err, WireError::Malformed { ref reason, .. } if reason.contains("does not fit")),
            "{value:?} as {}: {err}",
            strict[0]
        );
    }
}

/// A sink that records the size of every write.
#[derive(Default)]
struct Writes(Vec<u8>, Vec<usize>);

impl Write for Writes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        self.1.push(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_sink_gets_whole_64_kib_units_until_the_body_ends_and_the_same_bytes() {
    let schema = [ColumnType::Bigint, ColumnType::String];
    // Records of several sizes, some larger than a unit, so a flush leaves a tail behind.
    let rows: Vec<Vec<Value>> = (0..400i64)
        .map(|i| {
            let len = [10, 1_000, 9_000, 70_000][i as usize % 4] + i as usize;
            vec![Value::Int(i), Value::String("x".repeat(len))]
        })
        .collect();
    let mut whole = RecordWriter::new(&schema, Vec::new());
    let mut units = RecordWriter::new(&schema, Writes::default());
    for r in &rows {
        whole.write(r).unwrap();
        units.write(r).unwrap();
    }
    let flushes = units.get_ref().1.clone();
    units.flush_body().unwrap();
    let Writes(bytes, sizes) = units.finish().unwrap();
    // After the flushes: the body's end and the footer.
    let ends = &sizes[flushes.len()..];
    assert!(flushes.len() > 10);
    assert!(
        flushes.iter().all(|n| n % FLUSH_THRESHOLD == 0),
        "{flushes:?}"
    );
    assert!(ends.iter().all(|&n| n < FLUSH_THRESHOLD), "{ends:?}");
    assert_eq!(bytes, whole.finish().unwrap());
    let read = RecordReader::new(&schema, &bytes).read_all().unwrap();
    assert_eq!(read, rows);
}

#[test]
fn checksums_gathered_across_short_and_long_pieces_are_the_ones_read_back() {
    // The writer gathers pieces of up to 64 bytes before checksumming them and checksums longer
    // ones where they lie; the reader checksums every piece in turn. Rows whose text straddles
    // that size in every order must read back with their checksums accepted.
    let schema: Vec<ColumnType> = ["bigint", "string", "string", "double", "array<string>"]
        .iter()
        .map(|t| ColumnType::parse(t).unwrap())
        .collect();
    let lens = [0usize, 1, 63, 64, 65, 200, 5000];
    let mut rows = Vec::new();
    for (i, &a) in lens.iter().enumerate() {
        for &b in lens.iter().rev() {
            rows.push(vec![
                Value::Int(i as i64 - 3),
                Value::String("a".repeat(a)),
                if b % 2 == 0 {
                    Value::String("é".repeat(b / 2))
                } else {
                    Value::Null
                },
                Value::Double(a as f64 / 7.0),
                Value::Array(vec![Value::String("z".repeat(b)), Value::Null]),
            ]);
        }
    }
    let mut w = RecordWriter::new(&schema, Vec::new());
    for row in &rows {
        w.write(row).unwrap();
    }
    let bytes = w.finish().unwrap();
    assert_eq!(RecordReader::new(&schema, &bytes).read_all().unwrap(), rows);
}
