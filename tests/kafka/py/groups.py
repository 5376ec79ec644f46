"""A consumer group of confluent-kafka consumers (classic protocol) against sluice, run by
cli/tests/kafka_python_groups.rs (the test that one member is SIGKILLed mid-stream).

Every line on stdout is one JSON object (an event, with its wall-clock time in seconds as "t");
the Rust test reads them.

  groups.py produce BOOTSTRAP TOPIC PARTITIONS N
      Creates TOPIC with PARTITIONS partitions (AdminClient) and produces N keyed records
      (`k-<i>` / `v-<i>`) with an idempotent Producer and acks=all. Events:
        {"ev": "produced", "k": KEY, "p": PARTITION, "o": OFFSET}   one per delivery report
        {"ev": "produce_error", "k": KEY, "error": TEXT}          a failed delivery
        {"ev": "produce_done", "n": N}

  groups.py consume BOOTSTRAP TOPIC GROUP NAME [--delay-ms D] [--batch B]
                    [--die-after K --die-uncommitted U]
      One member of GROUP (subscribe, session.timeout.ms=6000, no auto-commit). It processes
      nothing until it is first assigned a third of the partitions (the group has three
      members: each member seeks back to the records it gets before). It processes a record
      (prints it, then sleeps D ms), stores its offset and commits synchronously every B
      records, when idle, and in the revoke callback. It leaves (close) once the group's
      committed offsets equal every partition's end. With --die-after, once it has processed K
      records it SIGKILLs itself right after its U-th record past a commit (U < B): no close,
      no LeaveGroup, U records processed and not committed. Events:
        {"ev": "assigned", "c": NAME, "committed": [[P, OFFSET], ...]}   committed at assignment
        {"ev": "revoked", "c": NAME, "partitions": [P, ...]}
        {"ev": "rec", "c": NAME, "p": P, "o": OFFSET, "k": KEY}        a record processed
        {"ev": "commit", "c": NAME, "offsets": [[P, OFFSET], ...]}     a commit that succeeded
        {"ev": "commit_error", "c": NAME, "error": TEXT}
        {"ev": "dying", "c": NAME}                                     just before the SIGKILL
        {"ev": "closed", "c": NAME}
"""

import argparse
import json
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 30
# How often an idle member asks whether every committed offset reached its partition's end.
DONE_CHECK_S = 0.5


def emit(**event):
    event["t"] = round(time.time(), 3)
    print(json.dumps(event), flush=True)


def produce(bootstrap, topic, partitions, n):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=TIMEOUT)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5})

    def report(err, msg):
        key = msg.key().decode()
        if err is not None:
            emit(ev="produce_error", k=key, error=str(err))
        else:
            emit(ev="produced", k=key, p=msg.partition(), o=msg.offset())

    for i in range(n):
        p.produce(topic, key=f"k-{i}", value=f"v-{i}", on_delivery=report)
        p.poll(0)
    left = p.flush(TIMEOUT)
    assert left == 0, f"{left} records not delivered"
    emit(ev="produce_done", n=n)


class Member:
    def __init__(self, args):
        self.args = args
        self.name = args.name
        self.topic = args.topic
        self.consumer = Consumer({
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "group.protocol": "classic",
            "client.id": args.name,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        })
        self.partition_count = None
        self.ends = None
        self.assignment = []
        self.processed = 0
        self.since_commit = 0
        # Nothing is processed before the group first has three members.
        self.started = False

    def commit(self):
        try:
            done = self.consumer.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() == KafkaError._NO_OFFSET:
                return
            emit(ev="commit_error", c=self.name, error=str(e.args[0]))
            return
        self.since_commit = 0
        offsets = [[tp.partition, tp.offset] for tp in done if tp.offset >= 0]
        if offsets:
            emit(ev="commit", c=self.name, offsets=offsets)

    def on_assign(self, consumer, partitions):
        self.assignment = [tp.partition for tp in partitions]
        if len(partitions) * 3 == self.partition_count:
            self.started = True
        committed = consumer.committed(partitions, timeout=TIMEOUT)
        emit(ev="assigned", c=self.name,
             committed=[[tp.partition, tp.offset] for tp in committed])

    def on_revoke(self, consumer, partitions):
        self.commit()
        self.assignment = []
        emit(ev="revoked", c=self.name, partitions=[tp.partition for tp in partitions])

    def load_ends(self):
        md = self.consumer.list_topics(self.topic, timeout=TIMEOUT)
        self.partition_count = len(md.topics[self.topic].partitions)
        self.ends = [self.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                         timeout=TIMEOUT)[1]
                     for p in range(self.partition_count)]

    def group_done(self):
        """Whether the group's committed offsets reached every partition's end."""
        tps = [TopicPartition(self.topic, p) for p in range(self.partition_count)]
        committed = self.consumer.committed(tps, timeout=TIMEOUT)
        return all(tp.offset == self.ends[tp.partition] for tp in committed)

    def process(self, msg):
        emit(ev="rec", c=self.name, p=msg.partition(), o=msg.offset(), k=msg.key().decode())
        time.sleep(self.args.delay_ms / 1000.0)
        self.consumer.store_offsets(message=msg)
        self.processed += 1
        self.since_commit += 1
        if (self.args.die_after is not None and self.processed >= self.args.die_after
                and self.since_commit == self.args.die_uncommitted):
            emit(ev="dying", c=self.name)
            os.kill(os.getpid(), signal.SIGKILL)
        if self.since_commit >= self.args.batch:
            self.commit()

    def run(self):
        self.load_ends()
        self.consumer.subscribe([self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        next_check = 0.0
        while True:
            msg = self.consumer.poll(0.2)
            if msg is None:
                if self.since_commit > 0:
                    self.commit()
                if self.args.die_after is None and time.monotonic() >= next_check:
                    next_check = time.monotonic() + DONE_CHECK_S
                    if self.group_done():
                        break
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            if not self.started:
                # Not yet a group of three: back to this record until it is.
                self.consumer.seek(TopicPartition(self.topic, msg.partition(), msg.offset()))
                time.sleep(0.05)
                continue
            self.process(msg)
        self.consumer.close()
        emit(ev="closed", c=self.name)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("partitions", type=int)
    p.add_argument("n", type=int)
    c = sub.add_parser("consume")
    c.add_argument("bootstrap")
    c.add_argument("topic")
    c.add_argument("group")
    c.add_argument("name")
    c.add_argument("--delay-ms", type=int, default=10)
    c.add_argument("--batch", type=int, default=5)
    c.add_argument("--die-after", type=int, default=None)
    c.add_argument("--die-uncommitted", type=int, default=3)
    args = parser.parse_args()
    if args.cmd == "produce":
        produce(args.bootstrap, args.topic, args.partitions, args.n)
    else:
        assert args.die_after is None or 0 < args.die_uncommitted < args.batch
        Member(args).run()


if __name__ == "__main__":
    sys.exit(main())
