//! The component glue of `kafka-columns` (only built for WebAssembly): the WIT bindings, the
//! stage's configuration and its exports (`parse`, `parse-packed` and, WIT 1.5,
//! `parse-records-packed`), each reading records through `extract`. The pure logic it calls is in
//! the crate's other modules, which also compile natively.
wit_bindgen::generate!({
    path: "../../wit",
    // Also exports `packed-parser` (WIT 1.3), so the host takes the rows packed, and
    // `packed-records-parser` (WIT 1.5), so it gives the records packed.
    world: "packed-records-parser-stage",
});

use std::sync::Mutex;

use crate::columns::{BytesType, Kind, Out, Source};
use crate::records::Record;
use crate::select::{Picked, Selection};
use exports::kafka2mc::transform::packed_parser::{Guest as PackedGuest, PackedOutput};
use exports::kafka2mc::transform::packed_records_parser::Guest as PackedRecordsGuest;
use exports::kafka2mc::transform::parser::Guest;
use kafka2mc::transform::types::{
    BatchOutput, Cell, Column, ColumnType, DecimalType, ErrorKind, Instant, KafkaRecord,
    RecordBatch, RecordError, Row, StageInfo,
};
use serde_json::Value as Json;

struct Spec {
    name: String,
    kind: Kind,
    source: Source,
    nullable: bool,
    /// For a JSON path source, its place in `Plan::selection`.
    slot: usize,
}

struct Plan {
    columns: Vec<Spec>,
    key_type: BytesType,
    value_type: BytesType,
    /// Every JSON path the columns read: the value is parsed once for all of them, and only
    /// as far as they go (`select`).
    selection: Option<Selection>,
}

static PLAN: Mutex<Option<Plan>> = Mutex::new(None);

const DEFAULT_COLUMNS: &str = r#"[{"name":"__key__","type":"string"},{"name":"__value__","type":"string"},
{"name":"__partition__","type":"bigint"},{"name":"__headers__","type":"string"},
{"name":"__offset__","type":"bigint"},{"name":"__timestamp__","type":"bigint"}]"#;

fn column_type(text: &str) -> Result<(ColumnType, Kind), String> {
    let t = text.trim().to_ascii_lowercase();
    let args = |prefix: &str| -> Option<Vec<u32>> {
        let inner = t
            .strip_prefix(prefix)?
            .strip_prefix('(')?
            .strip_suffix(')')?;
        inner.split(',').map(|n| n.trim().parse().ok()).collect()
    };
    let int = |min: i64, max: i64| Kind::Int { min, max };
    Ok(match t.as_str() {
        "boolean" => (ColumnType::Boolean, Kind::Boolean),
        "tinyint" => (ColumnType::Tinyint, int(i8::MIN.into(), i8::MAX.into())),
        "smallint" => (ColumnType::Smallint, int(i16::MIN.into(), i16::MAX.into())),
        "int" => (ColumnType::Int, int(i32::MIN.into(), i32::MAX.into())),
        "bigint" => (ColumnType::Bigint, int(i64::MIN, i64::MAX)),
        "float" => (ColumnType::Float, Kind::Float),
        "double" => (ColumnType::Double, Kind::Double),
        "string" => (ColumnType::String, Kind::Text { max_chars: None }),
        "binary" => (ColumnType::Binary, Kind::Binary),
        "json" => (ColumnType::Json, Kind::Json),
        "date" => (ColumnType::Date, Kind::Date),
        "datetime" => (ColumnType::Datetime, Kind::Datetime),
        "timestamp" => (ColumnType::Timestamp, Kind::Timestamp),
        "timestamp_ntz" => (ColumnType::TimestampNtz, Kind::Timestamp),
        _ if t.starts_with("decimal") => match args("decimal").as_deref() {
            Some([p, s]) if (1..=38).contains(p) && s <= p => (
                ColumnType::Decimal(DecimalType {
                    precision: *p as u8,
                    scale: *s as u8,
                }),
                Kind::Decimal {
                    precision: *p as u8,
                    scale: *s as u8,
                },
            ),
            _ => {
                return Err(format!(
                    "type '{text}': write decimal(p,s) with 1 <= p <= 38 and s <= p"
                ));
            }
        },
        _ if t.starts_with("varchar") || t.starts_with("char") => {
            let is_varchar = t.starts_with("varchar");
            match args(if is_varchar { "varchar" } else { "char" }).as_deref() {
                Some([n]) => (
                    if is_varchar {
                        ColumnType::Varchar(*n)
                    } else {
                        ColumnType::FixedChar(*n)
                    },
                    Kind::Text {
                        max_chars: Some(*n),
                    },
                ),
                _ => return Err(format!("type '{text}': write varchar(n) or char(n)")),
            }
        }
        _ if t.starts_with("array<") || t.starts_with("map<") || t.starts_with("struct<") => {
            (ColumnType::Complex(t.clone()), Kind::Complex(t.clone()))
        }
        _ => return Err(format!("type '{text}' is not a MaxCompute type")),
    })
}

fn configure(config: Vec<(String, String)>) -> Result<(Plan, Vec<Column>), String> {
    let (mut columns_json, mut key_type, mut value_type) =
        (None, BytesType::String, BytesType::String);
    for (key, value) in &config {
        match key.as_str() {
            "columns" => columns_json = Some(value.clone()),
            "key-type" => key_type = BytesType::parse(key, value)?,
            "value-type" => value_type = BytesType::parse(key, value)?,
            "encoding"
                if value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8") => {}
            "encoding" => return Err(format!("encoding = '{value}': only UTF-8 is supported")),
            other => {
                return Err(format!(
                    "unknown key '{other}': use columns, key-type, value-type or encoding"
                ));
            }
        }
    }
    let list: Vec<Json> = serde_json::from_str(columns_json.as_deref().unwrap_or(DEFAULT_COLUMNS))
        .map_err(|e| format!("columns is not a JSON array: {e}"))?;
    let (mut specs, mut out) = (Vec::new(), Vec::new());
    for (i, item) in list.iter().enumerate() {
        let field = |k: &str| item.get(k).and_then(Json::as_str);
        let name = field("name").ok_or_else(|| format!("columns[{i}] needs a \"name\""))?;
        let ty = field("type").ok_or_else(|| format!("columns[{i}] ({name}) needs a \"type\""))?;
        let (wit_type, kind) =
            column_type(ty).map_err(|e| format!("columns[{i}] ({name}): {e}"))?;
        let source = crate::columns::parse_source(field("source").unwrap_or(name))
            .map_err(|e| format!("columns[{i}] ({name}): {e}"))?;
        let nullable = item.get("nullable").and_then(Json::as_bool).unwrap_or(true);
        if out
            .iter()
            .any(|c: &Column| c.name.eq_ignore_ascii_case(name))
        {
            return Err(format!("columns[{i}]: column '{name}' is declared twice"));
        }
        out.push(Column {
            name: name.to_owned(),
            ty: wit_type,
            nullable,
        });
        specs.push(Spec {
            name: name.to_owned(),
            kind,
            source,
            nullable,
            slot: 0,
        });
    }
    if specs.is_empty() {
        return Err("columns is empty: declare at least one column".into());
    }
    let mut paths = Vec::new();
    for spec in &mut specs {
        if let Source::Path(steps) = &spec.source {
            spec.slot = paths.len();
            paths.push(steps.as_slice());
        }
    }
    let selection = (!paths.is_empty()).then(|| Selection::new(&paths));
    Ok((
        Plan {
            columns: specs,
            key_type,
            value_type,
            selection,
        },
        out,
    ))
}

/// A record's cells, into `cells` (emptied first, so that one buffer serves a batch). Text
/// read at a path borrows from the record where it can (`select::Picked`).
fn extract<'r>(
    plan: &Plan,
    topic: &str,
    partition: i32,
    record: &Record<'r>,
    cells: &mut Vec<Out<'r>>,
) -> Result<(), (String, String)> {
    cells.clear();
    let mut picked: Vec<Option<Picked<'r>>> = match (record.value, &plan.selection) {
        (Some(bytes), Some(selection)) => match plan.value_type {
            BytesType::String => simdutf8::basic::from_utf8(bytes)
                .map_err(|_| bad_json(bytes))
                .and_then(|text| {
                    selection
                        .read_picked(text)
                        .map_err(|e| ("bad-json".to_owned(), format!("value is not JSON: {e}")))
                })?,
            other => selection
                .get(
                    &other
                        .decode(bytes)
                        .map_err(|e| ("bad-value".to_owned(), e))?,
                )
                .into_iter()
                .map(|v| v.map(Picked::Value))
                .collect(),
        },
        _ => Vec::new(),
    };
    let decoded = |ty: BytesType, bytes: Option<&[u8]>| -> Result<Json, (String, String)> {
        bytes.map_or(Ok(Json::Null), |b| {
            ty.decode(b).map_err(|e| ("bad-encoding".to_owned(), e))
        })
    };
    for spec in &plan.columns {
        let raw = match (&spec.source, &spec.kind) {
            (Source::Key, Kind::Binary) => record.key.map(|b| Out::Binary(b.to_vec())),
            (Source::Value, Kind::Binary) => record.value.map(|b| Out::Binary(b.to_vec())),
            _ => None,
        };
        let out = match raw {
            Some(out) => out,
            None => {
                let value = match &spec.source {
                    Source::Key => Picked::Value(decoded(plan.key_type, record.key)?),
                    Source::Value => Picked::Value(decoded(plan.value_type, record.value)?),
                    Source::Partition => Picked::Value(Json::from(partition)),
                    Source::Offset => Picked::Value(Json::from(record.offset)),
                    Source::Timestamp => Picked::Value(Json::from(record.timestamp_ms)),
                    Source::Topic => Picked::Value(Json::from(topic)),
                    Source::Headers => Picked::Value(Json::Array(
                        record
                            .headers
                            .iter()
                            .map(|(key, value)| serde_json::json!({"key": key, "value": value.map(|v| String::from_utf8_lossy(v).into_owned())}))
                            .collect(),
                    )),
                    Source::Constant(c) => Picked::Value(Json::from(c.as_str())),
                    // Each path has a slot of its own: its value moves into the cell.
                    Source::Path(_) => picked
                        .get_mut(spec.slot)
                        .and_then(Option::take)
                        .unwrap_or(Picked::Value(Json::Null)),
                };
                crate::columns::coerce_picked(&spec.kind, value).map_err(|e| {
                    (
                        "type-mismatch".to_owned(),
                        format!("column {}: {e}", spec.name),
                    )
                })?
            }
        };
        if out == Out::Null && !spec.nullable {
            return Err((
                "null-value".into(),
                format!(
                    "column {} is NOT NULL but the record has no value for it",
                    spec.name
                ),
            ));
        }
        cells.push(out);
    }
    Ok(())
}

fn cell(out: Out<'_>) -> Cell {
    match out {
        Out::Null => Cell::Null,
        Out::Bool(b) => Cell::Boolean(b),
        Out::Int(n) => Cell::Int(n),
        Out::Double(x) => Cell::Double(x),
        Out::Decimal(d) => Cell::Decimal(d),
        Out::Text(s) => Cell::String(s.into_owned()),
        Out::Binary(b) => Cell::Binary(b),
        Out::Date(d) => Cell::Date(d),
        Out::Datetime(ms) => Cell::Datetime(ms),
        Out::Timestamp(seconds, nanos) => Cell::Timestamp(Instant { seconds, nanos }),
        Out::Json(j) => Cell::Json(j),
    }
}

/// The error serde_json gives for a value that is not UTF-8, as it gave before the value was
/// read selectively (the text is checked first, so that a skipped field is checked too).
fn bad_json(bytes: &[u8]) -> (String, String) {
    let message = match serde_json::from_slice::<Json>(bytes) {
        Err(e) => format!("value is not JSON: {e}"),
        Ok(_) => "value is not JSON: it is not UTF-8".to_owned(),
    };
    ("bad-json".to_owned(), message)
}

struct KafkaColumns;

impl Guest for KafkaColumns {
    fn configure(config: Vec<(String, String)>) -> Result<StageInfo, String> {
        let (plan, output) = configure(config)?;
        *PLAN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(plan);
        Ok(StageInfo {
            name: "kafka-columns".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            output,
        })
    }

    fn parse(batch: RecordBatch) -> BatchOutput {
        let (mut rows, mut errors) = (Vec::with_capacity(batch.records.len()), Vec::new());
        let mut cells = Vec::new();
        let records = listed(&batch.records);
        let (topic, partition) = (&batch.topic, batch.partition);
        each_record(
            topic,
            partition,
            &records,
            &mut cells,
            &mut errors,
            |source, cells| {
                rows.push(Row {
                    source,
                    cells: cells.drain(..).map(cell).collect(),
                })
            },
        );
        BatchOutput { rows, errors }
    }
}

impl PackedGuest for KafkaColumns {
    fn parse_packed(batch: RecordBatch) -> PackedOutput {
        packed_rows(&batch.topic, batch.partition, &listed(&batch.records))
    }
}

impl PackedRecordsGuest for KafkaColumns {
    fn parse_records_packed(
        topic: String,
        partition: i32,
        records: u32,
        bytes: Vec<u8>,
    ) -> PackedOutput {
        match crate::records::read(&bytes, records) {
            Ok(records) => packed_rows(&topic, partition, &records),
            // The host wrote the bytes: a layout it broke is its fault, not a record's.
            Err(message) => PackedOutput {
                cells: Vec::new(),
                sources: Vec::new(),
                errors: vec![RecordError {
                    source: 0,
                    kind: ErrorKind::Fatal,
                    code: "bad-packed-records".into(),
                    message,
                }],
            },
        }
    }
}

/// The records of a `list<kafka-record>`, borrowed as `extract` reads them.
fn listed(records: &[KafkaRecord]) -> Vec<Record<'_>> {
    records
        .iter()
        .map(|r| Record {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: r
                .headers
                .iter()
                .map(|h| (h.key.as_str(), h.value.as_deref()))
                .collect(),
        })
        .collect()
}

/// The rows of `records`, packed (`parse-packed` and `parse-records-packed` alike).
fn packed_rows(topic: &str, partition: i32, records: &[Record<'_>]) -> PackedOutput {
    let (mut packed, mut sources, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    let mut cells = Vec::new();
    each_record(
        topic,
        partition,
        records,
        &mut cells,
        &mut errors,
        |source, cells| {
            for out in cells.iter() {
                crate::packed::put(&mut packed, out);
            }
            sources.push(source);
        },
    );
    PackedOutput {
        cells: packed,
        sources,
        errors,
    }
}

/// Extracts every record of the batch (`parse`, `parse-packed` and `parse-records-packed`
/// alike), giving each row's cells to `row` and each failed record's error to `errors`; one
/// `fatal` error when the stage was never configured.
fn each_record<'b>(
    topic: &str,
    partition: i32,
    records: &[Record<'b>],
    cells: &mut Vec<Out<'b>>,
    errors: &mut Vec<RecordError>,
    mut row: impl FnMut(u32, &mut Vec<Out<'b>>),
) {
    let guard = PLAN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(plan) = guard.as_ref() else {
        errors.push(RecordError {
            source: 0,
            kind: ErrorKind::Fatal,
            code: "not-configured".into(),
            message: "parse was called before configure".into(),
        });
        return;
    };
    for (i, record) in records.iter().enumerate() {
        match extract(plan, topic, partition, record, cells) {
            Ok(()) => row(i as u32, cells),
            Err((code, message)) => errors.push(RecordError {
                source: i as u32,
                kind: ErrorKind::InvalidInput,
                code,
                message,
            }),
        }
    }
}

export!(KafkaColumns);
