#!/usr/bin/env python3
"""Released LLaVA-MoLE checkpoint (llava_mole_r16_a32_e3.pt, spec §5) -> an mmtune adapter directory
(adapter_model.safetensors + adapter_config.json) that `mmtune` loads with the mole family.

  python scripts/convert_mole_checkpoint.py --input llava_mole_r16_a32_e3.pt --out adapters/llava-mole
      [--alpha A] [--gate-mode dense_soft|st_top1|none|switch] [--image-size 336] [--vision-layer -1]
      [--base-id ID] [--vision-id ID] [--skip-unknown] [--force]

The .pt is a pickled dict {"state_dict": {name: tensor}} (a bare state dict, and DDP's "module."
prefix, are accepted too), loaded into the whole wrapper with strict=False upstream. It is
unpickled with torch's weights_only loader, so no code in the file runs. Names (spec §5 -> mmtune),
with P = llm_model.base_model.model.model.layers.{i}:
  P.self_attn.{q,k,v,o}_proj.lora_{A,B}.default.weight  -> llm.model.layers.{i}.adapters.mole.{q,k,v,o}.lora_{A,B}
  P.mlp.moe_{gate,up,down}.{k}.lora_A  [r, in]  (k = 0..K-1, stacked)
                                                        -> llm.model.layers.{i}.adapters.mole.moe_{gate,up,down}.lora_A [K, r, in]
  P.mlp.moe_{gate,up,down}.{k}.lora_B  [out, r]         -> ... .lora_B [K, out, r]
  P.mlp.router.{weight,bias}                            -> llm.model.layers.{i}.adapters.mole.router.{weight,bias}
  in_adaptor.projector.{0,2}.{weight,bias}              -> llm.adapters.mole.projector.{0,2}.{weight,bias}
  in_adaptor.visual_{start,end}_token  [1, 1, D]        -> llm.adapters.mole.visual_{start,end}_token
Values are copied unchanged (as fp32). The wrapper's frozen parts that a full state_dict carries
(MLLM_LLaVA_MoLE in the released model.py) are dropped, with one line naming each group:
  llm_model.*                 other than the names above: the frozen Vicuna (embeddings, norms, lm_head,
                              attention base_layer weights, mlp.original_module.*)
  vit.*                       the frozen CLIP tower (vit.vision_tower.vision_model.*; the converted
                              adapter names its own tower through vision.path)
  in_adaptor.text_embed.*     the input adaptor's alias of the frozen embed_tokens
Anything else is an unknown tensor: an error unless --skip-unknown.

Options the tensors do not hold:
  --alpha       LoRA alpha; default 2 r (the released args r=32/alpha=64 and the checkpoint name
                r16_a32 both give the scale alpha / r = 2, spec §3.6)
  --gate-mode   default dense_soft: the released inference path (llava_mole_infer.py sets
                dense_moe=True: every expert weighted by its probability, moe.py forward_lora_moe);
                none is the released sparse path (dense_moe=False, moe.py forward_lora_moe_sparse: the
                top-1 expert's delta with weight 1, the router learning from the balancing loss only);
                st_top1 / switch are mmtune's top-1 variants (spec §3.2, docs/REPRODUCING.md)
Vision: patch tokens of layer --vision-layer (-1, MoLE's released code), pad to square, CLIP norm,
mlp2x_gelu projector, start/end vectors (spec §3.1). Dropout 0.05, balancing loss per sample across
layers with weight 0.01 (only used when training on from the converted adapter).
Errors: one line on stderr, exit code 1, nothing written.
"""
import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint_io import ConvertError, capped, load_released, run, write_adapter_dir  # noqa: E402

LLM = "llm_model.base_model.model.model.layers."
RE_ATTN = re.compile(re.escape(LLM) + r"(\d+)\.self_attn\.(q|k|v|o)_proj\.lora_(A|B)\.default\.weight")
RE_EXPERT = re.compile(re.escape(LLM) + r"(\d+)\.mlp\.moe_(gate|up|down)\.(\d+)\.lora_(A|B)")
RE_ROUTER = re.compile(re.escape(LLM) + r"(\d+)\.mlp\.router\.(weight|bias)")
VISION = ["projector.0.weight", "projector.0.bias", "projector.2.weight", "projector.2.bias",
          "visual_start_token", "visual_end_token"]
FFN = ["gate", "up", "down"]


def load_state_dict(path):
    """The checkpoint's state dict, unpickled with torch's weights_only loader, "module." stripped."""
    ckpt = load_released(path, "the released .pt file",
                         "neither a tensor nor a plain container (a LLaVA-MoLE checkpoint holds only those)")
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        keys = capped(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ConvertError(f"{path}: not a LLaVA-MoLE checkpoint: expected {{'state_dict': {{name: tensor}}}}, found {keys}")
    out = {}
    for name, t in sd.items():
        while name.startswith("module."):
            name = name[len("module."):]
        out[name] = t
    return out


# The wrapper's frozen parts (prefix -> what it is), dropped: mmtune takes them from the base model
# and vision tower directories. Order: the first matching prefix names the group.
FROZEN = [("in_adaptor.text_embed.", "the input adaptor's alias of the frozen text embedding"),
          ("vit.", "the frozen CLIP tower"),
          ("llm_model.", "the frozen LLM")]


def frozen_group(name):
    """The FROZEN prefix `name` belongs to, or None. An llm_model. name that looks like an adapter
    tensor but did not match the adapter patterns is not frozen (it is unknown)."""
    for prefix, _ in FROZEN:
        if name.startswith(prefix):
            if prefix == "llm_model." and (".lora_" in name or ".moe_" in name or ".router." in name):
                return None
            return prefix
    return None


def classify(sd, path, skip_unknown):
    """Groups the adapter tensors; returns (attn, experts, routers, vision, skipped, unknown), skipped
    as {frozen prefix: [names]}."""
    attn, experts, routers, vision, skipped, unknown = {}, {}, {}, {}, {}, []
    for name, t in sd.items():
        if m := RE_ATTN.fullmatch(name):
            attn.setdefault(int(m.group(1)), {})[(m.group(2), m.group(3))] = t
        elif m := RE_EXPERT.fullmatch(name):
            experts.setdefault(int(m.group(1)), {}).setdefault(m.group(2), {})[(int(m.group(3)), m.group(4))] = t
        elif m := RE_ROUTER.fullmatch(name):
            routers.setdefault(int(m.group(1)), {})[m.group(2)] = t
        elif name.startswith("in_adaptor.") and name[len("in_adaptor."):] in VISION:
            vision[name[len("in_adaptor."):]] = t
        elif (group := frozen_group(name)) is not None:
            skipped.setdefault(group, []).append(name)
        else:
            unknown.append(name)
    if unknown and not skip_unknown:
        raise ConvertError(f"{path}: not a LLaVA-MoLE checkpoint: unknown tensors {capped(unknown)} "
                           "(pass --skip-unknown to leave them out)")
    return attn, experts, routers, vision, skipped, unknown


def check(attn, experts, routers, vision, path):
    """Every layer complete and every shape consistent; returns the sizes."""
    if not experts:
        raise ConvertError(f"{path}: not a LLaVA-MoLE checkpoint: no {LLM}{{i}}.mlp.moe_*.{{k}}.lora_* tensors")
    L = max(list(experts) + list(routers) + list(attn)) + 1
    K = max(k for e in experts.values() for ps in e.values() for k, _ in ps) + 1
    targets = sorted({p for a in attn.values() for p, _ in a}, key="qkvo".index)
    missing = []
    for i in range(L):
        missing += [f"{LLM}{i}.self_attn.{p}_proj.lora_{ab}.default.weight" for p in targets for ab in "AB"
                    if (p, ab) not in attn.get(i, {})]
        missing += [f"{LLM}{i}.mlp.moe_{f}.{k}.lora_{ab}" for f in FFN for k in range(K) for ab in "AB"
                    if (k, ab) not in experts.get(i, {}).get(f, {})]
        missing += [f"{LLM}{i}.mlp.router.{w}" for w in ("weight", "bias") if w not in routers.get(i, {})]
    missing += [f"in_adaptor.{n}" for n in VISION if n not in vision]
    if missing:
        raise ConvertError(f"{path}: not a complete LLaVA-MoLE checkpoint: missing {capped(missing)}")
    r, D = experts[0]["gate"][(0, "A")].shape
    Fh = experts[0]["gate"][(0, "B")].shape[0]
    W = vision["projector.0.weight"].shape[1]
    want = {}
    for i in range(L):
        for k in range(K):
            for f, (inp, out) in {"gate": (D, Fh), "up": (D, Fh), "down": (Fh, D)}.items():
                want[f"{LLM}{i}.mlp.moe_{f}.{k}.lora_A"] = (experts[i][f][(k, "A")], (r, inp))
                want[f"{LLM}{i}.mlp.moe_{f}.{k}.lora_B"] = (experts[i][f][(k, "B")], (out, r))
        want[f"{LLM}{i}.mlp.router.weight"] = (routers[i]["weight"], (K, D))
        want[f"{LLM}{i}.mlp.router.bias"] = (routers[i]["bias"], (K,))
        for p in targets:
            A, B = attn[i][(p, "A")], attn[i][(p, "B")]
            # every input is D wide; k / v outputs may be narrower (grouped-query attention)
            want[f"{LLM}{i}.self_attn.{p}_proj.lora_A.default.weight"] = (A, (r, D))
            want[f"{LLM}{i}.self_attn.{p}_proj.lora_B.default.weight"] = (B, (B.shape[0] if p in "kv" else D, r))
    for n, s in {"projector.0.weight": (D, W), "projector.0.bias": (D,), "projector.2.weight": (D, D),
                 "projector.2.bias": (D,), "visual_start_token": (1, 1, D), "visual_end_token": (1, 1, D)}.items():
        want["in_adaptor." + n] = (vision[n], s)
    wrong = [f"{n} is {list(t.shape)}, expected {list(s)}" for n, (t, s) in want.items() if tuple(t.shape) != s]
    if wrong:
        raise ConvertError(f"{path}: inconsistent shapes: {capped(wrong, 3)}")
    return L, K, r, D, Fh, W, targets


def mmtune_tensors(attn, experts, routers, vision, L, K, targets):
    out = {}
    for i in range(L):
        q = f"llm.model.layers.{i}.adapters.mole."
        for p in targets:
            for ab in "AB":
                out[f"{q}{p}.lora_{ab}"] = attn[i][(p, ab)]
        for f in FFN:
            for ab in "AB":
                out[f"{q}moe_{f}.lora_{ab}"] = torch.stack([experts[i][f][(k, ab)] for k in range(K)])
        out[f"{q}router.weight"] = routers[i]["weight"]
        out[f"{q}router.bias"] = routers[i]["bias"]
    for n in VISION:
        out["llm.adapters.mole." + n] = vision[n]
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def convert(flags):
    path = flags.input
    sd = load_state_dict(path)
    attn, experts, routers, vision, skipped, unknown = classify(sd, path, flags.skip_unknown)
    L, K, r, D, Fh, W, targets = check(attn, experts, routers, vision, path)
    alpha = flags.alpha if flags.alpha is not None else 2.0 * r
    tensors = mmtune_tensors(attn, experts, routers, vision, L, K, targets)
    base_id = flags.base_id or ("vicuna-7b-v1.5" if (D, L) == (4096, 32) else "llama")
    vision_id = flags.vision_id or ("clip-vit-large-patch14-336" if W == 1024 else "clip-vit")
    mole = {"experts": K, "rank": r, "alpha": alpha, "dropout": 0.05, "attn_targets": targets,
            "gate_mode": flags.gate_mode, "balance_loss": "per_sample_cross_layer", "balance_weight": 0.01}
    config = {"format": "mmtune.adapter", "version": 1, "family": "mole", "adapter": {"family": "mole", "mole": mole},
              "vision": {"feature": "patch_layer", "layer": flags.vision_layer, "image_size": flags.image_size,
                         "preprocess": "pad_square", "norm": "clip", "projector": "mlp2x_gelu",
                         "start_end_tokens": True},
              "base_model": {"id": base_id, "hidden_size": D, "num_layers": L, "intermediate_size": Fh},
              "vision_model": {"id": vision_id, "hidden_size": W}, "trainable": "adapter",
              "trainable_parameters": sum(t.numel() for t in tensors.values()),
              "source": f"converted from {os.path.abspath(path)} by scripts/convert_mole_checkpoint.py"}
    write_adapter_dir(flags.out, tensors, config, "mole", flags.force)
    if flags.alpha is None:
        print(f"note: alpha not given: using 2 r = {alpha:g} (scale 2, as the released args and checkpoint name)",
              file=sys.stderr)
    if unknown:
        print(f"note: left out {len(unknown)} unknown tensor(s): {capped(unknown)}", file=sys.stderr)
    n_skipped = sum(map(len, skipped.values()))
    if skipped:
        groups = [f"{len(skipped[p])} under {p}* ({what})" for p, what in FROZEN if p in skipped]
        print(f"dropped {n_skipped} frozen tensor(s) the adapter does not need: " + "; ".join(groups))
    print(f"{flags.out}: {len(tensors)} tensors, {config['trainable_parameters']:,} parameters; LLM {L}x{D} "
          f"(FFN {Fh}), K={K} r={r} alpha={alpha:g}, attention LoRA on {','.join(targets) or 'nothing'}, "
          f"projector {W}->{D}->{D}, gate {flags.gate_mode}; {n_skipped} frozen tensor(s) skipped")


def main():
    ap = argparse.ArgumentParser(description="released LLaVA-MoLE checkpoint (.pt) -> mmtune adapter directory")
    ap.add_argument("--input", required=True, help="llava_mole_*.pt")
    ap.add_argument("--out", required=True, help="adapter directory to write")
    ap.add_argument("--alpha", type=float, help="LoRA alpha (default: 2 x rank)")
    ap.add_argument("--gate-mode", default="dense_soft", choices=["dense_soft", "st_top1", "none", "switch"],
                    help="expert weighting (default dense_soft: the released inference path)")
    ap.add_argument("--image-size", type=int, default=336, help="ViT input resolution (default 336)")
    ap.add_argument("--vision-layer", type=int, default=-1, help="ViT layer of the patch features (default -1)")
    ap.add_argument("--base-id", help="base_model.id to record")
    ap.add_argument("--vision-id", help="vision_model.id to record")
    ap.add_argument("--skip-unknown", action="store_true", help="leave out tensors that are neither adapter tensors nor frozen parts of the wrapper")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    flags = ap.parse_args()
    if flags.image_size <= 0 or (flags.alpha is not None and flags.alpha <= 0):
        ap.error("--image-size and --alpha must be positive")
    return run(convert, flags)


if __name__ == "__main__":
    sys.exit(main())
