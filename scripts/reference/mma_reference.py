#!/usr/bin/env python3
"""Independent reference for mmtune's MMA (LaVIN) family: transformers' own LlamaForCausalLM and
CLIPVisionModel, with LaVIN's MM-adapters, visual neck, modality token and mask added by forward
hooks and an assembled inputs_embeds / 4-D mask. Nothing of either backbone is re-implemented.
Spec: ../shared/spec/adapters.md §1 (section numbers below refer to it).

  # the modes (fp32, CPU, one thread; every file written is safetensors)
  python scripts/reference/mma_reference.py --llama DIR --clip DIR --make-adapter A.safetensors --seed 1
  python scripts/reference/mma_reference.py --llama DIR --clip DIR --make-batch BATCH.safetensors
  python scripts/reference/mma_reference.py --llama DIR --clip DIR --adapter A --batch BATCH --out REF
      [--temperature 10 --scale 1 --cls-every 4 --llm-placement attn|block
       --vision-placement router|router_block|none --clip-router-mode per_sample_cls|official_lnd_quirk]
  python scripts/reference/mma_reference.py --llama DIR --clip DIR --self-check   # prints the checks
  python scripts/reference/mma_reference.py --llama DIR --clip DIR --adapter A --batch BATCH --out GEN
      --generate-lavin N   # LaVIN's official batched greedy loop (lavin_generate): tokens [B, total]

Batch (mmtune's data::Batch layout): tokens [B,T] int64, attention_mask [B,T] (right padding),
image_slots [B,T] (slot k of row b takes visual token k of sample b), images [B,3,S,S] f32,
has_image [B] int64. Output: logits [B,T,V] (the modality row dropped; only rows with
attention_mask = 1 are defined), visual_tokens [B,n,D], clip_features [B,n,W], each in float32 and
again as NAME.fp64 from the same models, adapter and batch in float64 (precision.py).
Adapter tensors carry mmtune's names (see `adapter_names`).
"""
import argparse
import sys

import sentencepiece as spm
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionModel, LlamaForCausalLM

from precision import both, fp64

LLM = "llm.model.layers.{}.adapters.mma."
VIT = "vision.vision_model.encoder.layers.{}.adapters.mma."
DEC = "llm.adapters.mma."


# ---- §1.2 the MM-adapter (LaVIN's RepAdapter_Router), written as LaVIN writes it: 1x1 convs ----
def route(x, p, t, per_token_of_first):
    """Routing weights from the adapter's own (normed) input x [N, L, C]. Per sample from token 0
    -> [N, 1, 2]; LaVIN's CLIP quirk (§1.3): per token position of sample 0 -> [1, L, 2]."""
    if per_token_of_first:
        return torch.softmax(F.linear(x[0], p["expert_weights.weight"], p["expert_weights.bias"]) / t, -1)[None]
    return torch.softmax(F.linear(x[:, 0], p["expert_weights.weight"], p["expert_weights.bias"]) / t, -1)[:, None]


def mm_adapter(x, p, w, s):
    """x + s * (w0 * UpB(hid) + w1 * UpD(hid)), hid = conv_A(x); grouped (groups=2) 1x1 convs."""
    xc = x.transpose(1, 2)                                                 # [N, C, L]
    hid = F.conv1d(xc, p["conv_A.weight"], p["conv_A.bias"])               # [N, h, L], no activation
    up_b = F.conv1d(hid, p["conv_B.weight"], p["conv_B.bias"], groups=2)   # [N, C, L] block-diagonal
    up_d = F.conv1d(hid, p["conv_D.weight"], p["conv_D.bias"], groups=2)
    return x + s * (w[..., :1] * up_b.transpose(1, 2) + w[..., 1:] * up_d.transpose(1, 2))


class AdapterHook:
    """Forward hook on a norm module: replaces its output u by MMAdapter(u) (§1.3). `fixed` replays
    routing weights recorded in an earlier pass (`last`), for the masking check."""

    def __init__(self, p, opts, quirk=False):
        self.p, self.opts, self.quirk, self.fixed, self.last = p, opts, quirk, None, None

    def __call__(self, module, args, out):
        w = self.fixed if self.fixed is not None else route(out, self.p, self.opts.temperature, self.quirk)
        self.last = w
        return mm_adapter(out, self.p, w, self.opts.scale)


def sub(tensors, prefix, used):
    out = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not out:
        sys.exit(f"adapter file has no tensors under {prefix}")
    used.update(prefix + k for k in out)
    return out


class MmaReference:
    """The frozen backbones plus hooks for one adapter file and one set of options."""

    def __init__(self, llama, clip, adapter, opts):
        self.llama, self.clip, self.opts, self.hooks, used = llama, clip, opts, [], set()
        for i, layer in enumerate(llama.model.layers):       # §1.3 LLM: before attention (+ before FFN)
            self.hooks.append((layer.input_layernorm, AdapterHook(sub(adapter, LLM.format(i) + "adapter_attn.", used), opts)))
            if opts.llm_placement == "block":
                self.hooks.append((layer.post_attention_layernorm,
                                   AdapterHook(sub(adapter, LLM.format(i) + "adapter_mlp.", used), opts)))
        quirk = opts.clip_router_mode == "official_lnd_quirk"
        vit = getattr(clip, "vision_model", clip)            # transformers 5 dropped the wrapper
        for j, layer in enumerate(vit.encoder.layers if opts.vision_placement != "none" else []):
            self.hooks.append((layer.layer_norm1, AdapterHook(sub(adapter, VIT.format(j) + "adapter_attn.", used), opts, quirk)))
            if opts.vision_placement == "router_block":
                self.hooks.append((layer.layer_norm2, AdapterHook(sub(adapter, VIT.format(j) + "adapter_mlp.", used), opts, quirk)))
        self.neck = sub(adapter, DEC + "adapter_proj.", used)
        self.modality = sub(adapter, DEC + "adapter_modality_embedding.", used)["weight"]   # [2, D]
        if set(adapter) - used:
            sys.exit(f"adapter file has unexpected tensors: {sorted(set(adapter) - used)[:5]}")

    def clip_features(self, images):
        """§1.4: CLS row after blocks cls_every, 2*cls_every, ... (no post_layernorm) -> [B, n, W]."""
        hs = self.clip(pixel_values=images, output_hidden_states=True).hidden_states   # L+1 states
        return torch.stack([hs[k][:, 0] for k in range(self.opts.cls_every, len(hs), self.opts.cls_every)], 1)

    def forward(self, batch, adapters=True, positions=None):
        """Full logits [B, 1+T, V] (row 0: the modality token), visual tokens, CLS features.
        `positions` [B, 1+T]: RoPE positions to use instead of the count of real tokens before."""
        handles = [m.register_forward_hook(h) for m, h in self.hooks] if adapters else []
        try:
            neck = lambda f: F.linear(F.silu(F.linear(f, self.neck["conv_A.weight"], self.neck["conv_A.bias"])),  # noqa: E731
                                      self.neck["conv_B.weight"], self.neck["conv_B.bias"])  # §1.4 neck
            feats = self.clip_features(batch["images"])
            vis = neck(feats)                                                     # [B, n, D]
            # Under per_sample_cls an image's tokens depend on that image alone, so the ViT runs on
            # the image rows only (as mmtune does; LaVIN's quirk mixes rows, so it needs them all).
            # Same values; run this way, the fp32 matmuls also round alike.
            fill = vis
            if self.opts.clip_router_mode == "per_sample_cls" and batch["has_image"].any():
                rows = batch["has_image"].nonzero().squeeze(1)
                fill = torch.zeros_like(vis)
                fill[rows] = neck(self.clip_features(batch["images"][rows]))
            emb = self.llama.get_input_embeddings()(batch["tokens"]).clone()      # [B, T, D]
            slots = batch["image_slots"].bool()
            for b in range(emb.shape[0]):                                         # §1.5 slot k <- token k
                k = int(slots[b].sum())
                if k and k != vis.shape[1]:
                    sys.exit(f"row {b} has {k} image slots, the ViT gives {vis.shape[1]} visual tokens")
                emb[b, slots[b]] = fill[b, :k]
            h = torch.cat([self.modality[batch["has_image"]][:, None], emb], 1)  # [B, 1+T, D]
            valid = torch.cat([torch.ones_like(slots[:, :1]), batch["attention_mask"].bool()], 1)
            if positions is None:
                positions = (valid.long().cumsum(-1) - 1).clamp(min=0)           # modality 0, BOS 1
            n = h.shape[1]
            q, k = torch.arange(n)[:, None], torch.arange(n)[None]
            allowed = (k <= q) & valid[:, None, :] & ~((k == 0) & (q > 0))       # [B, Q, K] §1.5 mask
            allowed |= ~allowed.any(-1, keepdim=True)                            # no empty rows (no NaN)
            mask = torch.zeros(allowed.shape, dtype=h.dtype).masked_fill(~allowed, float("-inf"))[:, None]
            logits = self.llama(inputs_embeds=h, attention_mask=mask, position_ids=positions).logits
        finally:
            for hd in handles:
                hd.remove()
        return logits, vis, feats


def lavin_generate(ref, batch, max_new):
    """LaVIN's official batched generation (lavin/generator.py, greedy), on a right-padded batch:
    S = the shortest prompt, total = the longest + max_new; the cached loop prefills tokens 0..S-1
    behind the modality token (RoPE positions 1..S), then feeds position cur = S, S+1, ... one at a
    time at RoPE position cur, each row its own prompt token while cur < its length, else the token
    sampled from the previous step. Written here without a cache: every step runs the whole sequence
    so far again with those positions (the same keys and queries as the cached loop; the modality
    key is masked for every later query in both). Returns the tokens [B, total] and the smallest
    top-1 minus top-2 logit gap among the sampled tokens (a tie would make argmax ill-defined)."""
    tokens, lengths = batch["tokens"], batch["attention_mask"].long().sum(1)
    B, T = tokens.shape
    S, total = int(lengths.min()), int(lengths.max()) + max_new
    seq = torch.zeros(B, total, dtype=torch.long)
    seq[:, :T] = tokens * batch["attention_mask"].long()
    slots = torch.zeros(B, total, dtype=torch.bool)
    slots[:, :T] = batch["image_slots"].bool()
    assert not slots[:, S:].any(), "an image slot beyond the shortest prompt"
    gap = float("inf")
    for cur in range(S, total):
        part = {"tokens": seq[:, :cur], "attention_mask": torch.ones(B, cur, dtype=torch.long),
                "image_slots": slots[:, :cur], "images": batch["images"], "has_image": batch["has_image"]}
        pos = torch.tensor([0] + [j + 1 for j in range(S)] + list(range(S, cur)))[None].expand(B, -1)
        logits = ref.forward(part, positions=pos)[0][:, -1]                    # [B, V] after token cur-1
        top = logits.topk(2, -1).values
        for b in range(B):
            if cur >= lengths[b]:
                seq[b, cur] = logits[b].argmax()
                gap = min(gap, float(top[b, 0] - top[b, 1]))
    return seq, gap


def load_models(args):
    # transformers' default attention (SDPA). Its eager attention keeps the softmax in fp32, also in
    # a float64 model, which would leave a 5e-6 difference in --fp64 runs.
    attn = getattr(args, "attn", "sdpa")
    llama = LlamaForCausalLM.from_pretrained(args.llama, dtype=torch.float32, attn_implementation=attn).eval()
    clip = CLIPVisionModel.from_pretrained(args.clip, dtype=torch.float32, attn_implementation=attn).eval()
    return llama, clip


def adapter_names(llama, clip, opts, dim, hidden):
    """name -> shape, mmtune's names (§5 mapping in scripts/convert_lavin_checkpoint.py)."""
    D, W = llama.config.hidden_size, clip.config.hidden_size
    def router(prefix, C):
        return {prefix + "conv_A.weight": (dim, C, 1), prefix + "conv_A.bias": (dim,),
                prefix + "conv_B.weight": (C, dim // 2, 1), prefix + "conv_B.bias": (C,),
                prefix + "conv_D.weight": (C, dim // 2, 1), prefix + "conv_D.bias": (C,),
                prefix + "expert_weights.weight": (2, C), prefix + "expert_weights.bias": (2,)}
    out = {}
    for i in range(llama.config.num_hidden_layers):
        out |= router(LLM.format(i) + "adapter_attn.", D)
        if opts.llm_placement == "block":
            out |= router(LLM.format(i) + "adapter_mlp.", D)
    for j in range(clip.config.num_hidden_layers if opts.vision_placement != "none" else 0):
        out |= router(VIT.format(j) + "adapter_attn.", W)
        if opts.vision_placement == "router_block":
            out |= router(VIT.format(j) + "adapter_mlp.", W)
    out |= {DEC + "adapter_proj.conv_A.weight": (hidden, W), DEC + "adapter_proj.conv_A.bias": (hidden,),
            DEC + "adapter_proj.conv_B.weight": (D, hidden), DEC + "adapter_proj.conv_B.bias": (D,),
            DEC + "adapter_modality_embedding.weight": (2, D)}
    return out


def make_adapter(llama, clip, opts, seed, dim=8, hidden=16):
    """Random non-zero weights: routers and up-projections large enough that routing matters."""
    g = torch.Generator().manual_seed(seed)
    scale = lambda n: 1.0 if "modality" in n else 0.5 if "expert_weights" in n else 0.2  # noqa: E731
    return {n: torch.randn(s, generator=g) * scale(n) for n, s in adapter_names(llama, clip, opts, dim, hidden).items()}


def make_batch(llama_dir, clip, opts, seed=5):
    """Rows 0, 2: BOS tok("Image: ") [n slots] prompt; row 1 text-only, BOS tok("Image: N/A") prompt
    (shorter); right padding with 0; row 1's image is zeros (§1.4)."""
    sp = spm.SentencePieceProcessor(model_file=f"{llama_dir}/tokenizer.model")
    n = clip.config.num_hidden_layers // opts.cls_every
    prompts = ["Question: which colour is the square?\nResponse:", "Context: N/A\nResponse:",
               "Options: (A) red (B) blue\nResponse:"]
    rows = []
    for b, text in enumerate(prompts):
        image = b != 1
        prefix = [1] + sp.encode("Image: " if image else "Image: N/A")
        rows.append((prefix + [0] * n * image + sp.encode(text), len(prefix), image))
    T = max(len(r[0]) for r in rows)
    batch = {"tokens": torch.zeros(3, T, dtype=torch.long), "attention_mask": torch.zeros(3, T, dtype=torch.uint8),
             "image_slots": torch.zeros(3, T, dtype=torch.uint8), "has_image": torch.tensor([1, 0, 1])}
    for b, (ids, start, image) in enumerate(rows):
        batch["tokens"][b, :len(ids)] = torch.tensor(ids)
        batch["attention_mask"][b, :len(ids)] = 1
        batch["image_slots"][b, start:start + n] = int(image)
    S = clip.config.image_size
    batch["images"] = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(seed))
    batch["images"][1] = 0
    return batch


def self_check(llama, clip, opts):
    """The checks of the report; each prints its number."""
    batch = make_batch(opts.llama, clip, opts)
    adapter = make_adapter(llama, clip, opts, seed=1)
    valid = batch["attention_mask"].bool()
    # grouped conv = block-diagonal dense matrix (channels [0,C/2) read hidden [0,h/2))
    wb = adapter[LLM.format(0) + "adapter_attn.conv_B.weight"][..., 0]
    C, hh = wb.shape
    dense = torch.zeros(C, 2 * hh)
    dense[:C // 2, :hh], dense[C // 2:, hh:] = wb[:C // 2], wb[C // 2:]
    hid = torch.randn(2, 2 * hh, 5)
    print(f"grouped conv vs block-diagonal matmul: max |diff| "
          f"{(F.conv1d(hid, wb[..., None], groups=2) - torch.einsum('ch,bhl->bcl', dense, hid)).abs().max():.3g}")
    # (1) identity: zero up-projections = plain transformers on the same assembled sequence
    up = lambda k: (".conv_B." in k or ".conv_D." in k) and "adapter_proj" not in k  # noqa: E731
    zero = {k: torch.zeros_like(v) if up(k) else v for k, v in adapter.items()}
    ref = MmaReference(llama, clip, zero, opts)
    with_a, without = ref.forward(batch)[0], ref.forward(batch, adapters=False)[0]
    print(f"zero up-projections vs bare models, text rows: max |diff| {(with_a - without)[:, 1:][valid].abs().max():.3g}")
    ref = MmaReference(llama, clip, adapter, opts)
    full, _, _ = ref.forward(batch)
    print(f"random adapters vs bare models (not a no-op): max |diff| {(full - without)[:, 1:][valid].abs().max():.3g}")
    # (2) a sample alone vs in the mixed batch
    for b in range(3):
        L = int(valid[b].sum())
        one = {k: (v[b:b + 1, :L] if v.dim() == 2 else v[b:b + 1]) for k, v in batch.items()}
        alone = ref.forward(one)[0]
        print(f"{opts.clip_router_mode}: row {b} alone vs in the batch: max |diff| "
              f"{(alone[0, 1:] - full[b, 1:L + 1]).abs().max():.3g}")
    # (3) masking: replay the routing of a first pass, perturb the modality rows: rows >= 1 unchanged
    hooks = [h for _, h in ref.hooks]
    ref.forward(batch)  # records every hook's routing for this batch
    for h in hooks:
        h.fixed = h.last
    saved = ref.modality.clone()
    ref.modality.mul_(-3).add_(1)
    replay = ref.forward(batch)[0]
    for h in hooks:
        h.fixed = None
    free = ref.forward(batch)[0]
    ref.modality.copy_(saved)
    print(f"modality row perturbed, routing replayed: rows >= 1 max |diff| {(replay - full)[:, 1:].abs().max():.3g}"
          f" (row 0: {(replay - full)[:, 0].abs().max():.3g}); routing free: rows >= 1 max |diff| "
          f"{(free - full)[:, 1:][valid].abs().max():.3g}")
    # row 0 sees only itself: other tokens do not change it
    other = dict(batch, tokens=torch.where(valid, (batch["tokens"] * 7 + 3) % llama.config.vocab_size, 0))
    print(f"tokens changed: row 0 max |diff| {(ref.forward(other)[0][:, 0] - full[:, 0]).abs().max():.3g}")
    # (4) the fp32 noise floor of these tiny models: the same reference in fp64
    full64 = MmaReference(fp64(llama), fp64(clip), fp64(adapter), opts).forward(fp64(batch))[0]
    print(f"fp32 vs fp64 reference, text rows: max |diff| {(full.double() - full64)[:, 1:][valid].abs().max():.3g}"
          f" (|logits| up to {full.abs().max():.3g})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--adapter")
    ap.add_argument("--batch")
    ap.add_argument("--out")
    ap.add_argument("--make-adapter")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--projector-hidden", type=int, default=16)
    ap.add_argument("--make-batch")
    ap.add_argument("--self-check", action="store_true")
    ap.add_argument("--generate-lavin", type=int, metavar="N",
                    help="LaVIN's official batched loop: N new tokens per row after --batch (right-padded)")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="transformers' attention implementation")
    ap.add_argument("--temperature", type=float, default=10.0)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--cls-every", type=int, default=4)
    ap.add_argument("--llm-placement", choices=["attn", "block"], default="attn")
    ap.add_argument("--vision-placement", choices=["router", "router_block", "none"], default="router")
    ap.add_argument("--clip-router-mode", choices=["per_sample_cls", "official_lnd_quirk"], default="per_sample_cls")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.disable_progress_bar()
    llama, clip = load_models(args)
    with torch.no_grad():
        if args.make_adapter:
            save_file(make_adapter(llama, clip, args, args.seed, args.dim, args.projector_hidden), args.make_adapter)
            print(f"{args.make_adapter}: random MMA adapter (seed {args.seed})")
        elif args.make_batch:
            save_file(make_batch(args.llama, clip, args), args.make_batch)
            print(f"{args.make_batch}: 3 rows (2 image, 1 text-only)")
        elif args.self_check:
            self_check(llama, clip, args)
        elif not (args.adapter and args.batch and args.out):
            ap.error("--adapter, --batch and --out are required (or one of --make-adapter, --make-batch, --self-check)")
        else:
            batch = load_file(args.batch)
            batch["has_image"] = batch["has_image"].long()
            adapter = load_file(args.adapter)
            if args.generate_lavin:
                write_lavin_generation(llama, clip, adapter, batch, args)
            else:
                write_forward(llama, clip, adapter, batch, args)
    return 0


def write_lavin_generation(llama, clip, adapter, batch, args):
    """--generate-lavin: LaVIN's loop in float32 and float64 -> tokens (fp64), tokens_fp32, gap."""
    seq32, _ = lavin_generate(MmaReference(llama, clip, adapter, args), batch, args.generate_lavin)
    seq64, gap = lavin_generate(MmaReference(fp64(llama), fp64(clip), fp64(adapter), args), fp64(batch),
                                args.generate_lavin)
    save_file({"tokens": seq64, "tokens_fp32": seq32, "gap": torch.tensor([gap], dtype=torch.float64)}, args.out)
    print(f"{args.out}: LaVIN's loop, {tuple(seq64.shape)} tokens, smallest top-2 gap {gap:.3g}")


def write_forward(llama, clip, adapter, batch, args):
    """The default mode: logits, visual tokens and CLIP features in float32 and float64."""
    def run(llama, clip, adapter, batch):
        logits, vis, feats = MmaReference(llama, clip, adapter, args).forward(batch)
        return {"logits": logits[:, 1:], "visual_tokens": vis, "clip_features": feats}
    out32 = run(llama, clip, adapter, batch)
    # the same in float64 (transformers keeps RMSNorm and RoPE in fp32 there, as mmtune does)
    out64 = run(fp64(llama), fp64(clip), fp64(adapter), fp64(batch))
    save_file(both(out32, out64), args.out)
    print(f"{args.out}: logits {tuple(out32['logits'].shape)}, visual tokens {tuple(out32['visual_tokens'].shape)}")


if __name__ == "__main__":
    sys.exit(main())
