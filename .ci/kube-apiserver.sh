#!/usr/bin/env bash
# Builds the real kube-apiserver v1.33.7 from Go modules into
# $CAIRN_KUBE_APISERVER (default ~/.cache/cairn/kube-v1.33.7/kube-apiserver),
# once: the specification cairn-kube's differential tests compare against.
# Nothing of it is committed. About 6 minutes on 2 cores.
set -euo pipefail
target="${CAIRN_KUBE_APISERVER:-$HOME/.cache/cairn/kube-v1.33.7/kube-apiserver}"
[ -x "$target" ] && exit 0
command -v go >/dev/null 2>&1 || { echo "kube-apiserver: no Go toolchain; the differential tests will say so" >&2; exit 0; }
echo "setup: building kube-apiserver v1.33.7 into $target (about 6 minutes)" >&2
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOFLAGS="-buildvcs=false -mod=mod"
module="$(go mod download -json k8s.io/kubernetes@v1.33.7 | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$module" "$work/src" && chmod -R u+w "$work/src" && cd "$work/src"
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
flags=""
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  flags="$flags -X '$pkg.gitVersion=v1.33.7' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=33'"
done
mkdir -p "$(dirname "$target")"
CGO_ENABLED=0 GOFLAGS="$GOFLAGS -p=1" nice -n 19 go build -trimpath -ldflags "$flags" -o "$target.tmp" ./cmd/kube-apiserver
mv "$target.tmp" "$target"
