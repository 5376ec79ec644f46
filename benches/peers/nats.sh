# shellcheck shell=bash
# NATS JetStream for benches/peers: source this file, then
#
#   nats_start DIR   # nats-server with JetStream, store under DIR/store, log DIR/nats.log;
#                    # sets NATS_PID (for `strace -p`), exports NATS_URL
#   nats_stop        # SIGTERM (JetStream flushes and closes its stores), waits for the exit
#
# The server listens on 127.0.0.1:${NATS_PORT:-4229} only, with no HTTP monitoring port.
# Binary: ${NATS_SERVER:-nats-server} (Debian's 2.9.10 at /usr/sbin/nats-server).
#
# Durability: nats-server 2.9.x has no setting to sync the file store on each write. Its
# `jetstream {}` block knows no `sync_interval` (a 2.10 addition: `nats-server -t` says
# `unknown field "sync_interval"`). Measured on 2.9.10 with strace: one pwrite64 per message
# before its publish ack, no fsync/fdatasync while publishing, consuming or shutting down;
# the message block (N.blk) and its index (N.idx) are fsynced by a timer 2 minutes later.
# A publish ack means the message reached the OS page cache, not the disk.

NATS_PID=
NATS_DIR=

nats_start() {
    local dir=${1:?usage: nats_start DIR}
    local port=${NATS_PORT:-4229}
    local bin=${NATS_SERVER:-nats-server}
    if [[ -n $NATS_PID ]] && kill -0 "$NATS_PID" 2>/dev/null; then
        echo "nats_start: nats-server already running (pid $NATS_PID)" >&2
        return 1
    fi
    command -v "$bin" >/dev/null || {
        echo "nats_start: $bin not found" >&2
        return 1
    }
    # Something already on the port would be a foreign server the load generator talks to.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "nats_start: 127.0.0.1:$port already accepts connections" >&2
        return 1
    fi
    mkdir -p "$dir/store" || return 1
    dir=$(cd "$dir" && pwd) || return 1
    cat >"$dir/nats.conf" <<EOF
# Written by benches/peers/nats.sh.
listen: "127.0.0.1:$port"
server_name: "sluice-bench"
jetstream {
    store_dir: "$dir/store"
}
EOF
    "$bin" -t -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 || {
        echo "nats_start: bad configuration $dir/nats.conf:" >&2
        tail -n 20 "$dir/nats.log" >&2
        return 1
    }
    "$bin" -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 </dev/null &
    NATS_PID=$!
    NATS_DIR=$dir
    export NATS_URL="nats://127.0.0.1:$port"

    # Ready once the log says so (JetStream is enabled before the client listener) and the
    # port accepts connections.
    local deadline=$((SECONDS + 30))
    while :; do
        if ! kill -0 "$NATS_PID" 2>/dev/null; then
            echo "nats_start: nats-server exited during startup; $dir/nats.log:" >&2
            tail -n 30 "$dir/nats.log" >&2
            wait "$NATS_PID" 2>/dev/null
            NATS_PID=
            return 1
        fi
        if grep -q 'Server is ready' "$dir/nats.log" 2>/dev/null &&
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            break
        fi
        if ((SECONDS >= deadline)); then
            echo "nats_start: nats-server not ready after 30 s; $dir/nats.log:" >&2
            tail -n 30 "$dir/nats.log" >&2
            nats_stop
            return 1
        fi
        sleep 0.2
    done
    if ! grep -q 'Starting JetStream' "$dir/nats.log"; then
        echo "nats_start: JetStream did not start; $dir/nats.log:" >&2
        tail -n 30 "$dir/nats.log" >&2
        nats_stop
        return 1
    fi
}

nats_stop() {
    [[ -n $NATS_PID ]] || return 0
    if kill -0 "$NATS_PID" 2>/dev/null; then
        kill -TERM "$NATS_PID" 2>/dev/null
        local deadline=$((SECONDS + 30))
        while kill -0 "$NATS_PID" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if kill -0 "$NATS_PID" 2>/dev/null; then
            echo "nats_stop: nats-server (pid $NATS_PID) ignored SIGTERM for 30 s, killing it" >&2
            kill -KILL "$NATS_PID" 2>/dev/null
        fi
    fi
    # Reap it when it is this shell's child (kill -0 above also succeeds on a zombie).
    wait "$NATS_PID" 2>/dev/null
    NATS_PID=
}
