# Shared by the cluster benchmarks (sourced): the processes they start, killed on exit with
# their scratch directory, and the wait for a node's "listening" line.
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_listening() { # log file [line prefix, default "listening on "]
    for _ in $(seq 1 300); do
        grep -q "^${2:-listening on }" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "a node did not start: $1" >&2
    cat "$1" >&2
    return 1
}
