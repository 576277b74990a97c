#!/usr/bin/env python3
"""Independent reference for mmtune's PEFT interop: the `peft` library on transformers' LLaMA.

  python scripts/reference/peft_reference.py make --model DIR --out OUTDIR
  python scripts/reference/peft_reference.py load --model DIR --adapter ADAPTER --out OUTDIR

make: wraps the base with a peft LoRA (r=4, lora_alpha=12, q/v/o/gate/down, layers_to_transform
      [0, 2], dropout 0) whose A and B are both random (init_lora_weights=False, so B is non-zero
      and the check is real) and saves it with save_pretrained into OUTDIR (adapter_model.safetensors
      + adapter_config.json).
load: PeftModel.from_pretrained(base, ADAPTER), i.e. what a user of peft does with an adapter
      mmtune exported; exits 1 unless every LoRA tensor peft holds equals the file's tensor of the
      same name and every file tensor was used.
Both write OUTDIR/ref.safetensors: input_ids [2, 12], attention_mask [2, 12] (row 1 left-padded)
and logits [2, 12, V] in fp32, and logits.fp64 from the same peft model in float64 (precision.py).
"""
import argparse
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

from precision import both, fp64


def batch(vocab):
    ids = torch.randint(3, vocab, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0
    ids[1, :5] = 0
    return ids, mask


def logits_of(model, ids, mask):
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.contiguous()


def check_loaded(model, adapter_dir):
    """Every lora_A/lora_B in the peft model equals the file's tensor; every file tensor is used."""
    saved = load_file(f"{adapter_dir}/adapter_model.safetensors")
    used = set()
    for name, p in model.named_parameters():
        if "lora_" not in name:
            continue
        key = name.replace(".default", "")  # peft's in-memory names carry the adapter name
        if key not in saved:
            sys.exit(f"peft made {name}, which the file lacks")
        if not torch.equal(p.detach().float(), saved[key].float()):
            sys.exit(f"{name} differs from the file's {key}")
        used.add(key)
    unused = sorted(set(saved) - used)
    if unused:
        sys.exit(f"peft ignored {len(unused)} tensors of the file, e.g. {unused[:3]}")
    return len(used)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["make", "load"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(11)
    torch.set_num_threads(1)
    base = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    if args.mode == "make":
        cfg = LoraConfig(r=4, lora_alpha=12, lora_dropout=0.0, init_lora_weights=False,
                         target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
                         layers_to_transform=[0, 2])
        model = get_peft_model(base, cfg).eval()
        model.save_pretrained(args.out, safe_serialization=True)
        n = sum(1 for name, _ in model.named_parameters() if "lora_" in name)
    else:
        if not args.adapter:
            sys.exit("load needs --adapter")
        model = PeftModel.from_pretrained(base, args.adapter).eval()
        n = check_loaded(model, args.adapter)
    ids, mask = batch(base.config.vocab_size)
    logits = logits_of(model, ids, mask)
    save_file(both({"input_ids": ids, "attention_mask": mask, "logits": logits},
                   {"logits": logits_of(fp64(model), ids, mask)}), f"{args.out}/ref.safetensors")
    print(f"{args.mode}: {n} LoRA tensors, logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
