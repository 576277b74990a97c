#!/usr/bin/env python3
"""OpenAI CLIP checkpoint (.pt, as clip.load downloads it) -> Hugging Face CLIPVisionModel directory
(vision tower only: config.json + model.safetensors) that mmtune loads.

  python scripts/convert_openai_clip.py --input ViT-L-14.pt --out models/clip-vit-large-patch14

Accepts a TorchScript archive (OpenAI's files) or a plain state dict. Maps visual.* names to
transformers' names (in_proj split into q/k/v, c_fc/c_proj -> fc1/fc2, ln_pre -> pre_layrnorm, ...);
the text tower and visual.proj are dropped. One of the few places that unpickle; the C++ never does.
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file


def load_state(path):
    try:
        return torch.jit.load(path, map_location="cpu").state_dict()
    except (RuntimeError, ValueError):
        return torch.load(path, map_location="cpu", weights_only=True)


def convert(sd, out, heads=None):
    sd = {k: v for k, v in sd.items() if k.startswith("visual.")}
    width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = int(round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    layers = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
    hf = {"vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
          "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
          "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
          "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"],
          "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
          "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"],
          "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"]}
    for i in range(layers):
        p, q = f"visual.transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for part, w, b in zip(("q", "k", "v"), sd[p + "attn.in_proj_weight"].chunk(3), sd[p + "attn.in_proj_bias"].chunk(3)):
            hf[q + f"self_attn.{part}_proj.weight"] = w
            hf[q + f"self_attn.{part}_proj.bias"] = b
        pairs = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                 "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
        for src, dst in pairs.items():
            hf[q + dst + ".weight"] = sd[p + src + ".weight"]
            hf[q + dst + ".bias"] = sd[p + src + ".bias"]
    config = {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model", "hidden_size": width,
              "intermediate_size": hf["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
              "num_hidden_layers": layers, "num_attention_heads": heads or width // 64,
              "image_size": grid * patch, "patch_size": patch, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
              "num_channels": 3}
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: v.float().contiguous() for k, v in hf.items()}, os.path.join(tmp, "model.safetensors"),
              metadata={"format": "pt"})
    json.dump(config, open(os.path.join(tmp, "config.json"), "w"), indent=2)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(f"{out}: {layers} blocks, width {width}, {grid * patch} px, patch {patch}")


def main():
    ap = argparse.ArgumentParser(description="OpenAI CLIP .pt -> Hugging Face CLIPVisionModel safetensors")
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--heads", type=int, help="attention heads (default: width / 64, OpenAI's rule)")
    args = ap.parse_args()
    convert(load_state(args.input), args.out, args.heads)


if __name__ == "__main__":
    main()
