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
and tokenizer.model into OUT.tmp, then renames it to OUT. Needs numpy and safetensors, not torch.
scripts/reference/check_stories260k.py checks the result against transformers.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np
from safetensors.numpy import save_file

HEADER = struct.Struct("<7i")
V1_MAGIC = 0x616B3432  # "ak42": llama2.c's newer export versions, which this script does not read


def fail(message, hint):
    sys.exit(f"error: {message}\n  hint: {hint}")


def permute(w, heads):
    """[heads*hs, dim] interleaved-pair RoPE rows -> rotate-half rows (Meta -> HF conversion)."""
    rows, cols = w.shape
    # [heads, hs/2, 2, dim] -> [heads, 2, hs/2, dim]: per head, the even rows first, then the odd ones
    return w.reshape(heads, rows // heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def read_header(path, raw):
    if len(raw) < HEADER.size:
        fail(f"{path}: {len(raw)} bytes, too short for a llama2.c header", "is it a llama2.c legacy .bin?")
    if struct.unpack_from("<I", raw)[0] == V1_MAGIC:
        fail(f"{path}: llama2.c version-1+ export (magic 'ak42'), not the legacy format",
             "re-export with llama2.c's export.py --version 0 (legacy)")
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = HEADER.unpack_from(raw)
    if min(dim, hidden, layers, heads, kv_heads, seq_len, abs(vocab)) <= 0 or dim % heads or heads % kv_heads \
            or (dim // heads) % 2:
        fail(f"{path}: implausible header dim={dim} hidden={hidden} layers={layers} heads={heads} "
             f"kv_heads={kv_heads} vocab={vocab} seq_len={seq_len}", "is it a llama2.c legacy .bin?")
    return dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=abs(vocab),
                tied=vocab > 0, seq_len=seq_len)


def read_tensors(path, raw, h):
    """The float32 arrays in file order, under Hugging Face names."""
    if (len(raw) - HEADER.size) % 4:
        fail(f"{path}: {len(raw) - HEADER.size} bytes after the header, not a whole number of float32s",
             "the file is truncated or not a llama2.c legacy .bin")
    data = np.frombuffer(raw, dtype="<f4", offset=HEADER.size)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        if pos + n > data.size:
            fail(f"{path} is truncated ({data.size} floats after the header)", "is it a llama2.c legacy .bin?")
        out = data[pos:pos + n].reshape(shape).astype(np.float32)  # a native-endian copy
        pos += n
        return out

    L, D, F, hs = h["layers"], h["dim"], h["hidden"], h["dim"] // h["heads"]
    emb, attn_norm = take(h["vocab"], D), take(L, D)
    wq, wk, wv = take(L, h["heads"] * hs, D), take(L, h["kv_heads"] * hs, D), take(L, h["kv_heads"] * hs, D)
    wo, ffn_norm = take(L, D, h["heads"] * hs), take(L, D)
    w1, w2, w3 = take(L, F, D), take(L, D, F), take(L, F, D)
    tensors = {"model.embed_tokens.weight": emb, "model.norm.weight": take(D)}
    take(2, h["seq_len"], hs // 2)  # freq_cis_real, freq_cis_imag: recomputed by every implementation
    if not h["tied"]:
        tensors["lm_head.weight"] = take(h["vocab"], D)  # tied: omitted, as save_pretrained does
    if pos != data.size:
        fail(f"{path}: {data.size - pos} trailing floats after the last tensor", "is the header's vocab sign right?")
    for i in range(L):
        p = f"model.layers.{i}."
        tensors[p + "self_attn.q_proj.weight"] = permute(wq[i], h["heads"])
        tensors[p + "self_attn.k_proj.weight"] = permute(wk[i], h["kv_heads"])
        tensors[p + "self_attn.v_proj.weight"] = wv[i]
        tensors[p + "self_attn.o_proj.weight"] = wo[i]
        tensors[p + "mlp.gate_proj.weight"] = w1[i]
        tensors[p + "mlp.down_proj.weight"] = w2[i]
        tensors[p + "mlp.up_proj.weight"] = w3[i]
        tensors[p + "input_layernorm.weight"] = attn_norm[i]
        tensors[p + "post_attention_layernorm.weight"] = ffn_norm[i]
    return tensors


def hf_config(h):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h["dim"],
            "intermediate_size": h["hidden"], "num_hidden_layers": h["layers"], "num_attention_heads": h["heads"],
            "num_key_value_heads": h["kv_heads"], "vocab_size": h["vocab"], "max_position_embeddings": h["seq_len"],
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": h["tied"], "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
            "torch_dtype": "float32"}


def write_dir(out, tensors, config, tokenizer):
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(tmp, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copyfile(tokenizer, os.path.join(tmp, "tokenizer.model"))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def main():
    ap = argparse.ArgumentParser(description="llama2.c legacy .bin -> Hugging Face safetensors directory")
    ap.add_argument("input", help="llama2.c legacy checkpoint, e.g. stories260K.bin")
    ap.add_argument("--tokenizer", required=True, help="the model's SentencePiece tokenizer.model")
    ap.add_argument("--out", required=True, help="output directory (replaced if it exists)")
    args = ap.parse_args()
    for path, what in ((args.input, "checkpoint"), (args.tokenizer, "tokenizer")):
        if not os.path.isfile(path):
            fail(f"{path}: {what} file not found", "check the path (llama2.c's .bin and its SentencePiece .model)")
    with open(args.input, "rb") as f:
        raw = f.read()
    h = read_header(args.input, raw)
    write_dir(args.out, read_tensors(args.input, raw, h), hf_config(h), args.tokenizer)
    print(f"{args.out}: dim {h['dim']}, {h['layers']} layers, heads {h['heads']}/{h['kv_heads']}, "
          f"ffn {h['hidden']}, vocab {h['vocab']}, {'tied' if h['tied'] else 'untied'}")


if __name__ == "__main__":
    main()
