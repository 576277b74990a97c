#!/usr/bin/env python3
"""The demo's vision backbone: a tiny CLIP ViT that mmtune pretrains itself, because no real small
CLIP exists offline (scripts/demo.sh runs these steps once and caches the result).

    demo_vit.py init   --out DIR [--seed 0]           random CLIPVisionModel (transformers' init)
    demo_vit.py vqa    --root SQA --out DIR           open-answer VQA pretraining set (LLaVA JSON)
    demo_vit.py export --checkpoint CKPT --init DIR --out DIR
                                                      the trained ViT as a CLIPVisionModel directory

init    writes DIR/config.json + model.safetensors: 32 px input, 8 px patches (16 patches), width 64,
        4 blocks of 4 heads, MLP 256, quick_gelu -- about 0.2 M parameters.
vqa     turns the image questions of a ScienceQA-layout folder (make_synthetic_scienceqa.py) into
        LLaVA conversations that ask the question without options and answer with the option's
        text ("<image>\\nWhat colour is the shape in the picture?" -> "orange"): the answer depends
        on the picture alone, so the LM loss on it trains the ViT the way captions train a
        LLaVA projector. Writes DIR/train.json and DIR/val.json (images relative to SQA/images).
export  reads a `train.trainable: all` checkpoint (adapter_model.safetensors, where the ViT's
        tensors are named "vision.vision_model.<HF name>"), checks that it holds exactly the
        tensors of --init with the same shapes, and writes them under their Hugging Face names
        with --init's config.json into OUT.tmp, then renames it to OUT. Adapter tensors inside
        the ViT (MMA's vision routers) must be absent: pretrain with
        adapter.mma.vision_placement: none, so the exported ViT is a plain CLIP.
init needs torch and transformers; vqa and export only the standard library, numpy and
safetensors.
"""
import argparse
import json
import os
import shutil
import sys

VIT = dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=256, num_hidden_layers=4,
           num_attention_heads=4, hidden_act="quick_gelu", projection_dim=64)
PREFIX = "vision.vision_model."


def fail(message, hint):
    sys.exit(f"error: {message}\n  hint: {hint}")


def write_atomically(out, fill):
    """Runs fill(tmp_dir) and renames tmp_dir to out (replacing an older out)."""
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    fill(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def cmd_init(args):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    model = CLIPVisionModel(CLIPVisionConfig(**VIT))
    write_atomically(args.out, lambda tmp: model.save_pretrained(tmp))
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: random CLIPVisionModel, {n:,} parameters "
          f"({VIT['num_hidden_layers']} blocks, width {VIT['hidden_size']}, {VIT['image_size']} px, "
          f"{VIT['patch_size']} px patches)")


def cmd_vqa(args):
    problems = json.load(open(os.path.join(args.root, "problems.json"), encoding="utf-8"))
    splits = json.load(open(os.path.join(args.root, "pid_splits.json"), encoding="utf-8"))
    os.makedirs(args.out, exist_ok=True)
    for split in ("train", "val"):
        data = []
        for pid in splits[split]:
            p = problems[pid]
            if not p.get("image"):
                continue
            data.append({"id": pid, "image": f"{split}/{pid}/{p['image']}",
                         "conversations": [{"from": "human", "value": "<image>\n" + p["question"]},
                                           {"from": "gpt", "value": p["choices"][p["answer"]]}]})
        path = os.path.join(args.out, split + ".json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(path + ".tmp", path)
        print(f"{path}: {len(data)} image questions with open answers")


def cmd_export(args):
    from safetensors.numpy import load_file, save_file

    weights = os.path.join(args.checkpoint, "adapter_model.safetensors")
    if not os.path.exists(weights):
        fail(f"{weights} not found", "pass a checkpoint directory (runs/.../checkpoint-N)")
    config = json.load(open(os.path.join(args.checkpoint, "adapter_config.json"), encoding="utf-8"))
    if config.get("trainable") != "all":
        fail(f"{args.checkpoint} was trained with train.trainable: {config.get('trainable')}",
             "the ViT is in the checkpoint only when train.trainable is all")
    trained = load_file(weights)
    init = load_file(os.path.join(args.init, "model.safetensors"))
    vision = {k[len(PREFIX):]: v for k, v in trained.items() if k.startswith(PREFIX)}
    # transformers 5 saves CLIPVisionModel without the "vision_model." prefix; older ones with it
    hf = {(k[len("vision_model."):] if k.startswith("vision_model.") else k): k for k in init}
    missing = sorted(set(hf) - set(vision))
    unexpected = sorted(set(vision) - set(hf))
    if missing or unexpected:
        fail(f"{args.checkpoint}: the ViT tensors do not match {args.init}: "
             f"missing {missing[:5]}, unexpected {unexpected[:5]}",
             "pretrain with adapter.mma.vision_placement: none and vision.path at --init")
    bad = [k for k in hf if vision[k].shape != init[hf[k]].shape]
    if bad:
        fail(f"{args.checkpoint}: shapes differ from {args.init} for {bad[:5]}", "same --init as the pretraining?")
    tensors = {hf[k]: vision[k].astype(init[hf[k]].dtype) for k in hf}

    def fill(tmp):
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        shutil.copy(os.path.join(args.init, "config.json"), os.path.join(tmp, "config.json"))

    write_atomically(args.out, fill)
    print(f"{args.out}: the pretrained ViT ({len(tensors)} tensors) from {args.checkpoint}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init", help="random CLIPVisionModel directory")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("vqa", help="open-answer VQA pretraining set from a ScienceQA-layout folder")
    p.add_argument("--root", required=True, help="folder with problems.json, pid_splits.json, images/")
    p.add_argument("--out", required=True)
    p = sub.add_parser("export", help="trained ViT from a trainable: all checkpoint -> CLIPVisionModel directory")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (adapter_model.safetensors)")
    p.add_argument("--init", required=True, help="the directory the pretraining started from (vision.path)")
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    {"init": cmd_init, "vqa": cmd_vqa, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    main()
