#!/usr/bin/env python3
"""Fake released LLaVA-MoLE checkpoints (torch pickles laid out as llava_mole_r16_a32_e3.pt, spec
§5) for testing scripts/convert_mole_checkpoint.py, plus the same weights under mmtune's names and
reference logits of an independent MoLE forward (transformers' LLaMA with the MLPs and attention
projections patched, written from spec §3.2, not from mmtune).

  python scripts/reference/make_mole_checkpoint.py --llama DIR --vision-width 64 --out OUTDIR
      [--experts 3 --rank 4 --alpha 8 --seed 1]

Writes into OUTDIR:
  release.pt              {"state_dict": ...}: the wrapper's names (spec §5)
                            llm_model.base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.default.weight
                            llm_model.base_model.model.model.layers.{i}.mlp.{moe_gate,moe_up,moe_down}.{k}.lora_{A,B}
                            llm_model.base_model.model.model.layers.{i}.mlp.router.{weight,bias}
                            in_adaptor.projector.{0,2}.{weight,bias}, in_adaptor.visual_{start,end}_token
                          plus frozen tensors a strict=False load carries along (the base MLP under
                          mlp.original_module.*, attention base_layer weights, norms, embeddings)
  release-ddp.pt          the same with DDP's "module." prefix and no "state_dict" wrapper
  release-full.pt         the whole wrapper's state_dict (MLLM_LLaVA_MoLE in the released model.py):
                          release.pt plus the rest of the frozen LLM (post_attention_layernorm, the
                          final norm, lm_head), the CLIP tower under vit.vision_tower.* (the names of
                          --clip's CLIPVisionModel) and in_adaptor.text_embed.weight (the adaptor's
                          alias of embed_tokens); only with --clip
  release.safetensors     release.pt's state dict as it is (names unchanged), for C++ checks
  expected.safetensors    the trainable tensors under mmtune's names (experts stacked [K, ...])
  ref.safetensors         input_ids [2, 12], attention_mask [2, 12] (all ones), and the reference
                          logits [2, 12, V] fp32 of the base + these weights, logits_sparse (top-1,
                          the chosen expert's delta with weight 1: released dense_moe=False) and
                          logits_dense (every expert weighted by its probability: dense_moe=True);
                          each again as NAME.fp64, the same forward in float64 (precision.py);
                          train_mask [2, 12] (row 1 right-padded by 4) and router_grad_{weight,bias}
                          [L, K, D] / [L, K]: the router gradients of one training step of the released
                          sparse path (text loss + 0.5 x the per-sample cross-layer balancing loss)
  bad-missing.pt          one expert tensor dropped
  bad-unknown.pt          one extra tensor outside the LLM (in_adaptor.extra.weight)
  evil.pt                 a pickle that names os.getcwd: a safe loader must refuse it
Every LoRA B is random (non-zero), so the logits check is real.
"""
import argparse
import json
import os
import pickle

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

from precision import both

PREFIX = "llm_model.base_model.model.model.layers."
BALANCE_W = 0.5  # the balancing weight of the training-step reference (large, so the gradients are too)
ATTN = ["q", "k", "v", "o"]
FFN = ["gate", "up", "down"]


def released(model, K, r, W, gen):
    """The released state dict (name -> tensor) for `model`'s shapes, random values."""
    c = model.config
    D, L, Fh = c.hidden_size, c.num_hidden_layers, c.intermediate_size
    kv = c.num_key_value_heads * (D // c.num_attention_heads)
    attn_shape = {"q": (D, D), "k": (kv, D), "v": (kv, D), "o": (D, D)}
    ffn_shape = {"gate": (Fh, D), "up": (Fh, D), "down": (D, Fh)}

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=gen) * scale

    sd = {}
    base = model.state_dict()
    sd["llm_model.base_model.model.model.embed_tokens.weight"] = base["model.embed_tokens.weight"].clone()
    for i in range(L):
        p = f"{PREFIX}{i}."
        for a in ATTN:
            out, inp = attn_shape[a]
            sd[f"{p}self_attn.{a}_proj.lora_A.default.weight"] = rnd(r, inp)
            sd[f"{p}self_attn.{a}_proj.lora_B.default.weight"] = rnd(out, r)
            sd[f"{p}self_attn.{a}_proj.base_layer.weight"] = base[f"model.layers.{i}.self_attn.{a}_proj.weight"].clone()
        for f in FFN:
            out, inp = ffn_shape[f]
            for k in range(K):
                sd[f"{p}mlp.moe_{f}.{k}.lora_A"] = rnd(r, inp)
                sd[f"{p}mlp.moe_{f}.{k}.lora_B"] = rnd(out, r)
            sd[f"{p}mlp.original_module.{f}_proj.weight"] = base[f"model.layers.{i}.mlp.{f}_proj.weight"].clone()
        sd[f"{p}mlp.router.weight"] = rnd(K, D, scale=1.0)
        sd[f"{p}mlp.router.bias"] = rnd(K, scale=0.1)
        sd[f"{p}input_layernorm.weight"] = base[f"model.layers.{i}.input_layernorm.weight"].clone()
    sd["in_adaptor.projector.0.weight"] = rnd(D, W)
    sd["in_adaptor.projector.0.bias"] = rnd(D)
    sd["in_adaptor.projector.2.weight"] = rnd(D, D)
    sd["in_adaptor.projector.2.bias"] = rnd(D)
    sd["in_adaptor.visual_start_token"] = rnd(1, 1, D)
    sd["in_adaptor.visual_end_token"] = rnd(1, 1, D)
    return sd


def mmtune_names(sd, L, K):
    """The trainable tensors under mmtune's names (what the converter must produce)."""
    out = {}
    for i in range(L):
        p, q = f"{PREFIX}{i}.", f"llm.model.layers.{i}.adapters.mole."
        for a in ATTN:
            out[f"{q}{a}.lora_A"] = sd[f"{p}self_attn.{a}_proj.lora_A.default.weight"]
            out[f"{q}{a}.lora_B"] = sd[f"{p}self_attn.{a}_proj.lora_B.default.weight"]
        for f in FFN:
            for ab in "AB":
                out[f"{q}moe_{f}.lora_{ab}"] = torch.stack([sd[f"{p}mlp.moe_{f}.{k}.lora_{ab}"] for k in range(K)])
        out[f"{q}router.weight"] = sd[f"{p}mlp.router.weight"]
        out[f"{q}router.bias"] = sd[f"{p}mlp.router.bias"]
    for n in ("projector.0.weight", "projector.0.bias", "projector.2.weight", "projector.2.bias",
              "visual_start_token", "visual_end_token"):
        out["llm.adapters.mole." + n] = sd["in_adaptor." + n]
    return {k: v.contiguous() for k, v in out.items()}


def patch(model, sd, K, scale, dense, record=None):
    """Adds the released weights to `model` in place: LoRA on q/k/v/o (forward hooks) and the MoLE
    MLP (spec §3.2): p = softmax(x W_r^T + b_r), e = argmax p; dense: sum_k p_k LoRA_k, sparse: LoRA_e
    (the index from argmax carries no gradient: the released moe.py forward_lora_moe_sparse).
    `record`, a list, receives each layer's p [B, T, K] in layer order."""
    def lora(x, a, b):
        return (x @ a.t() @ b.t()) * scale

    for i, layer in enumerate(model.model.layers):
        p = f"{PREFIX}{i}."
        for a in ATTN:
            A, B = sd[f"{p}self_attn.{a}_proj.lora_A.default.weight"], sd[f"{p}self_attn.{a}_proj.lora_B.default.weight"]
            proj = getattr(layer.self_attn, f"{a}_proj")
            proj.register_forward_hook(lambda m, inp, out, A=A, B=B: out + lora(inp[0], A, B))
        mlp = layer.mlp
        experts = {f: [(sd[f"{p}mlp.moe_{f}.{k}.lora_A"], sd[f"{p}mlp.moe_{f}.{k}.lora_B"]) for k in range(K)] for f in FFN}
        Wr, br = sd[f"{p}mlp.router.weight"], sd[f"{p}mlp.router.bias"]

        def forward(x, mlp=mlp, experts=experts, Wr=Wr, br=br):
            # the router in fp32 (in fp64 when the whole forward is: the precision check)
            probs = torch.softmax(F.linear(x.to(torch.promote_types(x.dtype, torch.float32)), Wr, br), -1)  # [B, T, K]
            pick = F.one_hot(probs.argmax(-1), K).to(x.dtype)
            w = probs if dense else pick
            if record is not None:
                record.append(probs)

            def delta(f, z):
                return sum(w[..., k:k + 1] * lora(z, *experts[f][k]) for k in range(K))

            g = mlp.gate_proj(x) + delta("gate", x)
            u = mlp.up_proj(x) + delta("up", x)
            h = F.silu(g) * u
            return mlp.down_proj(h) + delta("down", h)

        mlp.forward = forward


def logits_of(llama_dir, sd, K, scale, dense, ids, mask, dtype=torch.float32):
    model = LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval().to(dtype)
    patch(model, {k: v.to(dtype) for k, v in sd.items()}, K, scale, dense)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.contiguous()


def released_training_grads(llama_dir, sd, K, scale, ids, mask, w_bal, dtype):
    """One training step of the released sparse path (dense_moe=False), written from the released
    model.py: the text loss sum(CE * loss_mask) / sum(loss_mask) over the shifted valid tokens, plus
    the balancing loss (1/B) sum_b sum_k mean_{l,t} p * mean_{l,t} onehot over row b's valid tokens,
    times w_bal. Returns the gradients of every router weight [L, K, D] and bias [L, K]."""
    model = LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval().to(dtype)
    sdd = {k: v.detach().clone().to(dtype) for k, v in sd.items()}  # own leaves: sd stays untouched
    L = model.config.num_hidden_layers
    routers = [(sdd[f"{PREFIX}{i}.mlp.router.weight"].requires_grad_(True),
                sdd[f"{PREFIX}{i}.mlp.router.bias"].requires_grad_(True)) for i in range(L)]
    record = []
    patch(model, sdd, K, scale, False, record)
    logits = model(input_ids=ids, attention_mask=mask).logits                       # [B, T, V]
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # [B, T-1]
    loss_mask = (mask[:, 1:] * mask[:, :-1]).to(dtype)
    text = (ce * loss_mask).sum() / loss_mask.sum()
    probs = torch.stack(record)                                                      # [L, B, T, K]
    picks = F.one_hot(probs.argmax(-1), K).to(dtype).detach()
    bal = 0
    for b in range(ids.shape[0]):
        keep = mask[b].bool()
        p_b, f_b = probs[:, b, keep].reshape(-1, K), picks[:, b, keep].reshape(-1, K)
        bal = bal + (p_b.mean(0) * f_b.mean(0)).sum()
    (text + bal / ids.shape[0] * w_bal).backward()
    return {"router_grad_weight": torch.stack([wr.grad for wr, _ in routers]).contiguous(),
            "router_grad_bias": torch.stack([br.grad for _, br in routers]).contiguous()}


class Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama", required=True, help="tiny Hugging Face LLaMA directory")
    ap.add_argument("--vision-width", type=int, required=True, help="the ViT width W the projector takes")
    ap.add_argument("--out", required=True)
    ap.add_argument("--clip", help="tiny CLIP vision directory: also write release-full.pt")
    ap.add_argument("--experts", type=int, default=3)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed)
    base = LlamaForCausalLM.from_pretrained(args.llama, dtype=torch.float32)
    K, L = args.experts, base.config.num_hidden_layers
    sd = released(base, K, args.rank, args.vision_width, gen)
    out = args.out
    if args.clip:
        from transformers import CLIPVisionModel
        full = dict(sd)
        llm = "llm_model.base_model.model."
        base_sd = base.state_dict()
        for n, t in base_sd.items():
            if n.endswith("post_attention_layernorm.weight") or n in ("model.norm.weight", "lm_head.weight"):
                full[llm + n] = t.clone()
        full["in_adaptor.text_embed.weight"] = base_sd["model.embed_tokens.weight"].clone()
        vit = CLIPVisionModel.from_pretrained(args.clip, dtype=torch.float32)
        full.update({"vit.vision_tower." + n: t.clone() for n, t in vit.state_dict().items()})
        torch.save({"state_dict": full}, os.path.join(out, "release-full.pt"))
    torch.save({"state_dict": sd}, os.path.join(out, "release.pt"))
    torch.save({"module." + k: v for k, v in sd.items()}, os.path.join(out, "release-ddp.pt"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "release.safetensors"))
    save_file(mmtune_names(sd, L, K), os.path.join(out, "expected.safetensors"))
    missing = dict(sd)
    del missing[f"{PREFIX}1.mlp.moe_up.2.lora_B"]
    torch.save({"state_dict": missing}, os.path.join(out, "bad-missing.pt"))
    torch.save({"state_dict": {**sd, "in_adaptor.extra.weight": torch.zeros(2)}}, os.path.join(out, "bad-unknown.pt"))
    with open(os.path.join(out, "evil.pt"), "wb") as f:
        pickle.dump({"state_dict": Evil()}, f, protocol=2)

    V = base.config.vocab_size
    ids = torch.randint(3, V, (2, 12), generator=gen)
    mask = torch.ones(2, 12, dtype=torch.long)
    scale = args.alpha / args.rank
    ref = {d: {"logits_sparse": logits_of(args.llama, sd, K, scale, False, ids, mask, d),
               "logits_dense": logits_of(args.llama, sd, K, scale, True, ids, mask, d)}
           for d in (torch.float32, torch.float64)}
    # a training step of the released sparse path on a right-padded batch (row 1: 4 padding tokens)
    train_mask = torch.ones(2, 12, dtype=torch.long)
    train_mask[1, 8:] = 0
    for d in (torch.float32, torch.float64):
        ref[d] |= released_training_grads(args.llama, sd, K, scale, ids, train_mask, BALANCE_W, d)
    save_file(both({"input_ids": ids, "attention_mask": mask, "train_mask": train_mask} | ref[torch.float32],
                   ref[torch.float64]), os.path.join(out, "ref.safetensors"))
    print(json.dumps({"out": out, "tensors": len(sd), "experts": K, "rank": args.rank, "layers": L}))


if __name__ == "__main__":
    main()
