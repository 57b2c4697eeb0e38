#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer) one after another
# and prints per target the inputs executed, exec/s and wall time.
#
#   scripts/fuzz.sh --runs N [TARGET...]      N inputs per target
#   scripts/fuzz.sh --seconds S [TARGET...]   S seconds per target
#
# Targets: scan json decompress config (default: all). A crash stops the
# run with a non-zero exit; the input is in fuzz/artifacts/TARGET/ and
# `cargo fuzz run TARGET FILE` (with the flags below) replays it.
#
# Stable toolchain: cargo-fuzz passes -Z flags, which RUSTC_BOOTSTRAP=1
# allows. No sanitizer: seedgate denies unsafe code, so ASan would find
# nothing the Rust checks don't, and the build and runs are faster without
# it. Debug assertions (overflow checks) stay on, cargo-fuzz's default.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 --runs N | --seconds S [scan|json|decompress|config ...]" >&2
  exit 2
}
[ $# -ge 2 ] || usage
case "$1" in
  --runs) limit="-runs=$2" ;;
  --seconds) limit="-max_total_time=$2" ;;
  *) usage ;;
esac
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(scan json decompress config)

export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/seedgate-fuzz-target}"
flags=(--sanitizer none --target-dir "$target_dir")

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
python3 fuzz/seeds.py fuzz/corpus
cargo fuzz build "${flags[@]}"

logs=fuzz/artifacts/logs
mkdir -p "$logs"
total_runs=0
total_secs=0
printf '%-11s %12s %10s %8s %s\n' target inputs exec/s seconds corpus
for t in "${targets[@]}"; do
  dict=()
  [ -f "fuzz/corpus/$t.dict" ] && dict=("-dict=fuzz/corpus/$t.dict")
  start=$(date +%s.%N)
  if ! cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" -- \
    "$limit" -timeout=10 -print_final_stats=1 "${dict[@]}" >"$logs/$t.log" 2>&1; then
    echo "== $t FAILED; the end of $logs/$t.log:"
    tail -n 60 "$logs/$t.log"
    exit 1
  fi
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log")
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  printf '%-11s %12d %10d %8.1f %d\n' "$t" "$runs" "$rate" "$secs" "$corpus"
  total_runs=$((total_runs + runs))
  total_secs=$(awk -v a="$total_secs" -v b="$secs" 'BEGIN { print a + b }')
done
awk -v n="$total_runs" -v s="$total_secs" \
  'BEGIN { printf "%-11s %12d %10d %8.1f\n", "total", n, (s > 0 ? n / s : 0), s }'
