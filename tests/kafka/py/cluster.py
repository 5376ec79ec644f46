"""confluent-kafka (librdkafka) against a three-node sluice cluster, run by
cli/tests/cluster_kafka.rs.

  cluster.py BOOTSTRAP PIDS

BOOTSTRAP is every node's Kafka address, comma-separated; PIDS maps node ids to their process
ids ("1=123,2=124,3=125"), so the script can SIGKILL the node that leads partition 0 (which is
also the group coordinator: the node the topic was created through leads both).

Steps, each printing "ok <step>" when it passed:
  metadata   three brokers; the topic's three partitions each led by a different node, every
             node a replica; the controller is one of them
  produce    acks=all: every delivery report succeeds
  group      a consumer of group g1 reads the first 150 records and commits their offsets
  failover   the leader of partition 0 is SIGKILLed while a producer keeps producing; records
             whose delivery report succeeded are "confirmed"
  committed  a new member of g1 (through the survivors) is given the offsets committed before
             the kill, and goes on from there
  nothing-lost  a consumer of a new group reads every partition from the start on the
             survivors: every confirmed record is there, once per (partition, offset)
Then "all checks passed".
"""

import os
import signal
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "orders"
PARTITIONS = 3
TIMEOUT = 30


def ok(step):
    print(f"ok {step}", flush=True)


def fail(why):
    print(f"FAILED: {why}", flush=True)
    sys.exit(1)


def metadata(admin):
    deadline = time.time() + TIMEOUT
    while True:
        md = admin.list_topics(TOPIC, timeout=10)
        t = md.topics.get(TOPIC)
        leaders = [] if t is None or t.error else [p.leader for p in t.partitions.values()]
        if len(md.brokers) == 3 and len(leaders) == PARTITIONS and -1 not in leaders:
            break
        if time.time() > deadline:
            fail(f"metadata: brokers {sorted(md.brokers)}, leaders {leaders}")
        time.sleep(0.2)
    if sorted(leaders) != sorted(md.brokers):
        fail(f"leaders {leaders} are not one per node {sorted(md.brokers)}")
    for p in t.partitions.values():
        if sorted(p.replicas) != sorted(md.brokers):
            fail(f"partition {p.id} replicas {p.replicas}")
    if md.controller_id not in md.brokers:
        fail(f"controller {md.controller_id}")
    return {p.id: p.leader for p in t.partitions.values()}, md.controller_id


def producer(bootstrap):
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                     "message.timeout.ms": 60000, "retry.backoff.ms": 100,
                     "topic.metadata.refresh.interval.ms": 1000})


# When partition 0 first confirmed a record after its leader was killed (seconds since epoch).
# Only records produced after the kill count ("from": the first index produced after it).
KILL = {"at": None, "from": None, "next": 0, "first_confirm_p0": None}


def produce(p, start, count, confirmed, errors):
    def report(err, msg):
        if err is None:
            confirmed[msg.value().decode()] = (msg.partition(), msg.offset())
            now = time.time()
            if (KILL["from"] is not None and msg.partition() == 0
                    and int(msg.value()[2:]) >= KILL["from"]
                    and KILL["first_confirm_p0"] is None):
                KILL["first_confirm_p0"] = now
        else:
            errors.append(str(err))
    for i in range(start, start + count):
        KILL["next"] = i + 1
        while True:
            try:
                p.produce(TOPIC, key=f"k-{i}", value=f"v-{i}", on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)


def consumer(bootstrap, group, **extra):
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
            "topic.metadata.refresh.interval.ms": 1000}
    conf.update(extra)
    return Consumer(conf)


def read(c, want, limit=TIMEOUT):
    """Up to `want` records, within `limit` seconds."""
    out = []
    deadline = time.time() + limit
    while len(out) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        out.append(m)
    return out


def main():
    bootstrap, pids = sys.argv[1], dict(x.split("=") for x in sys.argv[2].split(","))
    admin = AdminClient({"bootstrap.servers": bootstrap,
                         "topic.metadata.refresh.interval.ms": 1000})
    # Nodes that just started may still be electing the metadata's leader (the controller).
    deadline = time.time() + TIMEOUT
    while True:
        md = admin.list_topics(timeout=10)
        if len(md.brokers) == 3 and md.controller_id in md.brokers:
            break
        if time.time() > deadline:
            fail(f"no controller: brokers {sorted(md.brokers)}, controller {md.controller_id}")
        time.sleep(0.2)
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, -1)])[TOPIC].result(timeout=TIMEOUT)
    leaders, controller = metadata(admin)
    ok("metadata")

    confirmed, errors = {}, []
    p = producer(bootstrap)
    produce(p, 0, 300, confirmed, errors)
    if p.flush(TIMEOUT) != 0 or errors or len(confirmed) != 300:
        fail(f"produce: {len(confirmed)} confirmed, errors {errors[:3]}")
    ok("produce")

    c = consumer(bootstrap, "g1")
    c.subscribe([TOPIC])
    got = read(c, 150)
    if len(got) < 150:
        fail(f"group: read {len(got)} of 150")
    ends = {}
    for m in got:
        ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset() + 1)
    commit = [TopicPartition(TOPIC, part, off) for part, off in sorted(ends.items())]
    c.commit(offsets=commit, asynchronous=False)
    c.close()
    ok("group")

    # The leader of partition 0 dies while a producer goes on.
    victim = leaders[0]
    stop = threading.Event()

    def keep_producing():
        i = 300
        while not stop.is_set():
            produce(p, i, 20, confirmed, errors)
            i += 20
            time.sleep(0.02)
    t = threading.Thread(target=keep_producing)
    t.start()
    time.sleep(1.0)
    os.kill(int(pids[str(victim)]), signal.SIGKILL)
    killed_at = time.time()
    KILL["at"], KILL["from"] = killed_at, KILL["next"]
    time.sleep(4.0)
    stop.set()
    t.join()
    left = p.flush(TIMEOUT * 2)
    after = [v for v in confirmed if int(v[2:]) >= 300]
    if left != 0:
        fail(f"failover: {left} records never answered")
    if len(after) < 100:
        fail(f"failover: only {len(after)} records confirmed around the kill; errors {errors[:3]}")
    first = KILL["first_confirm_p0"]
    took = "none" if first is None else f"{first - killed_at:.2f} s"
    print(f"failover: killed node {victim} (controller was {controller}); "
          f"{len(confirmed)} confirmed in all, {len(errors)} delivery errors; "
          f"partition 0's first confirm after the kill: {took}", flush=True)
    ok("failover")

    survivors = bootstrap  # librdkafka skips the dead node
    c = consumer(survivors, "g1")
    c.subscribe([TOPIC])
    first = {}
    deadline = time.time() + TIMEOUT
    while len(first) < PARTITIONS and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        first.setdefault(m.partition(), m.offset())
    c.close()
    for part, off in sorted(ends.items()):
        if first.get(part) != off:
            fail(f"committed: partition {part} resumed at {first.get(part)}, committed {off}")
    ok("committed")

    c = consumer(survivors, "g2")
    c.assign([TopicPartition(TOPIC, part, 0) for part in range(PARTITIONS)])
    seen, at = {}, {}
    deadline = time.time() + TIMEOUT
    while len(seen) < len(confirmed) and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        where, value = (m.partition(), m.offset()), m.value().decode()
        if at.setdefault(where, value) != value:
            fail(f"nothing-lost: two records at {where}")
        seen.setdefault(value, where)
    c.close()
    missing = [v for v in confirmed if v not in seen]
    if missing:
        fail(f"nothing-lost: {len(missing)} confirmed records missing, e.g. {missing[:5]}")
    print(f"read back {len(seen)} records ({len(confirmed)} confirmed); "
          f"{time.time() - killed_at:.1f} s since the kill", flush=True)
    ok("nothing-lost")
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
