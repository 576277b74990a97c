#!/usr/bin/env python3
"""transformers' side of scripts/bench_generate_compare.sh: greedy decode speed of LlamaForCausalLM.

  python scripts/reference/bench_generate.py --model DIR --prompt TEXT --new-tokens N --dtype fp32|bf16 [--threads T]
Prints one JSON line: load seconds, tokens generated, decode seconds, tokens/s (prefill included),
the bytes of weights one decode step reads, peak RSS (MB).
Also: --make-small DIR writes a random 'small' LLaMA (D=512, 8 layers, GQA 8/4, V=32000) for benchmarks.
"""
import argparse
import json
import resource
import shutil
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def make_small(out, tokenizer):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    shutil.copy(tokenizer, f"{out}/tokenizer.model")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--make-small")
    ap.add_argument("--tokenizer")
    args = ap.parse_args()
    if args.make_small:
        make_small(args.make_small, args.tokenizer)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=f"{args.model}/tokenizer.model")
    ids = torch.tensor([[1] + sp.encode(args.prompt)])
    t0 = time.perf_counter()
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16 if args.dtype == "bf16" else torch.float32).eval()
    model.generation_config.eos_token_id = None
    load = time.perf_counter() - t0
    with torch.inference_mode():
        model.generate(ids, do_sample=False, max_new_tokens=4)  # warm-up
        t0 = time.perf_counter()
        out = model.generate(ids, do_sample=False, max_new_tokens=args.new_tokens)
        dt = time.perf_counter() - t0
    n = out.shape[1] - ids.shape[1]
    # bytes of weights one decode step reads (scripts/bench_7b.sh's bandwidth bound): every weight
    # once, the embedding table only for its one row unless the LM head is the same matrix
    emb = model.get_input_embeddings().weight
    tied = model.get_output_embeddings().weight is emb
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if tied or p is not emb)
    weight_bytes += emb.shape[1] * emb.element_size()
    print(json.dumps({"impl": "transformers", "dtype": args.dtype, "load_s": round(load, 3), "tokens": n,
                      "decode_s": round(dt, 3), "tok_per_s": round(n / dt, 1), "decode_weight_bytes": weight_bytes,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
