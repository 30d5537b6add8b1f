#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo fuzz (libFuzzer, AddressSanitizer) of the
# store's request decoders and apply path, and of the API server's request
# bodies and patches (docs/security.md, "Fuzzing").
#   bash .ci/fuzz.sh [seconds per target]    # default 600
# Nightly Rust and cargo-fuzz are installed if missing. Builds go to
# ~/.cache/cairn/fuzz-target; RocksDB is the one setup.sh compiled.
# Corpora are kept in ~/.cache/cairn/fuzz-corpus, crashes in each target's
# artifacts directory there. Fails on the first crash, leak or timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup.sh
seconds="${1:-600}"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --version 0.13.2 --locked
target_dir="$HOME/.cache/cairn/fuzz-target"
root="$HOME/.cache/cairn/fuzz-corpus"
for spec in store:write_requests apiserver:object_bodies apiserver:patches; do
  crate="${spec%%:*}" target="${spec#*:}"
  echo "fuzz: building $target" >&2
  cargo +nightly fuzz build --fuzz-dir "$crate/fuzz" --target-dir "$target_dir" "$target"
  mkdir -p "$root/$target" "$root/$target-artifacts"
  echo "fuzz: $target for ${seconds}s (corpus $root/$target)" >&2
  log="$root/$target.log"
  CAIRN_FUZZ_SEEDS="$root/$target" cargo +nightly fuzz run --fuzz-dir "$crate/fuzz" --target-dir "$target_dir" \
    "$target" "$root/$target" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$root/$target-artifacts/" -print_final_stats=1 >"$log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true' EXIT
  # Progress: libFuzzer's latest status line, every 30 seconds.
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    grep -E '^#[0-9]+' "$log" | tail -1 | sed "s/^/fuzz: $target /" >&2 || true
  done
  if ! wait "$pid"; then
    tail -60 "$log" >&2
    echo "fuzz: $target found something; the input is in $root/$target-artifacts" >&2
    exit 1
  fi
  grep -E '^stat::' "$log" | sed "s/^/fuzz: $target /" >&2 || true
done
echo "fuzz: every target ran ${seconds}s without a finding" >&2
