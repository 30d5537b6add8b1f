#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real
# processes with the real etcdctl 3.5.1 and a real etcd 3.5.1.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup.sh --with-etcd
cargo build --release --workspace --all-targets
bash .ci/invariants.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast --test-threads 2
else
  cargo test --release --workspace --no-fail-fast -- --test-threads 2
fi
