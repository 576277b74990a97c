#!/usr/bin/env python3
"""The demo's comparison table: mmtune eval's ScienceQA accuracies of several runs side by side,
with the chance level of the same questions, and the demo's target check.

    demo_report.py --problems DIR/problems.json NAME=results.json [NAME=results.json ...]
                   [--target NAME:BASELINE]

Each results.json is what `mmtune eval --task scienceqa` wrote; its per-category accuracies are
printed as they are (the table of the eval, one row per run), then how many of each run's answers
named no option (counted wrong) and its most frequent answer. The chance row averages
1 / (number of options) over the evaluated questions, by the eval's category rules (subject ->
NAT / SOC / LAN, a hint -> TXT, an image -> IMG, neither -> NO, grade 1-6 / 7-12, Avg).
--target NAME:BASELINE checks the demo's goal on image questions: run NAME's IMG accuracy is at
least twice chance and above run BASELINE's; exit status 1 when it is not.
Standard library only.
"""
import argparse
import json
import sys
from collections import Counter

CATEGORIES = ["NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Avg"]
SUBJECTS = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}


def categories_of(p):
    """src/eval/scienceqa_score.cpp scienceqa_categories_of, on a problems.json entry."""
    c = [SUBJECTS[p["subject"]]] if p.get("subject") in SUBJECTS else []
    text, image = bool(p.get("hint")), bool(p.get("image"))
    c += (["TXT"] if text else []) + (["IMG"] if image else []) + ([] if text or image else ["NO"])
    grade = p.get("grade", "")
    g = int(grade[5:]) if grade.startswith("grade") and grade[5:].isdigit() else -1
    c += ["G1-6"] if 1 <= g <= 6 else ["G7-12"] if 7 <= g <= 12 else []
    return c + ["Avg"]


def chance(problems, ids):
    total, count = {k: 0.0 for k in CATEGORIES}, {k: 0 for k in CATEGORIES}
    for pid in ids:
        p = problems[pid]
        for k in categories_of(p):
            total[k] += 1.0 / len(p["choices"])
            count[k] += 1
    return {k: 100.0 * total[k] / count[k] if count[k] else 0.0 for k in CATEGORIES}, count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", required=True, help="problems.json of the evaluated set")
    ap.add_argument("--target", help="NAME:BASELINE: NAME's IMG >= 2 x chance and > BASELINE's IMG")
    ap.add_argument("runs", nargs="+", help="NAME=results.json (mmtune eval --output)")
    args = ap.parse_args()

    problems = json.load(open(args.problems, encoding="utf-8"))
    rows, notes, ids = {}, [], None
    for run in args.runs:
        name, _, path = run.partition("=")
        if not path:
            sys.exit(f"error: '{run}' is not NAME=results.json")
        r = json.load(open(path, encoding="utf-8"))
        rows[name] = {k: r["categories"][k]["acc"] for k in CATEGORIES}  # percent
        top, n_top = Counter(r["outputs"].values()).most_common(1)[0]
        notes.append(f"{name}: {len(r['unparsable'])} of {r['count']} answers name no option; "
                     f"most frequent answer {top!r} ({n_top} times)")
        these = sorted(r["results"])
        if ids is not None and these != ids:
            sys.exit(f"error: {path} evaluated other questions than the first results file")
        ids = these
    rows["chance"], count = chance(problems, ids)

    width = max(len(n) for n in rows) + 2
    print(" " * width + "".join(f"{k:>8}" for k in CATEGORIES))
    for name, acc in rows.items():
        print(f"{name:<{width}}" + "".join(f"{acc[k]:8.2f}" for k in CATEGORIES))
    print(f"{'questions':<{width}}" + "".join(f"{count[k]:8d}" for k in CATEGORIES))
    for note in notes:
        print(note)

    if args.target:
        tuned, _, base = args.target.partition(":")
        img, base_img, floor = rows[tuned]["IMG"], rows[base]["IMG"], 2 * rows["chance"]["IMG"]
        ok = img >= floor and img > base_img
        print(f"image questions: {tuned} {img:.2f} % vs 2 x chance {floor:.2f} % and {base} {base_img:.2f} %: "
              + ("target met" if ok else "TARGET MISSED"))
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
