#!/usr/bin/env python3
"""A fake official IAA checkpoint (the Hugging Face layout of qihoo360/Inner-Adaptor-Architecture,
spec §2 and §5: IAALlamaForCausalLM's names and shapes, sharded safetensors with an index) on the
tiny test models, for testing scripts/convert_iaa_checkpoint.py, plus reference logits of every
workflow from a forward written from the official code (modeling_llama_iaa.py LlamaModel.forward,
iaa_llama.py, iaa_arch.py), reading the official names directly.

  python scripts/reference/make_iaa_checkpoint.py --llama DIR --clip DIR --batch BATCH.safetensors
      --out OUTDIR [--insert-layers 0,2 --vision-layer -2 --seed 1]

Writes into OUTDIR:
  official/     config.json (model_type IAA, the released config's mm_* keys, mm_use_im_patch_token
                true), model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json, the
                tokenizer and generation files of --llama. Tensors:
                  model.embed_tokens.weight, lm_head.weight [V + 1, D]: the tiny LLaMA's, resized
                    by one row as the official builder does after adding <im_patch>
                  model.layers.*, model.norm.weight: the tiny LLaMA's
                  model.embed_tokens_condition{,_grounding}.weight, lm_head_condtion{,_grounding}.weight
                    [V, D], model.norm_condition{,_grounding}.weight, model.condition_layers{,_grounding}.{k}.*
                    (the frozen layer S[k]'s weights moved off by noise), model.mm_projector{,_G}.{0,2}.*
                    (mlp2x_gelu), model.vision_tower.vision_tower.vision_model.* (the tiny CLIP's)
  bad-unknown/  the same plus one tensor no IAA model has (model.extra.weight)
  ref.safetensors  logits_text [B, T, V + 1] (the Text workflow: the frozen LLM), logits_mm and
                logits_g [B, T, V] on BATCH (mmtune's data::Batch layout: tokens, attention_mask,
                image_slots, images), each again as NAME.fp64 (precision.py)
The forward per workflow (spec §2.3): the workflow's embedding table, the image's projected patch
features (hidden state --vision-layer, CLS dropped) spliced into the placeholder's positions in order,
then for every frozen layer i: h = L_i(h), and h = C_k(h) right after it when i = S[k]; the workflow's
final norm and head. Frozen and condition layers are transformers' LlamaDecoderLayer.
"""
import argparse
import json
import os
import shutil

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionModel, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm

from iaa_reference import insert_after
from precision import both, fp64

WF = {"mm": ("", "mm_projector", "lm_head_condtion"), "g": ("_grounding", "mm_projector_G", "lm_head_condtion_grounding")}


def official_state(base, vit, S, W, gen):
    c = base.config
    V, D = c.vocab_size, c.hidden_size
    sd = {}
    b = base.state_dict()

    def noisy(x, s=0.05):
        return (x + torch.randn(x.shape, generator=gen) * s).contiguous()

    extra = torch.randn(1, D, generator=gen) * c.initializer_range  # the resized row (HF _init_weights)
    sd["model.embed_tokens.weight"] = torch.cat([b["model.embed_tokens.weight"], extra])
    sd["lm_head.weight"] = torch.cat([b["lm_head.weight"], torch.randn(1, D, generator=gen) * c.initializer_range])
    for n, x in b.items():
        if n.startswith("model.layers.") or n == "model.norm.weight":
            sd[n] = x.clone()
    for w, (sfx, proj, head) in WF.items():
        sd[f"model.embed_tokens_condition{sfx}.weight"] = noisy(b["model.embed_tokens.weight"])
        sd[f"model.norm_condition{sfx}.weight"] = noisy(b["model.norm.weight"])
        sd[f"{head}.weight"] = noisy(b["lm_head.weight"])
        for k, i in enumerate(S):
            for n, x in b.items():
                if n.startswith(f"model.layers.{i}."):
                    sd[f"model.condition_layers{sfx}.{k}." + n[len(f"model.layers.{i}."):]] = noisy(x)
        sd[f"model.{proj}.0.weight"] = torch.randn(D, W, generator=gen) * 0.2
        sd[f"model.{proj}.0.bias"] = torch.randn(D, generator=gen) * 0.2
        sd[f"model.{proj}.2.weight"] = torch.randn(D, D, generator=gen) * 0.2
        sd[f"model.{proj}.2.bias"] = torch.randn(D, generator=gen) * 0.2
    for n, x in vit.state_dict().items():
        sd["model.vision_tower.vision_tower." + n] = x.clone()
    return sd


def write_official(d, sd, cfg, llama_dir):
    os.makedirs(d, exist_ok=True)
    names = sorted(sd)
    half = [n for n in names if n.startswith(("model.layers.", "model.embed_tokens.", "model.norm.", "lm_head."))]
    rest = [n for n in names if n not in half]
    weight_map = {}
    for i, part in enumerate((half, rest)):
        f = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({n: sd[n] for n in part}, os.path.join(d, f), metadata={"format": "pt"})
        weight_map.update({n: f for n in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(x.numel() * x.element_size() for x in sd.values())},
                   "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if os.path.isfile(os.path.join(llama_dir, name)):
            shutil.copy(os.path.join(llama_dir, name), os.path.join(d, name))


class OfficialIaa:
    """The official forward over the official names (spec §2.3)."""

    def __init__(self, llama_dir, clip_dir, sd, S, vision_layer, dtype):
        base = LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
        base.resize_token_embeddings(sd["model.embed_tokens.weight"].shape[0], mean_resizing=False)  # the official loader
        text = {n: x for n, x in sd.items() if n.startswith(("model.layers.", "model.norm.", "model.embed_tokens."))
                or n == "lm_head.weight"}
        base.load_state_dict(text, strict=True)
        self.llm = base.eval().to(dtype)
        self.vit = CLIPVisionModel.from_pretrained(clip_dir, dtype=torch.float32).eval().to(dtype)
        self.sd = {n: x.to(dtype) for n, x in sd.items()}
        self.S, self.vision_layer, self.dtype = S, vision_layer, dtype
        c = self.llm.config
        self.cond = {}
        for w, (sfx, _, _) in WF.items():
            layers = []
            for k, i in enumerate(S):
                layer = LlamaDecoderLayer(c, layer_idx=i).to(dtype).eval()
                p = f"model.condition_layers{sfx}.{k}."
                layer.load_state_dict({n[len(p):]: x for n, x in self.sd.items() if n.startswith(p)}, strict=True)
                layers.append(layer)
            self.cond[w] = layers

    def logits(self, batch, workflow):
        tokens, mask = batch["tokens"], batch["attention_mask"].bool()
        if workflow == "text":
            return self.llm(input_ids=tokens, attention_mask=mask.long()).logits
        sfx, proj, head = WF[workflow]
        emb = F.embedding(tokens, self.sd[f"model.embed_tokens_condition{sfx}.weight"]).clone()   # [B, T, D]
        feats = self.vit(pixel_values=batch["images"].to(self.dtype), output_hidden_states=True)
        x = feats.hidden_states[self.vision_layer][:, 1:]                                        # patches [B, n, W]
        x = F.linear(F.gelu(F.linear(x, self.sd[f"model.{proj}.0.weight"], self.sd[f"model.{proj}.0.bias"])),
                     self.sd[f"model.{proj}.2.weight"], self.sd[f"model.{proj}.2.bias"])         # [B, n, D]
        slots = batch["image_slots"].bool()
        for b in range(emb.shape[0]):
            k = int(slots[b].sum())
            emb[b, slots[b]] = x[b, :k]
        hooks = insert_after(self.llm, self.cond[workflow], self.S)              # h = C_k(L_i(h))
        norm = LlamaRMSNorm(emb.shape[-1], eps=self.llm.config.rms_norm_eps).to(self.dtype)
        norm.weight.data.copy_(self.sd[f"model.norm_condition{sfx}.weight"])
        saved, self.llm.model.norm = self.llm.model.norm, norm
        try:
            h = self.llm.model(inputs_embeds=emb, attention_mask=mask.long()).last_hidden_state
        finally:
            self.llm.model.norm = saved
            for hk in hooks:
                hk.remove()
        return F.linear(h, self.sd[f"{head}.weight"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--insert-layers", default="0,2")
    ap.add_argument("--vision-layer", type=int, default=-2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    S = [int(x) for x in args.insert_layers.split(",")]
    gen = torch.Generator().manual_seed(args.seed)
    base = LlamaForCausalLM.from_pretrained(args.llama, dtype=torch.float32)
    vit = CLIPVisionModel.from_pretrained(args.clip, dtype=torch.float32)
    W = vit.config.hidden_size
    sd = official_state(base, vit, S, W, gen)
    cfg = json.load(open(os.path.join(args.llama, "config.json")))
    cfg.update({"_name_or_path": "iaa-tiny-hf", "architectures": ["IAALlamaForCausalLM"], "model_type": "IAA",
                "auto_map": {"AutoConfig": "modeling_iaa.IAAConfig",
                             "AutoModelForCausalLM": "modeling_iaa.IAALlamaForCausalLM"},
                "image_aspect_ratio": "pad", "image_grid_pinpoints": None, "mm_hidden_size": W,
                "mm_num_tokens": (vit.config.image_size // vit.config.patch_size) ** 2 + 1,
                "mm_projector_type": "mlp2x_gelu", "mm_use_im_patch_token": True, "mm_use_im_start_end": False,
                "mm_vision_select_feature": "patch", "mm_vision_select_layer": args.vision_layer,
                "mm_vision_tower": "openai/clip-vit-large-patch14-336", "tune_mm_mlp_adapter": False,
                "freeze_mm_mlp_adapter": False, "use_mm_proj": True})
    write_official(os.path.join(args.out, "official"), sd, cfg, args.llama)
    write_official(os.path.join(args.out, "bad-unknown"), {**sd, "model.extra.weight": torch.zeros(2)}, cfg, args.llama)

    batch = load_file(args.batch)
    ref = {}
    for dtype in (torch.float32, torch.float64):
        m = OfficialIaa(args.llama, args.clip, sd, S, args.vision_layer, dtype)
        b = fp64(batch) if dtype == torch.float64 else batch
        with torch.no_grad():
            ref[dtype] = {f"logits_{w}": m.logits(b, w).contiguous() for w in ("text", "mm", "g")}
    save_file(both(ref[torch.float32], ref[torch.float64]), os.path.join(args.out, "ref.safetensors"))
    print(json.dumps({"out": args.out, "tensors": len(sd), "insert_layers": S}))


if __name__ == "__main__":
    main()
