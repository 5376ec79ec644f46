# shellcheck shell=bash
# RabbitMQ for the peer benchmarks: meant to be *sourced* by benches/peers/run.sh, it defines
#
#   rabbitmq_start DIR   start one node with every file (data, logs, config, cookie, pid file)
#                        under DIR, listening on 127.0.0.1 only; wait until it speaks AMQP; set
#                        RABBITMQ_PID (the beam.smp process, for `strace -p`) and export
#                        RABBITMQ_URL for `peers-loadgen rabbitmq`.
#   rabbitmq_stop        stop that node and leave no process behind (nor epmd, if it started it).
#
# Call both from the same shell (they keep their state in shell variables and reap their
# children with `wait`).
#
# Knobs (environment, all optional):
#   RABBITMQ_PORT        AMQP port (5679, so a system RabbitMQ on 5672 is never hit by mistake)
#   RABBITMQ_DIST_PORT   Erlang distribution port (RABBITMQ_PORT + 20000)
#   RABBITMQ_EPMD_PORT   epmd port (4369, epmd's own default)
#   RABBITMQ_NODENAME    node name (sluicebench@localhost)
#   RABBITMQ_HOME_BIN    where rabbitmq-server and rabbitmqctl live (/usr/lib/rabbitmq/bin)
#
# Durability: nothing here tunes it; the node runs with RabbitMQ's defaults, which is what the
# load generator's two queue types are measured against:
#   - quorum queue (x-queue-type=quorum): a publish is confirmed only once the Raft log entry is
#     in the WAL and the WAL has been fsynced (on a one-node cluster the leader's own fsync is
#     the quorum). Consumer acks (settles) go through the same log.
#   - classic durable queue + persistent messages (delivery_mode=2): a publish is confirmed
#     only once the message store (or the queue index, for small messages that are embedded
#     there) has written and fsynced the message; RabbitMQ batches these fsyncs across
#     publishers, so a confirm may wait for the next group sync.
# Note the filesystem DIR lives on decides what an fsync is worth (a tmpfs makes it a no-op).
#
# The bin scripts are called directly, not /usr/sbin/rabbitmq-server: the Debian wrapper cds
# to /var/lib/rabbitmq and re-executes itself as the rabbitmq user, which would ignore DIR.

# Where the last rabbitmq_start put its files; rabbitmq_stop reads these.
RABBITMQ_PID=
RABBITMQ_BENCH_DIR=
RABBITMQ_BENCH_WRAPPER_PID=
RABBITMQ_BENCH_STARTED_EPMD=

# The environment every RabbitMQ command (rabbitmq-server, rabbitmqctl) runs with: node name,
# cookie (HOME=DIR, so ~/.erlang.cookie is DIR's, not root's), config, data, logs, and
# epmd on loopback. Sets the array _RABBITMQ_ENV, for `env "${_RABBITMQ_ENV[@]}" cmd`.
_rabbitmq_env() {
    local dir=$RABBITMQ_BENCH_DIR
    _RABBITMQ_ENV=(
        HOME="$dir"
        RABBITMQ_NODENAME="${RABBITMQ_NODENAME:-sluicebench@localhost}"
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
        RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        RABBITMQ_MNESIA_BASE="$dir/mnesia"
        RABBITMQ_LOG_BASE="$dir/log"
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
        RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-$((${RABBITMQ_PORT:-5679} + 20000))}"
        ERL_EPMD_ADDRESS=127.0.0.1
        ERL_EPMD_PORT="${RABBITMQ_EPMD_PORT:-4369}"
    )
}

_rabbitmq_ctl() {
    _rabbitmq_env
    env "${_RABBITMQ_ENV[@]}" timeout 60 "$(_rabbitmq_bin rabbitmqctl)" -q \
        -n "${RABBITMQ_NODENAME:-sluicebench@localhost}" "$@"
}

_rabbitmq_bin() {
    echo "${RABBITMQ_HOME_BIN:-/usr/lib/rabbitmq/bin}/$1"
}

# True when something on 127.0.0.1:$1 answers the AMQP 0-9-1 protocol header with a frame
# (connection.start is a method frame: first byte 1).
_rabbitmq_speaks_amqp() {
    local first
    first=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        head -c 1 <&3 | od -An -tx1' _ "$1" 2>/dev/null) || return 1
    [[ ${first// /} == 01 ]]
}

# True when an epmd answers on our epmd port.
_rabbitmq_epmd_running() {
    epmd -port "${RABBITMQ_EPMD_PORT:-4369}" -names >/dev/null 2>&1
}

rabbitmq_start() {
    local dir=${1:?usage: rabbitmq_start DIR}
    local port=${RABBITMQ_PORT:-5679}
    local node=${RABBITMQ_NODENAME:-sluicebench@localhost}
    local dist_port=${RABBITMQ_DIST_PORT:-$((port + 20000))}
    local timeout_s=${RABBITMQ_START_TIMEOUT:-90}

    if [[ -n $RABBITMQ_BENCH_WRAPPER_PID ]] && kill -0 "$RABBITMQ_BENCH_WRAPPER_PID" 2>/dev/null; then
        echo "rabbitmq_start: a node started from $RABBITMQ_BENCH_DIR is still running" >&2
        return 1
    fi
    if _rabbitmq_speaks_amqp "$port"; then
        echo "rabbitmq_start: something already answers AMQP on 127.0.0.1:$port" >&2
        return 1
    fi

    mkdir -p "$dir/mnesia" "$dir/log" || return 1
    dir=$(cd "$dir" && pwd) || return 1
    RABBITMQ_BENCH_DIR=$dir

    # The only settings that differ from a stock node: where it listens. guest/guest is the
    # default user and (loopback_users default) may log in from loopback only.
    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$port
distribution.listener.interface = 127.0.0.1
distribution.listener.port_range.min = $dist_port
distribution.listener.port_range.max = $dist_port
loopback_users.guest = true
log.console = false
log.file.level = info
EOF
    # No plugins (no management UI, no prometheus): only the broker itself runs.
    echo '[].' >"$dir/enabled_plugins"
    : >"$dir/rabbitmq-env.conf"
    rm -f "$dir/rabbitmq.pid"

    # epmd (Erlang's name server) would otherwise be started by the node as a daemon, orphaned
    # and never reaped; started here it is this shell's child, bound to loopback, and
    # rabbitmq_stop can stop and reap it. An epmd that already runs is used and left alone.
    RABBITMQ_BENCH_STARTED_EPMD=
    _rabbitmq_env
    if ! _rabbitmq_epmd_running; then
        (exec env "${_RABBITMQ_ENV[@]}" epmd -address 127.0.0.1 \
            -port "${RABBITMQ_EPMD_PORT:-4369}" >"$dir/log/epmd.log" 2>&1 </dev/null) &
        RABBITMQ_BENCH_STARTED_EPMD=$!
    fi

    # The wrapper script stays in the foreground: it starts erl and turns TERM/INT into a
    # clean stop. rabbitmq_stop does the rest.
    (exec env "${_RABBITMQ_ENV[@]}" "$(_rabbitmq_bin rabbitmq-server)" \
        >"$dir/log/startup.log" 2>&1 </dev/null) &
    RABBITMQ_BENCH_WRAPPER_PID=$!

    local waited=0 ready=
    while ((waited < timeout_s * 2)); do
        if ! kill -0 "$RABBITMQ_BENCH_WRAPPER_PID" 2>/dev/null; then
            break
        fi
        if [[ -s $dir/rabbitmq.pid ]] && _rabbitmq_speaks_amqp "$port"; then
            ready=1
            break
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    if [[ -z $ready ]]; then
        echo "rabbitmq_start: node $node did not accept AMQP on 127.0.0.1:$port within ${timeout_s}s" >&2
        echo "--- $dir/log/startup.log (tail)" >&2
        tail -n 30 "$dir/log/startup.log" >&2
        local f
        for f in "$dir/log/"*.log; do
            [[ $f == */startup.log ]] && continue
            echo "--- $f (tail)" >&2
            tail -n 30 "$f" >&2
        done
        rabbitmq_stop
        return 1
    fi

    RABBITMQ_PID=$(<"$dir/rabbitmq.pid")
    if [[ $(cat "/proc/$RABBITMQ_PID/comm" 2>/dev/null) != beam.smp ]]; then
        echo "rabbitmq_start: pid file says $RABBITMQ_PID, which is not a beam.smp process" >&2
        rabbitmq_stop
        return 1
    fi
    # The listener is up; also make sure the boot finished and rabbitmqctl reaches the node
    # (same cookie and node name), since rabbitmq_stop relies on it.
    if ! _rabbitmq_ctl await_startup --timeout 50 >/dev/null 2>&1; then
        echo "rabbitmq_start: rabbitmqctl cannot reach $node (see $dir/log)" >&2
        rabbitmq_stop
        return 1
    fi
    export RABBITMQ_URL="amqp://guest:guest@127.0.0.1:$port/%2f"
    echo "rabbitmq: node $node up in ~$((waited / 2))s, pid $RABBITMQ_PID, $RABBITMQ_URL, data in $dir/mnesia" >&2
}

rabbitmq_stop() {
    local dir=$RABBITMQ_BENCH_DIR
    [[ -n $dir ]] || return 0
    local beam=$RABBITMQ_PID
    [[ -z $beam && -s $dir/rabbitmq.pid ]] && beam=$(<"$dir/rabbitmq.pid")

    # A clean stop first (flushes and closes the WAL and message store) ...
    if [[ -n $beam ]] && kill -0 "$beam" 2>/dev/null; then
        _rabbitmq_ctl stop >/dev/null 2>&1 || true
    fi
    # ... then whatever is left: the beam (and its erl_child_setup), the wrapper script.
    local p i
    for p in $beam $RABBITMQ_BENCH_WRAPPER_PID; do
        [[ -n $p ]] || continue
        for ((i = 0; i < 100; i++)); do
            kill -0 "$p" 2>/dev/null || break
            ((i == 40)) && kill -TERM "$p" 2>/dev/null
            ((i == 80)) && kill -KILL "$p" 2>/dev/null
            sleep 0.25
        done
    done
    [[ -n $RABBITMQ_BENCH_WRAPPER_PID ]] && wait "$RABBITMQ_BENCH_WRAPPER_PID" 2>/dev/null

    # epmd outlives the node; stop it only if we started it and no other node is registered.
    local epmd=$RABBITMQ_BENCH_STARTED_EPMD
    if [[ -n $epmd ]] && kill -0 "$epmd" 2>/dev/null; then
        local names
        names=$(epmd -port "${RABBITMQ_EPMD_PORT:-4369}" -names 2>/dev/null | grep -c '^name ')
        if [[ $names == 0 ]]; then
            kill -TERM "$epmd" 2>/dev/null
            wait "$epmd" 2>/dev/null
        else
            echo "rabbitmq_stop: leaving epmd (pid $epmd) running, other nodes use it" >&2
        fi
    fi
    RABBITMQ_PID=
    RABBITMQ_BENCH_WRAPPER_PID=
    RABBITMQ_BENCH_STARTED_EPMD=
}
