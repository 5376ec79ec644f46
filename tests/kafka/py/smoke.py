#!/usr/bin/env python3
"""Produce N records with confluent-kafka (librdkafka from its wheel), consume them back in a
consumer group, and check the count. With --share, consume them with a share group instead
(confluent-kafka's ShareConsumer, KIP-932).

    KAFKA_BOOTSTRAP=127.0.0.1:9092 tests/kafka/.venv/bin/python tests/kafka/py/smoke.py [--topic T] [-n 10]
"""
import argparse
import os
import sys
import time

import confluent_kafka
from confluent_kafka import Consumer, KafkaException, Producer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"))
    ap.add_argument("--topic", default="smoke-confluent-kafka")
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--group", default=None)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--share", action="store_true", help="consume with a share group")
    a = ap.parse_args()
    if not a.bootstrap:
        print("smoke.py: no bootstrap address: pass --bootstrap or set KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    group = a.group or a.topic + ("-share" if a.share else "-group")
    deadline = time.monotonic() + a.timeout
    label = "confluent-kafka %s (librdkafka %s)" % (confluent_kafka.__version__, confluent_kafka.libversion()[0])

    if a.share:
        # A share group starts at the latest offset by default; read what was produced before.
        from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                           ConfigResource, ResourceType)
        adm = AdminClient({"bootstrap.servers": a.bootstrap})
        res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
            ConfigEntry("share.auto.offset.reset", "earliest",
                        incremental_operation=AlterConfigOpType.SET)])
        for f in adm.incremental_alter_configs([res]).values():
            f.result(timeout=max(1.0, deadline - time.monotonic()))

    delivered = []
    errors = []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg.offset())

    p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True})
    for i in range(a.n):
        p.produce(a.topic, key=b"k%d" % i, value=b"confluent-kafka %d" % i, on_delivery=on_delivery)
    left = p.flush(max(1.0, deadline - time.monotonic()))
    if left or errors:
        print("smoke.py: produce: %d undelivered, errors %s" % (left, errors), file=sys.stderr)
        return 1

    if a.share:
        from confluent_kafka import ShareConsumer
        c = ShareConsumer({"bootstrap.servers": a.bootstrap, "group.id": group})
        c.subscribe([a.topic])
        kind = "share group"
    else:
        c = Consumer({
            "bootstrap.servers": a.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        })
        c.subscribe([a.topic])
        kind = "group"
    got = 0
    try:
        while got < a.n and time.monotonic() < deadline:
            if a.share:
                msgs = c.poll(1.0) or []
            else:
                m = c.poll(1.0)
                msgs = [m] if m is not None else []
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
                got += 1
        if a.share and got:
            c.commit_sync()
        elif got:
            c.commit(asynchronous=False)
    finally:
        c.close()
    print("%s %s: produced %d consumed %d" % (label, kind, len(delivered), got))
    return 0 if got == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
