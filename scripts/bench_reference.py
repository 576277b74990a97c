#!/usr/bin/env python3
"""The eager-PyTorch side of scripts/bench_compare.sh: `mmtune bench` (include/mmtune/bench/bench.h)
written as a PyTorch engineer would, on the same model, batches and settings, with the same JSON keys.

  mmtune config print --config configs/lavin/tiny.yaml [key=value ...] > run.yaml
  python scripts/bench_reference.py train|generate --config run.yaml [--steps 20 --warmup 3 --threads 2
      --batch B --min-length N --prompt-length P --new-tokens N --random-weights --json out.json]
  python scripts/bench_reference.py shapes --out DIR   # config.json of the "bench-small" shape, no weights

The model: transformers' LlamaForCausalLM and CLIPVisionModel (attn_implementation="sdpa", frozen,
requires_grad False) with LaVIN's MM-adapters added as forward hooks on the norms (as
scripts/reference/mma_reference.py checks them against mmtune), the visual neck and the modality
token; AdamW (torch.optim, fused on CPU and CUDA) over the adapter parameters only, timm's no-decay
groups. The step, the synthetic batches (row lengths, token ids, padding policy), the FLOP count and
the timing rules are those of bench.h; `--config` is mmtune's resolved config (`mmtune config
print`), so both read the same settings. Only adapter.family mma is supported.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
import yaml
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

IGNORE = -100
# model.arch / vision.arch (src/model/sizes.cpp)
LLAMA_ARCH = {
    "llama-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-6, max_position_embeddings=2048),
    "llama-13b": dict(vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                      num_attention_heads=40, num_key_value_heads=40, rms_norm_eps=1e-6, max_position_embeddings=2048),
    "llama3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=500000.0,
                      max_position_embeddings=8192),
}
CLIP_ARCH = {
    "clip-vit-l14": dict(image_size=224, patch_size=14, hidden_size=1024, intermediate_size=4096,
                         num_hidden_layers=24, num_attention_heads=16, hidden_act="quick_gelu"),
    "clip-vit-l14-336": dict(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                             num_hidden_layers=24, num_attention_heads=16, hidden_act="quick_gelu"),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---- the MM-adapter (LaVIN's RepAdapter_Router): x + s (w0 UpB(A x) + w1 UpD(A x)), grouped ups ----
class RepAdapterRouter(nn.Module):
    def __init__(self, C, mma):
        super().__init__()
        h = mma["dim"]
        self.scale, self.t = mma["scale"], mma["temperature"]
        self.down = nn.Linear(C, h)                                     # conv_A (1x1), Xavier, zero bias
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        # conv_B / conv_D (1x1, groups=2) as [2, C/2, h/2]: output half g reads hidden half g; zero-init
        self.up_b = nn.Parameter(torch.zeros(2, C // 2, h // 2))
        self.up_d = nn.Parameter(torch.zeros(2, C // 2, h // 2))
        self.bias_b, self.bias_d = nn.Parameter(torch.zeros(C)), nn.Parameter(torch.zeros(C))
        self.router = nn.Linear(C, 2)
        self.dropout = nn.Dropout(mma["dropout"])

    def route(self, x):
        """[B, 1, 2] from token 0 (the modality token in the LLM, CLS in the ViT)."""
        return torch.softmax(self.router(x[:, 0].float()) / self.t, -1)[:, None]

    def up(self, hid, w, b):
        B, T, h = hid.shape
        out = torch.einsum("btgk,gck->btgc", hid.view(B, T, 2, h // 2), w)  # [B, T, 2, C/2]
        return out.reshape(B, T, -1) + b

    def forward(self, x, w):
        xf = x.float()
        hid = self.dropout(self.down(xf))
        mix = w[..., :1] * self.up(hid, self.up_b, self.bias_b) + w[..., 1:] * self.up(hid, self.up_d, self.bias_d)
        return (xf + self.scale * mix).to(x.dtype)


class AdapterHook:
    """Forward hook on a norm: its output u becomes adapter(u). LLM routing is computed on the first
    pass over a sequence (more than one position) and reused by decode steps, as LaVIN does."""

    def __init__(self, adapter, cache_routing):
        self.adapter, self.cache_routing, self.w = adapter, cache_routing, None

    def __call__(self, module, args, out):
        if not self.cache_routing or out.shape[1] > 1:
            self.w = self.adapter.route(out)
        return self.adapter(out, self.w)


class LavinReference(nn.Module):
    """Frozen LLaMA + CLIP with MM-adapters, neck and modality token; only the adapters train."""

    def __init__(self, llama, clip, cfg):
        super().__init__()
        self.llama, self.clip = llama, clip
        mma, vision = cfg["adapter"]["mma"], cfg["vision"]
        for p in list(llama.parameters()) + list(clip.parameters()):
            p.requires_grad_(False)
        D, W = llama.config.hidden_size, clip.config.hidden_size
        self.llm_adapters, self.vit_adapters, self.hooks = nn.ModuleList(), nn.ModuleList(), []
        for layer in llama.model.layers:
            norms = [layer.input_layernorm] + ([layer.post_attention_layernorm] if mma["llm_placement"] == "block" else [])
            for norm in norms:
                self.llm_adapters.append(RepAdapterRouter(D, mma))
                self.hooks.append(norm.register_forward_hook(AdapterHook(self.llm_adapters[-1], cache_routing=True)))
        if mma["vision_placement"] != "none":
            for layer in clip.vision_model.encoder.layers if hasattr(clip, "vision_model") else clip.encoder.layers:
                norms = [layer.layer_norm1] + ([layer.layer_norm2] if mma["vision_placement"] == "router_block" else [])
                for norm in norms:
                    self.vit_adapters.append(RepAdapterRouter(W, mma))
                    self.hooks.append(norm.register_forward_hook(AdapterHook(self.vit_adapters[-1], cache_routing=False)))
        hidden = vision["projector_hidden"]
        self.neck = nn.Sequential(nn.Linear(W, hidden), nn.SiLU(), nn.Linear(hidden, D))  # adapter_proj
        for lin in (self.neck[0], self.neck[2]):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.modality = nn.Embedding(2, D)                     # adapter_modality_embedding, N(0, 1)
        self.cls_every = vision["cls_every"]
        self.adapters_to(llama.device)

    def adapters_to(self, device):
        for m in (self.llm_adapters, self.vit_adapters, self.neck, self.modality):
            m.to(device)

    def visual_tokens(self, images):
        """CLS after blocks cls_every, 2 cls_every, ... -> neck -> [B, n, D]."""
        hs = self.clip(pixel_values=images.to(self.clip.dtype), output_hidden_states=True).hidden_states
        feats = torch.stack([hs[k][:, 0] for k in range(self.cls_every, len(hs), self.cls_every)], 1)
        return self.neck(feats.float())

    def assemble(self, batch):
        """inputs_embeds [B, 1+T, D] (modality token first, visual tokens at the slots), the 4-D bool
        mask [B, 1, 1+T, 1+T] (causal, padding keys hidden, modality key seen only by itself), positions."""
        emb = self.llama.get_input_embeddings()(batch["tokens"])
        image_rows = batch["has_image"].bool()
        if image_rows.any():
            vis = self.visual_tokens(batch["images"][image_rows])
            emb = emb.masked_scatter(batch["image_slots"][..., None], vis.to(emb.dtype))
        h = torch.cat([self.modality(batch["has_image"])[:, None].to(emb.dtype), emb], 1)
        valid = torch.cat([torch.ones_like(batch["attention_mask"][:, :1]), batch["attention_mask"]], 1)
        n = h.shape[1]
        idx = torch.arange(n, device=h.device)
        q, k = idx[:, None], idx[None]
        allowed = (k <= q) & ~((k == 0) & (q > 0))
        allowed = allowed[None] & valid[:, None, :]
        allowed |= ~allowed.any(-1, keepdim=True)              # no empty rows (no NaN)
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        return h, allowed[:, None], positions

    def loss(self, batch):
        """Token cross-entropy summed over the supervised positions / their count. The LM head runs
        only on the rows that predict a label (as mmtune's lm_loss_sum_from_hidden), not on the
        whole [B, T, V]: what a careful PyTorch training loop does for prompt-heavy batches."""
        h, mask, pos = self.assemble(batch)
        hidden = self.llama.model(inputs_embeds=h, attention_mask=mask, position_ids=pos,
                                  use_cache=False).last_hidden_state[:, 1:-1]       # drop the modality row
        target = batch["labels"][:, 1:].reshape(-1)
        rows = (target != IGNORE).nonzero().squeeze(1)
        logits = self.llama.lm_head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows))
        loss_sum = F.cross_entropy(logits.float(), target.index_select(0, rows), reduction="sum")
        return loss_sum / max(batch["supervised"], 1)


# ---- synthetic batches: bench.h's formulas ----
def synthetic_length(row, lo, hi):
    return lo + ((2654435761 * row + 12345) % (1 << 32)) % (hi - lo + 1)


def synthetic_batch(step, B, lo, hi, fixed, vocab, n, size, gen):
    lengths = [synthetic_length(step * B + b, lo, hi) for b in range(B)]
    T = hi if fixed else max(lengths)
    tokens = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    slots = torch.zeros(B, T, dtype=torch.bool)
    text = 3 + n
    for b, L in enumerate(lengths):
        i = step * B + b
        t = torch.arange(L)
        row = 3 + (7919 * i + 104729 * t) % (vocab - 3)
        row[0] = 1
        row[3:text] = 0
        tokens[b, :L] = row
        mask[b, :L] = True
        slots[b, 3:text] = True
        answer = text + (L - text) // 2
        labels[b, answer:L] = row[answer:L]
    batch = {"tokens": tokens, "labels": labels, "attention_mask": mask, "image_slots": slots,
             "has_image": torch.full((B,), 1 if n > 0 else 0, dtype=torch.long),
             "supervised": int((labels != IGNORE).sum())}
    batch["images"] = torch.randn(B, 3, size, size, generator=gen) if n > 0 else None
    return batch


def to_device(batch, device):
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


# ---- models ----
def shape_json(path, arch, table, what):
    if path and os.path.exists(os.path.join(path, "config.json")):
        with open(os.path.join(path, "config.json")) as f:
            return json.load(f)
    if arch in table:
        return dict(table[arch])
    sys.exit(f"no {what} shape: {path}/config.json not found and {what}.arch not set")


def load_models(cfg, random_weights, dtype, device):
    mp, vp = cfg["model"]["path"], cfg["vision"]["path"]
    if random_weights:
        lc = LlamaConfig(**{k: v for k, v in shape_json(mp, cfg["model"]["arch"], LLAMA_ARCH, "model").items()
                            if k not in ("architectures", "transformers_version", "dtype")})
        vc = CLIPVisionConfig(**{k: v for k, v in shape_json(vp, cfg["vision"]["arch"], CLIP_ARCH, "vision").items()
                                 if k not in ("architectures", "transformers_version", "dtype")})
        lc.initializer_range = vc.initializer_range = 0.02   # bench.h: N(0, 0.02), norms 1, biases 0
        lc._attn_implementation = vc._attn_implementation = "sdpa"
        with torch.device(device):
            llama, clip = LlamaForCausalLM(lc).to(dtype), CLIPVisionModel(vc).to(dtype)
    else:
        llama = LlamaForCausalLM.from_pretrained(mp, dtype=dtype, attn_implementation="sdpa").to(device)
        clip = CLIPVisionModel.from_pretrained(vp, dtype=dtype, attn_implementation="sdpa").to(device)
    return llama, clip


def llm_matmul_params(c):
    D, q = c.hidden_size, c.num_attention_heads * getattr(c, "head_dim", c.hidden_size // c.num_attention_heads)
    kv = c.num_key_value_heads * (q // c.num_attention_heads)
    return c.num_hidden_layers * (D * q + 2 * D * kv + q * D + 3 * D * c.intermediate_size) + D * c.vocab_size


def vit_matmul_params(c):
    W = c.hidden_size
    return c.num_hidden_layers * (4 * W * W + 2 * W * c.intermediate_size) + c.num_channels * c.patch_size ** 2 * W


def percentile(v, q):
    v = sorted(v)
    return v[min(max(math.ceil(q * len(v)), 1), len(v)) - 1] if v else 0.0


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(model, tc, device):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith("bias") or p.dim() <= 1 else decay).append(p)
    lr = tc["lr"] if tc["lr"] is not None else tc["blr"] * tc["global_batch_size"] / 256
    groups = [{"params": decay, "weight_decay": tc["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(tc["betas"]), eps=float(tc["eps"]), fused=True), decay + no_decay


def common_report(mode, cfg, args, model):
    lc, vc = model.llama.config, model.clip.config
    return {"mode": mode, "impl": "pytorch-eager", "device": cfg["device"], "dtype": cfg["dtype"],
            "precision": cfg["train"]["precision"], "threads": torch.get_num_threads(),
            "llm": f"L={lc.num_hidden_layers} D={lc.hidden_size} H={lc.num_attention_heads}/{lc.num_key_value_heads} "
                   f"F={lc.intermediate_size} V={lc.vocab_size}",
            "vision": f"L={vc.num_hidden_layers} W={vc.hidden_size} I={vc.intermediate_size} S={vc.image_size} p={vc.patch_size}",
            "llm_params": sum(p.numel() for p in model.llama.parameters()),
            "vision_params": sum(p.numel() for p in model.clip.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "random_weights": args.random_weights,
            "activation_checkpointing": mode == "train" and cfg["train"]["activation_checkpointing"],
            "data": "synthetic", "padding": cfg["data"]["padding"], "batch": args.batch,
            "max_length": cfg["data"]["max_length"], "steps": args.steps, "warmup": args.warmup}


def finish_report(r, cfg, args):
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20 if cfg["device"].startswith("cuda") else None
    r["peak_tflops"] = args.peak_tflops
    r["mfu"] = r["achieved_tflops"] / args.peak_tflops if args.peak_tflops else None
    return r


def bench_train(cfg, args, model, device, dtype):
    n = model.clip.config.num_hidden_layers // model.cls_every
    lo = args.min_length or max(cfg["data"]["max_length"] // 4, n + 8)
    gen = torch.Generator().manual_seed(cfg["seed"])
    total = args.warmup + args.steps
    batches = [to_device(synthetic_batch(s, args.batch, lo, cfg["data"]["max_length"], cfg["data"]["padding"] == "fixed",
                                         model.llama.config.vocab_size, n, model.clip.config.image_size, gen), device)
               for s in range(total)]
    if cfg["train"]["activation_checkpointing"]:
        model.llama.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt, params = make_optimizer(model, cfg["train"], device)
    clip_grad = cfg["train"]["clip_grad"]
    bf16 = cfg["train"]["precision"] == "bf16"
    n_llm, n_vit = llm_matmul_params(model.llama.config), vit_matmul_params(model.clip.config)
    vit_tokens = (model.clip.config.image_size // model.clip.config.patch_size) ** 2 + 1
    times, losses, tokens, padded, flops, cpu0 = [], [], 0.0, 0.0, 0.0, 0.0
    for step, b in enumerate(batches):
        if step == args.warmup:
            cpu0 = time.process_time()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(b)
        loss.backward()
        value = loss.item()
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        else:
            torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        opt.step()
        sync(device)
        dt = time.perf_counter() - t0
        if step < args.warmup:
            continue
        times.append(dt)
        losses.append(value)
        real, images = float(b["attention_mask"].sum()), float(b["has_image"].sum())
        tokens += real
        padded += b["tokens"].numel()
        flops += 4 * (n_llm * real + n_vit * images * vit_tokens)
    cpu = time.process_time() - cpu0
    r = common_report("train", cfg, args, model)
    k, total_s = len(times), sum(times)
    r |= {"tokens_per_step": tokens / k, "padded_tokens_per_step": padded / k, "tokens_per_s": tokens / total_s,
          "padded_tokens_per_s": padded / total_s, "samples_per_s": args.batch * k / total_s,
          "step_s_p50": percentile(times, 0.5), "step_s_p90": percentile(times, 0.9), "step_s_mean": total_s / k,
          "step_s_min": min(times), "cpu_s_per_step": cpu / k, "flops_per_step": flops / k, "achieved_tflops": flops / total_s / 1e12}
    finish_report(r, cfg, args)
    r["loss_first"], r["loss_last"] = losses[0], losses[-1]
    return r


@torch.inference_mode()
def greedy(model, batch, new_tokens):
    """Prefill of the assembled prompts, then one token per step with the KV cache (LaVIN's routing
    cached by the hooks); greedy, no EOS stop. Returns the generated ids [B, new_tokens]."""
    h, mask, pos = model.assemble(batch)
    cache = transformers.DynamicCache()
    out = model.llama(inputs_embeds=h, attention_mask=mask, position_ids=pos, past_key_values=cache,
                      use_cache=True, logits_to_keep=1)
    nxt = out.logits[:, -1].argmax(-1)
    ids = [nxt]
    B, S = h.shape[0], h.shape[1]
    for i in range(new_tokens - 1):
        keys = torch.ones(B, 1, 1, S + i + 1, dtype=torch.bool, device=h.device)
        keys[..., 0] = False                                 # the modality token is seen only by itself
        out = model.llama(input_ids=nxt[:, None], attention_mask=keys, position_ids=pos[:, -1:] + i + 1,
                          past_key_values=cache, use_cache=True)
        nxt = out.logits[:, -1].argmax(-1)
        ids.append(nxt)
    return torch.stack(ids, 1)


def bench_generate(cfg, args, model, device, dtype):
    n = model.clip.config.num_hidden_layers // model.cls_every
    P, N = args.prompt_length, args.new_tokens or cfg["eval"]["generation"]["max_new_tokens"]
    gen = torch.Generator().manual_seed(cfg["seed"])
    batch = to_device(synthetic_batch(0, args.batch, P, P, False, model.llama.config.vocab_size, n,
                                      model.clip.config.image_size, gen), device)
    model.eval()

    def run(k):
        t0 = time.perf_counter()
        greedy(model, batch, k)
        sync(device)
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        run(N)
    prefill, full, cpu = [], [], 0.0
    for _ in range(args.steps):
        prefill.append(run(1))
        cpu0 = time.process_time()
        full.append(run(N))
        cpu += time.process_time() - cpu0                   # of the full generations
    B, k, total_s = args.batch, len(full), sum(full)
    r = common_report("generate", cfg, args, model)
    r |= {"padding": "none", "max_length": P + N, "precision": cfg["dtype"], "prompt_length": P, "new_tokens": N,
          "tokens_per_step": B * N, "padded_tokens_per_step": B * (P + N), "tokens_per_s": B * N * k / total_s,
          "padded_tokens_per_s": B * (P + N) * k / total_s, "samples_per_s": B * k / total_s,
          "step_s_p50": percentile(full, 0.5), "step_s_p90": percentile(full, 0.9), "step_s_mean": total_s / k,
          "step_s_min": min(full), "cpu_s_per_step": cpu / k, "prefill_s_p50": percentile(prefill, 0.5)}
    r["decode_s_p50"] = max(r["step_s_p50"] - r["prefill_s_p50"], 0.0)
    r["prefill_tok_per_s"] = B * P / r["prefill_s_p50"]
    r["decode_tok_per_s"] = B * (N - 1) / r["decode_s_p50"] if N > 1 and r["decode_s_p50"] > 0 else 0.0
    vit = vit_matmul_params(model.clip.config) * ((model.clip.config.image_size // model.clip.config.patch_size) ** 2 + 1)
    r["flops_per_step"] = 2 * (llm_matmul_params(model.llama.config) * B * (P + N) + vit * B)
    r["achieved_tflops"] = r["flops_per_step"] / r["step_s_mean"] / 1e12
    return finish_report(r, cfg, args)


def make_shapes(out):
    """The "bench-small" shape (config.json only; both sides run it with --random-weights): a LLaMA
    of D 512, 8 layers, GQA 8/4, V 32000 (scripts/reference/bench_generate.py's small model) and a
    ViT of W 384, 8 layers, patch 32 at 224 px."""
    LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=False, bos_token_id=1,
                eos_token_id=2).save_pretrained(os.path.join(out, "llama"))
    CLIPVisionConfig(image_size=224, patch_size=32, hidden_size=384, intermediate_size=1536, num_hidden_layers=8,
                     num_attention_heads=6, hidden_act="quick_gelu").save_pretrained(os.path.join(out, "clip"))
    print(f"{out}/llama, {out}/clip: config.json only (run with --random-weights)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["train", "generate", "shapes"])
    ap.add_argument("--config", help="mmtune's resolved config (mmtune config print)")
    ap.add_argument("--out", help="shapes: the directory to write")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--min-length", type=int, default=0)
    ap.add_argument("--prompt-length", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=0)
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.what == "shapes":
        return make_shapes(args.out or ap.error("shapes needs --out DIR"))
    if not args.config:
        ap.error("--config is required")
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    if cfg["adapter"]["family"] != "mma":
        sys.exit(f"bench_reference.py implements adapter.family mma only, not {cfg['adapter']['family']}")
    if cfg["vision"]["feature"] != "cls_every" or cfg["adapter"]["mma"]["clip_router_mode"] != "per_sample_cls":
        sys.exit("bench_reference.py implements vision.feature cls_every with clip_router_mode per_sample_cls")
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    args.batch = args.batch or (cfg["train"]["micro_batch_size"] if args.what == "train" else cfg["eval"]["batch_size"])
    device, dtype = torch.device(cfg["device"]), DTYPES[cfg["dtype"]]
    torch.manual_seed(cfg["seed"])
    llama, clip = load_models(cfg, args.random_weights, dtype, device)
    model = LavinReference(llama, clip, cfg)
    r = (bench_train if args.what == "train" else bench_generate)(cfg, args, model, device, dtype)
    text = json.dumps(r, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
