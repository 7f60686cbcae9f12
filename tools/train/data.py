"""Training data: rendered scene pools, pixel normalisation, the LLaVA prompt format, batches.

Prompt (LLaVA-1.5 'vicuna' template without system prompt; each text segment is tokenized on its
own, so each gets the SentencePiece space prefix):
    [BOS] + tok("USER: ") + [<image>] * n_image + tok("\n" + question + " ASSISTANT:")
followed by the target tok(answer) + [EOS].
"""
import hashlib
import json
import os

import numpy as np
import torch

import scenes
import tokenizer as tk

# CLIP's normalisation (as CLIPImageProcessor: rescale by 1/255, then (x - mean) / std)
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


def scene_pool(seed, count, cache_dir):
    """(images uint8 (N, S, S, 3), scene dicts), rendered once and cached as .npy + .json."""
    with open(scenes.__file__, "rb") as f:  # any change to the grammar makes a new cache entry
        version = hashlib.sha1(f.read()).hexdigest()[:10]
    base = os.path.join(cache_dir, f"scenes_s{seed}_n{count}_{version}")
    if os.path.exists(base + ".npy") and os.path.exists(base + ".json"):
        with open(base + ".json") as f:
            return np.load(base + ".npy"), json.load(f)
    os.makedirs(cache_dir, exist_ok=True)
    metas = [scenes.scene_at(seed, i) for i in range(count)]
    images = np.stack([scenes.render(m) for m in metas])
    np.save(base + ".tmp.npy", images)
    with open(base + ".json", "w") as f:
        json.dump(metas, f)
    os.replace(base + ".tmp.npy", base + ".npy")
    return images, metas


def pixels(images_u8):
    """uint8 (B, H, W, 3) -> normalised float32 (B, 3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class Prompter:
    """Token ids for prompts, answers and CLIP captions, with memoised tokenization."""

    def __init__(self, vocab, n_image):
        self.vocab, self.n_image = vocab, n_image
        self.memo = {}
        self.head = [tk.BOS] + vocab.encode("USER: ") + [vocab.image_id] * n_image

    def tok(self, text):
        ids = self.memo.get(text)
        if ids is None:
            ids = self.memo[text] = self.vocab.encode(text)
        return ids

    def prompt(self, question):
        return self.head + self.tok("\n" + question + " ASSISTANT:")

    def answer(self, answer):
        return self.tok(answer) + [tk.EOS]

    def clip_text(self, text):
        return [self.vocab.clip_bos] + self.tok(text) + [self.vocab.clip_eos]


def lm_batch(prompter, items):
    """items: (question, answer) -> ids (B, T), targets (B, T) (-100 = no loss), answer lengths.
    targets[b, p] is the token that position p must predict (the next one)."""
    seqs = [(prompter.prompt(q), prompter.answer(a)) for q, a in items]
    t = max(len(p) + len(a) for p, a in seqs)
    ids = torch.zeros(len(seqs), t, dtype=torch.long)
    targets = torch.full((len(seqs), t), -100, dtype=torch.long)
    for b, (p, a) in enumerate(seqs):
        full = p + a
        ids[b, :len(full)] = torch.tensor(full)
        targets[b, len(p) - 1:len(full) - 1] = torch.tensor(a)
    return ids, targets


def clip_batch(prompter, texts, pad_id):
    seqs = [prompter.clip_text(t) for t in texts]
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
    return ids
