"""confluent-kafka (librdkafka) against a four-node sluice cluster whose topic's partitions each
live on three of the nodes, run by cli/tests/cluster_kafka.rs.

  placement.py BOOTSTRAP

BOOTSTRAP is every node's Kafka address, comma-separated.

Steps, each printing "ok <step>" when it passed:
  create     AdminClient creates topic "placed" (4 partitions, replication factor 3), and a
             replication factor of 5 on four nodes is refused (INVALID_REPLICATION_FACTOR)
  metadata   four brokers; each partition has three replicas, its leader one of them, the
             in-sync replicas among them; the four partitions led by four different nodes
  produce    acks=all: 400 keyed records, every delivery report succeeds
  consume    a consumer group reads all 400 back, each partition in the order produced
  alter      IncrementalAlterConfigs sets the topic's retention.ms to 3600000, and
             DescribeConfigs gives it back (the Rust test then asks every node)
  grow       CreatePartitions grows the topic to 6 partitions (5 is refused afterwards:
             INVALID_PARTITIONS); the new ones have three replicas and a leader each, and
             take 50 records each, every delivery report succeeding on the partition asked
             (the Rust test then checks every node names the same six)
  assign     replicas assigned by hand: CreateTopics with replica_assignment [[2,3,4],
             [4,1,2]] and CreatePartitions adding [[3,4,1]] put each partition on exactly
             those nodes (a record produced to each is delivered); an unknown node, lists of
             different lengths, and a new partition of another replication factor are
             refused (INVALID_REPLICA_ASSIGNMENT)
Then "all checks passed".
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic)

TOPIC = "placed"
PARTITIONS = 4
REPLICAS = 3
RECORDS = 400
TIMEOUT = 30


def ok(step):
    print(f"ok {step}", flush=True)


def fail(why):
    print(f"FAILED: {why}", flush=True)
    sys.exit(1)


def create(admin):
    done = admin.create_topics([NewTopic(TOPIC, PARTITIONS, REPLICAS)])
    done[TOPIC].result(timeout=TIMEOUT)
    wide = admin.create_topics([NewTopic("too-wide", 1, 5)])
    try:
        wide["too-wide"].result(timeout=TIMEOUT)
        fail("a replication factor of 5 on four nodes was accepted")
    except KafkaException as e:
        if e.args[0].code() != KafkaError.INVALID_REPLICATION_FACTOR:
            fail(f"replication factor 5: {e}")
    ok("create")


def metadata(admin):
    deadline = time.time() + TIMEOUT
    while True:
        md = admin.list_topics(TOPIC, timeout=10)
        t = md.topics.get(TOPIC)
        parts = [] if t is None or t.error else list(t.partitions.values())
        if len(md.brokers) == 4 and len(parts) == PARTITIONS and all(p.leader != -1 for p in parts):
            break
        if time.time() > deadline:
            fail(f"metadata: brokers {sorted(md.brokers)}, partitions {parts}")
        time.sleep(0.2)
    for p in parts:
        if len(set(p.replicas)) != REPLICAS or not set(p.replicas) <= set(md.brokers):
            fail(f"partition {p.id}: replicas {p.replicas}")
        if p.leader not in p.replicas or not set(p.isrs) <= set(p.replicas):
            fail(f"partition {p.id}: leader {p.leader}, replicas {p.replicas}, isr {p.isrs}")
    leaders = sorted(p.leader for p in parts)
    if leaders != sorted(md.brokers):
        fail(f"leaders {leaders} are not one per node {sorted(md.brokers)}")
    ok("metadata")


def produce(bootstrap):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                  "message.timeout.ms": 60000})
    failed = []
    sent = {}

    def report(err, msg):
        if err is not None:
            failed.append(str(err))
        else:
            sent.setdefault(msg.partition(), []).append(msg.value().decode())

    for i in range(RECORDS):
        p.produce(TOPIC, key=f"k{i}".encode(), value=f"v{i}".encode(), on_delivery=report)
        p.poll(0)
    if p.flush(TIMEOUT) != 0 or failed:
        fail(f"produce: {len(failed)} failed ({failed[:3]}), unflushed")
    if sum(len(v) for v in sent.values()) != RECORDS or len(sent) != PARTITIONS:
        fail(f"produce: delivered per partition {[(k, len(v)) for k, v in sent.items()]}")
    ok("produce")
    return sent


def consume(bootstrap, sent):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "placement",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([TOPIC])
    got = {}
    deadline = time.time() + TIMEOUT * 2
    while sum(len(v) for v in got.values()) < RECORDS and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            fail(f"consume: {m.error()}")
        got.setdefault(m.partition(), []).append(m.value().decode())
    c.close()
    if got != sent:
        fail(f"consume: got {[(k, len(v)) for k, v in sorted(got.items())]}, "
             f"sent {[(k, len(v)) for k, v in sorted(sent.items())]}")
    ok("consume")


def alter(admin):
    entry = ConfigEntry("retention.ms", "3600000",
                        incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource("topic", TOPIC, incremental_configs=[entry])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=TIMEOUT)
    described = admin.describe_configs([ConfigResource("topic", TOPIC)])
    for f in described.values():
        got = f.result(timeout=TIMEOUT)["retention.ms"].value
        if got != "3600000":
            fail(f"alter: retention.ms is {got} after the change")
    ok("alter")


def grow(admin, bootstrap):
    grown = PARTITIONS + 2
    for f in admin.create_partitions([NewPartitions(TOPIC, grown)]).values():
        f.result(timeout=TIMEOUT)
    try:
        for f in admin.create_partitions([NewPartitions(TOPIC, grown - 1)]).values():
            f.result(timeout=TIMEOUT)
        fail("shrinking the partitions was accepted")
    except KafkaException as e:
        if e.args[0].code() != KafkaError.INVALID_PARTITIONS:
            fail(f"shrinking: {e}")
    deadline = time.time() + TIMEOUT
    while True:
        t = admin.list_topics(TOPIC, timeout=10).topics.get(TOPIC)
        parts = [] if t is None or t.error else list(t.partitions.values())
        if len(parts) == grown and all(p.leader != -1 for p in parts):
            break
        if time.time() > deadline:
            fail(f"grow: partitions {parts}")
        time.sleep(0.2)
    for p in parts:
        if len(set(p.replicas)) != REPLICAS or p.leader not in p.replicas:
            fail(f"grow: partition {p.id}: leader {p.leader}, replicas {p.replicas}")
    prod = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                     "message.timeout.ms": 60000, "topic.metadata.refresh.interval.ms": 1000})
    delivered = []

    def report(err, msg):
        delivered.append((str(err) if err else None, msg.partition()))

    for part in range(PARTITIONS, grown):
        for i in range(50):
            prod.produce(TOPIC, value=f"new-{part}-{i}".encode(), partition=part,
                         on_delivery=report)
            prod.poll(0)
    if prod.flush(TIMEOUT) != 0:
        fail("grow: records left unflushed")
    bad = [d for d in delivered if d[0] is not None or d[1] < PARTITIONS]
    if len(delivered) != 100 or bad:
        fail(f"grow: {len(delivered)} reports, bad {bad[:3]}")
    ok("grow")


def expect_refused(futures, code, what):
    for f in futures.values():
        try:
            f.result(timeout=TIMEOUT)
            fail(f"assign: {what} was accepted")
        except KafkaException as e:
            if e.args[0].code() != code:
                fail(f"assign: {what}: {e}")


def replicas_of(admin, topic, count):
    deadline = time.time() + TIMEOUT
    while True:
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        parts = [] if t is None or t.error else list(t.partitions.values())
        if len(parts) == count and all(p.leader in p.replicas for p in parts):
            return {p.id: sorted(p.replicas) for p in parts}
        if time.time() > deadline:
            fail(f"assign: {topic}: partitions {parts}")
        time.sleep(0.2)


def assign(admin, bootstrap):
    topic = "by-hand"
    hand = [[2, 3, 4], [4, 1, 2]]
    for f in admin.create_topics([NewTopic(topic, len(hand), replica_assignment=hand)]).values():
        f.result(timeout=TIMEOUT)
    got = replicas_of(admin, topic, 2)
    if got != {0: [2, 3, 4], 1: [1, 2, 4]}:
        fail(f"assign: created with {hand}, replicas {got}")
    added = [[3, 4, 1]]
    more = admin.create_partitions([NewPartitions(topic, 3, replica_assignment=added)])
    for f in more.values():
        f.result(timeout=TIMEOUT)
    got = replicas_of(admin, topic, 3)
    if got.get(2) != [1, 3, 4]:
        fail(f"assign: partition added on {added}, replicas {got}")
    bad = KafkaError.INVALID_REPLICA_ASSIGNMENT
    expect_refused(admin.create_topics([NewTopic("hand-bad", 1, replica_assignment=[[1, 9, 2]])]),
                   bad, "node 9")
    expect_refused(admin.create_topics([NewTopic("hand-odd", 2, replica_assignment=[[1, 2], [3]])]),
                   bad, "lists of two lengths")
    expect_refused(admin.create_partitions([NewPartitions(topic, 4, replica_assignment=[[1, 2]])]),
                   bad, "two replicas for a topic of three")
    prod = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    delivered = []
    for part in range(3):
        prod.produce(topic, value=b"by hand", partition=part,
                     on_delivery=lambda err, msg: delivered.append((err, msg.partition())))
    if prod.flush(TIMEOUT) != 0 or sorted(delivered) != [(None, 0), (None, 1), (None, 2)]:
        fail(f"assign: produced {delivered}")
    ok("assign")


def main():
    bootstrap = sys.argv[1]
    admin = AdminClient({"bootstrap.servers": bootstrap,
                         "topic.metadata.refresh.interval.ms": 1000})
    # Nodes that just started may still be electing the metadata's leader (the controller).
    deadline = time.time() + TIMEOUT
    while True:
        md = admin.list_topics(timeout=10)
        if len(md.brokers) == 4 and md.controller_id in md.brokers:
            break
        if time.time() > deadline:
            fail(f"no controller: brokers {sorted(md.brokers)}, controller {md.controller_id}")
        time.sleep(0.2)
    create(admin)
    metadata(admin)
    sent = produce(bootstrap)
    consume(bootstrap, sent)
    alter(admin)
    grow(admin, bootstrap)
    assign(admin, bootstrap)
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
