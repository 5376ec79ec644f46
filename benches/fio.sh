#!/usr/bin/env bash
# Measures what the disk under a directory can do for a log: 4 KiB appends each followed by
# fdatasync (rate and latency), and 1 MiB appends each followed by fdatasync (bandwidth), both
# through the page cache and with O_DIRECT. These are the ceilings `cargo bench -p sluice-storage`
# figures should be compared with.
#
# Usage: benches/fio.sh DIR [SIZE]     (SIZE per job, default 256M; DIR must not be a tmpfs)
# With FIO_JSONL=FILE, each result is also appended to FILE as a JSON line (benches/peers/run.sh).
set -euo pipefail

dir=${1:?usage: $0 DIR [SIZE]}
size=${2:-256M}
runtime=${FIO_RUNTIME:-20}

if ! command -v fio >/dev/null 2>&1; then
  echo "fio not found, installing it" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq fio >/dev/null
fi
command -v jq >/dev/null 2>&1 || {
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y -qq jq >/dev/null
}

mkdir -p "$dir"
fstype=$(df --output=fstype "$dir" | tail -1 | tr -d ' ')
if [ "$fstype" = "tmpfs" ]; then
  echo "warning: $dir is on tmpfs, fsync costs nothing there" >&2
fi
work=$(mktemp -d "$dir/fio.XXXXXX")
trap 'rm -rf "$work"' EXIT

# run NAME BS DIRECT -> prints "iops bw_MiB/s lat_p50_us lat_p99_us"
run() {
  local name=$1 bs=$2 direct=$3
  local out
  out=$(fio --name="$name" --directory="$work" --filename="$name.dat" \
    --rw=write --bs="$bs" --size="$size" --ioengine=sync --fdatasync=1 \
    --direct="$direct" --time_based=0 --runtime="$runtime" \
    --output-format=json 2>/dev/null)
  rm -f "$work/$name.dat"
  # Latency of the write plus its fdatasync: fio reports the sync latency separately.
  jq -r '.jobs[0] as $j |
    [ ($j.write.iops),
      ($j.write.bw_bytes / 1048576),
      (($j.write.clat_ns.percentile["50.000000"] // 0) + ($j.sync.lat_ns.percentile["50.000000"] // 0)) / 1000,
      (($j.write.clat_ns.percentile["99.000000"] // 0) + ($j.sync.lat_ns.percentile["99.000000"] // 0)) / 1000 ]
    | map(. * 10 | round / 10) | @tsv' <<<"$out"
}

printf '%-28s %12s %12s %14s %14s\n' "job ($fstype, $size)" "appends/s" "MiB/s" "p50 us" "p99 us"
for direct in 0 1; do
  mode=$([ "$direct" = 1 ] && echo "O_DIRECT" || echo "buffered")
  for bs in 4k 1M; do
    if read -r iops bw p50 p99 < <(run "append-$bs-$direct" "$bs" "$direct"); then
      printf '%-28s %12s %12s %14s %14s\n' "$bs append+fdatasync $mode" "$iops" "$bw" "$p50" "$p99"
      if [ -n "${FIO_JSONL:-}" ]; then
        jq -nc --arg job "$bs append+fdatasync $mode" --arg fs "$fstype" \
          --argjson iops "$iops" --argjson bw "$bw" --argjson p50 "$p50" --argjson p99 "$p99" \
          '{system: "fio", job: $job, filesystem: $fs, appends_per_s: $iops, mib_per_s: $bw,
            p50_us: $p50, p99_us: $p99}' >>"$FIO_JSONL"
      fi
    else
      printf '%-28s %12s\n' "$bs append+fdatasync $mode" "failed"
    fi
  done
done
