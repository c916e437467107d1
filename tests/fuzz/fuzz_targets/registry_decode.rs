//! The registry stage's decoders through their entry point (`decode::Side::decode` and
//! `extract`): Avro (with resolution onto a reader schema), Protobuf and JSON Schema payloads
//! behind a Confluent framing. Input: the first byte picks the format, the rest is the payload;
//! the writer schema is a variant of the reader's. Every record decodes to cells or becomes a
//! dead letter; nothing panics.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use registry::decode::{Format, LookupError, RegSchema, Side, WriterId};

const AVRO_READER: &str = r#"{"type":"record","name":"R","fields":[
  {"name":"id","type":"long"},{"name":"name","type":"string","default":"x"},
  {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
  {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"m","type":{"type":"map","values":["null","double"]}},
  {"name":"u","type":["null","long","string"],"default":null}]}"#;
const AVRO_WRITER: &str = r#"{"type":"record","name":"R","fields":[
  {"name":"id","type":"int"},
  {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
  {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"m","type":{"type":"map","values":["null","double"]}},
  {"name":"u","type":["null","long","string"]},{"name":"extra","type":"bytes"}]}"#;
const PROTO: &str = r#"syntax = "proto3";
import "google/protobuf/timestamp.proto";
message M { int64 id = 1; string name = 2; repeated int32 xs = 3; map<string, M> kids = 4;
  google.protobuf.Timestamp at = 5; optional uint64 n = 6; oneof o { string s = 7; bytes b = 8; } }"#;
const JSON: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},
  "day":{"type":"string","format":"date"},"at":{"type":"string","format":"date-time"},
  "tags":{"type":"array","items":{"type":"number"}},"o":{"type":"object","properties":{"a":{"type":"string"}}}}}"#;

fn schema(id: &str, format: Format, text: &str) -> RegSchema {
    RegSchema {
        id: id.into(),
        format,
        text: text.into(),
        references: Vec::new(),
        subject: None,
        version: None,
    }
}

thread_local! {
    static SIDES: RefCell<Vec<Side>> = RefCell::new(vec![
        Side::new(&schema("1", Format::Avro, AVRO_READER), None).expect("avro reader"),
        Side::new(&schema("3", Format::Protobuf, PROTO), None).expect("proto reader"),
        Side::new(&schema("4", Format::JsonSchema, JSON), None).expect("json reader"),
    ]);
}

fn lookup(id: &WriterId) -> Result<RegSchema, LookupError> {
    let WriterId::Confluent(id) = id else {
        return Err(LookupError::NotFound(id.to_string()));
    };
    Ok(match *id {
        1 => schema("1", Format::Avro, AVRO_READER),
        2 => schema("2", Format::Avro, AVRO_WRITER),
        3 => schema("3", Format::Protobuf, PROTO),
        4 => schema("4", Format::JsonSchema, JSON),
        _ => return Err(LookupError::NotFound(format!("{id}"))),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let (side, id) = match pick % 4 {
        0 => (0, 1u32),
        1 => (0, 2),
        2 => (1, 3),
        _ => (2, 4),
    };
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(payload);
    SIDES.with(|sides| {
        let mut sides = sides.borrow_mut();
        let side = &mut sides[side];
        if let Ok((decoded, _)) = side.decode(&bytes, &mut lookup) {
            let fields: Vec<_> = side.tree().children.clone();
            for f in fields {
                let _ = side.extract(&decoded, std::slice::from_ref(&f.name), &f.ty);
            }
        }
    });
});
