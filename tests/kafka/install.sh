#!/usr/bin/env bash
# Installs the Kafka clients and Apache Kafka's broker that tests/kafka/ drives, and Chromium for
# the web console's test (cli/tests/console.rs), from package registries only (Debian apt, PyPI,
# Maven Central, npm, the Go module proxy). Idempotent: each
# step is skipped when what it makes is already there. Quiet unless a step fails; each step's
# output goes to tests/kafka/.install-logs/STEP.log and is printed when that step fails.
#
#   bash tests/kafka/install.sh            # everything
#   bash tests/kafka/install.sh py java    # only some steps (apt py java node go chromium)
#   bash tests/kafka/install.sh apt py java node go chromium   # what CI installs (kcat,
#                        # confluent-kafka, Java client, kafkajs, franz-go, Chromium)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOGS="$HERE/.install-logs"
mkdir -p "$LOGS"

CONFLUENT_KAFKA_SPEC='confluent-kafka>=2.16,<2.17'
# The Prometheus project's Python client: its OpenMetrics parser reads sluice's GET /metrics.
PROMETHEUS_CLIENT_SPEC='prometheus-client>=0.21,<1'

# Runs one step quietly; on failure prints its log and stops. Records its wall time.
step() {
  local name="$1"; shift
  local t0=$SECONDS
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    echo "install.sh: step '$name' failed; its output:" >&2
    tail -n 60 "$LOGS/$name.log" >&2
    exit 1
  fi
  echo "$name $((SECONDS - t0))s" >>"$LOGS/times"
}

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: kcat always; python3-venv when the py step runs and venv is missing; Java
# and Maven only when the java step runs; node and npm only when the node step runs.
do_apt() {
  local pkgs=()
  command -v kcat >/dev/null || pkgs+=(kcat)
  # The TLS tests make their certificates with openssl.
  command -v openssl >/dev/null || pkgs+=(openssl)
  # The TLS tests fetch /metrics over https with curl.
  command -v curl >/dev/null || pkgs+=(curl)
  # The cluster's network-fault test puts nodes in namespaces with ip and tc.
  { command -v ip >/dev/null && command -v tc >/dev/null; } || pkgs+=(iproute2)
  if wants py && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then pkgs+=(python3-venv); fi
  if wants java; then
    command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
    command -v javac >/dev/null || pkgs+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || pkgs+=(maven)
  fi
  if wants node; then
    command -v node >/dev/null || pkgs+=(nodejs)
    command -v npm >/dev/null || pkgs+=(npm)
  fi
  [ ${#pkgs[@]} -eq 0 ] && return 0
  need_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
}

do_py() {
  local venv="$HERE/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c 'import confluent_kafka, sys; sys.exit(0 if confluent_kafka.__version__.startswith("2.16.") else 1)' 2>/dev/null; then
    "$venv/bin/pip" install -q --disable-pip-version-check "$CONFLUENT_KAFKA_SPEC"
  fi
  if ! "$venv/bin/python" -c 'import prometheus_client' 2>/dev/null; then
    "$venv/bin/pip" install -q --disable-pip-version-check "$PROMETHEUS_CLIENT_SPEC"
  fi
  # kcat on the wheel's newer librdkafka: a folder with a librdkafka.so.1 pointing at it.
  local so
  so="$("$venv/bin/python" - <<'PY'
import glob, os, confluent_kafka
base = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
hits = sorted(glob.glob(os.path.join(base, "confluent_kafka.libs", "librdkafka-*.so.1")))
print(hits[0] if hits else "")
PY
)"
  [ -n "$so" ] || { echo "no bundled librdkafka in the confluent-kafka wheel" >&2; return 1; }
  mkdir -p "$HERE/.librdkafka-new"
  ln -sfn "$so" "$HERE/.librdkafka-new/librdkafka.so.1"
  echo "$so" >"$HERE/.librdkafka-new/SOURCE"
}

do_java() {
  local lib="$HERE/.lib"
  local v
  v="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/java/pom.xml")"
  if [ -f "$lib/kafka_2.13-$v.jar" ] && [ -f "$lib/kafka-tools-$v.jar" ] && [ -f "$lib/kafka-clients-$v.jar" ] \
     && [ -f "$lib/.complete-$v" ]; then
    return 0
  fi
  rm -rf "$lib"
  mvn -q -B -f "$HERE/java/pom.xml" dependency:copy-dependencies
  touch "$lib/.complete-$v"
}

do_node() {
  if [ -f "$HERE/node/node_modules/kafkajs/package.json" ] \
     && [ "$HERE/node/node_modules/.package-lock.json" -nt "$HERE/node/package-lock.json" ]; then
    return 0
  fi
  (cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error)
}

# Debian's Chromium, which the console test runs headless (--dump-dom); its screenshots script
# (tests/console/screenshots.sh) also needs node, from the node step.
do_chromium() {
  command -v chromium >/dev/null && return 0
  need_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq --no-install-recommends chromium
}

do_go() {
  # The Go toolchain's usual place when it is not on PATH.
  command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
  (cd "$HERE/go" && go mod download && go build -o smoke .)
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(apt py java node go chromium)
wants() { [[ " ${steps[*]} " == *" $1 "* ]]; }
: >"$LOGS/times"
for s in "${steps[@]}"; do
  case "$s" in
    apt|py|java|node|go|chromium) step "$s" "do_$s" ;;
    *) echo "install.sh: unknown step '$s' (apt py java node go chromium)" >&2; exit 2 ;;
  esac
done
if [ -L "$HERE/.librdkafka-new/librdkafka.so.1" ]; then
  echo "newer librdkafka: $(cat "$HERE/.librdkafka-new/SOURCE")"
fi
