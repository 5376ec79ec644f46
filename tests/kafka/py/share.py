"""Share groups (KIP-932) with confluent-kafka's ShareConsumer (librdkafka 2.15+, preview API)
against sluice, run by cli/tests/kafka_python_share.rs.

Every line on stdout is one JSON object (an event, with its wall-clock time in seconds as "t").

  share.py produce BOOTSTRAP TOPIC N [--partitions P] [--replicas R]
      Creates TOPIC (AdminClient, replication factor R, default 1; an existing one is kept) and produces N records `v-<i>` with
      an idempotent producer, acks=all. Events: {"ev": "produce_done", "n": N, "errors": E}

  share.py consume BOOTSTRAP TOPIC GROUP NAME [--explicit] [--mixed] [--commit-every K]
                   [--idle-s S] [--limit-s L] [--close-unacked-after K] [--slow-ms D]
      One share consumer. It stops once no record came for S seconds (default 3) or after L
      seconds (default 60), and closes. Implicit mode by default (records accepted at the next
      poll). With --explicit each record is acknowledged: ACCEPT, or with --mixed REJECT when
      offset % 5 == 0 and RELEASE at its first delivery when offset % 5 == 1; a commit_sync
      runs every K records (default 20) and when idle. With --close-unacked-after K it closes
      without acknowledging anything once it holds K records (librdkafka, as against Apache
      Kafka, then accepts the records the application was given before the last one and
      releases the rest). With --slow-ms it sleeps D ms after each record. Events:
        {"ev": "rec", "c": NAME, "p": P, "o": OFFSET, "n": DELIVERY_COUNT, "v": VALUE}
        {"ev": "confirmed", "c": NAME, "p": P, "o": [OFFSETS]}   accepts the broker confirmed
        {"ev": "ack_error", "c": NAME, "error": TEXT}
        {"ev": "violation", "c": NAME, "p": P, "o": OFFSET}      a record delivered again after
                                                               its accept was confirmed
        {"ev": "closed", "c": NAME}
"""

import argparse
import json
import time

from confluent_kafka import AcknowledgeType, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic


def emit(**event):
    event["t"] = round(time.time(), 3)
    print(json.dumps(event), flush=True)


def produce(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    # A cluster's nodes that just started may still be electing their controller.
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(timeout=10)
        if md.controller_id in md.brokers:
            break
        time.sleep(0.2)
    fut = admin.create_topics([NewTopic(a.topic, a.partitions, a.replicas)])[a.topic]
    try:
        fut.result(30)
    except Exception as e:  # an existing topic is kept
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            raise
    errors = []
    p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(a.n):
        p.produce(a.topic, value=f"v-{i}".encode(), on_delivery=lambda e, m: e and errors.append(str(e)))
        if i % 1000 == 999:
            p.flush(30)
    p.flush(30)
    emit(ev="produce_done", n=a.n, errors=len(errors))


def consume(a):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "share.acknowledgement.mode": "explicit" if a.explicit else "implicit",
    }
    c = ShareConsumer(conf)
    accepted_pending = {}  # (p, o) -> True, accepts sent and not yet confirmed
    confirmed = set()

    def on_commit(offsets, exception):
        if exception is not None:
            emit(ev="ack_error", c=a.name, error=str(exception))
            return
        for tp, offs in offsets.items():
            ok = sorted(o for o in offs if (tp.partition, o) in accepted_pending)
            for o in ok:
                confirmed.add((tp.partition, o))
                accepted_pending.pop((tp.partition, o), None)
            if ok:
                emit(ev="confirmed", c=a.name, p=tp.partition, o=ok)

    if a.explicit:
        c.set_acknowledgement_commit_callback(on_commit)
    c.subscribe([a.topic])
    start = last = time.time()
    held = 0
    since_commit = 0
    while time.time() - last < a.idle_s and time.time() - start < a.limit_s:
        for m in list(c.poll(0.5)):
            if m.error():
                emit(ev="poll_error", c=a.name, error=str(m.error()))
                continue
            last = time.time()
            p, o, n = m.partition(), m.offset(), m.delivery_count()
            if (p, o) in confirmed:
                emit(ev="violation", c=a.name, p=p, o=o)
            emit(ev="rec", c=a.name, p=p, o=o, n=n, v=m.value().decode())
            held += 1
            if a.slow_ms:
                time.sleep(a.slow_ms / 1000)
            if a.close_unacked_after and held >= a.close_unacked_after:
                c.close()
                emit(ev="closed", c=a.name)
                return
            if not a.explicit:
                continue
            t = AcknowledgeType.ACCEPT
            if a.mixed and o % 5 == 0:
                t = AcknowledgeType.REJECT
            elif a.mixed and o % 5 == 1 and n == 1:
                t = AcknowledgeType.RELEASE
            if t == AcknowledgeType.ACCEPT:
                accepted_pending[(p, o)] = True
            c.acknowledge(m, t)
            since_commit += 1
            if since_commit >= a.commit_every:
                c.commit_sync()
                since_commit = 0
        if a.explicit and since_commit:
            c.commit_sync()
            since_commit = 0
    c.close()
    emit(ev="closed", c=a.name)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("n", type=int)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--replicas", type=int, default=1)
    c = sub.add_parser("consume")
    c.add_argument("bootstrap")
    c.add_argument("topic")
    c.add_argument("group")
    c.add_argument("name")
    c.add_argument("--explicit", action="store_true")
    c.add_argument("--mixed", action="store_true")
    c.add_argument("--commit-every", type=int, default=20)
    c.add_argument("--idle-s", type=float, default=3.0)
    c.add_argument("--limit-s", type=float, default=60.0)
    c.add_argument("--close-unacked-after", type=int, default=0)
    c.add_argument("--slow-ms", type=float, default=0)
    a = ap.parse_args()
    produce(a) if a.cmd == "produce" else consume(a)


if __name__ == "__main__":
    main()
