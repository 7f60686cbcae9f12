#!/usr/bin/python3
"""Random-weight GGUF files of realistic shapes for examples/mm-bench (`make bench`).

    tools/bench_models.py OUTDIR [NAME ...]

writes OUTDIR/NAME.gguf for each NAME (all of them when none is given), skipping files that
already exist with the same spec (kept in general.description). Written with tools/gguf.py, one
tensor in memory at a time. The files are laid out as docs/model-format.md says, as llama.cpp's
converters write them:

  vit-b16      CLIP ViT-B/16 at 224 px (196 patches + class token, 12 blocks, width 768) with a
               LLaVA MLP projector into the width of llama-1b (2048); f32
  vit-l14-336  CLIP ViT-L/14 at 336 px (576 patches + class token, 24 blocks, width 1024),
               LLaVA-1.5: second-to-last layer, class token dropped, MLP projector to 4096; f32
  vit-l14-336-anyres  the same tower as LLaVA-1.6 (LLaVA-NeXT) uses it: pinpoints 336x672,
               672x336, 672x672, 1008x336, 336x1008, spatial_unpad, model.image_newline; a
               640x480 picture is a 2x2 grid plus the overview (5 views, 2880 tokens before
               unpadding); f32
  whisper-base Whisper-base's encoder (80 mel bands, 1500 positions = 30 s, 6 blocks, width
               512, 8 heads, FFN 2048) with a Qwen2-Audio projector (qwen2a: avg pool, linear)
               into the width of llama-1b; f32
  llama-1b     LLaMA-style decoder of TinyLlama-1.1B's shape (22 layers, width 2048, 32 heads,
               4 KV heads, FFN 5632, 32000 tokens): f32 (4.4 GB) and -f16 (2.2 GB); -q8_0,
               -q4_0 and -q4_k_m (llama-quantize's Q4_K_M mix: output Q6_K, attn_v and ffn_down
               Q6_K in the layers use_more_bits picks, the rest Q4_K; norms f32) hold random
               blocks with fixed small scales: the speed of a product does not depend on the
               values.

Weights are N(0, 0.02) (HF's initialisation), norms 1, biases 0: activations stay in the normal
float range, so no denormals distort the timing. The decoders carry the LLaMA SentencePiece
vocabulary of tests/vectors/tokenizer/ggml-vocab-llama-spm.gguf (32000 tokens, the same size), so
that llama.cpp loads the same files (tools/bench-peer.sh); mm-bench itself feeds token ids.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf import GGUFReader, GGUFWriter  # noqa: E402

VISION = {
    # name: image size, patch, width, FFN, blocks, heads, feature layer, projector width
    "vit-b16": (224, 16, 768, 3072, 12, 12, 12, 2048),
    "vit-l14-336": (336, 14, 1024, 4096, 24, 16, 23, 4096),
    "vit-l14-336-anyres": (336, 14, 1024, 4096, 24, 16, 23, 4096),
}
ANYRES_PINPOINTS = [336, 672, 672, 336, 672, 672, 1008, 336, 336, 1008]
# mel bands, positions, width, FFN, blocks, heads, projector width
WHISPER_BASE = (80, 1500, 512, 2048, 6, 8, 2048)
LLAMA = dict(vocab=32000, embd=2048, layers=22, ff=5632, heads=32, heads_kv=4, ctx=2048)
MODELS = ["vit-b16", "vit-l14-336", "vit-l14-336-anyres", "whisper-base", "llama-1b",
          "llama-1b-f16", "llama-1b-q8_0", "llama-1b-q4_0", "llama-1b-q4_k_m"]
# Quantized layouts: block values, block bytes, byte offsets of the f16 scales in a block.
BLOCKS = {"q8_0": (32, 34, [0]), "q4_0": (32, 18, [0]), "q4_k": (256, 144, [0, 2]),
          "q6_k": (256, 210, [208])}
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2, "q4_k_m": 15}

rng = np.random.default_rng(1234)
VOCAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "vectors",
                     "tokenizer", "ggml-vocab-llama-spm.gguf")


def normal(*shape):
    """A lazily produced N(0, 0.02) matrix in HF (row-major) shape."""
    return lambda: rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)


def const(value, *shape):
    return np.full(shape, value, dtype=np.float32)


def write_blocks(w, prefix, L, D, F, k_bias=True):
    """L pre-LN encoder blocks of width D and FFN F under prefix ("v", "a")."""
    for i in range(L):
        p = "%s.blk.%d." % (prefix, i)
        for ln in ("ln1", "ln2"):
            w.add_tensor(p + ln + ".weight", const(1, D))
            w.add_tensor(p + ln + ".bias", const(0, D))
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(p + proj + ".weight", normal(D, D), shape=(D, D))
            if k_bias or proj != "attn_k":
                w.add_tensor(p + proj + ".bias", const(0, D))
        w.add_tensor(p + "ffn_up.weight", normal(F, D), shape=(F, D))
        w.add_tensor(p + "ffn_up.bias", const(0, F))
        w.add_tensor(p + "ffn_down.weight", normal(D, F), shape=(D, F))
        w.add_tensor(p + "ffn_down.bias", const(0, D))


def write_vision(path, spec, name):
    S, P, D, F, L, H, feature_layer, E = VISION[name]
    w = GGUFWriter(path, arch="clip")
    w.add("general.description", spec)
    w.add("general.file_type", 0)
    w.add("clip.has_vision_encoder", True)
    w.add("clip.has_text_encoder", False)
    w.add("clip.has_llava_projector", True)
    w.add("clip.projector_type", "mlp")
    w.add("clip.use_gelu", False)          # quick-GELU, as CLIP
    w.add("clip.vision.image_size", S)
    w.add("clip.vision.patch_size", P)
    w.add("clip.vision.embedding_length", D)
    w.add("clip.vision.feed_forward_length", F)
    w.add("clip.vision.block_count", L)
    w.add("clip.vision.attention.head_count", H)
    w.add("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add("clip.vision.projection_dim", 768)
    w.add("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073], type="[f32]")
    w.add("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711], type="[f32]")
    w.add("clip.vision.image_resize", "shortest_edge_crop")
    if name == "vit-l14-336":
        w.add("clip.vision.image_pad", "mean")  # LLaVA-1.5; LLaVA-1.6 tiles instead
    w.add("clip.vision.feature_layer", [feature_layer], type="[i32]")
    w.add("clip.image_token_id", 32000, type="i32")
    n_pos = (S // P) ** 2 + 1
    w.add_tensor("v.patch_embd.weight", normal(D, 3, P, P), shape=(D, 3, P, P))
    w.add_tensor("v.class_embd", normal(D), shape=(D,))
    w.add_tensor("v.position_embd.weight", normal(n_pos, D), shape=(n_pos, D))
    w.add_tensor("v.pre_ln.weight", const(1, D))
    w.add_tensor("v.pre_ln.bias", const(0, D))
    write_blocks(w, "v", L, D, F)
    w.add_tensor("v.post_ln.weight", const(1, D))
    w.add_tensor("v.post_ln.bias", const(0, D))
    w.add_tensor("mm.0.weight", normal(E, D), shape=(E, D))
    w.add_tensor("mm.0.bias", const(0, E))
    w.add_tensor("mm.2.weight", normal(E, E), shape=(E, E))
    w.add_tensor("mm.2.bias", const(0, E))
    if name.endswith("-anyres"):
        w.add("clip.vision.image_grid_pinpoints", ANYRES_PINPOINTS, type="[i32]")
        w.add("clip.vision.mm_patch_merge_type", "spatial_unpad")
        w.add_tensor("model.image_newline", normal(E), shape=(E,))
    w.write()


def write_whisper(path, spec):
    M, T, D, F, L, H, E = WHISPER_BASE
    w = GGUFWriter(path, arch="clip")
    w.add("general.description", spec)
    w.add("general.file_type", 0)
    w.add("clip.has_audio_encoder", True)
    w.add("clip.projector_type", "qwen2a")
    w.add("clip.audio.num_mel_bins", M)
    w.add("clip.audio.embedding_length", D)
    w.add("clip.audio.feed_forward_length", F)
    w.add("clip.audio.block_count", L)
    w.add("clip.audio.attention.head_count", H)
    w.add("clip.audio.attention.layer_norm_epsilon", 1e-5)
    w.add("clip.audio.projection_dim", E)
    w.add_tensor("a.conv1d.1.weight", normal(D, M, 3), shape=(D, M, 3))
    w.add_tensor("a.conv1d.1.bias", const(0, D))
    w.add_tensor("a.conv1d.2.weight", normal(D, D, 3), shape=(D, D, 3))
    w.add_tensor("a.conv1d.2.bias", const(0, D))
    w.add_tensor("a.position_embd.weight", normal(T, D), shape=(T, D))
    write_blocks(w, "a", L, D, F, k_bias=False)   # Whisper's key projection has no bias
    w.add_tensor("a.post_ln.weight", const(1, D))
    w.add_tensor("a.post_ln.bias", const(0, D))
    w.add_tensor("mm.a.fc.weight", normal(E, D), shape=(E, D))
    w.add_tensor("mm.a.fc.bias", const(0, E))
    w.write()

def random_blocks(rows, cols, qtype):
    """A function making rows x cols values of qtype as random blocks with scales 2^-9."""
    elems, size, scales = BLOCKS[qtype]

    def make():
        b = rng.integers(0, 256, size=(rows * cols // elems, size), dtype=np.uint8)
        for at in scales:
            b[:, at], b[:, at + 1] = 0x00, 0x18       # f16 0x1800 = 2^-9
        return b.tobytes()
    return make


def use_more_bits(layer, n_layers):
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def write_llama(path, spec, dtype):
    c = LLAMA
    E, hd = c["embd"], c["embd"] // c["heads"]
    kv = c["heads_kv"] * hd
    w = GGUFWriter(path, arch="llama")
    w.add("general.description", spec)
    w.add("general.file_type", FILE_TYPES[dtype], type="u32")

    def matrix(name, rows, cols):
        if dtype in ("f32", "f16"):
            w.add_tensor(name, normal(rows, cols), dtype, shape=(rows, cols))
            return
        qtype = dtype
        if name == "output.weight" and dtype != "q8_0":
            qtype = "q6_k"
        elif dtype == "q4_k_m":
            layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
            more = name.endswith(("attn_v.weight", "ffn_down.weight")) and \
                use_more_bits(layer, c["layers"])
            qtype = "q6_k" if more else "q4_k"
        w.add_tensor_raw(name, [cols, rows], qtype, random_blocks(rows, cols, qtype))

    w.add("llama.vocab_size", c["vocab"])
    w.add("llama.context_length", c["ctx"])
    w.add("llama.embedding_length", E)
    w.add("llama.block_count", c["layers"])
    w.add("llama.feed_forward_length", c["ff"])
    w.add("llama.attention.head_count", c["heads"])
    w.add("llama.attention.head_count_kv", c["heads_kv"])
    w.add("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add("llama.rope.freq_base", 10000.0)
    w.add("llama.rope.dimension_count", hd)
    vocab = GGUFReader(VOCAB)
    for key, value in vocab.kv.items():
        if key.startswith("tokenizer."):
            w.add(key, value, type=vocab.types[key])
    matrix("token_embd.weight", c["vocab"], E)
    for i in range(c["layers"]):
        p = "blk.%d." % i
        w.add_tensor(p + "attn_norm.weight", const(1, E))
        matrix(p + "attn_q.weight", E, E)
        matrix(p + "attn_k.weight", kv, E)
        matrix(p + "attn_v.weight", kv, E)
        matrix(p + "attn_output.weight", E, E)
        w.add_tensor(p + "ffn_norm.weight", const(1, E))
        matrix(p + "ffn_gate.weight", c["ff"], E)
        matrix(p + "ffn_up.weight", c["ff"], E)
        matrix(p + "ffn_down.weight", E, c["ff"])
    w.add_tensor("output_norm.weight", const(1, E))
    matrix("output.weight", c["vocab"], E)
    w.write()


def spec_of(name):
    if name in VISION:
        return "libmm bench %s %s" % (name, VISION[name])
    if name == "whisper-base":
        return "libmm bench %s %s" % (name, WHISPER_BASE)
    return "libmm bench %s %s + llama-spm vocabulary" % (name, sorted(LLAMA.items()))


def existing_spec(path):
    try:
        return GGUFReader(path).kv.get("general.description")
    except (OSError, ValueError):
        return None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    names = sys.argv[2:] or MODELS
    os.makedirs(out, exist_ok=True)
    for name in names:
        if name not in MODELS:
            sys.exit("unknown model %r (known: %s)" % (name, " ".join(MODELS)))
        path = os.path.join(out, name + ".gguf")
        spec = spec_of(name)
        if os.path.exists(path) and existing_spec(path) == spec:
            continue
        print("writing %s" % path, flush=True)
        tmp = path + ".part"
        if name in VISION:
            write_vision(tmp, spec, name)
        elif name == "whisper-base":
            write_whisper(tmp, spec)
        else:
            write_llama(tmp, spec, name[len("llama-1b-"):] if name != "llama-1b" else "f32")
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
