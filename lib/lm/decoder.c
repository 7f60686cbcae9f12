/* The decoder of every family (see decoder.h): load from GGUF, run prefill chunks and single
 * tokens. */
#include "decoder.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "status.h"

/* ---- the families ---- */

static const mmi_family families[] = {
    {"llama", MMI_ROPE_NORM, .eps_key = "attention.layer_norm_rms_epsilon", .gated_ffn = 1},
    {"qwen2", MMI_ROPE_NEOX, .eps_key = "attention.layer_norm_rms_epsilon", .gated_ffn = 1,
     .qkv_bias = 1},
    {"qwen2vl", MMI_ROPE_MULTI, .eps_key = "attention.layer_norm_rms_epsilon", .gated_ffn = 1,
     .qkv_bias = 1},
    {"phi3", MMI_ROPE_NEOX, .eps_key = "attention.layer_norm_rms_epsilon", .gated_ffn = 1,
     .fused_qkv = 1, .fused_gate_up = 1},
    {"opt", MMI_POS_LEARNED, .layer_norm = 1, .eps_key = "attention.layer_norm_epsilon",
     .eps_default = 1e-5, .output_norm_optional = 1},
};

const mmi_family *mmi_family_find(const char *arch)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (strcmp(families[i].arch, arch) == 0)
            return &families[i];
    return NULL;
}

/* ---- loading ---- */

/* `<arch>.<key>` in [1, max]; required when def < 0. */
static mm_status get_dim(const mmi_gguf *g, const char *arch, const char *key, int64_t def,
                         int max, int *out)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    return def < 0 ? mmi_weights_dim(g, name, max, out)
                   : mmi_weights_dim_or(g, name, def, max, out);
}

static mm_status get_positive_float(const mmi_gguf *g, const char *arch, const char *key,
                                    int required, double def, float *out)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    double v;
    if (required)
        MMI_TRY(mmi_gguf_get_float(g, name, &v));
    else
        MMI_TRY(mmi_gguf_get_float_or(g, name, def, &v));
    if (!(v > 0 && v < 1e30))
        return mmi_fail(MM_ERR_FORMAT, "%s: %s = %g must be positive", mmi_gguf_path(g), name, v);
    *out = (float)v;
    return MM_OK;
}

/* M-RoPE: <arch>.rope.dimension_sections, llama.cpp's four counts of rotated pairs taken by
 * the time, height and width positions (the fourth, unused here, must be 0); they must add up
 * to the n_rot/2 pairs. */
static mm_status load_rope_sections(const mmi_gguf *g, const char *arch, mmi_decoder_config *c)
{
    const char *path = mmi_gguf_path(g);
    char key[96];
    snprintf(key, sizeof key, "%s.rope.dimension_sections", arch);
    mmi_gguf_type type;
    uint64_t n;
    MMI_TRY(mmi_gguf_get_array_info(g, key, &type, &n));
    int64_t v[4] = {0};
    if (n < 3 || n > 4)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s has %llu values, expected 3 or 4", path, key,
                        (unsigned long long)n);
    MMI_TRY(mmi_gguf_get_int_array(g, key, v, n));
    int64_t sum = 0;
    for (int i = 0; i < 4; i++) {
        if (v[i] < 0 || v[i] > c->n_rot)
            return mmi_fail(MM_ERR_FORMAT, "%s: %s[%d] = %lld is out of range", path, key, i,
                            (long long)v[i]);
        sum += v[i];
    }
    if (v[3] != 0)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: %s has a fourth section (%lld pairs)", path,
                        key, (long long)v[3]);
    if (sum != c->n_rot / 2)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s = [%lld, %lld, %lld] add up to %lld pairs, not "
                        "the %d that rope.dimension_count %d rotates", path, key,
                        (long long)v[0], (long long)v[1], (long long)v[2], (long long)sum,
                        c->n_rot / 2, c->n_rot);
    for (int i = 0; i < 3; i++)
        c->rope_sections[i] = (int)v[i];
    c->n_pos_dims = 3;
    return MM_OK;
}

/* RoPE: the rotated dims and the base, without scaling; and the optional sliding window. */
static mm_status load_rope_config(const mmi_gguf *g, const char *arch, mmi_decoder_config *c)
{
    const char *path = mmi_gguf_path(g);
    char key[96];
    snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
    if (mmi_gguf_has(g, key))
        MMI_TRY(mmi_weights_dim(g, key, MMI_MAX_CTX, &c->n_swa));
    /* Phi-3's LongRoPE rescales each frequency by a factor table. */
    if (mmi_gguf_find_tensor(g, "rope_factors_long.weight"))
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: RoPE factor tables (rope_factors_long.weight, "
                        "LongRoPE) are not supported", path);
    MMI_TRY(get_dim(g, arch, "rope.dimension_count", c->head_dim, MMI_MAX_DIM, &c->n_rot));
    MMI_TRY(get_positive_float(g, arch, "rope.freq_base", 0, 10000.0, &c->rope_base));
    if (c->n_rot % 2 != 0 || c->n_rot > c->head_dim)
        return mmi_fail(MM_ERR_FORMAT, "%s: rope.dimension_count %d must be even and at most "
                        "the head size %d", path, c->n_rot, c->head_dim);
    if (c->family->pos == MMI_ROPE_MULTI)
        MMI_TRY(load_rope_sections(g, arch, c));
    /* Linear RoPE scaling (the default type when only a factor is given) needs fractional
     * positions, which the kernels do not take. */
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *scaling = "linear";
    if (mmi_gguf_has(g, key))
        MMI_TRY(mmi_gguf_get_string(g, key, &scaling, NULL));
    double factor;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    MMI_TRY(mmi_gguf_get_float_or(g, key, 1.0, &factor));
    if (strcmp(scaling, "none") != 0 && factor != 1.0)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: RoPE scaling '%s' with factor %g is not "
                        "supported", path, scaling, factor);
    return MM_OK;
}

/* LayerNorm families: pre- or post-LN blocks (layer_norm_before), and the plain feed-forward's
 * activation. OPT-350m's project_in/out (word_embed_proj_dim != E) is not handled. */
static mm_status load_layer_norm_config(const mmi_gguf *g, const char *arch,
                                        mmi_decoder_config *c)
{
    const char *path = mmi_gguf_path(g);
    char key[96];
    snprintf(key, sizeof key, "%s.layer_norm_before", arch);
    MMI_TRY(mmi_gguf_get_bool_or(g, key, 1, &c->norm_before));
    snprintf(key, sizeof key, "%s.hidden_act", arch);
    const char *act = "relu";
    if (mmi_gguf_has(g, key))
        MMI_TRY(mmi_gguf_get_string(g, key, &act, NULL));
    if (!mmi_act_from_name(act, &c->ffn_act))
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: %s '%s' is unknown", path, key, act);
    int word_width;
    MMI_TRY(get_dim(g, arch, "word_embed_proj_dim", c->n_embd, MMI_MAX_DIM, &word_width));
    if (word_width != c->n_embd)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: %s.word_embed_proj_dim %d differs from the "
                        "embedding width %d (project_in/out are not supported)", path, arch,
                        word_width, c->n_embd);
    return MM_OK;
}

/* Learned positions: the table's rows give how many. */
static mm_status load_learned_positions(const mmi_gguf *g, const char *arch,
                                        mmi_decoder_config *c)
{
    const char *path = mmi_gguf_path(g);
    char key[96];
    snprintf(key, sizeof key, "%s.position_offset", arch);
    int64_t offset;
    MMI_TRY(mmi_gguf_get_int_or(g, key, 2, &offset));
    const mmi_tensor *pos = mmi_gguf_find_tensor(g, "position_embd.weight");
    uint64_t rows = pos && pos->n_dims == 2 ? pos->ne[1] : 0;
    if (offset < 0 || (uint64_t)offset >= rows || rows > MMI_MAX_CTX)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s = %lld needs position_embd.weight with more rows "
                        "(found %llu)", path, key, (long long)offset, (unsigned long long)rows);
    c->pos_offset = (int)offset;
    c->n_pos = (int)(rows - (uint64_t)offset);
    if (c->n_ctx_train > c->n_pos)
        c->n_ctx_train = c->n_pos;
    return MM_OK;
}

static mm_status load_config(const mmi_gguf *g, mmi_decoder_config *c)
{
    const char *path = mmi_gguf_path(g), *arch;
    MMI_TRY(mmi_gguf_get_string(g, "general.architecture", &arch, NULL));
    const mmi_family *f = c->family = mmi_family_find(arch);
    if (!f)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: language model architecture '%s' is not "
                        "supported (llama, qwen2, qwen2vl, phi3 or opt)", path, arch);
    MMI_TRY(get_dim(g, arch, "embedding_length", -1, MMI_MAX_DIM, &c->n_embd));
    MMI_TRY(get_dim(g, arch, "block_count", -1, MMI_MAX_DIM, &c->n_layer));
    MMI_TRY(get_dim(g, arch, "feed_forward_length", -1, MMI_MAX_DIM, &c->n_ff));
    MMI_TRY(get_dim(g, arch, "attention.head_count", -1, MMI_MAX_DIM, &c->n_head));
    MMI_TRY(get_dim(g, arch, "attention.head_count_kv", c->n_head, MMI_MAX_DIM, &c->n_head_kv));
    MMI_TRY(get_dim(g, arch, "attention.key_length", c->n_embd / c->n_head, MMI_MAX_DIM,
                    &c->head_dim));
    MMI_TRY(get_dim(g, arch, "context_length", -1, MMI_MAX_CTX, &c->n_ctx_train));
    MMI_TRY(get_positive_float(g, arch, f->eps_key, f->eps_default == 0, f->eps_default,
                               &c->norm_eps));
    c->n_pos_dims = 1;
    c->norm_before = 1;
    c->ffn_act = MMI_ACT_SILU;
    if (f->layer_norm)
        MMI_TRY(load_layer_norm_config(g, arch, c));
    if (f->pos == MMI_POS_LEARNED)
        MMI_TRY(load_learned_positions(g, arch, c));
    else
        MMI_TRY(load_rope_config(g, arch, c));
    /* Every block has tensors of its own: a count beyond the file's would only size memory. */
    if ((uint64_t)c->n_layer > mmi_gguf_n_tensors(g))
        return mmi_fail(MM_ERR_FORMAT, "%s: %s.block_count = %d but the file holds %llu tensors",
                        path, arch, c->n_layer, (unsigned long long)mmi_gguf_n_tensors(g));
    if (c->n_head % c->n_head_kv != 0)
        return mmi_fail(MM_ERR_FORMAT, "%s: %d attention heads are not a multiple of %d KV heads",
                        path, c->n_head, c->n_head_kv);
    if ((int64_t)c->n_head * c->head_dim > MMI_MAX_DIM)
        return mmi_fail(MM_ERR_FORMAT, "%s: %d heads x head size %d is too large", path,
                        c->n_head, c->head_dim);
    /* The value length, when given, must equal the key length: one head size serves both. */
    int value_length;
    MMI_TRY(get_dim(g, arch, "attention.value_length", c->head_dim, MMI_MAX_DIM, &value_length));
    if (value_length != c->head_dim)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: attention.value_length %d differs from "
                        "key_length %d", path, value_length, c->head_dim);
    /* The vocabulary size: the key when present, else the embedding's rows. */
    const mmi_tensor *embd = mmi_gguf_find_tensor(g, "token_embd.weight");
    if (!embd)
        return mmi_fail(MM_ERR_FORMAT, "%s: tensor token_embd.weight is missing", path);
    MMI_TRY(get_dim(g, arch, "vocab_size", embd->n_dims == 2 ? (int64_t)embd->ne[1] : 0,
                    MMI_MAX_DIM, &c->n_vocab));
    return MM_OK;
}

static mm_status load_layer(mmi_weights *w, const mmi_decoder_config *c, int i,
                            mmi_decoder_layer *l)
{
    int e = c->n_embd, eq = c->n_head * c->head_dim, ekv = c->n_head_kv * c->head_dim;
    MMI_TRY(mmi_weights_vector(w, 1, &l->attn_norm, e, "blk.%d.attn_norm.weight", i));
    if (c->family->layer_norm)
        MMI_TRY(mmi_weights_vector(w, 0, &l->attn_norm_b, e, "blk.%d.attn_norm.bias", i));
    if (c->family->fused_qkv) {
        mmi_matrix qkv;
        MMI_TRY(mmi_weights_matrix(w, 1, &qkv, e, eq + 2 * ekv, "blk.%d.attn_qkv.weight", i));
        l->wq = mmi_matrix_rows(&qkv, 0, eq);
        l->wk = mmi_matrix_rows(&qkv, eq, ekv);
        l->wv = mmi_matrix_rows(&qkv, eq + ekv, ekv);
    } else {
        MMI_TRY(mmi_weights_matrix(w, 1, &l->wq, e, eq, "blk.%d.attn_q.weight", i));
        MMI_TRY(mmi_weights_matrix(w, 1, &l->wk, e, ekv, "blk.%d.attn_k.weight", i));
        MMI_TRY(mmi_weights_matrix(w, 1, &l->wv, e, ekv, "blk.%d.attn_v.weight", i));
    }
    MMI_TRY(mmi_weights_matrix(w, 1, &l->wo, eq, e, "blk.%d.attn_output.weight", i));
    int qkv_bias = c->family->qkv_bias;
    MMI_TRY(mmi_weights_vector(w, qkv_bias, &l->bq, eq, "blk.%d.attn_q.bias", i));
    MMI_TRY(mmi_weights_vector(w, qkv_bias, &l->bk, ekv, "blk.%d.attn_k.bias", i));
    MMI_TRY(mmi_weights_vector(w, qkv_bias, &l->bv, ekv, "blk.%d.attn_v.bias", i));
    MMI_TRY(mmi_weights_vector(w, 0, &l->bo, e, "blk.%d.attn_output.bias", i));
    MMI_TRY(mmi_weights_vector(w, 1, &l->ffn_norm, e, "blk.%d.ffn_norm.weight", i));
    if (c->family->layer_norm)
        MMI_TRY(mmi_weights_vector(w, 0, &l->ffn_norm_b, e, "blk.%d.ffn_norm.bias", i));
    if (c->family->fused_gate_up) {
        mmi_matrix gate_up;
        MMI_TRY(mmi_weights_matrix(w, 1, &gate_up, e, 2 * c->n_ff, "blk.%d.ffn_up.weight", i));
        l->ffn_gate = mmi_matrix_rows(&gate_up, 0, c->n_ff);
        l->ffn_up = mmi_matrix_rows(&gate_up, c->n_ff, c->n_ff);
    } else {
        if (c->family->gated_ffn) {
            MMI_TRY(mmi_weights_matrix(w, 1, &l->ffn_gate, e, c->n_ff, "blk.%d.ffn_gate.weight",
                                       i));
            MMI_TRY(mmi_weights_vector(w, 0, &l->b_gate, c->n_ff, "blk.%d.ffn_gate.bias", i));
        }
        MMI_TRY(mmi_weights_matrix(w, 1, &l->ffn_up, e, c->n_ff, "blk.%d.ffn_up.weight", i));
    }
    MMI_TRY(mmi_weights_matrix(w, 1, &l->ffn_down, c->n_ff, e, "blk.%d.ffn_down.weight", i));
    MMI_TRY(mmi_weights_vector(w, 0, &l->b_up, c->n_ff, "blk.%d.ffn_up.bias", i));
    MMI_TRY(mmi_weights_vector(w, 0, &l->b_down, e, "blk.%d.ffn_down.bias", i));
    return MM_OK;
}

static mm_status load_weights(mmi_decoder *d)
{
    const mmi_decoder_config *c = &d->config;
    mmi_decoder_weights *w = &d->weights;
    MMI_TRY(mmi_weights_matrix(&d->store, 1, &w->token_embd, c->n_embd, c->n_vocab,
                               "token_embd.weight"));
    if (c->family->pos == MMI_POS_LEARNED) {
        const uint64_t pos_ne[2] = {(uint64_t)c->n_embd, (uint64_t)(c->pos_offset + c->n_pos)};
        MMI_TRY(mmi_weights_get(&d->store, 1, &w->pos_embd, 2, pos_ne, "position_embd.weight"));
    }
    w->layers = mmi_calloc((size_t)c->n_layer, sizeof *w->layers);
    if (!w->layers)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %d layers",
                        mmi_gguf_path(d->store.file), c->n_layer);
    for (int i = 0; i < c->n_layer; i++)
        MMI_TRY(load_layer(&d->store, c, i, &w->layers[i]));
    /* An opt model may have no final norm (post-LN blocks end normalised). */
    MMI_TRY(mmi_weights_vector(&d->store, !c->family->output_norm_optional, &w->output_norm,
                               c->n_embd, "output_norm.weight"));
    if (c->family->layer_norm)
        MMI_TRY(mmi_weights_vector(&d->store, 0, &w->output_norm_b, c->n_embd,
                                   "output_norm.bias"));
    MMI_TRY(mmi_weights_matrix(&d->store, 0, &w->output, c->n_embd, c->n_vocab,
                               "output.weight"));
    if (!w->output.data)
        w->output = w->token_embd; /* tied embeddings */
    return MM_OK;
}

mm_status mmi_decoder_load(const mmi_gguf *g, mmi_decoder **out)
{
    *out = NULL;
    mmi_decoder *d = mmi_calloc(1, sizeof *d);
    if (!d)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory", mmi_gguf_path(g));
    mmi_weights_init(&d->store, g);
    mm_status st = load_config(g, &d->config);
    if (st == MM_OK)
        st = load_weights(d);
    if (st != MM_OK) {
        mmi_decoder_free(d);
        return st;
    }
    *out = d;
    return MM_OK;
}

void mmi_decoder_free(mmi_decoder *d)
{
    if (!d)
        return;
    mmi_free(d->weights.layers);
    mmi_weights_free(&d->store);
    mmi_free(d);
}

/* ---- run state ---- */

mm_status mmi_decoder_state_init(mmi_decoder_state *s, const mmi_decoder *d, int n_ctx,
                                 int n_batch)
{
    const mmi_decoder_config *c = &d->config;
    memset(s, 0, sizeof *s);
    if (n_ctx < 1 || n_ctx > MMI_MAX_CTX)
        return mmi_fail(MM_ERR_ARG, "context of %d positions is outside [1, %d]", n_ctx,
                        MMI_MAX_CTX);
    if (c->family->pos == MMI_POS_LEARNED && n_ctx > c->n_pos)
        return mmi_fail(MM_ERR_ARG, "context of %d positions exceeds the model's %d learned "
                        "positions", n_ctx, c->n_pos);
    n_batch = n_batch < 1 ? 1 : n_batch > n_ctx ? n_ctx : n_batch;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    size_t b = (size_t)n_batch, eq = (size_t)c->n_head * c->head_dim;
    size_t cache = (size_t)c->n_layer * n_ctx * ((size_t)c->n_head_kv * c->head_dim);
    struct {
        float **p;
        size_t n;
        const char *what;
    } bufs[] = {
        {&s->x, b * c->n_embd, "activations"},   {&s->xn, b * c->n_embd, "activations"},
        {&s->q, b * eq, "queries"},               {&s->att, b * eq, "attention output"},
        {&s->gate, b * c->n_ff, "feed-forward"},  {&s->up, b * c->n_ff, "feed-forward"},
        {&s->scores, b * n_ctx, "attention scores"}, {&s->logits, (size_t)c->n_vocab, "logits"},
        {&s->k_cache, cache, "KV cache"},         {&s->v_cache, cache, "KV cache"},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        *bufs[i].p = mmi_array(bufs[i].n, sizeof(float));
        if (!*bufs[i].p) {
            mm_status st = mmi_fail(MM_ERR_NOMEM, "out of memory allocating the %s (%zu floats "
                                    "for %d positions)", bufs[i].what, bufs[i].n, n_ctx);
            mmi_decoder_state_free(s);
            return st;
        }
    }
    s->pos = mmi_array(b * (size_t)c->n_pos_dims, sizeof *s->pos);
    if (!s->pos) {
        mmi_decoder_state_free(s);
        return mmi_fail(MM_ERR_NOMEM, "out of memory allocating positions");
    }
    memset(s->logits, 0, (size_t)c->n_vocab * sizeof *s->logits);
    return MM_OK;
}

void mmi_decoder_state_free(mmi_decoder_state *s)
{
    float *bufs[] = {s->x, s->xn, s->q, s->att, s->gate, s->up, s->scores, s->logits,
                     s->k_cache, s->v_cache};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        mmi_free(bufs[i]);
    mmi_free(s->pos);
    memset(s, 0, sizeof *s);
}

/* ---- evaluation ---- */

static void norm(const mmi_decoder_config *c, float *out, const float *x, int n, const float *w,
                 const float *b)
{
    if (c->family->layer_norm)
        mmi_layernorm(out, x, n, c->n_embd, w, b, c->norm_eps);
    else
        mmi_rmsnorm(out, x, n, c->n_embd, w, c->norm_eps);
}

/* One block on the n rows in s->x at positions past .. past+n-1. Pre-LN: x += f(norm(x));
 * post-LN: x = norm(x + f(x)), for the attention and the feed-forward sublayer alike. */
static void run_layer(const mmi_decoder *d, mmi_decoder_state *s, int il, int past, int n)
{
    const mmi_decoder_config *c = &d->config;
    const mmi_decoder_layer *l = &d->weights.layers[il];
    size_t ekv = (size_t)c->n_head_kv * c->head_dim, ne = (size_t)n * c->n_embd;
    float *k = s->k_cache + ((size_t)il * s->n_ctx + past) * ekv;
    float *v = s->v_cache + ((size_t)il * s->n_ctx + past) * ekv;

    /* Attention: the new keys and values go straight into the cache rows. */
    const float *h = s->x;
    if (c->norm_before) {
        norm(c, s->xn, s->x, n, l->attn_norm, l->attn_norm_b);
        h = s->xn;
    }
    const mmi_product qkv[3] = {{s->q, &l->wq, l->bq}, {k, &l->wk, l->bk}, {v, &l->wv, l->bv}};
    mmi_linear_each(h, n, qkv, 3);
    if (c->family->pos != MMI_POS_LEARNED) {
        int neox = c->family->pos != MMI_ROPE_NORM;
        int n_sections = c->family->pos == MMI_ROPE_MULTI ? 3 : 0;
        mmi_rope_sections(s->q, n, c->n_head, c->head_dim, c->n_rot, s->pos, c->rope_base, neox,
                          n_sections, c->rope_sections);
        mmi_rope_sections(k, n, c->n_head_kv, c->head_dim, c->n_rot, s->pos, c->rope_base, neox,
                          n_sections, c->rope_sections);
    }
    const float *k0 = s->k_cache + (size_t)il * s->n_ctx * ekv;
    const float *v0 = s->v_cache + (size_t)il * s->n_ctx * ekv;
    mmi_attention_window(s->att, s->q, k0, v0, n, past + n, c->n_head, c->n_head_kv,
                         c->head_dim, (int)ekv, past, c->n_swa, s->scores);
    mmi_linear(s->xn, s->att, n, &l->wo, l->bo);
    mmi_add(s->x, s->xn, ne);
    if (!c->norm_before)
        norm(c, s->x, s->x, n, l->attn_norm, l->attn_norm_b);

    /* Feed-forward: down(silu(gate(h)) * up(h)), or down(act(up(h))). */
    h = s->x;
    if (c->norm_before) {
        norm(c, s->xn, s->x, n, l->ffn_norm, l->ffn_norm_b);
        h = s->xn;
    }
    if (c->family->gated_ffn) {
        const mmi_product gate_up[2] = {{s->gate, &l->ffn_gate, l->b_gate},
                                        {s->up, &l->ffn_up, l->b_up}};
        mmi_linear_each(h, n, gate_up, 2);
        mmi_swiglu(s->gate, s->up, (size_t)n * c->n_ff);
        mmi_linear(s->xn, s->gate, n, &l->ffn_down, l->b_down);
    } else {
        mmi_linear(s->up, h, n, &l->ffn_up, l->b_up);
        mmi_activate(c->ffn_act, s->up, (size_t)n * c->n_ff);
        mmi_linear(s->xn, s->up, n, &l->ffn_down, l->b_down);
    }
    mmi_add(s->x, s->xn, ne);
    if (!c->norm_before)
        norm(c, s->x, s->x, n, l->ffn_norm, l->ffn_norm_b);
}

/* logits[n][V] of the rows x[n][E]: the final norm when the model has one, then the head. */
static void output_logits(const mmi_decoder *d, mmi_decoder_state *s, const float *x, int n,
                          float *logits)
{
    const mmi_decoder_weights *w = &d->weights;
    if (w->output_norm) {
        norm(&d->config, s->xn, x, n, w->output_norm, w->output_norm_b);
        x = s->xn;
    }
    mmi_linear(logits, x, n, &w->output, NULL);
}

int64_t mmi_decoder_grid_positions(const mmi_decoder *d, int start, int t, int h, int w,
                                   int32_t *pos)
{
    int dims = d->config.n_pos_dims;
    int multi = d->config.family->pos == MMI_ROPE_MULTI;
    size_t k = 0;
    for (int ti = 0; ti < t; ti++)
        for (int hi = 0; hi < h; hi++)
            for (int wi = 0; wi < w; wi++, k++) {
                const int cell[3] = {ti, hi, wi};
                for (int j = 0; j < dims; j++)
                    pos[k * dims + j] = start + (multi ? cell[j] : (int32_t)k);
            }
    if (!multi)
        return start + (int64_t)k;
    int longest = t > h ? t : h;
    return start + (int64_t)(longest > w ? longest : w);
}

mm_status mmi_decoder_eval(const mmi_decoder *d, mmi_decoder_state *s, const int32_t *tokens,
                           const float *embd, int n, float *all_logits, const atomic_int *cancel)
{
    return mmi_decoder_eval_at(d, s, tokens, embd, NULL, n, all_logits, cancel);
}

mm_status mmi_decoder_eval_at(const mmi_decoder *d, mmi_decoder_state *s, const int32_t *tokens,
                              const float *embd, const int32_t *pos, int n, float *all_logits,
                              const atomic_int *cancel)
{
    const mmi_decoder_config *c = &d->config;
    const mmi_decoder_weights *w = &d->weights;
    int dims = c->n_pos_dims;
    if (n < 1 || (!tokens && !embd))
        return mmi_fail(MM_ERR_ARG, "decoder: no input rows");
    if (pos && w->pos_embd)
        return mmi_fail(MM_ERR_ARG, "decoder: positions given to a model with learned positions");
    for (size_t i = 0; pos && i < (size_t)n * dims; i++)
        if (pos[i] < 0 || pos[i] > MMI_MAX_CTX)
            return mmi_fail(MM_ERR_ARG, "decoder: position %d of row %zu is outside [0, %d]",
                            pos[i], i / dims, MMI_MAX_CTX);
    if (n > s->n_ctx - s->n_past)
        return mmi_fail(MM_ERR_CTX_FULL, "decoder: %d positions do not fit: %d of %d in use", n,
                        s->n_past, s->n_ctx);
    size_t e = (size_t)c->n_embd;
    int past = s->n_past; /* committed only when every chunk has run */
    int64_t last = -1;    /* the largest position given */
    for (int done = 0; done < n;) {
        int rows = n - done < s->n_batch ? n - done : s->n_batch;
        for (int i = 0; i < rows; i++) {
            if (tokens)
                mmi_matrix_row(&w->token_embd, tokens[done + i], s->x + (size_t)i * e);
            else
                memcpy(s->x + (size_t)i * e, embd + (size_t)(done + i) * e, e * sizeof(float));
            for (int j = 0; j < dims; j++) {
                int32_t p = pos ? pos[(size_t)(done + i) * dims + j] : past + i + s->pos_delta;
                s->pos[i * dims + j] = p;
                last = p > last ? p : last;
            }
            if (w->pos_embd) /* past + i < n_pos: n_ctx is at most n_pos */
                mmi_add(s->x + (size_t)i * e,
                        w->pos_embd + (size_t)(past + i + c->pos_offset) * e, e);
        }
        for (int il = 0; il < c->n_layer; il++) {
            if (mmi_cancelled(cancel))
                return mmi_fail(MM_ERR_CANCELLED, "decoder: cancelled at layer %d", il);
            run_layer(d, s, il, past, rows);
        }
        if (all_logits)
            output_logits(d, s, s->x, rows, all_logits + (size_t)done * c->n_vocab);
        past += rows;
        done += rows;
        if (done == n)
            output_logits(d, s, s->x + (size_t)(rows - 1) * e, 1, s->logits);
    }
    if (pos)
        s->pos_delta = (int)(last + 1 - past);
    s->n_past = past;
    return MM_OK;
}
