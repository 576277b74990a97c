#!/usr/bin/env bash
# `mmtune serve` under 1, 4 and 16 concurrent clients (tokens/s, p50/p99 latency), beside transformers
# generating the same requests one at a time (issue 19). The small shape is stories260K from
# ../shared/models (converted once into $MMTUNE_CACHE/bench-serve); --model DIR serves another
# Hugging Face directory instead (e.g. the 7B shape of scripts/bench_7b.sh, with -- --dtype bf16).
#   scripts/bench_serve.sh [--model DIR] [--clients "1 4 16"] [--requests 64] [--max-tokens 64]
#                          [--threads N] [--skip-reference] [--reference-dtype float32|bfloat16]
#                          [-- extra serve flags]
# One JSON object per line on stdout; BENCHMARKS.md has the numbers. MMTUNE_BIN overrides the binary.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MMTUNE_ROOT"
model="" clients="1 4 16" requests=64 max_tokens=64 threads=$(nproc) reference=1 ref_dtype=float32 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --max-tokens) max_tokens="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --skip-reference) reference=0; shift ;;
    --reference-dtype) ref_dtype="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) fail "unknown argument $1" "see the usage at the top of scripts/bench_serve.sh" ;;
  esac
done
bin="${MMTUNE_BIN:-$MMTUNE_ROOT/build/bin/mmtune}"
[ -x "$bin" ] || fail "no $bin" "build first: scripts/test.sh (or cmake --build build)"
if [ -z "$model" ]; then
  shared="${MMTUNE_SHARED_DIR:-$MMTUNE_ROOT/../shared}"
  model="$MMTUNE_CACHE/bench-serve/stories260K"
  if [ ! -f "$model/model.safetensors" ]; then
    "$MMTUNE_PY" scripts/convert_llama2c.py "$shared/models/stories260K/stories260K.bin" \
      --tokenizer "$shared/models/stories260K/tok512.model" --out "$model" >&2
  fi
fi
log=$(mktemp)
OMP_NUM_THREADS=$threads "$bin" serve --model "$model" --port 0 --max-batch 16 --max-queue 64 --name bench \
  "${extra[@]}" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 600); do
  port=$(grep -oE 'listening on http://[0-9.]+:[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || { cat "$log" >&2; fail "the server did not start" "see its log above"; }
  sleep 0.5
done
[ -n "$port" ] || fail "the server did not listen within 300 s" "see $log"
echo "[bench_serve] $("$bin" version 2>/dev/null | head -1), $(nproc) cores, OMP_NUM_THREADS=$threads, model $model" >&2
"$MMTUNE_PY" scripts/bench_serve.py --base "http://127.0.0.1:$port" --model bench --clients "$clients" \
  --requests "$requests" --max-tokens "$max_tokens"
echo "[bench_serve] server RSS: $(awk '/VmHWM/ {print $2 / 1024 " MiB peak"}' /proc/$pid/status)" >&2
kill -TERM $pid; wait $pid || true
if [ "$reference" = 1 ]; then
  "$MMTUNE_PY" scripts/bench_serve.py --transformers "$model" --requests "$requests" --max-tokens "$max_tokens" \
    --threads "$threads" --reference-dtype "$ref_dtype"
fi
