#!/usr/bin/env bash
# Resident memory of one cairn member, as compare's memory figure takes it:
# idle at start, after 100,000 puts of 256 bytes over a 100k key space from 64
# clients, and in the 15 s after a restart on the same data dir (the highest
# reading, then the last).
#   docs/benchmarks/experiments/rss.sh CAIRN_BINARY [CAIRN_BENCH_BINARY]
# Uses 127.0.0.21:23790/23800 and a temporary data dir; stops the member.
set -euo pipefail
cairn=$1
bench=${2:-target/release/cairn-bench}
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
url=http://127.0.0.21:23790 peer=http://127.0.0.21:23800

start() {
  "$cairn" --name m1 --data-dir "$dir/data" --listen-client-urls $url --advertise-client-urls $url \
    --listen-peer-urls $peer --initial-advertise-peer-urls $peer --initial-cluster m1=$peer >>"$dir/log" 2>&1 &
  pid=$!
  sleep "$1"
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
rss() { awk '/^VmRSS:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status"; }

start 3
echo "idle at start: $(rss)"
"$bench" put --endpoints $url --clients 64 --conns 16 --total 100000 --key-space-size 100000 \
  --sequential-keys --val-size 256 >/dev/null
echo "after 100k keys: $(rss)"
stop
start 1
highest=0
for _ in $(seq 15); do
  kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  [ "$kib" -gt "$highest" ] && highest=$kib
  sleep 1
done
echo "restarted with them: highest $((highest / 1024)) MiB, after 15 s $(rss)"
stop
