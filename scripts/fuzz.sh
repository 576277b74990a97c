#!/usr/bin/env bash
# Fuzz every parser of outside data (tests/fuzz/README.md): builds the libFuzzer targets in the
# sanitizer build (clang, ASan + UBSan, build-sanitize/), makes their seeds from the test fixtures,
# and runs each target for SECONDS (default 60), one per core at a time, keeping its corpus between runs.
#   scripts/fuzz.sh [SECONDS] [TARGET ...]     targets: the names after fuzz_ (default: all)
# Exit status 1 when any target finds something: the input that triggered it is under
# build-sanitize/fuzz/<target>/findings/ and its log beside it. The last lines are a table of
# executions per target, as libFuzzer counted them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MMTUNE_ROOT"
secs="${1:-60}"
[ $# -gt 0 ] && shift
bash scripts/setup.sh
mmtune_configure_sanitize
B="$MMTUNE_SANITIZE_DIR"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp | sed 's/^fuzz_//')"); done
fi
t0=$(date +%s)
cmake --build "$B" -j "${MMTUNE_JOBS:-$(nproc)}" --target $(printf 'fuzz_%s ' "${targets[@]}")
echo "[fuzz] build $(($(date +%s) - t0)) s"

# seeds: the tiny checkpoints (the fixture the tests use), then every target's seeds from them
shared="${MMTUNE_SHARED_DIR:-$MMTUNE_ROOT/../shared}"
"$MMTUNE_PY" scripts/reference/make_tiny_checkpoints.py --out "$B/tiny" >/dev/null
seeds="$B/fuzz/seeds"
"$MMTUNE_PY" tests/fuzz/make_seeds.py --tiny "$B/tiny" --shared "$shared" --source "$MMTUNE_ROOT" --out "$seeds" >/dev/null
export MMTUNE_FUZZ_TINY="$B/tiny"
mmtune_sanitizer_env
export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"  # per input a leak check would dominate; leaks: --sanitize
MMTUNE_FUZZ_SEED_OUT="$seeds/adapter_checkpoint/seed-fresh-mma" "$B/bin/fuzz_adapter_checkpoint" >/dev/null 2>&1 ||
  { mkdir -p "$seeds/adapter_checkpoint" && MMTUNE_FUZZ_SEED_OUT="$seeds/adapter_checkpoint/seed-fresh-mma" "$B/bin/fuzz_adapter_checkpoint"; }

# one target per core at a time (MMTUNE_FUZZ_JOBS, default nproc): each still gets SECONDS of its own
run_target() {
  local t="$1" dir="$B/fuzz/$1"
  rm -rf "$dir/findings"  # this run's findings only (an earlier one's input stays in the corpus if it was kept)
  mkdir -p "$dir/corpus" "$dir/findings"
  local in=("$dir/corpus")
  [ -d "$seeds/$t" ] && in+=("$seeds/$t")
  [ -d "tests/fuzz/corpus/$t" ] && in+=("tests/fuzz/corpus/$t")
  # -rss_limit_mb / -malloc_limit_mb: an input that makes the parser allocate more than 2 GB is a finding
  # (sizes from files are checked before allocating); -timeout: one input may take at most 10 s
  local status=0
  "$B/bin/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=3072 -malloc_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$dir/findings/" "${in[@]}" >"$dir/log" 2>&1 || status=$?
  echo "$status" >"$dir/status"
}
jobs_max="${MMTUNE_FUZZ_JOBS:-$(nproc)}"
for t in "${targets[@]}"; do
  rm -f "$B/fuzz/$t/status"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  run_target "$t" &
done
wait

rc=0
report=()
for t in "${targets[@]}"; do
  dir="$B/fuzz/$t"
  status=$(cat "$dir/status" 2>/dev/null || echo "?")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)
  if [ "$status" != 0 ]; then
    rc=1
    echo "[fuzz] $t: FINDING (exit $status) -- the end of $dir/log:"
    grep -v '^#' "$dir/log" | tail -40
    report+=("$(printf '%-20s %12s %8s  FINDING: %s' "$t" "${runs:-?}" "${speed:-?}" "$(ls "$dir/findings" | head -1)")")
  else
    report+=("$(printf '%-20s %12s %8s  ok' "$t" "${runs:-?}" "${speed:-?}")")
  fi
done
echo "[fuzz] $secs s per target, $jobs_max at a time (corpora and logs in $B/fuzz/<target>/)"
printf '%-20s %12s %8s\n' target executions "exec/s"
printf '%s\n' "${report[@]}"
exit "$rc"
