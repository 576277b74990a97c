#!/usr/bin/env python3
"""Fake official LaVIN checkpoints (torch pickles laid out as LaVIN's util/misc.py save_model writes
them) for testing scripts/convert_lavin_checkpoint.py, plus the same weights under mmtune's names.

  python scripts/reference/make_lavin_checkpoint.py --llama DIR --clip DIR --out OUTDIR [--seed 1]
      [--llm-placement attn|block] [--vision-placement router|router_block] [--temperature 5]
  python scripts/reference/make_lavin_checkpoint.py --shapes 7b|13b --out OUTDIR   # full-size shapes

Writes into OUTDIR:
  checkpoint-19.pth        {"model": adapter-only state dict under LaVIN's parameter names, "optimizer":
                           an AdamW-like state dict, "epoch": 19, "scaler": GradScaler state, "args":
                           argparse.Namespace with LaVIN's train.py option names}
  checkpoint-19-ddp.pth    the same with DDP's "module." prefix on every name
  checkpoint-noargs.pth    {"model": ...} only (the converter falls back to its flags)
  expected.safetensors     the same tensors under mmtune's names (what the converter must produce)
  bad-missing.pth          one tensor (layers.1.adapter_attn.conv_D.bias) dropped
  bad-unknown.pth          one extra, unknown adapter tensor
  bad-normal.pth           CLIP adapters of LaVIN's plain RepAdapter kind (visual_adapter_type normal)
  garbage.pth              random bytes
  evil.pth                 a pickle that names os.getcwd: a safe loader must refuse it
The shapes follow LaVIN's classes (spec §1.2, §5): RepAdapter_Router = conv_A Conv1d(C, h, 1),
conv_B / conv_D Conv1d(h, C, 1, groups=2), expert_weights Linear(C, 2); AdapterMLP = conv_A
Linear(W, hidden), conv_B Linear(hidden, D); adapter_modality_embedding Embedding(2, D).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

SHAPES = {"7b": dict(D=4096, L=32, W=1024, Lv=24, hidden=128), "13b": dict(D=5120, L=40, W=1024, Lv=24, hidden=128)}


def router(prefix, C, h):
    return {prefix + "conv_A.weight": (h, C, 1), prefix + "conv_A.bias": (h,),
            prefix + "conv_B.weight": (C, h // 2, 1), prefix + "conv_B.bias": (C,),
            prefix + "conv_D.weight": (C, h // 2, 1), prefix + "conv_D.bias": (C,),
            prefix + "expert_weights.weight": (2, C), prefix + "expert_weights.bias": (2,)}


def lavin_shapes(D, L, W, Lv, hidden, h, llm_placement, vision_placement):
    """LaVIN name -> (shape, mmtune name)."""
    out = {}
    kinds = ["adapter_attn"] + (["adapter_mlp"] if llm_placement == "block" else [])
    for i in range(L):
        for kind in kinds:
            for n, s in router(f"layers.{i}.{kind}.", D, h).items():
                out[n] = (s, f"llm.model.layers.{i}.adapters.mma.{kind}." + n.split(f"{kind}.")[1])
    kinds = ["adapter_attn"] + (["adapter_mlp"] if vision_placement == "router_block" else [])
    for j in range(Lv):
        for kind in kinds:
            for n, s in router(f"backbone.visual.transformer.resblocks.{j}.{kind}.", W, h).items():
                out[n] = (s, f"vision.vision_model.encoder.layers.{j}.adapters.mma.{kind}." + n.split(f"{kind}.")[1])
    for n, s in {"adapter_proj.conv_A.weight": (hidden, W), "adapter_proj.conv_A.bias": (hidden,),
                 "adapter_proj.conv_B.weight": (D, hidden), "adapter_proj.conv_B.bias": (D,),
                 "adapter_modality_embedding.weight": (2, D)}.items():
        out[n] = (s, "llm.adapters.mma." + n)
    return out


def lavin_args(a, hidden):
    """The Namespace LaVIN's train.py pickles (a representative subset of its options)."""
    return argparse.Namespace(batch_size=4, epochs=20, accum_iter=4, llama_model_path="../data/weights/",
                              llm_model=(a.shapes or "7b").upper(), use_vicuna=False, cpu_load=False, bits="16bit",
                              adapter_type=a.llm_placement, visual_adapter_type=a.vision_placement,
                              adapter_dim=a.dim, hidden_proj=hidden, temperature=a.temperature, n_prompt=6,
                              adapter_scale=a.scale, drop_path=0.0, max_seq_len=512, weight_decay=0.02, lr=None,
                              blr=9e-3, min_lr=0.0, warmup_epochs=2.0, gradient_checkpointing=False,
                              prompt_format="QCM-ALE", options=["A", "B", "C", "D", "E"], seed=0,
                              output_dir="./LaVIN-7B/", distributed=True, gpu=0, rank=0, world_size=2)


def optimizer_state(n):
    return {"state": {i: {"step": torch.tensor(100.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}
                      for i in range(n)},
            "param_groups": [{"lr": 0.0, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.02, "params": list(range(n))}]}


class Evil:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless if run, but a safe loader must never run it


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama")
    ap.add_argument("--clip")
    ap.add_argument("--shapes", choices=sorted(SHAPES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--projector-hidden", type=int, default=16)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--temperature", type=float, default=5.0)
    ap.add_argument("--llm-placement", choices=["attn", "block"], default="attn")
    ap.add_argument("--vision-placement", choices=["router", "router_block"], default="router")
    a = ap.parse_args()
    if a.shapes:
        dims = SHAPES[a.shapes]
    elif a.llama and a.clip:
        lc, vc = (json.load(open(os.path.join(d, "config.json"))) for d in (a.llama, a.clip))
        dims = dict(D=lc["hidden_size"], L=lc["num_hidden_layers"], W=vc["hidden_size"], Lv=vc["num_hidden_layers"],
                    hidden=a.projector_hidden)
    else:
        ap.error("give --llama and --clip, or --shapes")
    shapes = lavin_shapes(**dims, h=a.dim, llm_placement=a.llm_placement, vision_placement=a.vision_placement)
    g = torch.Generator().manual_seed(a.seed)
    # non-zero everywhere (a trained checkpoint): routers larger so routing matters, as mma_reference.py
    scale = lambda n: 1.0 if "modality" in n else 0.5 if "expert_weights" in n else 0.2  # noqa: E731
    model = {n: torch.randn(s, generator=g) * scale(n) for n, (s, _) in shapes.items()}
    os.makedirs(a.out, exist_ok=True)
    full = {"model": model, "optimizer": optimizer_state(len(model)), "epoch": 19,
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                       "_growth_tracker": 17}, "args": lavin_args(a, dims["hidden"])}
    out = lambda name: os.path.join(a.out, name)  # noqa: E731
    torch.save(full, out("checkpoint-19.pth"))
    torch.save(dict(full, model={"module." + n: t for n, t in model.items()}), out("checkpoint-19-ddp.pth"))
    torch.save({"model": model}, out("checkpoint-noargs.pth"))
    save_file({shapes[n][1]: t.contiguous() for n, t in model.items()}, out("expected.safetensors"))
    torch.save(dict(full, model={n: t for n, t in model.items() if n != "layers.1.adapter_attn.conv_D.bias"}),
               out("bad-missing.pth"))
    torch.save(dict(full, model=dict(model, **{"layers.0.adapter_gate.weight": torch.zeros(2)})), out("bad-unknown.pth"))
    normal = {n: t for n, t in model.items() if not (n.startswith("backbone.") and ("conv_D" in n or "expert" in n))}
    torch.save(dict(full, model=normal, args=argparse.Namespace(**dict(vars(full["args"]), visual_adapter_type="normal"))),
               out("bad-normal.pth"))
    with open(out("garbage.pth"), "wb") as f:
        f.write(torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8).numpy().tobytes())
    torch.save({"model": model, "args": Evil()}, out("evil.pth"))
    print(f"{a.out}: LaVIN checkpoints with {len(model)} tensors, {sum(t.numel() for t in model.values()):,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
