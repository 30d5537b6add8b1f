#!/usr/bin/env bash
# Builds cairn and runs one member with etcd's defaults: client 127.0.0.1:2379,
# peer 127.0.0.1:2380, data dir ./default.etcd. Extra arguments go to cairn.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup.sh
# The shipped build (`dist`: release with whole-program optimization).
cargo build --profile dist --bin cairn
exec "$CARGO_TARGET_DIR/dist/cairn" "$@"
