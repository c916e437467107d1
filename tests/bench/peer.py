"""The pipeline a data team would write instead of k2mc, for the benchmark (tests/bench/pipeline).

A Python consumer (kafka-python, pure Python: librdkafka 2.x cannot talk to the tansu broker of the
local stack) reads one partition's offset range, parses each JSON event with `json`, masks the
phone (keep 3 + 4) and hashes the identity number with `hashlib` (SHA-256 hex), and writes the rows
with pyodps's Tunnel record writer into the same MaxCompute emulator, one upload session per run.
It does the same work as `kafka-columns` + `mask` in the benchmark's config, row for row; the
harness compares a sample of both tables.

    python peer.py --bootstrap HOST:PORT --topic T --count N --endpoint URL --project P
                   --access-id ID --access-key KEY --table T --partition ds=20261101

Prints one JSON line: {"records": N, "bytes": B, "rows": R}.
"""

import argparse
import datetime
import hashlib
import json
import sys

from kafka import KafkaConsumer, TopicPartition
from odps import ODPS


def keep_ends(value, head, tail):
    if len(value) <= head + tail:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[-tail:]


def row(message):
    event = json.loads(message.value)
    user = event["user"]
    return [
        event["event_id"],
        datetime.datetime.strptime(event["event_time"], "%Y-%m-%d %H:%M:%S"),
        user["id"],
        keep_ends(user["phone"], 3, 4),
        hashlib.sha256(user["id_number"].encode()).hexdigest(),
        user["city"],
        event["amount"],
        event["note"],
        message.offset,
    ]


def main():
    p = argparse.ArgumentParser()
    for name in ["bootstrap", "topic", "endpoint", "project", "access-id", "access-key", "table", "partition"]:
        p.add_argument("--" + name, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--partition-number", type=int, default=0)
    args = p.parse_args()

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=4 * 1024 * 1024,
    )
    tp = TopicPartition(args.topic, args.partition_number)
    consumer.assign([tp])
    consumer.seek(tp, 0)

    odps = ODPS(args.access_id, args.access_key, project=args.project, endpoint=args.endpoint)
    table = odps.get_table(args.table)
    records = size = 0
    with table.open_writer(partition=args.partition, create_partition=True) as writer:
        while records < args.count:
            batch = consumer.poll(timeout_ms=1000, max_records=1000).get(tp, [])
            rows = []
            for message in batch:
                if message.offset >= args.count:
                    break
                rows.append(row(message))
                size += len(message.value)
            records += len(rows)
            if rows:
                writer.write(rows)
    consumer.close()
    print(json.dumps({"records": records, "bytes": size, "rows": records}))


if __name__ == "__main__":
    sys.exit(main())
