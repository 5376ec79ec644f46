#!/usr/bin/env bash
# Smoke test of the Kafka clients installed by install.sh: with each client, produce N records
# to a fresh topic and consume them back, checking the count.
#
#   bash tests/kafka/smoke.sh                       # starts Apache Kafka's broker on a free port
#   KAFKA_BOOTSTRAP=127.0.0.1:9092 bash tests/kafka/smoke.sh   # against a running broker (sluice)
#
# Env: SMOKE_N (records per client, default 10), SMOKE_SHARE=0 skips the share-group checks,
# SMOKE_ONLY="kcat-debian py" runs only the named checks, SMOKE_KEEP=1 keeps the broker's folder.
# Ends with "N passed, N failed"; exits non-zero when a check failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
N="${SMOKE_N:-10}"
RUN_ID="$(date +%s)-$$"
JAVA_CLI=(java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$HERE/.lib/*")
T0=$SECONDS

BROKER_DIR=""
cleanup() {
  if [ -n "$BROKER_DIR" ]; then
    "$HERE/kafka-broker.sh" stop "$BROKER_DIR" || true
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then echo "broker folder kept: $BROKER_DIR"; else rm -rf "$BROKER_DIR"; fi
  fi
}
trap cleanup EXIT

if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  BROKER_DIR="$(mktemp -d /tmp/sluice-kafka-smoke.XXXXXX)"
  t=$SECONDS
  pid="$("$HERE/kafka-broker.sh" start "$BROKER_DIR" "$port")"
  echo "Apache Kafka $(ls "$HERE/.lib" | sed -n 's/^kafka_2.13-\(.*\)\.jar$/\1/p') broker: pid $pid on 127.0.0.1:$port (ready in $((SECONDS - t))s, folder $BROKER_DIR)"
  export KAFKA_BOOTSTRAP="127.0.0.1:$port"
else
  echo "against the broker at $KAFKA_BOOTSTRAP"
fi
B="$KAFKA_BOOTSTRAP"

passed=0; failed=0; failures=()
# check NAME CMD...: runs CMD (bounded by `timeout`), which prints a line ending in
# "produced P consumed C"; passes when both equal N.
check() {
  local name="$1"; shift
  if [ -n "${SMOKE_ONLY:-}" ] && [[ " $SMOKE_ONLY " != *" $name "* ]]; then return 0; fi
  local out t=$SECONDS rc=0
  out="$("$@" 2>"/tmp/sluice-smoke-$name.$$.err")" || rc=$?
  local line; line="$(printf '%s\n' "$out" | grep -E 'produced [0-9]+ consumed [0-9]+' | tail -n 1 || true)"
  if [ $rc -eq 0 ] && [[ "$line" =~ produced\ $N\ consumed\ $N$ ]]; then
    passed=$((passed + 1)); echo "PASS $name: $line ($((SECONDS - t))s)"
  else
    failed=$((failed + 1)); failures+=("$name")
    echo "FAIL $name (exit $rc, $((SECONDS - t))s): ${line:-no count}"
    tail -n 15 "/tmp/sluice-smoke-$name.$$.err" | sed 's/^/    /'
  fi
  rm -f "/tmp/sluice-smoke-$name.$$.err"
}

# kcat: produce N lines, consume them with the simple consumer (-C) and in a group (-G).
kcat_roundtrip() {
  local label="$1" topic="$2" produced consumed grouped
  seq 1 "$N" | sed "s/^/$label /" | timeout 30 kcat -b "$B" -P -t "$topic"
  produced="$N"
  consumed="$(timeout 30 kcat -b "$B" -C -t "$topic" -o beginning -e -q | wc -l)"
  grouped="$(timeout 30 kcat -b "$B" -G "$topic-group" -o beginning -e -q "$topic" | wc -l)"
  echo "$(kcat -V | grep -o 'librdkafka [0-9.]*' | head -1) simple consumer: $consumed, group consumer: produced $produced consumed $grouped"
  [ "$consumed" = "$N" ]
}

kcat_debian() { kcat_roundtrip kcat-debian "smoke-kcat-debian-$RUN_ID"; }
kcat_new() { LD_LIBRARY_PATH="$HERE/.librdkafka-new" kcat_roundtrip kcat-new "smoke-kcat-new-$RUN_ID"; }

# Kafka's console producer, then its console consumer with the classic group protocol and with
# the KIP-848 consumer group protocol.
java_console() {
  local topic="smoke-java-console-$RUN_ID" classic modern
  seq 1 "$N" | sed 's/^/java console /' \
    | timeout 60 "${JAVA_CLI[@]}" org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$B" --topic "$topic" >&2
  classic="$(timeout 60 "${JAVA_CLI[@]}" org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$B" \
    --topic "$topic" --group "$topic-classic" --from-beginning --max-messages "$N" --timeout-ms 20000 \
    --command-property group.protocol=classic | wc -l)"
  modern="$(timeout 60 "${JAVA_CLI[@]}" org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$B" \
    --topic "$topic" --group "$topic-consumer" --from-beginning --max-messages "$N" --timeout-ms 20000 \
    --command-property group.protocol=consumer | wc -l)"
  echo "kafka-clients console, classic group: $classic, consumer group (KIP-848): produced $N consumed $modern"
  [ "$classic" = "$N" ]
}

java_share() {
  local cls="$HERE/.classes"
  if [ ! -f "$cls/ShareSmoke.class" ] || [ "$HERE/java/src/ShareSmoke.java" -nt "$cls/ShareSmoke.class" ]; then
    mkdir -p "$cls"
    javac -cp "$HERE/.lib/*" -d "$cls" "$HERE/java/src/ShareSmoke.java" >&2
  fi
  timeout 60 java -Xmx256m -cp "$HERE/.lib/*:$cls" ShareSmoke "$B" "smoke-java-share-$RUN_ID" "$N"
}

PY="$HERE/.venv/bin/python"
check kcat-debian kcat_debian
check kcat-new kcat_new
check py timeout 60 "$PY" "$HERE/py/smoke.py" --topic "smoke-py-$RUN_ID" -n "$N"
check java-console java_console
check kafkajs timeout 60 node "$HERE/node/smoke.js" --topic "smoke-kafkajs-$RUN_ID" -n "$N"
check franz-go timeout 60 "$HERE/go/smoke" -topic "smoke-franz-go-$RUN_ID" -n "$N"
if [ "${SMOKE_SHARE:-1}" != 0 ]; then
  check py-share timeout 60 "$PY" "$HERE/py/smoke.py" --share --topic "smoke-py-share-$RUN_ID" -n "$N"
  check java-share java_share
fi

echo "smoke wall time: $((SECONDS - T0))s"
[ $failed -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
