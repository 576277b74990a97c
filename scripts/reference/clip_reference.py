#!/usr/bin/env python3
"""Independent reference for mmtune's CLIP vision tower: transformers' CLIPVisionModel.

  python scripts/reference/clip_reference.py --model DIR --out FILE.safetensors
         [--quantize none|int8|int4 --group G]

Writes pixels [2, 3, S, S] (seeded normal), every hidden state hidden_{k} [2, N, W] for
k = 0..L (transformers' output_hidden_states: 0 = embeddings after pre_layrnorm), and the pooled
output (post_layernorm of the CLS token), in fp32, and each again as NAME.fp64 from the same model
and pixels in float64 (precision.py).

--quantize (vision.quantize): every nn.Linear of the encoder blocks (q/k/v/out_proj, fc1, fc2; the
biases, embeddings and norms stay) is quantized with quant_reference.py's formats, written from
docs/QUANTIZATION.md, and the dequantized weight w' is put back before both passes. Also writes
q.<module>.qweight / q.<module>.scales of layer 0's q_proj and fc2, which mmtune must reproduce
bit for bit.
"""
import argparse

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionModel

from precision import both, fp64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quantize", choices=["none", "int8", "int4"], default="none")
    ap.add_argument("--group", type=int, default=128)
    args = ap.parse_args()
    torch.manual_seed(3)
    torch.set_num_threads(1)
    model = CLIPVisionModel.from_pretrained(args.model, dtype=torch.float32).eval()
    size = model.config.image_size
    pixels = torch.randn(2, 3, size, size)
    codes, deq = {}, {}
    if args.quantize != "none":
        from quant_reference import quantize_int4, quantize_int8  # only here: it needs the LLaMA reference's imports

        with torch.no_grad():
            for name, mod in model.named_modules():
                if not isinstance(mod, torch.nn.Linear):
                    continue
                w = mod.weight.float()
                if args.quantize == "int4":
                    q, s, d = quantize_int4(w, args.group)
                else:
                    q, s, d = quantize_int8(w)
                deq[name] = d  # float64, exact
                if name.endswith("layers.0.self_attn.q_proj") or name.endswith("layers.0.mlp.fc2"):
                    key = name if name.startswith("vision_model.") else "vision_model." + name
                    codes[f"q.{key}.qweight"], codes[f"q.{key}.scales"] = q, s

    def dequantized(m, dtype):
        with torch.no_grad():
            for name, mod in m.named_modules():
                if name in deq:
                    mod.weight.copy_(deq[name].to(dtype))
        return m

    def forward(m, x):
        out = m(pixel_values=x, output_hidden_states=True)
        return {"pooled": out.pooler_output} | {f"hidden_{k}": h for k, h in enumerate(out.hidden_states)}

    with torch.no_grad():
        out64 = forward(dequantized(fp64(model), torch.float64), fp64(pixels))
        out32 = forward(dequantized(model, torch.float32), pixels)
    save_file(both({"pixels": pixels} | out32, out64) | codes, args.out)
    print(f"{args.out}: {len(out32) - 1} hidden states of {tuple(out32['hidden_0'].shape)}")


if __name__ == "__main__":
    main()
