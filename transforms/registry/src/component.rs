//! The component glue: WIT bindings and the exported parser. Only built for WebAssembly; the
//! logic it calls (`decode`, `plan`) also compiles natively.

wit_bindgen::generate!({
    path: "../../wit",
    world: "registry-parser-stage",
});

use std::sync::Mutex;

use crate::decode::{Decoded, Failure, Format, LookupError, RegSchema, Side, WriterId};
use crate::model::{Out, Ty};
use crate::plan::{self, Planned, Settings, Source, Tombstones};
use exports::kafka2mc::transform::parser::Guest;
use kafka2mc::transform::host::{Level, log};
use kafka2mc::transform::registry::{
    RegistryError, RegistryErrorKind, Schema, SchemaFormat, SchemaId, schema_by_id,
    schema_by_subject,
};
use kafka2mc::transform::types::{
    BatchOutput, Cell, Column, ColumnType, DecimalType, ErrorKind, Instant, KafkaRecord,
    RecordBatch, RecordError, Row, StageInfo,
};

struct Stage {
    settings: Settings,
    columns: Vec<Planned>,
    value: Side,
    key: Option<Side>,
}

static STAGE: Mutex<Option<Stage>> = Mutex::new(None);

fn reg(s: Schema) -> RegSchema {
    RegSchema {
        id: s.id,
        format: match s.format {
            SchemaFormat::Avro => Format::Avro,
            SchemaFormat::Protobuf => Format::Protobuf,
            SchemaFormat::JsonSchema => Format::JsonSchema,
        },
        text: s.text,
        references: s.references.into_iter().map(|r| (r.name, r.text)).collect(),
        subject: s.subject,
        version: s.version,
    }
}

fn lookup(id: &WriterId) -> Result<RegSchema, LookupError> {
    let id = match id {
        WriterId::Confluent(n) => SchemaId::Confluent(*n),
        WriterId::Glue(uuid) => SchemaId::Glue(uuid.clone()),
    };
    schema_by_id(&id)
        .map(reg)
        .map_err(|e: RegistryError| match e.kind {
            RegistryErrorKind::NotFound => LookupError::NotFound(e.message),
            _ => LookupError::Unavailable(e.message),
        })
}

/// The reader side for `subject`: `version` exactly, or (unpinned) the latest version merged
/// with the fields of the older ones, so a table made from an older version keeps its columns.
fn side(
    key: &str,
    subject: &str,
    version: Option<i32>,
    message: Option<&str>,
) -> Result<Side, String> {
    let schema = schema_by_subject(subject, version).map_err(|e| match e.kind {
        RegistryErrorKind::NotFound => format!(
            "{key}: subject {subject} {} is not in the registry ({}); register the schema first or fix the subject",
            version.map_or("latest".into(), |v| format!("version {v}")),
            e.message
        ),
        _ => format!("{key}: {}", e.message),
    })?;
    let latest = reg(schema);
    if version.is_some() {
        return Side::new(&latest, message).map_err(|e| format!("{key}: {e}"));
    }
    let mut older = Vec::new();
    for v in (1..latest.version.unwrap_or(1)).rev() {
        match schema_by_subject(subject, Some(v)) {
            Ok(s) => older.push(reg(s)),
            // A deleted version is skipped.
            Err(e) if e.kind == RegistryErrorKind::NotFound => {}
            Err(e) => return Err(format!("{key}: {}", e.message)),
        }
    }
    Side::merged(&latest, &older, message).map_err(|e| format!("{key}: {e}"))
}

fn column_type(ty: &Ty) -> ColumnType {
    match ty {
        Ty::Boolean => ColumnType::Boolean,
        Ty::Int => ColumnType::Int,
        Ty::Bigint => ColumnType::Bigint,
        Ty::Float => ColumnType::Float,
        Ty::Double => ColumnType::Double,
        Ty::Decimal(precision, scale) => ColumnType::Decimal(DecimalType {
            precision: *precision,
            scale: *scale,
        }),
        Ty::String => ColumnType::String,
        Ty::Binary => ColumnType::Binary,
        Ty::Json => ColumnType::Json,
        Ty::Date => ColumnType::Date,
        Ty::Timestamp => ColumnType::Timestamp,
        Ty::TimestampNtz => ColumnType::TimestampNtz,
        complex => ColumnType::Complex(complex.text()),
    }
}

fn cell(out: Out) -> Cell {
    match out {
        Out::Null => Cell::Null,
        Out::Bool(b) => Cell::Boolean(b),
        Out::Int(n) => Cell::Int(n),
        Out::Double(x) => Cell::Double(x),
        Out::Decimal(s) => Cell::Decimal(s),
        Out::Str(s) => Cell::String(s),
        Out::Bin(b) => Cell::Binary(b),
        Out::Date(d) => Cell::Date(d),
        Out::Timestamp(seconds, nanos) => Cell::Timestamp(Instant { seconds, nanos }),
        Out::Json(text) => Cell::Json(text),
    }
}

struct Registry;

impl Guest for Registry {
    fn configure(config: Vec<(String, String)>) -> Result<StageInfo, String> {
        let settings = Settings::parse(&config)?;
        let value = side(
            "subject",
            &settings.subject,
            settings.version,
            settings.message.as_deref(),
        )?
        .with_evolution(settings.evolution);
        let key = match &settings.key_subject {
            Some(subject) => Some(
                side(
                    "key-subject",
                    subject,
                    settings.key_version,
                    settings.key_message.as_deref(),
                )?
                .with_evolution(settings.evolution),
            ),
            None => None,
        };
        let columns = plan::plan(&settings, value.tree(), key.as_ref().map(Side::tree))?;
        let output = columns
            .iter()
            .map(|p| Column {
                name: p.col.name.clone(),
                ty: column_type(&p.col.ty),
                nullable: p.col.nullable,
            })
            .collect();
        *STAGE
            .lock()
            .map_err(|_| "stage state poisoned".to_string())? = Some(Stage {
            settings,
            columns,
            value,
            key,
        });
        Ok(StageInfo {
            name: "registry".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            output,
        })
    }

    fn parse(batch: RecordBatch) -> BatchOutput {
        let mut out = BatchOutput {
            rows: Vec::with_capacity(batch.records.len()),
            errors: Vec::new(),
        };
        let mut guard = match STAGE.lock() {
            Ok(g) => g,
            Err(_) => {
                out.errors.push(fatal(0, "stage state poisoned".into()));
                return out;
            }
        };
        let Some(stage) = guard.as_mut() else {
            out.errors
                .push(fatal(0, "parse called before configure".into()));
            return out;
        };
        for (i, record) in batch.records.iter().enumerate() {
            let source = i as u32;
            match stage.row(record, &batch) {
                Ok(Some(cells)) => out.rows.push(Row { source, cells }),
                Ok(None) => {}
                Err(Failure::Dead(code, message)) => out.errors.push(RecordError {
                    source,
                    kind: ErrorKind::InvalidInput,
                    code,
                    message,
                }),
                Err(Failure::Fatal(code, message)) => {
                    out.errors.push(RecordError {
                        source,
                        kind: ErrorKind::Fatal,
                        code,
                        message,
                    });
                    return out;
                }
            }
        }
        out
    }
}

fn fatal(source: u32, message: String) -> RecordError {
    RecordError {
        source,
        kind: ErrorKind::Fatal,
        code: "stage-state".into(),
        message,
    }
}

fn decode(side: &mut Side, bytes: &[u8]) -> Result<Decoded, Failure> {
    let (decoded, note) = side.decode(bytes, &mut lookup)?;
    if let Some(note) = note {
        log(Level::Info, &note);
    }
    Ok(decoded)
}

impl Stage {
    fn row(
        &mut self,
        record: &KafkaRecord,
        batch: &RecordBatch,
    ) -> Result<Option<Vec<Cell>>, Failure> {
        let Some(bytes) = &record.value else {
            return match self.settings.tombstones {
                Tombstones::Skip => Ok(None),
                Tombstones::DeadLetter => Err(Failure::Dead(
                    "tombstone".into(),
                    format!("offset {} has no value (a tombstone)", record.offset),
                )),
            };
        };
        let value = decode(&mut self.value, bytes)?;
        let key = match (&mut self.key, &record.key) {
            (Some(side), Some(k)) => Some(decode(side, k).map_err(|e| match e {
                Failure::Dead(code, m) => Failure::Dead(code, format!("key: {m}")),
                fatal => fatal,
            })?),
            _ => None,
        };
        let mut cells = Vec::with_capacity(self.columns.len());
        for p in &self.columns {
            let out = match &p.source {
                Source::Offset => Out::Int(record.offset),
                Source::Timestamp => Out::Int(record.timestamp_ms),
                Source::Partition => Out::Int(batch.partition.into()),
                Source::Topic => Out::Str(batch.topic.clone()),
                Source::KeyText => match &record.key {
                    None => Out::Null,
                    Some(k) => Out::Str(String::from_utf8(k.clone()).map_err(|_| {
                        Failure::Dead(
                            "bad-key".into(),
                            format!("column {}: the key is not UTF-8 text", p.col.name),
                        )
                    })?),
                },
                Source::Field { key: false, path } => {
                    self.value.extract(&value, path, &p.col.ty)?
                }
                Source::Field { key: true, path } => match (&key, &self.key) {
                    (Some(k), Some(side)) => side.extract(k, path, &p.col.ty)?,
                    _ => Out::Null,
                },
            };
            cells.push(cell(out));
        }
        Ok(Some(cells))
    }
}

export!(Registry);
