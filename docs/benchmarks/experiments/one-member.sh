# Sourced by the experiment scripts: a work dir and the processes in `pids`,
# both gone when the script exits; `start_member BINARY IP [FLAG...]` starts
# one member (cairn or etcd: the same flags) on IP's ports 23379 and 23380,
# waits until it answers, and sets `ep` to its client URL.
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null
  for _ in $(seq 100); do kill -0 "${pids[@]}" 2>/dev/null || break; sleep 0.1; done
  rm -rf "$work"
}
trap cleanup EXIT
start_member() {
  local bin=$1 ip=$2
  shift 2
  ep=http://$ip:23379
  "$bin" --name m1 --data-dir "$work/m1" \
    --listen-client-urls $ep --advertise-client-urls $ep \
    --listen-peer-urls http://$ip:23380 --initial-advertise-peer-urls http://$ip:23380 \
    --initial-cluster m1=http://$ip:23380 "$@" 2> "$work/m1.log" > /dev/null &
  pids+=($!)
  for _ in $(seq 100); do "$etcdctl" --endpoints=$ep endpoint status 2>/dev/null | grep -q "$ip" && break; sleep 0.2; done
}
