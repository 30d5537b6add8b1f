#!/usr/bin/env bash
# Three members (cairn or etcd: the same flags) on 127.0.0.91-93, written to
# through every endpoint. `64` (the default): 20,000 puts to warm up, then 10 s
# of 64-client puts; prints puts/s and the members' CPU per put (/proc).
# `one`: 500 puts, then 4,000 from one client at sequential keys; prints
# its puts/s and p50. With PERF=1 (64 clients), also records the members for
# 6 s into perf.LABEL.data (PERFARGS adds perf record's flags, e.g. -g).
#   three-members.sh BINARY CAIRN_BENCH LABEL [64|one] [ETCDCTL]
set -uo pipefail
bin=$1 bench=$2 label=$3 mode=${4:-64} etcdctl=${5:-$HOME/.cache/cairn/etcd-v3.5.1/etcdctl}
# The work dir, `pids` and their cleanup.
source "$(dirname "$0")/one-member.sh"
cluster="m1=http://127.0.0.91:23380,m2=http://127.0.0.92:23380,m3=http://127.0.0.93:23380"
for i in 1 2 3; do
  ip=127.0.0.9$i
  "$bin" --name m$i --data-dir "$work/m$i" \
    --listen-client-urls http://$ip:23379 --advertise-client-urls http://$ip:23379 \
    --listen-peer-urls http://$ip:23380 --initial-advertise-peer-urls http://$ip:23380 \
    --initial-cluster $cluster --initial-cluster-state new 2> "$work/m$i.log" > /dev/null &
  pids+=($!)
done
eps=http://127.0.0.91:23379,http://127.0.0.92:23379,http://127.0.0.93:23379
for _ in $(seq 100); do
  "$etcdctl" --endpoints=$eps endpoint health 2>/dev/null | grep -c "is healthy" | grep -q 3 && break
  sleep 0.2
done
if [[ $mode == one ]]; then
  "$bench" put --endpoints $eps --clients 1 --total 500 --val-size 256 --sequential-keys > /dev/null
  "$bench" put --endpoints $eps --clients 1 --total 4000 --val-size 256 --sequential-keys |
    awk -v label="$label" '/Requests\/sec/ {r=$2} /50% in/ {p=$3} END {printf "%s puts/s=%.0f p50_ms=%s\n", label, r, p}'
  exit 0
fi
"$bench" put --endpoints $eps --clients 64 --conns 16 --total 20000 --val-size 256 --key-space-size 100000 > /dev/null
cpu() { local t=0; for p in "${pids[@]}"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
c0=$(cpu)
recorder=
if [[ -n ${PERF:-} ]]; then
  members=$(IFS=,; echo "${pids[*]}")
  (sleep 2; perf record ${PERFARGS:-} -F 999 -o "perf.$label.data" -p "$members" -- sleep 6 > /dev/null 2>&1) &
  recorder=$!
fi
rate=$("$bench" put --endpoints $eps --clients 64 --conns 16 --duration 10 --val-size 256 --key-space-size 100000 |
  awk '/Requests\/sec/ {print $2}')
c1=$(cpu)
[[ -n $recorder ]] && wait $recorder
# /proc's ticks are 1/100 s: CPU µs per put = ticks * 10,000 / (puts/s * 10 s).
python3 -c "import sys; r=float(sys.argv[1]); print(f'$label puts/s={r:.0f} member_cpu_us_per_put={(int(sys.argv[3])-int(sys.argv[2]))*1000/r:.1f}')" \
  "$rate" "$c0" "$c1"
