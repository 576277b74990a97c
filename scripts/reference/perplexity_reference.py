#!/usr/bin/env python3
"""Independent reference for `mmtune eval --task perplexity`: transformers' LlamaForCausalLM.

  python scripts/reference/perplexity_reference.py --model DIR --text FILE

Prints JSON {"tokens": N, "nll_sum": S, "perplexity": P, "nll_sum_fp64": S64} for BOS + the text's
SentencePiece tokens (one window: the text must fit the model's context); S64 is the same sum from
the model in float64 (precision.py), whose difference to S is the reference's own fp32 noise.
"""
import argparse
import json
import math

import sentencepiece as spm
import torch
from transformers import LlamaForCausalLM

from precision import fp64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sp = spm.SentencePieceProcessor(model_file=f"{args.model}/tokenizer.model")
    ids = torch.tensor([[1] + sp.encode(open(args.text, encoding="utf-8").read())])
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    def nll_sum(m):
        with torch.no_grad():
            lp = m(input_ids=ids).logits[0, :-1].double().log_softmax(-1)
        return -lp.gather(-1, ids[0, 1:, None]).sum().item()

    nll = nll_sum(model)
    n = ids.shape[1] - 1
    print(json.dumps({"tokens": n, "nll_sum": nll, "perplexity": math.exp(nll / n), "nll_sum_fp64": nll_sum(fp64(model))}))


if __name__ == "__main__":
    main()
