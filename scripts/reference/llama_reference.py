#!/usr/bin/env python3
"""Independent reference for mmtune's LLaMA parity tests: transformers' own LlamaForCausalLM.

  python scripts/reference/llama_reference.py --model DIR --out FILE.safetensors [--new-tokens 32]

Encodes a fixed set of prompts of different lengths with the model's SentencePiece tokenizer (BOS
in front), left-pads them into one batch (pad id 0) and writes, in fp32:
  input_ids [B, T] int64, attention_mask [B, T] int64, logits [B, T, V]   (one forward; positions are
      the count of real tokens before each one, as transformers' generate() computes them)
  generated [B, N] int64        transformers generate(), greedy, N new tokens, EOS not stopping
  margins [B, N]                top-1 minus top-2 logit at each generated step (ties cannot decide)
  nll_tokens, nll_sum           perplexity of the first prompt: token count and summed NLL (float64
                                arithmetic on the fp32 logits)
and logits.fp64, nll_sum.fp64: the same from the model in float64 (precision.py), whose difference
to the float32 ones is the oracle's own fp32 noise; logits_bf16 [B, T, V] (as float32): the batch
through the model cast to bfloat16, whose difference to logits is the oracle's own bf16 error.
"""
import argparse
import copy

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import GenerationConfig, LlamaForCausalLM

from precision import both, fp64

PROMPTS = [
    "Which figure of speech is used in this text?",
    "The answer is",
    "Options: (A) simile (B) metaphor\nResponse:",
    "Grüße aus München, 水是液体 and more words about energy and force in a long sentence",
]


def left_padded_prompts(model_dir):
    """PROMPTS with BOS, tokenized by the model's tokenizer.model, left-padded with 0:
    (ids: list of lists, input_ids [B, T], attention_mask [B, T])."""
    sp = spm.SentencePieceProcessor(model_file=f"{model_dir}/tokenizer.model")
    ids = [[1] + sp.encode(p) for p in PROMPTS]
    T = max(len(x) for x in ids)
    input_ids = torch.zeros(len(ids), T, dtype=torch.long)
    mask = torch.zeros(len(ids), T, dtype=torch.long)
    for b, x in enumerate(ids):
        input_ids[b, T - len(x):] = torch.tensor(x)
        mask[b, T - len(x):] = 1
    return ids, input_ids, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ids, input_ids, mask = left_padded_prompts(args.model)
    T = input_ids.size(1)
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # generate all N tokens; EOS is just another token here
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    first = torch.tensor([ids[0]])

    def forward(m):
        """logits of the batch and the first prompt's summed NLL (float64 arithmetic on the logits)."""
        logits = m(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
        lp = m(input_ids=first).logits.double().log_softmax(-1)[0, :-1]
        return {"logits": logits, "nll_sum": -lp.gather(-1, first[0, 1:, None]).sum().reshape(1)}

    with torch.no_grad():
        out32, out64 = forward(model), forward(fp64(model))
        bf16 = copy.deepcopy(model).to(torch.bfloat16)
        logits_bf16 = bf16(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits.float()
        gen = model.generate(input_ids=input_ids, attention_mask=mask,
                             generation_config=GenerationConfig(do_sample=False, max_new_tokens=args.new_tokens,
                                                                min_new_tokens=0, eos_token_id=None, pad_token_id=0,
                                                                output_scores=True, return_dict_in_generate=True))
        scores = torch.stack(gen.scores, 1).float()  # [B, N, V]
        top2 = scores.topk(2, -1).values
        margins = top2[..., 0] - top2[..., 1]
    save_file(both({"input_ids": input_ids, "attention_mask": mask, "logits": out32["logits"],
                    "generated": gen.sequences[:, T:], "margins": margins,
                    "nll_tokens": torch.tensor([first.shape[1] - 1]), "nll_sum": out32["nll_sum"],
                    "logits_bf16": logits_bf16}, out64),
              args.out)
    print(f"{args.out}: B={len(ids)} T={T} min margin {margins.min().item():.4g}")


if __name__ == "__main__":
    main()
