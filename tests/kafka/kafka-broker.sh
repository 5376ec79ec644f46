#!/usr/bin/env bash
# Runs Apache Kafka's own broker (from tests/kafka/.lib, see install.sh) on loopback, as an oracle
# for sluice's Kafka wire-protocol tests: KRaft combined mode (broker + controller, node id 1),
# clients on 127.0.0.1:PORT, the controller on another loopback port, everything in DIR.
#
#   tests/kafka/kafka-broker.sh start DIR PORT [CONTROLLER_PORT]   # prints the pid when ready
#   tests/kafka/kafka-broker.sh stop DIR
#
# DIR/server.properties, DIR/data (log.dirs), DIR/server.log, DIR/kafka.pid.
# Env: KAFKA_HEAP (default -Xmx512m), KAFKA_START_TIMEOUT (seconds, default 60).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIB="$HERE/.lib"

usage() { echo "usage: $0 start DIR PORT [CONTROLLER_PORT] | stop DIR" >&2; exit 2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1" port="$2" cport="${3:-}"
  ls "$LIB"/kafka_2.13-*.jar >/dev/null 2>&1 \
    || { echo "no Kafka broker in $LIB: run tests/kafka/install.sh java" >&2; exit 1; }
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
    echo "a broker already runs from $dir (pid $(cat "$dir/kafka.pid"))" >&2; exit 1
  fi
  if port_open "$port"; then echo "127.0.0.1:$port is already in use" >&2; exit 1; fi
  if [ -z "$cport" ]; then
    cport="$(free_port)"
    while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
  fi

  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
PROPS

  cat >"$dir/log4j2.properties" <<'L4J'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
L4J

  local java_opts=(${KAFKA_HEAP:--Xmx512m} -Xms64m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Djava.awt.headless=true -Dkafka.logs.dir="$dir"
    -Dlog4j2.configurationFile="$dir/log4j2.properties")

  if [ ! -f "$dir/data/meta.properties" ]; then
    local cid
    cid="$(java -cp "$LIB/*" kafka.tools.StorageTool random-uuid)"
    java "${java_opts[@]}" -cp "$LIB/*" kafka.tools.StorageTool format \
      -t "$cid" -c "$dir/server.properties" >>"$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; exit 1; }
  fi

  nohup java "${java_opts[@]}" -cp "$LIB/*" kafka.Kafka "$dir/server.properties" \
    >>"$dir/stdout.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/kafka.pid"

  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-60}))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "Kafka exited during start; last lines of its logs:" >&2
      tail -n 30 "$dir/stdout.log" "$dir/server.log" >&2 2>/dev/null || true
      rm -f "$dir/kafka.pid"; exit 1
    fi
    if port_open "$port" && grep -q 'Kafka Server started' "$dir/server.log" 2>/dev/null; then
      break
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "Kafka did not answer on 127.0.0.1:$port within ${KAFKA_START_TIMEOUT:-60}s" >&2
      tail -n 30 "$dir/server.log" >&2 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.3
  done
  echo "$pid"
}

stop() {
  local dir="$1"
  [ -f "$dir/kafka.pid" ] || return 0
  local pid; pid="$(cat "$dir/kafka.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  fi
  rm -f "$dir/kafka.pid"
}

case "${1:-}" in
  start) [ $# -ge 3 ] || usage; start "$2" "$3" "${4:-}" ;;
  stop)  [ $# -ge 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
