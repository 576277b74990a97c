#!/usr/bin/env bash
# A 7B-shaped LLaMA + a ViT-L/14 on one machine (issue 18): load time, peak memory, prefill and decode
# tokens/s at batch 1 and 8 for bf16, int8 and int4 (mmtune bench generate), transformers' bf16
# generate on the same weights, the memory-bandwidth bound of decoding (each generate line gets
# bandwidth_bound_tok_per_s and bandwidth_bound_fraction), and one LaVIN-7B training
# step on the int4 base with activation checkpointing. One JSON object per line on stdout (and in
# --out); BENCHMARKS.md has the numbers.
#   scripts/bench_7b.sh [--device cpu|cuda] [--random-weights] [--new-tokens N] [--prompt-length P]
#                       [--batches "1 8"] [--steps N] [--warmup N] [--train-batch B] [--train-length T]
#                       [--skip-train] [--skip-reference] [--quant "none int8 int4"] [--out FILE.jsonl]
#                       [-- key=value ...]
# The defaults are the GPU run's; a 2-core CPU box takes e.g. --prompt-length 32 --new-tokens 16
# --steps 1 --train-batch 1 --train-length 128 (BENCHMARKS.md has the exact command).
# Weights: random bf16 from a fixed seed (scripts/reference/make_bench_weights.py), ~13.5 GB for the
# LLM + 0.6 GB for the ViT, written once to $MMTUNE_CACHE/bench-7b and reused. --random-weights
# draws them in memory instead (no files, no load time: what the GPU check uses).
# MMTUNE_BIN overrides the binary (default build/bin/mmtune).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MMTUNE_ROOT"
device=cpu random=0 new_tokens=32 train=1 reference=1 out=/dev/null extra=() quants="none int8 int4"
prompt_length=128 batches="1 8" steps=2 warmup=1 train_batch=4 train_length=512
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --random-weights) random=1; shift ;;
    --new-tokens) new_tokens="$2"; shift 2 ;;
    --prompt-length) prompt_length="$2"; shift 2 ;;
    --batches) batches="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --train-batch) train_batch="$2"; shift 2 ;;
    --train-length) train_length="$2"; shift 2 ;;
    --skip-train) train=0; shift ;;
    --skip-reference) reference=0; shift ;;
    --out) out="$2"; shift 2 ;;
    --quant) quants="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
done
bin="${MMTUNE_BIN:-build/bin/mmtune}"
py="${MMTUNE_BENCH_PY:-$MMTUNE_PY}"
[ -x "$bin" ] || { echo "build first: scripts/test.sh (or set MMTUNE_BIN)" >&2; exit 1; }
: > "$out"
status=0  # a failed measurement is reported as such; the others still run
emit() { echo "$1"; echo "$1" >> "$out"; }

cfg="${MMTUNE_BENCH_CONFIG:-configs/lavin/scienceqa-7b.yaml}"  # another config: a smoke test of this script
weights=(--random-weights)
if [ "$random" = 0 ]; then
  dir="$MMTUNE_CACHE/bench-7b"
  "$py" scripts/reference/make_bench_weights.py --out "$dir" --llm llama-7b --vit clip-vit-l14 \
    --tokenizer ../shared/models/llama2-tokenizer/tokenizer.model >&2
  weights=(model.path="$dir/llama-7b" vision.path="$dir/clip-vit-l14")
fi
common=(--config "$cfg" "${weights[@]}" device="$device" dtype=bf16 model.tokenizer=../shared/models/llama2-tokenizer/tokenizer.model)
[ "$device" = cpu ] && common+=(--threads "$(nproc)")
common+=("${extra[@]}")

# decode is memory-bound: every token reads every weight once. Copy bandwidth (read + write bytes / s)
# of a 1 GiB buffer, the same way on CPU or GPU.
bw=$("$py" - "$device" <<'EOF'
import sys, time, torch
dev = sys.argv[1]
a = torch.ones(1 << 28, device=dev); b = torch.empty_like(a)
for _ in range(2): b.copy_(a)
if dev == "cuda": torch.cuda.synchronize()
t = time.perf_counter(); n = 5
for _ in range(n): b.copy_(a)
if dev == "cuda": torch.cuda.synchronize()
print(2 * a.numel() * 4 * n / (time.perf_counter() - t))
EOF
)
emit "{\"what\": \"copy_bandwidth\", \"device\": \"$device\", \"bytes_per_s\": $bw}"
# A result line with the bound added: batch x copy bandwidth / the bytes of weights a decode step
# reads ("decode_weight_bytes", which mmtune bench and bench_generate.py report), and the decode
# rate as a fraction of it (transformers' rate includes its prefill, as its line says).
with_bound() {
  "$py" - "$1" "$bw" <<'EOF'
import json, sys
r, bw = json.loads(sys.argv[1]), float(sys.argv[2])
rate, nbytes = r.get("decode_tok_per_s", r.get("tok_per_s")), r.get("decode_weight_bytes")
if rate and nbytes:
    r["bandwidth_bound_tok_per_s"] = round(r.get("batch", 1) * bw / nbytes, 3)
    r["bandwidth_bound_fraction"] = round(rate / r["bandwidth_bound_tok_per_s"], 3)
print(json.dumps(r))
EOF
}

for q in $quants; do
  for batch in $batches; do
    json=$(mktemp)
    if "$bin" bench generate "${common[@]}" --quantize "$q" --batch "$batch" --prompt-length "$prompt_length" \
      --new-tokens "$new_tokens" --steps "$steps" --warmup "$warmup" --json "$json" >/dev/null; then
      emit "$(with_bound "$(cat "$json")")"
    else
      emit "{\"mode\": \"generate\", \"quantize\": \"$q\", \"batch\": $batch, \"failed\": true}"; status=1
    fi
    rm -f "$json"
  done
done

if [ "$reference" = 1 ] && [ "$random" = 0 ]; then
  emit "$(with_bound "$("$py" scripts/reference/bench_generate.py --model "$dir/llama-7b" --new-tokens "$new_tokens" \
    --dtype bf16 --threads "$(nproc)" 2>/dev/null)")"
fi

if [ "$train" = 1 ]; then
  for q in $quants; do
    [ "$q" = int8 ] && continue  # LaVIN-lite's recipe is int4; bf16 is the reference
    [ "$device" = cpu ] && [ "$q" = none ] && continue  # 7B bf16 training does not fit 24 GiB
    json=$(mktemp)
    if "$bin" bench train "${common[@]}" --quantize "$q" train.activation_checkpointing=true \
      train.micro_batch_size="$train_batch" data.max_length="$train_length" --steps "$steps" --warmup "$warmup" --json "$json" >/dev/null; then
      emit "$(tr -d '\n' < "$json" | tr -s ' ')"
    else
      emit "{\"mode\": \"train\", \"quantize\": \"$q\", \"failed\": true}"; status=1
    fi
    rm -f "$json"
  done
fi
exit $status
