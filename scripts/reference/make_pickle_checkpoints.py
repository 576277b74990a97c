#!/usr/bin/env python3
"""Test fixtures for the converters: writes a Hugging Face tiny LLaMA back out in Meta's format and a
tiny CLIP vision tower in OpenAI's format, so that converting them must give back the originals.

  python scripts/reference/make_pickle_checkpoints.py --llama DIR --clip DIR --out OUT

OUT/meta/: params.json + consolidated.00.pth + consolidated.01.pth (two model-parallel shards, split
the way Meta's loader merges them), wq/wk in Meta's interleaved-pair RoPE layout.
OUT/openai-clip.pt: a plain state dict with OpenAI's visual.* names (in_proj q/k/v fused), plus a
text-tower tensor the converter must drop.
"""
import argparse
import json
import os

import torch
from safetensors.torch import load_file


def unpermute(w, heads):
    """transformers' rotate-half halves -> Meta's interleaved pairs (inverse of the converter's permute)."""
    rows, cols = w.shape
    return w.view(heads, 2, rows // heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def write_meta(llama, out):
    cfg = json.load(open(os.path.join(llama, "config.json")))
    hf = load_file(os.path.join(llama, "model.safetensors"))
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    lm_head = hf.get("lm_head.weight", hf["model.embed_tokens.weight"])
    sd = {"tok_embeddings.weight": hf["model.embed_tokens.weight"], "norm.weight": hf["model.norm.weight"],
          "output.weight": lm_head}
    for i in range(cfg["num_hidden_layers"]):
        q, p = f"model.layers.{i}.", f"layers.{i}."
        sd[p + "attention.wq.weight"] = unpermute(hf[q + "self_attn.q_proj.weight"], heads)
        sd[p + "attention.wk.weight"] = unpermute(hf[q + "self_attn.k_proj.weight"], kv)
        sd[p + "attention.wv.weight"] = hf[q + "self_attn.v_proj.weight"]
        sd[p + "attention.wo.weight"] = hf[q + "self_attn.o_proj.weight"]
        sd[p + "feed_forward.w1.weight"] = hf[q + "mlp.gate_proj.weight"]
        sd[p + "feed_forward.w2.weight"] = hf[q + "mlp.down_proj.weight"]
        sd[p + "feed_forward.w3.weight"] = hf[q + "mlp.up_proj.weight"]
        sd[p + "attention_norm.weight"] = hf[q + "input_layernorm.weight"]
        sd[p + "ffn_norm.weight"] = hf[q + "post_attention_layernorm.weight"]
    os.makedirs(os.path.join(out, "meta"), exist_ok=True)
    dim0 = ("output.weight", "wq.weight", "wk.weight", "wv.weight", "w1.weight", "w3.weight")
    dim1 = ("tok_embeddings.weight", "wo.weight", "w2.weight")
    for shard in range(2):
        part = {}
        for k, v in sd.items():
            if k.endswith(dim0):
                part[k] = v.chunk(2, 0)[shard].clone()
            elif k.endswith(dim1):
                part[k] = v.chunk(2, 1)[shard].clone()
            else:
                part[k] = v.clone()
        torch.save(part, os.path.join(out, "meta", f"consolidated.0{shard}.pth"))
    params = {"dim": cfg["hidden_size"], "n_layers": cfg["num_hidden_layers"], "n_heads": heads, "n_kv_heads": kv,
              "norm_eps": cfg["rms_norm_eps"], "vocab_size": -1, "multiple_of": 16,
              "rope_theta": cfg.get("rope_parameters", {}).get("rope_theta", cfg.get("rope_theta", 10000.0)),
              "max_seq_len": cfg["max_position_embeddings"]}
    json.dump(params, open(os.path.join(out, "meta", "params.json"), "w"))


def write_openai_clip(clip, out):
    # transformers 5 saves CLIPVisionModel without the "vision_model." prefix that older saves and
    # full CLIPModel checkpoints carry; accept both
    hf = {k if k.startswith("vision_model.") else "vision_model." + k: v
          for k, v in load_file(os.path.join(clip, "model.safetensors")).items()}
    layers = len({k.split(".")[3] for k in hf if k.startswith("vision_model.encoder.layers.")})
    sd = {"visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
          "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
          "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
          "visual.ln_pre.weight": hf["vision_model.pre_layrnorm.weight"],
          "visual.ln_pre.bias": hf["vision_model.pre_layrnorm.bias"],
          "visual.ln_post.weight": hf["vision_model.post_layernorm.weight"],
          "visual.ln_post.bias": hf["vision_model.post_layernorm.bias"],
          "visual.proj": torch.randn(hf["vision_model.post_layernorm.weight"].shape[0], 8),
          "token_embedding.weight": torch.randn(10, 8)}
    for i in range(layers):
        q, p = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        sd[p + "attn.in_proj_weight"] = torch.cat([hf[q + f"self_attn.{x}_proj.weight"] for x in "qkv"])
        sd[p + "attn.in_proj_bias"] = torch.cat([hf[q + f"self_attn.{x}_proj.bias"] for x in "qkv"])
        for src, dst in {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                         "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}.items():
            sd[p + src + ".weight"] = hf[q + dst + ".weight"]
            sd[p + src + ".bias"] = hf[q + dst + ".bias"]
    torch.save(sd, os.path.join(out, "openai-clip.pt"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_meta(args.llama, args.out)
    write_openai_clip(args.clip, args.out)
    print(f"{args.out}: meta/ (2 shards) and openai-clip.pt")


if __name__ == "__main__":
    main()
