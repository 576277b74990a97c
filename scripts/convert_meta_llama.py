#!/usr/bin/env python3
"""Meta's LLaMA checkpoint format -> a Hugging Face LlamaForCausalLM directory that mmtune loads.

  python scripts/convert_meta_llama.py --input weights/7B --out models/llama-7b-hf [--tokenizer weights/tokenizer.model]

Reads params.json and consolidated.NN.pth (several shards are merged as Meta's model-parallel
layout requires: tok_embeddings on dim 1; output, wq, wk, wv, w1, w3 on dim 0; wo, w2 on dim 1;
norms from shard 0), permutes wq / wk from Meta's interleaved-pair RoPE layout to transformers'
rotate-half layout, and writes config.json, model.safetensors and tokenizer.model. This is one of the
few places that unpickle (torch.load with weights_only=True); the C++ never does.
"""
import argparse
import glob
import json
import os
import shutil

import torch
from safetensors.torch import save_file

DIM0 = ("output.weight", "attention.wq.weight", "attention.wk.weight", "attention.wv.weight",
        "feed_forward.w1.weight", "feed_forward.w3.weight")
DIM1 = ("tok_embeddings.weight", "attention.wo.weight", "feed_forward.w2.weight")


def permute(w, heads):
    """Interleaved pairs (2i, 2i+1) per head -> halves (i, i + hd/2), as transformers' converter."""
    rows, cols = w.shape
    return w.view(heads, rows // heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def merge(shards):
    if len(shards) == 1:
        return shards[0]
    merged = {}
    for name in shards[0]:
        parts = [s[name] for s in shards]
        if name.endswith(DIM0):
            merged[name] = torch.cat(parts, 0)
        elif name.endswith(DIM1):
            merged[name] = torch.cat(parts, 1)
        else:  # norms and rope tables are replicated
            merged[name] = parts[0]
    return merged


def ffn_size(dim, params):
    hidden = int(2 * 4 * dim / 3)
    if params.get("ffn_dim_multiplier"):
        hidden = int(params["ffn_dim_multiplier"] * hidden)
    multiple = params.get("multiple_of", 256)
    return multiple * ((hidden + multiple - 1) // multiple)


def convert(inp, out, tokenizer):
    params = json.load(open(os.path.join(inp, "params.json")))
    paths = sorted(glob.glob(os.path.join(inp, "consolidated.*.pth")))
    if not paths:
        raise SystemExit(f"error: no consolidated.*.pth in {inp} (hint: pass the folder that holds params.json)")
    sd = merge([torch.load(p, map_location="cpu", weights_only=True) for p in paths])
    dim, layers, heads = params["dim"], params["n_layers"], params["n_heads"]
    kv_heads = params.get("n_kv_heads") or heads
    vocab = sd["tok_embeddings.weight"].shape[0]
    hf = {"model.embed_tokens.weight": sd["tok_embeddings.weight"], "model.norm.weight": sd["norm.weight"],
          "lm_head.weight": sd["output.weight"]}
    for i in range(layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        hf[q + "self_attn.q_proj.weight"] = permute(sd[p + "attention.wq.weight"], heads)
        hf[q + "self_attn.k_proj.weight"] = permute(sd[p + "attention.wk.weight"], kv_heads)
        hf[q + "self_attn.v_proj.weight"] = sd[p + "attention.wv.weight"]
        hf[q + "self_attn.o_proj.weight"] = sd[p + "attention.wo.weight"]
        hf[q + "mlp.gate_proj.weight"] = sd[p + "feed_forward.w1.weight"]
        hf[q + "mlp.down_proj.weight"] = sd[p + "feed_forward.w2.weight"]
        hf[q + "mlp.up_proj.weight"] = sd[p + "feed_forward.w3.weight"]
        hf[q + "input_layernorm.weight"] = sd[p + "attention_norm.weight"]
        hf[q + "post_attention_layernorm.weight"] = sd[p + "ffn_norm.weight"]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": dim,
              "intermediate_size": hf["model.layers.0.mlp.gate_proj.weight"].shape[0], "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "vocab_size": vocab,
              "rms_norm_eps": params.get("norm_eps", 1e-6), "rope_theta": params.get("rope_theta", 10000.0),
              "max_position_embeddings": params.get("max_seq_len", 2048), "tie_word_embeddings": False,
              "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float16"}
    if config["intermediate_size"] != ffn_size(dim, params):
        print(f"note: FFN width {config['intermediate_size']} differs from params.json's rule ({ffn_size(dim, params)})")
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: v.contiguous() for k, v in hf.items()}, os.path.join(tmp, "model.safetensors"),
              metadata={"format": "pt"})
    json.dump(config, open(os.path.join(tmp, "config.json"), "w"), indent=2)
    if tokenizer:
        shutil.copy(tokenizer, os.path.join(tmp, "tokenizer.model"))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(f"{out}: {layers} layers, dim {dim}, heads {heads}/{kv_heads}, vocab {vocab}, {len(paths)} shard(s) merged")


def main():
    ap = argparse.ArgumentParser(description="Meta LLaMA (.pth + params.json) -> Hugging Face safetensors")
    ap.add_argument("--input", required=True, help="folder with params.json and consolidated.NN.pth")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", help="tokenizer.model (default: <input>/tokenizer.model or <input>/../tokenizer.model)")
    args = ap.parse_args()
    tok = args.tokenizer
    for cand in (os.path.join(args.input, "tokenizer.model"), os.path.join(args.input, "..", "tokenizer.model")):
        if not tok and os.path.exists(cand):
            tok = cand
    convert(args.input, args.out, tok)


if __name__ == "__main__":
    main()
