#!/usr/bin/env bash
# sluice's Kafka API beside its native protocol and beside Apache Kafka, on this machine, in one
# run, on loopback only (issue: Kafka-API figures at least 80% of native; sluice at least 2x
# Kafka at equal durability, and ahead of Kafka's unsynced default while sluice syncs).
#
#   benches/kafka/run.sh [OUT]        (OUT default benches/kafka/results/<date>)
#
# Builds sluice (release) and installs Kafka's jars (tests/kafka/install.sh java), then:
#   1. sluice serve (fsync always, its default): `sluice bench` over the native protocol and
#      over the Kafka protocol (acks=all, batches of 100, 8 in flight), 100 B and 1000 B,
#      publish, then consumption from the page cache (`--warm-cache`: sluice writes with
#      direct I/O, so what it just wrote is read once first);
#   2. Kafka's own ProducerPerformance (acks=all, its default batching: linger.ms 5, batch.size
#      16 KiB, idempotent) and ConsumerPerformance against sluice's Kafka listener, the consumer
#      twice: right after the produce (sluice reads from the disk, Kafka from its page cache),
#      then again (both from the page cache);
#   3. the same two tools against Apache Kafka 4.x (KRaft, one node): its default (no fsync
#      before the ack) and a topic with flush.messages=1 (an fsync per message, equal
#      durability with sluice's default).
# Writes OUT/results.jsonl (one row per run) and OUT/results.md (the table).
#
# Environment: KBENCH_DATA (data directories, default /work/bench-kafka; a real disk, not
# tmpfs), KBENCH_SCALE (multiplies message counts, default 1; 0.05 for a smoke run).
# Measure on a quiet machine: a compile beside it moves disk figures 3-10x.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)}
data=${KBENCH_DATA:-/work/bench-kafka}
scale=${KBENCH_SCALE:-1}
mkdir -p "$out" "$data"
out=$(cd "$out" && pwd)
rows=$out/results.jsonl
: >"$rows"
log() { printf '\n== %s\n' "$*" >&2; }
n() { python3 -c "import sys; print(max(1000, int($1 * $scale)))"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fstype=$(df --output=fstype "$data" | tail -1 | tr -d ' ')
[ "$fstype" != tmpfs ] || { echo "error: $data is on tmpfs; set KBENCH_DATA to a real disk" >&2; exit 1; }

log "building sluice; installing Kafka's jars"
(cd "$root" && cargo build --release --quiet -p sluice-cli)
bash "$root/tests/kafka/install.sh" java
sluice=$root/target/release/sluice
cp="$root/tests/kafka/.lib/*"
java_tool() { java -Xmx1g -cp "$cp" "$@"; }

# row BROKER CLIENT OP SIZE MSGS_PER_S MB_PER_S EXTRA_JSON
row() {
  python3 - "$@" >>"$rows" <<'PY'
import json, sys
b, c, op, size, mps, mbs, extra = sys.argv[1:8]
r = {"broker": b, "client": c, "op": op, "message_bytes": int(size),
     "msgs_per_s": round(float(mps)), "mb_per_s": round(float(mbs), 1)}
r.update(json.loads(extra))
print(json.dumps(r))
PY
}

# producer_perf BROKER BOOTSTRAP TOPIC SIZE COUNT: Kafka's ProducerPerformance, acks=all.
producer_perf() {
  local broker=$1 boot=$2 topic=$3 size=$4 count=$5
  local line
  line=$(java_tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" \
    --num-records "$count" --record-size "$size" --throughput -1 \
    --producer-props "bootstrap.servers=$boot" acks=all 2>&1 | grep 'records sent' | tail -1)
  echo "$broker producer-perf ${size}B: $line" >&2
  # "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, p50 ms 50th, ..."
  python3 - "$broker" "$size" "$line" >>"$rows" <<'PY'
import json, re, sys
broker, size, line = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th", line)
print(json.dumps({"broker": broker, "client": "kafka ProducerPerformance", "op": "produce acks=all",
  "message_bytes": size, "msgs_per_s": round(float(m[1])), "mb_per_s": round(float(m[1]) * size / 1e6, 1),
  "latency_ms": {"avg": float(m[3]), "p50": int(m[5]), "p99": int(m[7]), "max": float(m[4])}}))
PY
}

# consumer_perf BROKER BOOTSTRAP TOPIC SIZE COUNT OP: Kafka's ConsumerPerformance from the start
# (a new group each time).
consumer_perf() {
  local broker=$1 boot=$2 topic=$3 size=$4 count=$5 op=$6
  local line
  line=$(java_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$boot" \
    --topic "$topic" --messages "$count" --timeout 60000 2>&1 | tail -1)
  echo "$broker consumer-perf ${size}B: $line" >&2
  # start, end, MB, MB/s, msgs, msgs/s, rebalance ms, fetch ms, fetch MB/s, fetch msgs/s
  python3 - "$broker" "$size" "$line" "$op" >>"$rows" <<'PY'
import json, sys
broker, size, line, op = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
f = [x.strip() for x in line.split(",")]
print(json.dumps({"broker": broker, "client": "kafka ConsumerPerformance", "op": op,
  "message_bytes": size, "msgs_per_s": round(float(f[9])), "mb_per_s": round(float(f[8]), 1),
  "messages": int(f[4])}))
PY
}

# sluice_bench PROTOCOL SIZE COUNT: `sluice bench` against the running server.
sluice_bench() {
  local proto=$1 size=$2 count=$3
  "$sluice" bench --addr "127.0.0.1:$sport" --kafka-addr "127.0.0.1:$skport" --protocol "$proto" \
    --message-bytes "$size" --messages "$count" --batch 100 --inflight 8 --read-after --warm-cache --json \
    2>/dev/null | grep '"type":"bench"' | python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
for op, k in (("produce acks=all", "publish"), ("consume (page cache)", "delivery")):
    print(json.dumps({"broker": "sluice", "client": "sluice bench --protocol " + r["protocol"], "op": op,
      "message_bytes": r["message_bytes"], "msgs_per_s": round(r[k]["msgs_per_s"]),
      "mb_per_s": round(r[k]["mb_per_s"], 1), "check": r["check"]}))' | tee -a "$rows" >&2
}

# ---- sluice ------------------------------------------------------------------------------
sport=$(free_port); skport=$(free_port)
rm -rf "$data/sluice"
"$sluice" serve --data-dir "$data/sluice" --listen "127.0.0.1:$sport" --kafka-listen "127.0.0.1:$skport" --http-listen 127.0.0.1:0 \
  >"$out/sluice.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null || true; bash "$root/tests/kafka/kafka-broker.sh" stop "$data/kafka" || true' EXIT
for _ in $(seq 50); do grep -q 'kafka listening on' "$out/sluice.log" && break; sleep 0.1; done
for size in 100 1000; do
  count=$(n $((size == 100 ? 2000000 : 500000)))
  log "sluice bench, ${size} B, $count messages"
  sluice_bench native "$size" "$count"
  sluice_bench kafka "$size" "$count"
  log "Kafka's perf tools against sluice, ${size} B"
  producer_perf sluice "127.0.0.1:$skport" "perf-$size" "$size" "$count"
  consumer_perf sluice "127.0.0.1:$skport" "perf-$size" "$size" "$count" "consume after produce"
  consumer_perf sluice "127.0.0.1:$skport" "perf-$size" "$size" "$count" "consume (page cache)"
done
kill $spid; wait $spid 2>/dev/null || true

# ---- Apache Kafka ------------------------------------------------------------------------
kport=$(free_port)
rm -rf "$data/kafka"
log "starting Apache Kafka"
bash "$root/tests/kafka/kafka-broker.sh" start "$data/kafka" "$kport" >/dev/null
kboot="127.0.0.1:$kport"
for size in 100 1000; do
  count=$(n $((size == 100 ? 2000000 : 500000)))
  java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$kboot" --create \
    --topic "perf-$size" --partitions 1 --replication-factor 1 >/dev/null
  java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$kboot" --create \
    --topic "perf-flush-$size" --partitions 1 --replication-factor 1 \
    --config flush.messages=1 >/dev/null
  log "Kafka's perf tools against Apache Kafka, ${size} B (default, then flush.messages=1)"
  producer_perf "kafka (no fsync)" "$kboot" "perf-$size" "$size" "$count"
  consumer_perf "kafka (no fsync)" "$kboot" "perf-$size" "$size" "$count" "consume after produce"
  consumer_perf "kafka (no fsync)" "$kboot" "perf-$size" "$size" "$count" "consume (page cache)"
  # An fsync per message is slow: a tenth of the messages.
  producer_perf "kafka flush.messages=1" "$kboot" "perf-flush-$size" "$size" "$(n $((count / 10)))"
done

python3 - "$rows" >"$out/results.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| broker | client | operation | message | msgs/s | MB/s |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['broker']} | {r['client']} | {r['op']} | {r['message_bytes']} B | {r['msgs_per_s']:,} | {r['mb_per_s']} |")
PY
cat "$out/results.md"
