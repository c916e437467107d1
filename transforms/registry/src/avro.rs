//! Avro: schemas from the registry to MaxCompute types, and binary datums to cells. Decoding
//! uses the record's own writer schema resolved onto the reader schema (the table's), per the
//! Avro specification's resolution rules: new writer fields are dropped, reader fields the
//! writer lacks take their defaults, and anything that cannot be resolved is an error the
//! caller turns into a dead letter (`transforms/README.md`, "registry").

use std::collections::HashMap;

use apache_avro::Decimal;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{Name, RecordSchema, Schema, UnionSchema};
use apache_avro::types::Value;
use serde_json::{Map, Value as Json};

use crate::model::{Field, Out, Ty, decimal_text, instant, time_of_day};

/// MaxCompute's DECIMAL limits; a wider Avro decimal becomes STRING.
const MAX_PRECISION: usize = 38;
const MAX_SCALE: usize = 18;

/// A parsed schema with the named types it and its references define. Leaked: a stage keeps a
/// handful (one per schema id it meets) for its whole life, and decoders borrow them.
#[derive(Debug)]
pub struct AvroSchema {
    pub root: &'static Schema,
    pub named: Vec<&'static Schema>,
    names: HashMap<String, &'static Schema>,
}

/// Parses `text` with the texts of the schemas it references (dependencies first).
pub fn parse(text: &str, references: &[&str]) -> Result<&'static AvroSchema, String> {
    let (root, named) = if references.is_empty() {
        (
            Schema::parse_str(text).map_err(|e| e.to_string())?,
            Vec::new(),
        )
    } else {
        Schema::parse_str_with_list(text, references).map_err(|e| e.to_string())?
    };
    let root: &'static Schema = Box::leak(Box::new(root));
    let named: Vec<&'static Schema> = named
        .into_iter()
        .map(|s| &*Box::leak(Box::new(s)))
        .collect();
    let mut names = HashMap::new();
    for s in std::iter::once(root).chain(named.iter().copied()) {
        collect_names(s, &mut names);
    }
    Ok(Box::leak(Box::new(AvroSchema { root, named, names })))
}

fn collect_names(s: &'static Schema, names: &mut HashMap<String, &'static Schema>) {
    let name = |n: &Name| n.fullname(None);
    match s {
        Schema::Record(r) => {
            names.insert(name(&r.name), s);
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(name(&e.name), s);
        }
        Schema::Fixed(f) => {
            names.insert(name(&f.name), s);
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

impl AvroSchema {
    /// `s` with a named reference replaced by what it names.
    pub fn deref<'a>(&'a self, s: &'a Schema) -> &'a Schema {
        match s {
            Schema::Ref { name } => self.names.get(&name.fullname(None)).copied().unwrap_or(s),
            _ => s,
        }
    }

    /// The reader-side tree of the root: a record's fields as children, recursively.
    pub fn tree(&self) -> Result<Field, String> {
        self.field("", self.root, &mut Vec::new())
    }

    fn field(&self, name: &str, s: &Schema, stack: &mut Vec<String>) -> Result<Field, String> {
        let (ty, nullable) = self.ty_in(s, stack)?;
        let children = match record_of(self, s) {
            Some(r) if !stack.contains(&r.name.fullname(None)) => {
                stack.push(r.name.fullname(None));
                let children = r
                    .fields
                    .iter()
                    .map(|f| self.field(&f.name, &f.schema, stack))
                    .collect::<Result<_, _>>()?;
                stack.pop();
                children
            }
            _ => Vec::new(),
        };
        Ok(Field {
            name: name.to_owned(),
            ty,
            nullable,
            children,
        })
    }

    /// The record schema at the root, if it is one.
    pub fn record(&self) -> Option<&RecordSchema> {
        match self.deref(self.root) {
            Schema::Record(r) => Some(r),
            _ => None,
        }
    }

    /// The MaxCompute type of `s`, and whether it admits NULL (a union with `null`).
    pub fn ty(&self, s: &Schema) -> Result<(Ty, bool), String> {
        self.ty_in(s, &mut Vec::new())
    }

    /// [`Self::ty`] inside the records named in `stack`: a record met again is recursive and
    /// becomes JSON there, as a STRUCT cannot hold itself.
    fn ty_in(&self, s: &Schema, stack: &mut Vec<String>) -> Result<(Ty, bool), String> {
        Ok(match self.deref(s) {
            Schema::Null => (Ty::String, true),
            Schema::Boolean => (Ty::Boolean, false),
            Schema::Int => (Ty::Int, false),
            Schema::Long => (Ty::Bigint, false),
            Schema::Float => (Ty::Float, false),
            Schema::Double => (Ty::Double, false),
            Schema::Bytes | Schema::Fixed(_) => (Ty::Binary, false),
            Schema::String | Schema::Enum(_) | Schema::Uuid(_) | Schema::BigDecimal => {
                (Ty::String, false)
            }
            Schema::TimeMillis | Schema::TimeMicros => (Ty::String, false),
            Schema::Decimal(d) if d.precision <= MAX_PRECISION && d.scale <= MAX_SCALE => {
                (Ty::Decimal(d.precision as u8, d.scale as u8), false)
            }
            Schema::Decimal(_) => (Ty::String, false),
            Schema::Date => (Ty::Date, false),
            Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos => {
                (Ty::Timestamp, false)
            }
            Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => (Ty::TimestampNtz, false),
            Schema::Duration(_) => (
                Ty::Struct(vec![
                    ("months".into(), Ty::Bigint),
                    ("days".into(), Ty::Bigint),
                    ("millis".into(), Ty::Bigint),
                ]),
                false,
            ),
            Schema::Array(a) => (Ty::Array(Box::new(self.ty_in(&a.items, stack)?.0)), false),
            Schema::Map(m) => (
                Ty::Map(
                    Box::new(Ty::String),
                    Box::new(self.ty_in(&m.types, stack)?.0),
                ),
                false,
            ),
            Schema::Record(r) if stack.contains(&r.name.fullname(None)) => (Ty::Json, false),
            Schema::Record(r) => {
                stack.push(r.name.fullname(None));
                let fields = r
                    .fields
                    .iter()
                    .map(|f| Ok((f.name.clone(), self.ty_in(&f.schema, stack)?.0)))
                    .collect::<Result<_, String>>();
                stack.pop();
                (Ty::Struct(fields?), false)
            }
            Schema::Union(u) => {
                let nullable = u.is_nullable();
                match non_null(u).as_slice() {
                    [] => (Ty::String, true),
                    [one] => (self.ty_in(one, stack)?.0, nullable),
                    _ => (Ty::Json, nullable),
                }
            }
            Schema::Ref { name } => {
                return Err(format!(
                    "type {} is referenced but not defined",
                    name.fullname(None)
                ));
            }
        })
    }

    /// The cell for `v`, a value of schema `s`.
    pub fn cell(&self, v: &Value, s: &Schema) -> Out {
        let s = self.deref(s);
        match (v, s) {
            (Value::Null, _) => Out::Null,
            (Value::Union(i, inner), Schema::Union(u)) => {
                let branch = u.variants().get(*i as usize).unwrap_or(s);
                if matches!(**inner, Value::Null) {
                    Out::Null
                } else if non_null(u).len() > 1 {
                    Out::Json(self.json(inner, branch).to_string())
                } else {
                    self.cell(inner, branch)
                }
            }
            (Value::Union(_, inner), _) => self.cell(inner, s),
            (Value::Record(_) | Value::Array(_) | Value::Map(_) | Value::Duration(_), _) => {
                Out::Json(self.json(v, s).to_string())
            }
            (Value::Boolean(b), _) => Out::Bool(*b),
            (Value::Int(n), _) => Out::Int((*n).into()),
            (Value::Long(n), _) => Out::Int(*n),
            (Value::Float(x), _) => Out::Double((*x).into()),
            (Value::Double(x), _) => Out::Double(*x),
            (Value::Bytes(b) | Value::Fixed(_, b), _) => Out::Bin(b.clone()),
            (Value::String(t) | Value::Enum(_, t), _) => Out::Str(t.clone()),
            (Value::Uuid(u), _) => Out::Str(u.to_string()),
            (Value::Decimal(d), Schema::Decimal(ds)) => {
                let text = decimal(d, ds.scale);
                if ds.precision <= MAX_PRECISION && ds.scale <= MAX_SCALE {
                    Out::Decimal(text)
                } else {
                    Out::Str(text)
                }
            }
            (Value::Decimal(d), _) => Out::Decimal(decimal(d, 0)),
            (Value::BigDecimal(d), _) => Out::Str(d.to_string()),
            (Value::Date(d), _) => Out::Date(*d),
            (Value::TimeMillis(t), _) => time_of_day((*t).into(), 1_000, 3),
            (Value::TimeMicros(t), _) => time_of_day(*t, 1_000_000, 6),
            (Value::TimestampMillis(t) | Value::LocalTimestampMillis(t), _) => instant(*t, 1_000),
            (Value::TimestampMicros(t) | Value::LocalTimestampMicros(t), _) => {
                instant(*t, 1_000_000)
            }
            (Value::TimestampNanos(t) | Value::LocalTimestampNanos(t), _) => {
                instant(*t, 1_000_000_000)
            }
        }
    }

    /// The canonical JSON of `v` (schema `s`) inside an ARRAY, MAP or STRUCT.
    pub fn json(&self, v: &Value, s: &Schema) -> Json {
        let s = self.deref(s);
        // Each composite value is walked whatever `s` says, with its parts' schemas where `s`
        // is of the same kind and none (`Null`) where it is not: `cell` hands every composite
        // value back here, so a kind that did not match must not fall through to it.
        match (v, s) {
            (Value::Record(fields), _) => Json::Object(
                fields
                    .iter()
                    .map(|(name, fv)| {
                        let fs = match s {
                            Schema::Record(r) => r
                                .lookup
                                .get(name)
                                .map_or(&Schema::Null, |i| &r.fields[*i].schema),
                            _ => &Schema::Null,
                        };
                        (name.clone(), self.json(fv, fs))
                    })
                    .collect(),
            ),
            (Value::Array(items), _) => {
                let each = match s {
                    Schema::Array(a) => &*a.items,
                    _ => &Schema::Null,
                };
                Json::Array(items.iter().map(|i| self.json(i, each)).collect())
            }
            (Value::Map(entries), _) => {
                let each = match s {
                    Schema::Map(m) => &*m.types,
                    _ => &Schema::Null,
                };
                let mut sorted: Vec<_> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                Json::Object(
                    sorted
                        .into_iter()
                        .map(|(k, ev)| (k.clone(), self.json(ev, each)))
                        .collect::<Map<_, _>>(),
                )
            }
            (Value::Duration(d), _) => serde_json::json!({
                "months": u32::from(d.months()),
                "days": u32::from(d.days()),
                "millis": u32::from(d.millis()),
            }),
            (Value::Union(i, inner), Schema::Union(u)) => {
                self.json(inner, u.variants().get(*i as usize).unwrap_or(s))
            }
            _ => self.cell(v, s).to_json(),
        }
    }
}

/// The record `s` is (through a nullable union and references), if any.
fn record_of<'a>(schema: &'a AvroSchema, s: &'a Schema) -> Option<&'a RecordSchema> {
    match schema.deref(s) {
        Schema::Record(r) => Some(r),
        Schema::Union(u) => match non_null(u).as_slice() {
            [one] => record_of(schema, one),
            _ => None,
        },
        _ => None,
    }
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

/// The fields `writer` has that `reader` does not (top level): what resolution drops.
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

fn non_null(u: &UnionSchema) -> Vec<&Schema> {
    u.variants()
        .iter()
        .filter(|v| !matches!(v, Schema::Null))
        .collect()
}

fn decimal(d: &Decimal, scale: usize) -> String {
    let unscaled = num_bigint::BigInt::from(d.clone());
    decimal_text(&unscaled.to_string(), scale)
}

/// The `latest` record schema with the fields only `older` versions (newest first) have
/// appended, each with its default (a field without one becomes nullable with default null,
/// so records that lack it resolve); `None` when there is nothing to add or the schema is not a
/// record.
pub fn merge(latest: &str, older: &[&str]) -> Result<Option<String>, String> {
    let mut root: Json = serde_json::from_str(latest).map_err(|e| e.to_string())?;
    let Some(fields) = root.get_mut("fields").and_then(Json::as_array_mut) else {
        return Ok(None);
    };
    let name = |f: &Json| f.get("name").and_then(Json::as_str).map(str::to_owned);
    let mut names: Vec<String> = fields.iter().filter_map(name).collect();
    let mut added = false;
    for text in older {
        let old: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for f in old
            .get("fields")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let Some(n) = name(f) else { continue };
            if names.contains(&n) {
                continue;
            }
            let mut f = f.clone();
            if f.get("default").is_none() {
                let ty = f.get("type").cloned().unwrap_or(Json::Null);
                let nullable = match ty {
                    Json::Array(branches) => {
                        let mut rest: Vec<Json> =
                            branches.into_iter().filter(|b| b != "null").collect();
                        rest.insert(0, Json::from("null"));
                        Json::Array(rest)
                    }
                    other => Json::Array(vec![Json::from("null"), other]),
                };
                f["type"] = nullable;
                f["default"] = Json::Null;
            }
            fields.push(f);
            names.push(n);
            added = true;
        }
    }
    Ok(added.then(|| root.to_string()))
}

/// Decodes datums written with one schema, resolved onto the reader's.
pub struct Decoder {
    reader: GenericDatumReader<'static>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

impl Decoder {
    /// A decoder of `writer` datums; `reader` is the schema to resolve them onto (`None`: the
    /// writer's own).
    pub fn new(
        writer: &'static AvroSchema,
        reader: Option<&'static AvroSchema>,
    ) -> Result<Self, String> {
        // The schemata a reference may name: the root itself (a type used twice, or a record
        // that contains itself, is a reference to its first definition) and the referenced.
        let all = |s: &'static AvroSchema| {
            std::iter::once(s.root)
                .chain(s.named.iter().copied())
                .collect()
        };
        let builder = GenericDatumReader::builder(writer.root)
            .writer_schemata(all(writer))
            .map_err(|e| e.to_string())?;
        let reader = match reader {
            Some(r) => builder
                .reader_schema(r.root)
                .reader_schemata(all(r))
                .map_err(|e| e.to_string())?
                .build(),
            None => builder.build(),
        }
        .map_err(|e| e.to_string())?;
        Ok(Decoder { reader })
    }

    /// The value of one datum; bytes left over after it are an error.
    pub fn decode(&self, mut payload: &[u8]) -> Result<Value, String> {
        let value = self
            .reader
            .read_value(&mut payload)
            .map_err(|e| e.to_string())?;
        if !payload.is_empty() {
            return Err(format!(
                "{} bytes left after the datum: the payload does not match its schema",
                payload.len()
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A composite value under a schema of another kind (here none: a field its record's
    /// schema does not list) is written as its plain JSON; it used to send `json` and `cell`
    /// round each other until the stack ran out.
    #[test]
    fn a_composite_value_under_another_schema_is_written_plainly() {
        let s = parse(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#,
            &[],
        )
        .unwrap();
        let v = Value::Record(vec![
            ("a".into(), Value::Long(1)),
            ("xs".into(), Value::Array(vec![Value::Int(2)])),
            (
                "m".into(),
                Value::Map(HashMap::from([(
                    "k".into(),
                    Value::Record(vec![("b".into(), Value::Boolean(true))]),
                )])),
            ),
        ]);
        assert_eq!(
            s.json(&v, &Schema::Null),
            serde_json::json!({"a": 1, "xs": [2], "m": {"k": {"b": true}}})
        );
        assert_eq!(
            s.json(&v, s.root),
            serde_json::json!({"a": 1, "xs": [2], "m": {"k": {"b": true}}})
        );
    }

    #[test]
    fn a_named_type_used_twice_decodes() {
        let text = r#"{"type":"record","name":"R","fields":[
          {"name":"home","type":{"type":"record","name":"A","fields":[{"name":"city","type":"string"}]}},
          {"name":"work","type":["null","A"],"default":null}]}"#;
        let s = parse(text, &[]).unwrap();
        let a = |c: &str| Value::Record(vec![("city".into(), Value::String(c.into()))]);
        let datum = apache_avro::writer::datum::GenericDatumWriter::builder(s.root)
            .build()
            .unwrap()
            .write_value_to_vec(Value::Record(vec![
                ("home".into(), a("H")),
                ("work".into(), Value::Union(1, Box::new(a("W")))),
            ]))
            .unwrap();
        let v = Decoder::new(s, None).unwrap().decode(&datum).unwrap();
        assert_eq!(
            extract(s, &v, &["work".into(), "city".into()]),
            Out::Str("W".into())
        );
    }

    #[test]
    fn merging_keeps_older_fields_with_their_defaults_or_as_nullable() {
        let v1 = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},{"name":"name","type":"string","default":"anon"},{"name":"n","type":"int"}]}"#;
        let v2 = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},{"name":"coupon","type":["null","string"],"default":null}]}"#;
        let merged = merge(v2, &[v1]).unwrap().unwrap();
        let s = parse(&merged, &[]).unwrap();
        let cols = s.tree().unwrap().described();
        assert_eq!(
            cols,
            [
                ("id".into(), "bigint".into(), false),
                ("coupon".into(), "string".into(), true),
                ("name".into(), "string".into(), false),
                ("n".into(), "int".into(), true),
            ]
        );
        assert_eq!(merge(v2, &[v2]).unwrap(), None);
    }
}
