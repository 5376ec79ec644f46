#!/usr/bin/env bash
# Share groups (KIP-932): delivery with an acknowledgement per record, sluice's Kafka share
# groups beside its native queue consumer and beside Apache Kafka's share groups, on this
# machine, in one run, on loopback only (issue: at least 70% of native, and ahead of Kafka).
#
#   benches/kafka/share.sh [OUT]        (OUT default benches/kafka/results/share-<date>)
#
# Builds sluice (release) and installs Kafka's jars (tests/kafka/install.sh java), then, with
# COUNT records of 100 bytes already written (nothing is published while they are consumed):
#   1. sluice serve (fsync always): `sluice bench --mode queue --read-after` (one native
#      consumer, prefetch 1000, every message acked, acks durable before their reply), then
#      the same over the Kafka protocol (`--protocol kafka`: one share consumer of a topic's
#      share group on the bench's minimal client, up to 1000 records a ShareFetch, each
#      ShareFetch accepting every record of the one before, durably before it is answered);
#   2. Kafka's ProducerPerformance (acks=all) then ShareConsumerPerformance (one
#      KafkaShareConsumer, implicit acknowledgement: every record accepted, in the next
#      ShareFetch) against sluice's Kafka listener, twice, each a new share group;
#   3. the same two tools against Apache Kafka 4.x (KRaft, one node, its defaults), its share
#      groups set to start at the earliest offset.
# Writes OUT/results.jsonl and OUT/results.md.
#
# Environment: KBENCH_DATA (data directories, default /work/bench-kafka; a real disk, not
# tmpfs), KBENCH_SCALE (multiplies the count, default 1; 0.05 for a smoke run).
# Measure on a quiet machine: a compile beside it moves disk figures 3-10x.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/results/share-$(date -u +%Y%m%dT%H%M%SZ)}
data=${KBENCH_DATA:-/work/bench-kafka}
scale=${KBENCH_SCALE:-1}
mkdir -p "$out" "$data"
out=$(cd "$out" && pwd)
rows=$out/results.jsonl
: >"$rows"
log() { printf '\n== %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fstype=$(df --output=fstype "$data" | tail -1 | tr -d ' ')
[ "$fstype" != tmpfs ] || { echo "error: $data is on tmpfs; set KBENCH_DATA to a real disk" >&2; exit 1; }
count=$(python3 -c "print(max(1000, int(1000000 * $scale)))")
size=100

log "building sluice; installing Kafka's jars"
(cd "$root" && cargo build --release --quiet -p sluice-cli)
bash "$root/tests/kafka/install.sh" java
sluice=$root/target/release/sluice
cp="$root/tests/kafka/.lib/*"
java_tool() { java -Xmx1g -cp "$cp" "$@"; }

producer_perf() {
  java_tool org.apache.kafka.tools.ProducerPerformance --topic "$2" --num-records "$count" \
    --record-size "$size" --throughput -1 --producer-props "bootstrap.servers=$1" acks=all 2>&1 \
    | grep 'records sent' | tail -1 >&2
}

# share_perf BROKER BOOTSTRAP TOPIC GROUP RUN: ShareConsumerPerformance, one consumer.
share_perf() {
  local broker=$1 boot=$2 topic=$3 group=$4 run=$5 line
  line=$(java_tool org.apache.kafka.tools.ShareConsumerPerformance --bootstrap-server "$boot" \
    --topic "$topic" --group "$group" --num-records "$count" --timeout 60000 2>&1 | tail -1)
  echo "$broker share-consumer-perf ($run): $line" >&2
  # start, end, MB, MB/s, msgs/s, msgs, fetch ms
  python3 - "$broker" "$line" "$run" >>"$rows" <<'PY'
import json, sys
broker, line, run = sys.argv[1:4]
f = [x.strip() for x in line.split(",")]
print(json.dumps({"broker": broker, "client": "kafka ShareConsumerPerformance (implicit acks)",
  "op": "share consume, " + run, "message_bytes": 100, "msgs_per_s": round(float(f[4])),
  "mb_per_s": round(float(f[3]), 1), "messages": int(f[5])}))
PY
}

# ---- sluice ------------------------------------------------------------------------------
sport=$(free_port); skport=$(free_port)
rm -rf "$data/sluice-share"
"$sluice" serve --data-dir "$data/sluice-share" --listen "127.0.0.1:$sport" \
  --kafka-listen "127.0.0.1:$skport" --http-listen 127.0.0.1:0 >"$out/sluice.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null || true; bash "$root/tests/kafka/kafka-broker.sh" stop "$data/kafka-share" || true' EXIT
for _ in $(seq 50); do grep -q 'kafka listening on' "$out/sluice.log" && break; sleep 0.1; done
# bench_queue PROTOCOL: `sluice bench --mode queue --read-after`, one consumer.
bench_queue() {
  log "sluice bench --mode queue --protocol $1, $count messages"
  "$sluice" bench --addr "127.0.0.1:$sport" --kafka-addr "127.0.0.1:$skport" --protocol "$1" \
    --mode queue --read-after --consumers 1 --credit 1000 --message-bytes "$size" \
    --messages "$count" --batch 100 --inflight 8 --json 2>/dev/null \
    | grep '"type":"bench"' | python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
proto = r["protocol"]
what = "native queue consumer" if proto == "native" else "Kafka share consumer, share group on a topic"
print(json.dumps({"broker": "sluice", "client": "sluice bench --mode queue --protocol " + proto,
  "op": what + ", ack per message", "message_bytes": r["message_bytes"],
  "msgs_per_s": round(r["delivery"]["msgs_per_s"]), "mb_per_s": round(r["delivery"]["mb_per_s"], 1),
  "check": r["check"]}))' | tee -a "$rows" >&2
}
bench_queue native
bench_queue kafka
log "Kafka's perf tools against sluice"
producer_perf "127.0.0.1:$skport" share-bench
share_perf sluice "127.0.0.1:$skport" share-bench sb1 "first read"
share_perf sluice "127.0.0.1:$skport" share-bench sb2 "second read"
kill $spid; wait $spid 2>/dev/null || true

# ---- Apache Kafka ------------------------------------------------------------------------
kport=$(free_port)
rm -rf "$data/kafka-share"
log "starting Apache Kafka"
bash "$root/tests/kafka/kafka-broker.sh" start "$data/kafka-share" "$kport" >/dev/null
kboot="127.0.0.1:$kport"
java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$kboot" --create \
  --topic share-bench --partitions 1 --replication-factor 1 >/dev/null
for g in sb1 sb2; do
  java_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "$kboot" --alter \
    --entity-type groups --entity-name "$g" --add-config share.auto.offset.reset=earliest >/dev/null
done
producer_perf "$kboot" share-bench
share_perf "kafka" "$kboot" share-bench sb1 "first read"
share_perf "kafka" "$kboot" share-bench sb2 "second read"

python3 - "$rows" >"$out/results.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| broker | client | operation | message | msgs/s | MB/s |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['broker']} | {r['client']} | {r['op']} | {r['message_bytes']} B | {r['msgs_per_s']:,} | {r['mb_per_s']} |")
PY
cat "$out/results.md"
