//! Protobuf: schemas from the registry (`.proto` text, or a base64 `FileDescriptorProto` as
//! Confluent's Python serializer registers them) compiled in the sandbox with protox, records
//! decoded as dynamic messages of the message the framing's message indexes name, and fields
//! projected by name onto the reader message's columns (`transforms/README.md`, "registry").
//! Protobuf has no schema resolution: a field the reader has and the writer lacks is NULL, a
//! field only the writer has is not loaded, and a field whose type changed is an error.

use std::collections::HashMap;

use base64::Engine as _;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::{Map, Value as Json};

use crate::model::{Field, Out, Ty};

/// The main file's name when its text does not say (protox needs one).
const MAIN: &str = "registry-schema.proto";

/// A compiled schema: the message records of this schema id are read as.
#[derive(Debug, Clone)]
pub struct ProtoSchema {
    file: prost_reflect::FileDescriptor,
    /// The reader's message (the `message` setting, else the file's first).
    pub message: MessageDescriptor,
}

struct Files(HashMap<String, File>);

impl FileResolver for Files {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| protox::Error::file_not_found(name))
    }
}

/// A file from registry text: `.proto` source, or a base64 `FileDescriptorProto`.
fn file(name: &str, text: &str) -> Result<File, String> {
    let trimmed = text.trim();
    if !trimmed.contains(' ')
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(trimmed)
        && let Ok(f) = File::decode_file_descriptor_proto(bytes.as_slice())
    {
        return Ok(f);
    }
    File::from_source(name, text).map_err(|e| e.to_string())
}

/// Compiles `text` with its references (`(import name, text)`); `message` picks the reader
/// message by full name (default: the file's first message).
pub fn parse(
    text: &str,
    references: &[(&str, &str)],
    message: Option<&str>,
) -> Result<ProtoSchema, String> {
    let mut files = HashMap::new();
    for (name, t) in references {
        files.insert((*name).to_owned(), file(name, t)?);
    }
    let main = file(MAIN, text)?;
    let main_name = main.name().to_owned();
    files.insert(main_name.clone(), main);
    let mut chain = ChainFileResolver::new();
    chain.add(Files(files));
    chain.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true);
    compiler.open_file(&main_name).map_err(|e| e.to_string())?;
    let pool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(&main_name)
        .ok_or_else(|| format!("{main_name} did not compile"))?;
    let message = match message {
        Some(name) => pool.get_message_by_name(name).ok_or_else(|| {
            format!(
                "message '{name}' is not in the schema (messages: {})",
                file.messages()
                    .map(|m| m.full_name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?,
        None => file
            .messages()
            .next()
            .ok_or("the schema defines no message")?,
    };
    Ok(ProtoSchema { file, message })
}

/// Reads Confluent's message indexes (zig-zag varints: a count, then that many indexes; a
/// lone 0 means `[0]`) and returns them with the rest of the payload.
pub fn message_indexes(payload: &[u8]) -> Result<(Vec<usize>, &[u8]), String> {
    let mut rest = payload;
    let mut next = || -> Result<i64, String> {
        let v = prost::encoding::decode_varint(&mut rest)
            .map_err(|e| format!("message indexes: {e}"))?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    };
    let count = next()?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if !(0..=64).contains(&count) {
        return Err(format!(
            "message indexes: a count of {count} is not plausible"
        ));
    }
    let mut indexes = Vec::new();
    for _ in 0..count {
        let i = next()?;
        indexes.push(usize::try_from(i).map_err(|_| format!("message index {i}"))?);
    }
    Ok((indexes, rest))
}

impl ProtoSchema {
    /// The message `indexes` name in this (writer) schema's file.
    pub fn message_at(&self, indexes: &[usize]) -> Result<MessageDescriptor, String> {
        let mut candidates: Vec<MessageDescriptor> = self.file.messages().collect();
        let mut found = None;
        for &i in indexes {
            let m = candidates
                .get(i)
                .cloned()
                .ok_or_else(|| format!("message index {i} is not in {}", self.file.name()))?;
            candidates = m.child_messages().collect();
            found = Some(m);
        }
        found.ok_or_else(|| "empty message indexes".to_owned())
    }

    /// The reader-side tree of the reader message.
    pub fn tree(&self) -> Field {
        let mut stack = vec![self.message.full_name().to_owned()];
        Field {
            name: String::new(),
            ty: message_ty(&self.message, &mut stack),
            nullable: false,
            children: self
                .message
                .fields()
                .map(|f| field(&f, &mut stack))
                .collect(),
        }
    }
}

/// A message already being mapped (`stack`) is recursive: it becomes a JSON column there, as a
/// STRUCT cannot hold itself.
fn recursive(m: &MessageDescriptor, stack: &[String]) -> bool {
    stack.iter().any(|s| s == m.full_name())
}

fn field(f: &FieldDescriptor, stack: &mut Vec<String>) -> Field {
    let ty = field_ty(f, stack);
    let children = match (f.kind(), f.is_list() || f.is_map()) {
        (Kind::Message(m), false) if wkt(m.full_name()).is_none() && !recursive(&m, stack) => {
            stack.push(m.full_name().to_owned());
            let children = m.fields().map(|c| field(&c, stack)).collect();
            stack.pop();
            children
        }
        _ => Vec::new(),
    };
    let wrapper = matches!(f.kind(), Kind::Message(m) if wkt(m.full_name()).is_some());
    let required = f.cardinality() == prost_reflect::Cardinality::Required;
    Field {
        name: f.name().to_owned(),
        ty,
        nullable: (f.supports_presence() || wrapper) && !f.is_list() && !required,
        children,
    }
}

/// Well-known types that map to a scalar column.
fn wkt(name: &str) -> Option<Ty> {
    Some(match name {
        "google.protobuf.Timestamp" => Ty::Timestamp,
        "google.protobuf.DoubleValue" => Ty::Double,
        "google.protobuf.FloatValue" => Ty::Float,
        "google.protobuf.Int64Value" | "google.protobuf.UInt32Value" => Ty::Bigint,
        "google.protobuf.UInt64Value" => Ty::Decimal(20, 0),
        "google.protobuf.Int32Value" => Ty::Int,
        "google.protobuf.BoolValue" => Ty::Boolean,
        "google.protobuf.StringValue" => Ty::String,
        "google.protobuf.BytesValue" => Ty::Binary,
        _ => return None,
    })
}

fn kind_ty(kind: &Kind, stack: &mut Vec<String>) -> Ty {
    match kind {
        Kind::Double => Ty::Double,
        Kind::Float => Ty::Float,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Ty::Int,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint32 | Kind::Fixed32 => Ty::Bigint,
        Kind::Uint64 | Kind::Fixed64 => Ty::Decimal(20, 0),
        Kind::Bool => Ty::Boolean,
        Kind::String | Kind::Enum(_) => Ty::String,
        Kind::Bytes => Ty::Binary,
        Kind::Message(m) => match wkt(m.full_name()) {
            Some(t) => t,
            None if recursive(m, stack) => Ty::Json,
            None => {
                stack.push(m.full_name().to_owned());
                let t = message_ty(m, stack);
                stack.pop();
                t
            }
        },
    }
}

fn message_ty(m: &MessageDescriptor, stack: &mut Vec<String>) -> Ty {
    Ty::Struct(
        m.fields()
            .map(|f| (f.name().to_owned(), field_ty(&f, stack)))
            .collect(),
    )
}

fn field_ty(f: &FieldDescriptor, stack: &mut Vec<String>) -> Ty {
    match f.kind() {
        Kind::Message(m) if f.is_map() => Ty::Map(
            Box::new(kind_ty(&m.map_entry_key_field().kind(), stack)),
            Box::new(kind_ty(&m.map_entry_value_field().kind(), stack)),
        ),
        kind if f.is_list() => Ty::Array(Box::new(kind_ty(&kind, stack))),
        kind => kind_ty(&kind, stack),
    }
}

/// JSON of any value, for a JSON column (a recursive message): fields by name, enums by name.
fn any_json(v: &Value, f: Option<&FieldDescriptor>) -> Json {
    match v {
        Value::Message(m) => Json::Object(
            m.fields()
                .map(|(fd, fv)| (fd.name().to_owned(), any_json(fv, Some(&fd))))
                .collect(),
        ),
        Value::List(items) => Json::Array(items.iter().map(|i| any_json(i, f)).collect()),
        Value::Map(entries) => {
            let value_field = match f.map(FieldDescriptor::kind) {
                Some(Kind::Message(m)) => Some(m.map_entry_value_field()),
                _ => None,
            };
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Json::Object(
                sorted
                    .into_iter()
                    .map(|(k, ev)| (key_text(k), any_json(ev, value_field.as_ref())))
                    .collect(),
            )
        }
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::F32(x) => Out::Double((*x).into()).to_json(),
        Value::F64(x) => Out::Double(*x).to_json(),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Out::Bin(b.to_vec()).to_json(),
        Value::EnumNumber(n) => match f.map(FieldDescriptor::kind) {
            Some(Kind::Enum(e)) => e
                .get_value(*n)
                .map_or_else(|| Json::from(*n), |v| Json::String(v.name().to_owned())),
            _ => Json::from(*n),
        },
    }
}

/// The cell at `path` (field names) in `msg`, as column type `ty`: NULL where a step is unset
/// or the writer has no such field; an error where the writer's field does not fit `ty`.
pub fn extract(msg: &DynamicMessage, path: &[String], ty: &Ty) -> Result<Out, String> {
    let Some((last, parents)) = path.split_last() else {
        return convert(&Value::Message(msg.clone()), ty, None);
    };
    let mut current = msg.clone();
    for step in parents {
        let Some(f) = current.descriptor().get_field_by_name(step) else {
            return Ok(Out::Null);
        };
        if f.supports_presence() && !current.has_field(&f) {
            return Ok(Out::Null);
        }
        match current.get_field(&f).into_owned() {
            Value::Message(m) => current = m,
            _ => return Err(format!("field '{step}' is not a message")),
        }
    }
    let Some(f) = current.descriptor().get_field_by_name(last) else {
        return Ok(Out::Null);
    };
    if f.supports_presence() && !current.has_field(&f) {
        return Ok(Out::Null);
    }
    convert(&current.get_field(&f), ty, Some(&f)).map_err(|e| format!("field '{last}': {e}"))
}

/// `v` as a cell of column type `ty`; `f` names enum values.
fn convert(v: &Value, ty: &Ty, f: Option<&FieldDescriptor>) -> Result<Out, String> {
    let mismatch = || Err(format!("{v:?} does not fit {}", ty.text()));
    Ok(match (v, ty) {
        (Value::Message(m), _) if wkt(m.descriptor().full_name()).is_some() => {
            let name = m.descriptor().full_name().to_owned();
            if name == "google.protobuf.Timestamp" {
                let get = |n: &str| m.get_field_by_name(n).map(|v| v.into_owned());
                let seconds = match get("seconds") {
                    Some(Value::I64(s)) => s,
                    _ => 0,
                };
                let nanos = match get("nanos") {
                    Some(Value::I32(n)) => i64::from(n),
                    _ => 0,
                };
                // Seconds and nanos stay apart: as nanoseconds in an i64, a timestamp after
                // 2262 (valid up to 9999) would overflow (found by the fuzz target registry_decode).
                let carry = nanos.div_euclid(1_000_000_000);
                let Some(seconds) = seconds.checked_add(carry) else {
                    return Err(format!(
                        "timestamp {seconds} s and {nanos} ns is out of range"
                    ));
                };
                return Ok(Out::Timestamp(
                    seconds,
                    nanos.rem_euclid(1_000_000_000) as u32,
                ));
            }
            let inner = m
                .get_field_by_name("value")
                .map(|v| v.into_owned())
                .ok_or("a wrapper without a value field")?;
            return convert(&inner, ty, None);
        }
        (Value::Bool(b), Ty::Boolean) => Out::Bool(*b),
        (Value::I32(n), Ty::Int | Ty::Bigint) => Out::Int((*n).into()),
        (Value::I64(n), Ty::Bigint) => Out::Int(*n),
        (Value::U32(n), Ty::Bigint) => Out::Int((*n).into()),
        (Value::U64(n), Ty::Decimal(..)) => Out::Decimal(n.to_string()),
        (Value::F32(x), Ty::Float | Ty::Double) => Out::Double((*x).into()),
        (Value::F64(x), Ty::Double) => Out::Double(*x),
        (Value::String(s), Ty::String) => Out::Str(s.clone()),
        (Value::Bytes(b), Ty::Binary) => Out::Bin(b.to_vec()),
        (Value::EnumNumber(n), Ty::String) => {
            let name = match f.map(FieldDescriptor::kind) {
                Some(Kind::Enum(e)) => e.get_value(*n).map(|v| v.name().to_owned()),
                _ => None,
            };
            Out::Str(name.unwrap_or_else(|| n.to_string()))
        }
        (v, Ty::Json) => Out::Json(any_json(v, f).to_string()),
        (Value::Message(_) | Value::List(_) | Value::Map(_), t) if t.is_complex() => {
            Out::Json(json(v, t, f)?.to_string())
        }
        _ => return mismatch(),
    })
}

/// Canonical JSON of `v` as type `ty` inside an ARRAY, MAP or STRUCT.
fn json(v: &Value, ty: &Ty, f: Option<&FieldDescriptor>) -> Result<Json, String> {
    Ok(match (v, ty) {
        (Value::Message(m), Ty::Struct(fields)) if wkt(m.descriptor().full_name()).is_none() => {
            let mut out = Map::new();
            for (name, fty) in fields {
                let cell = match m.descriptor().get_field_by_name(name) {
                    Some(fd) if fd.supports_presence() && !m.has_field(&fd) => Json::Null,
                    Some(fd) => json(&m.get_field(&fd), fty, Some(&fd))?,
                    None => Json::Null,
                };
                out.insert(name.clone(), cell);
            }
            Json::Object(out)
        }
        (Value::List(items), Ty::Array(elem)) => Json::Array(
            items
                .iter()
                .map(|i| json(i, elem, f))
                .collect::<Result<_, _>>()?,
        ),
        (Value::Map(entries), Ty::Map(_, vty)) => {
            let value_field = match f.map(FieldDescriptor::kind) {
                Some(Kind::Message(m)) => Some(m.map_entry_value_field()),
                _ => None,
            };
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = Map::new();
            for (k, ev) in sorted {
                out.insert(key_text(k), json(ev, vty, value_field.as_ref())?);
            }
            Json::Object(out)
        }
        // A value of another shape than its ARRAY, MAP or STRUCT type (a writer schema that
        // changed a field's kind) does not fit: answered here, since `convert` hands every
        // message, list and map under a complex type back to `json`.
        (Value::List(_) | Value::Map(_), t) if t.is_complex() => {
            return Err(format!("a {} does not fit {}", shape(v), t.text()));
        }
        (Value::Message(m), t) if t.is_complex() && wkt(m.descriptor().full_name()).is_none() => {
            return Err(format!("a {} does not fit {}", shape(v), t.text()));
        }
        _ => convert(v, ty, f)?.to_json(),
    })
}

/// What kind of composite value `v` is, for an error.
fn shape(v: &Value) -> &'static str {
    match v {
        Value::Message(_) => "message",
        Value::List(_) => "repeated field",
        Value::Map(_) => "map",
        _ => "value",
    }
}

fn key_text(k: &MapKey) -> String {
    match k {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// The reader's fields the writer lacks and the writer's fields the reader lacks (top level):
/// what is NULL and what is not loaded.
pub fn dropped_fields(writer: &MessageDescriptor, reader: &MessageDescriptor) -> Vec<String> {
    writer
        .fields()
        .filter(|f| reader.get_field_by_name(f.name()).is_none())
        .map(|f| f.name().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repeated field or map read as a complex type of another kind (a writer schema that
    /// changed the field) is a mismatch; it used to send `json` and `convert` round each other
    /// until the stack ran out.
    #[test]
    fn a_value_of_another_shape_than_its_complex_type_does_not_fit() {
        let strukt = Ty::Struct(vec![("a".into(), Ty::String)]);
        let array = Ty::Array(Box::new(Ty::Bigint));
        let list = Value::List(vec![Value::I64(1)]);
        let map = Value::Map(std::collections::HashMap::from([(
            MapKey::String("k".into()),
            Value::I64(1),
        )]));
        for (v, ty) in [
            (&list, &strukt),
            (&map, &array),
            (&list, &Ty::Map(Box::new(Ty::String), Box::new(Ty::Bigint))),
        ] {
            let e = json(v, ty, None).unwrap_err();
            assert!(e.contains("does not fit"), "{e}");
            assert!(convert(v, ty, None).is_err());
        }
        assert_eq!(json(&list, &array, None).unwrap(), serde_json::json!([1]));
    }

    const PROTO: &str = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Order {
  int64 id = 1;
  optional string note = 2;
  repeated string tags = 3;
  map<string, int64> attrs = 4;
  google.protobuf.Timestamp at = 5;
  Line line = 6;
  message Line { string sku = 1; uint64 qty = 2; }
  oneof pay { string card = 7; int32 cash = 8; }
}
"#;

    #[test]
    fn proto_text_compiles_and_maps_to_columns() {
        let s = parse(PROTO, &[], None).unwrap();
        let cols = s.tree().described();
        assert_eq!(
            cols,
            [
                ("id".into(), "bigint".into(), false),
                ("note".into(), "string".into(), true),
                ("tags".into(), "array<string>".into(), false),
                ("attrs".into(), "map<string,bigint>".into(), false),
                ("at".into(), "timestamp".into(), true),
                (
                    "line".into(),
                    "struct<sku:string,qty:decimal(20,0)>".into(),
                    true
                ),
                ("card".into(), "string".into(), true),
                ("cash".into(), "int".into(), true),
            ]
        );
        // Nested types count in declaration order, map entries included (as protoc writes them).
        assert_eq!(
            s.message_at(&[0, 0]).unwrap().full_name(),
            "shop.Order.AttrsEntry"
        );
        assert_eq!(
            s.message_at(&[0, 1]).unwrap().full_name(),
            "shop.Order.Line"
        );
    }

    #[test]
    fn proto2_required_fields_are_not_null_and_optional_ones_are_null_when_unset() {
        let s = parse(
            "syntax = \"proto2\"; message P { required string id = 1; optional int32 n = 2 [default = 5]; repeated sint64 xs = 3; }",
            &[],
            None,
        )
        .unwrap();
        let cols = s.tree().described();
        assert_eq!(
            cols,
            [
                ("id".into(), "string".into(), false),
                ("n".into(), "int".into(), true),
                ("xs".into(), "array<bigint>".into(), false),
            ]
        );
        let mut m = DynamicMessage::new(s.message.clone());
        m.set_field_by_name("id", Value::String("a".into()));
        assert_eq!(extract(&m, &["n".into()], &Ty::Int), Ok(Out::Null));
        m.set_field_by_name("xs", Value::List(vec![Value::I64(-1)]));
        assert_eq!(
            extract(&m, &["xs".into()], &Ty::Array(Box::new(Ty::Bigint))),
            Ok(Out::Json("[-1]".into()))
        );
    }

    #[test]
    fn message_indexes_follow_confluents_encoding() {
        assert_eq!(message_indexes(&[0, 9]).unwrap(), (vec![0], &[9u8][..]));
        // count 2 (zig-zag 4), indexes 1 (2) and 0 (0)
        assert_eq!(
            message_indexes(&[4, 2, 0, 7]).unwrap(),
            (vec![1, 0], &[7u8][..])
        );
        assert!(message_indexes(&[]).is_err());
    }

    #[test]
    fn timestamps_keep_seconds_and_nanos_apart() {
        let s = parse(PROTO, &[], None).unwrap();
        let Some(Kind::Message(ts)) = s.message.get_field_by_name("at").map(|f| f.kind()) else {
            panic!("at is a message field");
        };
        let at = |seconds: i64, nanos: i32| {
            let mut t = DynamicMessage::new(ts.clone());
            t.set_field_by_name("seconds", Value::I64(seconds));
            t.set_field_by_name("nanos", Value::I32(nanos));
            let mut m = DynamicMessage::new(s.message.clone());
            m.set_field_by_name("at", Value::Message(t));
            extract(&m, &["at".into()], &Ty::Timestamp)
        };
        // 9999-12-31T23:59:59.000000005Z: beyond what i64 nanoseconds hold.
        assert_eq!(
            at(253_402_300_799, 5),
            Ok(Out::Timestamp(253_402_300_799, 5))
        );
        assert_eq!(at(-1, 999_999_999), Ok(Out::Timestamp(-1, 999_999_999)));
        assert_eq!(at(0, -1), Ok(Out::Timestamp(-1, 999_999_999)));
        assert!(at(i64::MAX, 1_500_000_000).is_err());
    }

    #[test]
    fn a_changed_field_type_is_an_error_and_a_missing_one_is_null() {
        let s = parse(PROTO, &[], None).unwrap();
        let mut m = DynamicMessage::new(s.message.clone());
        m.set_field_by_name("id", Value::I64(7));
        let path = |p: &str| vec![p.to_owned()];
        assert_eq!(extract(&m, &path("id"), &Ty::Bigint), Ok(Out::Int(7)));
        assert_eq!(extract(&m, &path("note"), &Ty::String), Ok(Out::Null));
        assert_eq!(extract(&m, &path("gone"), &Ty::String), Ok(Out::Null));
        assert!(extract(&m, &path("id"), &Ty::String).is_err());
    }
}
