//! `registry`: the parser stage for records written with a schema registry serializer. It reads
//! the schema id from the record's framing (`framing`), gets the writer schema from the host
//! (WIT `registry` interface; the stage itself has no network), decodes the payload and
//! resolves it onto the reader schema (the configured subject's version: the table's shape),
//! and emits one row per record in the columns `plan` derived from that schema.
//!
//! Formats: Avro (this version). A schema of another format is a dead letter that says so.
//! Dead-letter codes: `bad-framing`, `unknown-schema`, `bad-schema`, `unsupported-format`,
//! `incompatible-schema`, `bad-avro`, `bad-key`, `tombstone`. A registry that cannot be reached
//! fails the batch (`fatal`), so no record is skipped while it is down.

pub mod avro;
pub mod framing;
pub mod model;
pub mod plan;

/// The component glue: WIT bindings and the exported stage. Only built for WebAssembly, so
/// the pure logic above also compiles natively (unit tests, the fuzz targets).
#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "registry-parser-stage",
    });

    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use crate::avro::{self, AvroSchema, Decoder};
    use crate::framing::{self, Framed};
    use crate::model::{Out, Ty};
    use crate::plan::{self, Planned, Settings, Source, Tombstones};
    use exports::kafka2mc::transform::parser::Guest;
    use kafka2mc::transform::host::{Level, log};
    use kafka2mc::transform::registry::{
        RegistryErrorKind, Schema, SchemaFormat, SchemaId, schema_by_id, schema_by_subject,
    };
    use kafka2mc::transform::types::{
        BatchOutput, Cell, Column, ColumnType, DecimalType, ErrorKind, Instant, KafkaRecord,
        RecordBatch, RecordError, Row, StageInfo,
    };

    /// A schema side (value or key): the reader schema and decoders per writer id.
    struct Side {
        reader: &'static AvroSchema,
        reader_id: String,
        label: String,
        decoders: HashMap<u32, Result<Decoder, (String, String)>>,
    }

    struct Stage {
        settings: Settings,
        columns: Vec<Planned>,
        value: Side,
        key: Option<Side>,
        /// Writer ids whose dropped fields were logged.
        logged: HashSet<u32>,
    }

    static STAGE: Mutex<Option<Stage>> = Mutex::new(None);

    fn registry_schema(subject: &str, version: Option<i32>) -> Result<Schema, String> {
        schema_by_subject(subject, version).map_err(|e| match e.kind {
            RegistryErrorKind::NotFound => format!(
                "subject {subject} {}: not in the registry ({}); register the schema first or fix the subject",
                version.map_or("latest".into(), |v| format!("version {v}")),
                e.message
            ),
            _ => e.message,
        })
    }

    fn parse_schema(s: &Schema) -> Result<&'static AvroSchema, (String, String)> {
        if s.format != SchemaFormat::Avro {
            return Err((
                "unsupported-format".into(),
                format!(
                    "schema {} is {:?}; this version of the registry stage decodes Avro only",
                    s.id, s.format
                ),
            ));
        }
        let refs: Vec<&str> = s.references.iter().map(|r| r.text.as_str()).collect();
        avro::parse(&s.text, &refs).map_err(|e| {
            (
                "bad-schema".into(),
                format!("schema {} does not parse: {e}", s.id),
            )
        })
    }

    fn side(subject: &str, version: Option<i32>, label: &str) -> Result<Side, String> {
        let schema = registry_schema(subject, version)?;
        let reader = parse_schema(&schema).map_err(|(_, m)| format!("{label}: {m}"))?;
        Ok(Side {
            reader,
            reader_id: schema.id.clone(),
            label: format!(
                "{subject} v{} (id {})",
                schema.version.unwrap_or_default(),
                schema.id
            ),
            decoders: HashMap::new(),
        })
    }

    impl Side {
        /// The decoder for writer schema `id`, fetched and built once.
        fn decoder(&mut self, id: u32) -> Result<&Decoder, RecordFailure> {
            if !self.decoders.contains_key(&id) {
                let built = match schema_by_id(&SchemaId::Confluent(id)) {
                    Err(e) if e.kind == RegistryErrorKind::NotFound => Err((
                        "unknown-schema".into(),
                        format!("schema id {id} is not in the registry: {}", e.message),
                    )),
                    Err(e) => return Err(RecordFailure::Fatal(e.message)),
                    Ok(schema) => parse_schema(&schema).and_then(|writer| {
                        let resolve = (schema.id != self.reader_id).then_some(self.reader);
                        Decoder::new(writer, resolve).map_err(|e| {
                            (
                                "incompatible-schema".into(),
                                format!("writer schema {id} cannot be read as {}: {e}", self.label),
                            )
                        })
                    }),
                };
                self.decoders.insert(id, built);
            }
            match &self.decoders[&id] {
                Ok(d) => Ok(d),
                Err((code, message)) => Err(RecordFailure::Dead(code.clone(), message.clone())),
            }
        }

        fn decode(&mut self, bytes: &[u8]) -> Result<apache_avro::types::Value, RecordFailure> {
            let (id, payload) = match framing::split(bytes) {
                Ok(Framed::Confluent { id, payload }) => (id, payload),
                Ok(Framed::Glue { version_id, .. }) => {
                    // The host answers for the registry kinds it has.
                    return match schema_by_id(&SchemaId::Glue(version_id.clone())) {
                        Err(e) => Err(RecordFailure::Fatal(e.message)),
                        Ok(_) => Err(RecordFailure::Dead(
                            "unsupported-format".into(),
                            format!(
                                "AWS Glue schema version {version_id}: Glue records are not decoded by this version"
                            ),
                        )),
                    };
                }
                Err(e) => return Err(RecordFailure::Dead("bad-framing".into(), e.0)),
            };
            let label = self.label.clone();
            let reader_id = self.reader_id.clone();
            let decoder = self.decoder(id)?;
            decoder.decode(payload).map_err(|e| {
                if id.to_string() == reader_id {
                    RecordFailure::Dead("bad-avro".into(), format!("schema {id}: {e}"))
                } else {
                    RecordFailure::Dead(
                        "incompatible-schema".into(),
                        format!("writer schema {id} read as {label}: {e}"),
                    )
                }
            })
        }
    }

    enum RecordFailure {
        Dead(String, String),
        Fatal(String),
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

    struct Stage0;

    impl Guest for Stage0 {
        fn configure(config: Vec<(String, String)>) -> Result<StageInfo, String> {
            let settings = Settings::parse(&config)?;
            let value = side(&settings.subject, settings.version, "subject")?;
            let key = match &settings.key_subject {
                Some(subject) => Some(side(subject, settings.key_version, "key-subject")?),
                None => None,
            };
            let columns = plan::plan(&settings, value.reader, key.as_ref().map(|k| k.reader))?;
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
                logged: HashSet::new(),
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
            let Ok(mut guard) = STAGE.lock() else {
                return BatchOutput {
                    rows: Vec::new(),
                    errors: vec![fatal(0, "stage state poisoned".into())],
                };
            };
            let Some(stage) = guard.as_mut() else {
                return BatchOutput {
                    rows: Vec::new(),
                    errors: vec![fatal(0, "parse called before configure".into())],
                };
            };
            for (i, record) in batch.records.iter().enumerate() {
                let source = i as u32;
                match stage.row(record, &batch) {
                    Ok(Some(cells)) => out.rows.push(Row { source, cells }),
                    Ok(None) => {}
                    Err(RecordFailure::Dead(code, message)) => out.errors.push(RecordError {
                        source,
                        kind: ErrorKind::InvalidInput,
                        code,
                        message,
                    }),
                    Err(RecordFailure::Fatal(message)) => {
                        out.errors.push(fatal(source, message));
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
            code: "registry-unavailable".into(),
            message,
        }
    }

    impl Stage {
        fn row(
            &mut self,
            record: &KafkaRecord,
            batch: &RecordBatch,
        ) -> Result<Option<Vec<Cell>>, RecordFailure> {
            let Some(bytes) = &record.value else {
                return match self.settings.tombstones {
                    Tombstones::Skip => Ok(None),
                    Tombstones::DeadLetter => Err(RecordFailure::Dead(
                        "tombstone".into(),
                        format!("offset {} has no value (a tombstone)", record.offset),
                    )),
                };
            };
            let value = self.value.decode(bytes)?;
            if let Some(id) = framing::split(bytes).ok().and_then(|f| match f {
                Framed::Confluent { id, .. } => Some(id),
                Framed::Glue { .. } => None,
            }) && id.to_string() != self.value.reader_id
                && self.logged.insert(id)
                && let Ok(schema) = schema_by_id(&SchemaId::Confluent(id))
                && let Ok(writer) = parse_schema(&schema)
            {
                let dropped = plan::dropped_fields(writer, self.value.reader);
                if !dropped.is_empty() {
                    log(
                        Level::Info,
                        &format!(
                            "schema {id} has fields the table does not ({}); they are not loaded. To load them, add the columns and point the stage at the newer version",
                            dropped.join(", ")
                        ),
                    );
                }
            }
            let key = match (&mut self.key, &record.key) {
                (Some(side), Some(k)) => Some(side.decode(k).map_err(|e| match e {
                    RecordFailure::Dead(code, m) => RecordFailure::Dead(code, format!("key: {m}")),
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
                            RecordFailure::Dead(
                                "bad-key".into(),
                                format!("column {}: the key is not UTF-8 text", p.col.name),
                            )
                        })?),
                    },
                    Source::Field { key: false, path } => {
                        plan::extract(self.value.reader, &value, path)
                    }
                    Source::Field { key: true, path } => match (&key, &self.key) {
                        (Some(k), Some(side)) => plan::extract(side.reader, k, path),
                        _ => Out::Null,
                    },
                };
                cells.push(cell(out));
            }
            Ok(Some(cells))
        }
    }

    export!(Stage0);
}
