#!/usr/bin/env bash
# The test command: setup -> configure -> build -> ctest (ends with ctest's summary line).
#   scripts/test.sh                 everything, then the numerics label twice more (below)
#   scripts/test.sh -L unit         extra arguments go to ctest (labels: unit, integration, slow, gpu,
#                                   numerics); only that one ctest run
#   scripts/test.sh --sanitize      the unit label built with clang, ASan + UBSan (build-sanitize/, where
#                                   scripts/fuzz.sh's targets live too); extra arguments go to ctest
#                                   (default -L unit)
# The numerics label (tests/numerics.h) holds every test whose verdict rests on a floating-point
# bound. A full run repeats it once more with the kernels another x86-64 CPU would pick: ATen's
# portable kernels (ATEN_CPU_CAPABILITY=default), oneDNN and MKL capped at AVX2
# (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS) instead of this machine's AVX-512 (bf16) ones, MKL
# told the CPU is an Intel one (LD_PRELOAD of tests/kernels/mkl_as_on_intel.cpp: MKL picks its
# kernels by vendor before instruction set, so on AMD the AVX2 cap alone changed nothing), and two
# intra-op threads in the test processes (MMTUNE_TEST_THREADS=2; the first run uses one): other
# kernels and another reduction split in one pass (both were separate passes; CI's time).
# Environment: MMTUNE_BUILD_DIR (default build/), MMTUNE_CACHE (venv cache, default ~/.cache/mmtune).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MMTUNE_ROOT"
bash scripts/setup.sh
if [ "${1:-}" = "--sanitize" ]; then
  shift
  mmtune_configure_sanitize
  t0=$(date +%s)
  cmake --build "$MMTUNE_SANITIZE_DIR" -j "${MMTUNE_JOBS:-$(nproc)}" --target mmtune_unit_tests
  echo "[test] sanitizer build (unit tests) $(($(date +%s) - t0)) s"
  mmtune_sanitizer_env
  cd "$MMTUNE_SANITIZE_DIR"
  [ $# -gt 0 ] || set -- -L unit
  exec ctest -j2 --output-on-failure "$@"
fi
build="${MMTUNE_BUILD_DIR:-$MMTUNE_ROOT/build}"
mkdir -p "$build"
t0=$(date +%s)
cmake -S . -B "$build" -G Ninja -DMMTUNE_PYTHON="$MMTUNE_PY" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; echo "[test] configure failed (log above)"; exit 1; }
t1=$(date +%s)
cmake --build "$build" -j "${MMTUNE_JOBS:-$(nproc)}"
t2=$(date +%s)
echo "[test] configure $((t1 - t0)) s, build $((t2 - t1)) s"
cd "$build"
if [ $# -gt 0 ]; then
  exec ctest -j2 --output-on-failure "$@"
fi
rc=0
ctest -j2 --output-on-failure || rc=1
t3=$(date +%s)
# absolute (ctest runs tests in other folders), and there: the loader ignores a missing preload
# with a warning, which would quietly make this pass the first one again
as_intel="$(pwd)/lib/libmmtune_mkl_as_on_intel.so"
[ -f "$as_intel" ] || { echo "[test] $as_intel is missing: the build did not make mmtune_mkl_as_on_intel"; exit 1; }
pass_env=(ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 MMTUNE_TEST_THREADS=2
          LD_PRELOAD="$as_intel${LD_PRELOAD:+:$LD_PRELOAD}")
echo "[test] numerics again with other CPU kernels and two threads: ${pass_env[*]}"
check=0  # in this pass's environment, MKL asks the preload (77: this LibTorch has no MKL, nothing to redirect)
env "${pass_env[@]}" "$MMTUNE_PY" "$MMTUNE_ROOT/tests/kernels/check_mkl_as_on_intel.py" || check=$?
[ "$check" -eq 0 ] || [ "$check" -eq 77 ] || rc=1
env "${pass_env[@]}" ctest -j1 --output-on-failure -L numerics || rc=1
t4=$(date +%s)
echo "[test] all tests $((t3 - t2)) s, numerics with other kernels and threads $((t4 - t3)) s"
[ "$rc" -eq 0 ] || echo "[test] FAILED: a ctest run above has failures"
exit "$rc"
