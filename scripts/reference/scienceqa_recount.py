#!/usr/bin/env python3
"""Recomputes a ScienceQA results.json from scratch, the way the benchmark's own tooling does
(lupantech/ScienceQA models/utils.py get_scores, LaVIN's eval), and compares it with what mmtune
wrote. Independent of mmtune's C++ scoring: it reads only problems.json, pid_splits.json and the
results file.

    scienceqa_recount.py --data DIR --results results.json --split test [--limit N] [--unparsable wrong|random]

Checks, printing one line per problem found and "OK" at the end when there is none:
  * results / outputs hold exactly the split's first N pids (all of them without --limit);
  * every prediction agrees with LaVIN's extraction: the first match of `The answer is ([A-Z]).`
    in the output, when its letter is among the choices, else -1 (wrong) or a valid option (random);
  * acc / correct / count and each category's acc / correct / count (NAT SOC LAN TXT IMG NO G1-6
    G7-12 Avg, official definitions) match a recount from the predictions and problems.json.
Exit status 0 when everything matches, 1 otherwise.
"""
import argparse
import json
import re
import sys


def categories(problem):
    cats = []
    subject = problem.get("subject", "")
    cats += {"natural science": ["NAT"], "social science": ["SOC"], "language science": ["LAN"]}.get(subject, [])
    has_text = (problem.get("hint") or "") != ""
    has_image = problem.get("image") not in (None, "")
    if has_text:
        cats.append("TXT")
    if has_image:
        cats.append("IMG")
    if not has_text and not has_image:
        cats.append("NO")
    grade = problem.get("grade", "")
    if grade in [f"grade{i}" for i in range(1, 7)]:
        cats.append("G1-6")
    if grade in [f"grade{i}" for i in range(7, 13)]:
        cats.append("G7-12")
    cats.append("Avg")
    return cats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--unparsable", default="wrong", choices=["wrong", "random"])
    args = ap.parse_args()

    problems = json.load(open(f"{args.data}/problems.json"))
    pids = [str(p) for p in json.load(open(f"{args.data}/pid_splits.json"))[args.split]]
    if args.limit > 0:
        pids = pids[: args.limit]
    res = json.load(open(args.results))
    problems_found = []

    for key in ["acc", "correct", "count", "results", "outputs", "args"]:
        if key not in res:
            problems_found.append(f"results.json has no '{key}' (official layout)")
    results, outputs = res.get("results", {}), res.get("outputs", {})
    if sorted(results) != sorted(pids) or sorted(outputs) != sorted(pids):
        problems_found.append(f"results hold {len(results)} pids, outputs {len(outputs)}, the split {len(pids)}")

    pattern = re.compile(r"The answer is ([A-Z]).")
    score = {}
    for pid in pids:
        p = problems[pid]
        n = len(p["choices"])
        pred = results.get(pid, None)
        m = pattern.findall(outputs.get(pid, ""))
        extracted = ord(m[0]) - ord("A") if m and ord(m[0]) - ord("A") < n else -1
        if extracted >= 0 and pred != extracted:
            problems_found.append(f"{pid}: output says option {extracted}, results say {pred}")
        if extracted < 0:
            ok = pred == -1 if args.unparsable == "wrong" else (isinstance(pred, int) and 0 <= pred < n)
            if not ok:
                problems_found.append(f"{pid}: unparsable output, but results say {pred} ({args.unparsable})")
        right = pred == p["answer"]
        for c in categories(p):
            s = score.setdefault(c, [0, 0])
            s[0] += int(right)
            s[1] += 1

    cats = res.get("categories", {})
    for c in ["NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Avg"]:
        correct, count = score.get(c, [0, 0])
        acc = 100.0 * correct / count if count else 0.0
        got = cats.get(c, {})
        if got.get("correct") != correct or got.get("count") != count or abs(got.get("acc", -1) - acc) > 1e-9:
            problems_found.append(f"{c}: recount {correct}/{count} = {acc:.4f}, results.json {got}")
    correct, count = score.get("Avg", [0, 0])
    if res.get("correct") != correct or res.get("count") != count or abs(res.get("acc", -1) - 100.0 * correct / max(count, 1)) > 1e-9:
        problems_found.append(f"acc: recount {correct}/{count}, results.json {res.get('correct')}/{res.get('count')} {res.get('acc')}")

    for line in problems_found:
        print(line)
    print("OK" if not problems_found else f"{len(problems_found)} problem(s)")
    print(json.dumps({c: score.get(c, [0, 0]) for c in ["NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Avg"]}))
    return 0 if not problems_found else 1


if __name__ == "__main__":
    sys.exit(main())
