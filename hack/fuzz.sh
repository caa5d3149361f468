#!/usr/bin/env bash
# Fuzzes the pure core with cargo-fuzz (libFuzzer, on the nightly toolchain): duration
# parsing, policy and CEL evaluation, the approval lifecycle, the executor, and the audit
# log's reading and verification.
#
#   hack/fuzz.sh [SECONDS] [TARGET...]   each target for SECONDS (default 60), all by default
#
# A crash leaves its input under fuzz/artifacts/TARGET/; rerun it with
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(duration policy lifecycle execution audit)

rustup run nightly rustc --version >/dev/null 2>&1 ||
  die "fuzzing needs the nightly toolchain: rustup toolchain install nightly"
FUZZ_BIN=$CACHE_DIR/bin/cargo-fuzz-$CARGO_FUZZ_VERSION
if [ ! -x "$FUZZ_BIN/bin/cargo-fuzz" ]; then
  with_progress "building cargo-fuzz $CARGO_FUZZ_VERSION" "$CACHE_DIR/logs/cargo-fuzz-build.log" \
    cargo install --quiet --locked --root "$FUZZ_BIN.tmp" cargo-fuzz --version "$CARGO_FUZZ_VERSION"
  rm -rf "$FUZZ_BIN" && mv "$FUZZ_BIN.tmp" "$FUZZ_BIN"
fi
export PATH=$FUZZ_BIN/bin:$PATH

with_progress "building the fuzz targets (the first build takes several minutes)" "$LOCAL_DIR/logs/fuzz-build.log" \
  cargo +nightly fuzz build --fuzz-dir fuzz
for target in "${targets[@]}"; do
  corpus=$LOCAL_DIR/fuzz/corpus/$target
  mkdir -p "$corpus"
  log "fuzzing $target for ${seconds}s"
  out=$LOCAL_DIR/logs/fuzz-$target.log
  if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30 >"$out" 2>&1; then
    tail -n 60 "$out" >&2
    die "fuzz target $target failed; its input is under fuzz/artifacts/$target/ and the log in $out"
  fi
  grep -E '^(#[0-9]+|Done)' "$out" | tail -n 1 >&2 || true
done
log "fuzzing: ${targets[*]} ran ${seconds}s each without a failure"
