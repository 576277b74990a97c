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
