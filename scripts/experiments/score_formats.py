#!/usr/bin/env python3
"""Exact-match accuracy of a trained adapter on a conflicting-formats test set
(scripts/make_conflicting_formats.py), per task and overall, through `mmtune chat` scripted
(greedy, each question in a fresh conversation: "question", "/clear", ...), so the answers come
from mmtune's own generation with the same template and tokenizer as training.

    score_formats.py --mmtune build/bin/mmtune --config C --checkpoint DIR --test test.json
                     [--out answers.jsonl] [--label NAME] [overrides ...]

Prints one JSON object: {"label", "overall", "per_task": {task: {"exact", "content", "format",
"cross", "count"}}}. exact = the answer string equals the reference (whitespace-stripped); content
= the right option word is given in the task's own way, ignoring the rest ("The answer is <word>."
found in the text for quiz, the right word as the first word for tag); format = the answer has the
task's shape, whatever the word (quiz: "The answer is <one word>."; tag: one lowercase word, no
period); cross = the answer has the OTHER task's shape (the format conflict proper). --out keeps every prompt, reference and output.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys


def shape_ok(task, text):
    if task == "quiz":
        return re.fullmatch(r"The answer is [a-z]+\.", text) is not None
    return re.fullmatch(r"[a-z]+", text) is not None


def content_ok(item, text):
    if item["task"] == "quiz":
        return f"The answer is {item['answer_word']}." in text
    words = text.split()
    return bool(words) and words[0] == item["answer_word"]


def adapter_dir(path):
    """`path` itself when it holds an adapter, else its latest checkpoint-N (a training output_dir)."""
    if os.path.exists(os.path.join(path, "adapter_config.json")):
        return path
    ckpts = glob.glob(os.path.join(path, "checkpoint-*"))
    ckpts = [c for c in ckpts if c.rsplit("-", 1)[1].isdigit()]
    if not ckpts:
        sys.exit(f"error: {path} holds no adapter_config.json and no checkpoint-N (hint: pass a training output_dir)")
    return max(ckpts, key=lambda c: int(c.rsplit("-", 1)[1]))


def unescape(line):
    """Undoes generate::escape_line ("\\" -> "\", "\n" -> newline, "\r" -> CR)."""
    return re.sub(r"\\([\\nr])", lambda m: {"\\": "\\", "n": "\n", "r": "\r"}[m.group(1)], line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mmtune", default="build/bin/mmtune")
    ap.add_argument("--config", required=True)
    ap.add_argument("--checkpoint", required=True, help="adapter directory or training output_dir")
    ap.add_argument("--test", required=True, help="test.json of make_conflicting_formats.py")
    ap.add_argument("--out", help="write prompt / reference / output per item (JSONL)")
    ap.add_argument("--label", default="")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("overrides", nargs="*", help="key.sub=value for the config")
    args = ap.parse_args()

    items = json.load(open(args.test, encoding="utf-8"))
    script = "".join(f"{it['conversations'][0]['value']}\n/clear\n" for it in items)
    cmd = [args.mmtune, "chat", "--config", args.config, "--checkpoint", adapter_dir(args.checkpoint), "--temperature", "0",
           "--max-new-tokens", str(args.max_new_tokens), *args.overrides]
    run = subprocess.run(cmd, input=script, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited {run.returncode}:\n{run.stderr[-2000:]}")
    lines = run.stdout.split("\n")
    if len(lines) < len(items):
        sys.exit(f"error: {len(items)} questions but {len(lines)} answer lines (hint: see the chat's stderr)\n"
                 f"{run.stderr[-2000:]}")

    per_task = {}
    rows = []
    for it, raw in zip(items, lines):
        text = unescape(raw).strip()
        ref = it["conversations"][1]["value"]
        t = per_task.setdefault(it["task"], {"exact": 0, "content": 0, "format": 0, "cross": 0, "count": 0})
        exact = text == ref
        t["exact"] += exact
        t["content"] += content_ok(it, text)
        t["format"] += shape_ok(it["task"], text)
        t["cross"] += shape_ok("tag" if it["task"] == "quiz" else "quiz", text)
        t["count"] += 1
        rows.append({"id": it["id"], "task": it["task"], "prompt": it["conversations"][0]["value"], "reference": ref,
                     "output": text, "exact": exact})
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    total = sum(t["count"] for t in per_task.values())
    for t in per_task.values():
        for k in ("exact", "content", "format", "cross"):
            t[k] = t[k] / t["count"]
    overall = sum(r["exact"] for r in rows) / total
    print(json.dumps({"label": args.label, "overall": overall, "count": total, "per_task": per_task}))


if __name__ == "__main__":
    main()
