"""confluent-kafka (librdkafka 2.16) against sluice's Kafka listener, run by cli/tests/kafka_python.rs.

Checks, each printing `ok NAME` or raising:
  admin-create     AdminClient.create_topics with configs, a duplicate, a bad partition count,
                   validate_only
  describe         describe_configs: every listed config with its value and source
  alter            incremental_alter_configs (SET and DELETE), and the legacy alter_configs as a
                   read-modify-write of everything describe_configs returned
  produce          Producer(acks=all, enable.idempotence=True): keys, values, headers and
                   timestamps, every delivery report without error, offsets 0..N-1
  consume          Consumer with assign() (no group): the same records back, in order
  offsets          get_watermark_offsets and offsets_for_times
  delete           delete_topics, then the topic is gone and a second delete fails

Usage: sluice_checks.py BOOTSTRAP
"""

import sys
import time

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
    OFFSET_BEGINNING,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)

N = 100
TIMEOUT = 30


def ok(name):
    print(f"ok {name}", flush=True)


def expect_error(future, code, what):
    try:
        future.result(timeout=TIMEOUT)
    except KafkaException as e:
        err = e.args[0]
        assert err.code() == code, f"{what}: {err}"
        return err
    raise AssertionError(f"{what}: succeeded")


def configs_of(admin, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([res])[res].result(timeout=TIMEOUT)


def admin_create(admin, topic, bootstrap):
    new = NewTopic(topic, num_partitions=1, replication_factor=1,
                   config={"retention.ms": "3600000", "segment.bytes": "2097152"})
    admin.create_topics([new])[topic].result(timeout=TIMEOUT)
    expect_error(admin.create_topics([NewTopic(topic, 1, 1)])[topic],
                 KafkaError.TOPIC_ALREADY_EXISTS, "duplicate")
    admin.create_topics([NewTopic(topic + "-3", 3, 1)])[topic + "-3"].result(timeout=TIMEOUT)
    expect_error(admin.create_topics([NewTopic(topic + "-c", 1, 1, config={"cleanup.policy": "compact"})])[topic + "-c"],
                 KafkaError.INVALID_CONFIG, "compaction")
    admin.create_topics([NewTopic(topic + "-v", 1, 1)], validate_only=True)[topic + "-v"].result(timeout=TIMEOUT)
    names = admin.list_topics(timeout=TIMEOUT).topics
    assert topic in names and topic + "-v" not in names, names
    assert sorted(names[topic + "-3"].partitions) == [0, 1, 2], names[topic + "-3"].partitions
    # Each partition is its own log: a record sent to partition 2 lands there, at offset 0.
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    got = []
    p.produce(topic + "-3", value=b"to two", partition=2,
              on_delivery=lambda err, msg: got.append((err, msg.partition(), msg.offset())))
    assert p.flush(TIMEOUT) == 0
    assert got == [(None, 2, 0)], got
    # Replicas assigned by hand: a single server is node 0, which holds every partition.
    hand = topic + "-a"
    admin.create_topics([NewTopic(hand, 2, replica_assignment=[[0], [0]])])[hand].result(timeout=TIMEOUT)
    expect_error(admin.create_topics([NewTopic(topic + "-b", 1, replica_assignment=[[1]])])[topic + "-b"],
                 KafkaError.INVALID_REPLICA_ASSIGNMENT, "node 1 of a single server")
    admin.create_partitions([NewPartitions(hand, 3, replica_assignment=[[0]])])[hand].result(timeout=TIMEOUT)
    expect_error(admin.create_partitions([NewPartitions(hand, 4, replica_assignment=[[2]])])[hand],
                 KafkaError.INVALID_REPLICA_ASSIGNMENT, "a new partition on node 2")
    parts = admin.list_topics(hand, timeout=TIMEOUT).topics[hand].partitions
    assert sorted(parts) == [0, 1, 2], parts
    ok("admin-create")


def describe(admin, topic):
    c = configs_of(admin, topic)
    for name in ["retention.ms", "retention.bytes", "segment.bytes", "max.message.bytes",
                 "cleanup.policy", "message.timestamp.type"]:
        assert name in c, f"{name} missing from {sorted(c)}"
    assert c["retention.ms"].value == "3600000", c["retention.ms"]
    assert c["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, c["retention.ms"].source
    assert not c["retention.ms"].is_read_only
    assert c["segment.bytes"].value == "2097152"
    assert c["retention.bytes"].value == "-1"
    assert c["retention.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert c["cleanup.policy"].value == "delete" and c["cleanup.policy"].is_read_only
    ok("describe")


def alter(admin, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(timeout=TIMEOUT)
    c = configs_of(admin, topic)
    assert c["retention.bytes"].value == "1048576", c["retention.bytes"]
    assert c["retention.ms"].value == "3600000", "an incremental change keeps the others"
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([res])[res].result(timeout=TIMEOUT)
    assert configs_of(admin, topic)["retention.bytes"].value == "-1"
    # Read, modify, write back everything (read-only entries unchanged).
    current = configs_of(admin, topic)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic,
                         set_config={k: v.value for k, v in current.items()})
    res.set_config("retention.ms", "7200000")
    admin.alter_configs([res])[res].result(timeout=TIMEOUT)
    after = configs_of(admin, topic)
    assert after["retention.ms"].value == "7200000", after["retention.ms"]
    # A read-only config cannot change.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"cleanup.policy": "compact"})
    expect_error(admin.alter_configs([res])[res], KafkaError.INVALID_CONFIG, "compaction")
    # Clearing replication throttles (Kafka's reassignment tool does): sluice sets none, so
    # it is accepted on a topic that exists, refused on one that does not; setting one is
    # refused.
    throttle = "leader.replication.throttled.replicas"
    clear = lambda t: ConfigResource(ConfigResource.Type.TOPIC, t, incremental_configs=[
        ConfigEntry(throttle, None, incremental_operation=AlterConfigOpType.DELETE)])
    res = clear(topic)
    admin.incremental_alter_configs([res])[res].result(timeout=TIMEOUT)
    res = clear("no-such-topic")
    expect_error(admin.incremental_alter_configs([res])[res],
                 KafkaError.UNKNOWN_TOPIC_OR_PART, "clearing throttles of no topic")
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(throttle, "0:1", incremental_operation=AlterConfigOpType.SET)])
    expect_error(admin.incremental_alter_configs([res])[res], KafkaError.INVALID_CONFIG,
                 "setting a throttle")
    ok("alter")


def produce(bootstrap, topic):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5})
    reports = []

    def report(err, msg):
        reports.append((err, msg.offset() if err is None else None))

    base_ts = int(time.time() * 1000) - 10_000
    for i in range(N):
        p.produce(topic, key=f"key-{i}".encode(), value=f"value-{i}".encode(),
                  headers=[("n", str(i).encode()), ("tag", b"py")], timestamp=base_ts + i,
                  on_delivery=report)
    left = p.flush(TIMEOUT)
    assert left == 0, f"{left} not delivered"
    errors = [e for e, _ in reports if e is not None]
    assert not errors, errors[:3]
    assert sorted(o for _, o in reports) == list(range(N)), reports[:5]
    ok("produce")
    return base_ts


def consume(bootstrap, topic, base_ts):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.time() + TIMEOUT
    while len(got) < N and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append(m)
    c.close()
    assert len(got) == N, f"{len(got)} of {N}"
    for i, m in enumerate(got):
        assert m.offset() == i, (i, m.offset())
        assert m.key() == f"key-{i}".encode() and m.value() == f"value-{i}".encode()
        assert m.headers() == [("n", str(i).encode()), ("tag", b"py")], m.headers()
        assert m.timestamp()[1] == base_ts + i, (m.timestamp(), base_ts + i)
    ok("consume")


def offsets(bootstrap, topic, base_ts):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-offsets",
                  "enable.auto.commit": False})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
    assert (low, high) == (0, N), (low, high)
    found = c.offsets_for_times([TopicPartition(topic, 0, base_ts + 42)], timeout=TIMEOUT)
    assert found[0].offset == 42, found
    beyond = c.offsets_for_times([TopicPartition(topic, 0, base_ts + 10 * N)], timeout=TIMEOUT)
    assert beyond[0].offset == -1, beyond
    c.close()
    ok("offsets")


def delete(admin, topic):
    admin.delete_topics([topic])[topic].result(timeout=TIMEOUT)
    assert topic not in admin.list_topics(timeout=TIMEOUT).topics
    expect_error(admin.delete_topics([topic])[topic], KafkaError.UNKNOWN_TOPIC_OR_PART, "second delete")
    ok("delete")


def main():
    bootstrap = sys.argv[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = "py-checks"
    admin_create(admin, topic, bootstrap)
    describe(admin, topic)
    alter(admin, topic)
    base_ts = produce(bootstrap, topic)
    consume(bootstrap, topic, base_ts)
    offsets(bootstrap, topic, base_ts)
    delete(admin, topic)
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
