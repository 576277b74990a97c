#!/usr/bin/env python3
"""Independent reference for mmtune's CLIP vision tower: transformers' CLIPVisionModel.

  python scripts/reference/clip_reference.py --model DIR --out FILE.safetensors

Writes pixels [2, 3, S, S] (seeded normal), every hidden state hidden_{k} [2, N, W] for
k = 0..L (transformers' output_hidden_states: 0 = embeddings after pre_layrnorm), and the pooled
output (post_layernorm of the CLS token), in fp32, and each again as NAME.fp64 from the same model
and pixels in float64 (precision.py).
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
    args = ap.parse_args()
    torch.manual_seed(3)
    torch.set_num_threads(1)
    model = CLIPVisionModel.from_pretrained(args.model, dtype=torch.float32).eval()
    size = model.config.image_size
    pixels = torch.randn(2, 3, size, size)

    def forward(m, x):
        out = m(pixel_values=x, output_hidden_states=True)
        return {"pooled": out.pooler_output} | {f"hidden_{k}": h for k, h in enumerate(out.hidden_states)}

    with torch.no_grad():
        out32, out64 = forward(model, pixels), forward(fp64(model), fp64(pixels))
    save_file(both({"pixels": pixels} | out32, out64), args.out)
    print(f"{args.out}: {len(out32) - 1} hidden states of {tuple(out32['hidden_0'].shape)}")


if __name__ == "__main__":
    main()
