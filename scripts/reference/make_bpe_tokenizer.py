#!/usr/bin/env python3
"""A tiny Llama-3-style tokenizer.json: byte-level BPE trained with the Hugging Face `tokenizers` library.

  python scripts/reference/make_bpe_tokenizer.py OUT_DIR [--vocab 2000]

Everything but the vocabulary (2000 trained tokens plus 48 frequent words reachable only through
`ignore_merges`) is Llama-3's (Meta-Llama-3-8B-Instruct tokenizer.json): the Split
pre-tokenizer regex followed by ByteLevel(use_regex=False), the ByteLevel decoder, the post-processor
Sequence[ByteLevel, TemplateProcessing("<|begin_of_text|> $A")], `ignore_merges: true`, no
normalizer, and the 256 special tokens in Llama-3.0's order (<|begin_of_text|>, <|end_of_text|>,
reserved 0-3, <|start_header_id|>, <|end_header_id|>, reserved 4, <|eot_id|>, reserved 5-250) placed
right after the BPE vocabulary. OUT_DIR also gets tokenizer_config.json as Meta ships it for the
instruct model (bos <|begin_of_text|>, eos <|eot_id|>, the Llama-3 chat template). The training text
is generated (seeded) and multilingual: English with contractions, accented Latin, Greek, Cyrillic,
CJK, Korean, Arabic, emoji, digits, code, whitespace runs and newlines.
make_tiny_checkpoints.py calls make_bpe_tokenizer() for build/tiny/bpe.
"""
import argparse
import json
import os
import random

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Llama-3.0's 256 special tokens, ids vocab..vocab+255 (128000..128255 in the real one).
SPECIALS = (["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(4)] +
            ["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"] +
            [f"<|reserved_special_token_{i}|>" for i in range(5, 251)])
CHAT_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                 "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
                 "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                 "{{ content }}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

WORDS = ("the a an of to and in is was it for on with as by at from that this which what science question "
         "answer context options image lecture solution because cell plant animal energy force magnet water "
         "rock map state capital ocean weather word sentence verb noun choose select figure speech solid liquid "
         "gas north south east west red green blue yellow circle square triangle").split()
CONTRACTIONS = ["it's", "don't", "we're", "they've", "I'm", "you'll", "she'd", "IT'S", "DON'T", "We'Re"]
FOREIGN = ["Grüße", "München", "naïve", "café", "Straße", "Ångström", "façade", "señor", "Øresund", "Ελλάδα",
           "μέγα", "привет", "мир", "水是液体", "温度", "中文文本", "日本語", "ひらがな", "カタカナ", "한국어", "안녕하세요",
           "العربية", "עברית", "हिन्दी", "ไทย", "Tiếng Việt"]
SYMBOLS = ["🙂", "🚀", "✨", "👩‍👩‍👧", "🇩🇪", "❤️", "°C", "€", "½", "x²", "→", "…", "—", "«»", "“quoted”"]
CODE = ["for (int i = 0; i < n; ++i) {", "    return x;", "}", "def f(x):", "\tif x:", "a_b->c[0] = 42;",
        "#include <map>", "SELECT * FROM t;", "{\"key\": [1, 2, 3]}", "<a href=\"x\">y</a>"]


def corpus(n_lines=6000, seed=0):
    rng = random.Random(seed)
    for i in range(n_lines):
        parts = []
        for _ in range(rng.randint(3, 16)):
            r = rng.random()
            if r < 0.55:
                parts.append(rng.choice(WORDS))
            elif r < 0.65:
                parts.append(rng.choice(CONTRACTIONS))
            elif r < 0.8:
                parts.append(rng.choice(FOREIGN))
            elif r < 0.87:
                parts.append(rng.choice(SYMBOLS))
            elif r < 0.95:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 7))))
            else:
                parts.append(rng.choice(CODE))
        sep = rng.choice([" "] * 8 + ["  ", "\t", "\n", " \n", "\n\n"])
        line = sep.join(parts)
        if i % 3 == 0:
            line = line.capitalize() + rng.choice([".", "!", "?", ",", ":", ""])
        yield line + ("\n" if i % 4 else "\r\n")


def add_unmerged_words(tok, n=48):
    """Adds the n most frequent corpus words that the merges split to the vocabulary, without merges.

    A trained vocabulary has a merge path to every token, so `ignore_merges` would change nothing;
    Llama-3's has entries that its merges do not reach the same way (hence the flag). These words
    encode to one token only through the whole-word lookup.
    """
    counts = {}
    for line in corpus():
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(line):
            counts[word] = counts.get(word, 0) + 1
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    split = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
             if w not in vocab and len(tok.model.tokenize(w)) > 1]
    wordy = [w for w in split if any(c.isalpha() for c in tok.decoder.decode([w]))]  # letters, not numbers
    words = wordy[:n // 2]
    words += [w for w in split if w not in words][:n - len(words)]
    for w in words:
        vocab[w] = len(vocab)
    return Tokenizer.from_str(json.dumps(data))


def make_bpe_tokenizer(out_dir, vocab_size=2000):
    """Trains the tokenizer and writes OUT_DIR/tokenizer.json and tokenizer_config.json."""
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok = add_unmerged_words(tok)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A:0 <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    data = json.loads(tok.to_str())
    data["model"]["ignore_merges"] = True  # as in Llama-3 (the trainer keeps it; be explicit)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": CHAT_TEMPLATE,
                   "clean_up_tokenization_spaces": False, "model_input_names": ["input_ids", "attention_mask"],
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, ensure_ascii=False, indent=2)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=2000)
    args = ap.parse_args()
    path = make_bpe_tokenizer(args.out, args.vocab)
    print(f"{path}: {Tokenizer.from_file(path).get_vocab_size()} tokens")


if __name__ == "__main__":
    main()
