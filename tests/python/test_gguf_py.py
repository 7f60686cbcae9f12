#!/usr/bin/python3
"""Tests of tools/gguf.py and tools/convert_hf_to_gguf.py (unittest; numpy only).

References used, none of them the code under test:
  - the GGUF spec, as bytes assembled by hand in this file;
  - llama.cpp-written files in tests/vectors/tokenizer (re-written byte for byte);
  - the safetensors sources of tests/vectors/hf, parsed by a separate reader below;
  - torch's float16/bfloat16 rounding where torch is installed;
  - RoPE written out twice (HF rotate-half, llama.cpp adjacent pairs) for the Q/K permutation.

Run: /usr/bin/python3 tests/python/test_gguf_py.py   (MM_VECTORS_DIR=DIR overrides tests/vectors)
"""

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stderr

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gguf  # noqa: E402
import convert_hf_to_gguf as conv  # noqa: E402


# The reference vectors are part of the repository: a missing file is a failure, not a skip.
VECTORS = os.path.abspath(os.environ.get("MM_VECTORS_DIR") or os.path.join(ROOT, "tests", "vectors"))
HF = os.path.join(VECTORS, "hf")
VOCAB = os.path.join(VECTORS, "tokenizer")


def read_safetensors(path):
    """Independent minimal safetensors reader: name -> float32/int64 array."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": "<f4", "I64": "<i8", "F16": "<f2", "U8": "u1"}[e["dtype"]]
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b:8 + n + end], dt).reshape(e["shape"])
    return out


def load_json(path):
    with open(path) as f:
        return json.load(f)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def convert_quiet(case_dir, outdir, **kw):
    with redirect_stderr(io.StringIO()) as err:
        paths = conv.convert(case_dir, outdir, **kw)
    return paths, err.getvalue()


# ------------------------------------------------------------------------------------------
# GGUF reader / writer

ALL_SCALARS = {
    "u8": [0, 255], "i8": [-128, 127], "u16": [0, 65535], "i16": [-32768, 32767],
    "u32": [0, 2**32 - 1], "i32": [-2**31, 2**31 - 1], "u64": [0, 2**64 - 1],
    "i64": [-2**63, 2**63 - 1], "f32": [0.0, -1.5, 3.4028234663852886e38, 1e-45],
    "f64": [0.1, -1e300, 5e-324], "bool": [True, False], "str": ["", "h\u00e9llo \u2581\u4e16", "a\0b"],
}


class TestGGUFRoundTrip(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "t.gguf")

    def tearDown(self):
        self.dir.cleanup()

    def test_every_metadata_type(self):
        w = gguf.GGUFWriter(self.path, "test")
        expect = {}
        for t, values in ALL_SCALARS.items():
            for i, v in enumerate(values):
                w.add("s.%s.%d" % (t, i), v, type=t)
                expect["s.%s.%d" % (t, i)] = (t, v)
            w.add("a." + t, values, type="[%s]" % t)
            expect["a." + t] = ("[%s]" % t, values)
            w.add("e." + t, [], type="[%s]" % t)
            expect["e." + t] = ("[%s]" % t, [])
        nested = {"[[i32]]": [[1, -2], [], [3]], "[[str]]": [["a"], ["b", "c"]],
                  "[[[f64]]]": [[[1.0], [2.0, 3.0]], [[4.0]]], "[[bool]]": [[True], [False]]}
        for t, v in nested.items():
            w.add("n." + t, v, type=t)
            expect["n." + t] = (t, v)
        w.add("bad.utf8", "\udcff\udcfe", type="str")    # bytes ff fe through surrogateescape
        expect["bad.utf8"] = ("str", "\udcff\udcfe")
        w.write()
        r = gguf.GGUFReader(self.path)
        self.assertEqual(r.version, 3)
        self.assertEqual(r.kv.pop("general.architecture"), "test")
        for key, (t, v) in expect.items():
            self.assertEqual(r.types[key], t, key)
            if t in ("f32", "[f32]"):     # stored as float32: compare after rounding
                self.assertEqual(r.kv[key], np.float32(v).tolist() if t == "f32"
                                 else np.array(v, np.float32).tolist(), key)
            else:
                self.assertEqual(r.kv[key], v, key)
        self.assertEqual(len(r.kv), len(expect))

    def test_type_inference(self):
        w = gguf.GGUFWriter(self.path)
        for k, v in {"u": 7, "i": -7, "big": 2**40, "neg": -2**40, "f": 0.5, "b": True,
                     "s": "x", "ai": [1, 2], "af": [0.5], "as": ["a"], "aa": [[1], [2]]}.items():
            w.add(k, v)
        w.write()
        r = gguf.GGUFReader(self.path)
        self.assertEqual(r.types, {"u": "u32", "i": "i32", "big": "u64", "neg": "i64",
                                   "f": "f32", "b": "bool", "s": "str", "ai": "[i32]",
                                   "af": "[f32]", "as": "[str]", "aa": "[[i32]]"})

    def test_values_that_do_not_fit_are_refused(self):
        w = gguf.GGUFWriter(self.path)
        for v, t in ((256, "u8"), (-1, "u32"), ([2**31], "[i32]"), ([-1], "[u64]")):
            with self.assertRaises(gguf.GGUFError):
                w.add("k%d" % len(w.kv), v, type=t)
        with self.assertRaises(gguf.GGUFError):
            w.add("k", 1, type="u128")
        w.add("dup", 1)
        with self.assertRaises(gguf.GGUFError):
            w.add("dup", 2)

    def test_layout_matches_spec_bytes(self):
        """One key and one tensor, compared with the file assembled by hand from the spec."""
        w = gguf.GGUFWriter(self.path)
        w.add("k", 5, type="u16")
        w.add_tensor("w", np.array([[1.0, 2.0, 3.0]], np.float32))
        w.write()
        s = lambda b: struct.pack("<Q", len(b)) + b
        head = (b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + s(b"k") + struct.pack("<IH", 2, 5)
                + s(b"w") + struct.pack("<I", 2) + struct.pack("<QQ", 3, 1)
                + struct.pack("<IQ", 0, 0))
        head += b"\0" * (-len(head) % 32)
        body = struct.pack("<3f", 1, 2, 3) + b"\0" * 20
        self.assertEqual(read_bytes(self.path), head + body)

    def test_rewrites_llama_cpp_files_byte_for_byte(self):
        for name in ("ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"):
            src = os.path.join(VOCAB, name)
            r = gguf.GGUFReader(src)
            w = gguf.GGUFWriter(self.path)
            for k, v in r.kv.items():
                w.add(k, v, type=r.types[k])
            w.write()
            self.assertEqual(read_bytes(src), read_bytes(self.path), name)

    def test_tensor_types_shapes_alignment(self):
        rng = np.random.default_rng(0)
        for align in (32, 64, 8):
            w = gguf.GGUFWriter(self.path)
            if align != 32:
                w.add("general.alignment", align, type="u32")
            shapes = [(5,), (3, 7), (2, 3, 5), (2, 1, 3, 4)]
            src = {}
            for i, shp in enumerate(shapes):
                src["f32.%d" % i] = rng.standard_normal(shp).astype(np.float32)
                # values exactly representable in f16 and in bf16 round-trip exactly
                src["f16.%d" % i] = rng.standard_normal(shp).astype(np.float16).astype(np.float32)
                bf = (rng.standard_normal(shp).astype(np.float32).view(np.uint32) & 0xFFFF0000)
                src["bf16.%d" % i] = bf.view(np.float32)
            for name, a in src.items():
                w.add_tensor(name, a, name.split(".")[0])
            w.add_tensor("i32", np.arange(6, dtype=np.int32).reshape(2, 3), "i32")
            w.write()
            r = gguf.GGUFReader(self.path)
            for name, a in src.items():
                self.assertEqual(r.tensor_ne[name], list(reversed(a.shape)), name)
                self.assertEqual(r.tensor_types[name], name.split(".")[0])
                np.testing.assert_array_equal(r.tensors[name].astype(np.float32), a, name)
                self.assertEqual(r.tensor_offsets[name] % align, 0)
            np.testing.assert_array_equal(r.tensors["i32"], np.arange(6).reshape(2, 3))
            self.assertEqual(r.tensors["f16.1"].dtype, np.float16)

    def test_f16_bf16_rounding_matches_torch(self):
        try:
            import torch
        except ImportError:
            self.skipTest("torch not installed")
        rng = np.random.default_rng(1)
        x = np.concatenate([rng.standard_normal(4000).astype(np.float32) * 10.0 ** rng.integers(-6, 6, 4000),
                            np.array([65504, 65520, 1e-8, -0.0, np.inf, -np.inf], np.float32)])
        x = x.astype(np.float32)
        w = gguf.GGUFWriter(self.path)
        w.add_tensor("h", x, "f16")
        w.add_tensor("b", x, "bf16")
        w.write()
        r = gguf.GGUFReader(self.path)
        t = torch.from_numpy(x)
        np.testing.assert_array_equal(r.tensors["h"].astype(np.float32), t.half().float().numpy())
        np.testing.assert_array_equal(r.tensors["b"], t.bfloat16().float().numpy())
        nan = gguf.bf16_bits_to_f32(gguf.f32_to_bf16_bits(np.array([np.nan], np.float32)))
        self.assertTrue(np.isnan(nan[0]))

    def test_q8_0_q4_0_hand_made_blocks(self):
        # Q8_0 block: f16 scale then 32 int8; Q4_0: f16 scale then 16 bytes, value j in the
        # low nibble of byte j and value j+16 in the high nibble, both offset by 8.
        q8 = np.arange(-16, 16, dtype=np.int8)
        blk8 = np.float16(0.25).tobytes() + q8.tobytes()
        nib = np.arange(16, dtype=np.uint8)
        blk4 = np.float16(-2.0).tobytes() + (nib | ((15 - nib) << 4)).tobytes()
        w = gguf.GGUFWriter(self.path)
        w.add_tensor_raw("q8", [32], "q8_0", blk8)
        w.add_tensor_raw("q4", [32], "q4_0", blk4)
        w.write()
        r = gguf.GGUFReader(self.path)
        np.testing.assert_array_equal(r.tensors["q8"], np.arange(-16, 16) * 0.25)
        want4 = np.concatenate([nib.astype(np.float32) - 8, (15 - nib).astype(np.float32) - 8]) * -2
        np.testing.assert_array_equal(r.tensors["q4"], want4)

    def test_q8_0_q4_0_quantizers(self):
        rng = np.random.default_rng(2)
        x = rng.standard_normal((4, 64)).astype(np.float32)
        x[0, :32] = 0      # an all-zero block
        w = gguf.GGUFWriter(self.path)
        w.add_tensor("q8", x, "q8_0")
        w.add_tensor("q4", x, "q4_0")
        w.write()
        r = gguf.GGUFReader(self.path)
        blocks = x.reshape(-1, 32)
        amax = np.abs(blocks).max(1, keepdims=True)
        err8 = np.abs(r.tensors["q8"].reshape(-1, 32) - blocks)
        err4 = np.abs(r.tensors["q4"].reshape(-1, 32) - blocks)
        self.assertTrue(np.all(err8 <= amax / 127 * 0.5 + 1e-3 * amax + 1e-12))
        self.assertTrue(np.all(err4 <= amax / 8 * 0.5 + 1e-3 * amax + 1e-12))
        self.assertEqual(np.abs(r.tensors["q8"][0, :32]).max(), 0)
        with self.assertRaises(gguf.GGUFError):
            gguf.GGUFWriter(self.path).add_tensor("bad", np.zeros((2, 33)), "q8_0")

    def test_v2_is_read(self):
        w = gguf.GGUFWriter(self.path, "x")
        w.add_tensor("t", np.ones(4, np.float32))
        w.write()
        data = bytearray(read_bytes(self.path))
        data[4:8] = struct.pack("<I", 2)
        write_bytes(self.path, bytes(data))
        r = gguf.GGUFReader(self.path)
        self.assertEqual(r.version, 2)
        np.testing.assert_array_equal(r.tensors["t"], np.ones(4))

    def test_broken_files_raise(self):
        w = gguf.GGUFWriter(self.path, "x")
        w.add("k", ["a", "bb"])
        w.add_tensor("t", np.ones((2, 8), np.float32))
        w.write()
        good = read_bytes(self.path)
        bad = os.path.join(self.dir.name, "bad.gguf")

        def expect_error(data, what):
            write_bytes(bad, data)
            with self.assertRaises(gguf.GGUFError, msg=what):
                gguf.GGUFReader(bad)
        for cut in range(0, len(good) - 1, 7):     # truncated anywhere
            expect_error(good[:cut], "truncated at %d" % cut)
        expect_error(b"GGUX" + good[4:], "magic")
        expect_error(good[:4] + struct.pack("<I", 1) + good[8:], "version 1")
        expect_error(good[:16] + struct.pack("<Q", 2**60) + good[24:], "huge kv count")
        # string length of the first key made huge
        expect_error(good[:24] + struct.pack("<Q", 2**63) + good[32:], "huge string")
        # tensor data offset past the end: patch the last 8 bytes of the tensor info
        info_end = good.index(struct.pack("<Q", 1) + b"t" + struct.pack("<I", 2)) + 9 + 4 + 16 + 4
        expect_error(good[:info_end] + struct.pack("<Q", 4096) + good[info_end + 8:],
                     "data out of range")
        expect_error(good[:info_end] + struct.pack("<Q", 3) + good[info_end + 8:],
                     "misaligned offset")


# ------------------------------------------------------------------------------------------
# RoPE: the Q/K permutation makes llama.cpp's adjacent-pair RoPE equal HF's rotate-half

def rope_hf(x, pos, base):
    """x [T, n_head, hd]: HF rotate_half, pairs (i, i + hd/2)."""
    hd = x.shape[-1]
    inv = base ** (-np.arange(0, hd, 2) / hd)
    ang = pos[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]
    rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
    return x * cos + rot * sin


def rope_adjacent(x, pos, base):
    """x [T, n_head, hd]: llama.cpp's normal RoPE, pairs (2i, 2i+1)."""
    hd = x.shape[-1]
    theta = pos[:, None] * base ** (-np.arange(0, hd, 2) / hd)[None, :]
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def scores(q, k, rep):
    """q [T, H, hd], k [T, Hkv, hd] -> [H, T, T] with GQA head mapping h -> h // rep."""
    return np.einsum("thd,shd->hts", q, np.repeat(k, rep, axis=1))


class TestRopePermutation(unittest.TestCase):
    def check(self, wq, wk, H, Hkv, base, T=9):
        rng = np.random.default_rng(3)
        E = wq.shape[1]
        hd = wq.shape[0] // H
        x = rng.standard_normal((T, E))
        pos = np.arange(T, dtype=np.float64) + 3
        q_hf = rope_hf((x @ wq.T).reshape(T, H, hd), pos, base)
        k_hf = rope_hf((x @ wk.T).reshape(T, Hkv, hd), pos, base)
        wq_p, wk_p = conv.permute_rope_rows(wq, H), conv.permute_rope_rows(wk, Hkv)
        q_cpp = rope_adjacent((x @ wq_p.T).reshape(T, H, hd), pos, base)
        k_cpp = rope_adjacent((x @ wk_p.T).reshape(T, Hkv, hd), pos, base)
        s_hf, s_cpp = scores(q_hf, k_hf, H // Hkv), scores(q_cpp, k_cpp, H // Hkv)
        np.testing.assert_allclose(s_cpp, s_hf, rtol=1e-12, atol=1e-12)
        # without the permutation the scores differ (the check can fail)
        q_bad = rope_adjacent((x @ wq.T).reshape(T, H, hd), pos, base)
        k_bad = rope_adjacent((x @ wk.T).reshape(T, Hkv, hd), pos, base)
        self.assertGreater(np.abs(scores(q_bad, k_bad, H // Hkv) - s_hf).max(), 1e-3)

    def test_random_weights(self):
        rng = np.random.default_rng(4)
        for H, Hkv, hd in ((4, 4, 8), (8, 2, 16), (6, 3, 4)):
            E = 24
            self.check(rng.standard_normal((H * hd, E)), rng.standard_normal((Hkv * hd, E)),
                       H, Hkv, 10000.0)

    def test_llama_case_weights(self):
        w = read_safetensors(os.path.join(HF, "llama", "model.safetensors"))
        self.check(w["model.layers.0.self_attn.q_proj.weight"].astype(np.float64),
                   w["model.layers.0.self_attn.k_proj.weight"].astype(np.float64), 8, 2, 500000.0)

    def test_permutation_formula(self):
        """stored_row[h*hd + 2i + t] = hf_row[h*hd + t*hd/2 + i] (docs/model-format.md §1)."""
        n, hd = 3, 8
        w = np.arange(n * hd)[:, None] * 10 + np.arange(2)[None, :]
        p = conv.permute_rope_rows(w, n)
        for h in range(n):
            for i in range(hd // 2):
                for t in range(2):
                    np.testing.assert_array_equal(p[h * hd + 2 * i + t], w[h * hd + t * hd // 2 + i])
        np.testing.assert_array_equal(unpermute(p, n), w)


# ------------------------------------------------------------------------------------------
# converter on every reference case

def unpermute(w, n):
    """Inverse of the documented permutation, written with indices (independent of conv)."""
    hd = w.shape[0] // n
    out = np.empty_like(w)
    for h in range(n):
        for i in range(hd // 2):
            for t in range(2):
                out[h * hd + t * hd // 2 + i] = w[h * hd + 2 * i + t]
    return out


def vision_map(pre, D, L, fused_qkv=False, pre_ln=True, post_ln=True, class_tok=True,
               patch_bias=False):
    """GGUF name -> function(source dict) giving the expected array, for a vision tower."""
    m = {"v.patch_embd.weight": lambda s: s[pre + "embeddings.patch_embedding.weight"]}
    if patch_bias:
        m["v.patch_embd.bias"] = lambda s: s[pre + "embeddings.patch_embedding.bias"]
    if class_tok:
        m["v.class_embd"] = lambda s: s[pre + "embeddings.class_embedding"].reshape(D)
    pos = pre + "embeddings.position_embedding" + ("" if fused_qkv else ".weight")
    m["v.position_embd.weight"] = lambda s: s[pos].reshape(-1, D)
    lns = [("v.pre_ln", "pre_layrnorm")] * pre_ln + [("v.post_ln", "post_layernorm")] * post_ln
    for g, h in lns:
        for part in ("weight", "bias"):
            m["%s.%s" % (g, part)] = (lambda n: lambda s: s[n])(pre + h + "." + part)
    for i in range(L):
        p, b = "%sencoder.layers.%d." % (pre, i), "v.blk.%d." % i
        pairs = [("ln1", "layer_norm1"), ("ln2", "layer_norm2"), ("ffn_up", "mlp.fc1"),
                 ("ffn_down", "mlp.fc2")]
        if fused_qkv:
            for j, g in enumerate(("attn_q", "attn_k", "attn_v")):
                for part in ("weight", "bias"):
                    m[b + g + "." + part] = (lambda n, j: lambda s: s[n][j * D:(j + 1) * D])(
                        p + "self_attn.qkv." + part, j)
            pairs.append(("attn_out", "self_attn.projection"))
        else:
            pairs += [("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"),
                      ("attn_v", "self_attn.v_proj"), ("attn_out", "self_attn.out_proj")]
        for g, h in pairs:
            for part in ("weight", "bias"):
                m[b + g + "." + part] = (lambda n: lambda s: s[n])(p + h + "." + part)
    return m


def direct(pairs):
    return {g: (lambda n: lambda s: s[n])(h) for g, h in pairs}


def llama_map(pre, L, H, Hkv, lm_head):
    m = direct([("token_embd.weight", pre + "embed_tokens.weight"),
                ("output_norm.weight", pre + "norm.weight"), ("output.weight", lm_head)])
    for i in range(L):
        p, b = "%slayers.%d." % (pre, i), "blk.%d." % i
        m.update(direct([(b + "attn_norm.weight", p + "input_layernorm.weight"),
                         (b + "attn_v.weight", p + "self_attn.v_proj.weight"),
                         (b + "attn_output.weight", p + "self_attn.o_proj.weight"),
                         (b + "ffn_norm.weight", p + "post_attention_layernorm.weight"),
                         (b + "ffn_gate.weight", p + "mlp.gate_proj.weight"),
                         (b + "ffn_up.weight", p + "mlp.up_proj.weight"),
                         (b + "ffn_down.weight", p + "mlp.down_proj.weight")]))
        # stored permuted: compare after undoing the permutation (see unpermute)
        m[b + "attn_q.weight"] = ("unpermute", H, p + "self_attn.q_proj.weight")
        m[b + "attn_k.weight"] = ("unpermute", Hkv, p + "self_attn.k_proj.weight")
    return m


class TestConvertCases(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def convert(self, case, **kw):
        out = os.path.join(self.dir.name, case)
        paths, err = convert_quiet(os.path.join(HF, case), out, **kw)
        src = read_safetensors(os.path.join(HF, case, "model.safetensors"))
        return {os.path.basename(p): gguf.GGUFReader(p) for p in paths}, src, err

    def check_tensors(self, r, src, mapping, used):
        """Every tensor in the file is expected, equal to its source; records sources used."""
        self.assertEqual(sorted(r.tensors), sorted(mapping))
        for name, fn in mapping.items():
            got = r.tensors[name]
            if isinstance(fn, tuple):
                _, n, hf = fn
                np.testing.assert_array_equal(unpermute(got, n), src[hf], name)
                self.assertFalse(np.array_equal(got, src[hf]), name + " not permuted")
                used.add(hf)
                continue
            want = fn(src)
            self.assertEqual(r.tensor_types[name], "f32", name)
            self.assertEqual(got.shape, want.shape, name)
            self.assertEqual(r.tensor_ne[name], list(reversed(want.shape)), name)
            np.testing.assert_array_equal(got, want, name)
            fn(_Recorder(src, used))

    def test_llama(self):
        files, src, err = self.convert("llama")
        self.assertIn("token ids only", err)
        r = files["model.gguf"]
        cfg = load_json(os.path.join(HF, "llama", "config.json"))
        used = set()
        self.check_tensors(r, src, llama_map("model.", 2, 8, 2, "lm_head.weight"), used)
        self.assertEqual(used, set(src))
        kv = r.kv
        self.assertEqual(kv["general.architecture"], "llama")
        self.assertEqual((kv["llama.embedding_length"], kv["llama.block_count"],
                          kv["llama.attention.head_count"], kv["llama.attention.head_count_kv"],
                          kv["llama.feed_forward_length"], kv["llama.vocab_size"],
                          kv["llama.context_length"], kv["llama.rope.dimension_count"],
                          kv["llama.attention.key_length"]),
                         (64, 2, 8, 2, 128, 99, 128, 8, 8))
        self.assertEqual(kv["llama.rope.freq_base"], np.float32(cfg["rope_theta"]))
        self.assertEqual(kv["llama.attention.layer_norm_rms_epsilon"], np.float32(1e-5))
        self.assertFalse(any(k.startswith("tokenizer.") for k in kv))

    def test_llava(self):
        files, src, err = self.convert("llava")
        used = set()
        text, mm = files["model.gguf"], files["mmproj.gguf"]
        self.check_tensors(text, src, llama_map("language_model.model.", 2, 4, 2,
                                                "language_model.lm_head.weight"), used)
        m = vision_map("vision_tower.vision_model.", 32, 3, post_ln=False)
        m.update(direct([("mm.0.weight", "multi_modal_projector.linear_1.weight"),
                         ("mm.0.bias", "multi_modal_projector.linear_1.bias"),
                         ("mm.2.weight", "multi_modal_projector.linear_2.weight"),
                         ("mm.2.bias", "multi_modal_projector.linear_2.bias")]))
        self.check_tensors(mm, src, m, used)
        unused = set(src) - used
        self.assertEqual(unused, {"vision_tower.vision_model.post_layernorm.weight",
                                  "vision_tower.vision_model.post_layernorm.bias"})
        kv = mm.kv
        self.assertEqual(kv["clip.projector_type"], "mlp")
        self.assertEqual(kv["clip.vision.feature_layer"], [2])     # -2 of 3 layers
        self.assertEqual(kv["clip.vision.block_count"], 3)
        self.assertEqual(kv["clip.vision.feature_select"], "default")
        self.assertEqual(kv["clip.vision.projector.hidden_act"], "gelu")
        self.assertEqual(kv["clip.vision.hidden_act"], "quick_gelu")
        self.assertFalse(kv["clip.use_gelu"])
        self.assertEqual(kv["clip.image_token_id"], 97)
        pp = load_json(os.path.join(HF, "llava", "preprocessor_config.json"))
        self.assertEqual(kv["clip.vision.image_mean"], np.float32(pp["image_mean"]).tolist())
        self.assertEqual(kv["clip.vision.image_std"], np.float32(pp["image_std"]).tolist())
        self.assertEqual((kv["clip.vision.image_size"], kv["clip.vision.patch_size"],
                          kv["clip.vision.embedding_length"],
                          kv["clip.vision.feed_forward_length"],
                          kv["clip.vision.attention.head_count"]), (32, 8, 32, 37, 4))
        self.assertNotIn("tokenizer.ggml.tokens", text.kv)
        self.assertIn("output.weight", text.tensors)   # tie_word_embeddings false

    def test_clip(self):
        files, src, err = self.convert("clip")
        r = files["model.gguf"]
        used = set()
        m = vision_map("vision_model.", 32, 2)
        m.update(direct([("v.proj.weight", "visual_projection.weight"),
                         ("t.proj.weight", "text_projection.weight"),
                         ("t.token_embd.weight", "text_model.embeddings.token_embedding.weight"),
                         ("t.position_embd.weight",
                          "text_model.embeddings.position_embedding.weight"),
                         ("t.post_ln.weight", "text_model.final_layer_norm.weight"),
                         ("t.post_ln.bias", "text_model.final_layer_norm.bias")]))
        for i in range(2):
            p, b = "text_model.encoder.layers.%d." % i, "t.blk.%d." % i
            for g, h in (("ln1", "layer_norm1"), ("ln2", "layer_norm2"), ("ffn_up", "mlp.fc1"),
                         ("ffn_down", "mlp.fc2"), ("attn_q", "self_attn.q_proj"),
                         ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"),
                         ("attn_out", "self_attn.out_proj")):
                m.update(direct([(b + g + ".weight", p + h + ".weight"),
                                 (b + g + ".bias", p + h + ".bias")]))
        self.check_tensors(r, src, m, used)
        self.assertEqual(set(src) - used, {"logit_scale"})
        kv = r.kv
        self.assertEqual(kv["clip.logit_scale"], np.float32(src["logit_scale"]))
        self.assertAlmostEqual(np.exp(kv["clip.logit_scale"]), 14.284856, places=5)
        self.assertTrue(kv["clip.has_text_encoder"] and kv["clip.has_vision_encoder"])
        self.assertFalse(kv["clip.has_llava_projector"])
        self.assertNotIn("clip.projector_type", kv)
        self.assertEqual((kv["clip.text.eos_token_id"], kv["clip.text.pooling"],
                          kv["clip.text.context_length"], kv["clip.text.vocab_size"],
                          kv["clip.text.projection_dim"], kv["clip.vision.projection_dim"],
                          kv["clip.text.hidden_act"]),
                         (98, "first_eos", 16, 99, 16, 16, "quick_gelu"))

    def test_siglip(self):
        files, src, err = self.convert("siglip_vision")
        r = files["model.gguf"]
        used = set()
        D = 32
        m = vision_map("vision_model.", D, 2, pre_ln=False, class_tok=False, patch_bias=True)
        h = "vision_model.head."
        m["v.head.probe"] = lambda s: s[h + "probe"].reshape(D)
        for j, g in enumerate(("attn_q", "attn_k", "attn_v")):
            m["v.head.%s.weight" % g] = (lambda j: lambda s: s[h + "attention.in_proj_weight"][j * D:(j + 1) * D])(j)
            m["v.head.%s.bias" % g] = (lambda j: lambda s: s[h + "attention.in_proj_bias"][j * D:(j + 1) * D])(j)
        for g, hf in (("attn_out", "attention.out_proj"), ("ln", "layernorm"),
                      ("ffn_up", "mlp.fc1"), ("ffn_down", "mlp.fc2")):
            m.update(direct([("v.head.%s.weight" % g, h + hf + ".weight"),
                             ("v.head.%s.bias" % g, h + hf + ".bias")]))
        self.check_tensors(r, src, m, used)
        self.assertEqual(used, set(src))
        kv = r.kv
        self.assertEqual(kv["clip.vision.hidden_act"], "gelu_tanh")
        self.assertTrue(kv["clip.use_gelu"])
        self.assertEqual(kv["clip.vision.attention.layer_norm_epsilon"], np.float32(1e-6))
        self.assertEqual(kv["clip.vision.image_mean"], [0.5] * 3)

    def test_blip2(self):
        files, src, err = self.convert("blip2")
        text, mm = files["model.gguf"], files["mmproj.gguf"]
        used = set()
        pre = "language_model.model.decoder."
        m = direct([("token_embd.weight", pre + "embed_tokens.weight"),
                    ("position_embd.weight", pre + "embed_positions.weight"),
                    ("output_norm.weight", pre + "final_layer_norm.weight"),
                    ("output_norm.bias", pre + "final_layer_norm.bias")])
        for i in range(2):
            p, b = "%slayers.%d." % (pre, i), "blk.%d." % i
            for g, h in (("attn_norm", "self_attn_layer_norm"), ("ffn_norm", "final_layer_norm"),
                         ("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"),
                         ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.out_proj"),
                         ("ffn_up", "fc1"), ("ffn_down", "fc2")):
                m.update(direct([(b + g + ".weight", p + h + ".weight"),
                                 (b + g + ".bias", p + h + ".bias")]))
        self.check_tensors(text, src, m, used)
        self.assertNotIn("output.weight", text.tensors)       # OPT ties lm_head
        m = vision_map("vision_model.", 32, 2, fused_qkv=True, pre_ln=False, patch_bias=True)
        Dq = 32
        m["qformer.query_embd"] = lambda s: s["query_tokens"].reshape(4, Dq)
        m.update(direct([("qformer.embd_ln.weight", "qformer.layernorm.weight"),
                         ("qformer.embd_ln.bias", "qformer.layernorm.bias"),
                         ("mm.proj.weight", "language_projection.weight"),
                         ("mm.proj.bias", "language_projection.bias")]))
        for i in range(2):
            p, b = "qformer.encoder.layer.%d." % i, "qformer.blk.%d." % i
            for g, h in (("attn_q", "attention.attention.query"),
                         ("attn_k", "attention.attention.key"),
                         ("attn_v", "attention.attention.value"),
                         ("attn_out", "attention.output.dense"),
                         ("attn_ln", "attention.output.LayerNorm"),
                         ("cross_q", "crossattention.attention.query"),
                         ("cross_k", "crossattention.attention.key"),
                         ("cross_v", "crossattention.attention.value"),
                         ("cross_out", "crossattention.output.dense"),
                         ("cross_ln", "crossattention.output.LayerNorm"),
                         ("ffn_up", "intermediate_query.dense"),
                         ("ffn_down", "output_query.dense"),
                         ("ffn_ln", "output_query.LayerNorm")):
                m.update(direct([(b + g + ".weight", p + h + ".weight"),
                                 (b + g + ".bias", p + h + ".bias")]))
        self.check_tensors(mm, src, m, used)
        self.assertEqual(used, set(src))
        kv = mm.kv
        self.assertEqual(kv["clip.projector_type"], "qformer")
        self.assertEqual((kv["clip.qformer.query_count"], kv["clip.qformer.block_count"],
                          kv["clip.qformer.cross_attention_frequency"],
                          kv["clip.qformer.encoder_width"]), (4, 2, 1, 32))
        self.assertEqual(kv["clip.qformer.attention.layer_norm_epsilon"], np.float32(1e-12))
        self.assertEqual(kv["clip.vision.attention.layer_norm_epsilon"], np.float32(1e-6))
        self.assertNotIn("clip.image_token_id", kv)     # BLIP-2: prepended
        tk = text.kv
        self.assertEqual((tk["general.architecture"], tk["opt.position_offset"],
                          tk["opt.layer_norm_before"], tk["opt.hidden_act"],
                          tk["opt.context_length"], tk["opt.feed_forward_length"]),
                         ("opt", 2, True, "relu", 64, 37))

    def test_idefics2_perceiver(self):
        files, src, err = self.convert("idefics2_perceiver")
        r = files["model.gguf"]
        used = set()
        m = direct([("perceiver.latents", "latents"), ("perceiver.post_ln.weight", "norm.weight")])
        for i in range(2):
            p, b = "layers.%d." % i, "perceiver.blk.%d." % i
            m.update(direct([(b + "ln_latents.weight", p + "input_latents_norm.weight"),
                             (b + "ln_context.weight", p + "input_context_norm.weight"),
                             (b + "ffn_norm.weight", p + "post_attention_layernorm.weight")]
                            + [(b + "attn_%s.weight" % g, p + "self_attn.%s_proj.weight" % h)
                               for g, h in (("q", "q"), ("k", "k"), ("v", "v"), ("out", "o"))]
                            + [(b + "ffn_%s.weight" % g, p + "mlp.%s_proj.weight" % g)
                               for g in ("gate", "up", "down")]))
        self.check_tensors(r, src, m, used)
        self.assertEqual(used, set(src))
        kv = r.kv
        self.assertEqual((kv["clip.projector_type"], kv["clip.perceiver.latent_count"],
                          kv["clip.perceiver.block_count"], kv["clip.perceiver.attention.head_count"],
                          kv["clip.perceiver.attention.head_count_kv"],
                          kv["clip.perceiver.attention.key_length"],
                          kv["clip.perceiver.feed_forward_length"], kv["clip.perceiver.hidden_act"]),
                         ("perceiver", 4, 2, 4, 2, 8, 128, "silu"))
        self.assertEqual(kv["clip.perceiver.attention.layer_norm_rms_epsilon"], np.float32(1e-5))
        self.assertFalse(kv["clip.has_vision_encoder"])

    def test_outtypes(self):
        for outtype, dt in (("f16", np.float16), ("bf16", None)):
            files, src, _ = self.convert("llava", outtype=outtype)
            for r in files.values():
                self.assertEqual(r.kv["general.file_type"], gguf.FILE_TYPE[outtype])
                for name, t in r.tensor_types.items():
                    small = (len(r.tensor_ne[name]) == 1
                             or name.endswith(("position_embd.weight", "class_embd")))
                    self.assertEqual(t, "f32" if small else outtype, name)
            q = files["mmproj.gguf"].tensors["mm.0.weight"].astype(np.float32)
            want = src["multi_modal_projector.linear_1.weight"]
            if dt is not None:
                np.testing.assert_array_equal(q, want.astype(dt).astype(np.float32))
            else:
                np.testing.assert_allclose(q, want, rtol=2 ** -8)

    def test_vocab_of_another_size_is_refused_by_the_command(self):
        # the HF llama case has a small vocabulary; llama.cpp's SPM test vocabulary has 32000
        vocab = os.path.join(VOCAB, "ggml-vocab-llama-spm.gguf")
        rows = read_safetensors(os.path.join(HF, "llama", "model.safetensors"))[
            "model.embed_tokens.weight"].shape[0]
        out = os.path.join(self.dir.name, "out")
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_hf_to_gguf.py"),
                            os.path.join(HF, "llama"), "-o", out, "--vocab", vocab],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("convert_hf_to_gguf: error: --vocab %s has 32000 tokens but the model's "
                      "embedding has %d rows" % (vocab, rows), r.stderr)
        self.assertEqual(r.stdout, "")          # no path printed: nothing was written
        self.assertFalse(os.path.exists(out))

    def test_outtype_q8_0(self):
        files, src, _ = self.convert("llava", outtype="q8_0")
        quantized = 0
        for r in files.values():
            self.assertEqual(r.kv["general.file_type"], 7)  # llama.cpp's MOSTLY_Q8_0
            for name, t in r.tensor_types.items():
                ne = r.tensor_ne[name]
                small = len(ne) == 1 or name.endswith(("position_embd.weight", "class_embd"))
                want = "f32" if small else "q8_0" if len(ne) == 2 and ne[0] % 32 == 0 else "f16"
                self.assertEqual(t, want, name)
                quantized += t == "q8_0"
        self.assertGreater(quantized, 0)
        want = src["multi_modal_projector.linear_1.weight"]
        q = files["mmproj.gguf"].tensors["mm.0.weight"]
        np.testing.assert_array_equal(q, gguf.dequantize_q8_0(gguf.quantize_q8_0(want), want.size)
                                      .reshape(want.shape))


class _Recorder(dict):
    """Passed to a mapping function to learn which source names it reads."""

    def __init__(self, src, used):
        super().__init__(src)
        self.used = used

    def __getitem__(self, k):
        self.used.add(k)
        return dict.__getitem__(self, k)


# ------------------------------------------------------------------------------------------
# refusals and tokenizers on synthetic checkpoints

def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def tiny_llama(folder, **cfg_over):
    """A 1-layer llama checkpoint (E 8, 2 heads, 1 kv head, vocab 10)."""
    rng = np.random.default_rng(5)
    E, F, V = 8, 12, 10
    t = {"model.embed_tokens.weight": rng.standard_normal((V, E)),
         "model.norm.weight": rng.standard_normal(E), "lm_head.weight": rng.standard_normal((V, E))}
    p = "model.layers.0."
    for n, shp in (("input_layernorm.weight", (E,)), ("post_attention_layernorm.weight", (E,)),
                   ("self_attn.q_proj.weight", (E, E)), ("self_attn.k_proj.weight", (4, E)),
                   ("self_attn.v_proj.weight", (4, E)), ("self_attn.o_proj.weight", (E, E)),
                   ("mlp.gate_proj.weight", (F, E)), ("mlp.up_proj.weight", (F, E)),
                   ("mlp.down_proj.weight", (E, F))):
        t[p + n] = rng.standard_normal(shp)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": E,
           "intermediate_size": F, "num_attention_heads": 2, "num_key_value_heads": 1,
           "num_hidden_layers": 1, "vocab_size": V, "rms_norm_eps": 1e-6}
    cfg.update(cfg_over)
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "model.safetensors"), t)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    return t


class TestSynthetic(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.src = os.path.join(self.dir.name, "ck")
        self.out = os.path.join(self.dir.name, "out")

    def tearDown(self):
        self.dir.cleanup()

    def refused(self, pattern):
        shutil.rmtree(self.out, ignore_errors=True)
        with self.assertRaises(conv.ConvertError) as cm:
            convert_quiet(self.src, self.out)
        self.assertRegex(str(cm.exception), pattern)
        self.assertFalse(os.path.exists(os.path.join(self.out, "model.gguf")))

    def write_vocab(self, path, n):
        """A GGUF holding the first n tokens of llama.cpp's SPM test vocabulary (arrays cut to n,
        the other tokenizer.ggml.* keys as they are)."""
        ref = gguf.GGUFReader(os.path.join(VOCAB, "ggml-vocab-llama-spm.gguf"))
        w = gguf.GGUFWriter(path)
        for k, v in ref.kv.items():
            if k.startswith("tokenizer.ggml."):
                w.add(k, v[:n] if isinstance(v, list) else v, type=ref.types[k])
        w.write()
        return gguf.GGUFReader(path)

    def test_vocab_from_gguf(self):
        tiny_llama(self.src)                    # 10 embedding rows
        vocab = os.path.join(self.dir.name, "vocab10.gguf")
        ref = self.write_vocab(vocab, 10)
        paths, _ = convert_quiet(self.src, self.out, vocab=vocab)
        r = gguf.GGUFReader(paths[0])
        copied = {k: v for k, v in r.kv.items() if k.startswith("tokenizer.ggml.")}
        self.assertEqual(copied, ref.kv)
        for k in copied:
            self.assertEqual(r.types[k], ref.types[k], k)
        self.assertEqual(len(copied["tokenizer.ggml.tokens"]), 10)
        # one token more or less than the embedding's rows: refused, nothing written
        for n in (9, 11):
            shutil.rmtree(self.out, ignore_errors=True)
            vocab_n = os.path.join(self.dir.name, "vocab%d.gguf" % n)
            self.write_vocab(vocab_n, n)
            with self.assertRaises(conv.ConvertError) as cm:
                convert_quiet(self.src, self.out, vocab=vocab_n)
            self.assertIn("has %d tokens but the model's embedding has 10 rows" % n,
                          str(cm.exception))
            self.assertFalse(os.path.exists(self.out))

    def test_refusals(self):
        tiny_llama(self.src, rope_scaling={"rope_type": "dynamic", "factor": 2.0})
        self.refused("rope_scaling type 'dynamic'")
        tiny_llama(self.src, hidden_act="gelu")
        self.refused("hidden_act = 'gelu' is not supported")
        tiny_llama(self.src, num_key_value_heads=3)
        self.refused("not a multiple of num_key_value_heads")
        t = tiny_llama(self.src)
        t["model.layers.0.self_attn.rotary_emb.extra"] = np.zeros(3)
        write_safetensors(os.path.join(self.src, "model.safetensors"), t)
        self.refused("does not know how to place: model.layers.0.self_attn.rotary_emb.extra")
        tiny_llama(self.src, architectures=["GPTNeoXForCausalLM"])
        self.refused("model class 'GPTNeoXForCausalLM' is not supported")

    def test_linear_rope_scaling_tied_and_sharded(self):
        t = tiny_llama(self.src, rope_scaling={"type": "linear", "factor": 4.0},
                       tie_word_embeddings=True)
        del t["lm_head.weight"]
        os.remove(os.path.join(self.src, "model.safetensors"))
        names = sorted(t)
        shards = {"model-00001-of-00002.safetensors": names[:5],
                  "model-00002-of-00002.safetensors": names[5:]}
        for fname, keys in shards.items():
            write_safetensors(os.path.join(self.src, fname), {k: t[k] for k in keys})
        with open(os.path.join(self.src, "model.safetensors.index.json"), "w") as f:
            json.dump({"weight_map": {k: fn for fn, ks in shards.items() for k in ks}}, f)
        paths, _ = convert_quiet(self.src, self.out)
        r = gguf.GGUFReader(paths[0])
        self.assertEqual(r.kv["llama.rope.scaling.type"], "linear")
        self.assertEqual(r.kv["llama.rope.scaling.factor"], 4.0)
        self.assertNotIn("output.weight", r.tensors)
        np.testing.assert_array_equal(r.tensors["token_embd.weight"],
                                      t["model.embed_tokens.weight"].astype(np.float32))
        np.testing.assert_array_equal(
            unpermute(r.tensors["blk.0.attn_k.weight"], 1),
            t["model.layers.0.self_attn.k_proj.weight"].astype(np.float32))

    def test_sentencepiece_model(self):
        """tokenizer.model, hand-encoded protobuf: pieces (1: piece, 2: score, 3: type) and
        trainer_spec (2) with unk/bos/eos ids 0/1/2 and pad -1 (default)."""
        tiny_llama(self.src)

        def varint(v):
            out = b""
            while True:
                b, v = v & 0x7F, v >> 7
                out += bytes([b | (0x80 if v else 0)])
                if not v:
                    return out

        def ld(field, payload):
            return varint(field << 3 | 2) + varint(len(payload)) + payload
        pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("<0x41>", 0.0, 6),
                  ("\u2581a", -1.5, 1), ("b", -2.25, 1)]
        blob = b""
        for text, score, typ in pieces:
            msg = ld(1, text.encode()) + varint(2 << 3 | 5) + struct.pack("<f", score)
            msg += varint(3 << 3) + varint(typ)
            blob += ld(1, msg)
        blob += ld(2, varint(41 << 3) + varint(1) + varint(42 << 3) + varint(2))
        with open(os.path.join(self.src, "tokenizer.model"), "wb") as f:
            f.write(blob)
        paths, err = convert_quiet(self.src, self.out)
        kv = gguf.GGUFReader(paths[0]).kv
        self.assertEqual(kv["tokenizer.ggml.model"], "llama")
        pad = ["[PAD%d]" % i for i in range(6, 10)]      # up to the 10 embedding rows
        self.assertEqual(kv["tokenizer.ggml.tokens"], [p[0] for p in pieces] + pad)
        self.assertEqual(kv["tokenizer.ggml.scores"], [p[1] for p in pieces] + [0.0] * 4)
        self.assertEqual(kv["tokenizer.ggml.token_type"], [p[2] for p in pieces] + [5] * 4)
        self.assertTrue(kv["tokenizer.ggml.add_bos_token"])
        # added tokens from tokenizer.json go past the pieces (LLaVA's <image>)
        with open(os.path.join(self.src, "tokenizer.json"), "w") as f:
            json.dump({"added_tokens": [{"id": 7, "content": "<image>", "special": True},
                                        {"id": 1, "content": "<s>", "special": True}]}, f)
        paths, err = convert_quiet(self.src, self.out)
        kv = gguf.GGUFReader(paths[0]).kv
        self.assertEqual(kv["tokenizer.ggml.tokens"][6:], ["[PAD6]", "<image>", "[PAD8]", "[PAD9]"])
        self.assertEqual(kv["tokenizer.ggml.token_type"][:8], [2, 3, 3, 6, 1, 1, 5, 3])
        self.assertEqual(kv["tokenizer.ggml.scores"][7], -1000.0)
        self.assertEqual((kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"],
                          kv["tokenizer.ggml.unknown_token_id"]), (1, 2, 0))
        self.assertNotIn("tokenizer.ggml.padding_token_id", kv)

    def test_tokenizer_json(self):
        tiny_llama(self.src)
        spm = {"model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>",
                         "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "a": 4,
                                   "b": 5, "ab": 6, "\u2581ab": 7, "\u2581": 8},
                         "merges": ["a b", "\u2581 ab"]},
               "added_tokens": [{"id": 1, "content": "<s>", "special": True},
                                {"id": 2, "content": "</s>", "special": True}],
               "pre_tokenizer": None}
        with open(os.path.join(self.src, "tokenizer.json"), "w") as f:
            json.dump(spm, f)
        with open(os.path.join(self.src, "tokenizer_config.json"), "w") as f:
            json.dump({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": True}, f)
        paths, _ = convert_quiet(self.src, self.out)
        kv = gguf.GGUFReader(paths[0]).kv
        self.assertEqual(kv["tokenizer.ggml.model"], "llama")
        self.assertEqual(kv["tokenizer.ggml.token_type"], [2, 3, 3, 6, 1, 1, 1, 1, 1, 5])
        self.assertEqual(kv["tokenizer.ggml.scores"], [0, -1000, -1000, 0, 0, 0, 0, -1, 0, 0])
        self.assertEqual((kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"],
                          kv["tokenizer.ggml.add_bos_token"]), (1, 2, True))

        gpt2 = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "</s>": 3},
                          "merges": [["a", "b"]]},
                "added_tokens": [{"id": 3, "content": "</s>", "special": True}],
                "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                                  "use_regex": True}}
        with open(os.path.join(self.src, "tokenizer.json"), "w") as f:
            json.dump(gpt2, f)
        os.remove(os.path.join(self.src, "tokenizer_config.json"))
        paths, _ = convert_quiet(self.src, self.out)
        kv = gguf.GGUFReader(paths[0]).kv
        self.assertEqual((kv["tokenizer.ggml.model"], kv["tokenizer.ggml.pre"]), ("gpt2", "gpt-2"))
        self.assertEqual(kv["tokenizer.ggml.merges"], ["a b"])
        self.assertEqual(kv["tokenizer.ggml.token_type"], [1, 1, 1, 3] + [5] * 6)
        self.assertNotIn("tokenizer.ggml.add_bos_token", kv)

        clip = {"model": {"type": "BPE", "vocab": {"a</w>": 0, "<|endoftext|>": 1},
                          "merges": [], "end_of_word_suffix": "</w>"},
                "normalizer": {"type": "Sequence", "normalizers": [{"type": "Lowercase"}]},
                "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                    {"type": "Split"}, {"type": "ByteLevel", "use_regex": False}]},
                "post_processor": {"type": "RobertaProcessing"}}
        with open(os.path.join(self.src, "tokenizer.json"), "w") as f:
            json.dump(clip, f)
        paths, _ = convert_quiet(self.src, self.out)
        kv = gguf.GGUFReader(paths[0]).kv
        self.assertEqual(kv["tokenizer.ggml.model"], "clip")
        self.assertTrue(kv["tokenizer.ggml.add_bos_token"] and kv["tokenizer.ggml.add_eos_token"])

        clip["model"]["end_of_word_suffix"] = "@@"
        with open(os.path.join(self.src, "tokenizer.json"), "w") as f:
            json.dump(clip, f)
        self.refused("BPE flavour .* use --vocab FILE.gguf or --no-tokenizer")
        paths, err = convert_quiet(self.src, self.out, no_tokenizer=True)
        self.assertIn("--no-tokenizer", err)
        self.assertFalse(any(k.startswith("tokenizer.") for k in gguf.GGUFReader(paths[0]).kv))

        big = {"model": {"type": "BPE", "vocab": {"t%d" % i: i for i in range(11)}, "merges": []},
               "pre_tokenizer": {"type": "ByteLevel"}}
        with open(os.path.join(self.src, "tokenizer.json"), "w") as f:
            json.dump(big, f)
        self.refused("11 tokens but the model's embedding only 10 rows")


if __name__ == "__main__":
    unittest.main()
