//! The stage's settings and output columns: which fields of the decoded key and value become
//! which columns (all top-level fields by default, nested records flattened on request, or a
//! chosen list with renames), and how a decoded record becomes a row.

use apache_avro::schema::Schema;
use apache_avro::types::Value;
use serde_json::Value as Json;

use crate::avro::AvroSchema;
use crate::model::{Col, Out, Ty};

/// Settings of the stage (`transforms/README.md`, "registry").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub subject: String,
    pub version: Option<i32>,
    pub key_subject: Option<String>,
    pub key_version: Option<i32>,
    /// `[{"name", "source"?}]`, as given.
    pub columns: Option<String>,
    pub flatten: bool,
    pub tombstones: Tombstones,
}

/// What a record without a value (a tombstone) becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tombstones {
    /// Filtered out (counted as filtered in the stage's metrics).
    #[default]
    Skip,
    DeadLetter,
}

impl Settings {
    /// Parses the string map; an error names the key and the fix.
    pub fn parse(config: &[(String, String)]) -> Result<Settings, String> {
        let mut s = Settings::default();
        let int = |k: &str, v: &str| {
            v.trim().parse::<i32>().map_err(|_| {
                format!("{k}: '{v}' is not a version number; use a number, or leave it out for the latest")
            })
        };
        for (k, v) in config {
            match k.as_str() {
                "subject" => s.subject = v.trim().to_owned(),
                "version" => s.version = Some(int(k, v)?),
                "key-subject" => s.key_subject = Some(v.trim().to_owned()),
                "key-version" => s.key_version = Some(int(k, v)?),
                "columns" => s.columns = Some(v.clone()),
                "flatten" => {
                    s.flatten = match v.trim() {
                        "true" => true,
                        "false" => false,
                        other => return Err(format!("flatten: '{other}' is not true or false")),
                    }
                }
                "tombstones" => {
                    s.tombstones = match v.trim() {
                        "skip" => Tombstones::Skip,
                        "dead-letter" => Tombstones::DeadLetter,
                        other => {
                            return Err(format!(
                                "tombstones: '{other}' is not skip or dead-letter"
                            ));
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown setting '{other}'; the settings are subject, version, key-subject, key-version, columns, flatten, tombstones"
                    ));
                }
            }
        }
        if s.subject.is_empty() {
            return Err(
                "subject: missing; name the value schema's subject, e.g. \"orders-value\" (topic name strategy)"
                    .into(),
            );
        }
        Ok(s)
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Offset,
    Timestamp,
    Partition,
    Topic,
    /// The key as text (no key subject).
    KeyText,
    /// A field path into the decoded value, or into the decoded key.
    Field {
        key: bool,
        path: Vec<String>,
    },
}

/// One output column and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub col: Col,
    pub source: Source,
}

/// The output columns for a value schema (and a key schema, when decoded).
pub fn plan(
    settings: &Settings,
    value: &AvroSchema,
    key: Option<&AvroSchema>,
) -> Result<Vec<Planned>, String> {
    let Some(text) = &settings.columns else {
        let mut out = Vec::new();
        fields(
            value,
            value.root,
            &mut Vec::new(),
            false,
            settings.flatten,
            &mut out,
        )?;
        return Ok(out);
    };
    let specs: Vec<Json> = serde_json::from_str(text)
        .map_err(|e| format!("columns: not a JSON array of {{\"name\", \"source\"?}}: {e}"))?;
    let mut out = Vec::new();
    for spec in specs {
        let name = spec
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| format!("columns: {spec} has no \"name\""))?;
        let source = spec.get("source").and_then(Json::as_str).unwrap_or(name);
        let (source, ty, nullable) = match source {
            "__offset__" | "__timestamp__" | "__partition__" => (
                match source {
                    "__offset__" => Source::Offset,
                    "__timestamp__" => Source::Timestamp,
                    _ => Source::Partition,
                },
                Ty::Bigint,
                false,
            ),
            "__topic__" => (Source::Topic, Ty::String, false),
            "__key__" if key.is_none() => (Source::KeyText, Ty::String, true),
            path => {
                let (is_key, rest) = match path.strip_prefix("__key__") {
                    Some(rest) => (true, rest.trim_start_matches('.')),
                    None => (false, path),
                };
                let schema = if is_key {
                    key.ok_or_else(|| {
                        format!("columns: '{name}' reads the key's {path}; set key-subject")
                    })?
                } else {
                    value
                };
                let path: Vec<String> = if rest.is_empty() {
                    Vec::new()
                } else {
                    rest.split('.').map(str::to_owned).collect()
                };
                let (ty, nullable) = walk(schema, &path)
                    .map_err(|why| format!("columns: '{name}' (source {source}): {why}"))?;
                (Source::Field { key: is_key, path }, ty, nullable)
            }
        };
        out.push(Planned {
            col: Col {
                name: name.to_owned(),
                ty,
                nullable,
            },
            source,
        });
    }
    if out.is_empty() {
        return Err("columns: the list is empty; name at least one column".into());
    }
    Ok(out)
}

/// Columns for the fields under `s` (flattening nested records into `a_b` when asked).
fn fields(
    schema: &AvroSchema,
    s: &Schema,
    prefix: &mut Vec<String>,
    nullable: bool,
    flatten: bool,
    out: &mut Vec<Planned>,
) -> Result<(), String> {
    let Some(record) = record_of(schema, s) else {
        let (ty, n) = schema.ty(s)?;
        out.push(Planned {
            col: Col {
                name: if prefix.is_empty() {
                    "value".into()
                } else {
                    prefix.join("_")
                },
                ty,
                nullable: nullable || n,
            },
            source: Source::Field {
                key: false,
                path: prefix.clone(),
            },
        });
        return Ok(());
    };
    for f in &record.fields {
        prefix.push(f.name.clone());
        let (ty, n) = schema.ty(&f.schema)?;
        if flatten && record_of(schema, &f.schema).is_some() {
            fields(schema, &f.schema, prefix, nullable || n, flatten, out)?;
        } else {
            out.push(Planned {
                col: Col {
                    name: prefix.join("_"),
                    ty,
                    nullable: nullable || n,
                },
                source: Source::Field {
                    key: false,
                    path: prefix.clone(),
                },
            });
        }
        prefix.pop();
    }
    Ok(())
}

/// The record `s` is (through a nullable union and references), if any.
fn record_of<'a>(
    schema: &'a AvroSchema,
    s: &'a Schema,
) -> Option<&'a apache_avro::schema::RecordSchema> {
    match schema.deref(s) {
        Schema::Record(r) => Some(r),
        Schema::Union(u) => {
            let mut branches = u.variants().iter().filter(|v| !matches!(v, Schema::Null));
            match (branches.next(), branches.next()) {
                (Some(one), None) => record_of(schema, one),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The type at `path` under the root, and whether any step admits NULL.
fn walk(schema: &AvroSchema, path: &[String]) -> Result<(Ty, bool), String> {
    let mut s = schema.root;
    let mut nullable = false;
    for (i, step) in path.iter().enumerate() {
        nullable |= schema.ty(s)?.1;
        let record = record_of(schema, s)
            .ok_or_else(|| format!("'{}' is not a record", path[..i].join(".")))?;
        let field = record
            .fields
            .iter()
            .find(|f| f.name == *step)
            .ok_or_else(|| {
                format!(
                    "no field '{step}' in {} (fields: {})",
                    record.name.fullname(None),
                    record
                        .fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        s = &field.schema;
    }
    let (ty, n) = schema.ty(s)?;
    Ok((ty, nullable || n))
}

/// The cell at `path` in `v` (a value of `schema`'s root): NULL where a step is NULL.
pub fn extract(schema: &AvroSchema, v: &Value, path: &[String]) -> Out {
    let mut value = v;
    let mut s = schema.root;
    for step in path {
        let (inner, inner_schema) = unwrap_union(schema, value, s);
        let (Value::Record(fields), Some(record)) = (inner, record_of(schema, inner_schema)) else {
            return Out::Null;
        };
        let Some(i) = record.lookup.get(step) else {
            return Out::Null;
        };
        s = &record.fields[*i].schema;
        value = match fields.iter().find(|(n, _)| n == step) {
            Some((_, fv)) => fv,
            None => return Out::Null,
        };
    }
    schema.cell(value, s)
}

fn unwrap_union<'a>(
    schema: &'a AvroSchema,
    v: &'a Value,
    s: &'a Schema,
) -> (&'a Value, &'a Schema) {
    match (v, schema.deref(s)) {
        (Value::Union(i, inner), Schema::Union(u)) => {
            let branch = u.variants().get(*i as usize).unwrap_or(s);
            unwrap_union(schema, inner, branch)
        }
        (v, s) => (v, s),
    }
}

/// The fields `writer` has that `reader` does not (top level): what the ignore mode drops.
pub fn dropped_fields(writer: &AvroSchema, reader: &AvroSchema) -> Vec<String> {
    match (writer.record(), reader.record()) {
        (Some(w), Some(r)) => w
            .fields
            .iter()
            .filter(|f| !r.lookup.contains_key(&f.name))
            .map(|f| f.name.clone())
            .collect(),
        _ => Vec::new(),
    }
}
