#!/usr/bin/env python3
"""Tiny random checkpoints in exact Hugging Face layout, for mmtune's tests and CI.

Writes into OUT (default build/tiny):
  spm/tiny.model + tiny.vocab     a SentencePiece BPE model (byte fallback) trained on generated text
  bpe/tokenizer.json              a Llama-3-style byte-level BPE tokenizer.json (2048 tokens + 256
                                  Llama-3 special tokens) and tokenizer_config.json (make_bpe_tokenizer.py)
  llama-mha-tied/                 MHA, tied embeddings
  llama-gqa/                      grouped-query attention (4 heads / 2 kv heads), untied
  llama3-rope/                    llama3 rope scaling (transformers 5 `rope_parameters`), 1 kv head
  llama-wide/                     D=512, 8 layers, GQA 8/4 (~26M parameters): memory-estimate checks
  clip-vit/                       CLIPVisionModel, quick_gelu, 4 blocks (LaVIN-like CLS-every-N use)
  clip-vit-gelu/                  CLIPVisionModel, gelu, 3 blocks, odd sizes
Every LLaMA directory holds config.json, model.safetensors and tokenizer.model. Seeds are fixed;
a stamp file skips the work when OUT was made by this same script version (this file and
make_bpe_tokenizer.py).

Usage: python scripts/reference/make_tiny_checkpoints.py [--out build/tiny] [--force]
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import sys

import sentencepiece as spm
import torch
import transformers
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from make_bpe_tokenizer import make_bpe_tokenizer

WORDS = ("the a an of to and in is was it for on with as by at from that this which what "
         "science question answer context options image lecture solution because cell plant animal "
         "energy force magnet water rock map state capital ocean weather word sentence verb noun "
         "choose select which figure of speech simile metaphor solid liquid gas north south east west "
         "one two three four five six seven eight nine ten red green blue yellow circle square triangle").split()
EXTRA = ["Grüße aus München", "naïve café", "水是液体", "温度 42°C", "🙂 emoji", "x = y + 1", "(A) (B) (C)",
         "Response: The answer is B.", "BECAUSE: energy moves"]

LLAMAS = {
    "llama-mha-tied": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=4, max_position_embeddings=256, rms_norm_eps=1e-6,
                           tie_word_embeddings=True),
    "llama-gqa": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
                      tie_word_embeddings=False),
    "llama3-rope": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=1, max_position_embeddings=512, rms_norm_eps=1e-5,
                        tie_word_embeddings=False,
                        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 64}),
    # wide enough that a training step's activations, not the process's baseline, decide its peak
    # memory (the dry run's estimate is checked against it: test_memory_estimate.cpp)
    "llama-wide": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                       num_key_value_heads=4, max_position_embeddings=512, rms_norm_eps=1e-5,
                       tie_word_embeddings=False),
}
CLIPS = {
    "clip-vit": dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                     num_attention_heads=4, hidden_act="quick_gelu", projection_dim=32),
    "clip-vit-gelu": dict(image_size=28, patch_size=7, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                          num_attention_heads=3, hidden_act="gelu", projection_dim=24),
}


def corpus(path, n_lines=3000, seed=0):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_lines):
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
            if i % 7 == 0:
                words.append(rng.choice(EXTRA))
            if i % 5 == 0:
                words.append(str(rng.randint(0, 999)))
            f.write(" ".join(words).capitalize() + ".\n")


def train_tokenizer(out):
    os.makedirs(out, exist_ok=True)
    text = os.path.join(out, "corpus.txt")
    corpus(text)
    spm.SentencePieceTrainer.train(
        input=text, model_prefix=os.path.join(out, "tiny"), vocab_size=400, model_type="bpe",
        byte_fallback=True, character_coverage=0.995, num_threads=1, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
        minloglevel=2)
    return os.path.join(out, "tiny.model")


def make_llama(out, name, kwargs, tokenizer, vocab, seed):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, bos_token_id=1, eos_token_id=2, initializer_range=0.25,
                         attention_bias=False, mlp_bias=False, **kwargs)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from 1 so that a wrong norm shows in the logits
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    path = os.path.join(out, name)
    model.save_pretrained(path, safe_serialization=True)
    shutil.copy(tokenizer, os.path.join(path, "tokenizer.model"))


def make_clip(out, name, kwargs, seed):
    torch.manual_seed(seed)
    model = CLIPVisionModel(CLIPVisionConfig(initializer_range=0.08, **kwargs)).eval()
    model.save_pretrained(os.path.join(out, name), safe_serialization=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/tiny")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    transformers.utils.logging.disable_progress_bar()
    here = os.path.dirname(os.path.abspath(__file__))
    sources = [open(os.path.join(here, f), "rb").read() for f in ("make_tiny_checkpoints.py", "make_bpe_tokenizer.py")]
    version = hashlib.sha256(b"".join(sources)).hexdigest()[:16]
    stamp = os.path.join(args.out, ".stamp")
    if not args.force and os.path.exists(stamp) and open(stamp).read().strip() == version:
        print(f"{args.out}: up to date")
        return 0
    tmp = args.out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tokenizer = train_tokenizer(os.path.join(tmp, "spm"))
    vocab = spm.SentencePieceProcessor(model_file=tokenizer).vocab_size()
    for name, kwargs in LLAMAS.items():
        # seed 101: every model's greedy top-1 margin stays > 2e-3 over 32 new tokens for the
        # prompts of llama_reference.py, so ties cannot decide a parity test
        make_llama(tmp, name, kwargs, tokenizer, vocab, seed=101)
    for i, (name, kwargs) in enumerate(CLIPS.items()):
        make_clip(tmp, name, kwargs, seed=200 + i)
    make_bpe_tokenizer(os.path.join(tmp, "bpe"))
    with open(os.path.join(tmp, ".stamp"), "w") as f:
        f.write(version + "\n")
    shutil.rmtree(args.out, ignore_errors=True)
    os.rename(tmp, args.out)
    print(f"{args.out}: wrote {', '.join(list(LLAMAS) + list(CLIPS))} (vocab {vocab}), bpe")
    return 0


if __name__ == "__main__":
    sys.exit(main())
