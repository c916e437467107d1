"""pyodps 0.13.2 as the referee of our MaxCompute emulator and our Rust Tunnel codec.

Every subcommand prints JSON on stdout and exits non-zero with a message on stderr when a check
fails. Rows cross the language boundary in a canonical JSON form shared with the Rust side
(`Value::to_canonical_json`): temporal values as integers (DATE days, DATETIME ms, TIMESTAMP
[seconds, nanos]), BINARY as base64, DECIMAL as plain text, MAP as [[k, v], ...], STRUCT as a list.

Run with TZ=UTC: pyodps converts naive DATETIME values through local time.
"""

import argparse
import base64
import calendar
import datetime as dt
import decimal
import io
import json
import math
import sys

import pandas as pd
from odps import ODPS, errors, options
from odps.lib.ext_types import Monthdelta
from odps.models import Record, TableSchema
from odps.tunnel import TableTunnel
from odps.tunnel.io.reader import TunnelRecordReader
from odps.tunnel.io.stream import CompressOption, get_decompress_stream
from odps.tunnel.io.writer import BaseRecordWriter
from odps import types as odps_types

# Our tests write dates before 1928 on purpose (DATETIME before 1970, TIMESTAMP in 1900).
options.allow_antique_date = True

EPOCH_DATE = dt.date(1970, 1, 1)
EVERY_TYPE = [
    ("c_bool", "boolean"), ("c_tinyint", "tinyint"), ("c_smallint", "smallint"),
    ("c_int", "int"), ("c_bigint", "bigint"), ("c_float", "float"), ("c_double", "double"),
    ("c_decimal", "decimal(38,18)"), ("c_varchar", "varchar(10)"), ("c_char", "char(4)"),
    ("c_string", "string"), ("c_binary", "binary"), ("c_date", "date"),
    ("c_datetime", "datetime"), ("c_timestamp", "timestamp"), ("c_timestamp_ntz", "timestamp_ntz"),
    ("c_array", "array<string>"), ("c_map", "map<string,bigint>"),
    ("c_struct", "struct<a:bigint,b:array<double>>"),
]


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def check(cond, message):
    if not cond:
        fail(message)


# ---------------------------------------------------------------- canonical conversions


def to_canonical(value, ty):
    """A value pyodps returned, in the canonical JSON form."""
    if value is None:
        return None
    name = str(ty).lower()
    if isinstance(ty, odps_types.Array):
        return [to_canonical(v, ty.value_type) for v in value]
    if isinstance(ty, odps_types.Map):
        return [[to_canonical(k, ty.key_type), to_canonical(v, ty.value_type)] for k, v in value.items()]
    if isinstance(ty, odps_types.Struct):
        items = value.values() if isinstance(value, dict) else list(value)
        return [to_canonical(v, t) for v, t in zip(items, ty.field_types.values())]
    if isinstance(ty, odps_types.Decimal):
        return format(value, "f")
    if name in ("float", "double"):
        return value if math.isfinite(value) else str(value)
    if name == "binary":
        return base64.b64encode(value).decode()
    if name == "date":
        return (value - EPOCH_DATE).days
    if name == "datetime":
        return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000
    if name in ("timestamp", "timestamp_ntz", "interval_day_time"):
        ns = value.value
        return [ns // 1_000_000_000, ns % 1_000_000_000]
    if name == "interval_year_month":
        return value.total_months()
    if name == "json":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def from_canonical(value, ty):
    """The pyodps value for a canonical JSON value."""
    if value is None:
        return None
    name = str(ty).lower()
    if isinstance(ty, odps_types.Array):
        return [from_canonical(v, ty.value_type) for v in value]
    if isinstance(ty, odps_types.Map):
        return {from_canonical(k, ty.key_type): from_canonical(v, ty.value_type) for k, v in value}
    if isinstance(ty, odps_types.Struct):
        return tuple(from_canonical(v, t) for v, t in zip(value, ty.field_types.values()))
    if isinstance(ty, odps_types.Decimal):
        return decimal.Decimal(value)
    if name in ("float", "double"):
        return float(value)
    if name == "binary":
        return base64.b64decode(value)
    if name == "date":
        return EPOCH_DATE + dt.timedelta(days=value)
    if name == "datetime":
        return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=value)
    if name in ("timestamp", "timestamp_ntz"):
        return pd.Timestamp(value[0] * 1_000_000_000 + value[1], unit="ns")
    if name == "interval_day_time":
        return pd.Timedelta(seconds=value[0], nanoseconds=value[1])
    if name == "interval_year_month":
        return Monthdelta(months=value)
    if name == "json":
        return json.loads(value)
    return value


def schema_from_json(text):
    """A pyodps TableSchema from [[name, type], ...]."""
    cols = json.loads(text)
    return TableSchema.from_lists([c[0] for c in cols], [c[1] for c in cols])


def canonical_rows(records, columns):
    return [[to_canonical(r[i], c.type) for i, c in enumerate(columns)] for r in records]


# ---------------------------------------------------------------- stream codec checks


def cmd_write_stream(args):
    """pyodps's own record writer turns canonical rows into raw stream bytes."""
    schema = schema_from_json(args.schema)
    schema.build_snapshot()
    out = io.BytesIO()
    writer = BaseRecordWriter(schema, out)
    for line in open(args.rows):
        row = json.loads(line)
        rec = Record(schema=schema)
        for i, c in enumerate(schema.columns):
            rec[i] = from_canonical(row[i], c.type)
        writer.write(rec)
    writer.close()
    with open(args.out, "wb") as f:
        f.write(out.getvalue())
    print(json.dumps({"bytes": len(out.getvalue())}))


def cmd_decode_stream(args):
    """pyodps's TunnelRecordReader (checksums on) decodes bytes our writer made."""
    schema = schema_from_json(args.schema)
    schema.build_snapshot()
    raw = open(args.input, "rb").read()
    # pyodps's own decompressing stream for the body's Content-Encoding (as its download reads it).
    algo = CompressOption.CompressAlgorithm.from_encoding(args.content_encoding) if args.content_encoding else None

    def stream_creator(cursor, row_number=None, raw_size=None):
        if cursor != 0:
            return None
        if algo is None:
            return io.BytesIO(raw)
        return get_decompress_stream(io.BytesIO(raw), CompressOption(algo), requests=False)

    reader = TunnelRecordReader(schema, stream_creator)
    rows = []
    try:
        while True:
            rec = reader.read()
            if rec is None:
                break
            rows.append(rec)
    except Exception as exc:  # ChecksumError, IOError from a corrupt stream
        fail(f"pyodps rejected the stream: {type(exc).__name__}: {exc}")
    for row in canonical_rows(rows, schema.columns):
        print(json.dumps(row, ensure_ascii=False))


# ---------------------------------------------------------------- against the emulator


def connect(args, key=None):
    return ODPS(args.access_id, key or args.access_key, project=args.project, endpoint=args.endpoint)


def cmd_dump(args):
    """read_table through a Tunnel download session; one canonical row per line."""
    o = connect(args)
    table = o.get_table(args.table)
    if args.all_partitions:
        # Every partition pyodps lists, each row tagged with its partition spec.
        for part in table.iterate_partitions():
            spec = str(part.partition_spec).replace("'", "")
            with table.open_reader(partition=part.partition_spec) as reader:
                records = list(reader)
            for row in canonical_rows(records, table.table_schema.simple_columns):
                print(json.dumps({"partition": spec, "row": row}, ensure_ascii=False))
        return
    kw = {"partition": args.partition} if args.partition else {}
    with table.open_reader(**kw) as reader:
        records = list(reader)
    for row in canonical_rows(records, table.table_schema.simple_columns):
        print(json.dumps(row, ensure_ascii=False))


def cmd_suite(args):
    """Proof 1: every pyodps operation our users rely on, against the emulator."""
    o = connect(args)
    options.sql.use_odps2_extension = True
    name = args.table
    o.delete_table(name, if_exists=True)
    schema = TableSchema.from_lists(
        [c for c, _ in EVERY_TYPE], [t for _, t in EVERY_TYPE], ["ds", "hr"], ["string", "string"]
    )
    table = o.create_table(name, schema, lifecycle=1, if_not_exists=True)
    check(o.exist_table(name), "table not visible after create")
    got = [(c.name, str(c.type).lower().replace("`", "")) for c in o.get_table(name).table_schema.simple_columns]
    check(got == [(c, t) for c, t in EVERY_TYPE], f"schema came back as {got}")

    part = "ds=20240101,hr=00"
    table.create_partition(part, if_not_exists=True)
    check(table.exist_partition(part), "partition not visible after create")
    check(not table.exist_partition("ds=20240101,hr=01"), "missing partition reported as existing")

    rows = [
        [True, -128, 32767, -2147483648, 2**63 - 1, 1.5, -2.25, "-12345678901234567890.123456789012345678",
         "ünïcødé", "abcd", "", b"\x00\xff", dt.date(1969, 12, 31), dt.datetime(1960, 5, 6, 7, 8, 9, 123000),
         pd.Timestamp("2024-01-01 00:00:00.123456789"), pd.Timestamp("1900-01-01 00:00:00.000000001"),
         ["x", None, ""], {"k": 1, "n": None}, (7, [1.0, None])],
        [None] * len(EVERY_TYPE),
    ]
    tunnel = TableTunnel(o)
    expected = []
    for compress in (False, True):
        session = tunnel.create_upload_session(name, partition_spec=part)
        with session.open_record_writer(0, compress=compress) as writer:
            for values in rows:
                rec = session.new_record([decimal.Decimal(v) if isinstance(v, str) and i == 7 else v for i, v in enumerate(values)])
                writer.write(rec)
        session.commit([0])
        check(session.status.name.upper() in ("CLOSED", "NORMAL"), f"commit left status {session.status}")
        expected += rows

    # A session reloaded by id sees its committed state.
    reloaded = tunnel.create_upload_session(name, partition_spec=part, upload_id=session.id)
    check(reloaded.status.value == "CLOSED", f"reloaded session is {reloaded.status}")

    # create_partition=true on a batch session, then table.open_writer.
    session = tunnel.create_upload_session(name, partition_spec="ds=20240102,hr=00", create_partition=True)
    with session.open_record_writer(0) as writer:
        writer.write(session.new_record([None] * len(EVERY_TYPE)))
    session.commit([0])
    check(table.exist_partition("ds=20240102,hr=00"), "create_partition=true did not create the partition")
    with table.open_writer(partition="ds=20240102,hr=00") as writer:
        writer.write([[False] + [None] * (len(EVERY_TYPE) - 1)])

    with table.open_reader(partition=part) as reader:
        records = list(reader)
    cols = table.table_schema.simple_columns
    got = canonical_rows(records, cols)
    want = canonical_rows([Record(schema=table.table_schema, values=r + [None, None]) for r in expected], cols)
    for w in want:
        w[7] = format(decimal.Decimal(w[7]), "f") if w[7] is not None else None
    check(got == want, f"download differs:\n got {got}\nwant {want}")

    with o.execute_sql(f"SELECT count(*) FROM {name} WHERE ds='20240101' AND hr='00'").open_reader(tunnel=False) as reader:
        count = int(list(reader)[0][0])
    check(count == 4, f"count(*) is {count}, want 4")
    inst = o.execute_sql(f"SELECT count(*) FROM {name} WHERE ds='20240102'")
    result = inst.get_task_results()
    check(list(result.values())[0].strip().splitlines()[-1] == "2", f"count result {result}")
    partitions = sorted(str(p.partition_spec) for p in table.partitions)
    check(len(partitions) == 2, f"partitions {partitions}")

    errors_seen = {}
    try:
        o.get_table("no_such_table_here").reload()
        fail("a missing table did not raise")
    except errors.NoSuchObject as exc:
        errors_seen["missing_table"] = type(exc).__name__
    try:
        o.execute_sql("SELEC broken FROM")
        fail("bad SQL did not raise")
    except errors.ParseError as exc:
        errors_seen["bad_sql"] = f"{type(exc).__name__}: {exc}"
    try:
        o.execute_sql(f"SELECT count(*) FROM no_such_table_here")
        fail("SQL on a missing table did not raise")
    except errors.ODPSError as exc:
        errors_seen["sql_missing_table"] = f"{type(exc).__name__}: {exc.code}"
    try:
        connect(args, key="wrong-secret").get_table(name).reload()
        fail("a bad signature did not raise")
    except errors.ODPSError as exc:
        errors_seen["bad_signature"] = f"{type(exc).__name__}: {exc.code}"
    try:
        TableTunnel(connect(args, key="wrong-secret")).create_upload_session(name, partition_spec=part)
        fail("a bad tunnel signature did not raise")
    except errors.ODPSError as exc:
        errors_seen["bad_tunnel_signature"] = f"{type(exc).__name__}: {exc.code}"
    check("SignatureNotMatch" in errors_seen["bad_signature"], errors_seen["bad_signature"])
    check("ODPS-0130131" in errors_seen["sql_missing_table"], errors_seen["sql_missing_table"])
    print(json.dumps({"rows_downloaded": len(got), "count": count, "partitions": partitions, "errors": errors_seen}))


def cmd_sessions(args):
    """Opens, writes and commits `count` sessions one after another (each one row), as fast as
    pyodps lets it: against a table over its quota, pyodps' own retry of 429 must carry it."""
    o = connect(args)
    tunnel = TableTunnel(o)
    table = o.get_table(args.table)
    for i in range(args.count):
        session = tunnel.create_upload_session(args.table, partition_spec=args.partition)
        with session.open_record_writer(0) as writer:
            writer.write(session.new_record([i] + [None] * (len(table.table_schema.simple_columns) - 1)))
        session.commit([0])
    print(json.dumps({"committed": args.count}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint")
    p.add_argument("--project", default="k2mc_test")
    p.add_argument("--access-id")
    p.add_argument("--access-key")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("suite")
    s.add_argument("--table", default="pyodps_every_type")
    s = sub.add_parser("dump")
    s.add_argument("table")
    s.add_argument("--partition")
    s.add_argument("--all-partitions", action="store_true")
    s = sub.add_parser("sessions")
    s.add_argument("table")
    s.add_argument("--partition")
    s.add_argument("--count", type=int, required=True)
    s = sub.add_parser("write-stream")
    s.add_argument("--schema", required=True, help='JSON [[name, type], ...]')
    s.add_argument("--rows", required=True, help="canonical JSON lines")
    s.add_argument("--out", required=True)
    s = sub.add_parser("decode-stream")
    s.add_argument("--schema", required=True)
    s.add_argument("--input", required=True)
    s.add_argument("--content-encoding", help="deflate, x-lz4-frame, ... (absent: not compressed)")
    args = p.parse_args()
    {"suite": cmd_suite, "dump": cmd_dump, "write-stream": cmd_write_stream, "decode-stream": cmd_decode_stream,
     "sessions": cmd_sessions}[args.cmd](args)


if __name__ == "__main__":
    main()
