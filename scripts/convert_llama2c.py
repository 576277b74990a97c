#!/usr/bin/env python3
"""llama2.c legacy checkpoint (.bin) -> Hugging Face LlamaForCausalLM directory that mmtune loads.

  python scripts/convert_llama2c.py stories260K.bin --tokenizer tok512.model --out models/stories260K

Format (llama2.c's legacy export): 7 int32 = dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size (negative: a separate classifier follows at the end), seq_len; then float32 arrays:
token embedding [V, D]; attention RMSNorm [L, D]; wq [L, H*hs, D]; wk [L, Hkv*hs, D]; wv; wo
[L, D, H*hs]; FFN RMSNorm [L, D]; w1 [L, F, D]; w2 [L, D, F]; w3 [L, F, D]; final RMSNorm [D];
two RoPE tables [seq_len, hs/2] (unused); the classifier [V, D] if vocab_size was negative.
RoPE there rotates interleaved pairs (2i, 2i+1) like Meta's checkpoints, so wq / wk are permuted to
transformers' rotate-half layout exactly as for Meta weights. Writes config.json, model.safetensors
and tokenizer.model (to OUT.tmp, then renamed).
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np
from safetensors.numpy import save_file


def permute(w, heads):
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def main():
    ap = argparse.ArgumentParser(description="llama2.c .bin -> Hugging Face safetensors directory")
    ap.add_argument("input")
    ap.add_argument("--tokenizer", required=True, help="the model's SentencePiece tokenizer.model")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    raw = open(args.input, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hs = dim // heads
    data = np.frombuffer(raw, dtype=np.float32, offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        if pos + n > data.size:
            raise SystemExit(f"error: {args.input} is truncated (hint: is it a llama2.c legacy .bin?)")
        out = data[pos:pos + n].reshape(shape).copy()
        pos += n
        return out

    emb = take(vocab, dim)
    attn_norm = take(layers, dim)
    wq, wk, wv = take(layers, heads * hs, dim), take(layers, kv_heads * hs, dim), take(layers, kv_heads * hs, dim)
    wo = take(layers, dim, heads * hs)
    ffn_norm = take(layers, dim)
    w1, w2, w3 = take(layers, hidden, dim), take(layers, dim, hidden), take(layers, hidden, dim)
    final_norm = take(dim)
    take(seq_len, hs // 2)  # freq_cis_real (unused)
    take(seq_len, hs // 2)  # freq_cis_imag (unused)
    tensors = {"model.embed_tokens.weight": emb, "model.norm.weight": final_norm}
    if not shared:
        tensors["lm_head.weight"] = take(vocab, dim)
    if pos != data.size:
        raise SystemExit(f"error: {data.size - pos} unexpected trailing floats in {args.input}")
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors[p + "self_attn.q_proj.weight"] = permute(wq[i], heads)
        tensors[p + "self_attn.k_proj.weight"] = permute(wk[i], kv_heads)
        tensors[p + "self_attn.v_proj.weight"] = wv[i]
        tensors[p + "self_attn.o_proj.weight"] = wo[i]
        tensors[p + "mlp.gate_proj.weight"] = w1[i]
        tensors[p + "mlp.down_proj.weight"] = w2[i]
        tensors[p + "mlp.up_proj.weight"] = w3[i]
        tensors[p + "input_layernorm.weight"] = attn_norm[i]
        tensors[p + "post_attention_layernorm.weight"] = ffn_norm[i]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": dim,
              "intermediate_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": seq_len,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": shared, "hidden_act": "silu",
              "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    tmp = args.out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(tmp, "model.safetensors"),
              metadata={"format": "pt"})
    json.dump(config, open(os.path.join(tmp, "config.json"), "w"), indent=2)
    shutil.copy(args.tokenizer, os.path.join(tmp, "tokenizer.model"))
    shutil.rmtree(args.out, ignore_errors=True)
    os.rename(tmp, args.out)
    print(f"{args.out}: dim {dim}, {layers} layers, heads {heads}/{kv_heads}, ffn {hidden}, vocab {vocab}, "
          f"{'tied' if shared else 'untied'}")


if __name__ == "__main__":
    main()
