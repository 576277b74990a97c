#!/usr/bin/env python3
"""Independent reference for mmtune's weight-only quantization (issue 18; docs/QUANTIZATION.md).

  python scripts/reference/quant_reference.py --model DIR --mode int8|int4 [--group 128]
         [--fallback none|int8] --out FILE.safetensors

Quantizes every nn.Linear of transformers' LlamaForCausalLM (the decoder layers' projections and an
untied lm_head; not the embedding, nor a head tied to it) with the formats as docs/QUANTIZATION.md writes them down,
written here from that text rather than from mmtune's C++:
  int8  per output row:  s = max|w| / 127 (1 for an all-zero row), q = round(w / s) in [-128, 127]
  int4  per group of G inputs: s = bf16((max - min).clamp(1e-6) / 15), z = bf16(min + 8 s),
        q = round((w - (z - 8 s)) / s) in [0, 15], stored two per byte (even input high nibble)
        with scales [K/G, N, 2] = (s, z) in bf16; w' = (q - 8) s + z
  (all in float32; an int4 weight whose input width G does not divide is int8 with --fallback int8)
then puts the dequantized weights w' back into the model and runs llama_reference.py's left-padded
prompt batch through it, in float32 and in float64 (precision.py). Writes:
  input_ids, attention_mask, logits (+ logits.fp64)
  q.<module>.qweight, q.<module>.scales   the stored codes of three weights, which mmtune must
                                          reproduce bit for bit (layer 0 q_proj and down_proj, lm_head)
"""
import argparse
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_reference import left_padded_prompts  # noqa: E402
from precision import both, fp64  # noqa: E402


def quantize_int8(w):
    s = w.abs().amax(1) / 127.0
    s = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(w / s[:, None]).clamp(-128, 127).to(torch.int8)
    return q, s, q.double() * s.double()[:, None]


def quantize_int4(w, group):
    n, k = w.shape
    g = w.reshape(n, k // group, group)
    mx, mn = g.amax(-1), g.amin(-1)
    s = ((mx - mn).clamp(min=1e-6) / 15.0).to(torch.bfloat16).float()
    z = (mn + s * 8.0).to(torch.bfloat16).float()
    lowest = (z - s * 8.0)[..., None]
    q = torch.round((g - lowest) / s[..., None]).clamp(0, 15).to(torch.uint8).reshape(n, k)
    packed = (q[:, 0::2] << 4) | q[:, 1::2]
    scales = torch.stack([s, z], -1).transpose(0, 1).contiguous().to(torch.bfloat16)  # [K/G, N, 2]
    deq = (q.double() - 8).reshape(n, k // group, group) * s.double()[..., None] + z.double()[..., None]
    return packed, scales, deq.reshape(n, k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--mode", choices=["int8", "int4"], required=True)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--fallback", choices=["none", "int8"], default="none")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    codes, deq = {}, {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if not isinstance(mod, torch.nn.Linear):
                continue
            if name == "lm_head" and model.config.tie_word_embeddings:
                continue  # the embedding itself: not quantized
            w = mod.weight.float()
            mode = args.mode
            if mode == "int4" and w.shape[1] % args.group != 0:
                if args.fallback != "int8":
                    sys.exit(f"{name}: {w.shape[1]} inputs, group {args.group}")
                mode = "int8"
            q, s, d = quantize_int4(w, args.group) if mode == "int4" else quantize_int8(w)
            deq[name] = d  # float64, exact
            codes[f"q.{name}.qweight"], codes[f"q.{name}.scales"] = q, s
    keep = {k: v for k, v in codes.items()
            if k.split(".", 1)[1].rsplit(".", 1)[0] in
            ("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "lm_head")}

    ids, input_ids, mask = left_padded_prompts(args.model)
    T = input_ids.size(1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)

    def forward(m, dtype):
        with torch.no_grad():
            for name, mod in m.named_modules():
                if name in deq:
                    mod.weight.copy_(deq[name].to(dtype))
            return {"logits": m(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits}

    out64 = forward(fp64(model), torch.float64)
    out32 = forward(model, torch.float32)
    save_file(both({"input_ids": input_ids, "attention_mask": mask, "logits": out32["logits"], **keep}, out64),
              args.out)
    print(f"{args.out}: {args.mode} group {args.group}, {len(deq)} Linear layers, B={len(ids)} T={T}")


if __name__ == "__main__":
    main()
