#!/usr/bin/env bash
# The end-to-end demo, after setup and build (scripts/test.sh does both), on CPU, without network:
#   1. demo data: a synthetic ScienceQA-layout set (image questions that need the picture, text
#      questions) and its LLaVA conversion; a second draw of pictures for the ViT's pretraining
#   2. frozen backbones: the real stories260K LLaMA from ../shared/models (converted), and a tiny
#      CLIP ViT that mmtune pretrains itself (train.trainable: all), as no real small CLIP exists
#      offline
#   3. mmtune train --config configs/demo.yaml: MMA adapters (LaVIN) on the frozen backbones
#   4. mmtune eval: the ScienceQA category table, tuned and untuned side by side with chance
#   5. mmtune chat: one scripted question about a demo picture
# Steps 1-2 are cached in ${MMTUNE_CACHE:-~/.cache/mmtune}/demo/, keyed by the scripts and configs
# that make them, so a second run (or another clone on this machine) reuses them; build/demo/ links
# to them so configs/demo*.yaml run by hand. Exit status: 0 when every step passed and the image
# questions reached their target (at least twice chance and above the untuned base), else 1.
#
# Usage: scripts/demo.sh [--fresh] [--quantize int8|int4]
#   --fresh           drop the demo's cache first
#   --quantize MODE   the frozen LLM's Linear layers in int8 or int4 (group 32; stories260K's
#                     172-wide down_proj inputs, which 32 does not divide, in int8) for training,
#                     eval and chat: LaVIN-lite's recipe. Its run goes to runs/demo-MODE.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MMTUNE_ROOT"

say() { printf '[demo] %s\n' "$*"; }
die() { printf '[demo] error: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf '[demo]   hint: %s\n' "$2" >&2; exit 1; }
trap 'printf "[demo] error: the step above failed (line %s: %s)\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

fresh=0 quantize=none
while [ $# -gt 0 ]; do
  case "$1" in
    --fresh) fresh=1; shift ;;
    --quantize) [ $# -ge 2 ] || die "--quantize needs a value" "scripts/demo.sh --quantize int4"
                quantize="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1'" "scripts/demo.sh [--fresh] [--quantize int8|int4]" ;;
  esac
done
case "$quantize" in
  none|int8|int4) ;;
  *) die "--quantize takes int8 or int4, got '$quantize'" "scripts/demo.sh --quantize int4" ;;
esac

MMTUNE="${MMTUNE:-$MMTUNE_ROOT/build/bin/mmtune}"
# the shared read-only models beside the checkout, as for the tests (MMTUNE_SHARED_DIR overrides)
STORIES="$(realpath -m "${MMTUNE_SHARED_DIR:-$MMTUNE_ROOT/../shared}/models/stories260K")"
CACHE="$MMTUNE_CACHE/demo"
LINKS="$MMTUNE_ROOT/build/demo"
RUN="$MMTUNE_ROOT/runs/demo"
QUANT=()  # the frozen LLM as trained, evaluated and chatted with
if [ "$quantize" != none ]; then
  RUN="$MMTUNE_ROOT/runs/demo-$quantize"
  QUANT=(model.quantize="$quantize" model.quant_group=32 model.quant_fallback=int8)
fi
# the demo set (seed 0) and the ViT's pretraining pictures (seed 1): two independent draws
DATA_ARGS=(--seed 0 --train 4000 --val 100 --test 300 --ordered-options)
VIT_DATA_ARGS=(--seed 1 --train 8000 --val 200 --test 0)

[ -x "$MMTUNE" ] || die "$MMTUNE not found" "build first: scripts/test.sh (setup, build, tests)"
[ -x "$MMTUNE_PY" ] || die "the Python venv $MMTUNE_VENV is missing" "run scripts/setup.sh"
for f in stories260K.bin tok512.model; do
  [ -f "$STORIES/$f" ] || die "$STORIES/$f not found" \
      "the demo reads ../shared/models/stories260K; set MMTUNE_SHARED_DIR to the folder holding models/"
done
if [ "$fresh" = 1 ]; then say "--fresh: removing $CACHE"; rm -rf "$CACHE"; fi
mkdir -p "$CACHE" "$LINKS"

T0=$(date +%s)
declare -a TIMES=()
step_start() { STEP_NAME="$1"; STEP_T=$(date +%s); printf '\n[demo] ==== %s ====\n' "$1"; }
step_end() { local s=$(( $(date +%s) - STEP_T )); TIMES+=("$(printf '%-38s %4d s' "$STEP_NAME" "$s")"); }
# key FILE... -- ARG...: a short hash of the files' contents and the arguments
key() {
  local files=() args=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  args=("$@")
  { cat "${files[@]}"; printf '%s\n' "${args[@]}"; } | sha256sum | cut -c1-12
}
latest_checkpoint() { find "$1" -maxdepth 1 -type d -name 'checkpoint-*' | sort -V | tail -1; }
py() { "$MMTUNE_PY" "$@"; }

# ---- 1. data --------------------------------------------------------------------------------
step_start "1. data"
DATA="$CACHE/data-$(key scripts/make_synthetic_scienceqa.py scripts/scienceqa_to_llava.py -- "${DATA_ARGS[@]}")"
if [ -d "$DATA" ]; then
  say "demo set: cached $DATA"
else
  rm -rf "$DATA.tmp"
  py scripts/make_synthetic_scienceqa.py --out "$DATA.tmp" "${DATA_ARGS[@]}"
  py scripts/scienceqa_to_llava.py --root "$DATA.tmp" >/dev/null
  mv "$DATA.tmp" "$DATA"
fi
VIT_DATA="$CACHE/vit-data-$(key scripts/make_synthetic_scienceqa.py scripts/demo_vit.py -- "${VIT_DATA_ARGS[@]}")"
if [ -d "$VIT_DATA" ]; then
  say "ViT pretraining pictures: cached $VIT_DATA"
else
  rm -rf "$VIT_DATA.tmp"
  py scripts/make_synthetic_scienceqa.py --out "$VIT_DATA.tmp" "${VIT_DATA_ARGS[@]}"
  py scripts/demo_vit.py vqa --root "$VIT_DATA.tmp" --out "$VIT_DATA.tmp/vqa"
  mv "$VIT_DATA.tmp" "$VIT_DATA"
fi
ln -sfn "$DATA" "$LINKS/data"
ln -sfn "$VIT_DATA" "$LINKS/vit-data"
step_end

# ---- 2. frozen backbones ----------------------------------------------------------------------
step_start "2a. LLM: stories260K (real)"
LLM="$CACHE/stories260K-$(key scripts/convert_llama2c.py "$STORIES/stories260K.bin" "$STORIES/tok512.model")"
if [ -d "$LLM" ]; then
  say "converted stories260K: cached $LLM"
else
  py scripts/convert_llama2c.py "$STORIES/stories260K.bin" --tokenizer "$STORIES/tok512.model" --out "$LLM"
fi
ln -sfn "$LLM" "$LINKS/stories260K"
step_end

step_start "2b. ViT: pretrained here by mmtune"
VIT="$CACHE/vit-$(key scripts/demo_vit.py configs/demo-vit.yaml "$LLM/model.safetensors" "$VIT_DATA/vqa/train.json")"
if [ -d "$VIT" ]; then
  say "pretrained ViT: cached $VIT (delete it, or run with --fresh, to pretrain again)"
else
  rm -rf "$VIT.tmp"
  py scripts/demo_vit.py init --out "$VIT.tmp/init"
  say "pretraining the ViT with full training (train.trainable: all): configs/demo-vit.yaml"
  "$MMTUNE" train --config configs/demo-vit.yaml output_dir="$VIT.tmp/run" vision.path="$VIT.tmp/init" \
      model.path="$LLM" data.json="$VIT_DATA/vqa/train.json" data.image_folder="$VIT_DATA/images"
  py scripts/demo_vit.py export --checkpoint "$(latest_checkpoint "$VIT.tmp/run")" --init "$VIT.tmp/init" \
      --out "$VIT.tmp/model"
  mv "$VIT.tmp" "$VIT"
fi
ln -sfn "$VIT/init" "$LINKS/vit-init"
ln -sfn "$VIT/model" "$LINKS/tiny-vit"
VIT_LOSS=$(py - "$VIT/run/metrics.jsonl" <<'EOF'
import json, sys
m = [json.loads(line) for line in open(sys.argv[1])]
print(f"{m[-1]['loss']:.3f} after {m[-1]['step']} steps (first logged: {m[0]['loss']:.3f})")
EOF
)
step_end

say ""
say "frozen backbones:"
say "  LLM  stories260K: a REAL trained LLaMA (Andrej Karpathy's llama2.c, trained on TinyStories;"
say "       260K parameters, dim 64, 5 layers, vocabulary 512), from $STORIES"
say "       -> $LLM"
say "  ViT  tiny CLIP ViT (32 px, 4 blocks, width 64): PRETRAINED HERE by mmtune, not a real CLIP"
say "       (none exists offline): random init + full training (train.trainable: all) on open"
say "       questions about other synthetic pictures; loss $VIT_LOSS"
say "       -> $VIT/model"

# ---- 3. adapter tuning ------------------------------------------------------------------------
step_start "3. mmtune train (MMA adapters)"
rm -rf "$RUN"
"$MMTUNE" train --config configs/demo.yaml output_dir="$RUN" "${QUANT[@]}"
CKPT="$(latest_checkpoint "$RUN")"
[ -n "$CKPT" ] || die "no checkpoint in $RUN" "see $RUN/mmtune.log"
step_end

# ---- 4. evaluation ----------------------------------------------------------------------------
step_start "4. mmtune eval (tuned, untuned base)"
TEST_JSON="$LINKS/data/llava/test.json"
say "MMA-tuned: $CKPT"
"$MMTUNE" eval --config configs/demo.yaml --checkpoint "$CKPT" --task scienceqa --split test \
    data.json="$TEST_JSON" --output "$RUN/eval-tuned/results.json" --no-progress "${QUANT[@]}"
say "untuned base: the same frozen backbones with fresh MMA adapters (identity in the LLM and ViT,"
say "  an untrained projector): what the backbones do before tuning"
"$MMTUNE" eval --config configs/demo.yaml --task scienceqa --split test \
    data.json="$TEST_JSON" --output "$RUN/eval-base/results.json" --no-progress "${QUANT[@]}"
step_end

# ---- 5. chat ----------------------------------------------------------------------------------
step_start "5. mmtune chat (one scripted turn)"
# the first colour question of the test split: its picture, the question with its options
IFS=$'\t' read -r IMAGE QUESTION TRUTH < <(py - "$TEST_JSON" <<'EOF'
import json, sys
for e in json.load(open(sys.argv[1])):
    q = e["conversations"][0]["value"].replace("<image>\n", "")
    if "image" in e and q.startswith("What colour"):
        print(e["image"], q.replace("\\", "\\\\").replace("\n", "\\n"), e["conversations"][1]["value"], sep="\t")
        break
EOF
)
IMAGE="$LINKS/data/images/$IMAGE"
printf '%s\n' "$QUESTION" > "$RUN/chat-input.txt"
"$MMTUNE" chat --config configs/demo.yaml --checkpoint "$CKPT" --image "$IMAGE" "${QUANT[@]}" \
    < "$RUN/chat-input.txt" > "$RUN/chat-output.txt"
ANSWER="$(head -1 "$RUN/chat-output.txt")"
say "picture:  $IMAGE"
say "question: $(printf '%s' "$QUESTION" | sed 's/\\n/ | /g')"
say "answer:   $ANSWER        (correct: $TRUTH)"
step_end

# ---- summary ----------------------------------------------------------------------------------
printf '\n[demo] ==== results: ScienceQA test split, accuracy %% (image questions: IMG) ====\n'
set +e
py scripts/demo_report.py --problems "$LINKS/data/problems.json" --target "MMA-tuned:untuned base" \
    "MMA-tuned=$RUN/eval-tuned/results.json" "untuned base=$RUN/eval-base/results.json"
target=$?
set -e
printf '\n[demo] ==== where everything went ====\n'
say "demo data          $DATA  (linked as build/demo/data)"
say "ViT pictures       $VIT_DATA  (build/demo/vit-data)"
say "LLM (converted)    $LLM  (build/demo/stories260K)"
say "ViT (pretrained)   $VIT/model  (build/demo/tiny-vit); its pretraining run: $VIT/run"
say "adapter            $CKPT  (adapter_model.safetensors + adapter_config.json)"
say "training log       $RUN/mmtune.log, $RUN/metrics.jsonl"
say "eval results       $RUN/eval-tuned/results.json, $RUN/eval-base/results.json"
say "chat               $RUN/chat-input.txt -> $RUN/chat-output.txt"
printf '\n[demo] ==== time (%s cores, load average %s) ====\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${TIMES[@]}"; do say "$t"; done
say "$(printf '%-38s %4d s' total $(( $(date +%s) - T0 )))"
exit "$target"
