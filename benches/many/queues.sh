#!/usr/bin/env bash
# Many queues on one node, under an open-file limit of 1024 (soft and hard):
#   bash benches/many/queues.sh OUT_DIR [QUEUES]
# creates QUEUES queues (default 100000) with one `sluice queue create --from-file`, reports
# the creation rate, the server's memory and open files, the time to serve after a clean stop
# and after kill -9, then sends one message through each queue (sluice bench --mode
# many-queues on the existing queues, 100 at a time) and reports the same figures again.
# Each figure is one line of OUT_DIR/results.txt. Run it on a quiet machine.
set -euo pipefail
OUT=$(realpath -m "$1"); N=${2:-100000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/target/release/sluice"
mkdir -p "$OUT"; rm -rf "$OUT/data"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p sluice-cli)
ulimit -n 1024
say() { echo "$*" | tee -a "$OUT/results.txt"; }
PID=""; ADDR=""; T=""
start() { # start the server; sets PID, ADDR and T (seconds until a request is answered)
  local t0; t0=$(date +%s.%N)
  "$BIN" serve --data-dir "$OUT/data" --listen 127.0.0.1:0 --kafka-listen off --http-listen off \
    > "$OUT/serve.out" 2>> "$OUT/serve.err" &
  PID=$!
  until grep -q "^listening on" "$OUT/serve.out" 2>/dev/null; do sleep 0.01; done
  ADDR=$(sed -n 's/^listening on //p' "$OUT/serve.out")
  "$BIN" --addr "$ADDR" topic list > /dev/null
  T=$(echo "$(date +%s.%N) - $t0" | bc)
  : > "$OUT/serve.out"
}
figures() { # memory and open files of the server
  local rss fds
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
  fds=$(ls "/proc/$PID/fd" | wc -l)
  say "$1: rss ${rss} KiB ($((rss * 1024 / N)) B per queue), open files $fds"
}
: > "$OUT/results.txt"
say "queues $N, ulimit -n $(ulimit -n) (hard $(ulimit -Hn)), $(nproc) cpus, commit $(cd "$ROOT" && git rev-parse --short HEAD)"
start; say "first start: serving after $T s"
t0=$(date +%s.%N)
seq 0 $((N - 1)) | sed 's/^/q-/' | "$BIN" --addr "$ADDR" queue create --from-file - > /dev/null
t=$(echo "$(date +%s.%N) - $t0" | bc)
say "created $N queues in $t s: $(echo "$N / $t" | bc) queues/s"
figures "after creation"
sleep 3; figures "3 s later"
kill -TERM "$PID"; wait "$PID" || true
start; say "clean restart: serving after $T s"
figures "after a clean restart"
kill -KILL "$PID"; wait "$PID" 2>/dev/null || true
start; say "restart after kill -9: serving after $T s"
figures "after a restart after kill -9"
sleep 5; figures "5 s later (background recovery running)"
"$BIN" --addr "$ADDR" --json bench --mode many-queues --queue-prefix q --queues "$N" \
  --producers "$N" --batch 1 --messages "$N" --wave 100 --connections 4 | tee -a "$OUT/results.txt"
figures "after one message through each queue"
sleep 3; figures "3 s later"
kill -TERM "$PID"; wait "$PID" || true
say "data directory: $(du -sh "$OUT/data" | cut -f1)"
