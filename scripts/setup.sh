#!/usr/bin/env bash
# The only install step of mmtune. Idempotent: a second run with everything present takes seconds.
#   scripts/setup.sh            Debian -dev packages + the Python venv (torch wheel + test oracles)
# Environment: MMTUNE_CACHE (default ~/.cache/mmtune) holds the venv; MMTUNE_TORCH_DEPS=toolkit|wheels
# forces how torch's CUDA libraries are provided (default: toolkit when its libraries are present).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t0=$(date +%s)

# ---- 1. Debian packages -------------------------------------------------------------------------
mapfile -t pkgs < <(grep -v '^\s*#' "$MMTUNE_ROOT/third_party/debian-packages.txt" | awk 'NF {print $1}')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || fail "apt-get update failed" "check that this machine reaches Debian's mirrors"
  if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    for p in "${missing[@]}"; do
      $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null ||
        fail "Debian package '$p' failed to install" "try: apt-get install $p; apt-cache policy $p"
    done
  fi
else
  say "Debian packages: all ${#pkgs[@]} present"
fi

# ---- 2. Python venv with the pinned torch wheel and the test oracles ----------------------------
toolkit_libs=(libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libnccl.so.2 libcusparse.so.12
              libcufft.so.12 libcurand.so.10 libnvJitLink.so.13 libcupti.so.13)
deps_mode="${MMTUNE_TORCH_DEPS:-}"
if [ -z "$deps_mode" ]; then
  deps_mode=toolkit
  cache=$(ldconfig -p)
  for l in "${toolkit_libs[@]}"; do grep -qE "^[[:space:]]+${l//./\\.} " <<<"$cache" || { deps_mode=wheels; break; }; done
fi
stamp="$MMTUNE_VENV/.mmtune-setup-$deps_mode"
if [ -f "$stamp" ] && "$MMTUNE_PY" -c 'import torch' 2>/dev/null; then
  say "Python venv: $MMTUNE_VENV (present, CUDA libraries from $deps_mode)"
else
  py="${MMTUNE_PYTHON:-python3}"
  command -v "$py" >/dev/null || fail "no $py on PATH" "install python3 (>= 3.10) or set MMTUNE_PYTHON"
  say "creating venv $MMTUNE_VENV (CUDA libraries from: $deps_mode)"
  mkdir -p "$MMTUNE_CACHE"
  "$py" -m venv "$MMTUNE_VENV" || fail "python venv creation failed" "apt-get install python3-venv"
  pip=("$MMTUNE_PY" -m pip install --no-deps --disable-pip-version-check -q)
  "${pip[@]}" -r "$MMTUNE_ROOT/third_party/python/requirements.lock" ||
    fail "pip install of third_party/python/requirements.lock failed" \
         "check PyPI access (pip index versions torch); the failing package is named above"
  if [ "$deps_mode" = wheels ]; then
    "${pip[@]}" -r "$MMTUNE_ROOT/third_party/python/cuda-runtime.lock" ||
      fail "pip install of third_party/python/cuda-runtime.lock failed" "check PyPI access and disk space (~3 GB)"
  fi
  touch "$stamp"
fi

# The serve tests' client: a small lock of its own, so adding it did not rebuild the torch venv
client_lock="$MMTUNE_ROOT/third_party/python/serve-client.lock"
client_stamp="$MMTUNE_VENV/.mmtune-client-$(sha256sum "$client_lock" | cut -c1-12)"
if [ ! -f "$client_stamp" ]; then
  "$MMTUNE_PY" -m pip install --no-deps --disable-pip-version-check -q -r "$client_lock" ||
    fail "pip install of third_party/python/serve-client.lock failed" "check PyPI access (pip index versions openai)"
  touch "$client_stamp"
fi

# ---- 3. Verify what we link and what the tests import ------------------------------------------
torch_lib=$("$MMTUNE_PY" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))') ||
  fail "import torch failed in $MMTUNE_VENV" "delete that folder and rerun scripts/setup.sh"
unresolved=$(ldd "$torch_lib/libtorch_cuda.so" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')
[ -z "$unresolved" ] || fail "libtorch_cuda.so needs libraries nothing provides: $unresolved" \
  "rerun with MMTUNE_TORCH_DEPS=wheels to install torch's CUDA wheels instead of using the toolkit"
"$MMTUNE_PY" - <<'PY' || fail "a Python oracle does not import" "delete the venv folder and rerun scripts/setup.sh"
import importlib
mods = ["torch", "transformers", "peft", "safetensors", "sentencepiece", "numpy", "PIL", "openai"]
found = []
for m in mods:
    mod = importlib.import_module(m)
    found.append(f"{m} {getattr(mod, '__version__', '?')}")
print("[setup] Python: " + ", ".join(found))
PY
say "torch CMake prefix: $("$MMTUNE_PY" -c 'import torch;print(torch.utils.cmake_prefix_path)')"
for tool in cmake ninja ccache g++; do say "$tool: $($tool --version | head -1)"; done
say "ready in $(( $(date +%s) - t0 )) s"
