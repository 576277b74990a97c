#!/usr/bin/env python3
"""ScienceQA's official layout -> LLaVA conversation JSON, as LLaVA's authors converted it (CQM-A):

    scienceqa_to_llava.py --root DIR [--out DIR/llava] [--splits train val test]
    scienceqa_to_llava.py --root DIR --check REAL_LLAVA_JSON     compare with a real conversion

For each pid of a split (pid_splits.json order), one entry
    {"id": pid, "image": "<split>/<pid>/<image>",          (only for problems with an image)
     "conversations": [{"from": "human", "value": H}, {"from": "gpt", "value": letter}]}
with H = "<image>\\n" (image problems) + "Context: <hint>\\n" (non-empty hint) + question + "\\n" +
"A. c0\\nB. c1..." -- the layout of ../shared/data/scienceqa/llava_test_CQM-A.json (checked with
--check on the problems both files hold). Image paths are relative to <root>/images, so one
image_folder serves every split: data.image_folder: <root>/images, data.json: <out>/<split>.json.
Writes <out>/<split>.json atomically (temp file + rename).
"""
import argparse
import json
import os
import sys


def human_turn(problem):
    text = "<image>\n" if problem.get("image") else ""
    if problem.get("hint"):
        text += "Context: " + problem["hint"] + "\n"
    text += problem["question"] + "\n"
    text += "\n".join(f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(problem["choices"]))
    return text


def entry(pid, problem, split):
    e = {"id": pid}
    if problem.get("image"):
        e["image"] = f"{problem.get('split', split)}/{pid}/{problem['image']}"
    e["conversations"] = [{"from": "human", "value": human_turn(problem)},
                          {"from": "gpt", "value": chr(ord("A") + problem["answer"])}]
    return e


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="ScienceQA folder: problems.json, pid_splits.json, images/")
    ap.add_argument("--problems", default="problems.json", help="relative to --root")
    ap.add_argument("--out", help="output folder (default ROOT/llava)")
    ap.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    ap.add_argument("--check", help="a real LLaVA conversion to compare with on the shared pids")
    args = ap.parse_args()
    problems = json.load(open(os.path.join(args.root, args.problems)))
    if args.check:
        real = json.load(open(args.check))
        shared = [r for r in real if r["id"] in problems]
        bad = 0
        for r in shared:
            mine = entry(r["id"], problems[r["id"]], problems[r["id"]].get("split", "test"))
            if mine["conversations"] != r["conversations"] or ("image" in mine) != ("image" in r):
                bad += 1
                print(f"pid {r['id']} differs:\n  ours {mine['conversations']!r}\n  real {r['conversations']!r}")
        print(f"{len(shared) - bad}/{len(shared)} shared problems convert exactly as {args.check}")
        return 1 if bad or not shared else 0
    splits = json.load(open(os.path.join(args.root, "pid_splits.json")))
    out = args.out or os.path.join(args.root, "llava")
    os.makedirs(out, exist_ok=True)
    for split in args.splits:
        if split not in splits:
            sys.exit(f"{args.root}/pid_splits.json: no split '{split}' (has {', '.join(sorted(splits))})")
        data = [entry(pid, problems[pid], split) for pid in splits[split]]
        path = os.path.join(out, split + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
        os.replace(path + ".tmp", path)
        print(f"{path}: {len(data)} conversations ({sum('image' in d for d in data)} with an image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
