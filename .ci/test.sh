#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real
# processes with the real etcdctl 3.5.1 and a real etcd 3.5.1.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup.sh --with-etcd
cargo build --release --workspace --all-targets
# The integration tests start the member as it ships (see `.ci/member.sh`).
cargo build --profile dist --bin cairn
export CAIRN_MEMBER_BIN="$CARGO_TARGET_DIR/dist/cairn"
bash .ci/invariants.sh
# The client test suites bind 127.0.0.1:2379; they run last, alone, and print
# their results for etcd and cairn side by side.
suites=client_suites::
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast --test-threads 2 -E "not test(/$suites/)"
else
  # Unit tests one at a time: two RocksDB instances torn down at once at the
  # end of the process can abort it after every test has passed.
  cargo test --release --workspace --no-fail-fast --lib --bins -- --test-threads 1
  cargo test --release --workspace --no-fail-fast --test '*' -- --test-threads 2 --skip "$suites"
  cargo test --release --workspace --no-fail-fast --doc
fi
cargo test --release -p cairn-store --test it -- --nocapture "$suites"
