//! One side of a record (value or key): the reader schema (the configured subject version: the
//! table's shape), the writer schemas met so far by id, and a record's bytes to a decoded
//! value whose fields the plan's columns read. Registry lookups come through a closure, so this
//! runs natively too (tests, fuzzing); the component passes the WIT `registry` import.

use std::collections::HashMap;

use crate::avro::{self, AvroSchema, Decoder};
use crate::framing::{self, Framed};
use crate::json_schema::{self, JsonSchema};
use crate::model::{Field, Out, Ty};
use crate::plan::Evolution;
use crate::protobuf::{self, ProtoSchema};

/// How a registered schema is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Avro,
    Protobuf,
    JsonSchema,
}

/// A schema as the registry hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct RegSchema {
    pub id: String,
    pub format: Format,
    pub text: String,
    /// `(name, text)` of every schema it refers to, dependencies first.
    pub references: Vec<(String, String)>,
    pub subject: Option<String>,
    pub version: Option<i32>,
}

/// The writer schema a record's framing names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WriterId {
    /// A Confluent schema id.
    Confluent(u32),
    /// An AWS Glue schema version id (a UUID's text).
    Glue(String),
}

impl std::fmt::Display for WriterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriterId::Confluent(id) => write!(f, "{id}"),
            WriterId::Glue(uuid) => f.write_str(uuid),
        }
    }
}

/// Most bytes a zlib-compressed Glue payload may inflate to.
const MAX_INFLATED: usize = 64 * 1024 * 1024;

/// Why a lookup gave no schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No such id: the record is a dead letter.
    NotFound(String),
    /// The registry is down or refused us: the batch fails, nothing is skipped.
    Unavailable(String),
}

/// What became of a record that gave no row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A dead letter: code and message.
    Dead(String, String),
    /// The batch cannot go on: code (`registry-unavailable`, `schema-changed`) and message.
    Fatal(String, String),
}

fn dead(code: &str, message: String) -> Failure {
    Failure::Dead(code.into(), message)
}

enum Schema {
    Avro(&'static AvroSchema),
    Proto(ProtoSchema),
    Json(JsonSchema),
}

enum Writer {
    Avro(Decoder, &'static AvroSchema),
    Proto(ProtoSchema),
    Json(JsonSchema),
}

/// A decoded record side.
pub enum Decoded {
    Avro(apache_avro::types::Value),
    Proto(prost_reflect::DynamicMessage),
    Json(serde_json::Value),
}

/// The reader schema of one side and the writers met so far.
pub struct Side {
    reader: Schema,
    reader_id: String,
    tree: Field,
    /// `subject vN (id N)`, for messages.
    pub label: String,
    writers: HashMap<WriterId, Result<Writer, Failure>>,
    /// Per writer id met, the top-level fields it has and the reader lacks.
    dropped: HashMap<WriterId, Vec<String>>,
    evolution: Evolution,
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

fn parse(s: &RegSchema, message: Option<&str>) -> Result<Schema, String> {
    let refs: Vec<(&str, &str)> = s
        .references
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    match s.format {
        Format::Avro => {
            let texts: Vec<&str> = refs.iter().map(|r| r.1).collect();
            avro::parse(&s.text, &texts).map(Schema::Avro)
        }
        Format::Protobuf => protobuf::parse(&s.text, &refs, message).map(Schema::Proto),
        Format::JsonSchema => json_schema::parse(&s.text, &refs).map(Schema::Json),
    }
    .map_err(|e| format!("schema {} does not parse: {e}", s.id))
}

impl Side {
    /// The side for reader schema `s`; `message` picks a Protobuf reader message.
    pub fn new(s: &RegSchema, message: Option<&str>) -> Result<Side, String> {
        let reader = parse(s, message)?;
        let tree = match &reader {
            Schema::Avro(a) => a.tree()?,
            Schema::Proto(p) => p.tree(),
            Schema::Json(j) => j.tree()?,
        };
        Ok(Side {
            reader,
            reader_id: s.id.clone(),
            tree,
            label: format!(
                "{} v{} (id {})",
                s.subject.as_deref().unwrap_or("schema"),
                s.version.unwrap_or_default(),
                s.id
            ),
            writers: HashMap::new(),
            dropped: HashMap::new(),
            evolution: Evolution::Ignore,
        })
    }

    /// The side for a subject that is not pinned to a version: the latest version, with the
    /// fields only `older` versions (newest first) have added after its own, so that a table
    /// made from an older version keeps reading them (from records that carry them, else their
    /// default or NULL). Types are the newest version's.
    pub fn merged(
        latest: &RegSchema,
        older: &[RegSchema],
        message: Option<&str>,
    ) -> Result<Side, String> {
        if latest.format == Format::Avro {
            let texts: Vec<&str> = older
                .iter()
                .filter(|o| o.format == Format::Avro)
                .map(|o| o.text.as_str())
                .collect();
            if let Some(text) = avro::merge(&latest.text, &texts)? {
                let merged = RegSchema {
                    // No writer has this id: every record resolves onto it.
                    id: String::new(),
                    text,
                    ..latest.clone()
                };
                let mut side = Side::new(&merged, message)?;
                side.label = format!(
                    "{} v{} with older versions' fields",
                    latest.subject.as_deref().unwrap_or("schema"),
                    latest.version.unwrap_or_default()
                );
                return Ok(side);
            }
            return Side::new(latest, message);
        }
        let mut side = Side::new(latest, message)?;
        for o in older.iter().filter(|o| o.format == latest.format) {
            let tree = match parse(o, message)? {
                Schema::Avro(a) => a.tree()?,
                Schema::Proto(p) => p.tree(),
                Schema::Json(j) => j.tree()?,
            };
            for child in tree.children {
                if !side.tree.children.iter().any(|c| c.name == child.name) {
                    side.tree.children.push(Field {
                        nullable: true,
                        ..child
                    });
                }
            }
        }
        side.tree.ty = Ty::Struct(
            side.tree
                .children
                .iter()
                .map(|c| (c.name.clone(), c.ty.clone()))
                .collect(),
        );
        Ok(side)
    }

    /// Sets what a writer with fields the reader lacks does (default: ignore them).
    pub fn with_evolution(mut self, evolution: Evolution) -> Side {
        self.evolution = evolution;
        self
    }

    /// The reader's field tree (what the plan's columns come from).
    pub fn tree(&self) -> &Field {
        &self.tree
    }

    fn writer(
        &mut self,
        writer: &WriterId,
        lookup: &mut dyn FnMut(&WriterId) -> Result<RegSchema, LookupError>,
    ) -> Result<(), Failure> {
        if !self.writers.contains_key(writer) {
            let id = writer.to_string();
            let built = match lookup(writer) {
                Err(LookupError::Unavailable(m)) => {
                    return Err(Failure::Fatal("registry-unavailable".into(), m));
                }
                Err(LookupError::NotFound(m)) => Err(dead(
                    "unknown-schema",
                    format!("schema id {id} is not in the registry: {m}"),
                )),
                Ok(s) => self.build(&id, &s),
            };
            self.writers.insert(writer.clone(), built);
        }
        Ok(())
    }

    fn build(&self, id: &str, s: &RegSchema) -> Result<Writer, Failure> {
        let written = parse(s, None).map_err(|e| dead("bad-schema", e))?;
        let incompatible = |why: String| {
            dead(
                "incompatible-schema",
                format!("writer schema {id} cannot be read as {}: {why}", self.label),
            )
        };
        match (written, &self.reader) {
            (Schema::Avro(w), Schema::Avro(r)) => {
                let resolve = (s.id != self.reader_id).then_some(*r);
                Decoder::new(w, resolve)
                    .map(|d| Writer::Avro(d, w))
                    .map_err(incompatible)
            }
            (Schema::Proto(w), Schema::Proto(_)) => Ok(Writer::Proto(w)),
            (Schema::Json(w), Schema::Json(_)) => Ok(Writer::Json(w)),
            (_, _) => Err(incompatible(format!(
                "it is {:?}, the reader is another format",
                s.format
            ))),
        }
    }

    /// Decodes one framed key or value. The second item is a note to log once per writer id
    /// (fields the writer has that the table does not load).
    pub fn decode(
        &mut self,
        bytes: &[u8],
        lookup: &mut dyn FnMut(&WriterId) -> Result<RegSchema, LookupError>,
    ) -> Result<(Decoded, Option<String>), Failure> {
        let inflated;
        let (writer, payload) = match framing::split(bytes) {
            Ok(Framed::Confluent { id, payload }) => (WriterId::Confluent(id), payload),
            Ok(Framed::Glue {
                version_id,
                compressed,
                payload,
            }) => {
                let payload = if compressed {
                    inflated = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(
                        payload,
                        MAX_INFLATED,
                    )
                    .map_err(|e| {
                        dead(
                            "bad-payload",
                            format!("Glue schema version {version_id}: the zlib payload does not inflate: {e:?}"),
                        )
                    })?;
                    inflated.as_slice()
                } else {
                    payload
                };
                (WriterId::Glue(version_id), payload)
            }
            Err(e) => return Err(dead("bad-framing", e.0)),
        };
        self.writer(&writer, lookup)?;
        // The reader's own id is the common case; compared without formatting the writer's.
        let own = match &writer {
            WriterId::Confluent(n) => self.reader_id.parse() == Ok(*n),
            WriterId::Glue(uuid) => *uuid == self.reader_id,
        };
        let label = &self.label;
        let bad = |why: String| {
            if own {
                dead("bad-payload", format!("schema {writer}: {why}"))
            } else {
                dead(
                    "incompatible-schema",
                    format!("writer schema {writer} read as {label}: {why}"),
                )
            }
        };
        let built = match &self.writers[&writer] {
            Ok(w) => w,
            Err(f) => return Err(f.clone()),
        };
        let decoded = match built {
            Writer::Avro(d, _) => Decoded::Avro(d.decode(payload).map_err(bad)?),
            Writer::Proto(w) => {
                let (indexes, rest) = protobuf::message_indexes(payload).map_err(bad)?;
                let message = w.message_at(&indexes).map_err(bad)?;
                Decoded::Proto(
                    prost_reflect::DynamicMessage::decode(message, rest)
                        .map_err(|e| bad(e.to_string()))?,
                )
            }
            Writer::Json(_) => Decoded::Json(
                serde_json::from_slice(payload).map_err(|e| bad(format!("not JSON: {e}")))?,
            ),
        };
        let mut note = None;
        if !own && !self.dropped.contains_key(&writer) {
            let dropped = match (&decoded, &self.reader, self.writers.get(&writer)) {
                (Decoded::Proto(m), Schema::Proto(r), _) => {
                    use prost_reflect::ReflectMessage as _;
                    protobuf::dropped_fields(&m.descriptor(), &r.message)
                }
                (_, Schema::Json(_), Some(Ok(Writer::Json(w)))) => w
                    .tree()
                    .map(|t| {
                        t.children
                            .into_iter()
                            .filter(|c| !self.tree.children.iter().any(|r| r.name == c.name))
                            .map(|c| c.name)
                            .collect()
                    })
                    .unwrap_or_default(),
                (_, Schema::Avro(r), Some(Ok(Writer::Avro(_, w)))) => avro::dropped_fields(w, r),
                _ => Vec::new(),
            };
            if !dropped.is_empty() && self.evolution == Evolution::Ignore {
                note = Some(format!(
                    "schema {writer} has fields the table does not ({}); they are not loaded (schema evolution: ignore). To load them, set maxcompute.schema_evolution = \"add-columns\"",
                    dropped.join(", ")
                ));
            }
            self.dropped.insert(writer.clone(), dropped);
        }
        if self.evolution == Evolution::AddColumns
            && let Some(fields) = self.dropped.get(&writer).filter(|d| !d.is_empty())
        {
            return Err(Failure::Fatal(
                "schema-changed".into(),
                format!(
                    "writer schema {writer} adds fields {} that the table does not have yet; the function reloads its transforms and adds them as columns before loading this record",
                    fields.join(", ")
                ),
            ));
        }
        Ok((decoded, note))
    }

    /// The cell at `path` of a decoded record, as column type `ty`.
    pub fn extract(&self, d: &Decoded, path: &[String], ty: &Ty) -> Result<Out, Failure> {
        let mismatch = |e: String| dead("incompatible-schema", format!("{}: {e}", self.label));
        match (d, &self.reader) {
            (Decoded::Avro(v), Schema::Avro(r)) => Ok(avro::extract(r, v, path)),
            (Decoded::Proto(m), _) => protobuf::extract(m, path, ty).map_err(mismatch),
            (Decoded::Json(v), _) => json_schema::extract(v, path, ty).map_err(mismatch),
            _ => Err(mismatch("decoded with another format".into())),
        }
    }
}
