"""A llama.cpp SentencePiece-style ('llama') vocabulary for the scene grammar, and its tokenizer.

Vocabulary layout (ids):
    0 <unk> (type 2), 1 <s> (BOS, type 3), 2 </s> (EOS, type 3),
    3..258 byte tokens <0x00>..<0xFF> (type 6),
    then normal pieces (type 1): '▁', single printable ASCII characters, and every word of the
    grammar with and without the '▁' space marker together with all its prefixes (so the merges
    can reach the whole word),
    then the control tokens <image> (LLaVA's image placeholder), <|startoftext|> and
    <|endoftext|> (CLIP text tower's BOS/EOS; the EOS is the largest id, so HF's two CLIP pooling
    rules, first EOS and argmax id, pick the same position).

Tokenization is llama.cpp's SPM algorithm: replace ' ' by '▁', prepend '▁', split into UTF-8
characters, then repeatedly merge the adjacent pair whose concatenation is a vocab piece with the
highest score (ties: leftmost); every final symbol not in the vocab becomes its bytes' <0xNN> tokens.
"""
import heapq
import json

import scenes

SPACE = "\u2581"
UNK, BOS, EOS = 0, 1, 2
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_BYTE = 1, 2, 3, 6


def grammar_words():
    """Every word the scene grammar and the prompt template use (punctuation split off)."""
    words = set()
    texts = ["USER: ASSISTANT:", "Describe the image.", "What is in the image?",
             "How many objects are there?", "What colour is the object at the",
             "What shape is at the", "Where is the", "Is there a an anything at the",
             "a big small at the and", " ".join(scenes.NUMBERS), "yes no"]
    texts += scenes.SHAPES + list(scenes.PLURALS.values()) + list(scenes.COLOURS)
    texts += scenes.POSITIONS + list(scenes.SIZES)
    for t in texts:
        for w in t.replace(",", " ").replace("?", " ").replace(".", " ").split():
            words.add(w)
    return sorted(words)


class Vocab:
    def __init__(self, pieces, scores, types):
        self.pieces, self.scores, self.types = pieces, scores, types
        self.ids = {p: i for i, p in enumerate(pieces)}
        self.image_id = self.ids["<image>"]
        self.clip_bos = self.ids["<|startoftext|>"]
        self.clip_eos = self.ids["<|endoftext|>"]

    def __len__(self):
        return len(self.pieces)

    @classmethod
    def build(cls):
        pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
        types = [TYPE_UNKNOWN, TYPE_CONTROL, TYPE_CONTROL] + [TYPE_BYTE] * 256
        normal = [SPACE] + [chr(c) for c in range(33, 127)]
        for w in grammar_words():
            for form in (SPACE + w, w):
                normal += [form[:k] for k in range(2, len(form) + 1)]
        seen = set()
        normal = [p for p in normal if not (p in seen or seen.add(p))]
        # Longer pieces score higher. Within a grammar word only its prefixes can merge, so any
        # scores reach the whole word; length-ordered scores also make unknown words split into
        # the longest known prefix first.
        scores = [0.0] * len(pieces) + [float(len(p)) for p in normal]
        pieces += normal
        types += [TYPE_NORMAL] * len(normal)
        for p in ["<image>", "<|startoftext|>", "<|endoftext|>"]:
            pieces.append(p)
            scores.append(0.0)
            types.append(TYPE_CONTROL)
        return cls(pieces, scores, types)

    def save(self, path):
        with open(path, "w") as f:
            json.dump({"pieces": self.pieces, "scores": self.scores, "types": self.types}, f,
                      ensure_ascii=False)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            d = json.load(f)
        return cls(d["pieces"], d["scores"], d["types"])

    def encode(self, text):
        """llama.cpp SPM tokenization of text (space prefix added; no BOS/EOS)."""
        return spm_encode(text, self.ids, self.scores)

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            if self.types[i] == TYPE_BYTE:
                out.append(int(self.pieces[i][3:5], 16))
            elif self.types[i] == TYPE_NORMAL:
                out += self.pieces[i].replace(SPACE, " ").encode()
        text = out.decode(errors="replace")
        return text[1:] if text.startswith(" ") else text


def spm_encode(text, ids, scores, add_space_prefix=True):
    """Greedy highest-score pair merging over UTF-8 characters, as llama.cpp's llm_tokenizer_spm."""
    if not text:
        return []
    text = (" " + text if add_space_prefix else text).replace(" ", SPACE)
    syms = list(text)                       # symbol text; "" once merged into its left neighbour
    nxt = list(range(1, len(syms))) + [-1]
    prv = list(range(-1, len(syms) - 1))
    heap = []

    def push(left):
        right = nxt[left]
        if left < 0 or right < 0:
            return
        piece = syms[left] + syms[right]
        tid = ids.get(piece)
        if tid is not None:
            # max-heap on score, then leftmost position; size detects a stale entry
            heapq.heappush(heap, (-scores[tid], left, right, len(piece)))

    for i in range(len(syms) - 1):
        push(i)
    while heap:
        _, left, right, size = heapq.heappop(heap)
        if not syms[left] or not syms[right] or nxt[left] != right \
                or len(syms[left]) + len(syms[right]) != size:
            continue
        syms[left] += syms[right]
        syms[right] = ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prv[nxt[right]] = left
        push(prv[left])
        push(left)
    out = []
    i = 0
    while i >= 0:
        tid = ids.get(syms[i])
        if tid is not None:
            out.append(tid)
        else:
            out += [ids[f"<0x{b:02X}>"] for b in syms[i].encode()]
        i = nxt[i]
    return out
