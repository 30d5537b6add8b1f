#!/usr/bin/env bash
# What stalls one client's puts while a million revisions are compacted:
# starts one cairn member on 127.0.0.31, writes 1,000 keys 1,000 times (64
# clients), then puts from one client for 15 s and compacts everything
# (--physical) 2 s in. Prints the compaction's time, the slowest puts, and
# the member's slow WAL fsyncs and slow proposals (append to apply) from
# /metrics, the histogram buckets above 8 ms counted over the compaction.
#   compaction-stalls.sh BINARY CAIRN_BENCH [VALUE_BYTES (8)] [ETCDCTL]
set -uo pipefail
bin=$1 bench=$2 val=${3:-8} etcdctl=${4:-$HOME/.cache/cairn/etcd-v3.5.1/etcdctl}
source "$(dirname "$0")/one-member.sh"
start_member "$bin" 127.0.0.31 --listen-metrics-urls http://127.0.0.31:23381
echo "filling: 1,000,000 puts of $val bytes on 1,000 keys" >&2
"$bench" put --endpoints $ep --clients 64 --conns 16 --total 1000000 --key-space-size 1000 \
  --sequential-keys --val-size "$val" > /dev/null || exit 1
curl -s http://127.0.0.31:23381/metrics > "$work/before"
revision=$("$etcdctl" --endpoints $ep endpoint status -w json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
echo "one client's puts for 15 s, compacting at $revision 2 s in" >&2
"$bench" put --endpoints $ep --clients 1 --duration 15 --key-space-size 1000 > "$work/writer" 2>&1 &
writer=$!
sleep 2
started=$(date +%s%N)
"$etcdctl" --endpoints $ep --command-timeout 120s compact "$revision" --physical > /dev/null || exit 1
echo "compaction took $(( ($(date +%s%N) - started) / 1000000 )) ms"
wait $writer
curl -s http://127.0.0.31:23381/metrics > "$work/after"
grep -E "Slowest|99%|99.9%" "$work/writer"
python3 - "$work/before" "$work/after" <<'PY'
import re, sys
pattern = re.compile(r'^(etcd_disk_wal_fsync|cairn_proposal_commit)_duration_seconds_bucket\{le="([^"]+)"\} (\d+)')
def load(path):
    counts = {}
    for line in open(path):
        if m := pattern.match(line):
            counts[(m.group(1), float(m.group(2)))] = int(m.group(3))
    return counts
before, after = load(sys.argv[1]), load(sys.argv[2])
below = {}
for name, le in sorted(after):
    cumulative = after[(name, le)] - before.get((name, le), 0)
    count = cumulative - below.get(name, 0)
    below[name] = cumulative
    if le > 0.008 and count:
        print(f"{name}: {count} up to {le * 1000:g} ms")
PY
