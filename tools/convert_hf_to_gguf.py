#!/usr/bin/python3
"""Convert a Hugging Face checkpoint folder to libmm / llama.cpp GGUF files.

    convert_hf_to_gguf.py MODEL_DIR -o OUTDIR [--outtype f32|f16|bf16|q8_0]
                          [--vocab FILE.gguf | --no-tokenizer]

MODEL_DIR holds config.json and *.safetensors (one file or shards). Written files:

    LlamaForCausalLM               OUTDIR/model.gguf   (llama)
    MistralForCausalLM             OUTDIR/model.gguf   (llama)
    Qwen2ForCausalLM               OUTDIR/model.gguf   (qwen2)
    Phi3ForCausalLM                OUTDIR/model.gguf   (phi3)
    Qwen2VLForConditionalGeneration  OUTDIR/model.gguf (qwen2vl) + OUTDIR/mmproj.gguf (clip, qwen2vl_merger)
    LlavaForConditionalGeneration  OUTDIR/model.gguf   (llama) + OUTDIR/mmproj.gguf (clip, mlp)
    LlavaNextForConditionalGeneration  the same, the mmproj with image_grid_pinpoints,
                                   mm_patch_merge_type spatial_unpad and model.image_newline
    Blip2ForConditionalGeneration  OUTDIR/model.gguf   (opt)   + OUTDIR/mmproj.gguf (clip, qformer)
    CLIPModel                      OUTDIR/model.gguf   (clip: both towers + projections)
    SiglipVisionModel              OUTDIR/model.gguf   (clip: vision tower + pooling head)
    Qwen2AudioForConditionalGeneration
                                   OUTDIR/model.gguf   (qwen2)
                                                     + OUTDIR/mmproj.gguf (clip, audio: qwen2a)
    Idefics2 perceiver resampler   OUTDIR/model.gguf   (clip, perceiver; the state dict of the
                                                        resampler alone, see docs)

Keys and tensor names: docs/model-format.md. Depends only on Python 3 and numpy. Matrices are
written in --outtype (default f32; with q8_0, matrices whose rows are not a multiple of 32 and
tensors of more than two dimensions are written f16, as llama.cpp's converter does); norms,
biases, other 1-D tensors and the learned position / latent / query tables stay f32. A config option that changes the model's math is
either carried into the file or refused with a message; a tensor the converter does not place
is an error, so nothing is dropped silently.
"""

import argparse
import json
import mmap
import os
import re
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf import GGUFReader, GGUFWriter, FILE_TYPE  # noqa: E402


class ConvertError(Exception):
    pass


def warn(msg):
    print("convert: " + msg, file=sys.stderr)


# ------------------------------------------------------------------------------------------
# safetensors, parsed with numpy

_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
              "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "u1"}


def read_safetensors_header(path):
    """-> {name: (safetensors dtype, shape, absolute begin, absolute end)}, bounds-checked."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ConvertError("%s: too short for a safetensors file" % path)
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            raise ConvertError("%s: header length %d exceeds the file" % (path, n))
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ConvertError("%s: bad safetensors header: %s" % (path, e))
    entries = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] not in _ST_DTYPES:
            raise ConvertError("%s: tensor %s has unsupported dtype %s" % (path, name, e["dtype"]))
        dt = np.dtype(_ST_DTYPES[e["dtype"]])
        begin, end = e["data_offsets"]
        count = int(np.prod(e["shape"], dtype=np.int64))
        if not 0 <= begin <= end or end - begin != count * dt.itemsize or 8 + n + end > size:
            raise ConvertError("%s: tensor %s has bad data offsets %s" % (path, name, [begin, end]))
        entries[name] = (e["dtype"], tuple(e["shape"]), 8 + n + begin, 8 + n + end)
    return entries


class Lazy:
    """A tensor known by shape, produced by fn() when written (keeps memory to one tensor)."""

    def __init__(self, shape, fn):
        self.shape, self.fn = tuple(shape), fn


class Checkpoint:
    """All tensors of a folder by HF name, read lazily as float32; remembers which were used."""

    def __init__(self, folder):
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        elif os.path.exists(os.path.join(folder, "model.safetensors")):
            files = ["model.safetensors"]
        else:
            files = sorted(p for p in os.listdir(folder)
                           if re.fullmatch(r"model-\d+-of-\d+\.safetensors", p))
        if not files:
            raise ConvertError("%s: no model.safetensors, model.safetensors.index.json or "
                               "model-NNNNN-of-NNNNN.safetensors (only safetensors "
                               "checkpoints are read)" % folder)
        self.entries, self._maps, self.used = {}, {}, set()
        for name in files:
            path = os.path.join(folder, name)
            for key, e in read_safetensors_header(path).items():
                if key in self.entries:
                    raise ConvertError("tensor %s appears in two shards" % key)
                self.entries[key] = (path,) + e

    def __contains__(self, name):
        return name in self.entries

    def names(self):
        return list(self.entries)

    def shape(self, name):
        return self.entries[name][2]

    def get(self, name):
        """float32 array of tensor `name`, marked as used."""
        if name not in self.entries:
            raise ConvertError("missing tensor %s" % name)
        path, dtype, shape, begin, end = self.entries[name]
        if path not in self._maps:
            with open(path, "rb") as f:
                self._maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        raw = np.frombuffer(self._maps[path], np.dtype(_ST_DTYPES[dtype]),
                            (end - begin) // np.dtype(_ST_DTYPES[dtype]).itemsize, begin)
        self.used.add(name)
        if dtype == "BF16":
            raw = (raw.astype("<u4") << 16).view("<f4")
        return raw.astype(np.float32, copy=False).reshape(shape)

    def lazy(self, name, fn=None, shape=None):
        """Tensor `name` (optionally through fn, which may change the shape to `shape`), read
        only when the file is written; marked as used now."""
        if name not in self.entries:
            raise ConvertError("missing tensor %s" % name)
        self.used.add(name)
        return Lazy(shape or self.shape(name), lambda: (fn or (lambda a: a))(self.get(name)))

    def ignore(self, name):
        """Mark a tensor as deliberately not written (unused by the model's math)."""
        self.used.add(name)

    def check_all_used(self):
        left = sorted(set(self.entries) - self.used)
        if left:
            more = " (and %d more)" % (len(left) - 5) if len(left) > 5 else ""
            raise ConvertError("tensors this converter does not know how to place: %s%s; "
                               "this variant of the model is not supported"
                               % (", ".join(left[:5]), more))


# ------------------------------------------------------------------------------------------
# config access with the defaults of HF transformers 4.45 (save_pretrained omits defaults)

DEFAULTS = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None,
                  hidden_act="silu", max_position_embeddings=2048, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=None,
                  attention_bias=False, mlp_bias=False, head_dim=None, bos_token_id=1,
                  eos_token_id=2, pad_token_id=None),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    hidden_act="silu", max_position_embeddings=4096 * 32, rms_norm_eps=1e-6,
                    tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=None,
                    attention_bias=False, mlp_bias=False, head_dim=None, sliding_window=4096,
                    bos_token_id=1, eos_token_id=2, pad_token_id=None),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                  hidden_act="silu", max_position_embeddings=32768, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=None,
                  use_sliding_window=False, sliding_window=4096, max_window_layers=28,
                  head_dim=None, bos_token_id=None, eos_token_id=None, pad_token_id=None),
    "qwen2_audio_encoder": dict(num_mel_bins=128, encoder_layers=32, encoder_attention_heads=20,
                                encoder_ffn_dim=5120, d_model=1280, activation_function="gelu",
                                max_source_positions=1500, scale_embedding=False),
    "phi3": dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192,
                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None,
                 hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-5,
                 tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=None,
                 partial_rotary_factor=1.0, sliding_window=None, head_dim=None,
                 bos_token_id=1, eos_token_id=32000, pad_token_id=32000),
    "clip_vision_model": dict(hidden_size=768, intermediate_size=3072, projection_dim=512,
                              num_hidden_layers=12, num_attention_heads=12, num_channels=3,
                              image_size=224, patch_size=32, hidden_act="quick_gelu",
                              layer_norm_eps=1e-5),
    "clip_text_model": dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                            projection_dim=512, num_hidden_layers=12, num_attention_heads=8,
                            max_position_embeddings=77, hidden_act="quick_gelu",
                            layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=49406,
                            eos_token_id=49407),
    "siglip_vision_model": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, num_channels=3, image_size=224,
                                patch_size=16, hidden_act="gelu_pytorch_tanh",
                                layer_norm_eps=1e-6, vision_use_head=True),
    "blip_2_vision_model": dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39,
                                num_attention_heads=16, image_size=224, patch_size=14,
                                hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True,
                                num_channels=3),
    "blip_2_qformer": dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                           layer_norm_eps=1e-12, position_embedding_type="absolute",
                           cross_attention_frequency=2, encoder_hidden_size=1408,
                           use_qformer_text_input=True),
    "opt": dict(vocab_size=50272, hidden_size=768, num_hidden_layers=12, ffn_dim=3072,
                max_position_embeddings=2048, do_layer_norm_before=True,
                _remove_final_layer_norm=False, word_embed_proj_dim=None,
                num_attention_heads=12, activation_function="relu", enable_bias=True,
                layer_norm_elementwise_affine=True, pad_token_id=1, bos_token_id=2,
                eos_token_id=2, tie_word_embeddings=True),
    "llava": dict(image_token_index=32000, projector_hidden_act="gelu",
                  vision_feature_select_strategy="default", vision_feature_layer=-2,
                  multimodal_projector_bias=True),
    "llava_next": dict(image_token_index=32000, projector_hidden_act="gelu",
                       vision_feature_select_strategy="default", vision_feature_layer=-2,
                       multimodal_projector_bias=True,
                       image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336],
                                             [336, 1008]]),
    "clip": dict(projection_dim=512, logit_scale_init_value=2.6592),
    "blip-2": dict(num_query_tokens=32, image_token_index=None),
    "idefics2_perceiver": dict(hidden_act="silu", resampler_n_latents=64, resampler_depth=3,
                               resampler_n_heads=16, resampler_head_dim=96,
                               num_key_value_heads=4),
}
# sub-configs that HF builds with non-class defaults when the parent omits them
LLAVA_VISION_DEFAULT = dict(model_type="clip_vision_model", intermediate_size=4096,
                            hidden_size=1024, patch_size=14, image_size=336,
                            num_hidden_layers=24, num_attention_heads=16, projection_dim=768)


class Config:
    def __init__(self, d, kind):
        if kind not in DEFAULTS:
            raise ConvertError("unsupported model type %r" % kind)
        self.d, self.kind = d or {}, kind

    def __getitem__(self, key):
        if key in self.d:
            return self.d[key]
        if key in DEFAULTS[self.kind]:
            return DEFAULTS[self.kind][key]
        raise ConvertError("%s config has no %r" % (self.kind, key))

    def require(self, key, allowed, what=None):
        v = self[key]
        if v not in allowed:
            raise ConvertError("%s.%s = %r is not supported (supported: %s)%s"
                               % (self.kind, key, v, ", ".join(map(repr, allowed)),
                                  "; " + what if what else ""))
        return v


def sub_config(cfg, key, default_type, extra_defaults=None):
    d = dict(extra_defaults or {})
    d.update(cfg.get(key) or {})
    return Config(d, d.get("model_type", default_type))


ACTIVATIONS = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
               "gelu_fast": "gelu_tanh", "quick_gelu": "quick_gelu", "relu": "relu",
               "silu": "silu", "swish": "silu"}


def activation(name, where):
    if name not in ACTIVATIONS:
        raise ConvertError("%s: activation %r is not supported (supported: %s)"
                           % (where, name, ", ".join(sorted(ACTIVATIONS))))
    return ACTIVATIONS[name]


# ------------------------------------------------------------------------------------------
# output file

KEEP_F32 = re.compile(r"(position_embd\.weight|latents|query_embd|probe|class_embd)$")


class Output:
    """A GGUF file being built: picks each tensor's type from --outtype."""

    def __init__(self, path, arch, outtype, name):
        self.w = GGUFWriter(path, arch)
        self.path, self.outtype = path, outtype
        self.w.add("general.name", name)
        self.w.add("general.file_type", FILE_TYPE[outtype], type="u32")

    def add(self, key, value, type=None):
        self.w.add(key, value, type=type)

    def tensor(self, name, src):
        """src: a numpy array or a Lazy."""
        fn = src.fn if isinstance(src, Lazy) else (lambda: src)
        small = len(src.shape) < 2 or KEEP_F32.search(name)
        dtype = "f32" if small else self.outtype
        if dtype == "q8_0" and (len(src.shape) != 2 or src.shape[-1] % 32):
            dtype = "f16"
        self.w.add_tensor(name, lambda: np.asarray(fn(), np.float32), dtype, shape=src.shape)

    def write(self):
        self.w.write()
        print("wrote %s (%d tensors)" % (self.path, len(self.w.tensors)), file=sys.stderr)


def linear(out, ck, gguf_name, hf_name, bias="optional"):
    """Write HF Linear `hf_name` as gguf_name.weight (+ .bias when the checkpoint has one)."""
    out.tensor(gguf_name + ".weight", ck.lazy(hf_name + ".weight"))
    if hf_name + ".bias" in ck:
        out.tensor(gguf_name + ".bias", ck.lazy(hf_name + ".bias"))
    elif bias == "required":
        raise ConvertError("missing tensor %s.bias" % hf_name)


def norm(out, ck, gguf_name, hf_name, dim=None):
    """LayerNorm / RMSNorm; a norm without learned affine (dim given) is written as 1 / 0."""
    if hf_name + ".weight" in ck:
        linear(out, ck, gguf_name, hf_name)
    elif dim is not None:
        out.tensor(gguf_name + ".weight", np.ones(dim, np.float32))
        out.tensor(gguf_name + ".bias", np.zeros(dim, np.float32))
    else:
        raise ConvertError("missing tensor %s.weight" % hf_name)


def write_block(out, ck, b, p, ln1, ln2, fc1, fc2):
    """One pre-LN block (HF names under p: ln1, self_attn.{q,k,v,out}_proj, ln2, fc1, fc2) as
    llama.cpp's b + ln1, attn_q/k/v/out, ln2, ffn_up/down."""
    norm(out, ck, b + "ln1", p + ln1)
    for g, hf in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj"),
                  ("attn_out", "out_proj")):
        linear(out, ck, b + g, p + "self_attn." + hf)
    norm(out, ck, b + "ln2", p + ln2)
    linear(out, ck, b + "ffn_up", p + fc1)
    linear(out, ck, b + "ffn_down", p + fc2)


# ------------------------------------------------------------------------------------------
# llama text model

def permute_rope_rows(w, n_head):
    """HF rotate-half row order -> llama.cpp adjacent-pair order, per head (docs §1)."""
    rows = w.shape[0]
    hd = rows // n_head
    return (w.reshape(n_head, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def write_llama(out, cfg, ck, prefix, lm_head, arch="llama"):
    """The llama-shaped decoders. cfg: Config of kind llama/mistral/qwen2/phi3; prefix: of
    `embed_tokens` etc.; lm_head: its name; arch, as llama.cpp names them (docs §1, §1b, §1c):
      llama  Q/K rows permuted to adjacent RoPE pairs; biases where the checkpoint has them;
      qwen2  rows as HF has them (RoPE on halves); Q/K/V biases required;
      qwen2vl  as qwen2 (M-RoPE sections written by the caller);
      phi3   rows as HF has them; qkv_proj and gate_up_proj stay fused (attn_qkv, ffn_up)."""
    cfg.require("hidden_act", ["silu"])
    if cfg.kind == "qwen2" and cfg["use_sliding_window"]:
        raise ConvertError("qwen2 use_sliding_window = true: sliding-window attention is not "
                           "supported")
    E, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    F = cfg["intermediate_size"]
    Hkv = cfg["num_key_value_heads"] or H
    hd = cfg["head_dim"] or E // H
    n_rot = int(hd * cfg["partial_rotary_factor"]) if cfg.kind == "phi3" else hd
    if H % Hkv:
        raise ConvertError("num_attention_heads %d not a multiple of num_key_value_heads %d"
                           % (H, Hkv))
    if hd % 2 or n_rot % 2:
        raise ConvertError("head_dim %d (rotated %d) is odd: RoPE needs an even size"
                           % (hd, n_rot))
    if arch == "phi3":
        expect = (("self_attn.qkv_proj", (H + 2 * Hkv) * hd, "(heads + 2 x KV heads) x head_dim"),
                  ("mlp.gate_up_proj", 2 * F, "2 x intermediate_size"))
    else:
        expect = (("self_attn.q_proj", H * hd, "heads x head_dim"),
                  ("self_attn.k_proj", Hkv * hd, "KV heads x head_dim"))
    for hf, rows, what in expect:
        shape = ck.shape("%slayers.0.%s.weight" % (prefix, hf))
        if shape[0] != rows:
            raise ConvertError("%s has %d rows, the config implies %d (%s)"
                               % (hf, shape[0], rows, what))
    V = ck.shape(prefix + "embed_tokens.weight")[0]
    a = arch + "."
    out.add(a + "vocab_size", V)
    out.add(a + "context_length", cfg["max_position_embeddings"])
    out.add(a + "embedding_length", E)
    out.add(a + "block_count", L)
    out.add(a + "feed_forward_length", F)
    out.add(a + "attention.head_count", H)
    out.add(a + "attention.head_count_kv", Hkv)
    out.add(a + "attention.key_length", hd)
    out.add(a + "attention.value_length", hd)
    out.add(a + "attention.layer_norm_rms_epsilon", float(cfg["rms_norm_eps"]), type="f32")
    out.add(a + "rope.freq_base", float(cfg["rope_theta"]), type="f32")
    out.add(a + "rope.dimension_count", n_rot)
    if cfg.kind in ("mistral", "phi3") and cfg["sliding_window"] is not None:
        out.add(a + "attention.sliding_window", int(cfg["sliding_window"]))
    rs = cfg["rope_scaling"]
    if rs is not None:
        kind = rs.get("rope_type", rs.get("type"))
        if kind != "linear" or arch != "llama":
            raise ConvertError("%s rope_scaling type %r is not supported (only 'linear', for "
                               "llama)" % (cfg.kind, kind))
        out.add(a + "rope.scaling.type", "linear")
        out.add(a + "rope.scaling.factor", float(rs["factor"]), type="f32")

    out.tensor("token_embd.weight", ck.lazy(prefix + "embed_tokens.weight"))
    for i in range(L):
        p, b = "%slayers.%d." % (prefix, i), "blk.%d." % i
        out.tensor(b + "attn_norm.weight", ck.lazy(p + "input_layernorm.weight"))
        if arch == "phi3":
            linear(out, ck, b + "attn_qkv", p + "self_attn.qkv_proj")
        elif arch == "llama":
            for g, hf, n in (("attn_q", "q_proj", H), ("attn_k", "k_proj", Hkv)):
                for part in ("weight", "bias"):
                    name = p + "self_attn.%s.%s" % (hf, part)
                    if part == "weight" or name in ck:
                        out.tensor(b + g + "." + part,
                                   ck.lazy(name, lambda a, n=n: permute_rope_rows(a, n)))
        else:
            linear(out, ck, b + "attn_q", p + "self_attn.q_proj", bias="required")
            linear(out, ck, b + "attn_k", p + "self_attn.k_proj", bias="required")
        if arch != "phi3":
            linear(out, ck, b + "attn_v", p + "self_attn.v_proj",
                   bias="required" if arch in ("qwen2", "qwen2vl") else "optional")
        linear(out, ck, b + "attn_output", p + "self_attn.o_proj")
        out.tensor(b + "ffn_norm.weight", ck.lazy(p + "post_attention_layernorm.weight"))
        if arch == "phi3":
            linear(out, ck, b + "ffn_up", p + "mlp.gate_up_proj")
        else:
            linear(out, ck, b + "ffn_gate", p + "mlp.gate_proj")
            linear(out, ck, b + "ffn_up", p + "mlp.up_proj")
        linear(out, ck, b + "ffn_down", p + "mlp.down_proj")
    out.tensor("output_norm.weight", ck.lazy(prefix + "norm.weight"))
    write_lm_head(out, cfg, ck, lm_head)


def write_lm_head(out, cfg, ck, lm_head):
    if cfg["tie_word_embeddings"]:
        if lm_head in ck:
            ck.ignore(lm_head)
    else:
        out.tensor("output.weight", ck.lazy(lm_head))


# ------------------------------------------------------------------------------------------
# OPT text model

def write_opt(out, cfg, ck, prefix, lm_head):
    """prefix: of `embed_tokens` (HF `...model.decoder.`)."""
    act = activation(cfg["activation_function"], "opt.activation_function")
    E, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    Ew = cfg["word_embed_proj_dim"] or E
    V = ck.shape(prefix + "embed_tokens.weight")[0]
    pre_ln = bool(cfg["do_layer_norm_before"])
    final_ln = pre_ln and not cfg["_remove_final_layer_norm"]
    affine = bool(cfg["layer_norm_elementwise_affine"])
    a = "opt."
    out.add(a + "vocab_size", V)
    out.add(a + "context_length", cfg["max_position_embeddings"])
    out.add(a + "embedding_length", E)
    out.add(a + "block_count", L)
    out.add(a + "feed_forward_length", cfg["ffn_dim"])
    out.add(a + "attention.head_count", H)
    out.add(a + "attention.layer_norm_epsilon", 1e-5, type="f32")
    out.add(a + "position_offset", 2)
    out.add(a + "layer_norm_before", pre_ln)
    out.add(a + "hidden_act", act)
    out.add(a + "word_embed_proj_dim", Ew)

    nodim = None if affine else E
    out.tensor("token_embd.weight", ck.lazy(prefix + "embed_tokens.weight"))
    out.tensor("position_embd.weight", ck.lazy(prefix + "embed_positions.weight"))
    if Ew != E:
        out.tensor("proj_in.weight", ck.lazy(prefix + "project_in.weight"))
        out.tensor("proj_out.weight", ck.lazy(prefix + "project_out.weight"))
    for i in range(L):
        p, b = "%slayers.%d." % (prefix, i), "blk.%d." % i
        norm(out, ck, b + "attn_norm", p + "self_attn_layer_norm", nodim)
        linear(out, ck, b + "attn_q", p + "self_attn.q_proj")
        linear(out, ck, b + "attn_k", p + "self_attn.k_proj")
        linear(out, ck, b + "attn_v", p + "self_attn.v_proj")
        linear(out, ck, b + "attn_output", p + "self_attn.out_proj")
        norm(out, ck, b + "ffn_norm", p + "final_layer_norm", nodim)
        linear(out, ck, b + "ffn_up", p + "fc1")
        linear(out, ck, b + "ffn_down", p + "fc2")
    if final_ln:
        norm(out, ck, "output_norm", prefix + "final_layer_norm", nodim)
    write_lm_head(out, cfg, ck, lm_head)


# ------------------------------------------------------------------------------------------
# vision towers (CLIP, SigLIP, BLIP-2 flavours)

OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]


def image_processor_keys(out, folder, default_mean, default_std, default_resize):
    """Normalisation and resize mode from preprocessor_config.json, else the model's usual ones."""
    path = os.path.join(folder, "preprocessor_config.json")
    mean, std, resize = default_mean, default_std, default_resize
    if os.path.exists(path):
        with open(path) as f:
            pp = json.load(f)
        mean, std = pp.get("image_mean", mean), pp.get("image_std", std)
        if "do_center_crop" in pp:
            resize = "shortest_edge_crop" if pp["do_center_crop"] else "squash"
    else:
        warn("no preprocessor_config.json: writing the usual mean/std of this model family")
    if len(mean) != 3 or len(std) != 3:
        raise ConvertError("image_mean / image_std must have 3 values")
    out.add("clip.vision.image_mean", [float(x) for x in mean], type="[f32]")
    out.add("clip.vision.image_std", [float(x) for x in std], type="[f32]")
    out.add("clip.vision.image_resize", resize)


def write_vision_tower(out, vc, ck, prefix, post_ln=True):
    """vc: vision Config (clip_vision_model / siglip_vision_model / blip_2_vision_model);
    prefix: of `embeddings.` in the checkpoint. Writes the clip.vision.* keys and v.* tensors."""
    if vc["num_channels"] != 3:
        raise ConvertError("num_channels = %d: only RGB towers are supported" % vc["num_channels"])
    act = activation(vc["hidden_act"], vc.kind + ".hidden_act")
    D, L = vc["hidden_size"], vc["num_hidden_layers"]
    if D % vc["num_attention_heads"]:
        raise ConvertError("vision hidden_size %d not a multiple of the head count" % D)
    out.add("clip.has_vision_encoder", True)
    out.add("clip.use_gelu", act in ("gelu", "gelu_tanh"))
    if act == "silu":
        out.add("clip.use_silu", True)
    out.add("clip.vision.hidden_act", act)
    out.add("clip.vision.image_size", vc["image_size"])
    out.add("clip.vision.patch_size", vc["patch_size"])
    out.add("clip.vision.embedding_length", D)
    out.add("clip.vision.feed_forward_length", vc["intermediate_size"])
    out.add("clip.vision.block_count", L)
    out.add("clip.vision.attention.head_count", vc["num_attention_heads"])
    out.add("clip.vision.attention.layer_norm_epsilon", float(vc["layer_norm_eps"]), type="f32")

    e = prefix + "embeddings."
    linear(out, ck, "v.patch_embd", e + "patch_embedding")
    if e + "class_embedding" in ck:
        out.tensor("v.class_embd", ck.get(e + "class_embedding").reshape(D))
    pos = e + "position_embedding"
    pos = pos + ".weight" if pos + ".weight" in ck else pos      # BLIP-2: a bare parameter
    out.tensor("v.position_embd.weight", ck.get(pos).reshape(-1, D))
    if e + "position_ids" in ck:
        ck.ignore(e + "position_ids")
    if prefix + "pre_layrnorm.weight" in ck:
        norm(out, ck, "v.pre_ln", prefix + "pre_layrnorm")
    for i in range(L):
        p, b = "%sencoder.layers.%d." % (prefix, i), "v.blk.%d." % i
        norm(out, ck, b + "ln1", p + "layer_norm1")
        if p + "self_attn.qkv.weight" in ck:        # BLIP-2: fused q, k, v
            for part in ("weight", "bias"):
                name = p + "self_attn.qkv." + part
                if name in ck:
                    for j, g in enumerate(("attn_q", "attn_k", "attn_v")):
                        out.tensor(b + g + "." + part,
                                   ck.lazy(name, lambda a, j=j: a[j * D:(j + 1) * D],
                                           (D,) + ck.shape(name)[1:]))
            for g, hf in (("attn_q", "q_bias"), ("attn_v", "v_bias")):   # older checkpoints
                if p + "self_attn." + hf in ck:
                    out.tensor(b + g + ".bias", ck.lazy(p + "self_attn." + hf))
            linear(out, ck, b + "attn_out", p + "self_attn.projection")
        else:
            linear(out, ck, b + "attn_q", p + "self_attn.q_proj")
            linear(out, ck, b + "attn_k", p + "self_attn.k_proj")
            linear(out, ck, b + "attn_v", p + "self_attn.v_proj")
            linear(out, ck, b + "attn_out", p + "self_attn.out_proj")
        norm(out, ck, b + "ln2", p + "layer_norm2")
        linear(out, ck, b + "ffn_up", p + "mlp.fc1")
        linear(out, ck, b + "ffn_down", p + "mlp.fc2")
    if post_ln:
        norm(out, ck, "v.post_ln", prefix + "post_layernorm")
    elif prefix + "post_layernorm.weight" in ck:
        ck.ignore(prefix + "post_layernorm.weight")
        ck.ignore(prefix + "post_layernorm.bias")


def write_siglip_head(out, ck, prefix, D):
    h = prefix + "head."
    out.tensor("v.head.probe", ck.get(h + "probe").reshape(D))
    for part in ("weight", "bias"):
        name = h + "attention.in_proj_" + part
        for j, g in enumerate(("attn_q", "attn_k", "attn_v")):
            out.tensor("v.head.%s.%s" % (g, part),
                       ck.lazy(name, lambda a, j=j: a[j * D:(j + 1) * D],
                               (D,) + ck.shape(name)[1:]))
    linear(out, ck, "v.head.attn_out", h + "attention.out_proj", "required")
    norm(out, ck, "v.head.ln", h + "layernorm")
    linear(out, ck, "v.head.ffn_up", h + "mlp.fc1", "required")
    linear(out, ck, "v.head.ffn_down", h + "mlp.fc2", "required")


# ------------------------------------------------------------------------------------------
# tokenizer

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6
SPECIAL_KEYS = (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id"))


class Vocab:
    """A tokenizer being assembled: token texts, types, scores (llama) or merges (BPE)."""

    def __init__(self, model, pre, tokens, types, scores=None, merges=None):
        self.model, self.pre = model, pre
        self.tokens, self.types, self.scores, self.merges = tokens, types, scores, merges
        self.special = {}                    # tokenizer.ggml.<x>_token_id -> id
        self.add_bos = self.add_eos = None
        self.chat_template = None            # tokenizer_config.json's Jinja text

    def set_token(self, i, text, typ):
        while len(self.tokens) <= i:         # ids beyond the base vocabulary
            self.tokens.append("[PAD%d]" % len(self.tokens))
            self.types.append(TOKEN_UNUSED)
            if self.scores is not None:
                self.scores.append(0.0)
        self.tokens[i], self.types[i] = text, typ
        if self.scores is not None and typ in (TOKEN_CONTROL, TOKEN_USER):
            self.scores[i] = -1000.0         # never chosen by score-driven merging

    def keys(self):
        kv = {"tokenizer.ggml.model": ("str", self.model), "tokenizer.ggml.pre": ("str", self.pre),
              "tokenizer.ggml.tokens": ("[str]", self.tokens)}
        if self.scores is not None:
            kv["tokenizer.ggml.scores"] = ("[f32]", self.scores)
        kv["tokenizer.ggml.token_type"] = ("[i32]", self.types)
        if self.merges is not None:
            kv["tokenizer.ggml.merges"] = ("[str]", self.merges)
        for key, i in self.special.items():
            kv["tokenizer.ggml." + key] = ("u32", i)
        for key, v in (("add_bos_token", self.add_bos), ("add_eos_token", self.add_eos)):
            if v is not None:
                kv["tokenizer.ggml." + key] = ("bool", bool(v))
        if self.chat_template:
            kv["tokenizer.chat_template"] = ("str", self.chat_template)
        return kv


def _protobuf_fields(buf):
    """Yields (field number, wire type, value) of one protobuf message (value: int or bytes)."""
    i = 0

    def varint():
        nonlocal i
        v = shift = 0
        while True:
            if i >= len(buf):
                raise ConvertError("tokenizer.model: truncated protobuf")
            c = buf[i]
            i += 1
            v |= (c & 0x7F) << shift
            shift += 7
            if c < 0x80:
                return v
    while i < len(buf):
        key = varint()
        field, wt = key >> 3, key & 7
        size = {0: 0, 1: 8, 2: None, 5: 4}.get(wt, -1)
        if size == -1:
            raise ConvertError("tokenizer.model: unsupported protobuf wire type %d" % wt)
        if wt == 0:
            yield field, wt, varint()
            continue
        if size is None:
            size = varint()
        if i + size > len(buf):
            raise ConvertError("tokenizer.model: truncated protobuf")
        yield field, wt, buf[i:i + size]
        i += size


def read_sentencepiece(path):
    """SentencePiece ModelProto: pieces are field 1 {1 piece, 2 score, 3 type}; trainer_spec is
    field 2 {40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id}. Piece types equal GGUF token types."""
    with open(path, "rb") as f:
        buf = f.read()
    tokens, scores, types = [], [], []
    ids = {"unknown_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "padding_token_id": -1}
    spec_field = {40: "unknown_token_id", 41: "bos_token_id", 42: "eos_token_id",
                  43: "padding_token_id"}
    for field, wt, v in _protobuf_fields(buf):
        if field == 1 and wt == 2:
            piece, score, typ = "", 0.0, TOKEN_NORMAL
            for f2, w2, v2 in _protobuf_fields(v):
                if f2 == 1 and w2 == 2:
                    piece = v2.decode("utf-8", "surrogateescape")
                elif f2 == 2 and w2 == 5:
                    score = struct.unpack("<f", v2)[0]
                elif f2 == 3 and w2 == 0:
                    typ = v2
            tokens.append(piece)
            scores.append(score)
            types.append(typ)
        elif field == 2 and wt == 2:
            for f2, w2, v2 in _protobuf_fields(v):
                if w2 == 0 and f2 in spec_field:
                    ids[spec_field[f2]] = v2 - (1 << 64) if v2 >= 1 << 63 else v2
    if not tokens:
        raise ConvertError("%s: no pieces" % path)
    vocab = Vocab("llama", "default", tokens, types, scores=scores)
    vocab.special = {k: i for k, i in ids.items() if 0 <= i < len(tokens)}
    vocab.add_bos, vocab.add_eos = True, False
    return vocab


def _template_adds(tj):
    """(add_bos, add_eos) from tokenizer.json's post-processor, None where it says nothing."""
    pp = tj.get("post_processor") or {}
    procs = pp.get("processors", [pp]) if pp.get("type") == "Sequence" else [pp]
    for p in procs:
        if p.get("type") in ("RobertaProcessing", "BertProcessing"):
            return True, True
        if p.get("type") == "TemplateProcessing":
            single = p.get("single", [])
            first, last = (single[0], single[-1]) if single else ({}, {})
            return "SpecialToken" in first, "SpecialToken" in last
    return None, None


def read_tokenizer_json(folder):
    with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise ConvertError("tokenizer.json: model type %r is not supported (BPE only); use "
                           "--vocab FILE.gguf or --no-tokenizer" % model.get("type"))
    base = model["vocab"]
    n = max(base.values()) + 1
    tokens, types = ["[PAD%d]" % i for i in range(n)], [TOKEN_UNUSED] * n
    for text, i in base.items():
        tokens[i], types[i] = text, TOKEN_NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre = tj.get("pre_tokenizer") or {}
    pre_text = json.dumps(pre)
    suffix = model.get("end_of_word_suffix") or ""
    if model.get("byte_fallback"):
        # SentencePiece merges the pair whose result scores highest; tokenizer.json lists the
        # merges in that order, so a token's score is minus the rank of its first merge.
        scores = [0.0] * n
        for rank in reversed(range(len(merges))):
            text = merges[rank].replace(" ", "", 1)
            if text in base:
                scores[base[text]] = float(-rank)
        vocab = Vocab("llama", "default", tokens, types, scores=scores)
        for i, text in enumerate(tokens):
            if re.fullmatch(r"<0x[0-9A-F]{2}>", text):
                vocab.types[i] = TOKEN_BYTE
    elif pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not suffix:
        vocab = Vocab("gpt2", "gpt-2", tokens, types, merges=merges)
    elif suffix == "</w>" and '"ByteLevel"' in pre_text and "Lowercase" in json.dumps(tj.get("normalizer")):
        vocab = Vocab("clip", "clip", tokens, types, merges=merges)     # docs §8
    else:
        raise ConvertError("tokenizer.json: this BPE flavour (pre-tokenizer %s..., "
                           "end_of_word_suffix %r) is not supported; use --vocab FILE.gguf or "
                           "--no-tokenizer" % (pre_text[:60], suffix))
    unk = model.get("unk_token")
    if unk in base:
        vocab.types[base[unk]] = TOKEN_UNKNOWN
    vocab.add_bos, vocab.add_eos = _template_adds(tj)
    if vocab.model == "llama" and vocab.add_bos is None:
        vocab.add_bos = True
    return vocab, tj.get("added_tokens", [])


def add_special_tokens(vocab, folder, added):
    """Added tokens (tokenizer.json's list, tokenizer_config's added_tokens_decoder,
    added_tokens.json) and the special ids named in tokenizer_config.json."""
    tc = {}
    path = os.path.join(folder, "tokenizer_config.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            tc = json.load(f)
    entries = [(t["id"], t["content"], t.get("special", False)) for t in added]
    entries += [(int(i), t["content"], t.get("special", False))
                for i, t in (tc.get("added_tokens_decoder") or {}).items()]
    path = os.path.join(folder, "added_tokens.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            entries += [(i, text, False) for text, i in json.load(f).items()]
    for i, text, special in entries:
        if i < len(vocab.tokens) and vocab.tokens[i] == text and vocab.types[i] != TOKEN_NORMAL:
            continue        # already typed (SentencePiece control / unknown / byte pieces)
        vocab.set_token(i, text, TOKEN_CONTROL if special else TOKEN_USER)
    ids = {text: i for i, text in enumerate(vocab.tokens)}
    for name, key in SPECIAL_KEYS:
        v = tc.get(name)
        text = v.get("content") if isinstance(v, dict) else v
        if text in ids:
            vocab.special[key] = ids[text]
    for key, attr in (("add_bos_token", "add_bos"), ("add_eos_token", "add_eos")):
        if key in tc:
            setattr(vocab, attr, bool(tc[key]))
    if isinstance(tc.get("chat_template"), str):   # libmm recognises the template by its marks
        vocab.chat_template = tc["chat_template"]


def tokenizer_keys(folder, args, n_vocab):
    """tokenizer.ggml.* as {key: (type, value)}, or None when there is no tokenizer."""
    if args.no_tokenizer:
        warn("--no-tokenizer: no tokenizer.ggml.* keys; libmm will accept token ids only")
        return None
    if args.vocab:
        r = GGUFReader(args.vocab)
        kv = {k: (r.types[k], v) for k, v in r.kv.items() if k.startswith("tokenizer.ggml.")}
        if "tokenizer.ggml.tokens" not in kv:
            raise ConvertError("%s has no tokenizer.ggml.tokens" % args.vocab)
        n = len(kv["tokenizer.ggml.tokens"][1])
        if n != n_vocab:    # ids would name other rows, or rows no id reaches: garbage text
            raise ConvertError("--vocab %s has %d tokens but the model's embedding has %d rows: "
                               "not this model's vocabulary (nothing written)"
                               % (args.vocab, n, n_vocab))
        return kv
    sp = os.path.join(folder, "tokenizer.model")
    tj = os.path.join(folder, "tokenizer.json")
    if os.path.exists(sp):
        vocab = read_sentencepiece(sp)
        added = []
        if os.path.exists(tj):
            with open(tj, encoding="utf-8") as f:
                added = json.load(f).get("added_tokens", [])
    elif os.path.exists(tj):
        vocab, added = read_tokenizer_json(folder)
    else:
        warn("no tokenizer.json / tokenizer.model and no --vocab: no tokenizer.ggml.* keys "
             "are written; libmm will accept token ids only")
        return None
    add_special_tokens(vocab, folder, added)
    if len(vocab.tokens) > n_vocab:
        raise ConvertError("the tokenizer has %d tokens but the model's embedding only %d rows"
                           % (len(vocab.tokens), n_vocab))
    if len(vocab.tokens) < n_vocab:     # embedding rows past the tokenizer: unused ids
        vocab.set_token(n_vocab - 1, "[PAD%d]" % (n_vocab - 1), TOKEN_UNUSED)
    return vocab.keys()


def add_tokenizer(out, folder, args, n_vocab):
    tok = tokenizer_keys(folder, args, n_vocab)
    for key, (t, v) in (tok or {}).items():
        out.add(key, v, type=t)


# ------------------------------------------------------------------------------------------
# one function per checkpoint class

def convert_decoder(folder, cfg, ck, args):
    """Qwen2ForCausalLM and Phi3ForCausalLM: one file, the architecture named as the model type."""
    tc = Config(cfg, cfg.get("model_type"))
    out = Output(os.path.join(args.outdir, "model.gguf"), tc.kind, args.outtype, tc.kind)
    write_llama(out, tc, ck, "model.", "lm_head.weight", arch=tc.kind)
    add_tokenizer(out, folder, args, ck.shape("model.embed_tokens.weight")[0])
    return [out]


def convert_qwen2_vl(folder, cfg, ck, args):
    """Qwen2VLForConditionalGeneration: the language model as `qwen2vl` (docs §1e) with its
    M-RoPE sections and the vision token ids, and the vision tower as mmproj.gguf."""
    rs = dict(cfg.get("rope_scaling") or {})
    sections = rs.pop("mrope_section", None)
    if not isinstance(sections, list) or len(sections) != 3:
        raise ConvertError("qwen2_vl rope_scaling.mrope_section must list 3 section sizes, "
                           "found %r" % (sections,))
    if rs.get("rope_type", rs.get("type", "default")) != "default":
        raise ConvertError("qwen2_vl rope_scaling %r is not supported" % (rs,))
    tc = Config(dict(cfg, rope_scaling=None, head_dim=None), "qwen2")
    out = Output(os.path.join(args.outdir, "model.gguf"), "qwen2vl", args.outtype, "qwen2vl")
    write_llama(out, tc, ck, "model.", "lm_head.weight", arch="qwen2vl")
    out.add("qwen2vl.rope.dimension_sections", [int(s) for s in sections] + [0], type="[i32]")
    for key in ("image_token_id", "vision_start_token_id", "vision_end_token_id"):
        if key in cfg:
            out.add("qwen2vl." + key, int(cfg[key]))
    add_tokenizer(out, folder, args, ck.shape("model.embed_tokens.weight")[0])
    return [out, write_qwen2_vl_mmproj(folder, cfg, ck, args)]


def write_qwen2_vl_mmproj(folder, cfg, ck, args):
    """The vision tower in llama.cpp's layout (clip.projector_type qwen2vl_merger, docs §1e):
    the Conv3d patch kernel split by frame into v.patch_embd.weight and .weight.1, qkv split
    into attn_q/k/v, the merger's ln_q as v.post_ln and its MLP as mm.0 / mm.2."""
    vc = dict(cfg.get("vision_config") or {})
    D, H, L = vc.get("embed_dim", 1280), vc.get("num_heads", 16), vc.get("depth", 32)
    F = int(D * vc.get("mlp_ratio", 4))
    P, T = vc.get("patch_size", 14), vc.get("temporal_patch_size", 2)
    merge = vc.get("spatial_merge_size", 2)
    act = activation(vc.get("hidden_act", "quick_gelu"), "vision_config.hidden_act")
    if D % H or (D // H) % 4:
        raise ConvertError("vision embed_dim %d with %d heads: the head size must be a multiple "
                           "of 4 for the 2-D rotary embedding" % (D, H))
    if T != 2:
        raise ConvertError("temporal_patch_size %d: llama.cpp's layout splits the Conv3d kernel "
                           "into exactly 2 frames" % T)
    if vc.get("in_chans", vc.get("in_channels", 3)) != 3:
        raise ConvertError("only RGB vision towers are supported")
    mm = Output(os.path.join(args.outdir, "mmproj.gguf"), "clip", args.outtype, "qwen2vl mmproj")
    mm.add("clip.has_vision_encoder", True)
    mm.add("clip.has_llava_projector", True)
    mm.add("clip.projector_type", "qwen2vl_merger")
    mm.add("clip.use_gelu", False)
    mm.add("clip.vision.hidden_act", act)
    mm.add("clip.vision.image_size", vc.get("image_size", 560))
    mm.add("clip.vision.patch_size", P)
    mm.add("clip.vision.spatial_merge_size", merge)
    mm.add("clip.vision.embedding_length", D)
    mm.add("clip.vision.feed_forward_length", F)
    mm.add("clip.vision.block_count", L)
    mm.add("clip.vision.attention.head_count", H)
    mm.add("clip.vision.attention.layer_norm_epsilon", 1e-6, type="f32")
    mm.add("clip.vision.projection_dim", vc.get("hidden_size", cfg.get("hidden_size")))
    image_processor_keys(mm, folder, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "squash")
    pp_path = os.path.join(folder, "preprocessor_config.json")
    pp = json.load(open(pp_path)) if os.path.exists(pp_path) else {}
    size = pp.get("size") or {}
    mm.add("clip.vision.image_min_pixels", int(pp.get("min_pixels", size.get("min_pixels", 56 * 56))))
    mm.add("clip.vision.image_max_pixels",
           int(pp.get("max_pixels", size.get("max_pixels", 28 * 28 * 1280))))
    for key, want in (("patch_size", P), ("merge_size", merge), ("temporal_patch_size", T)):
        if key in pp and pp[key] != want:
            raise ConvertError("preprocessor_config.json %s = %r, the vision tower's is %r"
                               % (key, pp[key], want))

    w = "visual.patch_embed.proj.weight"
    if tuple(ck.shape(w)) != (D, 3, T, P, P):
        raise ConvertError("%s has shape %s, expected %s" % (w, ck.shape(w), (D, 3, T, P, P)))
    for t, name in enumerate(("v.patch_embd.weight", "v.patch_embd.weight.1")):
        mm.tensor(name, ck.lazy(w, lambda a, t=t: a[:, :, t], (D, 3, P, P)))
    for i in range(L):
        p, b = "visual.blocks.%d." % i, "v.blk.%d." % i
        norm(mm, ck, b + "ln1", p + "norm1")
        for part in ("weight", "bias"):
            name = p + "attn.qkv." + part
            if ck.shape(name)[0] != 3 * D:
                raise ConvertError("%s has %d rows, expected 3 x %d" % (name, ck.shape(name)[0], D))
            for j, g in enumerate(("attn_q", "attn_k", "attn_v")):
                mm.tensor(b + g + "." + part, ck.lazy(name, lambda a, j=j: a[j * D:(j + 1) * D],
                                                      (D,) + tuple(ck.shape(name)[1:])))
        linear(mm, ck, b + "attn_out", p + "attn.proj", bias="required")
        norm(mm, ck, b + "ln2", p + "norm2")
        linear(mm, ck, b + "ffn_up", p + "mlp.fc1", bias="required")
        linear(mm, ck, b + "ffn_down", p + "mlp.fc2", bias="required")
    norm(mm, ck, "v.post_ln", "visual.merger.ln_q")
    linear(mm, ck, "mm.0", "visual.merger.mlp.0", bias="required")
    linear(mm, ck, "mm.2", "visual.merger.mlp.2", bias="required")
    return mm


def convert_llama(folder, cfg, ck, args):
    tc = Config(cfg, cfg.get("model_type", "llama"))
    out = Output(os.path.join(args.outdir, "model.gguf"), "llama", args.outtype, "llama")
    write_llama(out, tc, ck, "model.", "lm_head.weight")
    add_tokenizer(out, folder, args, ck.shape("model.embed_tokens.weight")[0])
    return [out]


LLAVA_RENAMES = [("model.language_model.", "language_model.model."),
                 ("model.vision_tower.", "vision_tower."),
                 ("model.multi_modal_projector.", "multi_modal_projector."),
                 ("lm_head.", "language_model.lm_head.")]


def feature_layers(value, n_layers):
    """HF vision_feature_layer (int or list, negatives from the end) -> hidden_states indices."""
    layers = value if isinstance(value, list) else [value]
    idx = [n_layers + 1 + v if v < 0 else v for v in layers]
    if any(not 0 <= k <= n_layers for k in idx):
        raise ConvertError("vision_feature_layer %r out of range for %d layers" % (value, n_layers))
    return idx


def convert_llava(folder, cfg, ck, args, kind="llava"):
    """LLaVA-1.5, and with kind "llava_next" LLaVA-1.6 (AnyRes): the tiling keys and the
    newline row as llama.cpp's LLaVA-NeXT mmproj files carry them."""
    for new, old in LLAVA_RENAMES:      # newer transformers save other prefixes
        for name in [n for n in ck.names() if n.startswith(new)]:
            ck.entries[old + name[len(new):]] = ck.entries.pop(name)
    if "model.image_newline" in ck:
        ck.entries["image_newline"] = ck.entries.pop("model.image_newline")
    lc = Config(cfg, kind)
    vc = sub_config(cfg, "vision_config", "clip_vision_model",
                    LLAVA_VISION_DEFAULT if "vision_config" not in cfg else None)
    tc = sub_config(cfg, "text_config", "llama")
    if vc.kind not in ("clip_vision_model", "siglip_vision_model"):
        raise ConvertError("LLaVA with a %s vision tower is not supported" % vc.kind)
    select = lc.require("vision_feature_select_strategy", ["default", "full"])
    layers = feature_layers(lc["vision_feature_layer"], vc["num_hidden_layers"])
    if select == "default" and vc.kind == "siglip_vision_model":
        raise ConvertError("vision_feature_select_strategy 'default' drops a class token, "
                           "but a SigLIP tower has none")
    if kind == "llava" and cfg.get("image_grid_pinpoints"):
        raise ConvertError("image_grid_pinpoints is set on a LLaVA (1.5) config: convert it as "
                           "LlavaNextForConditionalGeneration")
    if cfg.get("vision_aspect_ratio"):
        raise ConvertError("vision_aspect_ratio is set: LLaVA-OneVision is not supported")

    text = Output(os.path.join(args.outdir, "model.gguf"), "llama", args.outtype, "llava text")
    write_llama(text, tc, ck, "language_model.model.", "language_model.lm_head.weight")
    add_tokenizer(text, folder, args, ck.shape("language_model.model.embed_tokens.weight")[0])

    mm = Output(os.path.join(args.outdir, "mmproj.gguf"), "clip", args.outtype, "llava mmproj")
    mm.add("clip.has_text_encoder", False)
    mm.add("clip.has_llava_projector", True)
    n_linear = 2 if "multi_modal_projector.linear_2.weight" in ck else 1
    mm.add("clip.projector_type", "mlp" if n_linear == 2 else "linear")
    write_vision_tower(mm, vc, ck, "vision_tower.vision_model.", post_ln=False)
    if vc.kind == "siglip_vision_model":    # LLaVA uses hidden states only, never the head
        for n in [n for n in ck.names() if n.startswith("vision_tower.vision_model.head.")]:
            ck.ignore(n)
    mm.add("clip.vision.projection_dim", vc.d.get("projection_dim", 0) or 0)
    image_processor_keys(mm, folder, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "shortest_edge_crop")
    mm.add("clip.vision.feature_layer", layers, type="[i32]")
    mm.add("clip.vision.feature_select", select)
    mm.add("clip.vision.projector.hidden_act",
           activation(lc["projector_hidden_act"], "llava.projector_hidden_act"))
    if lc["image_token_index"] is not None:
        mm.add("clip.image_token_id", int(lc["image_token_index"]), type="i32")
    linear(mm, ck, "mm.0", "multi_modal_projector.linear_1")
    if n_linear == 2:
        linear(mm, ck, "mm.2", "multi_modal_projector.linear_2")
    if kind == "llava_next":
        pinpoints = lc["image_grid_pinpoints"]
        if not pinpoints or any(len(p) != 2 for p in pinpoints):
            raise ConvertError("image_grid_pinpoints must be a list of (height, width) pairs")
        mm.add("clip.vision.image_grid_pinpoints", [int(x) for p in pinpoints for x in p],
               type="[i32]")
        mm.add("clip.vision.mm_patch_merge_type", "spatial_unpad")
        mm.tensor("model.image_newline", ck.get("image_newline"))
    return [text, mm]


def convert_clip(folder, cfg, ck, args):
    vc = sub_config(cfg, "vision_config", "clip_vision_model")
    tc = sub_config(cfg, "text_config", "clip_text_model")
    out = Output(os.path.join(args.outdir, "model.gguf"), "clip", args.outtype, "clip")
    out.add("clip.has_text_encoder", True)
    out.add("clip.has_llava_projector", False)
    write_vision_tower(out, vc, ck, "vision_model.")
    out.add("clip.vision.projection_dim", ck.shape("visual_projection.weight")[0])
    image_processor_keys(out, folder, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "shortest_edge_crop")
    out.tensor("v.proj.weight", ck.lazy("visual_projection.weight"))

    act = activation(tc["hidden_act"], "clip_text_model.hidden_act")
    Dt, Lt = tc["hidden_size"], tc["num_hidden_layers"]
    if Dt % tc["num_attention_heads"]:
        raise ConvertError("text hidden_size %d not a multiple of the head count" % Dt)
    out.add("clip.logit_scale", float(ck.get("logit_scale").reshape(())), type="f32")
    out.add("clip.text.vocab_size", ck.shape("text_model.embeddings.token_embedding.weight")[0])
    out.add("clip.text.context_length", tc["max_position_embeddings"])
    out.add("clip.text.embedding_length", Dt)
    out.add("clip.text.feed_forward_length", tc["intermediate_size"])
    out.add("clip.text.block_count", Lt)
    out.add("clip.text.attention.head_count", tc["num_attention_heads"])
    out.add("clip.text.attention.layer_norm_epsilon", float(tc["layer_norm_eps"]), type="f32")
    out.add("clip.text.projection_dim", ck.shape("text_projection.weight")[0])
    out.add("clip.text.hidden_act", act)
    eos = tc["eos_token_id"]
    out.add("clip.text.eos_token_id", eos)
    for key in ("bos_token_id", "pad_token_id"):
        if tc[key] is not None:
            out.add("clip.text." + key, tc[key])
    out.add("clip.text.pooling", "argmax" if eos == 2 else "first_eos")

    t = "text_model."
    out.tensor("t.token_embd.weight", ck.lazy(t + "embeddings.token_embedding.weight"))
    out.tensor("t.position_embd.weight", ck.lazy(t + "embeddings.position_embedding.weight"))
    if t + "embeddings.position_ids" in ck:
        ck.ignore(t + "embeddings.position_ids")
    for i in range(Lt):
        write_block(out, ck, "t.blk.%d." % i, "%sencoder.layers.%d." % (t, i),
                    "layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2")
    norm(out, ck, "t.post_ln", t + "final_layer_norm")
    out.tensor("t.proj.weight", ck.lazy("text_projection.weight"))
    add_tokenizer(out, folder, args, ck.shape(t + "embeddings.token_embedding.weight")[0])
    return [out]


def convert_siglip(folder, cfg, ck, args):
    vc = Config(cfg, "siglip_vision_model")
    out = Output(os.path.join(args.outdir, "model.gguf"), "clip", args.outtype, "siglip vision")
    out.add("clip.has_text_encoder", False)
    out.add("clip.has_llava_projector", False)
    write_vision_tower(out, vc, ck, "vision_model.")
    image_processor_keys(out, folder, HALF, HALF, "squash")
    if vc["vision_use_head"]:
        write_siglip_head(out, ck, "vision_model.", vc["hidden_size"])
    return [out]


def write_qformer(out, qc, ck, n_query, D_vision):
    act = activation(qc["hidden_act"], "blip_2_qformer.hidden_act")
    Dq, L, freq = qc["hidden_size"], qc["num_hidden_layers"], qc["cross_attention_frequency"]
    if Dq % qc["num_attention_heads"]:
        raise ConvertError("Q-Former hidden_size %d not a multiple of the head count" % Dq)
    if freq < 1:
        raise ConvertError("cross_attention_frequency must be >= 1")
    q = "clip.qformer."
    out.add(q + "embedding_length", Dq)
    out.add(q + "feed_forward_length", qc["intermediate_size"])
    out.add(q + "block_count", L)
    out.add(q + "attention.head_count", qc["num_attention_heads"])
    out.add(q + "attention.layer_norm_epsilon", float(qc["layer_norm_eps"]), type="f32")
    out.add(q + "cross_attention_frequency", freq)
    out.add(q + "query_count", n_query)
    out.add(q + "hidden_act", act)
    out.add(q + "encoder_width", D_vision)

    out.tensor("qformer.query_embd", ck.get("query_tokens").reshape(n_query, Dq))
    norm(out, ck, "qformer.embd_ln", "qformer.layernorm")
    for i in range(L):
        p, b = "qformer.encoder.layer.%d." % i, "qformer.blk.%d." % i
        for g, hf in (("attn_q", "query"), ("attn_k", "key"), ("attn_v", "value")):
            linear(out, ck, b + g, p + "attention.attention." + hf, "required")
        linear(out, ck, b + "attn_out", p + "attention.output.dense", "required")
        norm(out, ck, b + "attn_ln", p + "attention.output.LayerNorm")
        if i % freq == 0:
            for g, hf in (("cross_q", "query"), ("cross_k", "key"), ("cross_v", "value")):
                linear(out, ck, b + g, p + "crossattention.attention." + hf, "required")
            linear(out, ck, b + "cross_out", p + "crossattention.output.dense", "required")
            norm(out, ck, b + "cross_ln", p + "crossattention.output.LayerNorm")
        linear(out, ck, b + "ffn_up", p + "intermediate_query.dense", "required")
        linear(out, ck, b + "ffn_down", p + "output_query.dense", "required")
        norm(out, ck, b + "ffn_ln", p + "output_query.LayerNorm")
        # the text-side FFN serves BLIP-2's text input, which captioning never feeds
        for n in ck.names():
            if n.startswith(p + "intermediate.") or n.startswith(p + "output."):
                ck.ignore(n)
    for n in ck.names():    # word/position embeddings of the Q-Former's unused text input
        if n.startswith("qformer.embeddings."):
            ck.ignore(n)


def convert_blip2(folder, cfg, ck, args):
    bc = Config(cfg, "blip-2")
    vc = sub_config(cfg, "vision_config", "blip_2_vision_model")
    qc = sub_config(cfg, "qformer_config", "blip_2_qformer")
    tc = sub_config(cfg, "text_config", "opt")
    if tc.kind != "opt":
        raise ConvertError("BLIP-2 with a %s language model is not supported (OPT only)" % tc.kind)
    if vc.kind != "blip_2_vision_model":
        raise ConvertError("BLIP-2 with a %s vision model is not supported" % vc.kind)

    text = Output(os.path.join(args.outdir, "model.gguf"), "opt", args.outtype, "blip-2 text")
    write_opt(text, tc, ck, "language_model.model.decoder.", "language_model.lm_head.weight")
    add_tokenizer(text, folder, args, ck.shape("language_model.model.decoder.embed_tokens.weight")[0])

    mm = Output(os.path.join(args.outdir, "mmproj.gguf"), "clip", args.outtype, "blip-2 mmproj")
    mm.add("clip.has_text_encoder", False)
    mm.add("clip.has_llava_projector", True)
    mm.add("clip.projector_type", "qformer")
    write_vision_tower(mm, vc, ck, "vision_model.")
    image_processor_keys(mm, folder, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "squash")
    if bc["image_token_index"] is not None:
        mm.add("clip.image_token_id", int(bc["image_token_index"]), type="i32")
    write_qformer(mm, qc, ck, bc["num_query_tokens"], vc["hidden_size"])
    linear(mm, ck, "mm.proj", "language_projection", "required")
    return [text, mm]


def convert_idefics2_perceiver(folder, cfg, ck, args):
    if "latents" not in ck:
        raise ConvertError("a full Idefics2 checkpoint is not supported; only the perceiver "
                           "resampler's own state dict ('latents', 'layers.N.*', 'norm.weight')")
    pc = Config(cfg.get("perceiver_config") or {}, "idefics2_perceiver")
    text_cfg = cfg.get("text_config") or {}
    act = activation(pc["hidden_act"], "perceiver_config.hidden_act")
    D = ck.shape("latents")[1]
    if text_cfg.get("hidden_size", D) != D:
        raise ConvertError("latents width %d != text_config.hidden_size %d"
                           % (D, text_cfg["hidden_size"]))
    H, Hkv, hd = pc["resampler_n_heads"], pc["num_key_value_heads"], pc["resampler_head_dim"]
    L, n_lat = pc["resampler_depth"], pc["resampler_n_latents"]
    if H % Hkv:
        raise ConvertError("resampler_n_heads %d not a multiple of num_key_value_heads %d"
                           % (H, Hkv))
    if ck.shape("latents")[0] != n_lat:
        raise ConvertError("latents has %d rows, config says %d" % (ck.shape("latents")[0], n_lat))
    F = ck.shape("layers.0.mlp.gate_proj.weight")[0]
    out = Output(os.path.join(args.outdir, "model.gguf"), "clip", args.outtype,
                 "idefics2 perceiver resampler")
    out.add("clip.has_vision_encoder", False)
    out.add("clip.has_text_encoder", False)
    out.add("clip.has_llava_projector", True)
    out.add("clip.projector_type", "perceiver")
    r = "clip.perceiver."
    out.add(r + "embedding_length", D)
    out.add(r + "block_count", L)
    out.add(r + "latent_count", n_lat)
    out.add(r + "attention.head_count", H)
    out.add(r + "attention.head_count_kv", Hkv)
    out.add(r + "attention.key_length", hd)
    out.add(r + "feed_forward_length", F)
    out.add(r + "attention.layer_norm_rms_epsilon",
            float(text_cfg.get("rms_norm_eps", 1e-6)), type="f32")
    out.add(r + "hidden_act", act)
    out.add(r + "norm", "rms")

    out.tensor("perceiver.latents", ck.lazy("latents"))
    for i in range(L):
        p, b = "layers.%d." % i, "perceiver.blk.%d." % i
        out.tensor(b + "ln_latents.weight", ck.lazy(p + "input_latents_norm.weight"))
        out.tensor(b + "ln_context.weight", ck.lazy(p + "input_context_norm.weight"))
        for g, hf in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj"),
                      ("attn_out", "o_proj")):
            linear(out, ck, b + g, p + "self_attn." + hf)
        out.tensor(b + "ffn_norm.weight", ck.lazy(p + "post_attention_layernorm.weight"))
        for g in ("gate", "up", "down"):
            linear(out, ck, b + "ffn_" + g, p + "mlp.%s_proj" % g)
    out.tensor("perceiver.post_ln.weight", ck.lazy("norm.weight"))
    return [out]


def write_audio_tower(out, ac, ck, prefix):
    """A Whisper-style encoder (HF WhisperEncoder / Qwen2AudioEncoder) as llama.cpp's a.*."""
    ac.require("activation_function", ["gelu"])
    ac.require("scale_embedding", [False], "the input would be scaled by sqrt(d_model)")
    D, L = ac["d_model"], ac["encoder_layers"]
    out.add("clip.has_audio_encoder", True)
    out.add("clip.audio.num_mel_bins", ac["num_mel_bins"])
    out.add("clip.audio.embedding_length", D)
    out.add("clip.audio.feed_forward_length", ac["encoder_ffn_dim"])
    out.add("clip.audio.block_count", L)
    out.add("clip.audio.attention.head_count", ac["encoder_attention_heads"])
    out.add("clip.audio.attention.layer_norm_epsilon", 1e-5, type="f32")  # nn.LayerNorm default
    if ck.shape(prefix + "embed_positions.weight")[0] != ac["max_source_positions"]:
        raise ConvertError("embed_positions has %d rows, max_source_positions is %d"
                           % (ck.shape(prefix + "embed_positions.weight")[0],
                              ac["max_source_positions"]))
    out.tensor("a.position_embd.weight", ck.lazy(prefix + "embed_positions.weight"))
    for i in (1, 2):
        linear(out, ck, "a.conv1d.%d" % i, prefix + "conv%d" % i, bias="required")
    for i in range(L):
        write_block(out, ck, "a.blk.%d." % i, "%slayers.%d." % (prefix, i),
                    "self_attn_layer_norm", "final_layer_norm", "fc1", "fc2")
    norm(out, ck, "a.post_ln", prefix + "layer_norm")


def convert_qwen2_audio(folder, cfg, ck, args):
    ac = sub_config(cfg, "audio_config", "qwen2_audio_encoder")
    tc = sub_config(cfg, "text_config", "qwen2")
    if tc.kind != "qwen2":
        raise ConvertError("Qwen2-Audio with a %s language model is not supported" % tc.kind)
    text = Output(os.path.join(args.outdir, "model.gguf"), "qwen2", args.outtype,
                  "qwen2-audio text")
    write_llama(text, tc, ck, "language_model.model.", "language_model.lm_head.weight",
                arch="qwen2")
    add_tokenizer(text, folder, args, ck.shape("language_model.model.embed_tokens.weight")[0])

    mm = Output(os.path.join(args.outdir, "mmproj.gguf"), "clip", args.outtype,
                "qwen2-audio mmproj")
    mm.add("clip.has_vision_encoder", False)
    mm.add("clip.has_text_encoder", False)
    mm.add("clip.projector_type", "qwen2a")
    write_audio_tower(mm, ac, ck, "audio_tower.")
    mm.add("clip.audio.projection_dim", ck.shape("multi_modal_projector.linear.weight")[0])
    mm.add("clip.audio_token_id", int(cfg.get("audio_token_index", 151646)), type="i32")
    linear(mm, ck, "mm.a.fc", "multi_modal_projector.linear")
    return [text, mm]


CONVERTERS = {"LlamaForCausalLM": convert_llama, "MistralForCausalLM": convert_llama,
              "Qwen2ForCausalLM": convert_decoder, "Phi3ForCausalLM": convert_decoder,
              "Qwen2VLForConditionalGeneration": convert_qwen2_vl,
              "LlavaForConditionalGeneration": convert_llava,
              "LlavaNextForConditionalGeneration":
                  lambda folder, cfg, ck, args: convert_llava(folder, cfg, ck, args, "llava_next"),
              "CLIPModel": convert_clip,
              "SiglipVisionModel": convert_siglip,
              "Blip2ForConditionalGeneration": convert_blip2,
              "Qwen2AudioForConditionalGeneration": convert_qwen2_audio}
MODEL_TYPES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
               "phi3": "Phi3ForCausalLM", "qwen2_vl": "Qwen2VLForConditionalGeneration",
               "llava": "LlavaForConditionalGeneration",
               "llava_next": "LlavaNextForConditionalGeneration",
               "clip": "CLIPModel", "siglip_vision_model": "SiglipVisionModel",
               "blip-2": "Blip2ForConditionalGeneration",
               "qwen2_audio": "Qwen2AudioForConditionalGeneration"}


def supports(folder):
    """Whether the checkpoint folder's model class is one this converter handles."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    arch = (cfg.get("architectures") or [None])[0]
    if arch is None and cfg.get("model_type") == "idefics2":
        return True
    return (arch or MODEL_TYPES.get(cfg.get("model_type"))) in CONVERTERS


def convert(folder, outdir, outtype="f32", vocab=None, no_tokenizer=False):
    """Convert one checkpoint folder; returns the paths written."""
    args = argparse.Namespace(outdir=outdir, outtype=outtype, vocab=vocab,
                              no_tokenizer=no_tokenizer)
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    arch = (cfg.get("architectures") or [None])[0]
    if arch is None and cfg.get("model_type") == "idefics2":
        fn = convert_idefics2_perceiver
    else:
        arch = arch or MODEL_TYPES.get(cfg.get("model_type"))
        if arch not in CONVERTERS:
            raise ConvertError("model class %r is not supported (supported: %s, and the "
                               "Idefics2 perceiver resampler)" % (arch, ", ".join(CONVERTERS)))
        fn = CONVERTERS[arch]
    ck = Checkpoint(folder)
    outputs = fn(folder, cfg, ck, args)
    ck.check_all_used()
    os.makedirs(outdir, exist_ok=True)
    for o in outputs:
        o.write()
    return [o.path for o in outputs]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", help="HF checkpoint folder (config.json + *.safetensors)")
    ap.add_argument("-o", "--outdir", required=True,
                    help="output folder: model.gguf (+ mmproj.gguf for LLaVA and BLIP-2)")
    ap.add_argument("--outtype", choices=["f32", "f16", "bf16", "q8_0"], default="f32",
                    help="type of weight matrices (default f32); 1-D tensors stay f32")
    ap.add_argument("--vocab", metavar="FILE.gguf",
                    help="copy the tokenizer.ggml.* keys from this GGUF instead of reading "
                         "tokenizer.json / tokenizer.model")
    ap.add_argument("--no-tokenizer", action="store_true",
                    help="write no tokenizer.ggml.* keys (libmm then takes token ids only)")
    a = ap.parse_args(argv)
    try:
        for p in convert(a.model_dir, a.outdir, a.outtype, a.vocab, a.no_tokenizer):
            print(p)
    except (ConvertError, OSError, ValueError, KeyError) as e:
        print("convert_hf_to_gguf: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
