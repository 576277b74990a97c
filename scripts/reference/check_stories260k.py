#!/usr/bin/env python3
"""Independent check of scripts/convert_llama2c.py: transformers must reproduce llama2.c's output.

  python scripts/reference/check_stories260k.py [--shared ../shared] [--keep DIR]

Converts ../shared/models/stories260K/stories260K.bin into a temporary Hugging Face directory, loads
it with transformers' LlamaForCausalLM (float32, CPU), generates greedily from BOS alone, decodes
the new tokens with sentencepiece (tok512.model) and compares the text byte for byte with
expected_greedy.txt, the output published with llama2.c. Exit 0 on a match; otherwise a diff, exit 1.

Token count: llama2.c's run loop with steps=200 samples a token at each of its 200 positions, so the
published text is 200 generated tokens after BOS (its SentencePiece encoding is exactly 200 ids);
199 tokens stop one word short ("so" instead of "so she"). EOS is disabled so nothing stops early.
A wrong wq/wk permutation, a swapped w1/w3 or a wrong norm eps changes the text within a few words.
The untied layout (negative vocab_size, classifier at the end of the file) is checked too, on a copy
of stories260K.bin rewritten that way with the embedding as its classifier: same text expected.
"""
import argparse
import difflib
import os
import struct
import subprocess
import sys
import tempfile

import sentencepiece as spm
import torch
from transformers import LlamaForCausalLM
from transformers.utils import logging as hf_logging

HERE = os.path.dirname(os.path.abspath(__file__))
NEW_TOKENS = 200


def convert(shared, out, untied=False):
    src = os.path.join(shared, "models", "stories260K")
    bin_path = os.path.join(src, "stories260K.bin")
    if untied:
        bin_path = untied_copy(bin_path, out + ".bin")
    cmd = [sys.executable, os.path.join(HERE, "..", "convert_llama2c.py"), bin_path,
           "--tokenizer", os.path.join(src, "tok512.model"), "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: convert_llama2c.py failed ({r.returncode}):\n{r.stdout}{r.stderr}")


def untied_copy(bin_path, out):
    """stories260K.bin with vocab_size negated and the embedding appended as the classifier."""
    with open(bin_path, "rb") as f:
        raw = f.read()
    header = list(struct.unpack_from("<7i", raw))
    dim, vocab = header[0], header[5]
    header[5] = -vocab
    with open(out, "wb") as f:
        f.write(struct.pack("<7i", *header) + raw[28:] + raw[28:28 + 4 * vocab * dim])
    return out


def greedy_ids(model_dir, untied=False):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    separate = model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    if separate != untied or model.config.tie_word_embeddings == untied:
        sys.exit(f"error: {model_dir}: lm_head {'separate' if separate else 'tied'}, "
                 f"tie_word_embeddings {model.config.tie_word_embeddings}; expected untied={untied}")
    # No EOS: the reference is a fixed number of tokens, and an early stop must show up as a diff.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    bos = torch.tensor([[model.config.bos_token_id]])
    with torch.no_grad():
        out = model.generate(bos, do_sample=False, max_new_tokens=NEW_TOKENS,
                             eos_token_id=None, attention_mask=torch.ones_like(bos))
    return out[0, 1:].tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared")),
                    help="the shared data directory (default: ../shared next to the repository)")
    ap.add_argument("--keep", help="convert into this directory and keep it (default: a temporary one)")
    args = ap.parse_args()
    hf_logging.disable_progress_bar()
    expected_path = os.path.join(args.shared, "models", "stories260K", "expected_greedy.txt")
    with open(expected_path, "rb") as f:
        expected = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.keep or os.path.join(tmp, "stories260K")
        convert(args.shared, model_dir)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
        ids = greedy_ids(model_dir)
        got = sp.decode(ids).encode("utf-8")
        convert(args.shared, os.path.join(tmp, "untied"), untied=True)
        untied_ids = greedy_ids(os.path.join(tmp, "untied"), untied=True)
    if len(ids) != NEW_TOKENS:
        print(f"generated {len(ids)} tokens, expected {NEW_TOKENS}", file=sys.stderr)
    if untied_ids != ids:
        print(f"the untied conversion generates other tokens:\n{untied_ids}\nvs tied\n{ids}", file=sys.stderr)
    if got == expected and len(ids) == NEW_TOKENS and untied_ids == ids:
        print(f"ok: {NEW_TOKENS} greedy tokens reproduce {expected_path} byte for byte (tied and untied layouts)")
        return 0
    diff = difflib.unified_diff(expected.decode("utf-8", "replace").splitlines(keepends=True),
                                got.decode("utf-8", "replace").splitlines(keepends=True),
                                fromfile="expected_greedy.txt", tofile="transformers greedy")
    sys.stdout.writelines(diff)
    print(f"\nMISMATCH: expected {len(expected)} bytes, got {len(got)}; ids: {ids}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
