#!/usr/bin/env bash
# Publish throughput of three local nodes (replication factor 3) beside one node, same binary,
# same flags, one after the other: the figures of docs/benchmarks.md, "Replication".
#
#   benches/cluster.sh [BATCH] [MESSAGES]      (defaults: 100 400000)
#   BENCH_ARGS="--mode queue --consumers 2" benches/cluster.sh 100 100000   (a queue: publish,
#                                                deliver and ack, each replicated)
#   SERVE_ARGS="--raft-heartbeat-ms 100" benches/cluster.sh ...   (more flags for the nodes)
#   BOTH_ARGS="--config limits.toml" benches/cluster.sh ...   (flags for the single node too)
#
# After the three-node run it prints how many AppendEntries were not answered within the
# heartbeat interval (each is sent again from scratch: see docs/replication.md, "Timing").
#
# Needs a release build (cargo build --release -p sluice-cli) and a quiet machine: a compile
# beside it moves disk figures several times over.
set -euo pipefail
BATCH=${1:-100}
MESSAGES=${2:-400000}
BIN=${SLUICE_BIN:-$(dirname "$0")/../target/release/sluice}
# shellcheck source=benches/cluster_lib.sh
source "$(dirname "$0")/cluster_lib.sh"

bench() { # addr
    "$BIN" bench --addr "$1" --producers ${PRODUCERS:-4} --messages "$MESSAGES" --batch "$BATCH" \
        --message-bytes 100 ${BENCH_ARGS:-}
}

echo "== one node, batch $BATCH, $MESSAGES messages"
"$BIN" serve --listen 127.0.0.1:17450 --kafka-listen off --http-listen off \
    --data-dir "$WORK/single" ${BOTH_ARGS:-} > "$WORK/single.log" 2>&1 &
PIDS+=($!)
wait_listening "$WORK/single.log"
bench 127.0.0.1:17450
kill "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null || true
PIDS=()

echo "== three nodes, replication factor 3, batch $BATCH, $MESSAGES messages"
CLUSTER=1@127.0.0.1:17561,2@127.0.0.1:17562,3@127.0.0.1:17563
for n in 1 2 3; do
    RUST_LOG=error "$BIN" serve --listen "127.0.0.1:1745$n" --kafka-listen off \
        --http-listen off --node-id "$n" --cluster "$CLUSTER" \
        --data-dir "$WORK/node-$n" ${BOTH_ARGS:-} ${SERVE_ARGS:-} > "$WORK/node-$n.log" 2>&1 &
    PIDS+=($!)
done
for n in 1 2 3; do wait_listening "$WORK/node-$n.log"; done
# The bench creates its topic through the node it is given (which hands it to the metadata's
# leader, which then leads the new partition) and publishes there: a node that does not lead
# the partition answers NotLeader, as does every node while the metadata's first leader is
# elected, so go round the nodes.
# In queue mode the consumers must reach the queue's leader: every node is given, and the
# client opens each consumer on the node that serves it.
for _ in $(seq 1 10); do
    for n in 1 2 3; do
        addr="127.0.0.1:1745$n"
        if [[ "${BENCH_ARGS:-}" == *queue* ]]; then
            addr="$addr,127.0.0.1:17451,127.0.0.1:17452,127.0.0.1:17453"
        fi
        if bench "$addr" 2> "$WORK/bench.err"; then
            echo "appends not answered within the heartbeat interval: $(cat "$WORK"/node-*.log |
                grep -c 'timeout after .* AppendEntries' || true)"
            exit 0
        fi
        grep -q NotLeader "$WORK/bench.err" || { cat "$WORK/bench.err" >&2; exit 1; }
    done
    sleep 0.5
done
cat "$WORK/bench.err" >&2
exit 1
