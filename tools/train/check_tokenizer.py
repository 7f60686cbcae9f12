#!/usr/bin/python3
"""Checks tokenizer.py against llama.cpp and the grammar.

    /usr/bin/python3 tools/train/check_tokenizer.py [VOCAB_DIR]   (default tests/vectors/tokenizer)
1. spm_encode on llama.cpp's own vocab test (ggml-vocab-llama-spm.gguf + .inp/.out, token ids
   that llama.cpp produced) must give exactly llama.cpp's ids;
2. with our vocabulary, every grammar word (after a space) is one token, and decode(encode(x)) == x
   for every question, answer and caption of 200 scenes.
Needs tools/gguf.py (GGUF reader).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, ".."))
from gguf import GGUFReader  # noqa: E402  tools/gguf.py

import numpy as np  # noqa: E402

import scenes  # noqa: E402
import tokenizer as tk  # noqa: E402


def check_llama_cpp(folder):
    r = GGUFReader(os.path.join(folder, "ggml-vocab-llama-spm.gguf"))
    pieces, scores = r.kv["tokenizer.ggml.tokens"], r.kv["tokenizer.ggml.scores"]
    ids = {p: i for i, p in enumerate(pieces)}
    with open(os.path.join(folder, "ggml-vocab-llama-spm.gguf.inp"), encoding="utf-8") as f:
        inputs = f.read().split("\n__ggml_vocab_test__\n")
    with open(os.path.join(folder, "ggml-vocab-llama-spm.gguf.out")) as f:
        expected = [[int(x) for x in line.split()] for line in f.read().split("\n")]
    bad = 0
    for text, want in zip(inputs, expected):
        got = tk.spm_encode(text, ids, scores)
        if got != want:
            bad += 1
            print(f"  MISMATCH {text!r}: llama.cpp {want}, ours {got}")
    print(f"llama.cpp vocab test: {len(inputs) - bad} of {len(inputs)} strings match")
    return bad == 0 and len(inputs) == len(expected)


def check_grammar():
    vocab = tk.Vocab.build()
    ok = True
    for w in tk.grammar_words():
        if len(vocab.encode(w)) != 1:
            ok = False
            print(f"  word {w!r} is not one token: {vocab.encode(w)}")
    n = 0
    for i in range(200):
        s = scenes.scene_at(7, i)
        rng = np.random.default_rng(i)
        texts = [scenes.caption(s)] + [x for t in scenes.QUESTION_TYPES
                                       for x in scenes.questions_of_type(s, t, rng)]
        for text in texts:
            n += 1
            ids = vocab.encode(text)
            if vocab.decode(ids) != text or any(vocab.types[t] == tk.TYPE_BYTE for t in ids):
                ok = False
                print(f"  {text!r} -> {[vocab.pieces[t] for t in ids]}")
    print(f"grammar: {len(tk.grammar_words())} words one token each, {n} texts round-trip "
          f"without byte fallback: {'ok' if ok else 'FAIL'}")
    return ok


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "vectors", "tokenizer")
    ok = check_llama_cpp(folder) & check_grammar()
    print("ALL OK" if ok else "SOME FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
