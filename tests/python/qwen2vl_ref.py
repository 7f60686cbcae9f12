#!/usr/bin/python3
"""An independent float64 PyTorch reference of HF transformers' Qwen2VLForConditionalGeneration
(4.45) and its Qwen2VLImageProcessor, and a writer of new parity cases with it.

    qwen2vl_ref.py check CASE_DIR      the reference reproduces the case's io.safetensors
    qwen2vl_ref.py variant SEED DIR    write a random Qwen2-VL of other sizes, with a random
                                       image of another shape, as DIR/qwen2_vl-SEED

From the documented math of the modeling and processing files:
  processor  smart_resize (round half to even to multiples of patch * merge, then the
             min/max pixel bounds), PIL bicubic resize of the 8-bit image, x / 255, (x - mean)
             / std, the frame repeated temporal_patch_size times, patches of (C, T, P, P) in
             merge-window order (windows row by row, patches row by row inside);
  tower      Conv3d (kernel = stride) = each row times the kernel flattened; blocks
             x += proj(attn(LayerNorm1(x))), x += fc2(quick_gelu(fc1(LayerNorm2(x)))), eps 1e-6,
             qkv one Linear with bias, full attention within a frame, 2-D rotary: head dim d,
             inv_freq = 10000^(-arange(0, d/2, 2) / (d/2)), angles cat(row * inv_freq,
             col * inv_freq), rotate_half; merger: LayerNorm ln_q, 4 consecutive rows side by
             side, Linear, GELU (erf), Linear;
  positions  get_rope_index: text one position per token on all three rows, image token k
             (t, row, col) of its merged cell + the position after the text before it, text
             after continues at max + 1; greedy steps continue after the largest;
  decoder    tests/python/hf_decoder.py's forward with the image rows in place of the image
             tokens and M-RoPE (rope_scaling.mrope_section).
"""

import json
import math
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_decoder  # noqa: E402
from hf_decoder import TOLERANCE, linear, write_safetensors  # noqa: E402

MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def round_half_even(x):
    return int(np.round(x))


def smart_resize(h, w, factor, min_pixels, max_pixels):
    hb, wb = round_half_even(h / factor) * factor, round_half_even(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def preprocess(image, pp):
    """pixel_values [n][C*T*P*P] float64 and grid (1, gh, gw)."""
    P, M, T = pp["patch_size"], pp["merge_size"], pp["temporal_patch_size"]
    H, W = smart_resize(image.height, image.width, P * M, pp["min_pixels"], pp["max_pixels"])
    x = np.asarray(image.convert("RGB").resize((W, H), Image.BICUBIC), np.float64) / 255.0
    x = ((x - np.array(pp["image_mean"])) / np.array(pp["image_std"])).transpose(2, 0, 1)
    gh, gw = H // P, W // P
    rows = []
    for by in range(0, gh, M):
        for bx in range(0, gw, M):
            for y in range(by, by + M):
                for xx in range(bx, bx + M):
                    patch = x[:, y * P:(y + 1) * P, xx * P:(xx + 1) * P]
                    rows.append(np.stack([patch] * T, 1).reshape(-1))
    return torch.from_numpy(np.array(rows)), (1, gh, gw)


def patch_positions(grid, M):
    t, gh, gw = grid
    pos = [(y, x) for by in range(0, gh, M) for bx in range(0, gw, M)
           for y in range(by, by + M) for x in range(bx, bx + M)]
    return torch.tensor(pos * t)


def layernorm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rotate(x, ang):
    """rotate_half RoPE on x [n][H][d] with angles ang [n][d/2]."""
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def tower(vc, W, pixels, grid):
    """patch_embeds, the last block's output, image_embeds."""
    D, H, M = vc["embed_dim"], vc["num_heads"], vc.get("spatial_merge_size", 2)
    d = D // H
    v = "visual."
    x = pixels @ W[v + "patch_embed.proj.weight"].reshape(D, -1).T
    patch = x
    pos = patch_positions(grid, M)
    inv = 10000.0 ** (-torch.arange(0, d // 2, 2, dtype=torch.float64) / (d // 2))
    ang = torch.cat([pos[:, :1] * inv, pos[:, 1:] * inv], -1)
    n = x.shape[0]
    for i in range(vc["depth"]):
        p = v + "blocks.%d." % i
        h = layernorm(x, W[p + "norm1.weight"], W[p + "norm1.bias"])
        q, k, val = linear(h, W[p + "attn.qkv.weight"], W[p + "attn.qkv.bias"]).view(n, 3, H, d).unbind(1)
        q, k = rotate(q, ang), rotate(k, ang)
        s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)
        a = torch.einsum("hqk,khd->qhd", s.softmax(-1), val).reshape(n, D)
        x = x + linear(a, W[p + "attn.proj.weight"], W[p + "attn.proj.bias"])
        h = layernorm(x, W[p + "norm2.weight"], W[p + "norm2.bias"])
        f = linear(h, W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"])
        f = f * torch.sigmoid(1.702 * f)
        x = x + linear(f, W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"])
    last = x
    m = v + "merger."
    h = layernorm(x, W[m + "ln_q.weight"], W[m + "ln_q.bias"]).reshape(n // (M * M), -1)
    h = torch.nn.functional.gelu(linear(h, W[m + "mlp.0.weight"], W[m + "mlp.0.bias"]))
    return patch, last, linear(h, W[m + "mlp.2.weight"], W[m + "mlp.2.bias"])


def rope_index(cfg, ids, grid, M):
    """position_ids [3][T] and rope_deltas as get_rope_index (one image)."""
    pos, nxt, t = [], 0, 0
    image = cfg["image_token_id"]
    while t < len(ids):
        if ids[t] != image:
            pos.append([nxt] * 3)
            nxt, t = nxt + 1, t + 1
            continue
        gt, gh, gw = grid[0], grid[1] // M, grid[2] // M
        for a in range(gt):
            for b in range(gh):
                for c in range(gw):
                    pos.append([nxt + a, nxt + b, nxt + c])
        nxt += max(gt, gh, gw)
        t += gt * gh * gw
    pos = torch.tensor(pos).T
    return pos, int(pos.max()) + 1 - len(ids)


def run(cfg, W, pp, image, ids, n_gen):
    """Every tensor of a case, from the image and the prompt."""
    vc, M = cfg["vision_config"], pp["merge_size"]
    pixels, grid = preprocess(image, pp)
    patch, last, embeds = tower(vc, W, pixels, grid)
    pos, delta = rope_index(cfg, ids, grid, M)

    def rows(ids):
        x = W["model.embed_tokens.weight"][torch.tensor(ids)].clone()
        x[torch.tensor(ids) == cfg["image_token_id"]] = embeds
        return x
    hidden, logits = hf_decoder.forward(cfg, W, ids, rows(ids), pos)
    seq, tokens, steps = list(ids), [], []
    for _ in range(n_gen):
        step = torch.arange(len(pos[0]), len(seq)) + delta
        full = torch.cat([pos, step[None].repeat(3, 1)], 1)
        out = hf_decoder.forward(cfg, W, seq, rows(seq), full)[1][-1]
        tokens.append(int(torch.argmax(out)))
        steps.append(out)
        seq.append(tokens[-1])
    return {"pixel_values": pixels, "image_grid_thw": torch.tensor([grid]),
            "vision_rope_pos_ids": patch_positions(grid, M), "patch_embeds": patch,
            "vision_last_block": last, "image_embeds": embeds, "position_ids": pos[:, None],
            "rope_deltas": torch.tensor([[delta]]), "text_hidden_states": hidden[:, None, :, :],
            "logits": logits[None], "generated": torch.tensor([tokens]),
            "generated_step_logits": torch.stack(steps)[None]}


def load_pp(case_dir):
    with open(os.path.join(case_dir, "preprocessor_config.json")) as f:
        pp = json.load(f)
    size = pp.get("size") or {}
    pp.setdefault("min_pixels", size.get("min_pixels"))
    pp.setdefault("max_pixels", size.get("max_pixels"))
    return pp


def check(case_dir):
    cfg, W, io, ids = hf_decoder.load_case(case_dir)
    got = run(cfg, W, load_pp(case_dir), Image.open(os.path.join(case_dir, "image.png")), ids,
              io["generated"].shape[1])
    failures = 0
    for name, value in got.items():
        ref, value = io[name], value.numpy()
        if ref.dtype.kind in "iu":
            ok = value.shape == ref.shape and (value == ref).all()
            line = "exact" if ok else "differs"
        else:
            ref = ref.astype(np.float64)
            rel = float((np.abs(value - ref) / np.maximum(1, np.abs(ref))).max())
            ok, line = rel <= TOLERANCE, "max_rel %.3e" % rel
        failures += not ok
        print("%-12s reference %-22s %s  %s" % (os.path.basename(case_dir), name, line,
                                                 "PASS" if ok else "FAIL"))
    return failures


def write_variant(seed, parent):
    rng = np.random.default_rng(seed)
    Hv, dv = int(rng.choice([2, 3])), int(rng.choice([8, 12]))
    H = int(rng.choice([2, 4]))
    Hkv = int(rng.choice([h for h in (1, 2) if H % h == 0]))
    hd = int(rng.choice([12, 16]))
    sections = {12: [[2, 2, 2], [1, 3, 2]], 16: [[2, 3, 3], [4, 2, 2]]}[hd][int(rng.integers(2))]
    E, V = H * hd, int(rng.integers(70, 120))
    P = int(rng.choice([4, 6]))
    vc = dict(depth=int(rng.integers(1, 4)), embed_dim=Hv * dv, hidden_size=E,
              mlp_ratio=int(rng.choice([2, 3])), num_heads=Hv, patch_size=P,
              spatial_merge_size=2, temporal_patch_size=2, in_chans=3, hidden_act="quick_gelu",
              model_type="qwen2_vl")
    cfg = dict(architectures=["Qwen2VLForConditionalGeneration"], model_type="qwen2_vl",
               hidden_size=E, num_attention_heads=H, num_key_value_heads=Hkv,
               intermediate_size=int(rng.integers(40, 90)),
               num_hidden_layers=int(rng.integers(1, 3)), vocab_size=V,
               rms_norm_eps=float(rng.choice([1e-5, 1e-6])),
               rope_theta=float(rng.choice([10000.0, 1000000.0])), max_position_embeddings=256,
               hidden_act="silu", tie_word_embeddings=seed % 2 == 0, use_sliding_window=False,
               sliding_window=4096, rope_scaling=dict(type="default", mrope_section=sections),
               vision_start_token_id=V - 4, vision_end_token_id=V - 3, image_token_id=V - 2,
               video_token_id=V - 1, bos_token_id=1, eos_token_id=2, vision_config=vc)
    factor = P * 2
    pp = dict(image_processor_type="Qwen2VLImageProcessor", patch_size=P, merge_size=2,
              temporal_patch_size=2, min_pixels=4 * factor * factor,
              max_pixels=int(rng.integers(12, 30)) * factor * factor, image_mean=MEAN,
              image_std=STD, resample=3, do_resize=True, do_rescale=True, do_normalize=True,
              rescale_factor=1 / 255)

    def m(*shape, std=0.08):
        return torch.from_numpy(rng.normal(0, std, shape))
    W = hf_decoder.random_weights(dict(cfg, model_type="qwen2"), rng)
    Dv, F = vc["embed_dim"], vc["embed_dim"] * vc["mlp_ratio"]
    W["visual.patch_embed.proj.weight"] = m(Dv, 3, 2, P, P, std=0.1)
    for i in range(vc["depth"]):
        p = "visual.blocks.%d." % i
        for n in ("norm1", "norm2"):
            W[p + n + ".weight"], W[p + n + ".bias"] = 1 + m(Dv, std=0.1), m(Dv, std=0.1)
        W[p + "attn.qkv.weight"], W[p + "attn.qkv.bias"] = m(3 * Dv, Dv, std=0.2), m(3 * Dv, std=0.2)
        W[p + "attn.proj.weight"], W[p + "attn.proj.bias"] = m(Dv, Dv, std=0.15), m(Dv, std=0.1)
        W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"] = m(F, Dv, std=0.2), m(F, std=0.1)
        W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"] = m(Dv, F, std=0.15), m(Dv, std=0.1)
    W["visual.merger.ln_q.weight"], W["visual.merger.ln_q.bias"] = 1 + m(Dv, std=0.1), m(Dv, std=0.1)
    W["visual.merger.mlp.0.weight"] = m(4 * Dv, 4 * Dv, std=0.15)
    W["visual.merger.mlp.0.bias"] = m(4 * Dv, std=0.1)
    W["visual.merger.mlp.2.weight"] = m(E, 4 * Dv, std=0.15)
    W["visual.merger.mlp.2.bias"] = m(E, std=0.1)
    W = {k: v.float().double() for k, v in W.items()}  # what the f32 files hold

    w, h = int(rng.integers(factor * 2, 110)), int(rng.integers(factor * 2, 110))
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    _, grid = preprocess(image, pp)
    n_img = grid[1] * grid[2] // 4
    before = [1] + [int(i) for i in rng.integers(3, V - 4, int(rng.integers(1, 4)))]
    after = [int(i) for i in rng.integers(3, V - 4, int(rng.integers(2, 5)))]
    ids = before + [V - 4] + [V - 2] * n_img + [V - 3] + after
    got = run(cfg, W, pp, image, ids, 6)

    out = os.path.join(parent, "qwen2_vl-%d" % seed)
    os.makedirs(out, exist_ok=True)
    image.save(os.path.join(out, "image.png"))
    for name, obj in (("config.json", cfg), ("preprocessor_config.json", pp)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=1)
    write_safetensors(os.path.join(out, "model.safetensors"),
                      {k: v.numpy().astype(np.float32) for k, v in W.items()})
    io = {"input_ids": np.array([ids], np.int64)}
    for name, value in got.items():
        value = value.numpy()
        io[name] = value.astype(np.int64 if value.dtype.kind in "iu" else np.float32)
    write_safetensors(os.path.join(out, "io.safetensors"), io)
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"case": "qwen2_vl-%d" % seed,
                   "model_class": "transformers.Qwen2VLForConditionalGeneration",
                   "description": "random Qwen2-VL (image %dx%d, grid %s) written by "
                                  "tests/python/qwen2vl_ref.py (float64 reference)"
                                  % (w, h, grid)}, f, indent=1)
    return out


def main(argv):
    if len(argv) == 3 and argv[1] == "check":
        return 1 if check(argv[2]) else 0
    if len(argv) == 4 and argv[1] == "variant":
        print(write_variant(int(argv[2]), argv[3]))
        return 0
    print(__doc__.strip())
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
