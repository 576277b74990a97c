#!/usr/bin/env bash
# Decode speed and memory of `mmtune generate` beside transformers' generate on the same model, same
# prompt, greedy, batch 1, same thread count, in one run. Models: the largest tiny test model and a
# random "small" LLaMA (D=512, 8 layers, V=32000) made on first use in build/bench-small.
#   scripts/bench_generate_compare.sh [NEW_TOKENS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MMTUNE_ROOT"
n="${1:-128}"
bin=build/bin/mmtune
[ -x "$bin" ] || { echo "build first: scripts/test.sh"; exit 1; }
[ -d build/tiny/llama-gqa ] || "$MMTUNE_PY" scripts/reference/make_tiny_checkpoints.py --out build/tiny >/dev/null
[ -d build/bench-small ] || "$MMTUNE_PY" scripts/reference/bench_generate.py --make-small build/bench-small \
  --tokenizer ../shared/models/llama2-tokenizer/tokenizer.model
threads=$(nproc)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); threads $threads; $n new tokens"
for model in build/tiny/llama-gqa build/bench-small; do
  for dtype in fp32 bf16; do
    log=$(mktemp)
    /usr/bin/time -f '%M' -o "$log.rss" "$bin" generate --model "$model" --prompt "Once upon a time" \
      --max-new-tokens "$n" --dtype "$dtype" --ignore-eos >/dev/null 2>"$log"
    load=$(grep -o 'in [0-9.e-]* s$' "$log" | head -1 | awk '{print $2}')
    tps=$(grep -o '[0-9.]* tok/s' "$log" | awk '{print $1}')
    echo "{\"impl\": \"mmtune\", \"model\": \"$model\", \"dtype\": \"$dtype\", \"load_s\": $load, \"tok_per_s\": $tps, \"peak_rss_mb\": $(( $(cat "$log.rss") / 1024 ))}"
    echo "$("$MMTUNE_PY" scripts/reference/bench_generate.py --model "$model" --new-tokens "$n" --dtype "$dtype" --threads "$threads" 2>/dev/null | sed "s|{|{\"model\": \"$model\", |")"
    rm -f "$log" "$log.rss"
  done
done
