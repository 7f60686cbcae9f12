#!/usr/bin/python3
"""Writes the seed corpus of the GGUF fuzz target: tests/fuzz/make_gguf_seeds.py OUTDIR

One tiny file per model kind of docs/model-format.md (llama with a SentencePiece vocabulary,
llama with a byte-level vocabulary and every tensor type, opt, a LLaVA mmproj, a CLIP dual
encoder with its tokenizer, SigLIP, a BLIP-2 mmproj, a perceiver resampler, a Qwen2-Audio
mmproj) and one file with
every metadata type, so that mutations start from inputs every loader accepts. Widths are a
few units, so each file is a few KiB and a fuzzer's mutations land in headers, keys and shapes
rather than in weights.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from gguf import GGUFWriter  # noqa: E402

rng = np.random.default_rng(5)


def writer(path, arch):
    """A writer with 8-byte alignment: less padding between the tiny tensors."""
    w = GGUFWriter(path, arch=arch)
    w.add("general.alignment", 8, type="u32")
    return w


def tensor(w, name, ne, dtype="f32", center=0.0):
    """Random tensor of ggml shape ne (ne[0] fastest)."""
    w.add_tensor(name, center + rng.uniform(-0.3, 0.3, size=tuple(reversed(ne))), dtype)


def spm_vocab(w):
    tokens = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", "<0xE2>", "\u2581", "a", "b", "c",
              "\u2581a", "ab", "\u2581ab", "bc", "\u2581c", "<|im_end|>"]
    types = [2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3]
    w.add("tokenizer.ggml.model", "llama")
    w.add("tokenizer.ggml.pre", "default")
    w.add("tokenizer.ggml.tokens", tokens)
    w.add("tokenizer.ggml.scores", [-float(i) for i in range(len(tokens))], type="[f32]")
    w.add("tokenizer.ggml.token_type", types)
    w.add("tokenizer.ggml.bos_token_id", 1)
    w.add("tokenizer.ggml.eos_token_id", 2)
    w.add("tokenizer.ggml.unknown_token_id", 0)
    w.add("tokenizer.ggml.add_bos_token", True)
    w.add("tokenizer.chat_template", "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}")
    return len(tokens)


def bpe_vocab(w, model="gpt2", pre="gpt-2"):
    if model == "clip":
        tokens = ["a", "b", "c", "a</w>", "b</w>", "c</w>", "ab", "ab</w>", "<|startoftext|>",
                  "<|endoftext|>"]
        merges = ["a b", "a b</w>"]
        types = [1] * 8 + [3, 3]
        bos, eos = 8, 9
    else:
        tokens = ["a", "b", "c", "\u0120", "\u0120a", "ab", "\u0120ab", "\u010a", "1", "2",
                  "12", "'s", "<|endoftext|>", "<pad>", "d", "e"]
        merges = ["\u0120 a", "a b", "\u0120a b", "1 2"]
        types = [1] * 12 + [3, 5, 1, 1]
        bos = eos = 12
    w.add("tokenizer.ggml.model", model)
    w.add("tokenizer.ggml.pre", pre)
    w.add("tokenizer.ggml.tokens", tokens)
    w.add("tokenizer.ggml.token_type", types)
    w.add("tokenizer.ggml.merges", merges)
    w.add("tokenizer.ggml.bos_token_id", bos)
    w.add("tokenizer.ggml.eos_token_id", eos)
    if model == "clip":
        w.add("tokenizer.ggml.add_bos_token", True)
        w.add("tokenizer.ggml.add_eos_token", True)
    return len(tokens)


def llama(path, vocab, E, L, H, Hkv, hd, F, ctx, types, biases=False, tied=False):
    w = writer(path, "llama")
    V = vocab(w)
    for k, v in (("vocab_size", V), ("context_length", ctx), ("embedding_length", E),
                 ("block_count", L), ("feed_forward_length", F), ("attention.head_count", H),
                 ("attention.head_count_kv", Hkv), ("attention.key_length", hd),
                 ("attention.value_length", hd), ("rope.dimension_count", hd)):
        w.add("llama." + k, v)
    w.add("llama.attention.layer_norm_rms_epsilon", 1e-5, type="f32")
    w.add("llama.rope.freq_base", 10000.0, type="f32")
    tensor(w, "token_embd.weight", [E, V], types.get("embd", "f32"))
    for i in range(L):
        b = "blk.%d." % i
        tensor(w, b + "attn_norm.weight", [E], center=1)
        tensor(w, b + "attn_q.weight", [E, H * hd], types.get("q", "f32"))
        tensor(w, b + "attn_k.weight", [E, Hkv * hd], types.get("k", "f32"))
        tensor(w, b + "attn_v.weight", [E, Hkv * hd], types.get("v", "f32"))
        tensor(w, b + "attn_output.weight", [H * hd, E], types.get("o", "f32"))
        tensor(w, b + "ffn_norm.weight", [E], center=1)
        tensor(w, b + "ffn_gate.weight", [E, F], types.get("ffn", "f32"))
        tensor(w, b + "ffn_up.weight", [E, F], types.get("ffn", "f32"))
        tensor(w, b + "ffn_down.weight", [F, E], types.get("ffn", "f32"))
        if biases:
            for name, n in (("attn_q", H * hd), ("attn_k", Hkv * hd), ("attn_v", Hkv * hd),
                            ("attn_output", E), ("ffn_gate", F), ("ffn_up", F), ("ffn_down", E)):
                tensor(w, b + name + ".bias", [n])
    tensor(w, "output_norm.weight", [E], center=1)
    if not tied:
        tensor(w, "output.weight", [E, V])
    w.write()


def opt(path):
    E, L, H, F, ctx = 8, 1, 2, 12, 8
    w = writer(path, "opt")
    V = bpe_vocab(w)
    for k, v in (("vocab_size", V), ("context_length", ctx), ("embedding_length", E),
                 ("block_count", L), ("feed_forward_length", F), ("attention.head_count", H),
                 ("position_offset", 2), ("word_embed_proj_dim", E)):
        w.add("opt." + k, v)
    w.add("opt.attention.layer_norm_epsilon", 1e-5, type="f32")
    w.add("opt.layer_norm_before", True)
    w.add("opt.hidden_act", "relu")
    tensor(w, "token_embd.weight", [E, V])
    tensor(w, "position_embd.weight", [E, ctx + 2])
    for i in range(L):
        b = "blk.%d." % i
        for n in ("attn_norm", "ffn_norm"):
            tensor(w, b + n + ".weight", [E], center=1)
            tensor(w, b + n + ".bias", [E])
        for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(w, b + n + ".weight", [E, E])
            tensor(w, b + n + ".bias", [E])
        tensor(w, b + "ffn_up.weight", [E, F])
        tensor(w, b + "ffn_up.bias", [F])
        tensor(w, b + "ffn_down.weight", [F, E])
        tensor(w, b + "ffn_down.bias", [E])
    tensor(w, "output_norm.weight", [E], center=1)
    tensor(w, "output_norm.bias", [E])
    w.write()


def blocks(w, prefix, L, D, F, qkv_bias=True):
    for i in range(L):
        b = "%s.blk.%d." % (prefix, i)
        for n in ("ln1", "ln2"):
            tensor(w, b + n + ".weight", [D], center=1)
            tensor(w, b + n + ".bias", [D])
        for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensor(w, b + n + ".weight", [D, D])
            if qkv_bias or n == "attn_out":
                tensor(w, b + n + ".bias", [D])
        tensor(w, b + "ffn_up.weight", [D, F])
        tensor(w, b + "ffn_up.bias", [F])
        tensor(w, b + "ffn_down.weight", [F, D])
        tensor(w, b + "ffn_down.bias", [D])


def vision(w, D=8, P=4, S=8, L=2, F=12, H=2, cls=True, pre_ln=True, post_ln=False,
           patch_bias=False, act="quick_gelu", resize="shortest_edge_crop"):
    w.add("clip.has_vision_encoder", True)
    w.add("clip.vision.hidden_act", act)
    for k, v in (("image_size", S), ("patch_size", P), ("embedding_length", D),
                 ("feed_forward_length", F), ("block_count", L), ("attention.head_count", H)):
        w.add("clip.vision." + k, v)
    w.add("clip.vision.attention.layer_norm_epsilon", 1e-5, type="f32")
    w.add("clip.vision.image_mean", [0.48, 0.46, 0.41], type="[f32]")
    w.add("clip.vision.image_std", [0.27, 0.26, 0.28], type="[f32]")
    w.add("clip.vision.image_resize", resize)
    tensor(w, "v.patch_embd.weight", [P, P, 3, D])
    if patch_bias:
        tensor(w, "v.patch_embd.bias", [D])
    if cls:
        tensor(w, "v.class_embd", [D])
    tensor(w, "v.position_embd.weight", [D, (S // P) ** 2 + cls])
    if pre_ln:
        tensor(w, "v.pre_ln.weight", [D], center=1)
        tensor(w, "v.pre_ln.bias", [D])
    if post_ln:
        tensor(w, "v.post_ln.weight", [D], center=1)
        tensor(w, "v.post_ln.bias", [D])
    blocks(w, "v", L, D, F)


def llava_mmproj(path):
    D, E = 8, 8
    w = writer(path, "clip")
    w.add("clip.has_text_encoder", False)
    w.add("clip.has_llava_projector", True)
    w.add("clip.projector_type", "mlp")
    vision(w, D=D)
    w.add("clip.vision.feature_layer", [1], type="[i32]")
    w.add("clip.vision.feature_select", "default")
    w.add("clip.vision.image_pad", "mean")
    w.add("clip.vision.projector.hidden_act", "gelu")
    w.add("clip.image_token_id", 5, type="i32")
    tensor(w, "mm.0.weight", [D, E])
    tensor(w, "mm.0.bias", [E])
    tensor(w, "mm.2.weight", [E, E])
    tensor(w, "mm.2.bias", [E])
    w.write()


def clip_dual(path):
    D, Pj, Ct = 8, 4, 6
    w = writer(path, "clip")
    w.add("clip.has_text_encoder", True)
    w.add("clip.has_llava_projector", False)
    vision(w, D=D, L=1, post_ln=True)
    Vt = bpe_vocab(w, "clip", "clip")
    for k, v in (("vocab_size", Vt), ("context_length", Ct), ("embedding_length", D),
                 ("feed_forward_length", 12), ("block_count", 1), ("attention.head_count", 2),
                 ("projection_dim", Pj), ("eos_token_id", Vt - 1), ("bos_token_id", Vt - 2)):
        w.add("clip.text." + k, v)
    w.add("clip.vision.projection_dim", Pj)
    w.add("clip.text.attention.layer_norm_epsilon", 1e-5, type="f32")
    w.add("clip.text.hidden_act", "quick_gelu")
    w.add("clip.text.pooling", "first_eos")
    w.add("clip.logit_scale", 2.6592, type="f32")
    tensor(w, "t.token_embd.weight", [D, Vt])
    tensor(w, "t.position_embd.weight", [D, Ct])
    blocks(w, "t", 1, D, 12)
    tensor(w, "t.post_ln.weight", [D], center=1)
    tensor(w, "t.post_ln.bias", [D])
    tensor(w, "t.proj.weight", [D, Pj])
    tensor(w, "v.proj.weight", [D, Pj])
    w.write()


def siglip(path):
    D, F = 8, 12
    w = writer(path, "clip")
    w.add("clip.has_text_encoder", False)
    w.add("clip.has_llava_projector", False)
    w.add("clip.use_gelu", True)
    vision(w, D=D, F=F, L=1, cls=False, pre_ln=False, post_ln=True, patch_bias=True,
           act="gelu_tanh", resize="squash")
    tensor(w, "v.head.probe", [D])
    for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
        tensor(w, "v.head.%s.weight" % n, [D, D])
        tensor(w, "v.head.%s.bias" % n, [D])
    tensor(w, "v.head.ln.weight", [D], center=1)
    tensor(w, "v.head.ln.bias", [D])
    tensor(w, "v.head.ffn_up.weight", [D, F])
    tensor(w, "v.head.ffn_up.bias", [F])
    tensor(w, "v.head.ffn_down.weight", [F, D])
    tensor(w, "v.head.ffn_down.bias", [D])
    w.write()


def blip2_mmproj(path):
    D, Dq, Fq, Nq, E = 8, 8, 12, 2, 8
    w = writer(path, "clip")
    w.add("clip.has_text_encoder", False)
    w.add("clip.has_llava_projector", True)
    w.add("clip.projector_type", "qformer")
    vision(w, D=D, L=1, pre_ln=False, post_ln=True, patch_bias=True, act="gelu",
           resize="squash")
    for k, v in (("embedding_length", Dq), ("feed_forward_length", Fq), ("block_count", 1),
                 ("attention.head_count", 2), ("cross_attention_frequency", 1),
                 ("query_count", Nq), ("encoder_width", D)):
        w.add("clip.qformer." + k, v)
    w.add("clip.qformer.attention.layer_norm_epsilon", 1e-12, type="f32")
    w.add("clip.qformer.hidden_act", "gelu")
    tensor(w, "qformer.query_embd", [Dq, Nq])
    tensor(w, "qformer.embd_ln.weight", [Dq], center=1)
    tensor(w, "qformer.embd_ln.bias", [Dq])
    b = "qformer.blk.0."
    for n in ("attn_q", "attn_k", "attn_v", "attn_out", "cross_q", "cross_out"):
        tensor(w, b + n + ".weight", [Dq, Dq])
        tensor(w, b + n + ".bias", [Dq])
    for n in ("cross_k", "cross_v"):
        tensor(w, b + n + ".weight", [D, Dq])
        tensor(w, b + n + ".bias", [Dq])
    for n in ("attn_ln", "cross_ln", "ffn_ln"):
        tensor(w, b + n + ".weight", [Dq], center=1)
        tensor(w, b + n + ".bias", [Dq])
    tensor(w, b + "ffn_up.weight", [Dq, Fq])
    tensor(w, b + "ffn_up.bias", [Fq])
    tensor(w, b + "ffn_down.weight", [Fq, Dq])
    tensor(w, b + "ffn_down.bias", [Dq])
    tensor(w, "mm.proj.weight", [Dq, E])
    tensor(w, "mm.proj.bias", [E])
    w.write()


def perceiver(path):
    Dr, Nl, Hr, Hkv, hd, Fr = 8, 2, 2, 1, 4, 16
    w = writer(path, "clip")
    w.add("clip.has_vision_encoder", False)
    w.add("clip.has_text_encoder", False)
    w.add("clip.has_llava_projector", True)
    w.add("clip.projector_type", "perceiver")
    for k, v in (("embedding_length", Dr), ("block_count", 1), ("latent_count", Nl),
                 ("attention.head_count", Hr), ("attention.head_count_kv", Hkv),
                 ("attention.key_length", hd), ("feed_forward_length", Fr)):
        w.add("clip.perceiver." + k, v)
    w.add("clip.perceiver.attention.layer_norm_rms_epsilon", 1e-5, type="f32")
    w.add("clip.perceiver.hidden_act", "silu")
    w.add("clip.perceiver.norm", "rms")
    tensor(w, "perceiver.latents", [Dr, Nl])
    b = "perceiver.blk.0."
    for n in ("ln_latents", "ln_context", "ffn_norm"):
        tensor(w, b + n + ".weight", [Dr], center=1)
    tensor(w, b + "attn_q.weight", [Dr, Hr * hd])
    tensor(w, b + "attn_k.weight", [Dr, Hkv * hd])
    tensor(w, b + "attn_v.weight", [Dr, Hkv * hd])
    tensor(w, b + "attn_out.weight", [Hr * hd, Dr])
    tensor(w, b + "ffn_gate.weight", [Dr, Fr])
    tensor(w, b + "ffn_up.weight", [Dr, Fr])
    tensor(w, b + "ffn_down.weight", [Fr, Dr])
    tensor(w, "perceiver.post_ln.weight", [Dr], center=1)
    w.write()


def qwen2a_mmproj(path):
    """llama.cpp's qwen2a layout: Whisper convs, positions, blocks (no k bias), mm.a.fc."""
    M, D, F, T, E = 4, 8, 12, 4, 8
    w = writer(path, "clip")
    w.add("clip.has_audio_encoder", True)
    w.add("clip.projector_type", "qwen2a")
    for k, v in (("num_mel_bins", M), ("embedding_length", D), ("feed_forward_length", F),
                 ("block_count", 1), ("attention.head_count", 2), ("projection_dim", E)):
        w.add("clip.audio." + k, v)
    w.add("clip.audio.attention.layer_norm_epsilon", 1e-5, type="f32")
    tensor(w, "a.conv1d.1.weight", [3, M, D])
    tensor(w, "a.conv1d.1.bias", [D])
    tensor(w, "a.conv1d.2.weight", [3, D, D])
    tensor(w, "a.conv1d.2.bias", [D])
    tensor(w, "a.position_embd.weight", [D, T])
    blocks(w, "a", 1, D, F)
    tensor(w, "a.post_ln.weight", [D], center=1)
    tensor(w, "a.post_ln.bias", [D])
    tensor(w, "mm.a.fc.weight", [D, E])
    tensor(w, "mm.a.fc.bias", [E])
    w.write()


def every_type(path):
    w = GGUFWriter(path, arch="test")
    for i, t in enumerate(("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64")):
        w.add("k.%s" % t, i + 1, type=t)
    w.add("k.f32", 0.5, type="f32")
    w.add("k.f64", -2.25, type="f64")
    w.add("k.bool", True)
    w.add("k.str", "caf\u00e9")
    w.add("k.arr_f32", [1.0, 2.0], type="[f32]")
    w.add("k.arr_str", ["x", ""], type="[str]")
    w.add("k.nested", [[1, 2], [3]], type="[[i32]]")
    w.add("general.alignment", 64, type="u32")
    tensor(w, "t.f32", [3, 2])
    tensor(w, "t.f16", [5], "f16")
    w.write()


def quant_blocks(path):
    """One tensor of each quantized type libmm reads: rows that llama.cpp quantized
    (tests/vectors/quant, row set B: 4 rows of 256), so that mutations reach every block
    layout's dequantization and scale checks."""
    import json
    import struct
    vectors = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors", "quant")
    ids = {"q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "q2_k": 10, "q3_k": 11,
           "q4_k": 12, "q5_k": 13, "q6_k": 14, "iq4_nl": 20, "iq4_xs": 23}
    w = writer(path, "quant")
    for name, tid in ids.items():
        with open(os.path.join(vectors, name + ".safetensors"), "rb") as f:
            raw = f.read()
        n = struct.unpack("<Q", raw[:8])[0]
        info = json.loads(raw[8:8 + n])["B.q"]
        begin, end = info["data_offsets"]
        rows = info["shape"][0]
        w.add_tensor_raw("t." + name, [256, rows], tid, raw[8 + n + begin:8 + n + end])
    w.write()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)  # noqa: E731
    llama(p("llama_spm.gguf"), spm_vocab, E=8, L=1, H=2, Hkv=1, hd=4, F=16, ctx=16, types={})
    llama(p("llama_bpe_quant.gguf"), bpe_vocab, E=32, L=1, H=4, Hkv=2, hd=8, F=32, ctx=32,
          types={"embd": "q8_0", "q": "q4_0", "k": "f16", "v": "bf16", "o": "q8_0"},
          biases=True, tied=True)
    opt(p("opt.gguf"))
    llava_mmproj(p("mmproj_llava.gguf"))
    clip_dual(p("clip_dual.gguf"))
    siglip(p("siglip.gguf"))
    blip2_mmproj(p("mmproj_blip2.gguf"))
    perceiver(p("perceiver.gguf"))
    qwen2a_mmproj(p("mmproj_qwen2a.gguf"))
    every_type(p("every_type.gguf"))
    quant_blocks(p("quant_blocks.gguf"))


if __name__ == "__main__":
    main()
