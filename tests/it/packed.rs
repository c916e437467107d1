//! Packed rows (WIT 1.3, `packed-parser`; WIT 1.4, `packed-row-transform`) and packed records
//! (WIT 1.5, `packed-records-parser`): `kafka-columns` exports `parse-packed` and
//! `parse-records-packed`, `mask` exports `transform-packed`, and the host packs and reads rows
//! and records as bytes. Every way of calling a stage must give the same rows and dead letters,
//! for every cell case `kafka-columns` writes and every shape of record, alone and with a row
//! stage after it.

use harness::transform_wasm;
use k2mc::transform::bindings::{Cell, Header, KafkaRecord, RecordBatch};
use k2mc::transform::{ChainOutput, Limits, StageSpec, TransformHost};

/// A column of every type `kafka-columns` writes, from the value, the key and the record.
const EVERY_TYPE: &str = r#"[
  {"name": "b", "type": "boolean"},
  {"name": "t", "type": "tinyint"},
  {"name": "n", "type": "bigint"},
  {"name": "f", "type": "float"},
  {"name": "d", "type": "double"},
  {"name": "dec", "type": "decimal(10,3)"},
  {"name": "s", "type": "string"},
  {"name": "v", "type": "varchar(4)"},
  {"name": "bin", "type": "binary", "source": "__key__"},
  {"name": "j", "type": "json"},
  {"name": "arr", "type": "array<bigint>"},
  {"name": "day", "type": "date"},
  {"name": "dt", "type": "datetime"},
  {"name": "ts", "type": "timestamp"},
  {"name": "ntz", "type": "timestamp_ntz", "source": "ts"},
  {"name": "off", "type": "bigint", "source": "__offset__"},
  {"name": "hdr", "type": "string", "source": "__headers__"},
  {"name": "missing", "type": "string"}
]"#;

fn parser() -> StageSpec {
    let wasm = transform_wasm("kafka-columns").unwrap();
    harness::stage_spec(
        "kafka-columns",
        &wasm,
        &[("columns", EVERY_TYPE), ("key-type", "BYTEARRAY")],
    )
}

fn records() -> Vec<KafkaRecord> {
    let values = [
        r#"{"b":true,"t":-128,"n":9007199254740993,"f":1.5,"d":-0.1,"dec":"12.345","s":"北京 😀","v":"abcd","j":{"a":[1,null]},"arr":[1,2],"day":"1969-12-31","dt":"2024-01-01 08:00:00.123","ts":"2024-02-29T23:59:59.999999999Z"}"#,
        // Bad input between good rows: a dead letter, and the rows around it keep their sources.
        r#"{"t":300}"#,
        r#"{"b":"false","s":"","v":"","dt":1704067200001,"ts":"1900-01-01 00:00:00"}"#,
        "not json",
        r#"{}"#,
    ];
    values
        .iter()
        .enumerate()
        .map(|(i, v)| KafkaRecord {
            offset: 100 + i as i64,
            timestamp_ms: 1_704_067_200_000,
            key: (i != 4).then(|| vec![0, 0xff, i as u8]),
            value: Some(v.as_bytes().to_vec()),
            headers: vec![Header {
                key: "h".into(),
                value: Some(b"x".to_vec()),
            }],
        })
        .collect()
}

/// The chain's output, with the parser's rows taken packed or, after `without_packed_rows`, as
/// a `list<row>`.
fn run(specs: Vec<StageSpec>, packed: bool) -> anyhow::Result<ChainOutput> {
    run_with(specs, |chain| {
        if !packed {
            assert!(
                chain.without_packed_rows(),
                "kafka-columns exports packed-parser"
            );
        }
    })
}

/// The chain's output after `link` chose how each stage is called.
fn run_with(
    specs: Vec<StageSpec>,
    link: impl FnOnce(&mut k2mc::transform::Chain),
) -> anyhow::Result<ChainOutput> {
    let host = TransformHost::new()?;
    let cache = tempfile::tempdir()?;
    let mut chain = host.load_chain(specs, cache.path())?;
    link(&mut chain);
    let batch = RecordBatch {
        topic: "t".into(),
        partition: 1,
        records: records(),
    };
    Ok(chain.start_run().run(&batch)?)
}

#[test]
fn packed_and_listed_rows_are_the_same_for_every_cell_case() -> anyhow::Result<()> {
    let packed = run(vec![parser()], true)?;
    let listed = run(vec![parser()], false)?;
    assert_eq!(packed.rows, listed.rows);
    assert_eq!(packed.dead_letters, listed.dead_letters);
    let sources: Vec<u32> = packed.rows.iter().map(|r| r.source).collect();
    assert_eq!(sources, [0, 2, 4]);
    let dead: Vec<(u32, &str)> = packed
        .dead_letters
        .iter()
        .map(|d| (d.source, d.code.as_str()))
        .collect();
    assert_eq!(dead, [(1, "type-mismatch"), (3, "bad-json")]);
    // Every case the stage writes is in the first row, as the listed path gives it.
    let cells = &packed.rows[0].cells;
    assert_eq!(cells[0], Cell::Boolean(true));
    assert_eq!(cells[2], Cell::Int(9_007_199_254_740_993));
    assert_eq!(cells[5], Cell::Decimal("12.345".into()));
    assert_eq!(cells[6], Cell::String("北京 😀".into()));
    assert_eq!(cells[8], Cell::Binary(vec![0, 0xff, 0]));
    assert_eq!(cells[11], Cell::Date(-1));
    assert_eq!(cells[12], Cell::Datetime(1_704_096_000_123));
    assert!(matches!(&cells[13], Cell::Timestamp(t) if t.nanos == 999_999_999));
    assert!(matches!(&cells[9], Cell::Json(j) if j.contains("null")));
    assert_eq!(cells[17], Cell::Null);
    // The record without a key gives NULL in its binary column.
    assert_eq!(packed.rows[2].cells[8], Cell::Null);
    Ok(())
}

#[test]
fn a_row_stage_after_a_packed_parser_sees_the_same_rows() -> anyhow::Result<()> {
    let mask = || {
        let wasm = transform_wasm("mask").unwrap();
        harness::stage_spec(
            "mask",
            &wasm,
            &[("column.s", "sha256"), ("column.v", "phone")],
        )
    };
    let packed = run(vec![parser(), mask()], true)?;
    let listed = run(vec![parser(), mask()], false)?;
    assert_eq!(packed.rows, listed.rows);
    assert_eq!(packed.dead_letters, listed.dead_letters);
    assert_eq!(packed.rows.len(), 3);
    assert_eq!(packed.rows[0].cells[7], Cell::String("****".into()));
    Ok(())
}

/// `mask` reads a column of every case `kafka-columns` writes (a `null` rule on each non-text
/// column, a masking rule on the text ones, one of them NULL in every row), so its packed input
/// holds every one of them and it must step over each as the listed path would.
#[test]
fn a_packed_row_stage_gives_the_rows_of_a_listed_one() -> anyhow::Result<()> {
    let wasm = transform_wasm("mask")?;
    let mut rules: Vec<(String, &str)> = [
        "b", "t", "n", "f", "d", "dec", "bin", "j", "arr", "day", "dt", "ts", "ntz",
    ]
    .iter()
    .map(|c| (format!("column.{c}"), "null"))
    .collect();
    rules.extend([
        ("column.s".to_owned(), "phone"),
        ("column.v".to_owned(), "email"),
        ("column.hdr".to_owned(), "sha256"),
        ("column.missing".to_owned(), "id-number"),
    ]);
    let rules: Vec<(&str, &str)> = rules.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mask = || harness::stage_spec("mask", &wasm, &rules);
    let packed = run_with(vec![parser(), mask()], |_| {})?;
    let listed = run_with(vec![parser(), mask()], |chain| {
        assert_eq!(
            chain.without_packed_row_stages(),
            1,
            "mask exports packed-row-transform"
        );
    })?;
    assert_eq!(packed.rows, listed.rows);
    assert_eq!(packed.dead_letters, listed.dead_letters);
    assert_eq!(packed.rows.len(), 3);
    let first = &packed.rows[0].cells;
    assert_eq!(first[0], Cell::Null, "a null rule on a boolean");
    assert_eq!(
        first[6],
        Cell::String("****".into()),
        "four characters: too short to keep ends"
    );
    assert!(
        matches!(&first[16], Cell::String(h) if h.len() == 64),
        "a digest of the headers"
    );
    assert_eq!(
        first[15],
        Cell::Int(100),
        "the offset passes through the host"
    );
    assert_eq!(
        first[17],
        Cell::Null,
        "a NULL text cell with a rule stays NULL"
    );
    Ok(())
}

/// Columns of every field a record carries besides its value's paths.
const RECORD_FIELDS: &str = r#"[
  {"name": "k", "type": "binary", "source": "__key__"},
  {"name": "ks", "type": "string", "source": "__key__"},
  {"name": "v", "type": "binary", "source": "__value__"},
  {"name": "vs", "type": "string", "source": "__value__"},
  {"name": "p", "type": "bigint", "source": "__partition__"},
  {"name": "o", "type": "bigint", "source": "__offset__"},
  {"name": "ts", "type": "bigint", "source": "__timestamp__"},
  {"name": "topic", "type": "string", "source": "__topic__"},
  {"name": "h", "type": "string", "source": "__headers__"},
  {"name": "a", "type": "string"}
]"#;

/// Records of every shape the packed layout has: keys and values absent, empty and not UTF-8,
/// headers none, several, with absent and binary values and keys beyond ASCII, extreme offsets.
fn record_shapes() -> Vec<KafkaRecord> {
    let header = |key: &str, value: Option<&[u8]>| Header {
        key: key.into(),
        value: value.map(<[u8]>::to_vec),
    };
    let record = |offset, key: Option<&[u8]>, value: Option<&str>, headers| KafkaRecord {
        offset,
        timestamp_ms: offset.wrapping_mul(-3),
        key: key.map(<[u8]>::to_vec),
        value: value.map(|v| v.as_bytes().to_vec()),
        headers,
    };
    vec![
        record(
            i64::MAX,
            Some(b"k0"),
            Some(r#"{"a":"x"}"#),
            vec![
                header("h1", Some(b"v")),
                header("北", None),
                header("", Some(&[0xff, 0])),
            ],
        ),
        record(0, None, None, Vec::new()),
        record(2, Some(b""), Some("not json"), Vec::new()),
        // A key that is not UTF-8 cannot be read as a string column.
        record(3, Some(&[0xff]), Some(r#"{"a":"y"}"#), Vec::new()),
        record(
            i64::MIN,
            Some(b"k4"),
            Some(r#"{}"#),
            vec![header("h", Some(b""))],
        ),
    ]
}

#[test]
fn packed_and_listed_records_give_the_same_rows_for_every_record_shape() -> anyhow::Result<()> {
    let wasm = transform_wasm("kafka-columns")?;
    let spec = || harness::stage_spec("kafka-columns", &wasm, &[("columns", RECORD_FIELDS)]);
    let batch = RecordBatch {
        topic: "orders.北".into(),
        partition: 7,
        records: record_shapes(),
    };
    let run = |link: &dyn Fn(&mut k2mc::transform::Chain)| -> anyhow::Result<ChainOutput> {
        let host = TransformHost::new()?;
        let cache = tempfile::tempdir()?;
        let mut chain = host.load_chain(vec![spec()], cache.path())?;
        link(&mut chain);
        Ok(chain.start_run().run(&batch)?)
    };
    let packed = run(&|_| {})?;
    let listed = run(&|chain| {
        assert!(
            chain.without_packed_records(),
            "kafka-columns exports packed-records-parser"
        );
    })?;
    let plain = run(&|chain| assert!(chain.without_packed_rows()))?;
    assert_eq!(packed.rows, listed.rows);
    assert_eq!(packed.dead_letters, listed.dead_letters);
    assert_eq!(packed.rows, plain.rows);
    assert_eq!(packed.dead_letters, plain.dead_letters);
    let sources: Vec<u32> = packed.rows.iter().map(|r| r.source).collect();
    assert_eq!(sources, [0, 1, 4]);
    let dead: Vec<(u32, &str)> = packed
        .dead_letters
        .iter()
        .map(|d| (d.source, d.code.as_str()))
        .collect();
    assert_eq!(dead, [(2, "bad-json"), (3, "bad-encoding")]);
    let first = &packed.rows[0].cells;
    assert_eq!(first[0], Cell::Binary(b"k0".to_vec()));
    assert_eq!(first[3], Cell::String(r#"{"a":"x"}"#.into()));
    assert_eq!(first[4], Cell::Int(7));
    assert_eq!(first[5], Cell::Int(i64::MAX));
    assert_eq!(first[6], Cell::Int(i64::MAX.wrapping_mul(-3)));
    assert_eq!(first[7], Cell::String("orders.北".into()));
    assert!(
        matches!(&first[8], Cell::String(h) if h.contains("\"北\"") && h.contains("null") && h.contains("\"h1\"")),
        "{:?}",
        first[8]
    );
    assert_eq!(first[9], Cell::String("x".into()));
    assert!(
        packed.rows[1]
            .cells
            .iter()
            .take(4)
            .all(|c| *c == Cell::Null)
    );
    assert_eq!(packed.rows[2].cells[5], Cell::Int(i64::MIN));
    Ok(())
}

/// A record too big for the stage's memory traps the call; the host bisects the batch and packs
/// each half's records on its own (a half of small records packed, one holding the large record
/// as a `list<kafka-record>`), so only that record becomes a dead letter and every other row
/// keeps its source.
#[test]
fn a_trap_in_a_packed_records_parser_dead_letters_only_its_record() -> anyhow::Result<()> {
    let wasm = transform_wasm("kafka-columns")?;
    let mut spec = harness::stage_spec("kafka-columns", &wasm, &[("columns", RECORD_FIELDS)]);
    spec.limits = Limits {
        memory: 16 << 20,
        ..spec.limits
    };
    let host = TransformHost::new()?;
    let cache = tempfile::tempdir()?;
    let chain = host.load_chain(vec![spec], cache.path())?;
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(12 << 20));
    let records = (0..9)
        .map(|i| KafkaRecord {
            offset: i,
            timestamp_ms: 0,
            key: None,
            value: Some(
                if i == 5 {
                    big.clone()
                } else {
                    format!(r#"{{"a":"{i}"}}"#)
                }
                .into_bytes(),
            ),
            headers: Vec::new(),
        })
        .collect();
    let out = chain.start_run().run(&RecordBatch {
        topic: "t".into(),
        partition: 0,
        records,
    })?;
    let dead: Vec<(u32, &str)> = out
        .dead_letters
        .iter()
        .map(|d| (d.source, d.code.as_str()))
        .collect();
    assert_eq!(dead, [(5, "trap")]);
    let rows: Vec<(u32, &Cell)> = out.rows.iter().map(|r| (r.source, &r.cells[9])).collect();
    let expected: Vec<(u32, Cell)> = [0, 1, 2, 3, 4, 6, 7, 8]
        .into_iter()
        .map(|i| (i, Cell::String(i.to_string())))
        .collect();
    assert_eq!(
        rows,
        expected.iter().map(|(i, c)| (*i, c)).collect::<Vec<_>>()
    );
    Ok(())
}
