#!/usr/bin/env python3
"""Reference oracle: LaVIN's ScienceQA prompt builder (spec §1.9), re-implemented from the spec and
LaVIN's util/base_prompt.py (build_prompt -> create_training_example), for the C++ builder in
src/data/prompt.cpp to be compared against (tests/unit/data/test_prompt.cpp).

    scienceqa_prompts.py --problems problems.json --splits pid_splits.json [--split train ...]
                         [--captions captions.json --use-caption] [--formats QCM-ALE,CQM-A | all]
                         [--out FILE]

Prints (or writes to FILE) JSON {pid: {format: [prompt, answer]}} for every pid of the chosen
splits (default: every split in the file), in split order. A pid of a split that the problems file
lacks is an error, as in the C++ reader.

The builder, written as the spec states it:
  context  = (hint + " " + caption-if-use_caption).strip(), "N/A" when empty
  options  = "(A) c0 (B) c1 ..." (letters by position)
  lecture / solution: newlines written as the two characters backslash, n
  prompt   = ("\n" + input block + "Response:") with "  " -> " " once, then strip()
  answer   = output block with "  " -> " " once, then strip() (a dangling "BECAUSE:" stays)
"""
import argparse
import json
import string
import sys

# Input blocks: the lines in order. "M" = options, "B:<x>" = a BECAUSE line with lecture (L),
# solution (E) or both (LE), as LaVIN's "upper bound" formats place them.
INPUTS = {
    "CQM": ["C", "Q", "M"],
    "QCM": ["Q", "C", "M"],
    "QCML": ["Q", "C", "M", "B:L"],
    "QCME": ["Q", "C", "M", "B:E"],
    "QCMLE": ["Q", "C", "M", "B:LE"],
    "QCLM": ["Q", "C", "B:L", "M"],
    "QCEM": ["Q", "C", "B:E", "M"],
    "QCLEM": ["Q", "C", "B:LE", "M"],
}

# Output templates. Upstream's AL explains with the solution and AE with the lecture (swapped
# relative to the names); kept as is.
OUTPUTS = {
    "A": "The answer is {a}.",
    "AL": "The answer is {a}. BECAUSE: {e}",
    "AE": "The answer is {a}. BECAUSE: {l}",
    "ALE": "The answer is {a}. BECAUSE: {l} {e}",
    "AEL": "The answer is {a}. BECAUSE: {e} {l}",
    "LA": "{l} The answer is {a}.",
    "EA": "{e} The answer is {a}.",
    "LEA": "{l} {e} The answer is {a}.",
    "ELA": "{e} {l} The answer is {a}.",
}

ALL_FORMATS = [f"{i}-{o}" for i in INPUTS for o in OUTPUTS]


def tidy(text):
    return text.replace("  ", " ").strip()


def fields(problem, caption, use_caption):
    context = " ".join([problem["hint"], caption if use_caption else ""]).strip() or "N/A"
    letters = string.ascii_uppercase
    return {
        "q": problem["question"],
        "c": context,
        "m": " ".join(f"({letters[i]}) {c}" for i, c in enumerate(problem["choices"])),
        "a": letters[problem["answer"]],
        "l": problem["lecture"].replace("\n", "\\n"),
        "e": problem["solution"].replace("\n", "\\n"),
    }


def input_block(name, f):
    lines = []
    for part in INPUTS[name]:
        if part == "Q":
            lines.append(f"Question: {f['q']}")
        elif part == "C":
            lines.append(f"Context: {f['c']}")
        elif part == "M":
            lines.append(f"Options: {f['m']}")
        else:
            body = " ".join(f[k.lower()] for k in part[2:])
            lines.append(f"BECAUSE: {body}")
    return "".join(line + "\n" for line in lines)


def build(problem, fmt, caption="", use_caption=False):
    inp, out = fmt.split("-")
    f = fields(problem, caption, use_caption)
    prompt = tidy("\n" + input_block(inp, f) + "Response:")
    answer = tidy(OUTPUTS[out].format(**f))
    return prompt, answer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", required=True)
    ap.add_argument("--splits", required=True)
    ap.add_argument("--split", nargs="*", default=None, help="splits to cover (default: all)")
    ap.add_argument("--captions", default=None)
    ap.add_argument("--use-caption", action="store_true")
    ap.add_argument("--formats", default="all", help="comma-separated, or 'all'")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    with open(args.problems, encoding="utf-8") as fh:
        problems = json.load(fh)
    with open(args.splits, encoding="utf-8") as fh:
        splits = json.load(fh)
    captions = {}
    if args.captions:
        with open(args.captions, encoding="utf-8") as fh:
            captions = json.load(fh)["captions"]
    formats = ALL_FORMATS if args.formats == "all" else args.formats.split(",")
    for fmt in formats:
        if fmt not in ALL_FORMATS:
            sys.exit(f"unknown format {fmt}")

    result = {}
    for name in args.split if args.split is not None else list(splits):
        for pid in splits[name]:
            pid = str(pid)
            if pid not in problems:
                sys.exit(f"pid {pid} of split {name} is not in {args.problems}")
            if pid in result:
                continue
            problem = problems[pid]
            caption = captions.get(pid, "")
            result[pid] = {fmt: list(build(problem, fmt, caption, args.use_caption)) for fmt in formats}

    text = json.dumps(result, ensure_ascii=False)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
