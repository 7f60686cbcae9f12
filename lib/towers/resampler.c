/* Perceiver resampler (see resampler.h and docs/model-format.md §7). */
#include "resampler.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "status.h"

static mm_status load_config(mmi_resampler_config *c, const mmi_gguf *g, int n_in)
{
    const char *path = mmi_gguf_path(g);
    static const char *const keys[] = {
        "clip.perceiver.embedding_length", "clip.perceiver.block_count",
        "clip.perceiver.latent_count", "clip.perceiver.attention.head_count",
        "clip.perceiver.feed_forward_length"};
    int *const dst[] = {&c->n_embd, &c->n_block, &c->n_latent, &c->n_head, &c->n_ff};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        MMI_TRY(mmi_weights_dim(g, keys[i], MMI_MAX_DIM, dst[i]));
    if ((uint64_t)c->n_block > mmi_gguf_n_tensors(g)) /* each block has tensors of its own */
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.perceiver.block_count = %d but the file holds "
                        "%llu tensors", path, c->n_block, (unsigned long long)mmi_gguf_n_tensors(g));
    c->n_head_kv = c->n_head;
    if (mmi_gguf_has(g, "clip.perceiver.attention.head_count_kv"))
        MMI_TRY(mmi_weights_dim(g, "clip.perceiver.attention.head_count_kv", MMI_MAX_DIM,
                                &c->n_head_kv));
    if (c->n_head % c->n_head_kv)
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.perceiver.attention.head_count %d is not a "
                        "multiple of head_count_kv %d", path, c->n_head, c->n_head_kv);
    c->head_dim = c->n_embd / c->n_head;
    if (mmi_gguf_has(g, "clip.perceiver.attention.key_length"))
        MMI_TRY(mmi_weights_dim(g, "clip.perceiver.attention.key_length", MMI_MAX_DIM,
                                &c->head_dim));
    else if (c->n_embd % c->n_head)
        return mmi_fail(MM_ERR_FORMAT, "%s: no clip.perceiver.attention.key_length and "
                        "embedding_length %d is not a multiple of head_count %d", path,
                        c->n_embd, c->n_head);
    if ((int64_t)c->n_head * c->head_dim > MMI_MAX_DIM)
        return mmi_fail(MM_ERR_FORMAT, "%s: %d heads of %d are too wide", path, c->n_head,
                        c->head_dim);
    if (c->n_embd != n_in)
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.perceiver.embedding_length is %d but the "
                        "context rows are %d wide", path, c->n_embd, n_in);

    const char *norm = "rms";
    if (mmi_gguf_has(g, "clip.perceiver.norm"))
        MMI_TRY(mmi_gguf_get_string(g, "clip.perceiver.norm", &norm, NULL));
    if (strcmp(norm, "rms") != 0 && strcmp(norm, "layer") != 0)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: clip.perceiver.norm '%s' is not rms or layer",
                        path, norm);
    c->layer_norm = norm[0] == 'l';
    double eps;
    MMI_TRY(mmi_gguf_get_float(g, c->layer_norm ? "clip.perceiver.attention.layer_norm_epsilon"
                                                : "clip.perceiver.attention.layer_norm_rms_epsilon",
                               &eps));
    c->eps = (float)eps;
    const char *act;
    MMI_TRY(mmi_gguf_get_string(g, "clip.perceiver.hidden_act", &act, NULL));
    if (!mmi_act_from_name(act, &c->act))
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: clip.perceiver.hidden_act '%s' is unknown",
                        path, act);
    c->gated = mmi_gguf_find_tensor(g, "perceiver.blk.0.ffn_gate.weight") != NULL;
    return MM_OK;
}

static mm_status load_norm(mmi_resampler_norm *nw, mmi_weights *w, const mmi_resampler_config *c,
                           const char *name, int i)
{
    char full[64];
    if (i >= 0)
        snprintf(full, sizeof full, "perceiver.blk.%d.%s", i, name);
    else
        snprintf(full, sizeof full, "perceiver.%s", name);
    MMI_TRY(mmi_weights_vector(w, 1, &nw->w, c->n_embd, "%s.weight", full));
    nw->b = NULL;
    if (c->layer_norm)
        MMI_TRY(mmi_weights_vector(w, 1, &nw->b, c->n_embd, "%s.bias", full));
    return MM_OK;
}

static mm_status load_block(mmi_resampler_block *b, mmi_weights *w, const mmi_resampler_config *c,
                            int i)
{
    const int d = c->n_embd, q_width = c->n_head * c->head_dim,
              kv_width = c->n_head_kv * c->head_dim;
    MMI_TRY(load_norm(&b->ln_latents, w, c, "ln_latents", i));
    MMI_TRY(load_norm(&b->ln_context, w, c, "ln_context", i));
    MMI_TRY(load_norm(&b->ffn_norm, w, c, "ffn_norm", i));
    MMI_TRY(mmi_weights_matrix(w, 1, &b->attn_q, d, q_width, "perceiver.blk.%d.attn_q.weight", i));
    MMI_TRY(mmi_weights_matrix(w, 1, &b->attn_k, d, kv_width, "perceiver.blk.%d.attn_k.weight",
                               i));
    MMI_TRY(mmi_weights_matrix(w, 1, &b->attn_v, d, kv_width, "perceiver.blk.%d.attn_v.weight",
                               i));
    MMI_TRY(mmi_weights_matrix(w, 1, &b->attn_out, q_width, d, "perceiver.blk.%d.attn_out.weight",
                               i));
    /* Every block has the MLP form of block 0: a gate missing elsewhere is an error. */
    MMI_TRY(mmi_weights_matrix(w, c->gated, &b->ffn_gate, d, c->n_ff,
                               "perceiver.blk.%d.ffn_gate.weight", i));
    if (!c->gated && b->ffn_gate.data)
        return mmi_fail(MM_ERR_FORMAT, "%s: perceiver.blk.%d.ffn_gate.weight present but block "
                        "0 has none", mmi_gguf_path(w->file), i);
    MMI_TRY(mmi_weights_matrix(w, 1, &b->ffn_up, d, c->n_ff, "perceiver.blk.%d.ffn_up.weight", i));
    MMI_TRY(mmi_weights_matrix(w, 1, &b->ffn_down, c->n_ff, d, "perceiver.blk.%d.ffn_down.weight",
                               i));
    return MM_OK;
}

mm_status mmi_resampler_load(mmi_resampler *r, const mmi_gguf *g, mmi_weights *w, int n_in)
{
    *r = (mmi_resampler){0};
    mmi_resampler_config *c = &r->cfg;
    MMI_TRY(load_config(c, g, n_in));
    const uint64_t latents_ne[2] = {(uint64_t)c->n_embd, (uint64_t)c->n_latent};
    MMI_TRY(mmi_weights_get(w, 1, &r->latents, 2, latents_ne, "perceiver.latents"));
    MMI_TRY(load_norm(&r->post_ln, w, c, "post_ln", -1));
    r->blocks = mmi_calloc((size_t)c->n_block, sizeof *r->blocks);
    if (!r->blocks)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %d resampler blocks",
                        mmi_gguf_path(g), c->n_block);
    mm_status st = MM_OK;
    for (int i = 0; i < c->n_block && st == MM_OK; i++)
        st = load_block(&r->blocks[i], w, c, i);
    if (st != MM_OK)
        mmi_resampler_free(r);
    return st;
}

void mmi_resampler_free(mmi_resampler *r)
{
    mmi_free(r->blocks);
    *r = (mmi_resampler){0};
}

typedef struct {
    float *kv_in;  /* [n + Nl][Dr]: normed context rows, then normed latents */
    float *k, *v;  /* [n + Nl][Hr_kv*hd] */
    float *q, *attn; /* [Nl][Hr*hd] */
    float *scores; /* [Nl][n + Nl] */
    float *h;      /* [Nl][Dr] */
    float *up, *gate; /* [Nl][Fr] */
} scratch_bufs;

/* Lay the buffers out in s (NULL: just measure); returns the floats used. */
static size_t split_scratch(const mmi_resampler_config *c, int n, float *s, scratch_bufs *b)
{
    size_t rows = (size_t)n + c->n_latent, nl = (size_t)c->n_latent, at = 0;
    size_t kv_width = (size_t)c->n_head_kv * c->head_dim, q_width = (size_t)c->n_head * c->head_dim;
    b->kv_in = mmi_carve(s, &at, rows * c->n_embd);
    b->k = mmi_carve(s, &at, rows * kv_width);
    b->v = mmi_carve(s, &at, rows * kv_width);
    b->q = mmi_carve(s, &at, nl * q_width);
    b->attn = mmi_carve(s, &at, nl * q_width);
    b->scores = mmi_carve(s, &at, nl * rows);
    b->h = mmi_carve(s, &at, nl * c->n_embd);
    b->up = mmi_carve(s, &at, nl * c->n_ff);
    b->gate = mmi_carve(s, &at, c->gated ? nl * c->n_ff : 0);
    return at;
}

size_t mmi_resampler_scratch_floats(const mmi_resampler *r, int n_context)
{
    scratch_bufs b;
    return split_scratch(&r->cfg, n_context, NULL, &b);
}

static void norm(const mmi_resampler_config *c, const mmi_resampler_norm *nw, float *out,
                 const float *x, int n)
{
    if (c->layer_norm)
        mmi_layernorm(out, x, n, c->n_embd, nw->w, nw->b, c->eps);
    else
        mmi_rmsnorm(out, x, n, c->n_embd, nw->w, c->eps);
}

void mmi_resampler_run(const mmi_resampler *r, const float *context, int n, float *out,
                       float *scratch)
{
    const mmi_resampler_config *c = &r->cfg;
    const int nl = c->n_latent, d = c->n_embd, rows = n + nl;
    const size_t ff = (size_t)nl * c->n_ff;
    scratch_bufs s;
    split_scratch(c, n, scratch, &s);
    float *lat = out;
    float *lat_normed = s.kv_in + (size_t)n * d;
    memcpy(lat, r->latents, sizeof(float) * (size_t)nl * d);
    for (int i = 0; i < c->n_block; i++) {
        const mmi_resampler_block *b = &r->blocks[i];
        norm(c, &b->ln_context, s.kv_in, context, n);
        norm(c, &b->ln_latents, lat_normed, lat, nl);
        mmi_linear(s.q, lat_normed, nl, &b->attn_q, NULL);
        mmi_linear(s.k, s.kv_in, rows, &b->attn_k, NULL);
        mmi_linear(s.v, s.kv_in, rows, &b->attn_v, NULL);
        mmi_attention(s.attn, s.q, s.k, s.v, nl, rows, c->n_head, c->n_head_kv, c->head_dim,
                      c->n_head_kv * c->head_dim, 0, 0, s.scores);
        mmi_linear(s.h, s.attn, nl, &b->attn_out, NULL);
        mmi_add(lat, s.h, (size_t)nl * d);

        norm(c, &b->ffn_norm, s.h, lat, nl);
        mmi_linear(s.up, s.h, nl, &b->ffn_up, NULL);
        if (c->gated) {
            mmi_linear(s.gate, s.h, nl, &b->ffn_gate, NULL);
            mmi_activate(c->act, s.gate, ff);
            for (size_t j = 0; j < ff; j++)
                s.up[j] *= s.gate[j];
        } else {
            mmi_activate(c->act, s.up, ff);
        }
        mmi_linear(s.h, s.up, nl, &b->ffn_down, NULL);
        mmi_add(lat, s.h, (size_t)nl * d);
    }
    norm(c, &r->post_ln, out, out, nl);
}
