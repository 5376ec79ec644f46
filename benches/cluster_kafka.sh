#!/usr/bin/env bash
# Kafka's own ProducerPerformance (acks=all and the 4.x defaults: idempotent, linger.ms 5,
# batch.size 16 KiB, 5 in flight) against one sluice node and against three local nodes
# (replication factor 3), same binary, same flags, one after the other: the Kafka figures of
# docs/benchmarks.md, "Replication". A topic of PARTITIONS partitions (3: on the cluster, one
# led by each node) created with Kafka's TopicCommand.
#
#   benches/cluster_kafka.sh [SIZE] [COUNT]      (defaults: 100 1000000)
#
# Needs a release build (cargo build --release -p sluice-cli), Kafka's jars
# (tests/kafka/install.sh java) and a quiet machine: a compile beside it moves disk figures
# several times over.
set -euo pipefail
SIZE=${1:-100}
COUNT=${2:-1000000}
PARTITIONS=${PARTITIONS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SLUICE_BIN:-$root/target/release/sluice}
cp="$root/tests/kafka/.lib/*"
# shellcheck source=benches/cluster_lib.sh
source "$(dirname "$0")/cluster_lib.sh"

java_tool() { java -Xmx1g -cp "$cp" "$@"; }

perf() { # bootstrap
    # Nodes that just started may still elect the metadata's leader: retry the creation.
    for _ in $(seq 1 20); do
        java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" --create \
            --topic perf --partitions "$PARTITIONS" >/dev/null 2>"$WORK/topic.err" && break
        sleep 0.5
    done
    java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" --describe \
        --topic perf | grep -o 'Partition: [0-9]*.*Leader: [0-9-]*' || true
    java_tool org.apache.kafka.tools.ProducerPerformance --topic perf --num-records "$COUNT" \
        --record-size "$SIZE" --throughput -1 --producer-props "bootstrap.servers=$1" acks=all \
        2>&1 | grep 'records sent' | tail -1
}

echo "== one node, $PARTITIONS partitions, $COUNT records of $SIZE B"
"$BIN" serve --listen 127.0.0.1:17450 --kafka-listen 127.0.0.1:19190 --http-listen off \
    --data-dir "$WORK/single" > "$WORK/single.log" 2>&1 &
PIDS+=($!)
wait_listening "$WORK/single.log" "kafka listening on "
perf 127.0.0.1:19190
kill "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null || true
PIDS=()

echo "== three nodes, replication factor 3, $PARTITIONS partitions, $COUNT records of $SIZE B"
CLUSTER=1@127.0.0.1:17561,2@127.0.0.1:17562,3@127.0.0.1:17563
for n in 1 2 3; do
    RUST_LOG=error "$BIN" serve --listen "127.0.0.1:1745$n" --kafka-listen "127.0.0.1:1919$n" \
        --http-listen off --node-id "$n" --cluster "$CLUSTER" \
        --data-dir "$WORK/node-$n" > "$WORK/node-$n.log" 2>&1 &
    PIDS+=($!)
done
for n in 1 2 3; do wait_listening "$WORK/node-$n.log" "kafka listening on "; done
perf 127.0.0.1:19191,127.0.0.1:19192,127.0.0.1:19193
