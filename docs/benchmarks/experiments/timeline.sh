#!/usr/bin/env bash
# The median timeline of one put at 3 members, through the leader or through a
# follower: starts 3 members of a build with write-timeline.patch applied on
# 127.0.0.81-83, puts 3,000 keys from one client, prints timeline.py's table.
#   timeline.sh CAIRN_WITH_PATCH CAIRN_BENCH leader|follower [ETCDCTL]
set -euo pipefail
cairn=$1 bench=$2 via=$3 etcdctl=${4:-$HOME/.cache/cairn/etcd-v3.5.1/etcdctl}
work=$(mktemp -d)
here=$(cd "$(dirname "$0")" && pwd)
cluster="m1=http://127.0.0.81:22380,m2=http://127.0.0.82:22380,m3=http://127.0.0.83:22380"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "${pids[@]}" 2>/dev/null || break; sleep 0.1; done
  rm -rf "$work"
}
trap cleanup EXIT
for i in 1 2 3; do
  CAIRN_XT=1 "$cairn" --name m$i --data-dir "$work/m$i" \
    --listen-client-urls http://127.0.0.8$i:22379 --advertise-client-urls http://127.0.0.8$i:22379 \
    --listen-peer-urls http://127.0.0.8$i:22380 --initial-advertise-peer-urls http://127.0.0.8$i:22380 \
    --initial-cluster "$cluster" 2> "$work/m$i.log" > /dev/null &
  pids+=($!)
done
endpoints=http://127.0.0.81:22379,http://127.0.0.82:22379,http://127.0.0.83:22379
status=""
for _ in $(seq 100); do
  status=$("$etcdctl" --endpoints=$endpoints endpoint status 2>/dev/null | awk -F', ' '{print $1, $5}') || true
  echo "$status" | grep -q true && break
  sleep 0.2
done
leader=$(echo "$status" | awk '$2 == "true" {print $1}')
follower=$(echo "$status" | awk '$2 == "false" {print $1}' | head -1)
[ -n "$leader" ] && [ -n "$follower" ] || { echo "no leader in 20 s" >&2; exit 1; }
endpoint=$leader; [ "$via" = follower ] && endpoint=$follower
"$bench" put --endpoints "$endpoint" --clients 1 --total 300 --val-size 256 --key-space-size 100000 > /dev/null
since=$(date +%s%N)
"$bench" put --endpoints "$endpoint" --clients 1 --total 3000 --sequential-keys --val-size 256 --key-space-size 100000 | grep -E "Requests/sec|50%" || true
python3 "$here/timeline.py" "$since" "$work"/m1.log "$work"/m2.log "$work"/m3.log
