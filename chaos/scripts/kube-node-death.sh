#!/usr/bin/env bash
# The node-death timeline with the default timings: `cairn-kube up` with 3
# hollow nodes, a 3-replica Deployment, then the kubelet of hollow-node-2 is
# killed at T0. Prints, second by second, the node's Ready condition, its
# taints and the pods, then when each step of the timeline happened.
# Usage: chaos/scripts/kube-node-death.sh   (about 6 minutes; the suite runs
# the same scenario with the timings shortened, in t72).
set -euo pipefail
bin="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}/release"
kubectl="${CAIRN_KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.32}"
dir="$(mktemp -d)"
setsid "$bin/cairn-kube" up --dir "$dir/cluster" --address 127.0.0.1 --apiserver-port 26443 \
  --store-port 26379 --proxy-port 26249 --replicas 1 >"$dir/up.log" 2>&1 &
up=$!
trap 'kill -TERM $up 2>/dev/null; sleep 3; kill -KILL -- -$up 2>/dev/null; rm -rf "$dir"' EXIT
export KUBECONFIG="$dir/cluster/kubeconfig"
for _ in $(seq 120); do
  [ "$($kubectl get nodes --no-headers 2>/dev/null | grep -c ' Ready')" = 3 ] && break
  sleep 1
done
$kubectl create deployment web --image=cairn.io/echo --replicas=3 >/dev/null
$kubectl rollout status deployment/web --timeout=120s >/dev/null
$kubectl get pods -o wide
doomed="$($kubectl get pods -o jsonpath='{range .items[?(@.spec.nodeName=="hollow-node-2")]}{.metadata.name}{"\n"}{end}')"
echo "killing hollow-node-2's kubelet; its pods: $doomed"
t0=$(date +%s)
kill -KILL "$(cat "$dir/cluster/logs/kubelet-2.pid")"
unknown="" evicted="" replaced=""
for _ in $(seq 420); do
  sleep 1
  now=$(( $(date +%s) - t0 ))
  ready="$($kubectl get node hollow-node-2 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')"
  taints="$($kubectl get node hollow-node-2 -o jsonpath='{range .spec.taints[*]}{.key}:{.effect} {end}')"
  deleting="$($kubectl get pod $doomed -o jsonpath='{.metadata.deletionTimestamp}' 2>/dev/null || true)"
  running_elsewhere="$($kubectl get pods -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.spec.nodeName} {.metadata.deletionTimestamp}{"\n"}{end}' | grep -v hollow-node-2 | grep -c '^hollow-node-[01] $' || true)"
  printf 'T0+%3ss  Ready=%-7s taints=[%s] evicted=%s running-elsewhere=%s\n' "$now" "$ready" "$taints" "${deleting:+yes}" "$running_elsewhere"
  [ -z "$unknown" ] && [ "$ready" = Unknown ] && unknown=$now
  [ -z "$evicted" ] && [ -n "$deleting" ] && evicted=$now
  [ -n "$evicted" ] && [ -z "$replaced" ] && [ "$running_elsewhere" = 3 ] && replaced=$now
  [ -n "$replaced" ] && break
done
echo
echo "node Unknown, tainted:        T0+${unknown:-never}s   (grace 40s, monitor period 5s)"
echo "pods evicted:                 T0+${evicted:-never}s   (grace + 300s toleration)"
echo "replacements Running elsewhere: T0+${replaced:-never}s"
