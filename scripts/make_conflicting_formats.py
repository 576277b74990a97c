#!/usr/bin/env python3
"""Writes a text-only LLaVA-JSON data set (data.format: llava_json) of two tasks that ask the same
kind of question but want deliberately conflicting answer formats, for MoLE vs LoRA (issue 9):

    make_conflicting_formats.py --out DIR [--train 2000 --test 200 --seed 0]

    DIR/train.json, DIR/test.json   [{"id": "quiz-17", "task": "quiz", "answer_word": "red",
                                      "conversations": [{"from": "human", "value": PROMPT},
                                                        {"from": "gpt", "value": ANSWER}]}, ...]
                                     half of each split per task, interleaved in a seeded order

Every question: "which word is a <category>?" over three options drawn from five word categories
(colours, numbers, directions, states of matter, shapes; all whole words of the tiny test
tokenizer's corpus), exactly one option of the asked category, its position uniform.
  quiz  "Quiz: which word is a colour? (A) north (B) red (C) seven"  -> "The answer is red."
  tag   "Tag: which word is a colour? (A) north (B) red (C) seven"   -> "red"
The two tasks share the question distribution and the content of the answer (the option word of
the asked category); only the cue word ("Quiz:" / "Tag:") tells the format, and the formats
conflict from the first answer token on ("The answer is <word>." vs the bare lowercase word, no
period): one adapter of limited rank must learn both at once. (The option letter is not asked
for: naming the letter of the matching option is a two-hop lookup the tiny random test model does
not learn in a few hundred steps, which would hide the format effect behind chance content.) Prompts are single lines, so `mmtune chat` can be
scripted with them (scripts/experiments/mole_vs_lora.sh). Extra keys ("task", "answer_letter",
"answer_word") are ignored by the reader and used for scoring. Everything is a function of --seed.
"""
import argparse
import json
import os
import random

CATEGORIES = {
    "colour": ["red", "green", "blue", "yellow"],
    "number": ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
    "direction": ["north", "south", "east", "west"],
    "state of matter": ["solid", "liquid", "gas"],
    "shape": ["circle", "square", "triangle"],
}
TASKS = ("quiz", "tag")
LETTERS = "ABC"


def question(rng):
    """(category, [three option words], index of the right one)."""
    cats = list(CATEGORIES)
    asked = rng.choice(cats)
    others = rng.sample([c for c in cats if c != asked], 2)
    options = [rng.choice(CATEGORIES[asked])] + [rng.choice(CATEGORIES[c]) for c in others]
    rng.shuffle(options)
    right = next(i for i, w in enumerate(options) if w in CATEGORIES[asked])
    return asked, options, right


def sample(rng, task, n):
    cat, options, right = question(rng)
    article = "an" if cat[0] in "aeiou" else "a"
    opts = " ".join(f"({LETTERS[i]}) {w}" for i, w in enumerate(options))
    cue = "Quiz:" if task == "quiz" else "Tag:"
    prompt = f"{cue} which word is {article} {cat}? {opts}"
    letter, word = LETTERS[right], options[right]
    answer = f"The answer is {word}." if task == "quiz" else word
    return {"id": f"{task}-{n}", "task": task, "answer_letter": letter, "answer_word": word,
            "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]}


def split(rng, count, offset):
    items = [sample(rng, TASKS[i % 2], offset + i) for i in range(count)]
    rng.shuffle(items)
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--train", type=int, default=2000, help="training samples (half per task)")
    ap.add_argument("--test", type=int, default=200, help="test samples (half per task)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train = split(rng, args.train, 0)
    test = split(rng, args.test, args.train)
    seen = {s["conversations"][0]["value"] for s in train}
    overlap = sum(s["conversations"][0]["value"] in seen for s in test)
    for name, items in (("train", train), ("test", test)):
        with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(items, f, indent=1)
    print(f"{args.out}: train {len(train)}, test {len(test)} ({overlap} test prompts also in train), "
          f"tasks {', '.join(TASKS)}")


if __name__ == "__main__":
    main()
