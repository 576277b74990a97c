# Shared by scripts/setup.sh and scripts/test.sh (sourced, not run).
# Where the Python venv lives: outside the repo, keyed by the lock file's hash, so a fresh clone on
# the same machine reuses it and a lock change builds a new one next to the old.
MMTUNE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MMTUNE_CACHE="${MMTUNE_CACHE:-$HOME/.cache/mmtune}"
mmtune_lock_hash() {
  cat "$MMTUNE_ROOT/third_party/python/requirements.lock" \
      "$MMTUNE_ROOT/third_party/python/cuda-runtime.lock" | sha256sum | cut -c1-12
}
MMTUNE_VENV="${MMTUNE_VENV:-$MMTUNE_CACHE/venv-$(mmtune_lock_hash)}"
MMTUNE_PY="$MMTUNE_VENV/bin/python"
say()  { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] error: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf '[setup]   hint: %s\n' "$2" >&2; exit 1; }

# The sanitizer build: clang, ASan + UBSan on every target, and the libFuzzer targets of tests/fuzz
# (CMake options MMTUNE_SANITIZE, MMTUNE_FUZZ). scripts/test.sh --sanitize and scripts/fuzz.sh share it.
MMTUNE_SANITIZE_DIR="${MMTUNE_SANITIZE_BUILD_DIR:-$MMTUNE_ROOT/build-sanitize}"
mmtune_configure_sanitize() {
  command -v clang++-14 >/dev/null || fail "clang++-14 not found" "run scripts/setup.sh (it installs clang-14)"
  mkdir -p "$MMTUNE_SANITIZE_DIR"
  cmake -S "$MMTUNE_ROOT" -B "$MMTUNE_SANITIZE_DIR" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 \
      -DMMTUNE_PYTHON="$MMTUNE_PY" -DMMTUNE_SANITIZE=ON -DMMTUNE_FUZZ=ON >"$MMTUNE_SANITIZE_DIR/configure.log" 2>&1 ||
    { cat "$MMTUNE_SANITIZE_DIR/configure.log"; fail "configuring the sanitizer build failed (log above)"; }
}
# At run time: a UBSan report aborts (the build also sets -fno-sanitize-recover); leaks are checked
# (LeakSanitizer) with the suppressions for libraries we do not build (tests/sanitizer/lsan.supp).
mmtune_sanitizer_env() {
  export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=0:check_initialization_order=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$MMTUNE_ROOT/tests/sanitizer/lsan.supp:print_suppressions=0}"
}
