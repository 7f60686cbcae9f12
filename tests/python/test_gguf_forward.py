#!/usr/bin/python3
"""Do the converted files carry everything the math needs?

Each HF reference case (tests/vectors/hf) is converted, then run in float64 numpy reading ONLY the GGUF files and
following docs/model-format.md (adjacent-pair RoPE on the permuted Q/K rows, feature layers as
hidden-state indices, eps / activations / pooling from the keys, ...). The results are compared
with the HF outputs in io.safetensors at the cases' advised tolerance,
|got - ref| <= 1e-4 * max(1, |ref|), and greedy tokens must match exactly.

Run: /usr/bin/python3 tests/python/test_gguf_forward.py   (MM_VECTORS_DIR=DIR overrides tests/vectors)
"""

import math
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_gguf_py import HF, convert_quiet, gguf, read_safetensors  # noqa: E402

_erf = np.frompyfunc(math.erf, 1, 1)
ACT = {"gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)).astype(np.float64)),
       "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
       "quick_gelu": lambda x: x / (1 + np.exp(-1.702 * x)),
       "relu": lambda x: np.maximum(x, 0),
       "silu": lambda x: x / (1 + np.exp(-x))}


class Model:
    """Tensors (float64, HF orientation) and keys of one GGUF file."""

    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.kv = r.kv
        self.t = {k: np.asarray(v, np.float64) for k, v in r.tensors.items()}

    def __getitem__(self, k):
        return self.kv[k]

    def has(self, name):
        return name in self.t

    def lin(self, x, name):
        y = x @ self.t[name + ".weight"].T
        return y + self.t[name + ".bias"] if name + ".bias" in self.t else y

    def ln(self, x, name, eps):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * self.t[name + ".weight"] + self.t[name + ".bias"]

    def rms(self, x, name, eps):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * self.t[name + ".weight"]


def attention(q, k, v, n_head, n_kv=None, mask=None, scale=None):
    """q [Tq, H*hd], k/v [Tk, Hkv*hd]; mask [Tq, Tk] of bools (True = attend)."""
    n_kv = n_kv or n_head
    hd = q.shape[1] // n_head
    q = q.reshape(len(q), n_head, hd).transpose(1, 0, 2)
    k = np.repeat(k.reshape(len(k), n_kv, hd).transpose(1, 0, 2), n_head // n_kv, 0)
    v = np.repeat(v.reshape(len(v), n_kv, hd).transpose(1, 0, 2), n_head // n_kv, 0)
    s = q @ k.transpose(0, 2, 1) * (scale if scale is not None else hd ** -0.5)
    if mask is not None:
        s = np.where(mask[None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(1, 0, 2).reshape(q.shape[1], -1)


def causal(t):
    return np.tril(np.ones((t, t), bool))


# ------------------------------------------------------------------------------------------
# towers, written from docs/model-format.md

def vision_hidden_states(m, pixels):
    """pixels [3, S, S] -> hidden_states list (0 = after pre_ln, k = after block k-1)."""
    eps = m["clip.vision.attention.layer_norm_epsilon"]
    act = ACT[m["clip.vision.hidden_act"]]
    H = m["clip.vision.attention.head_count"]
    W = m.t["v.patch_embd.weight"]                     # [D, 3, P, P]
    D, _, P, _ = W.shape
    g = pixels.shape[1] // P
    patches = pixels.reshape(3, g, P, g, P).transpose(1, 3, 0, 2, 4).reshape(g * g, -1)
    x = patches @ W.reshape(D, -1).T
    if m.has("v.patch_embd.bias"):
        x = x + m.t["v.patch_embd.bias"]
    if m.has("v.class_embd"):
        x = np.concatenate([m.t["v.class_embd"][None], x])
    x = x + m.t["v.position_embd.weight"]
    if m.has("v.pre_ln.weight"):
        x = m.ln(x, "v.pre_ln", eps)
    hs = [x]
    for i in range(m["clip.vision.block_count"]):
        b = "v.blk.%d." % i
        h = m.ln(x, b + "ln1", eps)
        x = x + m.lin(attention(m.lin(h, b + "attn_q"), m.lin(h, b + "attn_k"),
                                m.lin(h, b + "attn_v"), H), b + "attn_out")
        x = x + m.lin(act(m.lin(m.ln(x, b + "ln2", eps), b + "ffn_up")), b + "ffn_down")
        hs.append(x)
    return hs


def clip_text(m, ids):
    eps = m["clip.text.attention.layer_norm_epsilon"]
    act = ACT[m["clip.text.hidden_act"]]
    H = m["clip.text.attention.head_count"]
    x = m.t["t.token_embd.weight"][ids] + m.t["t.position_embd.weight"][:len(ids)]
    for i in range(m["clip.text.block_count"]):
        b = "t.blk.%d." % i
        h = m.ln(x, b + "ln1", eps)
        x = x + m.lin(attention(m.lin(h, b + "attn_q"), m.lin(h, b + "attn_k"),
                                m.lin(h, b + "attn_v"), H, mask=causal(len(ids))), b + "attn_out")
        x = x + m.lin(act(m.lin(m.ln(x, b + "ln2", eps), b + "ffn_up")), b + "ffn_down")
    x = m.ln(x, "t.post_ln", eps)
    if m["clip.text.pooling"] == "first_eos":
        at = int(np.argmax(ids == m["clip.text.eos_token_id"]))
    else:
        at = int(np.argmax(ids))
    return x, x[at]


def rope_adjacent(x, n_head, base, pos0=0):
    T = len(x)
    hd = x.shape[1] // n_head
    x = x.reshape(T, n_head, hd)
    theta = (np.arange(T) + pos0)[:, None] * base ** (-np.arange(0, hd, 2) / hd)[None]
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    out = np.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out.reshape(T, -1)


def llama_logits(m, x):
    """x: input embeddings [T, E] -> logits [T, V]."""
    eps = m["llama.attention.layer_norm_rms_epsilon"]
    H, Hkv = m["llama.attention.head_count"], m["llama.attention.head_count_kv"]
    base = m["llama.rope.freq_base"]
    for i in range(m["llama.block_count"]):
        b = "blk.%d." % i
        h = m.rms(x, b + "attn_norm", eps)
        q = rope_adjacent(m.lin(h, b + "attn_q"), H, base)
        k = rope_adjacent(m.lin(h, b + "attn_k"), Hkv, base)
        x = x + m.lin(attention(q, k, m.lin(h, b + "attn_v"), H, Hkv, causal(len(x))),
                      b + "attn_output")
        h = m.rms(x, b + "ffn_norm", eps)
        x = x + m.lin(ACT["silu"](m.lin(h, b + "ffn_gate")) * m.lin(h, b + "ffn_up"), b + "ffn_down")
    out = m.t["output.weight"] if m.has("output.weight") else m.t["token_embd.weight"]
    return m.rms(x, "output_norm", eps) @ out.T


def opt_logits(m, x):
    eps = m["opt.attention.layer_norm_epsilon"]
    H = m["opt.attention.head_count"]
    act = ACT[m["opt.hidden_act"]]
    assert m["opt.layer_norm_before"]
    x = x + m.t["position_embd.weight"][np.arange(len(x)) + m["opt.position_offset"]]
    for i in range(m["opt.block_count"]):
        b = "blk.%d." % i
        h = m.ln(x, b + "attn_norm", eps)
        x = x + m.lin(attention(m.lin(h, b + "attn_q"), m.lin(h, b + "attn_k"),
                                m.lin(h, b + "attn_v"), H, mask=causal(len(x))), b + "attn_output")
        x = x + m.lin(act(m.lin(m.ln(x, b + "ffn_norm", eps), b + "ffn_up")), b + "ffn_down")
    x = m.ln(x, "output_norm", eps)
    out = m.t["output.weight"] if m.has("output.weight") else m.t["token_embd.weight"]
    return x @ out.T


def qformer(m, vision):
    eps = m["clip.qformer.attention.layer_norm_epsilon"]
    H = m["clip.qformer.attention.head_count"]
    act = ACT[m["clip.qformer.hidden_act"]]
    freq = m["clip.qformer.cross_attention_frequency"]
    q = m.ln(m.t["qformer.query_embd"], "qformer.embd_ln", eps)
    for i in range(m["clip.qformer.block_count"]):
        b = "qformer.blk.%d." % i
        a = attention(m.lin(q, b + "attn_q"), m.lin(q, b + "attn_k"), m.lin(q, b + "attn_v"), H)
        q = m.ln(q + m.lin(a, b + "attn_out"), b + "attn_ln", eps)
        if i % freq == 0:
            a = attention(m.lin(q, b + "cross_q"), m.lin(vision, b + "cross_k"),
                          m.lin(vision, b + "cross_v"), H)
            q = m.ln(q + m.lin(a, b + "cross_out"), b + "cross_ln", eps)
        q = m.ln(q + m.lin(act(m.lin(q, b + "ffn_up")), b + "ffn_down"), b + "ffn_ln", eps)
    return q


def perceiver(m, context, ctx_mask):
    p = "clip.perceiver."
    eps = m[p + "attention.layer_norm_rms_epsilon"]
    H, Hkv = m[p + "attention.head_count"], m[p + "attention.head_count_kv"]
    act = ACT[m[p + "hidden_act"]]
    lat = m.t["perceiver.latents"]
    mask = np.concatenate([ctx_mask, np.ones(len(lat), bool)])[None].repeat(len(lat), 0)
    for i in range(m[p + "block_count"]):
        b = "perceiver.blk.%d." % i
        l = m.rms(lat, b + "ln_latents", eps)
        kv_in = np.concatenate([m.rms(context, b + "ln_context", eps), l])
        a = attention(m.lin(l, b + "attn_q"), m.lin(kv_in, b + "attn_k"),
                      m.lin(kv_in, b + "attn_v"), H, Hkv, mask,
                      scale=m[p + "attention.key_length"] ** -0.5)
        lat = lat + m.lin(a, b + "attn_out")
        h = m.rms(lat, b + "ffn_norm", eps)
        lat = lat + m.lin(act(m.lin(h, b + "ffn_gate")) * m.lin(h, b + "ffn_up"), b + "ffn_down")
    return m.rms(lat, "perceiver.post_ln", eps)


def greedy(step_logits_fn, embed_fn, x, n):
    """Greedy decode without a cache: re-run the whole sequence each step."""
    toks, steps = [], []
    for _ in range(n):
        logits = step_logits_fn(x)[-1]
        t = int(np.argmax(logits))
        toks.append(t)
        steps.append(logits)
        x = np.concatenate([x, embed_fn(t)[None]])
    return np.array(toks), np.array(steps)


# ------------------------------------------------------------------------------------------

class TestForwardFromGGUF(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def load(self, case):
        paths, _ = convert_quiet(os.path.join(HF, case), os.path.join(self.dir.name, case))
        io = {k: np.asarray(v, np.float64) if v.dtype.kind == "f" else v
              for k, v in read_safetensors(os.path.join(HF, case, "io.safetensors")).items()}
        return [Model(p) for p in paths], io

    def close(self, got, ref, what, tol=2e-5):
        got = np.asarray(got, np.float64).reshape(ref.shape)
        err = np.abs(got - ref) / np.maximum(1, np.abs(ref))
        self.assertLessEqual(err.max(), tol, "%s: max scaled error %.3g" % (what, err.max()))
        return err.max()

    def test_clip(self):
        (m,), io = self.load("clip")
        img, txt = [], []
        for b in range(2):
            hs = vision_hidden_states(m, io["pixel_values"][b])
            last = hs[m["clip.vision.block_count"]]
            self.close(last, io["vision_last_hidden_state"][b], "vision_last_hidden_state")
            pooled = m.ln(last[0], "v.post_ln", m["clip.vision.attention.layer_norm_epsilon"])
            self.close(pooled, io["vision_pooled"][b], "vision_pooled")
            img.append(m.lin(pooled, "v.proj"))
            self.close(img[-1], io["image_proj"][b], "image_proj")
            x, pooled_t = clip_text(m, io["input_ids"][b])
            self.close(x, io["text_last_hidden_state"][b], "text_last_hidden_state")
            txt.append(m.lin(pooled_t, "t.proj"))
            self.close(txt[-1], io["text_proj"][b], "text_proj")
        img = np.array(img) / np.linalg.norm(img, axis=1, keepdims=True)
        txt = np.array(txt) / np.linalg.norm(txt, axis=1, keepdims=True)
        self.close(np.exp(m["clip.logit_scale"]) * img @ txt.T, io["logits_per_image"],
                   "logits_per_image")

    def test_siglip(self):
        (m,), io = self.load("siglip_vision")
        eps = m["clip.vision.attention.layer_norm_epsilon"]
        H = m["clip.vision.attention.head_count"]
        act = ACT[m["clip.vision.hidden_act"]]
        for b in range(2):
            hs = vision_hidden_states(m, io["pixel_values"][b])
            last = m.ln(hs[-1], "v.post_ln", eps)
            self.close(last, io["last_hidden_state"][b], "last_hidden_state")
            p = m.lin(attention(m.lin(m.t["v.head.probe"][None], "v.head.attn_q"),
                                m.lin(last, "v.head.attn_k"), m.lin(last, "v.head.attn_v"), H),
                      "v.head.attn_out")
            p = p + m.lin(act(m.lin(m.ln(p, "v.head.ln", eps), "v.head.ffn_up")), "v.head.ffn_down")
            self.close(p, io["pooler_output"][b], "pooler_output")

    def test_llama(self):
        (m,), io = self.load("llama")
        ids = io["input_ids"][0]
        emb = m.t["token_embd.weight"]
        self.close(llama_logits(m, emb[ids]), io["logits"], "logits")
        toks, steps = greedy(lambda x: llama_logits(m, x), lambda t: emb[t], emb[ids], 8)
        np.testing.assert_array_equal(toks, io["generated"][0])
        self.close(steps, io["generated_step_logits"], "generated_step_logits")

    def test_llava(self):
        (text, mm), io = self.load("llava")
        hs = vision_hidden_states(mm, io["pixel_values"][0])
        self.close(hs[0], io["vision_embeddings"], "vision_embeddings")
        (layer,) = mm["clip.vision.feature_layer"]
        feat = hs[layer]
        self.close(feat, io["vision_hidden_states"], "vision_hidden_states")
        if mm["clip.vision.feature_select"] == "default":
            feat = feat[1:]
        act = ACT[mm["clip.vision.projector.hidden_act"]]
        img = mm.lin(act(mm.lin(feat, "mm.0")), "mm.2")
        self.close(img, io["image_features"], "image_features")
        ids = io["input_ids"][0]
        emb = text.t["token_embd.weight"]
        x = emb[ids].copy()
        x[ids == mm["clip.image_token_id"]] = img
        self.close(llama_logits(text, x), io["logits"], "logits")
        toks, steps = greedy(lambda x: llama_logits(text, x), lambda t: emb[t], x, 8)
        np.testing.assert_array_equal(toks, io["generated"][0])
        self.close(steps, io["generated_step_logits"], "generated_step_logits")

    def test_blip2(self):
        (text, mm), io = self.load("blip2")
        hs = vision_hidden_states(mm, io["pixel_values"][0])
        vis = mm.ln(hs[-1], "v.post_ln", mm["clip.vision.attention.layer_norm_epsilon"])
        self.close(vis, io["vision_last_hidden_state"], "vision_last_hidden_state")
        q = qformer(mm, vis)
        self.close(q, io["qformer_output"], "qformer_output")
        proj = mm.lin(q, "mm.proj")
        self.close(proj, io["language_projection"], "language_projection")
        emb = text.t["token_embd.weight"]
        x = np.concatenate([proj, emb[io["input_ids"][0]]])      # prepended: no image token id
        self.close(opt_logits(text, x), io["logits"], "logits")
        toks, steps = greedy(lambda x: opt_logits(text, x), lambda t: emb[t], x, 8)
        np.testing.assert_array_equal(toks, io["generated"][0])
        self.close(steps, io["generated_step_logits"], "generated_step_logits")

    def test_idefics2_perceiver(self):
        (m,), io = self.load("idefics2_perceiver")
        for b in range(2):
            out = perceiver(m, io["context"][b], io["attention_mask"][b].astype(bool))
            self.close(out, io["output"][b], "output[%d]" % b)


if __name__ == "__main__":
    unittest.main()
