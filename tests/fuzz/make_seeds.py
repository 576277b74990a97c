#!/usr/bin/env python3
"""Seed inputs for the libFuzzer targets in tests/fuzz, made from the test fixtures and the real data.

  python tests/fuzz/make_seeds.py --tiny BUILD/tiny --shared ../shared --source . --out DIR

Writes DIR/<target>/seed-* for every target (scripts/fuzz.sh calls it): real files written by the
independent writers (the safetensors and peft libraries, Pillow, Hugging Face tokenizers), the tiny
checkpoints' config.json files, the shipped configs, and a few entries of the real ScienceQA
files. Multi-part inputs join their parts with SEP (tests/fuzz/fuzz_common.h kSeparator). The
mmtune adapter seed is written by the fuzz target itself (MMTUNE_FUZZ_SEED_OUT, from save_adapter).
The hand-written seeds in tests/fuzz/corpus/<target>/ are used beside these.
"""
import argparse
import glob
import io
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save as st_save

SEP = b"\n=====\n"


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    g = torch.Generator().manual_seed(0)

    # safetensors: every dtype the reader maps, an empty tensor, metadata
    tensors = {"a.f32": torch.randn(2, 3, generator=g), "b.bf16": torch.randn(4, generator=g).bfloat16(),
               "c.f16": torch.randn(1, 2, 2, generator=g).half(), "d.i64": torch.arange(3),
               "e.i8": torch.tensor([-1, 2], dtype=torch.int8), "f.u8": torch.tensor([7], dtype=torch.uint8),
               "g.empty": torch.zeros(0, 4), "h.bool": torch.tensor([True, False])}
    put(a.out, "safetensors", "dtypes", st_save(tensors, metadata={"format": "pt"}))
    put(a.out, "safetensors", "scalar", st_save({"s": torch.tensor(1.5)}))

    # config: the shipped configs (a few small ones), with and without overrides
    for i, path in enumerate(sorted(glob.glob(os.path.join(a.source, "configs", "**", "*.yaml"), recursive=True))[:12]):
        text = open(path, "rb").read()
        put(a.out, "config", f"shipped-{i}", text if i % 2 else text + SEP + b"train.lr=2e-3\nadapter.mma.dim=4\n")

    # model_config: the tiny checkpoints' own config.json files (LLaMA with GQA, tied, CLIP ViT)
    for sub in ("llama-gqa", "llama-mha-tied", "llama3-rope", "clip-vit", "clip-vit-gelu"):
        p = os.path.join(a.tiny, sub, "config.json")
        if os.path.exists(p):
            put(a.out, "model_config", sub, open(p, "rb").read())

    # sentencepiece: stories260K's 512-piece model, with text
    tok = open(os.path.join(a.shared, "models", "stories260K", "tok512.model"), "rb").read()
    put(a.out, "sentencepiece", "tok512", tok + SEP + "Once upon a time, Lily saw a big dog. \u00e9\U0001F600 <0x0A>\n".encode())

    # tokenizer_json: a small Llama-3-style byte-level BPE (the tiny fixture's generator, fewer merges)
    sys.path.insert(0, os.path.join(a.source, "scripts", "reference"))
    from make_bpe_tokenizer import make_bpe_tokenizer  # noqa: E402
    bpe_dir = os.path.join(a.out, "_bpe")
    make_bpe_tokenizer(bpe_dir, vocab_size=300)
    text = "Hello world! It's 2024 \u2014 \u4f60\u597d <|eot_id|> \u00e9t\u00e9\n\n  code()".encode()
    put(a.out, "tokenizer_json", "llama3-style", open(os.path.join(bpe_dir, "tokenizer.json"), "rb").read() + SEP + text)
    shutil.rmtree(bpe_dir)

    # image: PNG (RGB, gray, RGBA, palette, 16-bit) and JPEG (baseline, progressive, gray), all small
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8))
    for name, img, fmt, kw in [("rgb.png", rgb, "PNG", {}), ("gray.png", rgb.convert("L"), "PNG", {}),
                               ("rgba.png", rgb.convert("RGBA"), "PNG", {}), ("p.png", rgb.convert("P"), "PNG", {}),
                               ("i16.png", Image.fromarray(rng.integers(0, 65535, (5, 7), dtype=np.uint16)), "PNG", {}),
                               ("base.jpg", rgb, "JPEG", {"quality": 80}),
                               ("prog.jpg", rgb, "JPEG", {"progressive": True}), ("gray.jpg", rgb.convert("L"), "JPEG", {})]:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        put(a.out, "image", name, buf.getvalue())

    # scienceqa: a few real problems (with and without image / hint / lecture) + their splits + captions
    sqa = os.path.join(a.shared, "data", "scienceqa")
    problems = json.load(open(os.path.join(sqa, "problems_sample150.json")))
    captions = json.load(open(os.path.join(sqa, "captions.json")))
    caps = captions.get("captions", captions)
    for i in range(3):
        pids = list(problems)[i * 4:i * 4 + 4]
        p = {k: problems[k] for k in pids}
        splits = {"train": pids[:3], "val": pids[3:], "test": []}
        c = {"captions": {k: caps[k] for k in pids if k in caps}}
        put(a.out, "scienceqa", f"real-{i}", json.dumps(p).encode() + SEP + json.dumps(splits).encode() + SEP +
            json.dumps(c).encode())

    # llava_json: a few entries of the real LLaVA-format ScienceQA test file
    llava = json.load(open(os.path.join(sqa, "llava_test_CQM-A.json")))
    with_image = [e for e in llava if "image" in e][:2]
    without = [e for e in llava if "image" not in e][:2]
    put(a.out, "llava_json", "real", json.dumps(with_image + without).encode())

    # peft: an adapter written by the peft library on the tiny LLaMA (q, v, layers 0-1)
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM
    base = LlamaForCausalLM.from_pretrained(os.path.join(a.tiny, "llama-gqa"))
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                            layers_to_transform=[0, 1], lora_dropout=0.0))
    peft_dir = os.path.join(a.out, "_peft")
    model.save_pretrained(peft_dir)
    put(a.out, "peft", "qv-r2", open(os.path.join(peft_dir, "adapter_config.json"), "rb").read() + SEP +
        open(os.path.join(peft_dir, "adapter_model.safetensors"), "rb").read())
    shutil.rmtree(peft_dir)
    print(f"seeds in {a.out}")


if __name__ == "__main__":
    main()
