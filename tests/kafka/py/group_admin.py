"""confluent-kafka's AdminClient group operations against sluice, run by
cli/tests/kafka_python_groups.rs.

Checks, each printing `ok NAME` or raising:
  setup        a topic of 3 partitions, 10 records in each (acks=all, idempotent)
  stable       two members of GROUP (classic protocol) share the 3 partitions and commit
               offsets with metadata; list_consumer_groups lists GROUP as Stable and classic
               (also under Stable and classic filters, not under Empty or consumer ones);
               describe_consumer_groups: Stable, classic, not simple, both members with their
               client ids, the assignment each consumer has, disjoint and covering the topic,
               the range assignor, the coordinator, every group operation authorized
  offsets      list_consumer_group_offsets: every partition's committed offset and metadata,
               for the whole group and for one partition named
  busy         delete_consumer_groups refused with NON_EMPTY_GROUP, alter_consumer_group_offsets
               refused per partition with UNKNOWN_MEMBER_ID, while members
               are in the group (as Kafka answers an admin commit to a group with members)
  empty        after both closed: described Empty with no members, listed Empty
  alter        alter_consumer_group_offsets of two partitions with metadata; listed back; a
               partition the topic lacks and an offset past the end refused; a new member
               resumes at the altered offsets (and at the committed one of the third)
  delete       delete_consumer_groups refused while that member is in the group, accepted
               after it closed; then no offsets, not listed, described Dead, a second
               delete GROUP_ID_NOT_FOUND

Usage: group_admin.py BOOTSTRAP TOPIC GROUP
"""

import sys
import time

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupType,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic

TIMEOUT = 30
PARTITIONS = 3
PER_PARTITION = 10


def ok(name):
    print(f"ok {name}", flush=True)


def expect_error(future, codes, what):
    try:
        got = future.result(timeout=TIMEOUT)
    except KafkaException as e:
        err = e.args[0]
        assert err.code() in codes, f"{what}: {err}"
        return err
    raise AssertionError(f"{what}: succeeded with {got}")


def member(bootstrap, group, name):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "classic",
        "client.id": name,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
    })


def describe(admin, group):
    return admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)


def listed(admin, **filters):
    """Group id -> listing, of list_consumer_groups (with `states` or `types` filters)."""
    result = admin.list_consumer_groups(request_timeout=TIMEOUT, **filters).result(timeout=TIMEOUT)
    assert not result.errors, result.errors
    return {g.group_id: g for g in result.valid}


def group_offsets(admin, group, partitions=None):
    """Partition -> (offset, metadata) of list_consumer_group_offsets."""
    req = ConsumerGroupTopicPartitions(group, partitions)
    res = admin.list_consumer_group_offsets([req])[group].result(timeout=TIMEOUT)
    assert res.group_id == group, res.group_id
    out = {}
    for tp in res.topic_partitions:
        assert tp.error is None, tp
        out[tp.partition] = (tp.offset, tp.metadata)
    return out


def setup(admin, bootstrap, topic):
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(timeout=TIMEOUT)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    failed = []
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            p.produce(topic, value=f"{part}-{i}", partition=part,
                      on_delivery=lambda err, msg: err and failed.append(err))
    assert p.flush(TIMEOUT) == 0 and not failed, failed
    ok("setup")


def stable(admin, bootstrap, topic, group):
    """Two members consume every record and commit; returns them, still members."""
    consumers = {name: member(bootstrap, group, name) for name in ["m1", "m2"]}
    for c in consumers.values():
        c.subscribe([topic])
    seen = {}
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert time.monotonic() < deadline, f"no stable group of two: {seen}"
        for name, c in consumers.items():
            msg = c.poll(0.1)
            if msg is not None and not msg.error():
                seen[(msg.partition(), msg.offset())] = name
        owned = [sorted(tp.partition for tp in c.assignment()) for c in consumers.values()]
        if len(seen) == PARTITIONS * PER_PARTITION and all(owned) and \
                sorted(sum(owned, [])) == list(range(PARTITIONS)):
            break
    # Each commits the ends of what it owns now, with metadata naming it.
    for name, c in consumers.items():
        offsets = [TopicPartition(topic, tp.partition, PER_PARTITION, f"by {name}")
                   for tp in c.assignment()]
        done = c.commit(offsets=offsets, asynchronous=False)
        assert all(tp.error is None for tp in done), done

    listing = listed(admin)
    assert group in listing, sorted(listing)
    assert listing[group].state == ConsumerGroupState.STABLE, listing[group].state
    assert not listing[group].is_simple_consumer_group
    assert listing[group].type == ConsumerGroupType.CLASSIC, listing[group].type
    assert group in listed(admin, states={ConsumerGroupState.STABLE})
    assert group not in listed(admin, states={ConsumerGroupState.EMPTY})
    assert group in listed(admin, types={ConsumerGroupType.CLASSIC})
    assert group not in listed(admin, types={ConsumerGroupType.CONSUMER})

    d = admin.describe_consumer_groups([group], include_authorized_operations=True)[group] \
        .result(timeout=TIMEOUT)
    assert d.group_id == group
    assert d.state == ConsumerGroupState.STABLE, d.state
    assert d.type == ConsumerGroupType.CLASSIC, d.type
    assert not d.is_simple_consumer_group
    assert d.partition_assignor == "range", d.partition_assignor
    assert f"{d.coordinator.host}:{d.coordinator.port}" == bootstrap, d.coordinator
    assert set(d.authorized_operations) == {
        AclOperation.READ, AclOperation.DELETE, AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}, d.authorized_operations
    by_client = {m.client_id: m for m in d.members}
    assert sorted(by_client) == ["m1", "m2"], sorted(by_client)
    described = []
    for name, c in consumers.items():
        got = sorted((tp.topic, tp.partition) for tp in by_client[name].assignment.topic_partitions)
        mine = sorted((tp.topic, tp.partition) for tp in c.assignment())
        assert got == mine, f"{name}: described {got}, consumer has {mine}"
        assert by_client[name].member_id, by_client[name]
        assert by_client[name].host, by_client[name]
        described += got
    assert sorted(described) == [(topic, p) for p in range(PARTITIONS)], described
    ok("stable")
    return consumers


def offsets(admin, topic, group, consumers):
    owner = {tp.partition: name for name, c in consumers.items() for tp in c.assignment()}
    got = group_offsets(admin, group)
    want = {p: (PER_PARTITION, f"by {owner[p]}") for p in range(PARTITIONS)}
    assert got == want, f"{got} != {want}"
    one = group_offsets(admin, group, [TopicPartition(topic, 1)])
    assert one == {1: want[1]}, one
    ok("offsets")


def busy(admin, topic, group):
    expect_error(admin.delete_consumer_groups([group])[group], [KafkaError.NON_EMPTY_GROUP],
                 "delete of a group with members")
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1)])
    res = admin.alter_consumer_group_offsets([req])[group].result(timeout=TIMEOUT)
    errors = [tp.error.code() if tp.error else None for tp in res.topic_partitions]
    assert errors == [KafkaError.UNKNOWN_MEMBER_ID], res.topic_partitions
    assert group_offsets(admin, group)[0][0] == PER_PARTITION
    ok("busy")


def empty(admin, group, consumers):
    for c in consumers.values():
        c.close()
    d = describe(admin, group)
    assert d.state == ConsumerGroupState.EMPTY, d.state
    assert d.members == [], d.members
    listing = listed(admin)
    assert listing[group].state == ConsumerGroupState.EMPTY, listing[group].state
    assert group in listed(admin, states={ConsumerGroupState.EMPTY})
    assert group not in listed(admin, states={ConsumerGroupState.STABLE})
    ok("empty")


def alter(admin, bootstrap, topic, group):
    """Alters two partitions' offsets; returns a new member that resumed there, still in."""
    before = group_offsets(admin, group)
    altered = {0: 3, 1: 7}
    req = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, o, f"reset to {o}") for p, o in altered.items()])
    res = admin.alter_consumer_group_offsets([req])[group].result(timeout=TIMEOUT)
    assert sorted((tp.partition, tp.offset) for tp in res.topic_partitions) == \
        sorted(altered.items()), res.topic_partitions
    assert all(tp.error is None for tp in res.topic_partitions), res.topic_partitions
    got = group_offsets(admin, group)
    want = {0: (3, "reset to 3"), 1: (7, "reset to 7"), 2: before[2]}
    assert got == want, f"{got} != {want}"

    # A partition the topic does not have is refused; so is an offset past the partition's
    # end (sluice's choice, docs/kafka-groups.md: Kafka stores any offset). Nothing changes.
    for tp, code in [(TopicPartition(topic, PARTITIONS, 1), KafkaError.UNKNOWN_TOPIC_OR_PART),
                     (TopicPartition(topic, 2, PER_PARTITION + 1), KafkaError.OFFSET_OUT_OF_RANGE)]:
        req = ConsumerGroupTopicPartitions(group, [tp])
        res = admin.alter_consumer_group_offsets([req])[group].result(timeout=TIMEOUT)
        errors = [t.error.code() if t.error else None for t in res.topic_partitions]
        assert errors == [code], res.topic_partitions
    assert group_offsets(admin, group) == want

    c = member(bootstrap, group, "m3")
    c.subscribe([topic])
    want = {(0, o) for o in range(3, PER_PARTITION)} | {(1, o) for o in range(7, PER_PARTITION)}
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < len(want):
        assert time.monotonic() < deadline, f"resumed with only {seen}"
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            seen.append((msg.partition(), msg.offset()))
    # Nothing more comes (partition 2 is at its end; nothing before the altered offsets).
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            seen.append((msg.partition(), msg.offset()))
    assert sorted(seen) == sorted(want), f"{sorted(seen)} != {sorted(want)}"
    assert min(o for p, o in seen if p == 0) == 3 and min(o for p, o in seen if p == 1) == 7
    ok("alter")
    return c


def delete(admin, topic, group, last):
    expect_error(admin.delete_consumer_groups([group])[group], [KafkaError.NON_EMPTY_GROUP],
                 "delete while a member is in the group")
    last.close()
    admin.delete_consumer_groups([group])[group].result(timeout=TIMEOUT)
    got = group_offsets(admin, group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    assert got == {p: (-1001, None) for p in range(PARTITIONS)}, got
    assert group not in listed(admin)
    d = describe(admin, group)
    assert d.state == ConsumerGroupState.DEAD and d.members == [], (d.state, d.members)
    expect_error(admin.delete_consumer_groups([group])[group], [KafkaError.GROUP_ID_NOT_FOUND],
                 "second delete")
    ok("delete")


def main():
    bootstrap, topic, group = sys.argv[1:4]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    setup(admin, bootstrap, topic)
    consumers = stable(admin, bootstrap, topic, group)
    offsets(admin, topic, group, consumers)
    busy(admin, topic, group)
    empty(admin, group, consumers)
    last = alter(admin, bootstrap, topic, group)
    delete(admin, topic, group, last)
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
