#!/usr/bin/env python3
"""Writes a small synthetic referring-expression grounding set in the RefCOCO-style JSONL layout
that `mmtune eval --task grounding` reads (include/mmtune/eval/grounding.h):

    make_synthetic_grounding.py --out DIR [--train 2000 --val 100 --test 200 --seed 0 --image-size 32]

    DIR/{train,val,test}.jsonl   one object a line: {"id": "g12", "image": "g12.png",
                                 "expression": "the red circle", "box": [x1, y1, x2, y2]}
    DIR/images/g12.png

Each picture (white, square) holds 2 or 3 solid shapes of distinct colours, each in its own
quadrant (filling 75-100 % of its side, placed at random inside it), drawn with
make_synthetic_scienceqa.py's palette and shapes. The expression names one of them by colour and
shape ("the red circle"); its box is the shape's bounding box, normalised to [0, 1] (the picture
is square, so no padding). The referred shape is uniform over the shapes present, so the text
alone cannot locate it. Train the grounding workflow on LLaVA conversations made from it
(scripts/grounding_to_llava.py) and score with `mmtune eval --task grounding --data DIR/test.jsonl`.
Everything is a function of --seed.
"""
import argparse
import json
import os
import random
import sys

from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_synthetic_scienceqa import COLOURS, SHAPES, draw_shape  # noqa: E402


def make_item(rng, size, index):
    half = size // 2
    quadrants = rng.sample([(0, 0), (half, 0), (0, half), (half, half)], rng.choice([2, 3]))
    colours = rng.sample(sorted(COLOURS), len(quadrants))
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    objects = []
    for (qx, qy), colour in zip(quadrants, colours):
        side = rng.randint(max(2, (3 * half + 3) // 4), half)  # pixels
        x0 = qx + rng.randint(0, half - side)
        y0 = qy + rng.randint(0, half - side)
        shape = rng.choice(SHAPES)
        # PIL boxes are inclusive: the shape covers pixels x0 .. x0 + side - 1
        draw_shape(draw, shape, (x0, y0, x0 + side - 1, y0 + side - 1), COLOURS[colour])
        box = [round(x0 / size, 4), round(y0 / size, 4), round((x0 + side) / size, 4), round((y0 + side) / size, 4)]
        objects.append((f"the {colour} {shape}", box))
    expression, box = rng.choice(objects)
    gid = f"g{index}"
    return {"id": gid, "image": f"{gid}.png", "expression": expression, "box": box}, img


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=32, help="pictures are SIZE x SIZE pixels (even, >= 8)")
    args = ap.parse_args()
    if min(args.train, args.val, args.test) < 0:
        sys.exit("error: --train, --val and --test must be >= 0")
    if args.image_size < 8 or args.image_size % 2:
        sys.exit("error: --image-size must be even and at least 8")
    rng = random.Random(args.seed)
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    index = 0
    for split, n in (("train", args.train), ("val", args.val), ("test", args.test)):
        tmp = os.path.join(args.out, f"{split}.jsonl.tmp")
        with open(tmp, "w") as f:
            for _ in range(n):
                index += 1
                item, img = make_item(rng, args.image_size, index)
                img.save(os.path.join(args.out, "images", item["image"]))
                f.write(json.dumps(item) + "\n")
        os.replace(tmp, os.path.join(args.out, f"{split}.jsonl"))
    print(f"wrote {args.out}: {args.train} train / {args.val} val / {args.test} test")


if __name__ == "__main__":
    main()
