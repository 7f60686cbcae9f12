"""CLIP and LLaVA in plain PyTorch, following HF transformers' math (4.45, eager attention).

Module and parameter names mirror HF's, so `state_dict()` keys are the HF checkpoint names and the
exported folders load as transformers.CLIPModel / LlavaForConditionalGeneration. Configs are the HF
config dicts (`text_config` / `vision_config` with HF key names). Checked against HF's own outputs
by tools/train/check_models.py on tests/vectors/hf/{clip,llava}.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def causal_mask(t, dtype):
    """(t, t) additive mask: 0 on and below the diagonal, the dtype's minimum above (as HF)."""
    return torch.full((t, t), torch.finfo(dtype).min, dtype=dtype).triu(1)


# ---------------------------------------------------------------- CLIP

class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.scale = self.head_dim ** -0.5
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, mask=None):
        b, t, d = x.shape
        h, hd = self.heads, self.head_dim
        q = (self.q_proj(x) * self.scale).view(b, t, h, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, hd).transpose(1, 2)
        w = q @ k.transpose(-1, -2)
        if mask is not None:
            w = w + mask
        o = torch.softmax(w, dim=-1) @ v
        return self.out_proj(o.transpose(1, 2).reshape(b, t, d))


class CLIPMLP(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x):
        return self.fc2(quick_gelu(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, d, f, heads, eps):
        super().__init__()
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.mlp = CLIPMLP(d, f)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList(
            CLIPEncoderLayer(c["hidden_size"], c["intermediate_size"], c["num_attention_heads"],
                             c.get("layer_norm_eps", 1e-5)) for _ in range(c["num_hidden_layers"]))

    def forward(self, x, mask=None):
        """All hidden states as HF returns them: [input, after layer 0, ..., after the last]."""
        states = [x]
        for layer in self.layers:
            x = layer(x, mask)
            states.append(x)
        return states


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, p = c["hidden_size"], c["patch_size"]
        self.class_embedding = nn.Parameter(torch.randn(d))
        self.patch_embedding = nn.Conv2d(c.get("num_channels", 3), d, p, stride=p, bias=False)
        self.position_embedding = nn.Embedding((c["image_size"] // p) ** 2 + 1, d)

    def forward(self, pixel_values):
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.class_embedding.expand(pixel_values.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight[None]


class CLIPVisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, eps = c["hidden_size"], c.get("layer_norm_eps", 1e-5)
        self.embeddings = CLIPVisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(d, eps=eps)  # HF's spelling
        self.encoder = CLIPEncoder(c)
        self.post_layernorm = nn.LayerNorm(d, eps=eps)

    def hidden_states(self, pixel_values):
        return self.encoder(self.pre_layrnorm(self.embeddings(pixel_values)))

    def forward(self, pixel_values):
        """(last_hidden_state, pooled = post_layernorm(CLS))"""
        last = self.hidden_states(pixel_values)[-1]
        return last, self.post_layernorm(last[:, 0])


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.token_embedding = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embedding = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])

    def forward(self, ids):
        return self.token_embedding(ids) + self.position_embedding.weight[None, :ids.shape[1]]


class CLIPTextTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.eos_token_id = c["eos_token_id"]
        self.embeddings = CLIPTextEmbeddings(c)
        self.encoder = CLIPEncoder(c)
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-5))

    def forward(self, ids):
        """(last_hidden_state, pooled at each row's first EOS); no padding mask: causal only."""
        x = self.embeddings(ids)
        x = self.final_layer_norm(self.encoder(x, causal_mask(ids.shape[1], x.dtype))[-1])
        if self.eos_token_id == 2:  # HF's legacy rule for old configs: the largest id
            pos = ids.argmax(dim=-1)
        else:
            pos = (ids == self.eos_token_id).int().argmax(dim=-1)
        return x, x[torch.arange(ids.shape[0]), pos]


class CLIPModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        tc, vc = config["text_config"], config["vision_config"]
        self.text_model = CLIPTextTransformer(tc)
        self.vision_model = CLIPVisionTransformer(vc)
        self.visual_projection = nn.Linear(vc["hidden_size"], config["projection_dim"], bias=False)
        self.text_projection = nn.Linear(tc["hidden_size"], config["projection_dim"], bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.get("logit_scale_init_value", 2.6592))))

    def image_embeds(self, pixel_values):
        return F.normalize(self.visual_projection(self.vision_model(pixel_values)[1]), dim=-1)

    def text_embeds(self, ids):
        return F.normalize(self.text_projection(self.text_model(ids)[1]), dim=-1)

    def forward(self, pixel_values, ids):
        """logits_per_image (B_img, B_txt)"""
        return self.logit_scale.exp() * self.image_embeds(pixel_values) @ self.text_embeds(ids).t()


# ---------------------------------------------------------------- Llama

class LlamaRMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rope_cos_sin(t, head_dim, theta, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.arange(t, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.heads, self.kv_heads = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
        self.head_dim = c.get("head_dim", d // self.heads)
        self.q_proj = nn.Linear(d, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, d, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        hd = self.head_dim
        q = self.q_proj(x).view(b, t, self.heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        w = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = torch.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype) @ v
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(LlamaDecoderLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x):
        """x: input embeddings (B, T, D), positions 0..T-1 -> final-normed hidden states."""
        t = x.shape[1]
        hd = self.layers[0].self_attn.head_dim
        cos, sin = rope_cos_sin(t, hd, self.c.get("rope_theta", 10000.0), x.dtype)
        mask = causal_mask(t, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, x):
        return self.lm_head(self.model(x))


# ---------------------------------------------------------------- LLaVA

class LlavaMultiModalProjector(nn.Module):
    def __init__(self, d_vision, d_text):
        super().__init__()
        self.linear_1 = nn.Linear(d_vision, d_text)
        self.linear_2 = nn.Linear(d_text, d_text)

    def forward(self, x):
        return self.linear_2(F.gelu(self.linear_1(x)))  # erf GELU, HF's "gelu"


class CLIPVisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vision_model = CLIPVisionTransformer(c)


class LlavaForConditionalGeneration(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        vc, tc = config["vision_config"], config["text_config"]
        assert not tc.get("tie_word_embeddings", False)
        self.vision_tower = CLIPVisionModel(vc)
        self.multi_modal_projector = LlavaMultiModalProjector(vc["hidden_size"], tc["hidden_size"])
        self.language_model = LlamaForCausalLM(tc)

    def image_features(self, pixel_values):
        """(B, N, D_text): projected patch features of the feature layer ('default': CLS dropped)."""
        states = self.vision_tower.vision_model.hidden_states(pixel_values)
        feats = states[self.config["vision_feature_layer"]]
        assert self.config["vision_feature_select_strategy"] == "default"
        return self.multi_modal_projector(feats[:, 1:])

    def embed(self, ids, features, which_image=None):
        """Token embeddings with the image-token positions replaced, in order, by image features.
        features (B_img, N, D); which_image (B,) picks each row's image (default: row i -> i)."""
        x = self.language_model.model.embed_tokens(ids)
        if which_image is not None:
            features = features[which_image]
        m = (ids == self.config["image_token_index"])
        return x.masked_scatter(m[..., None], features.to(x.dtype))

    def forward(self, ids, pixel_values):
        return self.language_model(self.embed(ids, self.image_features(pixel_values)))
