#!/usr/bin/env bash
# Where the 2 cores go under 64 clients at one member: starts one member of
# cairn or etcd (by the binary's name) on 127.0.0.94, fills it, then runs 8 s
# of 64-client puts and prints puts/s, the member's and the load tool's CPU
# per put, and the member's cores. With `perf`, also records the member for
# 5 s (call graphs by DWARF) into perf.LABEL.data.
#   cpu-split.sh BINARY CAIRN_BENCH LABEL [perf] [ETCDCTL]
set -uo pipefail
bin=$1 bench=$2 label=$3 prof=${4:-} etcdctl=${5:-$HOME/.cache/cairn/etcd-v3.5.1/etcdctl}
source "$(dirname "$0")/one-member.sh"
start_member "$bin" 127.0.0.94
"$bench" put --endpoints $ep --clients 64 --conns 16 --total 20000 --val-size 256 --key-space-size 100000 > /dev/null
cpu() { awk '{print $14+$15}' "/proc/${pids[0]}/stat"; }
c0=$(cpu); t0=$(date +%s%N)
recorder=
if [[ -n $prof ]]; then
  (sleep 2; perf record -F 499 --call-graph dwarf,16384 -o "perf.$label.data" -p "${pids[0]}" -- sleep 5 > /dev/null 2>&1) &
  recorder=$!
fi
out=$({ /usr/bin/time -f "TOOLCPU %U %S" "$bench" put --endpoints $ep --clients 64 --conns 16 --duration 8 \
  --val-size 256 --key-space-size 100000; } 2>&1)
c1=$(cpu); t1=$(date +%s%N)
[[ -n $recorder ]] && wait "$recorder"
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
tool=$(echo "$out" | awk '/TOOLCPU/ {print $2+$3}')
python3 - "$label" "$rps" "$c0" "$c1" "$t0" "$t1" "$tool" <<'PY'
import sys
label, rps, c0, c1, t0, t1, tool = sys.argv[1], float(sys.argv[2]), *map(float, sys.argv[3:])
puts = rps * 8
ticks = c1 - c0  # clock ticks of 10 ms
print(f"{label} puts/s={rps:.0f} member_us_per_put={ticks * 10000 / puts:.1f} "
      f"tool_us_per_put={tool * 1e6 / puts:.1f} member_cores={ticks / 100 / ((t1 - t0) / 1e9):.2f}")
PY
