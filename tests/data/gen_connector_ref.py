#!/usr/bin/python3
"""Writes tests/data/connector_ref.h: Q-Former, Perceiver resampler and OPT decoder cases with
shapes and switches the shared HF vectors do not reach (cross-attention on every 2nd block,
vision width != Q-Former width != language width, grouped KV with head_dim != width/heads, the
Flamingo form with LayerNorm and a plain GELU MLP; OPT post-LN without final norm, untied head,
another position offset, GELU), computed in float64 by PyTorch:
  - Q-Former: torch.nn.MultiheadAttention / LayerNorm / Linear composed as BLIP-2's BERT-style
    post-LN blocks (HF Blip2QFormerLayer: self-attention, cross-attention, query FFN);
  - resampler: Idefics2PerceiverLayer's math (latents attend to [context; latents]) and
    Flamingo's PerceiverResampler (LayerNorm, GELU MLP), written out below;
  - OPT: torch.nn.TransformerEncoderLayer (causal mask; norm_first for pre-LN) is exactly an
    OPTDecoderLayer; learned positions at p + offset, final LayerNorm, tied or untied head.
Each case lists GGUF keys and tensors (names and ggml shapes of docs/model-format.md §6/§7)
for the C test to write into a file with the GGUF writer.
Run: /usr/bin/python3 tests/data/gen_connector_ref.py"""
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)


def rnd(*shape, scale=0.5):
    # rounded to float32 so the C side (which stores f32) sees exactly the same weights
    return (torch.randn(*shape) * scale).float().double()


def gguf_tensors(named):
    """[(name, torch tensor in HF layout)] -> [(name, ne, flat values)]: ne is the shape reversed."""
    return [(n, list(reversed(t.shape)), t.reshape(-1).tolist()) for n, t in named]


# ---------------------------------------------------------------------------------------------

def qformer_case(name, dq, heads, d_vis, ff, e, nq, n_vis, blocks, freq, eps, act):
    t = [("qformer.query_embd", rnd(nq, dq, scale=1.0)),
         ("qformer.embd_ln.weight", 1 + rnd(dq, scale=0.2)),
         ("qformer.embd_ln.bias", rnd(dq, scale=0.2))]
    mods = []
    for i in range(blocks):
        sa = torch.nn.MultiheadAttention(dq, heads, batch_first=True)
        ca = (torch.nn.MultiheadAttention(dq, heads, kdim=d_vis, vdim=d_vis, batch_first=True)
              if i % freq == 0 else None)
        lns = [torch.nn.LayerNorm(dq, eps=eps) for _ in range(3)]
        up, down = torch.nn.Linear(dq, ff), torch.nn.Linear(ff, dq)
        with torch.no_grad():
            for p in [*sa.parameters(), *(ca.parameters() if ca else []), *up.parameters(),
                      *down.parameters()]:
                p.copy_(rnd(*p.shape))
            for ln in lns:
                ln.weight.copy_(1 + rnd(dq, scale=0.2))
                ln.bias.copy_(rnd(dq, scale=0.2))
        b = "qformer.blk.%d." % i
        for mha, kind, ln in ((sa, "attn", lns[0]), (ca, "cross", lns[1])):
            if mha is None:
                continue
            ws = mha.in_proj_weight.detach().split(dq) if mha._qkv_same_embed_dim else \
                (mha.q_proj_weight.detach(), mha.k_proj_weight.detach(),
                 mha.v_proj_weight.detach())
            for x, w, bias in zip("qkv", ws, mha.in_proj_bias.detach().split(dq)):
                t += [(b + "%s_%s.weight" % (kind, x), w), (b + "%s_%s.bias" % (kind, x), bias)]
            t += [(b + kind + "_out.weight", mha.out_proj.weight.detach()),
                  (b + kind + "_out.bias", mha.out_proj.bias.detach()),
                  (b + kind + "_ln.weight", ln.weight.detach()),
                  (b + kind + "_ln.bias", ln.bias.detach())]
        t += [(b + "ffn_up.weight", up.weight.detach()), (b + "ffn_up.bias", up.bias.detach()),
              (b + "ffn_down.weight", down.weight.detach()),
              (b + "ffn_down.bias", down.bias.detach()),
              (b + "ffn_ln.weight", lns[2].weight.detach()),
              (b + "ffn_ln.bias", lns[2].bias.detach())]
        mods.append((sa, ca, lns, up, down))
    proj_w, proj_b = rnd(e, dq), rnd(e, scale=0.2)
    t += [("mm.proj.weight", proj_w), ("mm.proj.bias", proj_b)]

    vision = rnd(n_vis, d_vis, scale=1.0)
    tt = dict(t)
    with torch.no_grad():
        q = F.layer_norm(tt["qformer.query_embd"], (dq,), tt["qformer.embd_ln.weight"],
                         tt["qformer.embd_ln.bias"], eps)[None]
        for sa, ca, lns, up, down in mods:
            q = lns[0](q + sa(q, q, q, need_weights=False)[0])
            if ca:
                q = lns[1](q + ca(q, vision[None], vision[None], need_weights=False)[0])
            q = lns[2](q + down({"gelu": F.gelu, "relu": F.relu}[act](up(q))))
        hidden = q[0]
        out = hidden @ proj_w.T + proj_b
    keys = [("general.architecture", "str", "clip"),
            ("clip.qformer.embedding_length", "u32", dq),
            ("clip.qformer.feed_forward_length", "u32", ff),
            ("clip.qformer.block_count", "u32", blocks),
            ("clip.qformer.attention.head_count", "u32", heads),
            ("clip.qformer.attention.layer_norm_epsilon", "f32", eps),
            ("clip.qformer.cross_attention_frequency", "u32", freq),
            ("clip.qformer.query_count", "u32", nq),
            ("clip.qformer.hidden_act", "str", act),
            ("clip.qformer.encoder_width", "u32", d_vis)]
    return dict(name=name, keys=keys, tensors=gguf_tensors(t), input=vision, hidden=hidden,
                output=out, ids=None)


# ---------------------------------------------------------------------------------------------

def perceiver_case(name, d, heads, heads_kv, head_dim, ff, nl, n_ctx, blocks, eps, form):
    layer = form == "flamingo"
    act = "gelu" if layer else "silu"

    def norm_params(prefix):
        p = [(prefix + ".weight", 1 + rnd(d, scale=0.2))]
        return p + [(prefix + ".bias", rnd(d, scale=0.2))] if layer else p

    t = [("perceiver.latents", rnd(nl, d, scale=1.0))]
    for i in range(blocks):
        b = "perceiver.blk.%d." % i
        t += norm_params(b + "ln_latents") + norm_params(b + "ln_context")
        t += [(b + "attn_q.weight", rnd(heads * head_dim, d)),
              (b + "attn_k.weight", rnd(heads_kv * head_dim, d)),
              (b + "attn_v.weight", rnd(heads_kv * head_dim, d)),
              (b + "attn_out.weight", rnd(d, heads * head_dim))]
        t += norm_params(b + "ffn_norm")
        if not layer:
            t += [(b + "ffn_gate.weight", rnd(ff, d))]
        t += [(b + "ffn_up.weight", rnd(ff, d)), (b + "ffn_down.weight", rnd(d, ff))]
    t += norm_params("perceiver.post_ln")
    tt = dict(t)

    def norm(x, prefix):
        if layer:
            return F.layer_norm(x, (d,), tt[prefix + ".weight"], tt[prefix + ".bias"], eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * tt[prefix + ".weight"]

    context = rnd(n_ctx, d, scale=1.0)
    lat = tt["perceiver.latents"]
    for i in range(blocks):
        b = "perceiver.blk.%d." % i
        l = norm(lat, b + "ln_latents")
        kv = torch.cat([norm(context, b + "ln_context"), l])
        q = (l @ tt[b + "attn_q.weight"].T).reshape(nl, heads, head_dim).transpose(0, 1)
        k = (kv @ tt[b + "attn_k.weight"].T).reshape(-1, heads_kv, head_dim).transpose(0, 1)
        v = (kv @ tt[b + "attn_v.weight"].T).reshape(-1, heads_kv, head_dim).transpose(0, 1)
        k = k.repeat_interleave(heads // heads_kv, 0)
        v = v.repeat_interleave(heads // heads_kv, 0)
        p = torch.softmax(q @ k.transpose(1, 2) / head_dim ** 0.5, -1)
        a = (p @ v).transpose(0, 1).reshape(nl, heads * head_dim)
        lat = lat + a @ tt[b + "attn_out.weight"].T
        m = norm(lat, b + "ffn_norm")
        if layer:
            h = F.gelu(m @ tt[b + "ffn_up.weight"].T)
        else:
            h = F.silu(m @ tt[b + "ffn_gate.weight"].T) * (m @ tt[b + "ffn_up.weight"].T)
        lat = lat + h @ tt[b + "ffn_down.weight"].T
    out = norm(lat, "perceiver.post_ln")
    keys = [("general.architecture", "str", "clip"),
            ("clip.perceiver.embedding_length", "u32", d),
            ("clip.perceiver.block_count", "u32", blocks),
            ("clip.perceiver.latent_count", "u32", nl),
            ("clip.perceiver.attention.head_count", "u32", heads),
            ("clip.perceiver.feed_forward_length", "u32", ff),
            ("clip.perceiver.hidden_act", "str", act),
            ("clip.perceiver.norm", "str", "layer" if layer else "rms")]
    if layer:  # Flamingo: K/V heads and head dim left to their defaults (H, Dr/H)
        assert heads_kv == heads and head_dim * heads == d
        keys.append(("clip.perceiver.attention.layer_norm_epsilon", "f32", eps))
    else:
        keys += [("clip.perceiver.attention.head_count_kv", "u32", heads_kv),
                 ("clip.perceiver.attention.key_length", "u32", head_dim),
                 ("clip.perceiver.attention.layer_norm_rms_epsilon", "f32", eps)]
    return dict(name=name, keys=keys, tensors=gguf_tensors(t), input=context, hidden=None,
                output=out, ids=None)


# ---------------------------------------------------------------------------------------------

def opt_case(name, e, heads, ff, vocab, ctx, blocks, offset, pre_ln, act, tied, final_ln,
             n_embd_rows, n_ids, eps=1e-5):
    t = [("token_embd.weight", rnd(vocab, e, scale=1.0)),
         ("position_embd.weight", rnd(ctx + offset, e, scale=1.0))]
    layers = []
    for i in range(blocks):
        layer = torch.nn.TransformerEncoderLayer(e, heads, ff, dropout=0.0, activation=act,
                                                 layer_norm_eps=eps, batch_first=True,
                                                 norm_first=pre_ln)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(rnd(*p.shape))
            for ln in (layer.norm1, layer.norm2):
                ln.weight.copy_(1 + rnd(e, scale=0.2))
        layer.eval()
        b = "blk.%d." % i
        w, bias = layer.self_attn.in_proj_weight.detach(), layer.self_attn.in_proj_bias.detach()
        for x, wx, bx in zip("qkv", w.split(e), bias.split(e)):
            t += [(b + "attn_%s.weight" % x, wx), (b + "attn_%s.bias" % x, bx)]
        t += [(b + "attn_output.weight", layer.self_attn.out_proj.weight.detach()),
              (b + "attn_output.bias", layer.self_attn.out_proj.bias.detach()),
              (b + "attn_norm.weight", layer.norm1.weight.detach()),
              (b + "attn_norm.bias", layer.norm1.bias.detach()),
              (b + "ffn_up.weight", layer.linear1.weight.detach()),
              (b + "ffn_up.bias", layer.linear1.bias.detach()),
              (b + "ffn_down.weight", layer.linear2.weight.detach()),
              (b + "ffn_down.bias", layer.linear2.bias.detach()),
              (b + "ffn_norm.weight", layer.norm2.weight.detach()),
              (b + "ffn_norm.bias", layer.norm2.bias.detach())]
        layers.append(layer)
    if final_ln:
        t += [("output_norm.weight", 1 + rnd(e, scale=0.2)), ("output_norm.bias", rnd(e, scale=0.2))]
    if not tied:
        t += [("output.weight", rnd(vocab, e))]
    tt = dict(t)

    embd_rows = rnd(n_embd_rows, e, scale=1.0)
    ids = torch.randint(0, vocab, (n_ids,))
    x = torch.cat([embd_rows, tt["token_embd.weight"][ids]])
    n = len(x)
    x = x + tt["position_embd.weight"][torch.arange(n) + offset]
    causal = torch.triu(torch.full((n, n), float("-inf")), 1)
    with torch.no_grad():
        h = x[None]
        for layer in layers:
            h = layer(h, src_mask=causal)
        h = h[0]
        if final_ln:
            h = F.layer_norm(h, (e,), tt["output_norm.weight"], tt["output_norm.bias"], eps)
        logits = h @ (tt["token_embd.weight"] if tied else tt["output.weight"]).T
    keys = [("general.architecture", "str", "opt"),
            ("opt.vocab_size", "u32", vocab), ("opt.context_length", "u32", ctx),
            ("opt.embedding_length", "u32", e), ("opt.block_count", "u32", blocks),
            ("opt.feed_forward_length", "u32", ff), ("opt.attention.head_count", "u32", heads),
            ("opt.attention.layer_norm_epsilon", "f32", eps),
            ("opt.position_offset", "u32", offset), ("opt.layer_norm_before", "bool", pre_ln),
            ("opt.hidden_act", "str", act), ("opt.word_embed_proj_dim", "u32", e)]
    return dict(name=name, keys=keys, tensors=gguf_tensors(t), input=embd_rows, hidden=None,
                output=logits, ids=ids.tolist())


# ---------------------------------------------------------------------------------------------

def c_floats(values):
    items = ["%.9gf" % v for v in values]
    return "{\n    " + ",\n    ".join(", ".join(items[i:i + 6]) for i in range(0, len(items), 6)) \
        + "\n}"


def emit(cases):
    out = ["/* Generated by tests/data/gen_connector_ref.py from torch %s; do not edit. */\n"
           % torch.__version__,
           "typedef struct { const char *key; const char *type; double num; const char *str; } "
           "ref_key;\n",
           "typedef struct { const char *name; int n_dims; unsigned long long ne[4]; "
           "const float *data; } ref_tensor;\n",
           "typedef struct {\n    const char *name;\n    const ref_key *keys;\n    int n_keys;\n"
           "    const ref_tensor *tensors;\n    int n_tensors;\n"
           "    int n_in, in_width;      /* input rows */\n    const float *input;\n"
           "    int n_out, out_width;    /* output rows */\n    const float *output;\n"
           "    int hidden_width;        /* Q-Former hidden state (0: none) */\n"
           "    const float *hidden;\n"
           "    int n_ids;               /* OPT: token ids after the input rows */\n"
           "    const int *ids;\n} ref_case;\n\n"]
    for c in cases:
        n = c["name"]
        for j, (tn, ne, vals) in enumerate(c["tensors"]):
            out.append("static const float %s_t%d[] = %s;\n" % (n, j, c_floats(vals)))
        out.append("static const ref_tensor %s_tensors[] = {\n" % n)
        for j, (tn, ne, vals) in enumerate(c["tensors"]):
            out.append('    {"%s", %d, {%s}, %s_t%d},\n'
                       % (tn, len(ne), ", ".join(map(str, ne)), n, j))
        out.append("};\nstatic const ref_key %s_keys[] = {\n" % n)
        for k, ty, v in c["keys"]:
            if ty == "str":
                out.append('    {"%s", "str", 0, "%s"},\n' % (k, v))
            elif ty == "bool":
                out.append('    {"%s", "bool", %d, 0},\n' % (k, int(v)))
            else:
                out.append('    {"%s", "%s", %r, 0},\n' % (k, ty, float(v)))
        out.append("};\n")
        for part in ("input", "output", "hidden"):
            if c[part] is not None and c[part].numel():
                out.append("static const float %s_%s[] = %s;\n"
                           % (n, part, c_floats(c[part].reshape(-1).tolist())))
        if c["ids"] is not None:
            out.append("static const int %s_ids[] = {%s};\n" % (n, ", ".join(map(str, c["ids"]))))
        hid = c["hidden"]
        out.append("static const ref_case %s = {\"%s\", %s_keys, %d, %s_tensors, %d, %d, %d, "
                   "%s, %d, %d, %s_output, %d, %s, %d, %s};\n\n"
                   % (n, n, n, len(c["keys"]), n, len(c["tensors"]), c["input"].shape[0],
                      c["input"].shape[1], "%s_input" % n if c["input"].numel() else "NULL",
                      c["output"].shape[0], c["output"].shape[1], n,
                      0 if hid is None else hid.shape[1],
                      "NULL" if hid is None else "%s_hidden" % n,
                      0 if c["ids"] is None else len(c["ids"]),
                      "NULL" if c["ids"] is None else "%s_ids" % n))
    return "".join(out)


CASES = [
    # 3 blocks, cross-attention on blocks 0 and 2; D 6 != Dq 8 != E 5; more vision rows than
    # queries
    qformer_case("qformer_freq2", dq=8, heads=2, d_vis=6, ff=12, e=5, nq=3, n_vis=7, blocks=3,
                 freq=2, eps=1e-12, act="gelu"),
    # fewer vision rows than queries, relu, one head
    qformer_case("qformer_small", dq=4, heads=1, d_vis=4, ff=6, e=7, nq=5, n_vis=2, blocks=1,
                 freq=1, eps=1e-6, act="relu"),
    # Idefics2 form: 3 query heads over 1 KV head, head_dim 5 != 8/3
    perceiver_case("perceiver_gqa", d=8, heads=3, heads_kv=1, head_dim=5, ff=12, nl=3, n_ctx=7,
                   blocks=2, eps=1e-6, form="idefics2"),
    # Flamingo form: LayerNorm with bias, GELU MLP without gate
    perceiver_case("perceiver_flamingo", d=8, heads=2, heads_kv=2, head_dim=4, ff=16, nl=4,
                   n_ctx=5, blocks=2, eps=1e-5, form="flamingo"),
    # post-LN blocks (OPT-350m style) and so no final norm; 3 embedding rows before the text
    opt_case("opt_post_ln", e=8, heads=2, ff=12, vocab=13, ctx=12, blocks=2, offset=2,
             pre_ln=False, act="relu", tied=True, final_ln=False, n_embd_rows=3, n_ids=5),
    # pre-LN, untied head, GELU, positions without offset, text only
    opt_case("opt_untied", e=8, heads=4, ff=10, vocab=11, ctx=10, blocks=2, offset=0,
             pre_ln=True, act="gelu", tied=False, final_ln=True, n_embd_rows=0, n_ids=6),
]

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "connector_ref.h")
with open(path, "w") as f:
    f.write(emit(CASES))
