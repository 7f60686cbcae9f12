#!/usr/bin/python3
"""An independent PyTorch reference of HF transformers' decoder-only language models, and a
writer of new parity cases with it (HF transformers itself is not installed here).

    hf_decoder.py check CASE_DIR         the reference reproduces the case's io.safetensors
    hf_decoder.py variant KIND SEED DIR  write a random KIND model of other sizes as a case
                                         folder DIR/KIND-SEED that tests/hf_parity runs

KIND: qwen2 (Q/K/V biases, rotate-half RoPE, tied or untied head), phi3 (fused qkv_proj and
gate_up_proj, optional partial rotary), mistral (llama's block with a sliding window).
The forward follows the HF modeling files of transformers 4.45 from their documented math,
in float64: embeddings; per layer x += o_proj(attention(rmsnorm(x))), x += mlp(rmsnorm(x));
final rmsnorm; lm_head (embed_tokens when tied). RMSNorm: x / sqrt(mean(x^2) + eps) * w.
RoPE: inv_freq_i = theta^(-2i/d) over the d rotated dims, x' = x cos + rotate_half(x) sin with
rotate_half(x) = [-x2, x1] over the halves. Attention: causal, keys repeated per KV group,
scores / sqrt(head_dim); Mistral's sliding window hides keys j <= i - window. Greedy
generation recomputes the whole sequence at each step (no cache), as an independent check of
libmm's cached path.
"""

import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_gguf_py import read_safetensors  # noqa: E402

TOLERANCE = 1e-4  # the cases' advice: |c - ref| <= 1e-4 * max(1, |ref|)


def load_case_model(case_dir):
    with open(os.path.join(case_dir, "config.json")) as f:
        cfg = json.load(f)
    w = read_safetensors(os.path.join(case_dir, "model.safetensors"))
    w = w[0] if isinstance(w, tuple) else w
    return cfg, {k: torch.from_numpy(np.array(v, np.float64)) for k, v in w.items()}


def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta, n_rot, sections=None):
    """x [T][H][hd]; rotate-half RoPE on the first n_rot dims. pos [T], or with M-RoPE
    sections (Qwen2-VL) pos [3][T]: frequency i takes its angle from the row of its section."""
    inv = theta ** (-torch.arange(0, n_rot, 2, dtype=torch.float64) / n_rot)
    if sections is None:
        ang = pos[:, None].double() * inv[None, :]
    else:
        row = torch.repeat_interleave(torch.arange(len(sections)), torch.tensor(sections))
        ang = pos[row].T.double() * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    r, rest = x[..., :n_rot], x[..., n_rot:]
    half = n_rot // 2
    rot = torch.cat([-r[..., half:], r[..., :half]], -1)
    return torch.cat([r * cos + rot * sin, rest], -1)


def dims(cfg):
    E, H = cfg["hidden_size"], cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or E // H
    n_rot = int(hd * cfg.get("partial_rotary_factor", 1.0))
    return E, H, Hkv, hd, n_rot


def layer_weights(cfg, W, i):
    """q, k, v, o, gate, up, down matrices and q/k/v biases (None when absent) of layer i."""
    E, H, Hkv, hd, _ = dims(cfg)
    p = "model.layers.%d." % i
    if cfg["model_type"] == "phi3":
        qkv = W[p + "self_attn.qkv_proj.weight"]
        q, k, v = torch.split(qkv, [H * hd, Hkv * hd, Hkv * hd], 0)
        gate, up = W[p + "mlp.gate_up_proj.weight"].chunk(2, 0)
        bq = bk = bv = None
    else:
        q, k, v = (W[p + "self_attn.%s_proj.weight" % n] for n in "qkv")
        bq, bk, bv = (W.get(p + "self_attn.%s_proj.bias" % n) for n in "qkv")
        gate, up = W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"]
    return dict(q=q, k=k, v=v, bq=bq, bk=bk, bv=bv, o=W[p + "self_attn.o_proj.weight"],
                gate=gate, up=up, down=W[p + "mlp.down_proj.weight"],
                n1=W[p + "input_layernorm.weight"], n2=W[p + "post_attention_layernorm.weight"])


def linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def forward(cfg, W, ids, x=None, pos=None):
    """hidden_states [L+1][T][E] (HF convention: the last is after the final norm), logits.
    x: the input rows [T][E] when not the ids' embeddings (an image's rows in them); pos: the
    positions, [3][T] with M-RoPE (config rope_scaling.mrope_section), else 0 .. T-1."""
    E, H, Hkv, hd, n_rot = dims(cfg)
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    window = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
    sections = (cfg.get("rope_scaling") or {}).get("mrope_section")
    T = len(ids)
    order = torch.arange(T)
    pos = order if pos is None else pos
    visible = order[None, :] <= order[:, None]
    if window is not None:
        visible &= order[None, :] > order[:, None] - window
    if x is None:
        x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    hidden = [x]
    for i in range(cfg["num_hidden_layers"]):
        lw = layer_weights(cfg, W, i)
        h = rmsnorm(x, lw["n1"], eps)
        q = linear(h, lw["q"], lw["bq"]).view(T, H, hd)
        k = linear(h, lw["k"], lw["bk"]).view(T, Hkv, hd)
        v = linear(h, lw["v"], lw["bv"]).view(T, Hkv, hd)
        q, k = rope(q, pos, theta, n_rot, sections), rope(k, pos, theta, n_rot, sections)
        k = k.repeat_interleave(H // Hkv, 1)
        v = v.repeat_interleave(H // Hkv, 1)
        s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
        s = s.masked_fill(~visible[None], float("-inf")).softmax(-1)
        a = torch.einsum("hqk,khd->qhd", s, v).reshape(T, H * hd)
        x = x + linear(a, lw["o"])
        h = rmsnorm(x, lw["n2"], eps)
        g = linear(h, lw["gate"])
        x = x + linear(g * torch.sigmoid(g) * linear(h, lw["up"]), lw["down"])
        hidden.append(x)
    hidden[-1] = rmsnorm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings"):
        head = W["model.embed_tokens.weight"]
    return torch.stack(hidden), hidden[-1] @ head.T


def greedy(cfg, W, ids, n):
    ids, tokens, steps = list(ids), [], []
    for _ in range(n):
        logits = forward(cfg, W, ids)[1][-1]
        t = int(torch.argmax(logits))
        tokens.append(t)
        steps.append(logits)
        ids.append(t)
    return tokens, torch.stack(steps)


# ---- case files ----

def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[a.dtype]
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [at, at + a.nbytes]}
        blobs.append(a.tobytes())
        at += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


MODEL_CLASSES = {"qwen2": "Qwen2ForCausalLM", "phi3": "Phi3ForCausalLM",
                 "mistral": "MistralForCausalLM"}


def variant_config(kind, seed, rng):
    """Sizes and settings other than the shared cases': odd widths, another head grouping."""
    H = int(rng.choice([3, 6]))
    Hkv = int(rng.choice([h for h in (1, 3) if H % h == 0]))
    hd = int(rng.choice([8, 12]))
    cfg = dict(architectures=[MODEL_CLASSES[kind]], model_type=kind, hidden_size=H * hd,
               num_attention_heads=H, num_key_value_heads=Hkv,
               intermediate_size=int(rng.integers(40, 90)),
               num_hidden_layers=int(rng.integers(1, 4)), vocab_size=int(rng.integers(60, 130)),
               rms_norm_eps=float(rng.choice([1e-5, 1e-6])),
               rope_theta=float(rng.choice([10000.0, 500000.0])), max_position_embeddings=128,
               hidden_act="silu", rope_scaling=None, tie_word_embeddings=seed % 2 == 0)
    if kind == "qwen2":
        cfg.update(use_sliding_window=False, sliding_window=None)
    if kind == "phi3":
        cfg.update(sliding_window=None, tie_word_embeddings=False,
                   partial_rotary_factor=float(rng.choice([0.5, 1.0])))
    if kind == "mistral":
        cfg.update(sliding_window=int(rng.integers(3, 6)), tie_word_embeddings=False)
    return cfg


def random_weights(cfg, rng):
    E, H, Hkv, hd, _ = dims(cfg)
    F, V = cfg["intermediate_size"], cfg["vocab_size"]

    def m(*shape, std=0.08):
        return torch.from_numpy(rng.normal(0, std, shape))
    W = {"model.embed_tokens.weight": m(V, E, std=0.5), "model.norm.weight": 1 + m(E, std=0.1)}
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = m(V, E, std=0.3)
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        W[p + "input_layernorm.weight"] = 1 + m(E, std=0.1)
        W[p + "post_attention_layernorm.weight"] = 1 + m(E, std=0.1)
        W[p + "self_attn.o_proj.weight"] = m(E, H * hd, std=0.15)
        W[p + "mlp.down_proj.weight"] = m(E, F, std=0.15)
        if cfg["model_type"] == "phi3":
            W[p + "self_attn.qkv_proj.weight"] = m((H + 2 * Hkv) * hd, E, std=0.2)
            W[p + "mlp.gate_up_proj.weight"] = m(2 * F, E, std=0.2)
            continue
        for n, rows in (("q", H * hd), ("k", Hkv * hd), ("v", Hkv * hd)):
            W[p + "self_attn.%s_proj.weight" % n] = m(rows, E, std=0.2)
            if cfg["model_type"] == "qwen2":
                W[p + "self_attn.%s_proj.bias" % n] = m(rows, std=0.3)
        W[p + "mlp.gate_proj.weight"] = m(F, E, std=0.2)
        W[p + "mlp.up_proj.weight"] = m(F, E, std=0.2)
    return W


def write_variant(kind, seed, parent):
    rng = np.random.default_rng(seed)
    cfg = variant_config(kind, seed, rng)
    W = random_weights(cfg, rng)
    # f32 weights are what the files hold: the reference runs on exactly those values.
    W = {k: v.float().double() for k, v in W.items()}
    T, G = int(rng.integers(7, 14)), 6
    ids = [int(i) for i in rng.integers(3, cfg["vocab_size"], T)]
    hidden, logits = forward(cfg, W, ids)
    tokens, steps = greedy(cfg, W, ids, G)
    out = os.path.join(parent, "%s-%d" % (kind, seed))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    write_safetensors(os.path.join(out, "model.safetensors"),
                      {k: v.numpy().astype(np.float32) for k, v in W.items()})
    f32 = lambda t: t.numpy().astype(np.float32)  # noqa: E731
    write_safetensors(os.path.join(out, "io.safetensors"), {
        "input_ids": np.array([ids], np.int64),
        "hidden_states": f32(hidden)[:, None], "logits": f32(logits)[None],
        "generated": np.array([tokens], np.int64), "generated_step_logits": f32(steps)[None]})
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"case": "%s-%d" % (kind, seed),
                   "model_class": "transformers." + MODEL_CLASSES[kind],
                   "description": "random %s written by tests/python/hf_decoder.py (float64 "
                                  "reference)" % kind}, f, indent=1)
    return out


def load_case(case_dir):
    """A case's config, weights, io tensors and prompt ids."""
    cfg, W = load_case_model(case_dir)
    io = read_safetensors(os.path.join(case_dir, "io.safetensors"))
    io = io[0] if isinstance(io, tuple) else io
    return cfg, W, io, [int(i) for i in io["input_ids"][0]]


def check(case_dir):
    """Compare the reference with a case's HF outputs; returns the number of failures."""
    cfg, W, io, ids = load_case(case_dir)
    hidden, logits = forward(cfg, W, ids)
    tokens, steps = greedy(cfg, W, ids, io["generated"].shape[1])
    failures = 0
    for name, got in (("hidden_states", hidden[:, None]), ("logits", logits[None]),
                      ("generated_step_logits", steps[None])):
        ref = io[name].astype(np.float64)
        rel = float((np.abs(got.numpy() - ref) / np.maximum(1, np.abs(ref))).max())
        ok = rel <= TOLERANCE
        failures += not ok
        print("%-12s reference %-22s max_rel %.3e  %s"
              % (os.path.basename(case_dir), name, rel, "PASS" if ok else "FAIL"))
    same = tokens == [int(t) for t in io["generated"][0]]
    failures += not same
    print("%-12s reference generated              %s" % (os.path.basename(case_dir),
                                                          "PASS" if same else "FAIL"))
    return failures


def main(argv):
    if len(argv) == 3 and argv[1] == "check":
        return 1 if check(argv[2]) else 0
    if len(argv) == 5 and argv[1] == "variant" and argv[2] in MODEL_CLASSES:
        print(write_variant(argv[2], int(argv[3]), argv[4]))
        return 0
    print(__doc__.strip())
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
