#!/usr/bin/env bash
# How one member batches 64 clients' puts: starts cairn or etcd (by the
# binary's name) on 127.0.0.94, fills it, runs 8 s of 64-client puts, and
# prints puts/s and what the member's metrics counted in those 8 s: WAL
# fsyncs and their total time, and for cairn its proposal batches and the
# requests in them.
#   batches.sh BINARY CAIRN_BENCH [FLAG...]
set -uo pipefail
bin=$1 bench=$2
shift 2
etcdctl=${ETCDCTL:-$HOME/.cache/cairn/etcd-v3.5.1/etcdctl}
source "$(dirname "$0")/one-member.sh"
start_member "$bin" 127.0.0.94 "$@"
"$bench" put --endpoints $ep --clients 64 --conns 16 --total 20000 --val-size 256 --key-space-size 100000 > /dev/null
counted() {
  curl -s $ep/metrics | grep -E '^(cairn_proposal_batch|etcd_disk_wal_fsync_duration_seconds_(sum|count))'
}
counted > "$work/before"
"$bench" put --endpoints $ep --clients 64 --conns 16 --duration 8 --val-size 256 --key-space-size 100000 \
  | awk '/Requests\/sec/ {print "puts/s", $2}'
counted > "$work/after"
paste "$work/before" "$work/after" | awk '{printf "%s %.4f\n", $1, $4 - $2}'
