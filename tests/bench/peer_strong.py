"""The strong program a data team would write instead of k2mc, for the benchmark
(tests/bench/pipeline): the same work as `peer.py` (and as k2mc's `kafka-columns` + `mask`), row
for row, with the fast libraries a user who cares picks: confluent-kafka (librdkafka, C) to
consume, orjson to parse, `datetime.fromisoformat`, `hashlib`, and pyodps's Tunnel record writer.

    python peer_strong.py --bootstrap HOST:PORT --topic T --count N --endpoint URL --project P
                          --access-id ID --access-key KEY --table T --partition ds=20261101

Prints one JSON line: {"records": N, "bytes": B, "rows": R}.
"""

import argparse
import datetime
import hashlib
import json
import sys

import orjson
from confluent_kafka import Consumer, TopicPartition
from odps import ODPS

fromisoformat = datetime.datetime.fromisoformat
sha256 = hashlib.sha256


def row(value, offset):
    event = orjson.loads(value)
    user = event["user"]
    phone = user["phone"]
    masked = phone[:3] + "*" * (len(phone) - 7) + phone[-4:] if len(phone) > 7 else "*" * len(phone)
    return [
        event["event_id"],
        fromisoformat(event["event_time"]),
        user["id"],
        masked,
        sha256(user["id_number"].encode()).hexdigest(),
        user["city"],
        event["amount"],
        event["note"],
        offset,
    ]


def main():
    p = argparse.ArgumentParser()
    for name in ["bootstrap", "topic", "endpoint", "project", "access-id", "access-key", "table", "partition"]:
        p.add_argument("--" + name, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--partition-number", type=int, default=0)
    args = p.parse_args()

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "k2mc-bench-strong-peer",
            "enable.auto.commit": False,
            "fetch.max.bytes": 4 * 1024 * 1024,
            "max.partition.fetch.bytes": 4 * 1024 * 1024,
        }
    )
    consumer.assign([TopicPartition(args.topic, args.partition_number, 0)])

    odps = ODPS(args.access_id, args.access_key, project=args.project, endpoint=args.endpoint)
    table = odps.get_table(args.table)
    records = size = 0
    with table.open_writer(partition=args.partition, create_partition=True) as writer:
        while records < args.count:
            rows = []
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                if message.error():
                    raise SystemExit(f"consume: {message.error()}")
                offset = message.offset()
                if offset >= args.count:
                    continue
                value = message.value()
                rows.append(row(value, offset))
                size += len(value)
            records += len(rows)
            if rows:
                writer.write(rows)
    consumer.close()
    print(json.dumps({"records": records, "bytes": size, "rows": records}))


if __name__ == "__main__":
    sys.exit(main())
