#!/usr/bin/env bash
# Builds etcd v3.6.16 (the newest 3.6) and its etcdctl from Go modules, once,
# into $CAIRN_ETCD36_BIN_DIR (default ~/.cache/cairn/etcd-v3.6.16): the newer
# etcd that the Kubernetes runs and `cairn-bench compare` put beside Cairn.
# The server is etcdmain.Main behind a two-line main package. Nothing of it is
# committed. About 3 minutes on 2 cores.
set -euo pipefail
version=v3.6.16
dir="${CAIRN_ETCD36_BIN_DIR:-$HOME/.cache/cairn/etcd-$version}"
[ -x "$dir/etcd" ] && [ -x "$dir/etcdctl" ] && exit 0
command -v go >/dev/null 2>&1 || { echo "etcd-3.6: no Go toolchain; the runs that need etcd $version will say so" >&2; exit 0; }
echo "setup: building etcd $version into $dir (about 3 minutes)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/etcd" "$dir"
cat >"$work/etcd/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
cd "$work"
cat >go.mod <<GOMOD
module cairn.local/etcd

go 1.24
GOMOD
export GOFLAGS="-buildvcs=false -mod=mod"
go get "go.etcd.io/etcd/server/v3@$version" "go.etcd.io/etcd/etcdctl/v3@$version" >/dev/null
CGO_ENABLED=0 nice -n 19 go build -trimpath -o "$dir/etcd.tmp" ./etcd
CGO_ENABLED=0 nice -n 19 go build -trimpath -o "$dir/etcdctl.tmp" go.etcd.io/etcd/etcdctl/v3
mv "$dir/etcd.tmp" "$dir/etcd" && mv "$dir/etcdctl.tmp" "$dir/etcdctl"
