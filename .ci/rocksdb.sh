# Sourced by setup.sh. RocksDB's C++ library, compiled once and linked by every
# profile: librocksdb-sys would otherwise compile it for each of `release` (the
# tests and tools) and `dist` (the member), 13 minutes each on 2 cores, with the
# same flags. Exports ROCKSDB_LIB_DIR and ROCKSDB_STATIC, which librocksdb-sys
# links instead of compiling. Kept per librocksdb-sys version (Cargo.lock's).

rocksdb_workspace="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rocksdb_sys_version="$(awk '$0 == "name = \"librocksdb-sys\"" { getline; gsub(/"/, "", $3); print $3 }' "$rocksdb_workspace/Cargo.lock")"
rocksdb_lib_dir="$HOME/.cache/cairn/rocksdb-$rocksdb_sys_version"

# The archive librocksdb-sys compiled into a target dir, if one is there: a
# build script's `output` names the crate's version and, when it compiled, its
# own out dir as a link search path.
rocksdb_compiled_archive() {
  local output out
  for output in "$CARGO_TARGET_DIR"/*/build/librocksdb-sys-*/output; do
    [ -f "$output" ] || continue
    grep -q "^cargo:cargo_manifest_dir=.*/librocksdb-sys-$rocksdb_sys_version\$" "$output" || continue
    out="$(dirname "$output")/out"
    if grep -qxF "cargo:rustc-link-search=native=$out" "$output" && [ -f "$out/librocksdb.a" ]; then
      echo "$out/librocksdb.a"
      return 0
    fi
  done
  return 1
}

if [ -n "$rocksdb_sys_version" ] && [ ! -f "$rocksdb_lib_dir/librocksdb.a" ]; then
  if ! archive="$(rocksdb_compiled_archive)"; then
    echo "setup: compiling RocksDB once (librocksdb-sys $rocksdb_sys_version), about 13 minutes on 2 cores" >&2
    (unset ROCKSDB_LIB_DIR ROCKSDB_STATIC &&
      cargo build --release --locked --quiet --manifest-path "$rocksdb_workspace/Cargo.toml" -p librocksdb-sys)
    archive="$(rocksdb_compiled_archive)" || { echo "setup: librocksdb-sys built no librocksdb.a" >&2; return 1; }
  fi
  mkdir -p "$rocksdb_lib_dir"
  cp "$archive" "$rocksdb_lib_dir/librocksdb.a.tmp"
  mv "$rocksdb_lib_dir/librocksdb.a.tmp" "$rocksdb_lib_dir/librocksdb.a"
fi
if [ -f "$rocksdb_lib_dir/librocksdb.a" ]; then
  export ROCKSDB_LIB_DIR="$rocksdb_lib_dir" ROCKSDB_STATIC=1
fi
unset -f rocksdb_compiled_archive
unset rocksdb_workspace rocksdb_sys_version rocksdb_lib_dir archive
