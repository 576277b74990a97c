#!/usr/bin/env bash
# Training-step speed of `mmtune bench train` beside scripts/bench_reference.py (the same model in
# eager PyTorch: transformers + SDPA + hooks) on the same batches, thread count and dtype, in one
# run; prints a table and the ratio (then the same for batched generation, `bench generate`).
# Shapes: the tiny LaVIN test config (configs/lavin/tiny.yaml on the tiny checkpoints, the same
# weights on both sides) and "small" (a random LLaMA D=512 x 8 layers, V=32000 + ViT W=384 x 8
# layers at 224 px; `bench_reference.py shapes`). Runs alternate mmtune / reference, REPEATS times
# each; the table takes each side's best run (the least disturbed on a shared machine) and also
# shows the CPU time per step, which other load on the machine disturbs less than wall time; the
# ratios are given for the best runs and for the medians over runs (robust to one lucky run).
#   scripts/bench_compare.sh [STEPS] [THREADS] [REPEATS] [SHAPES] [MODES]
#   defaults: 20 $(nproc) 3 "tiny small" "train generate" (generation: batch 8, 64-token prompts,
#   32 new tokens, (STEPS + 3) / 4 repetitions after 1 warm-up)
# Every JSON report is kept in build/bench/. BENCHMARKS.md records the results.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MMTUNE_ROOT"
steps="${1:-20}"
threads="${2:-$(nproc)}"
repeats="${3:-3}"
shapes="${4:-tiny small}"
modes="${5:-train generate}"
warmup=3
bin=build/bin/mmtune
out=build/bench
[ -x "$bin" ] || { echo "build first: scripts/test.sh"; exit 1; }
mkdir -p "$out"
[ -d build/tiny/llama-gqa ] || "$MMTUNE_PY" scripts/reference/make_tiny_checkpoints.py --out build/tiny >/dev/null
[ -f "$out/small-shape/llama/config.json" ] || "$MMTUNE_PY" scripts/bench_reference.py shapes --out "$out/small-shape" >/dev/null

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "torch $("$MMTUNE_PY" -c 'import torch, transformers; print(torch.__version__, "/ transformers", transformers.__version__)');" \
     "$threads threads, best of $repeats runs each; train: $steps steps after $warmup warm-up"
for shape in $shapes; do
  case "$shape" in
    tiny)  overrides=(model.path=build/tiny/llama-gqa vision.path=build/tiny/clip-vit); random=() ;;
    small) overrides=(model.path=$out/small-shape/llama vision.path=$out/small-shape/clip vision.image_size=224
                      vision.cls_every=2 vision.projector_hidden=128 adapter.mma.llm_placement=attn)
           random=(--random-weights) ;;
    *) echo "unknown shape $shape (tiny | small)"; exit 2 ;;
  esac
  "$bin" config print --config configs/lavin/tiny.yaml "${overrides[@]}" > "$out/$shape.yaml"
  for mode in $modes; do
    if [ "$mode" = train ]; then args=(--steps "$steps" --warmup "$warmup")
    else args=(--steps $(( (steps + 3) / 4 )) --warmup 1 --batch 8 --prompt-length 64 --new-tokens 32); fi
    for r in $(seq "$repeats"); do
      "$bin" bench "$mode" --config configs/lavin/tiny.yaml "${overrides[@]}" "${random[@]}" "${args[@]}" \
        --threads "$threads" --json "$out/$shape.$mode.mmtune.$r.json" >/dev/null 2>"$out/$shape.$mode.mmtune.$r.log"
      "$MMTUNE_PY" scripts/bench_reference.py "$mode" --config "$out/$shape.yaml" "${random[@]}" "${args[@]}" \
        --threads "$threads" --json "$out/$shape.$mode.reference.$r.json" >/dev/null 2>"$out/$shape.$mode.reference.$r.log"
    done
  done
done

"$MMTUNE_PY" - "$out" "$repeats" "$modes" $shapes <<'PY'
import json, statistics, sys
out, repeats, modes, shapes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]


def runs(shape, mode, impl):
    return [json.load(open(f"{out}/{shape}.{mode}.{impl}.{r}.json")) for r in range(1, repeats + 1)]


def best(shape, mode):
    """Each side's run with the lowest step p50, plus its best CPU time (and generation rates)."""
    b = {}
    for impl in ("mmtune", "reference"):
        rs = runs(shape, mode, impl)
        b[impl] = dict(min(rs, key=lambda j: j["step_s_p50"]), cpu_best=min(j["cpu_s_per_step"] for j in rs),
                       p50_median=statistics.median(j["step_s_p50"] for j in rs))
        if mode == "generate":
            b[impl]["prefill_best"] = max(j["prefill_tok_per_s"] for j in rs)
            b[impl]["decode_best"] = max(j["decode_tok_per_s"] for j in rs)
    return b["mmtune"], b["reference"]


lines = []
if "train" in modes:
    print("\n| shape | impl | tokens/s | samples/s | step p50 ms | step p90 ms | CPU ms/step | peak RSS MB | loss first -> last |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for shape in shapes:
        m, ref = best(shape, "train")
        for impl, b in (("mmtune", m), ("reference", ref)):
            print(f"| {shape} | {impl} | {b['tokens_per_s']:.0f} | {b['samples_per_s']:.2f} | {b['step_s_p50'] * 1e3:.1f} | "
                  f"{b['step_s_p90'] * 1e3:.1f} | {b['cpu_best'] * 1e3:.1f} | {b['peak_rss_mb']:.0f} | "
                  f"{b['loss_first']:.3f} -> {b['loss_last']:.3f} |")
        lines.append(f"{shape} train: mmtune/reference speed = {ref['step_s_p50'] / m['step_s_p50']:.2f}x (best step p50), "
                     f"{ref['p50_median'] / m['p50_median']:.2f}x (median over runs of the step p50), "
                     f"{ref['cpu_best'] / m['cpu_best']:.2f}x (CPU time per step); {m['tokens_per_step']:.0f} real tokens "
                     f"per step (batch {m['batch']}); LLM {m['llm']}; ViT {m['vision']}")
if "generate" in modes:
    print("\n| shape | impl | prefill tok/s | decode tok/s | generation p50 ms | CPU ms/generation | peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for shape in shapes:
        m, ref = best(shape, "generate")
        for impl, b in (("mmtune", m), ("reference", ref)):
            print(f"| {shape} | {impl} | {b['prefill_best']:.0f} | {b['decode_best']:.0f} | {b['step_s_p50'] * 1e3:.1f} | "
                  f"{b['cpu_best'] * 1e3:.1f} | {b['peak_rss_mb']:.0f} |")
        lines.append(f"{shape} generate: mmtune/reference speed = {ref['step_s_p50'] / m['step_s_p50']:.2f}x (best generation p50), "
                     f"{ref['p50_median'] / m['p50_median']:.2f}x (median over runs), "
                     f"prefill {m['prefill_best'] / ref['prefill_best']:.2f}x, decode {m['decode_best'] / ref['decode_best']:.2f}x; "
                     f"batch {m['batch']}, {m['prompt_length']}-token prompts, {m['new_tokens']} new tokens")
print()
print("\n".join(lines))
PY
