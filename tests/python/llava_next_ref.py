#!/usr/bin/python3
"""An independent reference of LLaVA-NeXT (LLaVA-1.6) for parity cases, in PyTorch float64.

Written from HF transformers' documented behaviour (LlavaNextImageProcessor 4.45 and
LlavaNextForConditionalGeneration), reading only the HF checkpoint folder (config.json,
preprocessor_config.json, model.safetensors, image.png) -- never libmm, its converter or its
GGUF files:
  - select_best_resolution over image_grid_pinpoints (height, width);
  - resize for patching (the side with the smaller scale to the target, the other
    min(ceil(orig * scale), target)) with PIL, zero padding (target - new) // 2 on both sides,
    tiles of crop_size cut row by row (the last ones smaller when the padding is odd);
  - every view (the whole image squashed to S x S first, then the tiles): PIL resize of the
    shortest edge to S (long side int(S * long / short)), center crop, rescale 1/255 in float64
    then float32, normalize in float32;
  - CLIP vision tower, vision_feature_layer, strategy default (class token dropped), the
    two-layer projector;
  - packing: tiles on the grid, unpad_image (int(round(orig * scale, 7))), image_newline
    after each row, the overview's features first;
  - the Llama decoder (rotate-half RoPE, GQA, RMSNorm, SwiGLU), logits of every position and
    greedy generation by argmax over full recomputation.

    llava_next_ref.py OUT_DIR --seed N --image WxH --tile S --patch P --pinpoints H,W;H,W;...
writes a complete case folder (random weights in HF naming, the image, io.safetensors with
every tensor the shared llava_next case has, case.json) that tests/hf_parity then runs.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_gguf_py import read_safetensors  # noqa: E402

torch.set_default_dtype(torch.float64)


# ---- safetensors (test_gguf_py's independent reader, and a writer) ----

def write_safetensors(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {np.dtype("float32"): "F32", np.dtype("int64"): "I64",
                 np.dtype("uint8"): "U8"}[a.dtype]
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---- preprocessing (LlavaNextImageProcessor) ----

def select_best_resolution(h, w, pinpoints):
    best, best_eff, best_waste = None, -1, float("inf")
    for ph, pw in pinpoints:
        scale = min(pw / w, ph / h)
        eff = min(int(w * scale) * int(h * scale), w * h)
        waste = ph * pw - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (ph, pw), eff, waste
    return best


def clip_steps(img, S, crop, mean, std, resample):
    """uint8 HxWx3 -> float32 3xSxS: shortest edge to S, center crop, rescale, normalize."""
    h, w = img.shape[:2]
    if h <= w:
        nh, nw = S, int(S * w / h)
    else:
        nh, nw = int(S * h / w), S
    img = np.asarray(Image.fromarray(img).resize((nw, nh), resample))
    top, left = (nh - crop) // 2, (nw - crop) // 2
    img = img[top:top + crop, left:left + crop]
    x = (img.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return x.transpose(2, 0, 1).astype(np.float32)


def preprocess(img, pp, pinpoints):
    S, crop = pp["size"]["shortest_edge"], pp["crop_size"]["height"]
    mean, std, resample = pp["image_mean"], pp["image_std"], pp.get("resample", 3)
    h, w = img.shape[:2]
    th, tw = select_best_resolution(h, w, pinpoints)
    sw, sh = tw / w, th / h
    if sw < sh:
        nw, nh = tw, min(math.ceil(h * sw), th)
    else:
        nh, nw = th, min(math.ceil(w * sh), tw)
    resized = np.asarray(Image.fromarray(img).resize((nw, nh), resample))
    py, px = (th - nh) // 2, (tw - nw) // 2
    padded = np.zeros((nh + 2 * py, nw + 2 * px, 3), np.uint8)
    padded[py:py + nh, px:px + nw] = resized
    tiles = [padded[i:i + crop, j:j + crop] for i in range(0, padded.shape[0], crop)
             for j in range(0, padded.shape[1], crop)]
    overview = np.asarray(Image.fromarray(img).resize((S, S), resample))
    views = [clip_steps(v, S, crop, mean, std, resample) for v in [overview] + tiles]
    return np.stack(views), (th // crop, tw // crop)


# ---- the model ----

def act(name, x):
    if name == "quick_gelu":
        return x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    if name == "silu":
        return x * torch.sigmoid(x)
    raise ValueError(name)


def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], w, b, eps)


def vision_hidden_states(W, vc, px):
    """CLIP vision tower on views px [N][3][S][S]: every hidden state, [L+1][N][T][D]."""
    p = "vision_tower.vision_model."
    D, P, H = vc["hidden_size"], vc["patch_size"], vc["num_attention_heads"]
    eps = vc.get("layer_norm_eps", 1e-5)
    x = torch.nn.functional.conv2d(torch.tensor(px, dtype=torch.float64),
                                   W[p + "embeddings.patch_embedding.weight"], stride=P)
    x = x.flatten(2).transpose(1, 2)
    cls = W[p + "embeddings.class_embedding"].expand(x.shape[0], 1, D)
    x = torch.cat([cls, x], 1) + W[p + "embeddings.position_embedding.weight"]
    x = layer_norm(x, W[p + "pre_layrnorm.weight"], W[p + "pre_layrnorm.bias"], eps)
    states = [x]
    for i in range(vc["num_hidden_layers"]):
        q = p + "encoder.layers.%d." % i
        lin = lambda name, t: t @ W[q + name + ".weight"].T + W[q + name + ".bias"]
        h = layer_norm(x, W[q + "layer_norm1.weight"], W[q + "layer_norm1.bias"], eps)
        N, T, _ = h.shape
        split = lambda t: t.view(N, T, H, D // H).transpose(1, 2)
        qh, kh, vh = (split(lin("self_attn.%s_proj" % n, h)) for n in "qkv")
        att = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(D // H), -1) @ vh
        x = x + lin("self_attn.out_proj", att.transpose(1, 2).reshape(N, T, D))
        h = layer_norm(x, W[q + "layer_norm2.weight"], W[q + "layer_norm2.bias"], eps)
        x = x + lin("mlp.fc2", act(vc.get("hidden_act", "quick_gelu"), lin("mlp.fc1", h)))
        states.append(x)
    return states


def unpad(feat, h, w):
    """unpad_image on feat [C][rows][cols] for an original (h, w) image."""
    rows, cols = feat.shape[1:]
    if w / h > cols / rows:
        new_h = int(round(h * (cols / w), 7))
        pad = (rows - new_h) // 2
        return feat[:, pad:rows - pad, :]
    new_w = int(round(w * (rows / h), 7))
    pad = (cols - new_w) // 2
    return feat[:, :, pad:cols - pad]


def image_features(W, cfg, px, grid, h, w):
    vc = cfg["vision_config"]
    states = vision_hidden_states(W, vc, px)
    hidden = states[cfg.get("vision_feature_layer", -2)]
    feats = hidden[:, 1:]
    mp = "multi_modal_projector."
    tiles = feats @ W[mp + "linear_1.weight"].T + W[mp + "linear_1.bias"]
    tiles = act(cfg.get("projector_hidden_act", "gelu"), tiles)
    tiles = tiles @ W[mp + "linear_2.weight"].T + W[mp + "linear_2.bias"]
    side = vc["image_size"] // vc["patch_size"]
    gr, gc = grid
    t = tiles[1:].view(gr, gc, side, side, -1).permute(4, 0, 2, 1, 3)
    t = t.flatten(1, 2).flatten(2, 3)
    t = unpad(t, h, w)
    nl = W["image_newline"][:, None, None].expand(t.shape[0], t.shape[1], 1)
    t = torch.cat([t, nl], -1).flatten(1, 2).transpose(0, 1)
    return hidden, tiles, torch.cat([tiles[0], t], 0)


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def llama_logits(W, tc, embeds):
    p = "language_model.model."
    D, H = tc["hidden_size"], tc["num_attention_heads"]
    KV, hd = tc.get("num_key_value_heads", H), tc.get("head_dim", D // H)
    eps, theta = tc.get("rms_norm_eps", 1e-6), tc.get("rope_theta", 10000.0)
    T = embeds.shape[0]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2) / hd)
    ang = torch.arange(T)[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    rot = lambda t: torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1)
    rope = lambda t: t * cos + rot(t) * sin
    mask = torch.full((T, T), float("-inf")).triu(1)
    x = embeds
    for i in range(tc["num_hidden_layers"]):
        q = p + "layers.%d." % i
        h = rms_norm(x, W[q + "input_layernorm.weight"], eps)
        qh = rope((h @ W[q + "self_attn.q_proj.weight"].T).view(T, H, hd).transpose(0, 1))
        kh = rope((h @ W[q + "self_attn.k_proj.weight"].T).view(T, KV, hd).transpose(0, 1))
        vh = (h @ W[q + "self_attn.v_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
        kh, vh = kh.repeat_interleave(H // KV, 0), vh.repeat_interleave(H // KV, 0)
        att = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(hd) + mask, -1) @ vh
        x = x + att.transpose(0, 1).reshape(T, H * hd) @ W[q + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[q + "post_attention_layernorm.weight"], eps)
        g = act("silu", h @ W[q + "mlp.gate_proj.weight"].T) * (h @ W[q + "mlp.up_proj.weight"].T)
        x = x + g @ W[q + "mlp.down_proj.weight"].T
    x = rms_norm(x, W[p + "norm.weight"], eps)
    return x @ W["language_model.lm_head.weight"].T


def run_case(folder, input_ids, n_generate):
    """Every tensor of a llava_next case for the folder's checkpoint and image."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(folder, "preprocessor_config.json")) as f:
        pp = json.load(f)
    W = {k: torch.tensor(v.astype(np.float64))
         for k, v in read_safetensors(os.path.join(folder, "model.safetensors")).items()}
    img = np.asarray(Image.open(os.path.join(folder, "image.png")).convert("RGB"))
    h, w = img.shape[:2]
    px, grid = preprocess(img, pp, cfg["image_grid_pinpoints"])
    hidden, tiles, feats = image_features(W, cfg, px, grid, h, w)
    tok = cfg["image_token_index"]
    ids = list(input_ids)
    out = {"pixel_values": px[None].astype(np.float32),
           "image_sizes": np.array([[h, w]], np.int64),
           "input_ids": np.array([ids], np.int64),
           "num_image_tokens": np.array([feats.shape[0]], np.int64),
           "vision_hidden_states": hidden.numpy().astype(np.float32),
           "tile_features": tiles.numpy().astype(np.float32),
           "image_features": feats.numpy().astype(np.float32)}
    out.update(language_model(W, cfg["text_config"], ids, tok, feats, n_generate))
    return out


def language_model(W, tc, ids, token, rows, n_generate):
    """The Llama decoder on ids whose `token` positions take rows in order: logits of every
    position, then greedy generation by argmax over full recomputation."""
    embed = W["language_model.model.embed_tokens.weight"]

    def forward(seq):
        e = embed[torch.tensor(seq)].clone()
        where = [i for i, t in enumerate(seq) if t == token]
        if len(where) != rows.shape[0]:
            raise ValueError("%d media tokens for %d rows" % (len(where), rows.shape[0]))
        e[where] = rows
        return llama_logits(W, tc, e)

    out = {"logits": forward(ids).numpy()[None].astype(np.float32)}
    generated, steps, seq = [], [], list(ids)
    for _ in range(n_generate):
        step = forward(seq)[-1]
        steps.append(step.numpy())
        generated.append(int(step.argmax()))
        seq.append(generated[-1])
    out["generated"] = np.array([generated], np.int64)
    out["generated_step_logits"] = np.array([steps], np.float32)
    return out


# ---- making a case ----

def random_weights(rng, vc, tc):
    """A random LLaVA(-NeXT) checkpoint in HF naming for vision config vc and text config tc."""
    D, F, L, patch = (vc["hidden_size"], vc["intermediate_size"], vc["num_hidden_layers"],
                      vc["patch_size"])
    E, Ft, V = tc["hidden_size"], tc["intermediate_size"], tc["vocab_size"]
    Hq = tc["num_attention_heads"] * tc["head_dim"]
    Hkv = tc["num_key_value_heads"] * tc["head_dim"]
    r = lambda *shape, s=0.5: (rng.standard_normal(shape) * s).astype(np.float32)
    n_pos = (vc["image_size"] // vc["patch_size"]) ** 2 + 1
    p = "vision_tower.vision_model."
    W = {p + "embeddings.class_embedding": r(D), p + "embeddings.patch_embedding.weight":
         r(D, 3, patch, patch, s=0.1), p + "embeddings.position_embedding.weight": r(n_pos, D),
         p + "pre_layrnorm.weight": 1 + r(D, s=0.1), p + "pre_layrnorm.bias": r(D, s=0.1),
         p + "post_layernorm.weight": 1 + r(D, s=0.1), p + "post_layernorm.bias": r(D, s=0.1)}
    for i in range(L):
        q = p + "encoder.layers.%d." % i
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            W[q + "self_attn.%s.weight" % n], W[q + "self_attn.%s.bias" % n] = r(D, D, s=0.15), r(D, s=0.05)
        W[q + "mlp.fc1.weight"], W[q + "mlp.fc1.bias"] = r(F, D, s=0.15), r(F, s=0.05)
        W[q + "mlp.fc2.weight"], W[q + "mlp.fc2.bias"] = r(D, F, s=0.15), r(D, s=0.05)
        for n in ("layer_norm1", "layer_norm2"):
            W[q + n + ".weight"], W[q + n + ".bias"] = 1 + r(D, s=0.1), r(D, s=0.1)
    mp = "multi_modal_projector."
    W[mp + "linear_1.weight"], W[mp + "linear_1.bias"] = r(E, D, s=0.15), r(E, s=0.05)
    W[mp + "linear_2.weight"], W[mp + "linear_2.bias"] = r(E, E, s=0.1), r(E, s=0.05)
    W["image_newline"] = r(E)
    t = "language_model.model."
    W[t + "embed_tokens.weight"] = r(V, E)
    for i in range(tc["num_hidden_layers"]):
        q = t + "layers.%d." % i
        for n, shape in (("q_proj", (Hq, E)), ("k_proj", (Hkv, E)), ("v_proj", (Hkv, E)),
                         ("o_proj", (E, Hq))):
            W[q + "self_attn.%s.weight" % n] = r(*shape, s=0.1)
        W[q + "mlp.gate_proj.weight"], W[q + "mlp.up_proj.weight"] = r(Ft, E, s=0.1), r(Ft, E, s=0.1)
        W[q + "mlp.down_proj.weight"] = r(E, Ft, s=0.1)
        W[q + "input_layernorm.weight"] = 1 + r(E, s=0.1)
        W[q + "post_attention_layernorm.weight"] = 1 + r(E, s=0.1)
    W[t + "norm.weight"] = 1 + r(E, s=0.1)
    W["language_model.lm_head.weight"] = r(V, E, s=0.2)
    return W


def make_case(outdir, seed, image_wh, tile, patch, pinpoints, feature_layer=-2):
    rng = np.random.default_rng(seed)
    D, F, L, Hv = 24, 40, 2, 4
    E, Ft, V = 48, 96, 99
    vc = dict(hidden_size=D, image_size=tile, intermediate_size=F, model_type="clip_vision_model",
              num_attention_heads=Hv, num_hidden_layers=L, patch_size=patch, projection_dim=64)
    tc = dict(head_dim=12, hidden_size=E, intermediate_size=Ft, max_position_embeddings=512,
              model_type="llama", num_attention_heads=4, num_hidden_layers=2,
              num_key_value_heads=2, pad_token_id=0, rms_norm_eps=1e-5, vocab_size=V)
    cfg = dict(architectures=["LlavaNextForConditionalGeneration"], ignore_index=-100,
               image_grid_pinpoints=pinpoints, image_token_index=97, model_type="llava_next",
               pad_token_id=0, projector_hidden_act="gelu", text_config=tc,
               tie_word_embeddings=False, torch_dtype="float32", vision_config=vc,
               vision_feature_layer=feature_layer, vision_feature_select_strategy="default")
    pp = dict(crop_size=dict(height=tile, width=tile), do_center_crop=True, do_convert_rgb=True,
              do_normalize=True, do_pad=True, do_rescale=True, do_resize=True,
              image_grid_pinpoints=pinpoints, image_mean=[0.48145466, 0.4578275, 0.40821073],
              image_processor_type="LlavaNextImageProcessor",
              image_std=[0.26862954, 0.26130258, 0.27577711], resample=3,
              rescale_factor=1 / 255, size=dict(shortest_edge=tile))
    W = random_weights(rng, vc, tc)

    os.makedirs(outdir, exist_ok=True)
    for name, obj in (("config.json", cfg), ("preprocessor_config.json", pp),
                      ("generation_config.json", dict(bos_token_id=1, eos_token_id=2,
                                                      pad_token_id=0))):
        with open(os.path.join(outdir, name), "w") as f:
            json.dump(obj, f, indent=1)
    write_safetensors(os.path.join(outdir, "model.safetensors"), W)
    w, h = image_wh
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(1, w - 1)), (yy * 255 // max(1, h - 1)),
                    ((xx + yy) * 37) % 256], -1).astype(np.uint8)
    img[h // 3:h // 2, w // 4:w // 2] = (rng.integers(0, 256, 3)).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(outdir, "image.png"))

    # the prompt: bos, two ids, the image tokens (as many as the features), three ids
    probe = run_case(outdir, [1, 5, 6] + [97] * count_tokens(outdir) + [7, 8, 9], 8)
    write_safetensors(os.path.join(outdir, "io.safetensors"), probe)
    case = dict(case=os.path.basename(os.path.normpath(outdir)), seed=seed,
                model_class="transformers.LlavaNextForConditionalGeneration",
                description="LLaVA-NeXT variant made by tests/python/llava_next_ref.py (an "
                            "independent PyTorch float64 reference, not HF transformers): image "
                            "%dx%d (WxH), tile %d, patch %d, pinpoints %s (HxW), "
                            "vision_feature_layer %d; %d image tokens, %d views." %
                            (w, h, tile, patch, pinpoints, feature_layer,
                             int(probe["num_image_tokens"][0]), probe["pixel_values"].shape[1]),
                tolerance=dict(advice="float32 port vs float64 reference: |c - ref| <= 1e-4 * "
                                      "max(1, |ref|); token ids exact"),
                tensors={k: dict(dtype=str(v.dtype), shape=list(v.shape)) for k, v in probe.items()},
                files=sorted(os.listdir(outdir)) + ["case.json"])
    with open(os.path.join(outdir, "case.json"), "w") as f:
        json.dump(case, f, indent=1)


def count_tokens(folder):
    """Image tokens of the folder's image, from the processor's arithmetic (no model)."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    vc = cfg["vision_config"]
    img = Image.open(os.path.join(folder, "image.png"))
    w, h = img.size
    th, tw = select_best_resolution(h, w, cfg["image_grid_pinpoints"])
    side = vc["image_size"] // vc["patch_size"]
    feat = unpad(torch.zeros(1, th // vc["image_size"] * side, tw // vc["image_size"] * side), h, w)
    return side * side + feat.shape[1] * (feat.shape[2] + 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--image", default="90x40")
    ap.add_argument("--tile", type=int, default=28)
    ap.add_argument("--patch", type=int, default=7)
    ap.add_argument("--pinpoints", default="28,84;56,56;84,28;28,56")
    ap.add_argument("--feature-layer", type=int, default=-2)
    a = ap.parse_args(argv)
    pins = [[int(x) for x in p.split(",")] for p in a.pinpoints.split(";")]
    make_case(a.outdir, a.seed, [int(x) for x in a.image.split("x")], a.tile, a.patch, pins,
              a.feature_layer)


if __name__ == "__main__":
    sys.exit(main())
