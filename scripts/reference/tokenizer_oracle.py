#!/usr/bin/env python3
"""Independent reference for mmtune's SentencePiece tokenizer: the `sentencepiece` Python package.

  python scripts/reference/tokenizer_oracle.py MODEL LINES.txt OUT.json

For every line of LINES.txt (UTF-8, newline-separated; the newline itself is not part of the line)
writes {"ids": encode(line), "text": decode(ids)} into a JSON list.
"""
import json
import sys

import sentencepiece as spm


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model, lines_path, out = sys.argv[1:4]
    sp = spm.SentencePieceProcessor(model_file=model)
    with open(lines_path, encoding="utf-8", newline="") as f:  # newline="": no \r\n translation
        lines = f.read().split("\n")
    result = []
    for line in lines:
        ids = sp.encode(line)
        result.append({"ids": ids, "text": sp.decode(ids)})
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
