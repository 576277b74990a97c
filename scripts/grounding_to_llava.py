#!/usr/bin/env python3
"""RefCOCO-style grounding JSONL (the layout `mmtune eval --task grounding` reads,
include/mmtune/eval/grounding.h) -> LLaVA conversations for `mmtune train` (data.format llava_json):

    grounding_to_llava.py --in train.jsonl --out train.json

    {"id": "g1", "image": "g1.png", "expression": "the red circle", "box": [0.5, 0, 0.9, 0.4]}
 -> {"id": "g1", "image": "g1.png", "conversations": [
        {"from": "human", "value": "<image>\\nPlease provide the bounding box coordinate of the region this sentence describes: the red circle"},
        {"from": "gpt", "value": "[0.50, 0.00, 0.90, 0.40]"}]}

The question is the one the grounding eval asks (eval::grounding_query) and the answer is the box
as the eval parses it, two decimals (eval::format_box); tests/integration/test_grounding.cpp ties
the two to the C++. "question" is accepted for "expression", as the eval does. Image paths stay
as they are (relative to the same image folder).
"""
import argparse
import json
import os
import sys

QUERY = "Please provide the bounding box coordinate of the region this sentence describes: "


def format_box(box):
    return "[" + ", ".join(f"{v:.2f}" for v in box) + "]"


def convert(item, where):
    expression = item.get("expression") or item.get("question")
    box = item.get("box")
    if not isinstance(expression, str) or not expression:
        raise ValueError(f"{where}: no \"expression\"")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise ValueError(f"{where}: \"box\" is not [x1, y1, x2, y2]")
    if "image" not in item:
        raise ValueError(f"{where}: no \"image\"")
    return {"id": str(item.get("id", where)), "image": item["image"],
            "conversations": [{"from": "human", "value": "<image>\n" + QUERY + expression},
                              {"from": "gpt", "value": format_box(box)}]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--in", dest="inp", required=True, help="grounding JSONL")
    ap.add_argument("--out", required=True, help="LLaVA conversations JSON")
    args = ap.parse_args()
    out = []
    try:
        with open(args.inp) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    out.append(convert(json.loads(line), f"{args.inp}:{n}"))
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        sys.exit(f"error: {e}")
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(out)} conversations")


if __name__ == "__main__":
    main()
