#!/usr/bin/env python3
"""Random frozen weights of real model shapes, in the real formats, for scripts/bench_7b.sh.

  python scripts/reference/make_bench_weights.py --out DIR [--llm llama-7b] [--vit clip-vit-l14]
         [--tokenizer tokenizer.model] [--seed 0]

Writes DIR/<llm>/ (config.json, model-0000i-of-0000n.safetensors in bf16, one shard per ~2 GB, and
the tokenizer) and DIR/<vit>/ (a CLIPVisionModel directory in bf16), from torch.Generator(seed),
N(0, 0.02) matrices, ones for norms, zeros for biases. Tensors are drawn and written one at a
time, so memory stays near one shard. A finished directory holds DONE and is left as it is.
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file

LLMS = {
    "llama-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, vocab_size=32000, max_position_embeddings=2048),
    "llama-13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                      num_key_value_heads=40, vocab_size=32000, max_position_embeddings=2048),
}
VITS = {
    "clip-vit-l14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                         image_size=224, patch_size=14),
}


def llama_tensors(c):
    D, F, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    yield "model.embed_tokens.weight", (V, D)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for n in ("q", "k", "v", "o"):
            yield p + f"self_attn.{n}_proj.weight", (D, D)
        yield p + "mlp.gate_proj.weight", (F, D)
        yield p + "mlp.up_proj.weight", (F, D)
        yield p + "mlp.down_proj.weight", (D, F)
        yield p + "input_layernorm.weight", (D,)
        yield p + "post_attention_layernorm.weight", (D,)
    yield "model.norm.weight", (D,)
    yield "lm_head.weight", (V, D)


def clip_tensors(c):
    W, I, P = c["hidden_size"], c["intermediate_size"], c["patch_size"]
    n = (c["image_size"] // P) ** 2 + 1
    v = "vision_model."
    yield v + "embeddings.class_embedding", (W,)
    yield v + "embeddings.patch_embedding.weight", (W, 3, P, P)
    yield v + "embeddings.position_embedding.weight", (n, W)
    yield v + "pre_layrnorm.weight", (W,)
    yield v + "pre_layrnorm.bias", (W,)
    for i in range(c["num_hidden_layers"]):
        p = f"{v}encoder.layers.{i}."
        for n_ in ("q", "k", "v", "out"):
            yield p + f"self_attn.{n_}_proj.weight", (W, W)
            yield p + f"self_attn.{n_}_proj.bias", (W,)
        for ln in ("layer_norm1", "layer_norm2"):
            yield p + f"{ln}.weight", (W,)
            yield p + f"{ln}.bias", (W,)
        yield p + "mlp.fc1.weight", (I, W)
        yield p + "mlp.fc1.bias", (I,)
        yield p + "mlp.fc2.weight", (W, I)
        yield p + "mlp.fc2.bias", (W,)
    yield v + "post_layernorm.weight", (W,)
    yield v + "post_layernorm.bias", (W,)


def draw(name, shape, gen, device):
    if name.endswith("bias"):
        return torch.zeros(shape, dtype=torch.bfloat16)
    if len(shape) == 1 and "class_embedding" not in name:
        return torch.ones(shape, dtype=torch.bfloat16)
    t = torch.empty(shape, dtype=torch.float32, device=device).normal_(0.0, 0.02, generator=gen)
    return t.to(torch.bfloat16).cpu()


def write(out, tensors, config, gen, device, shard_bytes=2 << 30):
    if os.path.exists(os.path.join(out, "DONE")):
        print(f"{out}: exists")
        return
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    shards, cur, size = [], {}, 0
    for name, shape in tensors:
        t = draw(name, shape, gen, device)
        cur[name] = t
        size += t.numel() * 2
        if size >= shard_bytes:
            shards.append(cur)
            save_file(cur, os.path.join(out, f"shard-{len(shards)}.tmp"))
            cur, size = {}, 0
    if cur:
        shards.append(cur)
        save_file(cur, os.path.join(out, f"shard-{len(shards)}.tmp"))
    n = len(shards)
    index = {"metadata": {}, "weight_map": {}}
    for i, s in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{n:05d}.safetensors"
        os.rename(os.path.join(out, f"shard-{i}.tmp"), os.path.join(out, fname))
        for k in s:
            index["weight_map"][k] = fname
        s.clear()
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    open(os.path.join(out, "DONE"), "w").close()
    print(f"{out}: {n} shards")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--llm", default="llama-7b", choices=sorted(LLMS))
    ap.add_argument("--vit", default="clip-vit-l14", choices=sorted(VITS) + ["none"])
    ap.add_argument("--tokenizer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(args.seed)
    c = dict(LLMS[args.llm], architectures=["LlamaForCausalLM"], model_type="llama", rms_norm_eps=1e-6,
             rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")
    llm_dir = os.path.join(args.out, args.llm)
    write(llm_dir, llama_tensors(c), c, gen, device)
    if args.tokenizer:
        shutil.copy(args.tokenizer, os.path.join(llm_dir, "tokenizer.model"))
    if args.vit != "none":
        v = dict(VITS[args.vit], architectures=["CLIPVisionModel"], model_type="clip_vision_model",
                 hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3, projection_dim=768,
                 torch_dtype="bfloat16")
        write(os.path.join(args.out, args.vit), clip_tensors(v), v, gen, device)


if __name__ == "__main__":
    main()
