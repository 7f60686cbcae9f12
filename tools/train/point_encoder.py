#!/usr/bin/python3
"""The point-cloud encoder (PointLLM's Point-BERT design) in PyTorch, as libmm runs it
(lib/tower_points.c, docs/model-format.md "Point encoder"), its GGUF writer, and a parity
check of the C encoder against it:

    tools/train/point_encoder.py --parity BIN [--cases N]

builds random encoders of varied shapes, writes each as a GGUF (tools/gguf.py) with a random
cloud as a binary PLY, runs BIN (tests/points_dump) on them and compares the outputs: the
largest |C - torch| over the largest |torch| must stay within 1e-4.

Steps (both implementations): centre on the mean and scale into the unit sphere (in double,
then float32); farthest point sampling of G centres from index seed % n (squared float32
distances, first index on ties); each centre's K nearest points (ties: lower index first);
per point [offset from the centre, colour] -> Linear, ReLU, Linear -> max over the group ->
Linear (the mini-PointNet); + Linear, GELU, Linear of the centre; the CLIP encoder layers of
models.py (pre-LN, quick-GELU); LayerNorm; projector Linear, GELU, Linear.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import models  # noqa: E402
from gguf import GGUFWriter  # noqa: E402


def normalise(xyz):
    x = xyz.double()
    c = x.mean(0)
    r = ((x - c) ** 2).sum(1).max().sqrt()
    scale = 1 / r if r > 0 else 1.0
    return ((x - c) * scale).float()


def dist2(a, b):
    d = a - b
    return d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]


def fps(xyz, m, seed):
    n = xyz.shape[0]
    idx = [seed % n]
    min_d = torch.full((n,), float("inf"))
    for _ in range(1, m):
        min_d = torch.minimum(min_d, dist2(xyz, xyz[idx[-1]]))
        idx.append(int(torch.argmax(min_d)))   # the first maximum, as the C loop
    return torch.tensor(idx)


def knn(xyz, centre, k):
    return torch.argsort(dist2(xyz, centre), stable=True)[:k]


class PointEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        d = c["hidden_size"]
        self.pn = nn.ModuleList([nn.Linear(c["in_channels"], c["pointnet_hidden"]),
                                 nn.Linear(c["pointnet_hidden"], c["pointnet_size"]),
                                 nn.Linear(c["pointnet_size"], d)])
        self.pos = nn.ModuleList([nn.Linear(3, c["position_hidden"]),
                                  nn.Linear(c["position_hidden"], d)])
        self.layers = nn.ModuleList(
            models.CLIPEncoderLayer(d, c["intermediate_size"], c["num_attention_heads"],
                                    c["layer_norm_eps"]) for _ in range(c["num_hidden_layers"]))
        self.post_ln = nn.LayerNorm(d, eps=c["layer_norm_eps"])
        self.proj = nn.ModuleList([nn.Linear(d, c["projection_dim"]),
                                   nn.Linear(c["projection_dim"], c["projection_dim"])])

    def groups(self, xyz, rgb, seed):
        """Centres [G, 3] and per-point features [G, K, C] of one cloud."""
        p = normalise(xyz)
        centres = p[fps(p, self.c["n_groups"], seed)]
        nb = torch.stack([knn(p, c, self.c["group_size"]) for c in centres])
        feat = p[nb] - centres[:, None, :]
        if self.c["in_channels"] == 6:
            colour = rgb[nb] if rgb is not None else torch.zeros_like(feat)
            feat = torch.cat([feat, colour], -1)
        return centres, feat

    def tokens(self, centres, feat):
        h = self.pn[1](F.relu(self.pn[0](feat))).max(1).values
        x = self.pn[2](h) + self.pos[1](F.gelu(self.pos[0](centres)))
        x = x[None]
        for layer in self.layers:
            x = layer(x)
        x = self.post_ln(x[0])
        return self.proj[1](F.gelu(self.proj[0](x)))

    def forward(self, xyz, rgb=None, seed=0):
        return self.tokens(*self.groups(xyz, rgb, seed))


def write_gguf(enc, path):
    """enc's weights and config in the layout of docs/model-format.md (clip.point.*, p.*)."""
    c = enc.c
    w = GGUFWriter(path, arch="clip")
    w.add("clip.has_point_encoder", True)
    for key, name in [("n_groups", "n_groups"), ("group_size", "group_size"),
                      ("in_channels", "in_channels"),
                      ("pointnet_hidden_length", "pointnet_hidden"),
                      ("pointnet_length", "pointnet_size"),
                      ("position_length", "position_hidden"),
                      ("projection_dim", "projection_dim"),
                      ("embedding_length", "hidden_size"),
                      ("feed_forward_length", "intermediate_size"),
                      ("block_count", "num_hidden_layers"),
                      ("attention.head_count", "num_attention_heads")]:
        w.add("clip.point." + key, int(c[name]), type="u32")
    w.add("clip.point.attention.layer_norm_epsilon", float(c["layer_norm_eps"]), type="f32")
    w.add("clip.point.hidden_act", "quick_gelu")

    def lin(prefix, m):
        w.add_tensor(prefix + ".weight", m.weight.detach().numpy().astype(np.float32))
        w.add_tensor(prefix + ".bias", m.bias.detach().numpy().astype(np.float32))
    for i, m in enumerate(enc.pn):
        lin("p.pn.%d" % i, m)
    for i, m in enumerate(enc.pos):
        lin("p.pos.%d" % i, m)
    for i, layer in enumerate(enc.layers):
        b = "p.blk.%d." % i
        lin(b + "attn_q", layer.self_attn.q_proj)
        lin(b + "attn_k", layer.self_attn.k_proj)
        lin(b + "attn_v", layer.self_attn.v_proj)
        lin(b + "attn_out", layer.self_attn.out_proj)
        lin(b + "ln1", layer.layer_norm1)
        lin(b + "ln2", layer.layer_norm2)
        lin(b + "ffn_up", layer.mlp.fc1)
        lin(b + "ffn_down", layer.mlp.fc2)
    lin("p.post_ln", enc.post_ln)
    lin("p.mm.0", enc.proj[0])
    lin("p.mm.2", enc.proj[1])
    w.write()


def write_ply(path, xyz, rgb):
    """Binary little-endian PLY: float x y z, and uchar colours when rgb is given."""
    n = xyz.shape[0]
    head = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % n
    head += "property float x\nproperty float y\nproperty float z\n"
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        head += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        fields += [("r", "u1"), ("g", "u1"), ("b", "u1")]
    rows = np.zeros(n, dtype=fields)
    for i, k in enumerate("xyz"):
        rows[k] = xyz[:, i]
    if rgb is not None:
        for i, k in enumerate("rgb"):
            rows[k] = rgb[:, i]
    with open(path, "wb") as f:
        f.write((head + "end_header\n").encode())
        f.write(rows.tobytes())


def random_config(rng):
    heads = int(rng.choice([1, 2, 4]))
    return {"n_groups": int(rng.integers(4, 40)), "group_size": int(rng.integers(1, 17)),
            "in_channels": int(rng.choice([3, 6])), "pointnet_hidden": int(rng.integers(4, 48)),
            "pointnet_size": int(rng.integers(4, 48)), "position_hidden": int(rng.integers(4, 32)),
            "hidden_size": heads * int(rng.integers(4, 17)),
            "intermediate_size": int(rng.integers(8, 64)),
            "num_attention_heads": heads, "num_hidden_layers": int(rng.integers(1, 4)),
            "layer_norm_eps": float(rng.choice([1e-5, 1e-6])),
            "projection_dim": int(rng.integers(8, 48))}


def parity(binary, cases, seed=7):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for case in range(cases):
            c = random_config(rng)
            enc = PointEncoder(c).eval()
            n = int(rng.integers(c["group_size"], 3000))
            if case == 1:   # fewer points than centres: sampling repeats index 0 once all are taken
                n = max(c["group_size"], c["n_groups"] // 2)
            # Points in a box off the origin at a random scale, so normalisation matters.
            xyz = (rng.normal(size=(n, 3)) * rng.uniform(0.01, 100) + rng.normal(size=3) * 10)
            xyz = xyz.astype(np.float32)
            rgb = rng.integers(0, 256, size=(n, 3)).astype(np.uint8) if case % 3 else None
            gguf, ply, out = (os.path.join(tmp, x) for x in ("p.gguf", "p.ply", "out.f32"))
            write_gguf(enc, gguf)
            write_ply(ply, xyz, rgb)
            pseed = int(rng.integers(0, 1 << 40))
            subprocess.run([binary, gguf, ply, str(pseed), out], check=True)
            got = np.fromfile(out, dtype=np.float32)
            with torch.no_grad():
                rgb_t = torch.from_numpy(rgb.astype(np.float32) / 255) if rgb is not None else None
                want = enc(torch.from_numpy(xyz), rgb_t, pseed).numpy()
            if got.size != want.size:
                print("case %d: %d values from C, %d from torch" % (case, got.size, want.size))
                return 1
            rel = float(np.abs(got - want.reshape(-1)).max() / np.abs(want).max())
            worst = max(worst, rel)
            print("case %d: n=%d G=%d K=%d C=%d D=%d layers=%d: max rel diff %.2e"
                  % (case, n, c["n_groups"], c["group_size"], c["in_channels"],
                     c["hidden_size"], c["num_hidden_layers"], rel))
            if not rel <= 1e-4:
                print("FAIL: above 1e-4")
                return 1
    print("PASS point encoder parity over %d cases: worst %.2e (<= 1e-4)" % (cases, worst))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parity", metavar="BIN", required=True, help="tests/points_dump")
    ap.add_argument("--cases", type=int, default=12)
    a = ap.parse_args()
    torch.set_num_threads(1)
    return parity(a.parity, a.cases)


if __name__ == "__main__":
    sys.exit(main())
