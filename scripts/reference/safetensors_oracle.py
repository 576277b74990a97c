#!/usr/bin/env python3
"""Independent reference for mmtune's safetensors reader and writer: the `safetensors` package.

  python scripts/reference/safetensors_oracle.py write OUTDIR   # files for the C++ reader to check
  python scripts/reference/safetensors_oracle.py read FILE      # prints a JSON summary of FILE

write: OUTDIR/dtypes.safetensors (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, an empty tensor,
metadata) and a two-shard checkpoint OUTDIR/sharded/ with model.safetensors.index.json, plus
OUTDIR/expected.json: for every tensor its dtype, shape and values as float64 lists.
read: {"metadata": {...}, "tensors": {name: {"dtype", "shape", "values"}}} (values as float64).
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def summary(tensors):
    return {n: {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                "values": t.double().flatten().tolist()} for n, t in tensors.items()}


def write(out):
    g = torch.Generator().manual_seed(5)
    t = {
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "f64": torch.randn(2, generator=g).double(),
        "i64": torch.tensor([-(2 ** 40), 0, 7]),
        "i32": torch.tensor([[1, -2], [3, -4]], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-5, 6], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
    }
    os.makedirs(out, exist_ok=True)
    save_file(t, os.path.join(out, "dtypes.safetensors"), metadata={"format": "pt", "note": "ünïcode"})
    shard_dir = os.path.join(out, "sharded")
    os.makedirs(shard_dir, exist_ok=True)
    a = {"model.a.weight": torch.randn(4, 4, generator=g), "model.b.weight": torch.randn(3, generator=g)}
    b = {"lm_head.weight": torch.randn(2, 4, generator=g)}
    save_file(a, os.path.join(shard_dir, "model-00001-of-00002.safetensors"))
    save_file(b, os.path.join(shard_dir, "model-00002-of-00002.safetensors"))
    weight_map = {**{k: "model-00001-of-00002.safetensors" for k in a}, **{k: "model-00002-of-00002.safetensors" for k in b}}
    json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, open(os.path.join(shard_dir, "model.safetensors.index.json"), "w"))
    json.dump({"dtypes": summary(t), "sharded": summary({**a, **b})}, open(os.path.join(out, "expected.json"), "w"))


def read(path):
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata() or {}
    print(json.dumps({"metadata": meta, "tensors": summary(tensors)}))


if __name__ == "__main__":
    {"write": write, "read": read}[sys.argv[1]](sys.argv[2])
