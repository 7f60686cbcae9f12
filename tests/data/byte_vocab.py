#!/usr/bin/python3
"""Writes a vocabulary GGUF of GPT-2's first N tokens and no merges: byte-level BPE whose
tokens 0..93 are the bytes '!'..'~' one to one, for the HF reference cases, whose random
vocabularies are small (N = 99): their token ids can then be written as text.

    tests/data/byte_vocab.py N OUT.gguf

The last token (N - 1) is the end-of-sequence token, so the file says what ends a turn; pick
N past the ids a case generates."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from gguf import GGUFReader, GGUFWriter  # noqa: E402

VOCAB = os.path.join(os.environ.get("MM_VECTORS_DIR") or
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors"),
                     "tokenizer", "ggml-vocab-gpt-2.gguf")


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    r = GGUFReader(VOCAB)
    w = GGUFWriter(out, arch="vocab")
    w.add("tokenizer.ggml.model", "gpt2")
    w.add("tokenizer.ggml.pre", "gpt-2")
    w.add("tokenizer.ggml.tokens", r.kv["tokenizer.ggml.tokens"][:n], type="[str]")
    w.add("tokenizer.ggml.token_type", r.kv["tokenizer.ggml.token_type"][:n], type="[i32]")
    w.add("tokenizer.ggml.merges", [], type="[str]")
    w.add("tokenizer.ggml.eos_token_id", n - 1, type="u32")
    w.write()


if __name__ == "__main__":
    main()
