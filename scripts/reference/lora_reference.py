#!/usr/bin/env python3
"""Independent reference for mmtune's LoRA: the `peft` library's LoRA on transformers' LLaMA.

  python scripts/reference/lora_reference.py --model DIR --out OUTDIR

Wraps the base with peft LoRA (r=4, alpha=8, all seven projections, dropout 0) whose A and B are
both random (init_lora_weights=False: B non-zero, so the check is real), saves the adapter in
PEFT's layout (OUTDIR/adapter_model.safetensors + adapter_config.json) and writes OUTDIR/ref.safetensors:
input_ids [2, 12], attention_mask [2, 12] (row 1 left-padded), logits [2, 12, V] in fp32 and
logits.fp64 from the same peft model in float64 (precision.py).
"""
import argparse

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

from precision import both, fp64

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(7)
    torch.set_num_threads(1)
    base = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS,
                                            init_lora_weights=False)).eval()
    V = base.config.vocab_size
    ids = torch.randint(3, V, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0
    ids[1, :5] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)

    def forward(m):
        return {"logits": m(input_ids=ids, attention_mask=mask, position_ids=positions).logits}

    with torch.no_grad():
        out32, out64 = forward(model), forward(fp64(model))
    model.save_pretrained(args.out, safe_serialization=True)
    save_file(both({"input_ids": ids, "attention_mask": mask} | out32, out64), f"{args.out}/ref.safetensors")
    print(f"{args.out}: logits {tuple(out32['logits'].shape)}")


if __name__ == "__main__":
    main()
