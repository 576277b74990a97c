#!/usr/bin/env python3
"""Official LaVIN checkpoint (checkpoint-N.pth, as LaVIN's training writes it) -> an mmtune adapter
directory (adapter_model.safetensors + adapter_config.json) that `mmtune` loads with the mma family.

  python scripts/convert_lavin_checkpoint.py --input checkpoint-19.pth --out adapters/lavin-7b
      [--clean] [--temperature T] [--scale S] [--cls-every 4] [--image-size 224]
      [--base-id ID] [--vision-id ID] [--force]

The .pth is a pickled dict {"model": adapter-only state dict (names may carry DDP's "module."),
"optimizer", "epoch", "scaler", "args": argparse.Namespace}. It is unpickled with torch's
weights_only loader, which accepts tensors, plain containers and (added here) argparse.Namespace and
refuses anything else, so no code in the file runs. Names (spec §5 -> mmtune):
  layers.{i}.adapter_{attn,mlp}.P                       -> llm.model.layers.{i}.adapters.mma.adapter_{attn,mlp}.P
  backbone.visual.transformer.resblocks.{j}.adapter_{attn,mlp}.P
                                                        -> vision.vision_model.encoder.layers.{j}.adapters.mma.adapter_{attn,mlp}.P
  adapter_proj.conv_{A,B}.{weight,bias}                 -> llm.adapters.mma.adapter_proj.conv_{A,B}.{weight,bias}
  adapter_modality_embedding.weight                     -> llm.adapters.mma.adapter_modality_embedding.weight
with P in {conv_A, conv_B, conv_D, expert_weights}.{weight, bias}; values are copied unchanged (fp32).
Sizes come from the tensors; temperature / scale from args (flags override), else LaVIN's defaults
(10, 1). Official checkpoints get LaVIN's own behaviour for parity (clip_router_mode
official_lnd_quirk, rope_decode_offset 0); --clean selects per_sample_cls and 1 (spec §1.3, §1.11).
Errors: one line on stderr, exit code 1, nothing written.
"""
import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint_io import ConvertError, capped, load_released, run, write_adapter_dir  # noqa: E402

ROUTER = ["conv_A.weight", "conv_A.bias", "conv_B.weight", "conv_B.bias", "conv_D.weight", "conv_D.bias",
          "expert_weights.weight", "expert_weights.bias"]
NECK = ["adapter_proj.conv_A.weight", "adapter_proj.conv_A.bias", "adapter_proj.conv_B.weight", "adapter_proj.conv_B.bias"]
MODALITY = "adapter_modality_embedding.weight"
RE_LLM = re.compile(r"layers\.(\d+)\.(adapter_attn|adapter_mlp)\.(.+)")
RE_VIT = re.compile(r"backbone\.visual\.transformer\.resblocks\.(\d+)\.(adapter_attn|adapter_mlp)\.(.+)")


def load_checkpoint(path):
    """Unpickles with torch's weights_only loader plus argparse.Namespace (LaVIN's pickled args)."""
    return load_released(path, "LaVIN's checkpoint-N.pth file",
                         "neither a tensor, a plain container nor argparse.Namespace (a LaVIN checkpoint holds only "
                         "those)", safe_globals=[argparse.Namespace])


def state_dict_of(ckpt, path):
    sd = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        keys = capped(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ConvertError(f"{path}: not a LaVIN checkpoint: expected a dict with 'model' (the adapter state dict), "
                           f"'optimizer', 'epoch', 'args'; found {keys}")
    out = {}
    for name, t in sd.items():
        while name.startswith("module."):  # DDP
            name = name[len("module."):]
        out[name] = t
    return out


def split(sd, path):
    """Groups LaVIN names: {block: {kind: {param: tensor}}} for the LLM and the ViT; lists unknown names."""
    llm, vit, unknown = {}, {}, []
    for name, t in sd.items():
        m = RE_LLM.fullmatch(name) or RE_VIT.fullmatch(name)
        if m and m.group(3) in ROUTER:
            side = llm if m.re is RE_LLM else vit
            side.setdefault(int(m.group(1)), {}).setdefault(m.group(2), {})[m.group(3)] = t
        elif name not in NECK + [MODALITY]:
            unknown.append(name)
    if unknown:
        raise ConvertError(f"{path}: not a LaVIN checkpoint: unknown tensors {capped(unknown)}")
    return llm, vit


def check_side(blocks, prefix, what, path, normal_hint=False):
    """Every block 0..n-1 holds adapter_attn (and all hold adapter_mlp, or none); returns (n, mlp)."""
    if not blocks:
        return 0, False
    n = max(blocks) + 1
    mlp = any("adapter_mlp" in b for b in blocks.values())
    kinds = ["adapter_attn"] + (["adapter_mlp"] if mlp else [])
    missing = [f"{prefix}{i}.{k}.{p}" for i in range(n) for k in kinds for p in ROUTER
               if p not in blocks.get(i, {}).get(k, {})]
    if missing and normal_hint and all(("conv_D" in m or "expert_weights" in m) for m in missing):
        raise ConvertError(f"{path}: the {what} adapters are LaVIN's plain RepAdapter (visual_adapter_type 'normal', "
                           "no conv_D / expert_weights), which mmtune does not support (spec §1.2: it has no identity path)")
    if missing:
        raise ConvertError(f"{path}: not a LaVIN checkpoint: missing {capped(missing)}")
    return n, mlp


def check_shapes(sd, llm, vit, path):
    """Returns (D, W, h, hidden) after checking every shape against LaVIN's classes."""
    missing = [n for n in NECK + [MODALITY] if n not in sd]
    if missing:
        raise ConvertError(f"{path}: not a LaVIN checkpoint: missing {capped(missing)}")
    hidden, W = sd["adapter_proj.conv_A.weight"].shape
    D = sd[MODALITY].shape[1]
    h = sd["layers.0.adapter_attn.conv_A.weight"].shape[0]
    want = {"adapter_proj.conv_A.bias": (hidden,), "adapter_proj.conv_B.weight": (D, hidden),
            "adapter_proj.conv_B.bias": (D,), MODALITY: (2, D)}
    for prefix, blocks, C in (("layers.", llm, D), ("backbone.visual.transformer.resblocks.", vit, W)):
        shapes = [(h, C, 1), (h,), (C, h // 2, 1), (C,), (C, h // 2, 1), (C,), (2, C), (2,)]
        for i, kinds in blocks.items():
            for kind in kinds:
                want |= {f"{prefix}{i}.{kind}.{p}": s for p, s in zip(ROUTER, shapes)}
    wrong = [f"{n} is {list(sd[n].shape)}, expected {list(s)}" for n, s in want.items() if tuple(sd[n].shape) != s]
    if wrong:
        raise ConvertError(f"{path}: inconsistent shapes: {capped(wrong, 3)}")
    if h % 2:
        raise ConvertError(f"{path}: adapter dim {h} is odd (the up-projections have 2 groups)")
    return D, W, h, hidden


def mmtune_name(name):
    m = RE_LLM.fullmatch(name)
    if m:
        return f"llm.model.layers.{m.group(1)}.adapters.mma.{m.group(2)}.{m.group(3)}"
    m = RE_VIT.fullmatch(name)
    if m:
        return f"vision.vision_model.encoder.layers.{m.group(1)}.adapters.mma.{m.group(2)}.{m.group(3)}"
    return "llm.adapters.mma." + name


def options(ckpt, found, flags, path):
    """Hyper-parameters: tensors decide sizes and placements; args (or flags) the rest."""
    args = ckpt.get("args")
    a = vars(args) if isinstance(args, argparse.Namespace) else args if isinstance(args, dict) else {}
    notes, problems = [], []
    for key, have in (("adapter_dim", found["dim"]), ("hidden_proj", found["hidden"]),
                      ("adapter_type", found["llm_placement"]), ("visual_adapter_type", found["vision_placement"])):
        if key in a and a[key] != have and not (key == "visual_adapter_type" and have == "none"):
            problems.append(f"args.{key} is {a[key]!r} but the tensors say {have!r}")
    if problems:
        raise ConvertError(f"{path}: the pickled args contradict the tensors: {'; '.join(problems)}")

    def pick(flag, key, default):
        if getattr(flags, flag) is not None:
            if key in a and float(a[key]) != getattr(flags, flag):
                notes.append(f"--{flag} {getattr(flags, flag)} overrides args.{key} {a[key]}")
            return getattr(flags, flag)
        if key in a:
            return float(a[key])
        notes.append(f"no args.{key} in the checkpoint: using {default}, LaVIN's default (pass --{flag} if it was "
                     "trained otherwise" + (", e.g. 5 for LaVIN's 13B scripts)" if flag == "temperature" else ")"))
        return default
    return pick("temperature", "temperature", 10.0), pick("scale", "adapter_scale", 1.0), a, notes


def convert(flags):
    path = flags.input
    ckpt = load_checkpoint(path)
    sd = state_dict_of(ckpt, path)
    llm, vit = split(sd, path)
    if not llm:
        raise ConvertError(f"{path}: not a LaVIN checkpoint: no layers.{{i}}.adapter_attn.* tensors")
    L, llm_mlp = check_side(llm, "layers.", "LLM", path)
    Lv, vit_mlp = check_side(vit, "backbone.visual.transformer.resblocks.", "CLIP", path, normal_hint=True)
    D, W, h, hidden = check_shapes(sd, llm, vit, path)
    found = {"dim": h, "hidden": hidden, "llm_placement": "block" if llm_mlp else "attn",
             "vision_placement": "router_block" if vit_mlp else "router" if Lv else "none"}
    temperature, scale, a, notes = options(ckpt, found, flags, path)
    tensors = {mmtune_name(n): t.detach().to(torch.float32).contiguous() for n, t in sd.items()}
    base_id = flags.base_id or (("vicuna-" if a.get("use_vicuna") else "llama-") + str(a["llm_model"]).lower()
                                if "llm_model" in a else {(4096, 32): "llama-7b", (5120, 40): "llama-13b"}.get((D, L), "llama"))
    vision_id = flags.vision_id or ("clip-vit-large-patch14" if (W, Lv) == (1024, 24) else "clip-vit")
    mma = {"dim": h, "scale": scale, "temperature": temperature, "dropout": 0.1,
           "llm_placement": found["llm_placement"], "vision_placement": found["vision_placement"],
           "clip_router_mode": "per_sample_cls" if flags.clean else "official_lnd_quirk",
           "rope_decode_offset": 1 if flags.clean else 0, "modality_token": True,
           "image_prefix": "Image: ", "text_prefix": "Image: N/A"}
    vision_model = {"id": vision_id, "hidden_size": W}
    if Lv:
        vision_model["num_layers"] = Lv
    config = {"format": "mmtune.adapter", "version": 1, "family": "mma", "adapter": {"family": "mma", "mma": mma},
              "vision": {"feature": "cls_every", "cls_every": flags.cls_every, "image_size": flags.image_size,
                         "preprocess": "resize", "interpolation": "bicubic", "norm": "imagenet",
                         "projector": "mlp_silu", "projector_hidden": hidden},
              "base_model": {"id": base_id, "hidden_size": D, "num_layers": L},
              "vision_model": vision_model, "trainable": "adapter",
              "trainable_parameters": sum(t.numel() for t in tensors.values()),
              "source": f"converted from {os.path.abspath(path)} by scripts/convert_lavin_checkpoint.py"}
    if isinstance(ckpt.get("epoch"), int):
        config["source"] += f" (LaVIN epoch {ckpt['epoch']})"
    write_adapter_dir(flags.out, tensors, config, "mma", flags.force)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    print(f"{flags.out}: {len(tensors)} tensors, {config['trainable_parameters']:,} parameters; LLM {L}x{D} "
          f"({found['llm_placement']}), ViT {Lv}x{W} ({found['vision_placement']}), neck {W}->{hidden}->{D}, "
          f"h={h}, t={temperature:g}, s={scale:g}, {mma['clip_router_mode']}, rope_decode_offset {mma['rope_decode_offset']}")


def main():
    ap = argparse.ArgumentParser(description="official LaVIN checkpoint (.pth) -> mmtune adapter directory")
    ap.add_argument("--input", required=True, help="LaVIN checkpoint-N.pth")
    ap.add_argument("--out", required=True, help="adapter directory to write")
    ap.add_argument("--clean", action="store_true",
                    help="per_sample_cls CLIP routing and rope_decode_offset 1 instead of LaVIN's own behaviour")
    ap.add_argument("--temperature", type=float, help="router temperature (default: args.temperature, else 10)")
    ap.add_argument("--scale", type=float, help="adapter scale (default: args.adapter_scale, else 1)")
    ap.add_argument("--cls-every", type=int, default=4, help="CLS token after every N-th ViT block (LaVIN: 4)")
    ap.add_argument("--image-size", type=int, default=224, help="input resolution (LaVIN: 224)")
    ap.add_argument("--base-id", help="base_model.id to record (default: from args.llm_model)")
    ap.add_argument("--vision-id", help="vision_model.id to record")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    flags = ap.parse_args()
    if flags.cls_every <= 0 or flags.image_size <= 0:
        ap.error("--cls-every and --image-size must be positive")
    return run(convert, flags)


if __name__ == "__main__":
    sys.exit(main())
