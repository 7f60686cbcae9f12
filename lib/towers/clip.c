/* CLIP text tower and projections (see clip.h). */
#include "clip.h"

#include <math.h>
#include <string.h>

#include "alloc.h"
#include "status.h"
#include "tokenizer.h"

static mm_status load_clip_text(mmi_clip_text *c, const mmi_gguf *g)
{
    const char *path = mmi_gguf_path(g);
    mmi_weights *w = &c->weights;
    MMI_TRY(mmi_encoder_load(&c->enc, g, w, "clip.text", "t"));
    MMI_TRY(mmi_tower_act(g, "clip.text", &c->enc.act));
    c->enc.causal = 1;
    int Dt = c->enc.n_embd;

    int64_t vocab, ctx, proj, eos, vision_width;
    MMI_TRY(mmi_gguf_get_int(g, "clip.text.vocab_size", &vocab));
    MMI_TRY(mmi_gguf_get_int(g, "clip.text.context_length", &ctx));
    MMI_TRY(mmi_gguf_get_int(g, "clip.text.projection_dim", &proj));
    MMI_TRY(mmi_gguf_get_int(g, "clip.text.eos_token_id", &eos));
    MMI_TRY(mmi_gguf_get_int(g, "clip.vision.embedding_length", &vision_width));
    if (vocab < 1 || vocab > (1 << 24) || ctx < 1 || ctx > (1 << 16) || proj < 1 ||
        proj > (1 << 16) || vision_width < 1 || vision_width > (1 << 16))
        return mmi_fail(MM_ERR_FORMAT, "%s: CLIP sizes out of range (vocab %lld, context %lld, "
                        "projection %lld, vision width %lld)", path, (long long)vocab,
                        (long long)ctx, (long long)proj, (long long)vision_width);
    c->n_vocab = (int)vocab;
    c->n_ctx = (int)ctx;
    c->n_proj = (int)proj;
    c->eos_id = eos >= 0 && eos < vocab ? (int)eos : -1;

    const char *pooling = "first_eos";
    if (mmi_gguf_has(g, "clip.text.pooling"))
        MMI_TRY(mmi_gguf_get_string(g, "clip.text.pooling", &pooling, NULL));
    if (strcmp(pooling, "argmax") == 0)
        c->pool_argmax = 1;
    else if (strcmp(pooling, "first_eos") != 0)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: clip.text.pooling = '%s' (expected 'first_eos' "
                        "or 'argmax')", path, pooling);
    else if (c->eos_id < 0)
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.text.eos_token_id %lld is not in the %d-token "
                        "vocabulary", path, (long long)eos, c->n_vocab);

    double scale;
    MMI_TRY(mmi_gguf_get_float(g, "clip.logit_scale", &scale));
    if (!(fabs(scale) < 80.0))
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.logit_scale = %g is not a usable log scale",
                        path, scale);
    c->logit_scale = (float)scale;

    const uint64_t tok_ne[2] = {(uint64_t)Dt, (uint64_t)c->n_vocab};
    MMI_TRY(mmi_weights_get(w, 1, &c->tok_embd, 2, tok_ne, "t.token_embd.weight"));
    const uint64_t pos_ne[2] = {(uint64_t)Dt, (uint64_t)c->n_ctx};
    MMI_TRY(mmi_weights_get(w, 1, &c->pos_embd, 2, pos_ne, "t.position_embd.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &c->post_ln_w, Dt, "t.post_ln.weight"));
    MMI_TRY(mmi_weights_vector(w, 0, &c->post_ln_b, Dt, "t.post_ln.bias"));
    MMI_TRY(mmi_weights_matrix(w, 1, &c->text_proj, Dt, c->n_proj, "t.proj.weight"));
    MMI_TRY(mmi_weights_matrix(w, 1, &c->visual_proj, (int)vision_width, c->n_proj,
                               "v.proj.weight"));
    return MM_OK;
}

mm_status mmi_clip_text_load(const mmi_gguf *g, mmi_clip_text **out)
{
    *out = NULL;
    mmi_clip_text *c = mmi_calloc(1, sizeof *c);
    if (!c)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the CLIP text encoder",
                        mmi_gguf_path(g));
    mmi_weights_init(&c->weights, g);
    mm_status st = load_clip_text(c, g);
    if (st != MM_OK) {
        mmi_clip_text_free(c);
        return st;
    }
    *out = c;
    return MM_OK;
}

void mmi_clip_text_free(mmi_clip_text *c)
{
    if (!c)
        return;
    mmi_encoder_free(&c->enc);
    mmi_weights_free(&c->weights);
    mmi_free(c);
}

int mmi_clip_text_pool_index(const mmi_clip_text *c, const int32_t *ids, int n)
{
    /* As HF: argmax over (ids == eos) is the first eos, or 0 when there is none; the legacy
     * rule takes the first largest id. */
    int best = 0;
    for (int i = 0; i < n; i++) {
        if (c->pool_argmax ? ids[i] > ids[best] : ids[i] == c->eos_id) {
            best = i;
            if (!c->pool_argmax)
                break;
        }
    }
    return best;
}

mm_status mmi_clip_text_hidden(const mmi_clip_text *c, const int32_t *ids, int n, float *out)
{
    int Dt = c->enc.n_embd;
    if (n < 1 || n > c->n_ctx)
        return mmi_fail(MM_ERR_ARG, "CLIP text of %d tokens: the model takes 1 to %d", n,
                        c->n_ctx);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->n_vocab)
            return mmi_fail(MM_ERR_ARG, "token id %d at position %d is outside the %d-token "
                            "vocabulary", (int)ids[i], i, c->n_vocab);
    float *scratch = mmi_array(mmi_encoder_scratch_floats(&c->enc, n, 1), sizeof(float));
    if (!scratch)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for CLIP text run state (%d tokens)", n);
    for (int i = 0; i < n; i++) {
        float *x = out + (size_t)i * Dt;
        memcpy(x, c->tok_embd + (size_t)ids[i] * Dt, sizeof(float) * Dt);
        mmi_add(x, c->pos_embd + (size_t)i * Dt, Dt);
    }
    for (int l = 0; l < c->enc.n_layer; l++)
        mmi_encoder_block(&c->enc, l, out, n, 1, NULL, scratch);
    mmi_layernorm(out, out, n, Dt, c->post_ln_w, c->post_ln_b, c->enc.eps);
    mmi_free(scratch);
    return MM_OK;
}

void mmi_l2_normalize(float *x, int n)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    if (ss > 0.0) {
        float inv = (float)(1.0 / sqrt(ss));
        for (int i = 0; i < n; i++)
            x[i] *= inv;
    }
}

mm_status mmi_clip_text_embed(const mmi_clip_text *c, const int32_t *ids, int n, float *out,
                              int normalize)
{
    if (n < 1 || n > c->n_ctx)
        return mmi_fail(MM_ERR_ARG, "CLIP text of %d tokens: the model takes 1 to %d", n,
                        c->n_ctx);
    float *hidden = mmi_array((size_t)n * c->enc.n_embd, sizeof(float));
    if (!hidden)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for CLIP text states (%d tokens)", n);
    mm_status st = mmi_clip_text_hidden(c, ids, n, hidden);
    if (st == MM_OK) {
        int row = mmi_clip_text_pool_index(c, ids, n);
        mmi_linear(out, hidden + (size_t)row * c->enc.n_embd, 1, &c->text_proj, NULL);
        if (normalize)
            mmi_l2_normalize(out, c->n_proj);
    }
    mmi_free(hidden);
    return st;
}

mm_status mmi_clip_text_embed_string(const mmi_clip_text *c, const mmi_tokenizer *tok,
                                     const char *text, float *out, int normalize)
{
    mmi_tokens t = {0};
    MMI_TRY(mmi_tokenize(tok, text, strlen(text), MM_TOKENIZE_ADD_SPECIAL, &t));
    size_t n = t.n;
    if (n > (size_t)c->n_ctx) {
        n = (size_t)c->n_ctx;
        if (mmi_tokenizer_adds_eos(tok))
            t.ids[n - 1] = mmi_token_eos(tok);
    }
    mm_status st = mmi_clip_text_embed(c, t.ids, (int)n, out, normalize);
    mmi_tokens_free(&t);
    return st;
}

mm_status mmi_clip_image_embed(const mmi_clip_text *c, const mmi_vision *v, const float *chw,
                               int width, int height, float *out, int normalize)
{
    if (v->enc.n_embd != c->visual_proj.n_in)
        return mmi_fail(MM_ERR_FORMAT, "v.proj takes %d-wide vectors, the vision tower gives %d",
                        c->visual_proj.n_in, v->enc.n_embd);
    float *pooled = mmi_array((size_t)v->enc.n_embd, sizeof(float));
    if (!pooled)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for the pooled image vector");
    mm_status st = mmi_vision_pooled(v, chw, width, height, pooled, NULL);
    if (st == MM_OK) {
        mmi_linear(out, pooled, 1, &c->visual_proj, NULL);
        if (normalize)
            mmi_l2_normalize(out, c->n_proj);
    }
    mmi_free(pooled);
    return st;
}
