#!/usr/bin/env python3
"""Independent reference for mmtune's IAA family (the final IAA, spec §2.3 (c), no gates):
transformers' own LlamaForCausalLM and CLIPVisionModel, with the workflow's inserted layers
(transformers LlamaDecoderLayer modules holding the adapter file's weights) run after frozen
layers S by forward hooks, and the workflow's own embedding, final norm, LM head and LLaVA
projector. Nothing of either backbone is re-implemented.

  python scripts/reference/iaa_reference.py --llama DIR --clip DIR --adapter ADAPTER.safetensors \\
      --batch BATCH.safetensors --out OUT.safetensors [--workflow mm --insert-layers 0,1
      --vision-layer -2 --projector mlp2x_gelu]

Adapter: mmtune's adapter_model.safetensors of one workflow, names under llm.adapters.iaa_<workflow>.:
embed_tokens.weight, norm.weight, lm_head.weight, layers.<k>.<LlamaDecoderLayer names>,
mm_projector.{0,2,..}.{weight,bias} (mlpNx_gelu) or mm_projector.{weight,bias} (linear).
Batch (mmtune's data::Batch layout): tokens [B,T] int64, attention_mask [B,T] (right padding),
image_slots [B,T] (slot k of row b takes visual token k of sample b), images [B,3,S,S], has_image [B].
Output: logits [B,T,V] (rows with attention_mask = 1 are defined) and visual_tokens [B,n,D], each in
float32 and again as NAME.fp64 from the same models, adapter and batch in float64 (precision.py).
"""
import argparse
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionModel, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from precision import both, fp64


def insert_after(llama, inserted, indices):
    """Forward hooks that run inserted[k] on frozen layer indices[k]'s output (spec §2.3:
    h = Inserted_k(Frozen_i(h)), the same mask, positions and RoPE tables); returns the handles."""
    hooks = []
    for layer, i in zip(inserted, indices):
        def after(module, args, kwargs, out, layer=layer):
            return layer(out, attention_mask=kwargs["attention_mask"], position_ids=kwargs["position_ids"],
                         position_embeddings=kwargs["position_embeddings"])
        hooks.append(llama.model.layers[i].register_forward_hook(after, with_kwargs=True))
    return hooks


class IaaReference:
    """One workflow on the frozen backbones (spec §2.3)."""

    def __init__(self, llama, clip, adapter, opts):
        self.llama, self.clip, self.opts = llama, clip, opts
        prefix = f"llm.adapters.iaa_{opts.workflow}."
        w = {k[len(prefix):]: v for k, v in adapter.items() if k.startswith(prefix)}
        if len(w) != len(adapter):
            sys.exit(f"adapter file has tensors outside {prefix}: {sorted(set(adapter) - {prefix + k for k in w})[:3]}")
        self.embed, self.norm_w, self.head = w.pop("embed_tokens.weight"), w.pop("norm.weight"), w.pop("lm_head.weight")
        self.projector = []                                      # [(weight, bias)] in order
        depth = 1 if opts.projector == "linear" else int(opts.projector[3:-6])
        for j in range(depth):
            name = "mm_projector." if opts.projector == "linear" else f"mm_projector.{2 * j}."
            self.projector.append((w.pop(name + "weight"), w.pop(name + "bias")))
        self.inserted = []                                       # §2.3: a full decoder layer each
        for k, i in enumerate(opts.insert_layers):
            layer = LlamaDecoderLayer(llama.config, layer_idx=i).to(self.embed.dtype).eval()
            state = {n[len(f"layers.{k}."):]: w.pop(n) for n in list(w) if n.startswith(f"layers.{k}.")}
            layer.load_state_dict(state, strict=True)
            self.inserted.append(layer)
        if w:
            sys.exit(f"adapter file has unexpected tensors: {sorted(w)[:5]}")

    def visual_tokens(self, images):
        """LLaVA: patch tokens of hidden state `vision_layer` (CLS dropped), then the projector."""
        x = self.clip(pixel_values=images, output_hidden_states=True).hidden_states[self.opts.vision_layer][:, 1:]
        for j, (wj, bj) in enumerate(self.projector):
            if j > 0:
                x = F.gelu(x)                                    # exact (erf) GELU, as nn.GELU()
            x = F.linear(x, wj, bj)
        return x                                                 # [B, n, D]

    def forward(self, batch):
        vis = self.visual_tokens(batch["images"])
        emb = F.embedding(batch["tokens"], self.embed).clone()   # the workflow's own table [B, T, D]
        slots = batch["image_slots"].bool()
        for b in range(emb.shape[0]):                            # slot k <- visual token k (LLaVA splice)
            k = int(slots[b].sum())
            if k and k != vis.shape[1]:
                sys.exit(f"row {b} has {k} image slots, the ViT gives {vis.shape[1]} patch tokens")
            emb[b, slots[b]] = vis[b, :k]
        hooks = insert_after(self.llama, self.inserted, self.opts.insert_layers)
        try:
            mask = batch["attention_mask"].long()
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            h = self.llama.model(inputs_embeds=emb, attention_mask=mask, position_ids=positions).last_hidden_state
        finally:
            for hd in hooks:
                hd.remove()
        return h, vis                                            # h: after the final norm (run() swaps in the workflow's)


def run(llama, clip, adapter, batch, opts):
    """logits [B, T, V] with the workflow's final norm and head, visual tokens [B, n, D]."""
    ref = IaaReference(llama, clip, adapter, opts)
    saved = llama.model.norm.weight.data.clone()
    llama.model.norm.weight.data.copy_(ref.norm_w)               # the workflow's final norm
    try:
        h, vis = ref.forward(batch)
    finally:
        llama.model.norm.weight.data.copy_(saved)
    return {"logits": F.linear(h, ref.head), "visual_tokens": vis}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workflow", default="mm")
    ap.add_argument("--insert-layers", default="0,1", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--vision-layer", type=int, default=-2)
    ap.add_argument("--projector", default="mlp2x_gelu")
    opts = ap.parse_args()
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    # transformers' default attention (SDPA): eager keeps its softmax in fp32 in a float64 model
    llama = LlamaForCausalLM.from_pretrained(opts.llama, dtype=torch.float32, attn_implementation="sdpa").eval()
    clip = CLIPVisionModel.from_pretrained(opts.clip, dtype=torch.float32, attn_implementation="sdpa").eval()
    batch = load_file(opts.batch)
    adapter = load_file(opts.adapter)
    with torch.no_grad():
        out32 = run(llama, clip, adapter, batch, opts)
        out64 = run(fp64(llama), fp64(clip), fp64(adapter), fp64(batch), opts)
    save_file(both(out32, out64), opts.out)
    print(f"{opts.out}: logits {tuple(out32['logits'].shape)}, visual tokens {tuple(out32['visual_tokens'].shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
