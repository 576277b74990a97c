#!/usr/bin/env python3
"""Where a trained MoLE adapter routes the tokens of each task of a conflicting-formats test set
(scripts/make_conflicting_formats.py): per layer, the fraction of tokens each expert gets, over the
answer tokens and over all tokens, per task. A diagnostic for scripts/experiments/mole_vs_lora.sh.

    mole_routing.py --model build/tiny/llama-gqa --adapter RUN/checkpoint-N --test test.json
                    [--answers RUN/answers.jsonl]

The forward is an independent Python one (transformers' LLaMA with the MoLE MLP of spec §3.2 and
the attention LoRA patched in, as scripts/reference/make_mole_checkpoint.py does), reading the
adapter's mmtune tensors (adapter_model.safetensors) and options (adapter_config.json). The
sequence is what training sees: BOS + tok(prompt + answer) + EOS with the vicuna_v1 template's
default system line (data/templates.h); answer tokens are the positions after the prompt's tokens
(the answer's tokens and EOS). Routing is top-1 on the router's softmax (every gate mode routes
this way). Also reports the mean answer-token loss per task and, given --answers (what
scripts/experiments/score_formats.py --out kept of `mmtune chat`'s answers), the fraction of items
whose greedy answer here equals mmtune's: 1.0 shows these routing numbers come from the model
mmtune evaluated. Prints one JSON object: {"experts", "layers", "per_task": {task:
{"answer_usage": [[K] per layer], "all_usage": ..., "answer_loss", "count"}}, "agreement"}.
"""
import argparse
import json
import os

import sentencepiece as spm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

STOPS = ["</s>", "USER:"]  # generate/chat.h template_stops(vicuna_v1)
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions.")


def patch(model, tensors, opts, record):
    """LoRA on the attention targets and the MoLE MLP, from mmtune's tensor names; each layer's top-1
    expert per token goes to record[layer]."""
    K, scale = opts["experts"], opts["alpha"] / opts["rank"]
    dense = opts["gate_mode"] == "dense_soft"

    def lora(x, a, b):
        return (x @ a.t() @ b.t()) * scale

    for i, layer in enumerate(model.model.layers):
        q = f"llm.model.layers.{i}.adapters.mole."
        for a in opts["attn_targets"]:
            A, B = tensors[f"{q}{a}.lora_A"], tensors[f"{q}{a}.lora_B"]
            getattr(layer.self_attn, f"{a}_proj").register_forward_hook(
                lambda m, inp, out, A=A, B=B: out + lora(inp[0], A, B))
        ex = {f: (tensors[f"{q}moe_{f}.lora_A"], tensors[f"{q}moe_{f}.lora_B"]) for f in ("gate", "up", "down")}
        Wr, br, mlp = tensors[f"{q}router.weight"], tensors[f"{q}router.bias"], layer.mlp

        def forward(x, i=i, mlp=mlp, ex=ex, Wr=Wr, br=br):
            probs = torch.softmax(F.linear(x.float(), Wr, br), -1)
            top = probs.argmax(-1)
            record[i] = top
            w = probs if dense else F.one_hot(top, K).to(x.dtype)

            def delta(f, z):
                A, B = ex[f]
                return sum(w[..., k:k + 1] * lora(z, A[k], B[k]) for k in range(K))

            h = F.silu(mlp.gate_proj(x) + delta("gate", x)) * (mlp.up_proj(x) + delta("up", x))
            return mlp.down_proj(h) + delta("down", h)

        mlp.forward = forward


def greedy(model, sp, ids, max_new):
    """The answer `mmtune chat --temperature 0` prints: greedy tokens until EOS, cut at the vicuna_v1
    template's stop strings, whitespace-stripped (no KV cache: the tiny model is cheap)."""
    start = len(ids)
    text = ""
    for _ in range(max_new):
        with torch.no_grad():
            nxt = model(input_ids=torch.tensor([ids])).logits[0, -1].argmax().item()
        if nxt == sp.eos_id():
            break
        ids = ids + [nxt]
        text = sp.decode(ids[start:])
        cut = [text.find(s) for s in STOPS if s in text]
        if cut:
            text = text[:min(cut)]
            break
    return text.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="the base Hugging Face LLaMA directory")
    ap.add_argument("--adapter", required=True, help="mmtune MoLE adapter directory (checkpoint-N)")
    ap.add_argument("--test", required=True)
    ap.add_argument("--answers", help="answers.jsonl of score_formats.py: check the greedy answers agree")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = json.load(open(os.path.join(args.adapter, "adapter_config.json")))
    if cfg.get("family") != "mole":
        raise SystemExit(f"error: {args.adapter} holds a {cfg.get('family')!r} adapter, not mole")
    opts = cfg["adapter"]["mole"]
    tensors = load_file(os.path.join(args.adapter, "adapter_model.safetensors"))
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    record = {}
    patch(model, tensors, opts, record)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "tokenizer.model"))
    K, L = opts["experts"], model.config.num_hidden_layers
    mmtune_said = {}
    if args.answers:
        mmtune_said = {r["id"]: r["output"] for r in map(json.loads, open(args.answers, encoding="utf-8"))}
    agree = checked = 0
    acc = {}
    for it in json.load(open(args.test, encoding="utf-8")):
        prompt = f"{SYSTEM} USER: {it['conversations'][0]['value']} ASSISTANT:"
        answer = " " + it["conversations"][1]["value"]
        p = sp.encode(prompt)
        ids = [sp.bos_id()] + sp.encode(prompt + answer) + [sp.eos_id()]
        start = 1 + len(p)  # first answer position
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        loss = F.cross_entropy(logits[start - 1:-1], torch.tensor(ids[start:])).item()
        a = acc.setdefault(it["task"], {"answer": torch.zeros(L, K), "all": torch.zeros(L, K), "loss": 0.0, "count": 0})
        for layer in range(L):
            top = record[layer][0]
            a["all"][layer] += torch.bincount(top, minlength=K).float()
            a["answer"][layer] += torch.bincount(top[start:], minlength=K).float()
        a["loss"] += loss
        a["count"] += 1
        if it["id"] in mmtune_said:
            agree += greedy(model, sp, [sp.bos_id()] + p, args.max_new_tokens) == mmtune_said[it["id"]]
            checked += 1
    out = {"experts": K, "layers": L, "per_task": {}, "agreement": agree / checked if checked else None}
    for task, a in sorted(acc.items()):
        out["per_task"][task] = {
            "answer_usage": [[round(v, 4) for v in (r / r.sum()).tolist()] for r in a["answer"]],
            "all_usage": [[round(v, 4) for v in (r / r.sum()).tolist()] for r in a["all"]],
            "answer_loss": a["loss"] / a["count"], "count": a["count"]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
