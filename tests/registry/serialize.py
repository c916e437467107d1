"""Records written by Confluent's own serializers, for the registry parser's tests.

Registers schemas with confluent-kafka's SchemaRegistryClient (auto.register.schemas, as a
producer application would) against the registry at --registry and prints one JSON line per
record: {"key": base64 or null, "value": base64 or null, "expect": the row pyodps must read back
(canonical JSON, as tests/pyodps/conformance.py dumps it) or null, "dead": the dead-letter code
or null}. The expectations are computed here, from the Python values, not by k2mc's code.

    serialize.py --registry URL --topic T --scenario types|evolution|protobuf|json|added-v1|added-v2|added-v3|glue
"""

import argparse
import base64
import datetime as dt
import decimal
import json
import struct
import sys
import uuid

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def ts(d):
    """[seconds, nanos] of an aware or naive (read as UTC) datetime."""
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    delta = d - EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return [micros // 1_000_000, (micros % 1_000_000) * 1000]


ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [
        {"name": "city", "type": "string"},
        {"name": "zip", "type": ["null", "string"], "default": None},
    ],
}

TYPES = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "ratio", "type": "float"},
        {"name": "amount", "type": "double"},
        {"name": "name", "type": "string"},
        {"name": "payload", "type": "bytes"},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {
            "name": "big",
            "type": {"type": "fixed", "name": "Big", "size": 10, "logicalType": "decimal", "precision": 20, "scale": 4},
        },
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tod_ms", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "tod_us", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "ts_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "lts_ms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "lts_us", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "address", "type": ADDRESS},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "either", "type": ["null", "long", "string"], "default": None},
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {"type": "record", "name": "Item", "fields": [
                    {"name": "sku", "type": "string"},
                    {"name": "qty", "type": "int"},
                    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                ]},
            },
        },
        # fastavro writes these as their raw values (nanoseconds, the 12 duration bytes).
        {"name": "ts_ns", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
        {"name": "lts_ns", "type": {"type": "long", "logicalType": "local-timestamp-nanos"}},
        {"name": "dur", "type": {"type": "fixed", "name": "Dur", "size": 12, "logicalType": "duration"}},
        {"name": "huge", "type": {"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 3}},
        {
            "name": "chain",
            "type": {"type": "record", "name": "Link", "fields": [
                {"name": "v", "type": "long"},
                {"name": "next", "type": ["null", "Link"], "default": None},
            ]},
        },
    ],
}


def types_records():
    out = []
    for i in range(3):
        when = dt.datetime(2024, 5, 1, 13, 45, 30, 123456, tzinfo=dt.timezone.utc) + dt.timedelta(days=i)
        local = dt.datetime(2024, 5, 1, 8, 0, 0, 654321) + dt.timedelta(hours=i)
        price = decimal.Decimal("-123.45") * (i + 1)
        big = decimal.Decimal("12345678901234.5678") * (-1 if i == 1 else 1)
        value = {
            "id": 10_000_000_000 + i,
            "flag": i % 2 == 0,
            "small": -7 * i,
            "ratio": 1.5 + i,
            "amount": 2.25 * (i + 1),
            "name": f"order-{i} 订单 ✓",
            "payload": bytes([0, 1, 2, 255 - i]),
            "digest": bytes([9, 8, 7, i]),
            "price": price,
            "big": big,
            "day": dt.date(2024, 2, 29) + dt.timedelta(days=i),
            "tod_ms": dt.time(13, 45, 30, 123000),
            "tod_us": dt.time(23, 59, 59, 999999 - i),
            "ts_ms": when.replace(microsecond=123000),
            "ts_us": when,
            "lts_ms": local.replace(microsecond=654000),
            "lts_us": local,
            "uid": uuid.UUID(int=0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321 + i),
            "color": ["RED", "GREEN", "BLUE"][i],
            "tags": [f"t{j}" for j in range(i)],
            "attrs": {"b": i, "a": -i},
            "address": {"city": "Hangzhou", "zip": None if i == 2 else f"31000{i}"},
            "note": None if i == 0 else f"note {i}",
            "either": [None, 42, "forty-two"][i],
            "items": [{"sku": f"s{j}", "qty": j, "at": when} for j in range(2 - i % 2)],
            "ts_ns": 1_714_571_130_123_456_789 + i,
            "lts_ns": -1_000_000_001 * (i + 1),
            "dur": struct.pack("<III", i + 1, 30 + i, 86_399_999 - i),
            # Built from text: arithmetic would round to the decimal context's 28 digits.
            "huge": decimal.Decimal(("-" if i == 2 else "") + "1234567890123456789012345678901234567.891"),
            "chain": {"v": i, "next": {"v": i + 1, "next": None}},
        }
        expect = [
            value["id"],
            value["flag"],
            value["small"],
            f32(value["ratio"]),
            value["amount"],
            value["name"],
            b64(value["payload"]),
            b64(value["digest"]),
            format(price, "f"),
            format(big, "f"),
            (value["day"] - dt.date(1970, 1, 1)).days,
            "13:45:30.123",
            value["tod_us"].strftime("%H:%M:%S.%f"),
            ts(value["ts_ms"]),
            ts(value["ts_us"]),
            ts(value["lts_ms"]),
            ts(value["lts_us"]),
            str(value["uid"]),
            value["color"],
            value["tags"],
            sorted([[k, v] for k, v in value["attrs"].items()]),
            [value["address"]["city"], value["address"]["zip"]],
            value["note"],
            None if value["either"] is None else json.dumps(value["either"], separators=(",", ":")),
            [[it["sku"], it["qty"], ts(it["at"])] for it in value["items"]],
            [value["ts_ns"] // 1_000_000_000, value["ts_ns"] % 1_000_000_000],
            [value["lts_ns"] // 1_000_000_000, value["lts_ns"] % 1_000_000_000],
            [i + 1, 30 + i, 86_399_999 - i],
            format(value["huge"], "f"),
            # A record that contains itself: STRUCT<v, next JSON>; the JSON is the inner link.
            [i, json.dumps({"v": i + 1, "next": None}, separators=(",", ":"))],
        ]
        out.append((None, TYPES, value, expect, None))
    return out


def schema_v(fields):
    return {"type": "record", "name": "Reading", "namespace": "iot", "fields": fields}


ID = {"name": "id", "type": "long"}
NAME = {"name": "name", "type": "string"}
SCORE = {"name": "score", "type": ["null", "double"], "default": None}
REGION = {"name": "region", "type": "string", "default": "eu"}
V1 = schema_v([ID, NAME, SCORE, REGION])
V2 = schema_v([ID, NAME, SCORE, REGION, {"name": "coupon", "type": ["null", "string"], "default": None}])
V3 = schema_v([ID, NAME, SCORE])
V4 = schema_v([{"name": "id", "type": "string"}, NAME, SCORE, REGION])


def evolution_records():
    """v1, v2 (adds an optional field), v3 (removes a field that has a default), v4 (id changes
    from long to string: incompatible). The table is v1's; the key is Avro too."""
    rows = []
    for i, (schema, extra) in enumerate(
        [(V1, {}), (V1, {}), (V2, {"coupon": "SAVE10"}), (V2, {}), (V3, None), (V4, None)]
    ):
        value = {"id": i, "name": f"sensor {i}", "score": None if i == 1 else i / 4}
        if schema is V4:
            value["id"] = f"id-{i}"
        if extra is not None:
            value["region"] = "ap" if i % 2 else "us"
            value.update(extra)
        key = f"k{i}"
        if schema is V4:
            expect, dead = None, "incompatible-schema"
        else:
            expect = [key, i, value["name"], value["score"], value.get("region", "eu")]
            dead = None
        rows.append((key, schema, value, expect, dead))
    return rows


PROTO_TEXT = """syntax = "proto3";
package iot;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
message Reading {
  int64 id = 1;
  string name = 2;
  optional double score = 3;
  repeated string tags = 4;
  map<string, int64> attrs = 5;
  google.protobuf.Timestamp at = 6;
  uint64 count = 7;
  Kind kind = 8;
  Line line = 9;
  oneof pay { string card = 10; int32 cash = 11; }
  google.protobuf.Int64Value maybe = 12;
  float ratio = 13;
  bool flag = 14;
  bytes blob = 15;
  sint32 delta = 16;
  fixed64 big = 17;
  sfixed32 s32 = 18;
  uint32 u32 = 19;
  sint64 d64 = 20;
  sfixed64 sf64 = 21;
  fixed32 f32 = 22;
  google.protobuf.DoubleValue wd = 23;
  google.protobuf.StringValue ws = 24;
  google.protobuf.BoolValue wb = 25;
  google.protobuf.BytesValue wy = 26;
  google.protobuf.UInt64Value wu = 27;
  enum Kind { UNKNOWN = 0; HOT = 1; COLD = 2; }
  message Line { string sku = 1; int32 qty = 2; }
}
"""


def proto_classes():
    """Reading v1 (as PROTO_TEXT), v2 (adds `extra`) and v3 (`id` becomes a string: incompatible),
    built as descriptors at run time, as protoc's generated code would."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf import timestamp_pb2, wrappers_pb2  # noqa: F401 (registers the imports)

    F = descriptor_pb2.FieldDescriptorProto
    classes = []
    for version in (1, 2, 3):
        fdp = descriptor_pb2.FileDescriptorProto(
            name=f"iot/reading_v{version}.proto",
            package=f"iot.v{version}",
            syntax="proto3",
            dependency=["google/protobuf/timestamp.proto", "google/protobuf/wrappers.proto"],
        )
        m = fdp.message_type.add(name="Reading")
        pkg = f".iot.v{version}.Reading"
        opt = F.LABEL_OPTIONAL
        m.field.add(name="id", number=1, label=opt, type=F.TYPE_STRING if version == 3 else F.TYPE_INT64)
        m.field.add(name="name", number=2, label=opt, type=F.TYPE_STRING)
        m.field.add(name="score", number=3, label=opt, type=F.TYPE_DOUBLE, proto3_optional=True, oneof_index=1)
        m.field.add(name="tags", number=4, label=F.LABEL_REPEATED, type=F.TYPE_STRING)
        entry = m.nested_type.add(name="AttrsEntry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, label=opt, type=F.TYPE_STRING)
        entry.field.add(name="value", number=2, label=opt, type=F.TYPE_INT64)
        m.field.add(name="attrs", number=5, label=F.LABEL_REPEATED, type=F.TYPE_MESSAGE, type_name=pkg + ".AttrsEntry")
        m.field.add(name="at", number=6, label=opt, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
        m.field.add(name="count", number=7, label=opt, type=F.TYPE_UINT64)
        kind = m.enum_type.add(name="Kind")
        for n, v in (("UNKNOWN", 0), ("HOT", 1), ("COLD", 2)):
            kind.value.add(name=n, number=v)
        m.field.add(name="kind", number=8, label=opt, type=F.TYPE_ENUM, type_name=pkg + ".Kind")
        line = m.nested_type.add(name="Line")
        line.field.add(name="sku", number=1, label=opt, type=F.TYPE_STRING)
        line.field.add(name="qty", number=2, label=opt, type=F.TYPE_INT32)
        m.field.add(name="line", number=9, label=opt, type=F.TYPE_MESSAGE, type_name=pkg + ".Line")
        m.oneof_decl.add(name="pay")
        m.oneof_decl.add(name="_score")
        m.field.add(name="card", number=10, label=opt, type=F.TYPE_STRING, oneof_index=0)
        m.field.add(name="cash", number=11, label=opt, type=F.TYPE_INT32, oneof_index=0)
        m.field.add(name="maybe", number=12, label=opt, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value")
        for name, number, ty in (
            ("ratio", 13, F.TYPE_FLOAT),
            ("flag", 14, F.TYPE_BOOL),
            ("blob", 15, F.TYPE_BYTES),
            ("delta", 16, F.TYPE_SINT32),
            ("big", 17, F.TYPE_FIXED64),
            ("s32", 18, F.TYPE_SFIXED32),
            ("u32", 19, F.TYPE_UINT32),
            ("d64", 20, F.TYPE_SINT64),
            ("sf64", 21, F.TYPE_SFIXED64),
            ("f32", 22, F.TYPE_FIXED32),
        ):
            m.field.add(name=name, number=number, label=opt, type=ty)
        for name, number, wrapper in (
            ("wd", 23, "DoubleValue"),
            ("ws", 24, "StringValue"),
            ("wb", 25, "BoolValue"),
            ("wy", 26, "BytesValue"),
            ("wu", 27, "UInt64Value"),
        ):
            m.field.add(
                name=name, number=number, label=opt, type=F.TYPE_MESSAGE, type_name=f".google.protobuf.{wrapper}"
            )
        if version == 2:
            m.field.add(name="extra", number=40, label=opt, type=F.TYPE_STRING)
        pool = descriptor_pool.Default()
        pool.Add(fdp)
        classes.append(message_factory.GetMessageClass(pool.FindMessageTypeByName(pkg[1:])))
    return classes


def protobuf_records(client, topic):
    """Records written by ProtobufSerializer (it registers base64 descriptors); the table's
    reader version is registered as .proto text under <topic>-reader, as a person would."""
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer

    client.register_schema(f"{topic}-reader", Schema(PROTO_TEXT, "PROTOBUF"))
    v1, v2, v3 = proto_classes()
    out = []
    for i, cls in enumerate([v1, v1, v2, v3]):
        msg = cls()
        if cls is v3:
            msg.id = f"id-{i}"
        else:
            msg.id = 10_000_000_000 + i
        msg.name = f"sensor {i} ✓"
        if i != 1:
            msg.score = i / 4
        msg.tags.extend([f"t{j}" for j in range(i)])
        for k, v in {"b": i, "a": -i}.items():
            msg.attrs[k] = v
        msg.at.FromDatetime(dt.datetime(2024, 5, 1, 13, 45, 30, 123456) + dt.timedelta(days=i))
        msg.count = 18_000_000_000_000_000_000 + i
        msg.kind = i % 3
        if i != 2:
            msg.line.sku = f"s{i}"
            msg.line.qty = i
        if i % 2:
            msg.card = "4111"
        else:
            msg.cash = 5 * i
        if i == 0:
            msg.maybe.value = -3
        msg.ratio = 0.25 + i
        msg.flag = i % 2 == 1
        msg.blob = bytes([i, 255])
        msg.delta = -5 * i
        msg.big = 2**64 - 1 - i
        msg.s32 = -(2**31) + i
        msg.u32 = 2**32 - 1 - i
        msg.d64 = -(2**63) + i
        msg.sf64 = 2**63 - 1 - i
        msg.f32 = 2**32 - 1 - i
        if i != 1:
            msg.wd.value = -1.5 * i
            msg.ws.value = f"w{i}"
            msg.wb.value = i == 0
            msg.wy.value = bytes([i])
            msg.wu.value = 2**64 - 1 - i
        if cls is v2:
            msg.extra = "not in the table"
        ser = ProtobufSerializer(cls, client)
        data = ser(msg, SerializationContext(topic, MessageField.VALUE))
        if cls is v3:
            out.append((None, data, None, "incompatible-schema"))
            continue
        at = dt.datetime(2024, 5, 1, 13, 45, 30, 123456) + dt.timedelta(days=i)
        expect = [
            msg.id,
            msg.name,
            None if i == 1 else i / 4,
            list(msg.tags),
            sorted([[k, v] for k, v in msg.attrs.items()]),
            ts(at),
            str(msg.count),
            ["UNKNOWN", "HOT", "COLD"][i % 3],
            None if i == 2 else [f"s{i}", i],
            "4111" if i % 2 else None,
            None if i % 2 else 5 * i,
            -3 if i == 0 else None,
            f32(0.25 + i),
            i % 2 == 1,
            b64(bytes([i, 255])),
            -5 * i,
            str(2**64 - 1 - i),
            -(2**31) + i,
            2**32 - 1 - i,
            -(2**63) + i,
            2**63 - 1 - i,
            2**32 - 1 - i,
            None if i == 1 else -1.5 * i,
            None if i == 1 else f"w{i}",
            None if i == 1 else i == 0,
            None if i == 1 else b64(bytes([i])),
            None if i == 1 else str(2**64 - 1 - i),
        ]
        out.append((None, data, expect, None))
    return out


JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Reading",
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "score": {"type": ["number", "null"]},
        "day": {"type": "string", "format": "date"},
        "at": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "attrs": {"type": "object", "additionalProperties": {"type": "integer"}},
        "address": {"$ref": "#/definitions/Address"},
        "any": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
        "ok": {"type": "boolean"},
        "free": {},
    },
    "required": ["id", "name", "day", "at", "tags", "attrs", "address"],
    "definitions": {
        "Address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}},
            "required": ["city"],
        }
    },
}


def json_records(client, topic):
    """Records written by JSONSerializer (it validates them against the schema); a second
    version adds a property, which the table (version 1) does not load."""
    import copy

    from confluent_kafka.schema_registry.json_schema import JSONSerializer

    v2 = copy.deepcopy(JSON_SCHEMA)
    v2["properties"]["extra"] = {"type": "string"}
    out = []
    for i, schema in enumerate([JSON_SCHEMA, JSON_SCHEMA, v2]):
        at = dt.datetime(2024, 5, 1, 13, 45, 30, 250000, tzinfo=dt.timezone.utc) + dt.timedelta(hours=i)
        value = {
            "id": 10_000_000_000 + i,
            "name": f"json {i}",
            "score": None if i == 1 else i * 1.5,
            "day": (dt.date(2024, 2, 28) + dt.timedelta(days=i)).isoformat(),
            "at": at.isoformat(),
            "tags": [f"t{j}" for j in range(i)],
            "attrs": {"x": i},
            "address": {"city": "Hangzhou"} if i == 0 else {"city": "Beijing", "zip": "100000"},
            "any": [7, "seven", None][i],
            "ok": i != 1,
            "free": [{"a": i}, "text", 3.5][i],
        }
        if value["any"] is None:
            del value["any"]
        if schema is v2:
            value["extra"] = "ignored"
        ser = JSONSerializer(json.dumps(schema), client)
        data = ser(value, SerializationContext(topic, MessageField.VALUE))
        expect = [
            value["id"],
            value["name"],
            value["score"],
            (dt.date.fromisoformat(value["day"]) - dt.date(1970, 1, 1)).days,
            ts(at),
            value["tags"],
            [["x", i]],
            [value["address"]["city"], value["address"].get("zip")],
            json.dumps(value["any"], separators=(",", ":")) if "any" in value else None,
            value["ok"],
            json.dumps(value["free"], separators=(",", ":")),
        ]
        out.append((None, data, expect, None))
    # A producer that does not validate: the first record's framing (its schema id) before a
    # value whose `address` is an array where the schema has an object. A dead letter
    # (incompatible-schema); the records around it still land.
    bad = {"id": 1, "name": "bad", "day": "2024-02-28", "at": "2024-05-01T13:45:30+00:00", "tags": [], "attrs": {}, "address": ["Hangzhou"]}
    out.append((None, out[0][1][:5] + json.dumps(bad).encode(), None, "incompatible-schema"))
    return out


ADDED_V1 = schema_v([ID, {"name": "name", "type": "string", "default": "anon"}])
ADDED_V2 = schema_v(
    [ID, {"name": "name", "type": "string", "default": "anon"}, {"name": "coupon", "type": ["null", "string"], "default": None}]
)
ADDED_V3 = schema_v([ID, {"name": "coupon", "type": ["null", "string"], "default": None}])


def added_records(version):
    """Two records written with v1 (id, name with a default), two with v2 (adds an optional
    `coupon`), or one with v3 (removes `name`); the expected row is [id, name, coupon] (a table
    that ignores the new field reads the first two): v3's `name` is v2's default."""
    first = {1: 0, 2: 2, 3: 4}[version]
    schema = {1: ADDED_V1, 2: ADDED_V2, 3: ADDED_V3}[version]
    rows = []
    for i in range(first, first + (1 if version == 3 else 2)):
        value = {"id": i}
        if version != 3:
            value["name"] = f"n{i}"
        if version != 1:
            value["coupon"] = f"C{i}" if i % 2 == 0 else None
        expect = [i, value.get("name", "anon"), value.get("coupon")]
        rows.append((None, schema, value, expect, None))
    return rows


def glue_records(url, topic):
    """Records written by the `aws-glue-schema-registry` package's KafkaSerializer (its Glue calls
    go to the stand-in through boto3): v1, v1 again with the payload zlib-compressed by the
    package's own codec, and v2 (a new optional field, not in the table)."""
    import boto3
    from aws_schema_registry import DataAndSchema, KafkaSerializer
    from aws_schema_registry import SchemaRegistryClient as GlueRegistryClient
    from aws_schema_registry.avro import AvroSchema
    from aws_schema_registry.codec import decode, encode

    glue = boto3.client(
        "glue",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="k2mc-test",
        aws_secret_access_key="k2mc-test",
    )
    serializer = KafkaSerializer(GlueRegistryClient(glue, registry_name="k2mc", wait_interval_seconds=0))
    out = []
    for i, schema in enumerate([ADDED_V1, ADDED_V1, ADDED_V2]):
        value = {"id": i, "name": f"glue {i}"}
        if schema is ADDED_V2:
            value["coupon"] = "G2"
        data = serializer.serialize(topic, DataAndSchema(value, AvroSchema(json.dumps(schema))))
        if i == 1:
            payload, version_id = decode(data)
            data = encode(payload, version_id, compression=True)
        out.append((None, data, [i, f"glue {i}"], None))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--registry", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument(
        "--scenario",
        choices=["types", "evolution", "protobuf", "json", "added-v1", "added-v2", "added-v3", "glue"],
        required=True,
    )
    args = p.parse_args()
    if args.scenario == "glue":
        for key, value, expect, dead in glue_records(args.registry, args.topic):
            print(json.dumps({"key": b64(key), "value": b64(value), "expect": expect, "dead": dead}))
        return
    client = SchemaRegistryClient({"url": args.registry})
    if args.scenario in ("protobuf", "json"):
        made = protobuf_records(client, args.topic) if args.scenario == "protobuf" else json_records(client, args.topic)
        for key, value, expect, dead in made:
            print(json.dumps({"key": b64(key), "value": b64(value), "expect": expect, "dead": dead}))
        return
    records = {
        "types": types_records,
        "evolution": evolution_records,
        "added-v1": lambda: added_records(1),
        "added-v2": lambda: added_records(2),
        "added-v3": lambda: added_records(3),
    }[args.scenario]()
    serializers = {}
    key_serializer = AvroSerializer(client, json.dumps("string"))
    for key, schema, value, expect, dead in records:
        text = json.dumps(schema)
        if text not in serializers:
            serializers[text] = AvroSerializer(client, text)
        value_bytes = serializers[text](value, SerializationContext(args.topic, MessageField.VALUE))
        key_bytes = None if key is None else key_serializer(key, SerializationContext(args.topic, MessageField.KEY))
        print(json.dumps({"key": b64(key_bytes), "value": b64(value_bytes), "expect": expect, "dead": dead}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
