#!/usr/bin/env python3
"""Official IAA checkpoint (Hugging Face directory, model_type "IAA", e.g. qihoo360/Inner-Adaptor-
Architecture; spec §2, §5) -> an mmtune base model directory plus one mmtune adapter directory per
workflow (MM, G) that `mmtune` loads with the iaa family on that base.

  python scripts/convert_iaa_checkpoint.py --input DIR --out DIR [--insert-layers 0,1,5,...]
      [--image-size 336] [--shard-gb 5] [--force]

Writes
  OUT/base/   config.json (a plain Llama: model_type llama, the IAA / mm_* keys dropped),
              model.safetensors (or model-0000i-of-0000n.safetensors + model.safetensors.index.json),
              the tokenizer and generation files of DIR: the frozen LLM, i.e. the Text workflow
  OUT/mm/     adapter_config.json + adapter_model.safetensors: workflow "mm"
  OUT/g/      the same for workflow "g" (grounding)
and nothing else: everything goes to OUT.tmp-<pid> first and is renamed at the end.

Names (the official modeling_llama_iaa.py / iaa_llama.py / iaa_arch.py; sfx "" for MM and
"_grounding" for G; P = mm_projector for MM, mm_projector_G for G):
  model.embed_tokens, model.layers.{i}.*, model.norm, lm_head    -> base/ under the same names
  model.embed_tokens_condition{sfx}.weight                        -> llm.adapters.iaa_<wf>.embed_tokens.weight
  model.condition_layers{sfx}.{k}.<LlamaDecoderLayer names>       -> llm.adapters.iaa_<wf>.layers.{k}.<same>
  model.norm_condition{sfx}.weight                                -> llm.adapters.iaa_<wf>.norm.weight
  lm_head_condtion{sfx}.weight (sic)                              -> llm.adapters.iaa_<wf>.lm_head.weight
  model.P.{0,2}.{weight,bias} (mlp2x_gelu; model.P.{weight,bias}: linear)
                                                                  -> llm.adapters.iaa_<wf>.mm_projector.<same>
  model.vision_tower.*                                            dropped (one line): the adapter names
                                                                  its CLIP tower through vision.path
Values are copied unchanged, in the file's dtype; mmtune copies them into its own dtypes on load.
Reading is per tensor (safetensors shards are memory-mapped), writing per output shard, so the whole
model is never in memory at once (one workflow's tensors are: one adapter file).

The text embedding and head: the official loader (builder.py) adds <im_patch> to the tokenizer when
config.json sets mm_use_im_patch_token and resizes model.embed_tokens and lm_head by one row (not
the workflows' copies). A checkpoint saved after that holds V + 1 rows there and V in the
workflows' tables; the base keeps the first V rows (the tokenizer's own vocabulary: no prompt uses
<im_patch>, the image placeholder is <|reserved_special_token_44|>) and says so.

Insertion layers: the official code hard-codes IAA-14's [0,1,5,6,10,11,15,16,20,21,25,26,30,31]
(modeling_llama_iaa.py, ehce_layers); that is the default for a 32-layer model with 14 condition
layers. Any other shape needs --insert-layers.
Errors: one line on stderr, exit code 1, nothing written.
"""
import argparse
import json
import math
import os
import re
import shutil
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint_io import ConvertError, atomic_dir, capped, load_released, run, write_adapter_files  # noqa: E402

IAA14 = [0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26, 30, 31]
WORKFLOWS = {"mm": ("", "mm_projector"), "g": ("_grounding", "mm_projector_G")}
# config.json keys of the IAA wrapper that a plain Llama config does not have
IAA_KEYS = {"auto_map", "mm_hidden_size", "mm_num_tokens", "mm_projector_type", "mm_use_im_patch_token",
            "mm_use_im_start_end", "mm_vision_select_feature", "mm_vision_select_layer", "mm_vision_tower",
            "image_aspect_ratio", "image_grid_pinpoints", "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter",
            "use_mm_proj", "mm_patch_merge_type", "_name_or_path"}
FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
         "generation_config.json"]
RE_TEXT = re.compile(r"model\.(embed_tokens\.weight|norm\.weight|layers\.(\d+)\..+)|lm_head\.weight")


class Tensors:
    """The checkpoint's tensors by name, read one at a time: safetensors (one file or shards with
    model.safetensors.index.json) or, failing those, pytorch_model*.bin read with the weights-only
    unpickler."""

    def __init__(self, d):
        self.where, self.bins = {}, {}
        index = os.path.join(d, "model.safetensors.index.json")
        if os.path.isfile(index):
            try:
                weight_map = json.load(open(index))["weight_map"]
            except (ValueError, KeyError, TypeError) as e:
                raise ConvertError(f"{index}: not a safetensors index ({type(e).__name__}: {e})")
            files = sorted(set(weight_map.values()))
        elif os.path.isfile(os.path.join(d, "model.safetensors")):
            files = ["model.safetensors"]
        else:
            files = []
        for f in files:
            path = os.path.join(d, f)
            if not os.path.isfile(path):
                raise ConvertError(f"{path}: not found (named by model.safetensors.index.json)")
            try:
                h = safe_open(path, framework="pt")
            except Exception as e:  # a corrupt header
                raise ConvertError(f"{path}: not a safetensors file ({type(e).__name__}: {str(e)[:200]})")
            for n in h.keys():
                self.where[n] = h
        if not files:
            bins = sorted(f for f in os.listdir(d) if re.fullmatch(r"pytorch_model(-\d+-of-\d+)?\.bin", f))
            if not bins:
                raise ConvertError(f"{d}: no model.safetensors, model.safetensors.index.json or pytorch_model*.bin")
            for f in bins:
                sd = load_released(os.path.join(d, f), "a Hugging Face weights shard", "not a tensor")
                if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
                    raise ConvertError(f"{os.path.join(d, f)}: not a state dict of tensors")
                self.bins.update(sd)

    def names(self):
        return list(self.where) + list(self.bins)

    def get(self, name):
        return self.where[name].get_tensor(name) if name in self.where else self.bins[name]

    def shape(self, name):
        if name in self.where:
            return tuple(self.where[name].get_slice(name).get_shape())
        return tuple(self.bins[name].shape)


def read_config(d):
    path = os.path.join(d, "config.json")
    if not os.path.isdir(d):
        raise ConvertError(f"{d}: not a directory (expected the official IAA checkpoint directory)")
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: not found (expected the official IAA checkpoint directory)")
    try:
        cfg = json.load(open(path))
    except ValueError as e:
        raise ConvertError(f"{path}: not JSON ({e})")
    if not isinstance(cfg, dict) or str(cfg.get("model_type", "")).lower() != "iaa":
        kind = cfg.get("model_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise ConvertError(f"{path}: not an IAA checkpoint: model_type is {kind!r}, expected 'IAA'")
    for k in ("hidden_size", "num_hidden_layers", "vocab_size"):
        if not isinstance(cfg.get(k), int) or cfg[k] <= 0:
            raise ConvertError(f"{path}: {k} must be a positive integer, got {cfg.get(k)!r}")
    return cfg


def classify(t, path):
    """(text names, {workflow: {mmtune suffix: official name}}, vision names); any other name is
    an error."""
    text, flows, vision, unknown = [], {w: {} for w in WORKFLOWS}, [], []
    pats = {}
    for w, (sfx, proj) in WORKFLOWS.items():
        pats[w] = [(re.compile(rf"model\.embed_tokens_condition{sfx}\.weight"), lambda m: "embed_tokens.weight"),
                   (re.compile(rf"model\.condition_layers{sfx}\.(\d+)\.(.+)"),
                    lambda m: f"layers.{m.group(1)}.{m.group(2)}"),
                   (re.compile(rf"model\.norm_condition{sfx}\.weight"), lambda m: "norm.weight"),
                   (re.compile(rf"lm_head_condtion{sfx}\.weight"), lambda m: "lm_head.weight"),
                   (re.compile(rf"model\.{proj}\.((?:\d+\.)?(?:weight|bias))"), lambda m: f"mm_projector.{m.group(1)}")]
    for n in t.names():
        if RE_TEXT.fullmatch(n):
            text.append(n)
            continue
        if n.startswith("model.vision_tower."):
            vision.append(n)
            continue
        for w in WORKFLOWS:
            hit = next(((p, f) for p, f in pats[w] if p.fullmatch(n)), None)
            if hit:
                flows[w][hit[1](hit[0].fullmatch(n))] = n
                break
        else:
            unknown.append(n)
    if unknown:
        raise ConvertError(f"{path}: not an IAA checkpoint: unknown tensors {capped(unknown)}")
    return text, flows, vision


def check(t, cfg, text, flows, flags):
    """Every part complete and shaped as the base; returns (V, insert_layers, present workflows,
    condition layers per workflow)."""
    d = flags.input
    L, D = cfg["num_hidden_layers"], cfg["hidden_size"]
    missing = [n for n in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight") if n not in text]
    layer0 = sorted(n[len("model.layers.0."):] for n in text if n.startswith("model.layers.0."))
    for i in range(L):
        missing += [f"model.layers.{i}.{r}" for r in layer0 if f"model.layers.{i}.{r}" not in text]
    if not layer0:
        missing.append("model.layers.0.*")
    present = [w for w in WORKFLOWS if flows[w]]
    if not present:
        raise ConvertError(f"{d}: not an IAA checkpoint: no workflow tensors (model.condition_layers.*, "
                           "model.embed_tokens_condition, lm_head_condtion, model.mm_projector)")
    n_ins = {w: len({k.split(".")[1] for k in flows[w] if k.startswith("layers.")}) for w in present}
    if len(set(n_ins.values())) > 1:
        raise ConvertError(f"{d}: the workflows hold different numbers of condition layers: {n_ins}")
    n = next(iter(n_ins.values()))
    for w in present:
        for part in ("embed_tokens.weight", "norm.weight", "lm_head.weight"):
            if part not in flows[w]:
                missing.append(f"the {w} workflow's {part.split('.')[0]}")
        for k in range(n):
            missing += [f"the {w} workflow's condition layer {k}: {r}" for r in layer0
                        if f"layers.{k}.{r}" not in flows[w]]
        if not any(k.startswith("mm_projector.") for k in flows[w]):
            missing.append(f"the {w} workflow's projector ({WORKFLOWS[w][1]})")
    if missing:
        raise ConvertError(f"{d}: not a complete IAA checkpoint: missing {capped(missing)}")
    if flags.insert_layers is not None:
        ins = flags.insert_layers
    elif (L, n) == (32, 14):
        ins = IAA14
    else:
        raise ConvertError(f"{d}: {n} condition layers in a {L}-layer model: the official code hard-codes "
                           "IAA-14's insertion layers for 32 layers; pass --insert-layers i,j,...")
    if len(ins) != n or len(set(ins)) != n or min(ins) < 0 or max(ins) >= L:
        raise ConvertError(f"--insert-layers {','.join(map(str, ins))}: must be {n} distinct layers in 0..{L - 1} "
                           f"(the checkpoint holds {n} condition layers)")
    V = cfg["vocab_size"]
    wf_rows = {t.shape(flows[w]["embed_tokens.weight"])[0] for w in present}
    if len(wf_rows) == 1:
        V = wf_rows.pop()
    wrong = []
    for w in present:
        for part in ("embed_tokens.weight", "lm_head.weight"):
            if t.shape(flows[w][part]) != (V, D):
                wrong.append(f"{flows[w][part]} is {list(t.shape(flows[w][part]))}, expected {[V, D]}")
        for k in range(n):
            for r in layer0:
                a, b = t.shape(flows[w][f"layers.{k}.{r}"]), t.shape(f"model.layers.0.{r}")
                if a != b:
                    wrong.append(f"{flows[w][f'layers.{k}.{r}']} is {list(a)}, the base layer's is {list(b)}")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        rows, width = t.shape(name)
        if width != D or rows < V:
            wrong.append(f"{name} is {[rows, width]}, expected at least {[V, D]} (the workflows' tables)")
    if wrong:
        raise ConvertError(f"{d}: inconsistent shapes: {capped(wrong, 3)}")
    return V, ins, present, n


def base_config(cfg, V):
    out = {k: v for k, v in cfg.items() if k not in IAA_KEYS}
    out.update({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": V})
    return out


def write_base(t, cfg, text, V, tmp, flags):
    """base/: the frozen LLM, sharded at --shard-gb; returns (tensors, rows dropped, shards)."""
    out = os.path.join(tmp, "base")
    os.makedirs(out)
    limit = int(flags.shard_gb * 1e9)
    shards, cur, size = [], [], 0
    for n in sorted(text, key=lambda n: (not n.startswith("model.embed"), n)):
        b = math.prod(t.shape(n))
        if cur and size + b * 4 > limit:  # an upper bound of the bytes (fp32)
            shards.append(cur)
            cur, size = [], 0
        cur.append(n)
        size += b * 4
    shards.append(cur)
    dropped = 0
    weight_map = {}
    for i, names in enumerate(shards):
        fname = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for n in names:
            x = t.get(n)
            if n in ("model.embed_tokens.weight", "lm_head.weight") and x.shape[0] > V:
                dropped = x.shape[0] - V
                x = x[:V]
            tensors[n] = x.contiguous()
            weight_map[n] = fname
        save_file(tensors, os.path.join(out, fname), metadata={"format": "pt"})
        del tensors
    if len(shards) > 1:
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(json.dumps(base_config(cfg, V), indent=2) + "\n")
    for name in FILES:
        if os.path.isfile(os.path.join(flags.input, name)):
            shutil.copy(os.path.join(flags.input, name), os.path.join(out, name))
    return len(text), dropped, len(shards)


def vision_fields(cfg, flags):
    feature = cfg.get("mm_vision_select_feature", "patch")
    if feature != "patch":
        raise ConvertError(f"{flags.input}/config.json: mm_vision_select_feature {feature!r}: mmtune's IAA path "
                           "takes patch tokens only ('patch', the released config)")
    projector = cfg.get("mm_projector_type", "linear")
    if projector != "linear" and not re.fullmatch(r"mlp\d+x_gelu", projector):
        raise ConvertError(f"{flags.input}/config.json: mm_projector_type {projector!r}: expected linear or mlpNx_gelu")
    return {"feature": "patch_layer", "layer": cfg.get("mm_vision_select_layer", -2), "image_size": flags.image_size,
            "preprocess": "pad_square" if cfg.get("image_aspect_ratio") == "pad" else "resize_center_crop",
            "norm": "clip", "projector": projector}


def write_workflow(t, cfg, w, names, ins, V, tmp, flags):
    prefix = f"llm.adapters.iaa_{w}."
    tensors = {prefix + k: t.get(n).contiguous() for k, n in sorted(names.items())}
    D, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    config = {"format": "mmtune.adapter", "version": 1, "family": "iaa",
              "adapter": {"family": "iaa", "iaa": {"insert_layers": ins, "workflow": w, "gate": "none",
                                                   "trainable": ["projector", "layers", "embedding", "norm", "head"]}},
              "vision": vision_fields(cfg, flags),
              "base_model": {"id": cfg.get("_name_or_path") or "llama", "hidden_size": D, "num_layers": L,
                             "intermediate_size": cfg.get("intermediate_size"), "vocab_size": V},
              "vision_model": {"id": cfg.get("mm_vision_tower", "clip-vit"), "hidden_size": cfg.get("mm_hidden_size")},
              "trainable": "adapter", "trainable_parameters": sum(x.numel() for x in tensors.values()),
              "source": f"converted from {os.path.abspath(flags.input)} by scripts/convert_iaa_checkpoint.py"}
    config["base_model"] = {k: v for k, v in config["base_model"].items() if v is not None}
    config["vision_model"] = {k: v for k, v in config["vision_model"].items() if v is not None}
    out = os.path.join(tmp, w)
    os.makedirs(out)
    write_adapter_files(out, tensors, config, "iaa")
    return len(tensors), config["trainable_parameters"]


def convert(flags):
    cfg = read_config(flags.input)
    t = Tensors(flags.input)
    text, flows, vision = classify(t, flags.input)
    V, ins, present, n = check(t, cfg, text, flows, flags)
    out = flags.out
    with atomic_dir(out, flags.force) as tmp:
        n_base, dropped, n_shards = write_base(t, cfg, text, V, tmp, flags)
        wrote = {w: write_workflow(t, cfg, w, flows[w], ins, V, tmp, flags) for w in present}
    if dropped:
        print(f"base: kept the first {V} rows of model.embed_tokens and lm_head, dropped {dropped} (tokens the "
              "official loader added, e.g. <im_patch> for mm_use_im_patch_token; no prompt uses them)")
    if vision:
        print(f"dropped {len(vision)} tensor(s) under model.vision_tower.* (the CLIP tower: set vision.path to "
              f"{cfg.get('mm_vision_tower', 'the CLIP vision directory')})")
    for w in WORKFLOWS:
        if w not in present:
            print(f"note: the checkpoint holds no {w} workflow; {out}/{w} not written", file=sys.stderr)
    print(f"{out}/base: {n_base} tensors in {n_shards} file(s), LLM {cfg['num_hidden_layers']}x{cfg['hidden_size']} "
          f"vocab {V}; " + "; ".join(f"{out}/{w}: {k} tensors, {p:,} parameters" for w, (k, p) in wrote.items())
          + f"; {n} inserted layers after {','.join(map(str, ins))}")


def main():
    ap = argparse.ArgumentParser(description="official IAA checkpoint directory -> mmtune base + workflow adapters")
    ap.add_argument("--input", required=True, help="the official checkpoint directory (config.json model_type IAA)")
    ap.add_argument("--out", required=True, help="directory to write (base/, mm/, g/)")
    ap.add_argument("--insert-layers", help="frozen layers followed by the condition layers, in order "
                    "(default: IAA-14's list for 32 layers with 14 condition layers)")
    ap.add_argument("--image-size", type=int, default=336, help="ViT input resolution (default 336)")
    ap.add_argument("--shard-gb", type=float, default=5.0, help="base shard size in GB (default 5)")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    flags = ap.parse_args()
    if flags.image_size <= 0 or flags.shard_gb <= 0:
        ap.error("--image-size and --shard-gb must be positive")
    if flags.insert_layers is not None:
        try:
            flags.insert_layers = [int(x) for x in flags.insert_layers.split(",")]
        except ValueError:
            ap.error(f"--insert-layers {flags.insert_layers!r}: expected comma-separated integers")
    return run(convert, flags)


if __name__ == "__main__":
    sys.exit(main())
