#!/usr/bin/env python3
"""Writes a small synthetic data set in ScienceQA's official layout, for training and tests:

    make_synthetic_scienceqa.py --out DIR [--train 400 --val 100 --test 100 --seed 0 --image-size 64]
                                [--ordered-options]

    DIR/problems.json                  {pid: {question, choices, answer, hint, image, task, grade,
                                              subject, topic, category, skill, lecture, solution, split}}
    DIR/pid_splits.json                train, val, test, trainval, minitrain, minival, minitest
    DIR/images/<split>/<pid>/image.png for the problems with an image

Three kinds of question, so that a model must use the right input (ScienceQA's IMG / TXT / NO
categories):
  image (about half)   the answer is drawn in the picture: the colour of a big shape, which shape
                       it is, or how many dots there are. The question text is the same for every
                       picture of a family and the options are shuffled, so the text alone gives
                       chance accuracy.
  hint  (about 40 %)   the hint states two facts of one kind about made-up names (capitals of
                       invented countries, words of an invented language, weights of invented
                       animals, temperatures of invented towns); the question asks about one of
                       them, the other fact's value is among the options.
  none  (about 10 %)   answerable from the question (sums, first letters, weekdays).
Subjects (natural / social / language science), grades (grade1..grade12), topics, categories,
skills, lectures (with newlines, as the real ones) and solutions are filled so that category tables
work. Pictures are RGB PNGs of solid shapes in six distinct colours on white, legible after a
resize to 32 x 32. Everything is a function of --seed (Python's random.Random; Pillow's PNG writer).

--ordered-options lists every question's options in a fixed order (numbers ascending, words
alphabetically), as printed tests often do, instead of shuffled. The problems, pictures and answers
stay the same (the random stream is unchanged), and the text alone still gives chance accuracy,
but a model no longer has to bind each option's text to its letter. scripts/demo.sh uses it,
because a 260K-parameter LM cannot learn that binding in a few CPU minutes.
"""
import argparse
import json
import os
import random
import sys

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 200, 0),
    "purple": (140, 40, 180),
    "orange": (250, 130, 0),
}
SHAPES = ["circle", "square", "triangle", "cross"]
SUBJECTS = ["natural science", "social science", "language science"]
SYLLABLES = ["ka", "lo", "mi", "zur", "ven", "tal", "bri", "sa", "dor", "ple", "nix", "qua", "rem",
             "vos", "tel", "gan", "fro", "lus", "mek", "ori", "pan", "sil", "tuv", "yal"]
NOUNS = ["river", "mountain", "bread", "window", "friend", "winter", "garden", "candle", "boat",
         "cloud", "stone", "apple"]
WORDS = ["apple", "banana", "cherry", "dog", "egg", "fish", "goat", "house", "ice", "jam", "kite",
         "lamp", "moon", "nest", "owl", "pig", "queen", "rain", "sun", "tree", "umbrella", "van",
         "water", "yak", "zebra"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def made_up(rng, syllables=2):
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


def distinct_names(rng, n, syllables=2):
    names = []
    while len(names) < n:
        name = made_up(rng, syllables)
        if name not in names:
            names.append(name)
    return names


def options(rng, answer, distractors):
    """Shuffled choices and the answer's index."""
    choices = [answer] + list(distractors)
    rng.shuffle(choices)
    return choices, choices.index(answer)


# ---- pictures ---------------------------------------------------------------------------------

def draw_shape(draw, shape, box, fill):
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    else:  # cross: two bars a third of the box wide
        w = (x1 - x0) / 3
        draw.rectangle((x0 + w, y0, x1 - w, y1), fill=fill)
        draw.rectangle((x0, y0 + w, x1, y1 - w), fill=fill)


def one_shape_picture(rng, size, shape, colour):
    img = Image.new("RGB", (size, size), (255, 255, 255))
    side = size * rng.uniform(0.6, 0.75)
    x0 = rng.uniform(0.05 * size, size - side - 0.05 * size)
    y0 = rng.uniform(0.05 * size, size - side - 0.05 * size)
    draw_shape(ImageDraw.Draw(img), shape, (x0, y0, x0 + side, y0 + side), COLOURS[colour])
    return img


def dots_picture(rng, size, count):
    """`count` dots in distinct cells of a 2 x 2 grid, one colour."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    fill = COLOURS[rng.choice(list(COLOURS))]
    cell = size / 2
    r = size * 0.16
    for c in rng.sample(range(4), count):
        cx = (c % 2 + 0.5) * cell + rng.uniform(-0.05, 0.05) * size
        cy = (c // 2 + 0.5) * cell + rng.uniform(-0.05, 0.05) * size
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    return img


# ---- question families ------------------------------------------------------------------------
# Each returns (fields, picture or None); fields hold question, choices, answer, hint, subject,
# topic, category, skill, lecture, solution.

def q_colour(rng, size):
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    choices, answer = options(rng, colour, rng.sample([c for c in COLOURS if c != colour], 3))
    return dict(
        question="What colour is the shape in the picture?", choices=choices, answer=answer, hint="",
        subject=rng.choice(SUBJECTS), topic="visual perception", category="Colours",
        skill="Identify the colour of a shape",
        lecture="Objects reflect light of different colours.\nTo name a colour, look at the picture.",
        solution=f"Look at the picture. The {shape} is {colour}."), one_shape_picture(rng, size, shape, colour)


def q_shape(rng, size):
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    choices, answer = options(rng, shape, rng.sample([s for s in SHAPES if s != shape], 2))
    return dict(
        question="Which shape is shown in the picture?", choices=choices, answer=answer, hint="",
        subject=rng.choice(SUBJECTS), topic="geometry", category="Shapes",
        skill="Identify two-dimensional shapes",
        lecture="A circle is round. A square has four equal sides.\n"
                "A triangle has three sides. A cross has four arms.",
        solution=f"Look at the picture. The shape is a {shape}."), one_shape_picture(rng, size, shape, colour)


def q_count(rng, size):
    count = rng.randint(1, 4)
    choices, answer = options(rng, str(count), [str(n) for n in range(1, 5) if n != count])
    return dict(
        question="How many dots are there in the picture?", choices=choices, answer=answer, hint="",
        subject=rng.choice(SUBJECTS), topic="counting", category="Counting",
        skill="Count objects in a picture",
        lecture="To count objects, point to each one once.\nThe last number you say is how many there are.",
        solution=f"Count the dots in the picture. There are {count}."), dots_picture(rng, size, count)


def q_capital(rng):
    countries, cities = distinct_names(rng, 2), distinct_names(rng, 3)
    hint = f"The capital of {countries[0]} is {cities[0]}. The capital of {countries[1]} is {cities[1]}."
    choices, answer = options(rng, cities[0], cities[1:])
    return dict(
        question=f"What is the capital of {countries[0]}?", choices=choices, answer=answer, hint=hint,
        subject="social science", topic="geography", category="Geography",
        skill="Read facts about places from a text",
        lecture="A capital is the city where a country's government meets.\nEach country has one capital.",
        solution=f"The text says that the capital of {countries[0]} is {cities[0]}."), None


def q_word(rng):
    language = made_up(rng) + "ish"
    words = [w.lower() for w in distinct_names(rng, 2)]
    meanings = rng.sample(NOUNS, 3)
    hint = (f"In {language}, the word '{words[0]}' means {meanings[0]} "
            f"and the word '{words[1]}' means {meanings[1]}.")
    choices, answer = options(rng, meanings[0], meanings[1:])
    return dict(
        question=f"What does the {language} word '{words[0]}' mean?", choices=choices, answer=answer,
        hint=hint, subject="language science", topic="vocabulary", category="Word meaning",
        skill="Use a text to find what a word means",
        lecture="Every language has its own words.\nA text can tell you what a word means.",
        solution=f"The text says that '{words[0]}' means {meanings[0]}."), None


def q_heavier(rng):
    animals = [n.lower() for n in distinct_names(rng, 2, 3)]
    weights = sorted(rng.sample(range(2, 90), 2))
    if rng.random() < 0.5:
        weights.reverse()
    hint = f"A {animals[0]} weighs {weights[0]} kilograms. A {animals[1]} weighs {weights[1]} kilograms."
    heavier = animals[0] if weights[0] > weights[1] else animals[1]
    choices, answer = options(rng, heavier, [a for a in animals if a != heavier])
    return dict(
        question="Which animal is heavier?", choices=choices, answer=answer, hint=hint,
        subject="natural science", topic="biology", category="Animals",
        skill="Compare the weights of animals",
        lecture="Weight tells how heavy something is.\nA larger number of kilograms means a heavier object.",
        solution=f"The {heavier} weighs more kilograms, so it is heavier."), None


def q_warmer(rng):
    towns = distinct_names(rng, 2)
    temps = sorted(rng.sample(range(-5, 35), 2))
    if rng.random() < 0.5:
        temps.reverse()
    day = rng.choice(DAYS)
    hint = f"On {day}, it was {temps[0]} degrees Celsius in {towns[0]} and {temps[1]} degrees Celsius in {towns[1]}."
    warmer = towns[0] if temps[0] > temps[1] else towns[1]
    choices, answer = options(rng, warmer, [t for t in towns if t != warmer])
    return dict(
        question=f"Which town was warmer on {day}?", choices=choices, answer=answer, hint=hint,
        subject="natural science", topic="earth science", category="Weather and climate",
        skill="Compare temperatures",
        lecture="Temperature tells how hot or cold something is.\nA higher temperature means warmer air.",
        solution=f"{warmer} had the higher temperature, so it was warmer."), None


def q_sum(rng):
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    wrong = rng.sample([n for n in range(2, 19) if n != a + b], 3)
    choices, answer = options(rng, str(a + b), [str(n) for n in wrong])
    return dict(
        question=f"What is {a} + {b}?", choices=choices, answer=answer, hint="",
        subject="natural science", topic="units and measurement", category="Arithmetic",
        skill="Add two numbers", lecture="To add, count on from the first number.\n",
        solution=f"{a} + {b} = {a + b}."), None


def q_letter(rng):
    words = rng.sample(WORDS, 3)
    letter = words[0][0].upper()
    choices, answer = options(rng, words[0], words[1:])
    return dict(
        question=f"Which word starts with the letter {letter}?", choices=choices, answer=answer, hint="",
        subject="language science", topic="phonological awareness", category="Letters",
        skill="Find the first letter of a word", lecture="A word is made of letters.\nThe first letter comes first.",
        solution=f"'{words[0]}' starts with {letter}."), None


def q_weekday(rng):
    i = rng.randrange(7)
    nxt = DAYS[(i + 1) % 7]
    choices, answer = options(rng, nxt, rng.sample([d for d in DAYS if d not in (DAYS[i], nxt)], 2))
    return dict(
        question=f"Which day comes after {DAYS[i]}?", choices=choices, answer=answer, hint="",
        subject="social science", topic="calendar", category="Days of the week",
        skill="Order the days of the week", lecture="A week has seven days.\nSunday comes after Saturday.",
        solution=f"{nxt} comes after {DAYS[i]}."), None


IMAGE_FAMILIES = [q_colour, q_shape, q_count]
HINT_FAMILIES = [q_capital, q_word, q_heavier, q_warmer]
PLAIN_FAMILIES = [q_sum, q_letter, q_weekday]


def in_order(choices, answer):
    """The choices sorted (numbers by value, words alphabetically) and the answer's new index."""
    ordered = sorted(choices, key=lambda c: (0, int(c), "") if c.isdigit() else (1, 0, c))
    return ordered, ordered.index(choices[answer])


def make_problem(rng, size, split, ordered=False):
    r = rng.random()
    if r < 0.5:
        fields, picture = rng.choice(IMAGE_FAMILIES)(rng, size)
    elif r < 0.9:
        fields, picture = rng.choice(HINT_FAMILIES)(rng)
    else:
        fields, picture = rng.choice(PLAIN_FAMILIES)(rng)
    if ordered:
        fields["choices"], fields["answer"] = in_order(fields["choices"], fields["answer"])
    problem = {
        "question": fields["question"],
        "choices": fields["choices"],
        "answer": fields["answer"],
        "hint": fields["hint"],
        "image": "image.png" if picture is not None else None,
        "task": "closed choice",
        "grade": f"grade{rng.randint(1, 12)}",
        "subject": fields["subject"],
        "topic": fields["topic"],
        "category": fields["category"],
        "skill": fields["skill"],
        "lecture": fields["lecture"],
        "solution": fields["solution"],
        "split": split,
    }
    return problem, picture


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=64, help="pictures are SIZE x SIZE pixels")
    ap.add_argument("--ordered-options", action="store_true",
                    help="options in a fixed order (numbers ascending, words alphabetically), not shuffled")
    args = ap.parse_args()
    if min(args.train, args.val, args.test) < 0:
        sys.exit("error: --train, --val and --test must be >= 0")
    if args.image_size < 16:
        sys.exit("error: --image-size must be at least 16")

    rng = random.Random(args.seed)
    counts = {"train": args.train, "val": args.val, "test": args.test}
    labels = [s for s, n in counts.items() for _ in range(n)]
    rng.shuffle(labels)  # splits interleave over the pids, as in the real data
    problems, splits = {}, {s: [] for s in counts}
    for i, split in enumerate(labels):
        pid = str(i + 1)
        problem, picture = make_problem(rng, args.image_size, split, args.ordered_options)
        problems[pid] = problem
        splits[split].append(pid)
        if picture is not None:
            folder = os.path.join(args.out, "images", split, pid)
            os.makedirs(folder, exist_ok=True)
            picture.save(os.path.join(folder, "image.png"), format="PNG")
    splits["trainval"] = splits["train"] + splits["val"]
    for s in counts:  # a tenth of each split, at least one pid when the split has any
        n = len(splits[s])
        mini = rng.sample(range(n), max(1, n // 10)) if n else []
        splits["mini" + s] = [splits[s][k] for k in sorted(mini)]

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "problems.json"), "w", encoding="utf-8") as f:
        json.dump(problems, f, indent=1)
    with open(os.path.join(args.out, "pid_splits.json"), "w", encoding="utf-8") as f:
        json.dump(splits, f, indent=1)
    n_img = sum(p["image"] is not None for p in problems.values())
    n_hint = sum(bool(p["hint"]) for p in problems.values())
    print(f"wrote {len(problems)} problems ({n_img} with an image, {n_hint} with a hint, "
          f"{len(problems) - n_img - n_hint} with neither) to {args.out}")


if __name__ == "__main__":
    main()
