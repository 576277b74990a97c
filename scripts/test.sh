#!/usr/bin/env bash
# The test command: setup -> configure -> build -> ctest (ends with ctest's summary line).
#   scripts/test.sh                 everything
#   scripts/test.sh -L unit         extra arguments go to ctest (labels: unit, integration, slow, gpu)
# Environment: MMTUNE_BUILD_DIR (default build/), MMTUNE_CACHE (venv cache, default ~/.cache/mmtune).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MMTUNE_ROOT"
bash scripts/setup.sh
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
ctest -j2 --output-on-failure "$@"
