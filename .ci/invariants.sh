#!/usr/bin/env bash
# Checks the architecture invariants of docs/ARCHITECTURE.md that a machine can
# check. Each check prints what broke it; the script fails if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=0

# Prints the offending lines under a heading and marks the run failed.
offends() {
  local what="$1" lines="$2"
  if [ -n "$lines" ]; then
    echo "invariant broken: $what" >&2
    echo "$lines" >&2
    failed=1
  fi
}

# Code lines only: comments may name what the code must not do.
rs() { grep -rn --include='*.rs' "$@" | grep -vE '^[^:]+:[0-9]+:\s*//' || true; }

offends "only store/src/engine names rocksdb" \
  "$(rs -w 'rocksdb' store/src | grep -v '^store/src/engine/')"

offends "only store/src/tls names rustls" \
  "$(rs -E '\b(tokio_)?rustls\b' store/src | grep -v '^store/src/tls/')"

offends "apply, mvcc and the auth store do no I/O and read no clock" \
  "$(rs -E 'std::(fs|net|thread|time)|tokio|Instant::now|SystemTime' store/src/apply store/src/mvcc store/src/auth/{mod,ranges,tests}.rs)"

offends "the auth tokens read no clock outside their tests: callers pass the time" \
  "$(sed '/^#\[cfg(test)\]/,$d' store/src/auth/tokens.rs | grep -nE 'Instant::now|SystemTime|std::fs|tokio')"

offends "the layers under raft and server never reach up into them" \
  "$(rs -E 'crate::(raft|server)' store/src/{apply,auth,cluster,engine,lease,mvcc,snapshot,state,watch} store/src/types.rs)"

offends "etcd's error messages are written only in error.rs" \
  "$(rs -E '"(etcdserver|mvcc): ' store/src | grep -v '^store/src/error.rs' | grep -v '/tests.rs:' | grep -v 'assert')"

offends "the chaos library does no I/O and reads no clock but the checker's budget" \
  "$(rs -E 'std::(fs|net|process)|tokio::(net|fs|process)|Instant::now|SystemTime' chaos/src --exclude-dir=bin | grep -v '^chaos/src/linearizable.rs')"

offends "the density run's measures and SLO table are pure (no I/O, no clock)" \
  "$(rs -E 'std::(fs|net|process|time)|tokio|Instant::now|SystemTime|\.await' benches/src/kube/measure.rs)"

# Member processes are started by the testkit alone. process.rs tests the
# binary's own flags, signals and exit codes; `cairn snapshot` is a tool run.
member_spawns() {
  rs -E 'Command::new\((cairn_binary\(\)|binaries::cairn\(\)|etcd_tool\("etcd"\))' store benches chaos/src apiserver 2>/dev/null \
    | grep -v '^store/tests/it/process.rs' \
    | while IFS=: read -r file line _; do
        sed -n "${line},$((line + 1))p" "$file" | grep -q '"snapshot"' || echo "$file:$line"
      done
}
offends "only the testkit starts members" "$(member_spawns)"

# Crate boundaries, from cargo's own dependency graph.
workspace_deps() { cargo tree --offline -p "$1" -e normal,build --prefix none 2>/dev/null | awk '{print $1}' | sort -u; }

offends "proto depends on nothing in the workspace" \
  "$(workspace_deps cairn-proto | grep -E '^cairn-' | grep -vx 'cairn-proto')"

# crates.io's base2histogram builds 41 MiB of tables in every member.
offends "base2histogram is the stand-in in store/patched, not crates.io's" \
  "$(awk '/^\[\[package\]\]/ { name = "" } /^name = / { name = $3 } name == "\"base2histogram\"" && /^source = / { print "Cargo.lock: base2histogram " $0 }' Cargo.lock)"

if [ -f apiserver/Cargo.toml ]; then
  offends "only apiserver/src/storage names etcd_client" \
    "$(rs -w 'etcd_client' apiserver/src | grep -v '^apiserver/src/storage/')"

  offends "RBAC decides without I/O and without a clock" \
  "$(rs -E 'std::(fs|net|thread|time)|tokio|Instant::now|SystemTime|meta::now' apiserver/src/rbac)"

offends "certificates decide and sign without I/O and without a clock" \
    "$(rs -E 'std::(fs|process)|std::net::(Tcp|Udp)|tokio::|Instant::now|Timestamp::now|SystemTime' apiserver/src/certificates)"

offends "selectors, tables, patches and the registry's kind rules do no I/O" \
    "$(rs -E 'std::(fs|net|process)|tokio|crate::storage' apiserver/src/selector.rs apiserver/src/table.rs apiserver/src/patch.rs apiserver/src/registry/{kinds,typed,validation}.rs)"

  offends "scheduler plugins, preemption, endpoint reconcile and proxy rules are pure (no I/O, no clock)" \
    "$(rs -E 'std::(fs|process)|std::net::(Tcp|Udp)|tokio|Instant::now|Timestamp::now|client::now|\.await' apiserver/src/scheduler/{plugins,preemption}.rs apiserver/src/proxy/rules.rs apiserver/src/controllers/endpoints.rs apiserver/src/quantity.rs | grep -v 'pub async fn pass')"

  offends "the cluster's components reach the store only through the API server" \
    "$(rs -E 'crate::(storage|registry|cacher)' apiserver/src/{client,controllers,scheduler,kubelet,proxy})"

  offends "the apiserver reaches the store only through the etcd API (no cairn-store)" \
    "$(for crate in $(cargo metadata --offline --no-deps --format-version 1 | python3 -c 'import json,sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"] if "/apiserver/" in p["manifest_path"]))'); do workspace_deps "$crate" | grep -x 'cairn-store'; done)"
fi

if [ "$failed" = 0 ]; then
  echo "invariants: all hold"
fi
exit "$failed"
