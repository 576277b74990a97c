#!/usr/bin/env python3
"""Independent reference for mmtune's byte-level BPE tokenizer: transformers' PreTrainedTokenizerFast.

  python scripts/reference/bpe_tokenizer_oracle.py TOKENIZER_DIR OUT.json [--scienceqa PROBLEMS.json]

TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json (make_bpe_tokenizer.py). Writes OUT.json:
  lines   [{"text", "pieces", "ids", "ids_bos", "decoded"}]: seeded test lines (hand-written edge
          cases, the ScienceQA texts when given, and synthetic multilingual lines with emoji,
          combining marks, digit, whitespace and newline runs, contractions, special tokens);
          pieces = the Split pre-tokenizer alone (the regex), ids = encode without special tokens,
          ids_bos = with them (<|begin_of_text|>), decoded = decode(ids, skip_special_tokens=True)
  random  [{"ids", "decoded"}]: random id sequences (broken UTF-8, specials, ids past the vocab)
  chats   [{"messages", "add_generation_prompt", "ids"}]: apply_chat_template (Llama-3 instruct)
  bos_id, eos_id, vocab_size
"""
import argparse
import json
import os
import random

from tokenizers import Regex, pre_tokenizers
from transformers import PreTrainedTokenizerFast

EDGE = [
    "", " ", "  ", "\n", "\r\n", "\n\n", "\t", " \t \n", "a", "Hello world!", "  two  spaces  ", "trailing   ",
    "   leading", "  \n\n  x", " \r\n \t\nx", "x\n", "x \n y", "x\r\ry", "a\u3000\u3000b", "a\u00a0b", "a\x85b",
    "a\x0b\x0cb", "a\u2028b\u2029c", "it's", "IT'S", "We'Re", "they've", "I'M", "you'll", "YOU'LL", "he'd",
    "x'ſ", "x'ſt", "x'K", "'s", "''s", "'", "x'", "don't", "o'clock", "rock'n'roll", "’s", "it’s",
    "12345678", "1,234,567.89", "3.14159", "x²+y²=z²", "½ ⅓ Ⅻ", "１２３４", "٣٤٥", "v1.2.3-rc4",
    "Straße, Größe, Übermaß, schön", "naïve café", "e\u0301t\u00e9", "a\u0301\u0302b", "中文：水是液体。",
    "日本語のテキスト", "한국어 텍스트", "Ελληνικά", "русский язык", "العربية", "עברית", "हिन्दी", "ไทย",
    "emoji 👩‍👩‍👧 🇩🇪 ❤️", "🙂🙂🙂", "🚀✨", "x\U00031350y", "\U00011f04\U0001e030", "\u1c89",
    "for (int i = 0; i < n; ++i) { x[i] = y[i] * 2; }", "    return {a: b, **kw}  # noqa",
    "<a href=\"x?y=1&amp;z=2\">link</a>", "SELECT * FROM t WHERE c = 'ü';", "$$$ %%% ^^^", "...!!!???",
    "--\n--\n", "a,\nb", "!\r\n", " !\n\n", "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|><|eot_id|>",
    "hi<|eot_id|>there", "hi <|eot_id|> there", "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<|eot_id", "<|unknown|>", "<|reserved_special_token_250|>", "<|reserved_special_token_251|>",
    "<<|eot_id|>>", "<|begin_of_text|>x<|end_of_text|>", "\x00\x01\x7f", "\ufeffBOM", "\ufffd",
]
BITS = ["水是液体", "温度", "Grüße", "naïve", "café", "Ωμέγα", "привет", "🙂", "🚀✨", "x²+y²", "12345", "3.14159",
        "(A)", "BECAUSE:", "Response:", "ÆØÅ", "日本語のテキスト", "한국어", "עברית", "العربية", "e\u0301",
        "\u00a0nbsp", "if (x) {", "return y;", "a_b->c[0]", "#include <map>", "Äpfel", "Öl", "it's", "DON'T",
        "we'VE", "I'm", "she'll", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>",
        "<|reserved_special_token_7|>", "...", "—", "“quote”", "«guillemets»", "$100", "50%", "C++", "e.g.",
        "Mr.", "U.S.A.", "ǅ", "ﬁ", "Ǆ", "ß", "ẞ", "İstanbul", "ǈ", "ⓐ", "①②", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "🇯🇵", "👍🏽"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\n ", "\t\n", "\u3000", "\u00a0", "\x0b", "\x0c",
          "\u2028", "\x85", "\r", "    \n\n    "]
BLOCKS = [(0x20, 0x7e), (0xa0, 0x17f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
          (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff), (0x2000, 0x206f), (0x2070, 0x218f), (0x2190, 0x23ff),
          (0x2460, 0x24ff), (0x3000, 0x30ff), (0x4e00, 0x4fff), (0xac00, 0xad00), (0xff00, 0xffef),
          (0x1f300, 0x1f64f), (0x1f900, 0x1f9ff), (0x1d400, 0x1d4ff), (0x20000, 0x2007f), (0x31350, 0x31360)]


def scienceqa_texts(path):
    with open(path, encoding="utf-8") as f:
        problems = json.load(f)
    out = []
    for p in problems.values():
        out.append(p["question"])
        for key in ("hint", "lecture", "solution"):
            if isinstance(p.get(key), str) and p[key]:
                out.append(p[key])
        out.append(" ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(p["choices"])))
    return out


def synthetic(rng, n):
    lines = []
    for k in range(n):
        parts = []
        for _ in range(rng.randint(1, 10)):
            r = rng.random()
            if r < 0.45:
                parts.append(rng.choice(BITS))
            elif r < 0.65:
                lo, hi = rng.choice(BLOCKS)
                parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
            elif r < 0.8:
                parts.append("".join(rng.choice(SPACES) for _ in range(rng.randint(1, 3))))
            elif r < 0.9:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
            else:
                parts.append("'" + rng.choice(["s", "S", "t", "re", "RE", "Ve", "m", "ll", "lL", "d", "x", "ſ"]))
        lines.append("".join(p + rng.choice(["", " ", " ", "  ", "\n"]) for p in parts))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tokenizer_dir")
    ap.add_argument("out")
    ap.add_argument("--scienceqa", help="ScienceQA problems.json whose texts join the lines")
    args = ap.parse_args()
    tok = PreTrainedTokenizerFast.from_pretrained(args.tokenizer_dir)
    with open(os.path.join(args.tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        pattern = json.load(f)["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    split = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
    rng = random.Random(8)

    texts = list(EDGE) + (scienceqa_texts(args.scienceqa) if args.scienceqa else []) + synthetic(rng, 1200)
    lines = []
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        lines.append({"text": text, "pieces": [p for p, _ in split.pre_tokenize_str(text)], "ids": ids,
                      "ids_bos": tok(text)["input_ids"], "decoded": tok.decode(ids, skip_special_tokens=True)})

    vocab = len(tok)
    specials = tok.all_special_ids + [tok.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|start_header_id|>")]
    randoms = []
    for _ in range(400):
        ids = []
        for _ in range(rng.randint(1, 24)):
            r = rng.random()
            ids.append(rng.randrange(256) if r < 0.5 else rng.choice(specials) if r < 0.6 else
                       rng.randrange(vocab + 20))
        randoms.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})

    chats = []
    conversations = [
        [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "  What is 2+2?  "}],
        [{"role": "system", "content": "Sys"}, {"role": "user", "content": "Hi!\nHow's it going?"},
         {"role": "assistant", "content": " Fine, thanks. 🙂 "}],
        [{"role": "system", "content": "Answer with a letter."}, {"role": "user", "content": "水是液体吗？\n(A) 是 (B) 否"},
         {"role": "assistant", "content": "A"}, {"role": "user", "content": "And ice?"},
         {"role": "assistant", "content": "B, because it's solid."}],
        [{"role": "system", "content": "x"}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
         {"role": "user", "content": "q2\n\n"}],
    ]
    for messages in conversations:
        gen = messages[-1]["role"] == "user"
        ids = tok.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        chats.append({"messages": messages, "add_generation_prompt": gen, "ids": list(ids)})

    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"lines": lines, "random": randoms, "chats": chats, "bos_id": tok.bos_token_id,
                   "eos_id": tok.eos_token_id, "vocab_size": vocab}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
