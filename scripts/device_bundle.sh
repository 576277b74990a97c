#!/usr/bin/env bash
# Packs the binaries built here for a machine that has the same PyTorch (LibTorch) but none of the
# Debian libraries (a GPU box with only a CUDA PyTorch image): the stripped binaries, and every shared
# library they need that is neither torch's, CUDA's nor the C runtime's, as one xz tarball.
#   scripts/device_bundle.sh [OUT_DIR (default .device-bundle)] [BINARY ...]
# On the other machine:
#   tar xJf OUT_DIR/libs.tar.xz -C /tmp
#   eval "$(bash scripts/device_env.sh /tmp/devlibs)"   # LD_LIBRARY_PATH: these libs + torch's + nvidia's
#   OUT_DIR/mmtune --version
# The torch version must match the build's (the script records it in OUT_DIR/torch-version).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MMTUNE_ROOT"
out="${1:-.device-bundle}"
shift || true
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(build/bin/mmtune)
rm -rf "$out" && mkdir -p "$out/devlibs"
for b in "${bins[@]}"; do
  strip -o "$out/$(basename "$b")" "$b"
  ldd "$b" | awk '$3 ~ /^\// {print $3}' |
    grep -Ev '/(torch|nvidia)/|/cuda[^/]*/|/(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+)\.so|ld-linux' |
    xargs -r -I{} cp -Ln {} "$out/devlibs/"
done
tar cf - -C "$out" devlibs | xz -T0 -6 > "$out/libs.tar.xz"
rm -rf "$out/devlibs"
"$MMTUNE_PY" -c 'import torch; print(torch.__version__)' > "$out/torch-version"
du -sh "$out"/*
