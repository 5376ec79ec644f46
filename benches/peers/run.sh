#!/usr/bin/env bash
# sluice beside the brokers people run today, on this machine, in one run, on loopback only.
#
#   benches/peers/run.sh [OUT]        (OUT default benches/peers/results/<date>)
#
# Installs what it needs from the Debian archive (redis-server, rabbitmq-server, nats-server,
# fio, strace, jq), builds sluice and the peers' load generator (benches/peers/loadgen), then:
#   1. fio: the disk's own limits (benches/fio.sh), so every figure reads as a fraction of it;
#   2. sluice (`sluice serve` + `sluice bench --addr`), fsync always and never;
#   3. Redis streams, XADD, appendfsync always and everysec (redis-benchmark);
#   4. RabbitMQ quorum and classic durable queues, publisher confirms, one ack per message;
#   5. NATS JetStream, file storage (a throughput reference: see the fsync check);
# and for every broker a short extra run under `strace -c -e trace=fsync,fdatasync` that counts
# what it really syncs (never during a measured run: strace slows every system call).
# Writes OUT/results.jsonl (one row per run), OUT/results.md (the table) and OUT/chart.svg.
#
# Environment: PEERS_DATA (data directories, default /work/bench-peers; must be a real disk,
# not tmpfs), PEERS_SCALE (multiplies message counts, default 1; 0.1 for a quick smoke run),
# PEERS_ONLY (space-separated subset of: fio sluice redis rabbitmq nats).
#
# Measure on a quiet machine: on a 2-core VM a compile running beside it moves disk figures by
# 3-10x.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)}
data=${PEERS_DATA:-/work/bench-peers}
scale=${PEERS_SCALE:-1}
only=${PEERS_ONLY:-fio sluice redis rabbitmq nats}

mkdir -p "$out" "$data"
out=$(cd "$out" && pwd)
rows=$out/results.jsonl
: >"$rows"
log() { printf '\n== %s\n' "$*" >&2; }
wants() { [[ " $only " == *" $1 "* ]]; }
# n COUNT: COUNT scaled by PEERS_SCALE, at least 1000.
n() { python3 -c "import sys; print(max(1000, int($1 * $scale)))"; }

# ---- setup -------------------------------------------------------------------------------
need=()
for c in redis-server:redis-server redis-benchmark:redis-tools rabbitmq-server:rabbitmq-server \
  nats-server:nats-server fio:fio strace:strace jq:jq; do
  command -v "${c%%:*}" >/dev/null 2>&1 || need+=("${c##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  sudo=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
fstype=$(df --output=fstype "$data" | tail -1 | tr -d ' ')
[ "$fstype" != tmpfs ] || { echo "error: $data is on tmpfs; set PEERS_DATA to a real disk" >&2; exit 1; }

sluice=$root/target/release/sluice
loadgen=$here/loadgen/target/release/peers-loadgen
if wants sluice; then
  log "building sluice"
  (cd "$root" && cargo build --release --quiet)
fi
if wants rabbitmq || wants nats; then
  log "building the peers' load generator"
  (cd "$here/loadgen" && cargo build --release --quiet)
fi

# Machine and versions, for the record.
{
  echo "date: $(date -u +%FT%TZ)"
  echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "kernel: $(uname -r)"
  echo "disk: $(df -h --output=source,fstype,size "$data" | tail -1 | xargs)"
  echo "sluice: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo ' (modified)')"
  echo "redis: $(redis-server --version | awk '{print $3}')"
  echo "rabbitmq: $(dpkg-query -W -f '${Version}' rabbitmq-server)"
  echo "nats: $(nats-server --version)"
  echo "fio: $(fio --version)"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  type rabbitmq_stop >/dev/null 2>&1 && rabbitmq_stop >/dev/null 2>&1 || true
  type nats_stop >/dev/null 2>&1 && nats_stop >/dev/null 2>&1 || true
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
}
redis_port=6390
trap cleanup EXIT

# row SYSTEM DURABILITY WORKLOAD BYTES CLIENTS PIPELINE MSGS_S P50_MS P99_MS CHECK
row() {
  jq -nc --arg system "$1" --arg durability "$2" --arg workload "$3" --argjson bytes "$4" \
    --argjson clients "$5" --arg pipeline "$6" --argjson rate "$7" --argjson p50 "$8" \
    --argjson p99 "$9" --arg check "${10}" \
    '{system: $system, durability: $durability, workload: $workload, message_bytes: $bytes,
      clients: $clients, pipeline: $pipeline, msgs_per_s: $rate,
      mb_per_s: ($rate * $bytes / 1e6), p50_ms: $p50, p99_ms: $p99, check: $check}' | tee -a "$rows" >&2
}

# fsyncs PID COMMAND...: counts PID's fsync/fdatasync calls (all threads) while COMMAND runs;
# prints the number of calls.
fsyncs() {
  local pid=$1; shift
  local f
  f=$(mktemp)
  strace -f -c -e trace=fsync,fdatasync -p "$pid" -o "$f" 2>/dev/null &
  local st=$!
  sleep 1
  "$@" >/dev/null 2>&1 || true
  sleep 0.5
  kill -INT "$st" 2>/dev/null || true
  wait "$st" 2>/dev/null || true
  awk '$NF == "fsync" || $NF == "fdatasync" {n += $4} END {print n + 0}' "$f"
  rm -f "$f"
}

# sync_row SYSTEM SETTING CALLS MESSAGES
sync_row() {
  jq -nc --arg system "$1" --arg setting "$2" --argjson calls "$3" --argjson messages "$4" \
    '{system: $system, fsync_check: $setting, fsync_calls: $calls, messages: $messages}' |
    tee -a "$rows" >&2
}

# ---- 1. fio -------------------------------------------------------------------------------
if wants fio; then
  log "fio: the disk's own limits"
  FIO_JSONL=$rows FIO_RUNTIME=15 bash "$root/benches/fio.sh" "$data" 256M >&2
fi

# ---- 2. sluice -----------------------------------------------------------------------------
sluice_start() { # FSYNC PORT
  rm -rf "$data/sluice"
  "$sluice" serve --data-dir "$data/sluice" --listen "127.0.0.1:$2" --fsync "$1" --http-listen 127.0.0.1:0 \
    >"$out/sluice-serve.log" 2>&1 &
  sluice_pid=$!
  pids+=("$sluice_pid")
  for _ in $(seq 100); do
    grep -q "listening on" "$out/sluice-serve.log" && return 0
    sleep 0.1
  done
  echo "error: sluice serve did not start:" >&2
  tail "$out/sluice-serve.log" >&2
  exit 1
}
sluice_stop() { kill "$sluice_pid"; wait "$sluice_pid" 2>/dev/null || true; }

# sluice_run DURABILITY WORKLOAD BENCH-ARGS...: one `sluice bench` run, one row.
sluice_run() {
  local durability=$1 workload=$2; shift 2
  local j credit=${SLUICE_CREDIT:-1000}
  j=$("$sluice" bench --addr "$sluice_addr" --json --credit "$credit" "$@")
  echo "$j" >>"$out/sluice-raw.jsonl"
  local bytes clients pipeline rate p50 p99 check
  bytes=$(jq .message_bytes <<<"$j")
  check=$(jq -r .check <<<"$j")
  if [ "$workload" = consume ] || [ "$workload" = read ]; then
    clients=$(jq .consumers <<<"$j")
    if [ "$workload" = consume ]; then
      pipeline="prefetch $credit, one ack per message"
    else
      pipeline="subscriber, credit $credit, page cache warm"
    fi
    rate=$(jq .delivery.msgs_per_s <<<"$j")
    p50=null p99=null
  else
    clients=$(jq .producers <<<"$j")
    pipeline="batches of $(jq .batch <<<"$j"), $(jq .inflight <<<"$j") in flight"
    rate=$(jq .publish.msgs_per_s <<<"$j")
    p50=$(jq '.publish.confirm_latency_per_batch.p50_us / 1000' <<<"$j")
    p99=$(jq '.publish.confirm_latency_per_batch.p99_us / 1000' <<<"$j")
  fi
  row sluice "$durability" "$workload" "$bytes" "$clients" "$pipeline" "$rate" "$p50" "$p99" "$check"
}

if wants sluice; then
  log "sluice, fsync always"
  sluice_addr=127.0.0.1:7470
  sluice_start always 7470
  always="fsync always: fdatasync before every confirm (group commit)"
  sluice_run "$always" publish --consumers 0 --messages "$(n 3000000)"
  sluice_run "$always" publish --consumers 0 --messages "$(n 6000000)" --producers 8
  sluice_run "$always" publish --consumers 0 --messages "$(n 600000)" --message-bytes 1000
  sluice_run "$always" consume --mode queue --read-after --consumers 1 --messages "$(n 1000000)"
  sluice_run "$always" consume --mode queue --read-after --consumers 2 --messages "$(n 1000000)"
  sluice_run "$always" consume --mode queue --read-after --consumers 1 --messages "$(n 300000)" \
    --message-bytes 1000
  # Reading a topic, the subscriber's credit is its window: the default, 20000 messages.
  SLUICE_CREDIT=20000 sluice_run "$always" read --read-after --warm-cache --consumers 1 \
    --messages "$(n 500000)" --message-bytes 1000
  calls=$(fsyncs "$sluice_pid" "$sluice" bench --addr "$sluice_addr" --consumers 0 \
    --messages 5000 --batch 1 --inflight 1)
  sync_row sluice "fsync always, one message per publish" "$calls" 5000
  sluice_stop

  log "sluice, fsync never"
  sluice_addr=127.0.0.1:7471
  sluice_start never 7471
  sluice_run "fsync never: page cache only" publish --consumers 0 --messages "$(n 3000000)"
  sluice_stop
fi

# ---- 3. Redis streams ----------------------------------------------------------------------
redis_start() { # APPENDFSYNC
  rm -rf "$data/redis" && mkdir -p "$data/redis"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$data/redis" --appendonly yes \
    --appendfsync "$1" --save '' --daemonize yes --logfile "$data/redis/redis.log"
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis_pid=$(redis-cli -p "$redis_port" info server | awk -F: '/^process_id/ {print $2}' | tr -d '\r')
}
redis_stop() { redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true; sleep 0.5; }

# redis_run DURABILITY WORKLOAD BYTES CLIENTS PIPELINE MESSAGES
redis_run() {
  local durability=$1 workload=$2 bytes=$3 clients=$4 pipe=$5 msgs=$6
  local v csv rate p50 p99
  v=$(head -c "$bytes" /dev/zero | tr '\0' x)
  csv=$(redis-benchmark -p "$redis_port" -c "$clients" -P "$pipe" -n "$msgs" --csv \
    XADD bench '*' v "$v" | tail -1)
  echo "$csv" >>"$out/redis-raw.csv"
  rate=$(cut -d, -f2 <<<"$csv" | tr -d '"')
  p50=$(cut -d, -f5 <<<"$csv" | tr -d '"')
  p99=$(cut -d, -f7 <<<"$csv" | tr -d '"')
  local len
  len=$(redis-cli -p "$redis_port" XLEN bench)
  local check=ok
  [ "$len" -ge "$msgs" ] || check="stream holds $len of $msgs entries"
  redis-cli -p "$redis_port" DEL bench >/dev/null
  row redis "$durability" "$workload" "$bytes" "$clients" "$clients clients x pipeline $pipe" \
    "$rate" "$p50" "$p99" "$check"
}

if wants redis; then
  for policy in always everysec; do
    log "Redis streams, appendfsync $policy"
    redis_start "$policy"
    d="appendonly yes, appendfsync $policy"
    redis_run "$d" publish 100 50 16 "$(n 2000000)"
    redis_run "$d" publish 1000 50 16 "$(n 500000)"
    [ "$policy" = always ] || redis_run "$d" publish-one 100 1 1 "$(n 5000)"
    calls=$(fsyncs "$redis_pid" redis-benchmark -p "$redis_port" -c 1 -P 1 -n 5000 \
      XADD bench '*' v x)
    sync_row redis "appendfsync $policy, one client, no pipelining" "$calls" 5000
    redis_stop
  done
fi

# ---- 4. RabbitMQ ---------------------------------------------------------------------------
# loadgen_run SYSTEM WORKLOAD LOADGEN-ARGS...: one load generator run, one row.
loadgen_run() {
  local system=$1 workload=$2; shift 2
  local j
  j=$("$loadgen" "$@")
  echo "$j" >>"$out/loadgen-raw.jsonl"
  local pipeline
  if [ "$workload" = consume ]; then
    pipeline="prefetch $(jq .window <<<"$j"), one ack per message"
  else
    pipeline="window $(jq .window <<<"$j") unconfirmed"
  fi
  row "$system" "$(jq -r .durability <<<"$j")" "$workload" "$(jq .message_bytes <<<"$j")" \
    "$(jq .producers <<<"$j")" "$pipeline" "$(jq .msgs_per_s <<<"$j")" \
    "$(jq .p50_ms <<<"$j")" "$(jq .p99_ms <<<"$j")" "$(jq -r .check <<<"$j")"
}

# peer_workloads RUN N100 N1000 NONE: the workloads of a peer driven by the load generator,
# through RUN (a function: WORKLOAD LOADGEN-ARGS...). Publish 100 B then consume it with one
# consumer, again with two, publish 1000 B and consume it, then one message at a time.
peer_workloads() {
  local run=$1 n100 n1000 none
  n100=$(n "$2") n1000=$(n "$3") none=$(n "$4")
  for consumers in 1 2; do
    $run publish --messages "$n100" --producers 4 --window 1000
    $run consume --mode consume --messages "$n100" --producers "$consumers" --window 1000
  done
  $run publish --messages "$n1000" --producers 4 --window 1000 --message-bytes 1000
  $run consume --mode consume --messages "$n1000" --producers 1 --window 1000 \
    --message-bytes 1000
  $run publish-one --messages "$none" --producers 1 --window 1
}

if wants rabbitmq; then
  # shellcheck source=benches/peers/rabbitmq.sh
  source "$here/rabbitmq.sh"
  log "RabbitMQ"
  rabbitmq_start "$data/rabbitmq"
  for qt in quorum classic; do
    rq() { loadgen_run "rabbitmq-$qt" "$1" rabbitmq --queue-type "$qt" "${@:2}"; }
    peer_workloads rq 300000 100000 3000
    calls=$(fsyncs "$RABBITMQ_PID" "$loadgen" rabbitmq --queue-type "$qt" --messages 3000 \
      --window 1)
    sync_row "rabbitmq-$qt" "publisher confirms, one message at a time" "$calls" 3000
  done
  rabbitmq_stop || true
fi

# ---- 5. NATS JetStream ---------------------------------------------------------------------
if wants nats; then
  # shellcheck source=benches/peers/nats.sh
  source "$here/nats.sh"
  log "NATS JetStream"
  nats_start "$data/nats"
  ns() { loadgen_run nats-jetstream "$1" nats "${@:2}"; }
  peer_workloads ns 1000000 300000 5000
  calls=$(fsyncs "$NATS_PID" "$loadgen" nats --messages 5000 --window 1)
  sync_row nats-jetstream "file storage, one message at a time" "$calls" 5000
  nats_stop || true
fi

# ---- 6. one message at a time, sluice and Redis (appendfsync always) taking turns ---------
# The disk's sync latency drifts over minutes on a shared VM: alternate the two so both see
# the same disk.
if wants sluice && wants redis; then
  log "one message at a time: sluice and Redis always, taking turns"
  sluice_addr=127.0.0.1:7472
  sluice_start always 7472
  redis_start always
  for _ in 1 2 3; do
    sluice_run "$always" publish-one --consumers 0 --messages "$(n 10000)" --batch 1 --inflight 1
    redis_run "appendonly yes, appendfsync always" publish-one 100 1 1 "$(n 10000)"
  done
  redis_stop
  sluice_stop
fi

# ---- report --------------------------------------------------------------------------------
python3 "$here/report.py" "$rows" "$out/machine.txt" --md "$out/results.md" --svg "$out/chart.svg"
log "results: $out/results.md, $out/chart.svg"
cat "$out/results.md"
