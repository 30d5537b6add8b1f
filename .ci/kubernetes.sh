#!/usr/bin/env bash
# Builds the upstream Kubernetes v1.33.7 control plane from Go modules, once,
# into $CAIRN_KUBE_DIR (default ~/.cache/cairn/kube-v1.33.7): kube-apiserver,
# kube-controller-manager, kube-scheduler and the e2e.test binary. Arguments
# name the ones wanted (default: all four, and ginkgo's CLI, which runs
# e2e.test in parallel processes). Nothing of it is committed.
# On 2 cores: kube-apiserver about 6 minutes, each of the others 3 to 15 more.
set -euo pipefail
dir="${CAIRN_KUBE_DIR:-$HOME/.cache/cairn/kube-v1.33.7}"
wanted=("$@")
[ "${#wanted[@]}" -gt 0 ] || wanted=(kube-apiserver kube-controller-manager kube-scheduler e2e.test ginkgo)
missing=()
for binary in "${wanted[@]}"; do [ -x "$dir/$binary" ] || missing+=("$binary"); done
[ "${#missing[@]}" -gt 0 ] || exit 0
command -v go >/dev/null 2>&1 || { echo "kubernetes: no Go toolchain; the tests that need ${missing[*]} will say so" >&2; exit 0; }
export GOFLAGS="-buildvcs=false -mod=mod"
src="$dir/src"
if [ ! -f "$src/.prepared" ]; then
  echo "setup: preparing k8s.io/kubernetes v1.33.7 in $src" >&2
  module="$(go mod download -json k8s.io/kubernetes@v1.33.7 | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$dir" && rm -rf "$src" && cp -r "$module" "$src" && chmod -R u+w "$src"
  (
    cd "$src"
    rm -rf go.work go.work.sum vendor
    # The staging modules are published on their own: require them instead of ./staging.
    python3 - <<'PY'
import re
s = open("go.mod").read()
s = re.sub(r"\nreplace \(\n(.*?)\n\)\n", "\n", s, flags=re.S)
s = re.sub(r"(\tk8s\.io/[a-z0-9-]+) v0\.0\.0\n", r"\1 v0.33.7\n", s)
open("go.mod", "w").write(s)
PY
    # A few staging modules are not served at v0.33.7 by every proxy; these
    # releases differ from v0.33.7 only in their go.mod.
    sed -i -E 's#^(\tk8s\.io/(cluster-bootstrap|dynamic-resource-allocation)) v0\.33\.7$#\1 v0.33.6#; s#^(\tk8s\.io/(cri-client|csi-translation-lib|endpointslice|externaljwt|kube-controller-manager|sample-apiserver|kube-proxy)) v0\.33\.7$#\1 v0.33.5#' go.mod
    go mod download
  )
  touch "$src/.prepared"
fi
flags=""
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  flags="$flags -X '$pkg.gitVersion=v1.33.7' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=33'"
done
cd "$src"
for binary in "${missing[@]}"; do
  echo "setup: building $binary v1.33.7 into $dir" >&2
  if [ "$binary" = e2e.test ]; then
    CGO_ENABLED=0 GOFLAGS="$GOFLAGS -p=2" nice -n 19 go test -c -trimpath -ldflags "$flags" -o "$dir/$binary.tmp" ./test/e2e
  elif [ "$binary" = ginkgo ]; then
    # The version k8s.io/kubernetes's go.mod pins, as its e2e.test expects.
    CGO_ENABLED=0 nice -n 19 go build -trimpath -o "$dir/$binary.tmp" github.com/onsi/ginkgo/v2/ginkgo
  else
    CGO_ENABLED=0 GOFLAGS="$GOFLAGS -p=2" nice -n 19 go build -trimpath -ldflags "$flags" -o "$dir/$binary.tmp" "./cmd/$binary"
  fi
  mv "$dir/$binary.tmp" "$dir/$binary"
done
