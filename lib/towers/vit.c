/* ViT image encoder (see vit.h). */
#include "vit.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "status.h"

/* Bounds of a tower that keep its scratch products inside int and size_t on hostile files. */
#define MAX_LAYERS 1024
#define MAX_TOKENS 16384

/* ---- the block stack ---- */

static mm_status read_dim(const mmi_gguf *g, const char *key_prefix, const char *key, int max,
                          int *out)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", key_prefix, key);
    return mmi_weights_dim(g, name, max, out);
}

mm_status mmi_tower_act(const mmi_gguf *g, const char *key_prefix, mmi_act *out)
{
    char key[96];
    snprintf(key, sizeof key, "%s.hidden_act", key_prefix);
    if (mmi_gguf_has(g, key)) {
        const char *name;
        MMI_TRY(mmi_gguf_get_string(g, key, &name, NULL));
        if (!mmi_act_from_name(name, out))
            return mmi_fail(MM_ERR_UNSUPPORTED, "%s: %s = '%s' is not a known activation",
                            mmi_gguf_path(g), key, name);
        return MM_OK;
    }
    int use_gelu, use_silu;
    MMI_TRY(mmi_gguf_get_bool_or(g, "clip.use_gelu", 0, &use_gelu));
    MMI_TRY(mmi_gguf_get_bool_or(g, "clip.use_silu", 0, &use_silu));
    *out = use_silu ? MMI_ACT_SILU : use_gelu ? MMI_ACT_GELU : MMI_ACT_QUICK_GELU;
    return MM_OK;
}

static mm_status load_block(mmi_block *b, const mmi_gguf *g, mmi_weights *w, const char *p,
                            int i, int D, int F)
{
    MMI_TRY(mmi_weights_vector(w, 1, &b->ln1_w, D, "%s.blk.%d.ln1.weight", p, i));
    MMI_TRY(mmi_weights_vector(w, 0, &b->ln1_b, D, "%s.blk.%d.ln1.bias", p, i));
    MMI_TRY(mmi_weights_vector(w, 1, &b->ln2_w, D, "%s.blk.%d.ln2.weight", p, i));
    MMI_TRY(mmi_weights_vector(w, 0, &b->ln2_b, D, "%s.blk.%d.ln2.bias", p, i));
    MMI_TRY(mmi_weights_matrix(w, 0, &b->qkv, D, 3 * D, "%s.blk.%d.attn_qkv.weight", p, i));
    if (b->qkv.data) {
        MMI_TRY(mmi_weights_vector(w, 0, &b->qkv_b, 3 * D, "%s.blk.%d.attn_qkv.bias", p, i));
    } else {
        MMI_TRY(mmi_weights_matrix(w, 1, &b->q, D, D, "%s.blk.%d.attn_q.weight", p, i));
        MMI_TRY(mmi_weights_matrix(w, 1, &b->k, D, D, "%s.blk.%d.attn_k.weight", p, i));
        MMI_TRY(mmi_weights_matrix(w, 1, &b->v, D, D, "%s.blk.%d.attn_v.weight", p, i));
        MMI_TRY(mmi_weights_vector(w, 0, &b->q_b, D, "%s.blk.%d.attn_q.bias", p, i));
        MMI_TRY(mmi_weights_vector(w, 0, &b->k_b, D, "%s.blk.%d.attn_k.bias", p, i));
        MMI_TRY(mmi_weights_vector(w, 0, &b->v_b, D, "%s.blk.%d.attn_v.bias", p, i));
    }
    MMI_TRY(mmi_weights_matrix(w, 1, &b->out, D, D, "%s.blk.%d.attn_out.weight", p, i));
    MMI_TRY(mmi_weights_vector(w, 0, &b->out_b, D, "%s.blk.%d.attn_out.bias", p, i));

    /* llama.cpp's LLaVA converter writes fc1 as ffn_down and fc2 as ffn_up: the shape tells
     * (fc1 has ne = [D, F]); when D == F the names are taken as written. */
    char up_name[96];
    snprintf(up_name, sizeof up_name, "%s.blk.%d.ffn_up.weight", p, i);
    const mmi_tensor *up = mmi_gguf_find_tensor(g, up_name);
    int swapped = up && D != F && up->ne[0] == (uint64_t)F && up->ne[1] == (uint64_t)D;
    const char *fc1 = swapped ? "ffn_down" : "ffn_up", *fc2 = swapped ? "ffn_up" : "ffn_down";
    MMI_TRY(mmi_weights_matrix(w, 1, &b->fc1, D, F, "%s.blk.%d.%s.weight", p, i, fc1));
    MMI_TRY(mmi_weights_vector(w, 0, &b->fc1_b, F, "%s.blk.%d.%s.bias", p, i, fc1));
    MMI_TRY(mmi_weights_matrix(w, 1, &b->fc2, F, D, "%s.blk.%d.%s.weight", p, i, fc2));
    MMI_TRY(mmi_weights_vector(w, 0, &b->fc2_b, D, "%s.blk.%d.%s.bias", p, i, fc2));
    return MM_OK;
}

mm_status mmi_encoder_load(mmi_encoder *enc, const mmi_gguf *g, mmi_weights *w,
                           const char *key_prefix, const char *prefix)
{
    const char *path = mmi_gguf_path(g);
    MMI_TRY(read_dim(g, key_prefix, "embedding_length", MMI_MAX_DIM, &enc->n_embd));
    MMI_TRY(read_dim(g, key_prefix, "feed_forward_length", MMI_MAX_DIM, &enc->n_ff));
    MMI_TRY(read_dim(g, key_prefix, "block_count", MAX_LAYERS, &enc->n_layer));
    MMI_TRY(read_dim(g, key_prefix, "attention.head_count", enc->n_embd, &enc->n_head));
    if (enc->n_embd % enc->n_head)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s.embedding_length %d is not a multiple of the "
                        "head count %d", path, key_prefix, enc->n_embd, enc->n_head);
    char key[96];
    double eps;
    snprintf(key, sizeof key, "%s.attention.layer_norm_epsilon", key_prefix);
    MMI_TRY(mmi_gguf_get_float(g, key, &eps));
    if (!(eps > 0.0 && eps < 1.0))
        return mmi_fail(MM_ERR_FORMAT, "%s: %s = %g is not in (0, 1)", path, key, eps);
    enc->eps = (float)eps;
    enc->blocks = mmi_calloc((size_t)enc->n_layer, sizeof *enc->blocks);
    if (!enc->blocks)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %d blocks", path, enc->n_layer);
    for (int i = 0; i < enc->n_layer; i++)
        MMI_TRY(load_block(&enc->blocks[i], g, w, prefix, i, enc->n_embd, enc->n_ff));
    return MM_OK;
}

void mmi_encoder_free(mmi_encoder *enc)
{
    mmi_free(enc->blocks);
    enc->blocks = NULL;
}

size_t mmi_encoder_scratch_floats(const mmi_encoder *enc, int n_tokens, int n_seq)
{
    size_t n = (size_t)n_tokens, len = n / (size_t)n_seq;
    /* normalised input, Q|K|V, attention output, MLP hidden, one sequence's scores */
    return n * enc->n_embd * 5 + n * enc->n_ff + len * len;
}

/* The block on n_seq sequences whose queries attend to the first n_keys rows of their own
 * sequence; pos as for mmi_encoder_block. */
static void run_block(const mmi_encoder *enc, int layer, float *x, int n, int n_seq, int n_keys,
                      const int32_t *pos, float *scratch)
{
    const mmi_block *b = &enc->blocks[layer];
    int D = enc->n_embd, F = enc->n_ff;
    size_t nd = (size_t)n * D;
    float *h = scratch, *qkv = h + nd, *att = qkv + 3 * nd, *ff = att + nd, *scores = ff + (size_t)n * F;

    mmi_layernorm(h, x, n, D, b->ln1_w, b->ln1_b, enc->eps);
    float *q = qkv, *k, *v;
    int stride;
    if (b->qkv.data) {
        mmi_linear(qkv, h, n, &b->qkv, b->qkv_b);
        k = qkv + D;
        v = qkv + 2 * D;
        stride = 3 * D;
    } else {
        mmi_linear(qkv, h, n, &b->q, b->q_b);
        mmi_linear(qkv + nd, h, n, &b->k, b->k_b);
        mmi_linear(qkv + 2 * nd, h, n, &b->v, b->v_b);
        k = qkv + nd;
        v = qkv + 2 * nd;
        stride = D;
    }
    if (enc->rope_base > 0) {
        int hd = D / enc->n_head;
        mmi_rope_2d(q, (size_t)stride, n, enc->n_head, hd, pos, enc->rope_base);
        mmi_rope_2d(k, (size_t)stride, n, enc->n_head, hd, pos, enc->rope_base);
    }
    /* Every other product runs on all sequences at once; attention stays within each. */
    int len = n / n_seq;
    for (int i = 0; i < n_seq; i++) {
        size_t at = (size_t)i * len;
        mmi_attention_strided(att + at * D, D, q + at * stride, stride, k + at * stride,
                              v + at * stride, stride, len, n_keys, enc->n_head, enc->n_head,
                              D / enc->n_head, enc->causal, 0, scores);
    }
    mmi_linear(h, att, n, &b->out, b->out_b);
    mmi_add(x, h, nd);

    mmi_layernorm(h, x, n, D, b->ln2_w, b->ln2_b, enc->eps);
    mmi_linear(ff, h, n, &b->fc1, b->fc1_b);
    mmi_activate(enc->act, ff, (size_t)n * F);
    mmi_linear(h, ff, n, &b->fc2, b->fc2_b);
    mmi_add(x, h, nd);
}

void mmi_encoder_block(const mmi_encoder *enc, int layer, float *x, int n, int n_seq,
                       const int32_t *pos, float *scratch)
{
    run_block(enc, layer, x, n, n_seq, n / n_seq, pos, scratch);
}

void mmi_encoder_block_keys(const mmi_encoder *enc, int layer, float *x, int n, int n_keys,
                            float *scratch)
{
    run_block(enc, layer, x, n, 1, n_keys, NULL, scratch);
}

/* ---- loading the vision file ---- */

static mm_status load_feature_layers(mmi_vision *v, const mmi_gguf *g)
{
    const char *path = mmi_gguf_path(g);
    const char *key = "clip.vision.feature_layer";
    int n_layer = v->enc.n_layer;
    if (!mmi_gguf_has(g, key)) {
        /* llama.cpp's LLaVA files store the blocks up to the feature layer and no key. */
        v->n_feature_layers = 1;
        v->feature_layers[0] = n_layer;
        return MM_OK;
    }
    mmi_gguf_type type;
    uint64_t count;
    int64_t layers[MMI_MAX_FEATURE_LAYERS];
    MMI_TRY(mmi_gguf_get_array_info(g, key, &type, &count));
    if (count < 1 || count > MMI_MAX_FEATURE_LAYERS)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s has %llu entries, expected 1 to %d", path, key,
                        (unsigned long long)count, MMI_MAX_FEATURE_LAYERS);
    MMI_TRY(mmi_gguf_get_int_array(g, key, layers, count));
    for (uint64_t j = 0; j < count; j++) {
        /* Negative values count from the end as in HF, hidden_states[0] being the embeddings. */
        int64_t k = layers[j] < 0 ? n_layer + 1 + layers[j] : layers[j];
        if (k < 0 || k > n_layer)
            return mmi_fail(MM_ERR_FORMAT, "%s: %s[%llu] = %lld is outside the %d stored blocks",
                            path, key, (unsigned long long)j, (long long)layers[j], n_layer);
        v->feature_layers[j] = (int)k;
    }
    v->n_feature_layers = (int)count;
    return MM_OK;
}

static mm_status load_head(mmi_vision *v, mmi_weights *w)
{
    mmi_pool_head *h = &v->head;
    int D = v->enc.n_embd, F = v->enc.n_ff;
    MMI_TRY(mmi_weights_vector(w, 0, &h->probe, D, "v.head.probe"));
    if (!h->probe)
        return MM_OK;
    MMI_TRY(mmi_weights_matrix(w, 1, &h->q, D, D, "v.head.attn_q.weight"));
    MMI_TRY(mmi_weights_matrix(w, 1, &h->k, D, D, "v.head.attn_k.weight"));
    MMI_TRY(mmi_weights_matrix(w, 1, &h->v, D, D, "v.head.attn_v.weight"));
    MMI_TRY(mmi_weights_matrix(w, 1, &h->out, D, D, "v.head.attn_out.weight"));
    MMI_TRY(mmi_weights_matrix(w, 1, &h->fc1, D, F, "v.head.ffn_up.weight"));
    MMI_TRY(mmi_weights_matrix(w, 1, &h->fc2, F, D, "v.head.ffn_down.weight"));
    MMI_TRY(mmi_weights_vector(w, 0, &h->q_b, D, "v.head.attn_q.bias"));
    MMI_TRY(mmi_weights_vector(w, 0, &h->k_b, D, "v.head.attn_k.bias"));
    MMI_TRY(mmi_weights_vector(w, 0, &h->v_b, D, "v.head.attn_v.bias"));
    MMI_TRY(mmi_weights_vector(w, 0, &h->out_b, D, "v.head.attn_out.bias"));
    MMI_TRY(mmi_weights_vector(w, 0, &h->fc1_b, F, "v.head.ffn_up.bias"));
    MMI_TRY(mmi_weights_vector(w, 0, &h->fc2_b, D, "v.head.ffn_down.bias"));
    MMI_TRY(mmi_weights_vector(w, 1, &h->ln_w, D, "v.head.ln.weight"));
    MMI_TRY(mmi_weights_vector(w, 0, &h->ln_b, D, "v.head.ln.bias"));
    return MM_OK;
}

/* Qwen2-VL's tower (llama.cpp's qwen2vl_merger layout): the Conv3d kernel is stored per frame
 * (v.patch_embd.weight, .weight.1, each [P, P, 3, D]); one matrix over a patch row (channel,
 * frame, y, x) is built from them, so the embedding is one product over all rows. */
static mm_status load_patch_rows(mmi_vision *v, const mmi_gguf *g)
{
    const char *path = mmi_gguf_path(g);
    mmi_weights *w = &v->weights;
    mmi_patch_grid *pg = &v->grid;
    int D = v->enc.n_embd, hd = D / v->enc.n_head, P, M;
    if (hd % 4)
        return mmi_fail(MM_ERR_FORMAT, "%s: vision head size %d is not a multiple of 4 (2-D "
                        "rotary embedding)", path, hd);
    MMI_TRY(read_dim(g, "clip.vision", "patch_size", 1 << 10, &P));
    MMI_TRY(mmi_weights_dim_or(g, "clip.vision.spatial_merge_size", 2, 16, &M));
    int min_px, max_px;
    MMI_TRY(mmi_weights_dim_or(g, "clip.vision.image_min_pixels", 56 * 56, 1 << 30, &min_px));
    MMI_TRY(mmi_weights_dim_or(g, "clip.vision.image_max_pixels", 28 * 28 * 1280, 1 << 30,
                               &max_px));
    if (min_px > max_px)
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.vision.image_min_pixels %d > image_max_pixels "
                        "%d", path, min_px, max_px);
    *pg = (mmi_patch_grid){P, M, 2, min_px, max_px};
    v->patch.patch_size = P;
    v->patch.n_embd = D;
    v->image_size = v->preprocess.image_size;
    v->enc.rope_base = 10000.0f; /* HF's VisionRotaryEmbedding theta */

    const uint64_t ne[4] = {(uint64_t)P, (uint64_t)P, 3, (uint64_t)D};
    const float *frame[2];
    MMI_TRY(mmi_weights_get(w, 1, &frame[0], 4, ne, "v.patch_embd.weight"));
    MMI_TRY(mmi_weights_get(w, 1, &frame[1], 4, ne, "v.patch_embd.weight.1"));
    MMI_TRY(mmi_weights_vector(w, 0, &v->patch.bias, D, "v.patch_embd.bias"));
    size_t plane = (size_t)P * P, row = 3 * 2 * plane;
    v->rows_kernel = mmi_array((size_t)D, row * sizeof(float));
    if (!v->rows_kernel)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the patch kernel", path);
    for (size_t d = 0; d < (size_t)D; d++)
        for (size_t c = 0; c < 3; c++)
            for (size_t t = 0; t < 2; t++)
                memcpy(v->rows_kernel + d * row + (c * 2 + t) * plane,
                       frame[t] + (d * 3 + c) * plane, plane * sizeof(float));
    v->rows_embd = (mmi_matrix){v->rows_kernel, (int)row, D, MMI_TENSOR_F32};
    MMI_TRY(mmi_weights_vector(w, 1, &v->post_ln_w, D, "v.post_ln.weight"));
    MMI_TRY(mmi_weights_vector(w, 0, &v->post_ln_b, D, "v.post_ln.bias"));
    v->n_feature_layers = 1;
    v->feature_layers[0] = v->enc.n_layer;
    return mmi_connector_load(&v->connector, g, w, D * M * M);
}

static mm_status load_vision(mmi_vision *v, const mmi_gguf *g)
{
    const char *path = mmi_gguf_path(g);
    mmi_weights *w = &v->weights;
    MMI_TRY(mmi_preprocess_config_load(g, &v->preprocess));
    MMI_TRY(mmi_encoder_load(&v->enc, g, w, "clip.vision", "v"));
    MMI_TRY(mmi_tower_act(g, "clip.vision", &v->enc.act));
    int D = v->enc.n_embd;
    const char *projector = "";
    if (mmi_gguf_has(g, "clip.projector_type"))
        MMI_TRY(mmi_gguf_get_string(g, "clip.projector_type", &projector, NULL));
    if (strcmp(projector, "qwen2vl_merger") == 0)
        return load_patch_rows(v, g);

    int P;
    MMI_TRY(read_dim(g, "clip.vision", "image_size", MMI_MAX_DIM, &v->image_size));
    MMI_TRY(read_dim(g, "clip.vision", "patch_size", v->image_size, &P));
    mmi_patch_embed *pe = &v->patch;
    pe->patch_size = P;
    pe->n_embd = D;
    pe->pos_grid = v->image_size / P;
    const uint64_t conv_ne[4] = {(uint64_t)P, (uint64_t)P, 3, (uint64_t)D};
    const float *conv;
    MMI_TRY(mmi_weights_get(w, 1, &conv, 4, conv_ne, "v.patch_embd.weight"));
    pe->weight = (mmi_matrix){conv, 3 * P * P, D, MMI_TENSOR_F32};
    MMI_TRY(mmi_weights_vector(w, 0, &pe->bias, D, "v.patch_embd.bias"));
    MMI_TRY(mmi_weights_vector(w, 0, &pe->class_embd, D, "v.class_embd"));
    int64_t n_pos = (pe->class_embd ? 1 : 0) + (int64_t)pe->pos_grid * pe->pos_grid;
    if (n_pos > MAX_TOKENS)
        return mmi_fail(MM_ERR_FORMAT, "%s: image_size %d / patch_size %d gives %lld positions, "
                        "more than %d", path, v->image_size, P, (long long)n_pos, MAX_TOKENS);
    const uint64_t pos_ne[2] = {(uint64_t)D, (uint64_t)n_pos};
    MMI_TRY(mmi_weights_get(w, 1, &pe->pos, 2, pos_ne, "v.position_embd.weight"));

    MMI_TRY(mmi_weights_vector(w, 0, &v->pre_ln_w, D, "v.pre_ln.weight"));
    MMI_TRY(mmi_weights_vector(w, 0, &v->pre_ln_b, D, "v.pre_ln.bias"));
    MMI_TRY(mmi_weights_vector(w, 0, &v->post_ln_w, D, "v.post_ln.weight"));
    MMI_TRY(mmi_weights_vector(w, 0, &v->post_ln_b, D, "v.post_ln.bias"));
    MMI_TRY(load_head(v, w));
    MMI_TRY(load_feature_layers(v, g));

    MMI_TRY(mmi_connector_load(&v->connector, g, w, D * v->n_feature_layers));
    v->drop_class = 0;
    if (v->connector.kind != MMI_CONNECTOR_NONE && pe->class_embd &&
        !mmi_connector_reads_last_state(&v->connector)) {
        const char *select = "default";
        if (mmi_gguf_has(g, "clip.vision.feature_select"))
            MMI_TRY(mmi_gguf_get_string(g, "clip.vision.feature_select", &select, NULL));
        if (strcmp(select, "default") == 0)
            v->drop_class = 1;
        else if (strcmp(select, "full") != 0)
            return mmi_fail(MM_ERR_UNSUPPORTED, "%s: clip.vision.feature_select = '%s' (expected "
                            "'default' or 'full')", path, select);
    }
    if (v->preprocess.merge == MMI_MERGE_SPATIAL_UNPAD) {
        /* Tiles are laid out on the feature grid: one feature per patch. */
        int side = v->image_size / P;
        if (v->connector.kind != MMI_CONNECTOR_LINEAR && v->connector.kind != MMI_CONNECTOR_MLP)
            return mmi_fail(MM_ERR_UNSUPPORTED, "%s: mm_patch_merge_type spatial_unpad needs a "
                            "linear or mlp projector", path);
        if ((int64_t)side * side != n_pos - v->drop_class)
            return mmi_fail(MM_ERR_FORMAT, "%s: spatial_unpad with %lld tokens per view, not a "
                            "%dx%d grid", path, (long long)(n_pos - v->drop_class), side, side);
        MMI_TRY(mmi_weights_vector(w, 1, &v->image_newline, v->connector.n_out,
                                   "model.image_newline"));
    }
    return MM_OK;
}

mm_status mmi_vision_load(const mmi_gguf *g, mmi_vision **out)
{
    *out = NULL;
    mmi_vision *v = mmi_calloc(1, sizeof *v);
    if (!v)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the vision encoder",
                        mmi_gguf_path(g));
    mmi_weights_init(&v->weights, g);
    mm_status st = load_vision(v, g);
    if (st != MM_OK) {
        mmi_vision_free(v);
        return st;
    }
    *out = v;
    return MM_OK;
}

void mmi_vision_free(mmi_vision *v)
{
    if (!v)
        return;
    mmi_encoder_free(&v->enc);
    mmi_connector_free(&v->connector);
    mmi_free(v->rows_kernel);
    mmi_weights_free(&v->weights);
    mmi_free(v);
}

/* ---- running the tower ---- */

mm_status mmi_vision_tower_tokens(const mmi_vision *v, int width, int height, int *n_tokens)
{
    int P = v->patch.patch_size;
    if (width < P || height < P)
        return mmi_fail(MM_ERR_ARG, "image of %dx%d pixels is smaller than one %dx%d patch",
                        width, height, P, P);
    int64_t n = (int64_t)(width / P) * (height / P) + (v->patch.class_embd ? 1 : 0);
    if (n > MAX_TOKENS)
        return mmi_fail(MM_ERR_LIMIT, "image of %dx%d pixels makes %lld patches, more than %d",
                        width, height, (long long)n, MAX_TOKENS);
    *n_tokens = (int)n;
    return MM_OK;
}

/* Floats of run state for the tower on n_views views of n tokens: activations x, then the
 * larger of the patchify and block scratch (they are never live together). */
static size_t tower_floats(const mmi_vision *v, int width, int height, int n, int n_views)
{
    size_t patch = mmi_patch_scratch_floats(&v->patch, width, height);
    size_t block = mmi_encoder_scratch_floats(&v->enc, n * n_views, n_views);
    return (size_t)n * n_views * v->enc.n_embd + (patch > block ? patch : block);
}

/* Run the tower on n_views views of pixels (one batch: every weight is one product over all
 * their tokens) into state (tower_floats of it), copying hidden_states[layers[j]] into
 * out[t][j·D..] (t over all views' tokens) as each is reached. */
static mm_status run_tower(const mmi_vision *v, const float *chw, int n_views, int width,
                           int height, int n, const int *layers, int n_layers, float *out,
                           float *state, const atomic_int *cancel)
{
    int D = v->enc.n_embd, n_all = n * n_views;
    float *x = state, *scratch = state + (size_t)n_all * D;
    int last = 0;
    for (int j = 0; j < n_layers; j++)
        last = layers[j] > last ? layers[j] : last;

    for (int i = 0; i < n_views; i++)
        mmi_patchify(&v->patch, chw + (size_t)i * 3 * width * height, width, height,
                     x + (size_t)i * n * D, scratch);
    if (v->pre_ln_w)
        mmi_layernorm(x, x, n_all, D, v->pre_ln_w, v->pre_ln_b, v->enc.eps);
    for (int l = 0;; l++) {
        for (int j = 0; j < n_layers; j++)
            if (layers[j] == l)
                for (int t = 0; t < n_all; t++)
                    memcpy(out + ((size_t)t * n_layers + j) * D, x + (size_t)t * D,
                           sizeof(float) * D);
        if (l == last)
            return MM_OK;
        if (mmi_cancelled(cancel))
            return mmi_fail(MM_ERR_CANCELLED, "image encoding cancelled at block %d", l);
        mmi_encoder_block(&v->enc, l, x, n_all, n_views, NULL, scratch);
    }
}

/* The paths that run whole square views: a patch-row tower (Qwen2-VL) has no such input. */
static mm_status check_takes_views(const mmi_vision *v)
{
    if (v->grid.merge)
        return mmi_fail(MM_ERR_UNSUPPORTED, "this vision tower (qwen2vl_merger) takes an image "
                        "at its own resolution as patch rows, not normalized pixels: encode the "
                        "image itself");
    return MM_OK;
}

static mm_status alloc_state(size_t n_floats, float **out)
{
    *out = mmi_array(n_floats, sizeof(float));
    if (!*out)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu floats of vision run state",
                        n_floats);
    return MM_OK;
}

mm_status mmi_vision_hidden_states(const mmi_vision *v, const float *chw, int width, int height,
                                   const int *layers, int n_layers, float *out,
                                   const atomic_int *cancel)
{
    int n;
    MMI_TRY(check_takes_views(v));
    MMI_TRY(mmi_vision_tower_tokens(v, width, height, &n));
    for (int j = 0; j < n_layers; j++)
        if (layers[j] < 0 || layers[j] > v->enc.n_layer)
            return mmi_fail(MM_ERR_ARG, "hidden state %d requested of a %d-block tower",
                            layers[j], v->enc.n_layer);
    float *state;
    MMI_TRY(alloc_state(tower_floats(v, width, height, n, 1), &state));
    mm_status st = run_tower(v, chw, 1, width, height, n, layers, n_layers, out, state, cancel);
    mmi_free(state);
    return st;
}

mm_status mmi_vision_post_ln(const mmi_vision *v, float *x, int n)
{
    if (!v->post_ln_w)
        return mmi_fail(MM_ERR_FORMAT, "the vision file has no v.post_ln");
    mmi_layernorm(x, x, n, v->enc.n_embd, v->post_ln_w, v->post_ln_b, v->enc.eps);
    return MM_OK;
}

/* SigLIP's head on tokens h[n][D] (already post-normalised): out[D]. */
static void pool_head(const mmi_vision *v, const float *h, int n, float *out, float *scratch)
{
    const mmi_pool_head *hd = &v->head;
    int D = v->enc.n_embd, F = v->enc.n_ff, H = v->enc.n_head;
    float *q = scratch, *k = q + D, *val = k + (size_t)n * D, *att = val + (size_t)n * D;
    float *ln = att + D, *ff = ln + D, *scores = ff + F;
    mmi_linear(q, hd->probe, 1, &hd->q, hd->q_b);
    mmi_linear(k, h, n, &hd->k, hd->k_b);
    mmi_linear(val, h, n, &hd->v, hd->v_b);
    mmi_attention(att, q, k, val, 1, n, H, H, D / H, D, 0, 0, scores);
    mmi_linear(out, att, 1, &hd->out, hd->out_b);
    mmi_layernorm(ln, out, 1, D, hd->ln_w, hd->ln_b, v->enc.eps);
    mmi_linear(ff, ln, 1, &hd->fc1, hd->fc1_b);
    mmi_activate(v->enc.act, ff, (size_t)F);
    mmi_linear(ln, ff, 1, &hd->fc2, hd->fc2_b);
    mmi_add(out, ln, D);
}

mm_status mmi_vision_pooled(const mmi_vision *v, const float *chw, int width, int height,
                            float *out, const atomic_int *cancel)
{
    if (!v->post_ln_w || (!v->head.probe && !v->patch.class_embd))
        return mmi_fail(MM_ERR_UNSUPPORTED,
                        "this vision tower has no pooled output (needs v.post_ln and a class "
                        "token or a v.head)");
    int n, D = v->enc.n_embd;
    MMI_TRY(mmi_vision_tower_tokens(v, width, height, &n));
    size_t tower = tower_floats(v, width, height, n, 1);
    size_t head = (size_t)n * (2 * D + 1) + 3 * (size_t)D + v->enc.n_ff;
    float *state;
    MMI_TRY(alloc_state((size_t)n * D + tower + head, &state));
    float *last = state, *tower_state = last + (size_t)n * D, *head_scratch = tower_state + tower;
    int layer = v->enc.n_layer;
    mm_status st = run_tower(v, chw, 1, width, height, n, &layer, 1, last, tower_state, cancel);
    if (st == MM_OK) {
        if (v->head.probe) {
            mmi_vision_post_ln(v, last, n);
            pool_head(v, last, n, out, head_scratch);
        } else {
            mmi_layernorm(out, last, 1, D, v->post_ln_w, v->post_ln_b, v->enc.eps);
        }
    }
    mmi_free(state);
    return st;
}

mm_status mmi_vision_preprocess(const mmi_vision *v, const mm_image *image, mmi_views *views)
{
    /* AnyRes tiling (LLaVA-1.6) needs the tiles merged by the connector: not done yet, so the
     * whole image is one view at every detail level. */
    return mmi_preprocess(&v->preprocess, image, MMI_DETAIL_LOW, views);
}

mm_status mmi_vision_output_shape(const mmi_vision *v, int width, int height, int *n_tokens,
                                  int *n_embd)
{
    int n;
    MMI_TRY(mmi_vision_tower_tokens(v, width, height, &n));
    if (v->grid.merge) /* a merge window's patches become one token */
        n /= v->grid.merge * v->grid.merge;
    *n_tokens = mmi_connector_n_tokens(&v->connector, n - v->drop_class);
    *n_embd = mmi_connector_n_embd(&v->connector);
    return MM_OK;
}

mm_status mmi_vision_encode_views(const mmi_vision *v, const float *chw, int n_views, int width,
                                  int height, float *out, const atomic_int *cancel)
{
    int n, D = v->enc.n_embd, k = v->n_feature_layers;
    MMI_TRY(check_takes_views(v));
    MMI_TRY(mmi_vision_tower_tokens(v, width, height, &n));
    if (n_views < 1)
        return mmi_fail(MM_ERR_ARG, "%d views to encode", n_views);
    int n_feat = n - v->drop_class, per_view = mmi_connector_n_tokens(&v->connector, n_feat);
    int batch_connector = v->connector.kind == MMI_CONNECTOR_LINEAR ||
                          v->connector.kind == MMI_CONNECTOR_MLP; /* row by row */
    size_t tower = tower_floats(v, width, height, n, n_views);
    size_t features = (size_t)n * n_views * D * k;
    size_t conn = mmi_connector_scratch_floats(&v->connector,
                                               batch_connector ? n_feat * n_views : n_feat);
    float *state;
    MMI_TRY(alloc_state(tower + features + conn, &state));
    float *feat = state + tower, *conn_scratch = feat + features;
    mm_status st = run_tower(v, chw, n_views, width, height, n, v->feature_layers, k, feat,
                             state, cancel);
    if (st == MM_OK) {
        /* HF's last_hidden_state is post-normalised: the output of a SigLIP tower, and the
         * input of the Q-Former and the resampler. */
        int last_state = v->connector.kind == MMI_CONNECTOR_NONE
                             ? !v->patch.class_embd
                             : mmi_connector_reads_last_state(&v->connector);
        if (last_state && v->post_ln_w)
            mmi_vision_post_ln(v, feat, n * n_views);
        size_t row = (size_t)D * k;
        if (batch_connector) { /* the views' features side by side, class tokens dropped */
            for (int i = 0; i < n_views; i++)
                memmove(feat + (size_t)i * n_feat * row,
                        feat + ((size_t)i * n + v->drop_class) * row, (size_t)n_feat * row *
                        sizeof(float));
            mmi_connector_run(&v->connector, feat, n_feat * n_views, out, conn_scratch);
        } else {
            for (int i = 0; i < n_views; i++)
                mmi_connector_run(&v->connector, feat + ((size_t)i * n + v->drop_class) * row,
                                  n_feat, out + (size_t)i * per_view * mmi_connector_n_embd(&v->connector),
                                  conn_scratch);
        }
    }
    mmi_free(state);
    return st;
}

mm_status mmi_vision_encode(const mmi_vision *v, const float *chw, int width, int height,
                            float *out, const atomic_int *cancel)
{
    return mmi_vision_encode_views(v, chw, 1, width, height, out, cancel);
}

/* ---- Qwen2-VL: patch rows ---- */

static mm_status check_patch_grid(const mmi_vision *v, const int grid[3], int *n)
{
    int M = v->grid.merge;
    if (!M)
        return mmi_fail(MM_ERR_STATE, "this vision tower takes whole images, not patch rows");
    if (grid[0] < 1 || grid[1] < M || grid[2] < M || grid[1] % M || grid[2] % M ||
        (int64_t)grid[0] * grid[1] * grid[2] > MAX_TOKENS)
        return mmi_fail(MM_ERR_ARG, "patch grid %d x %d x %d: each side a multiple of %d, at "
                        "most %d patches", grid[0], grid[1], grid[2], M, MAX_TOKENS);
    *n = grid[0] * grid[1] * grid[2];
    return MM_OK;
}

void mmi_vision_patch_positions(const mmi_vision *v, const int grid[3], int32_t *pos)
{
    int M = v->grid.merge;
    for (int f = 0; f < grid[0]; f++)
        for (int wy = 0; wy < grid[1]; wy += M)
            for (int wx = 0; wx < grid[2]; wx += M)
                for (int y = wy; y < wy + M; y++)
                    for (int x = wx; x < wx + M; x++, pos += 2) {
                        pos[0] = y;
                        pos[1] = x;
                    }
}

mm_status mmi_vision_patch_rows_hidden(const mmi_vision *v, const float *rows, const int grid[3],
                                       float *x, const atomic_int *cancel)
{
    int n;
    MMI_TRY(check_patch_grid(v, grid, &n));
    int per_frame = grid[1] * grid[2];
    size_t scratch_floats = mmi_encoder_scratch_floats(&v->enc, n, grid[0]);
    float *scratch = mmi_array(scratch_floats, sizeof(float));
    int32_t *pos = mmi_array((size_t)n, 2 * sizeof(int32_t));
    if (!scratch || !pos) {
        mmi_free(scratch);
        mmi_free(pos);
        return mmi_fail(MM_ERR_NOMEM, "out of memory for the run state of %d patches", n);
    }
    mmi_vision_patch_positions(v, grid, pos);
    mmi_linear(x, rows, n, &v->rows_embd, v->patch.bias);
    mm_status st = MM_OK;
    for (int l = 0; l < v->enc.n_layer && st == MM_OK; l++) {
        if (mmi_cancelled(cancel))
            st = mmi_fail(MM_ERR_CANCELLED, "image encoding cancelled at block %d", l);
        else
            mmi_encoder_block(&v->enc, l, x, n, n / per_frame, pos, scratch);
    }
    mmi_free(scratch);
    mmi_free(pos);
    return st;
}

mm_status mmi_vision_encode_patch_rows(const mmi_vision *v, const float *rows, const int grid[3],
                                       float *out, const atomic_int *cancel)
{
    int n, MM = v->grid.merge * v->grid.merge;
    MMI_TRY(check_patch_grid(v, grid, &n));
    float *state;
    MMI_TRY(alloc_state((size_t)n * v->enc.n_embd +
                        mmi_connector_scratch_floats(&v->connector, n / MM), &state));
    mm_status st = mmi_vision_patch_rows_hidden(v, rows, grid, state, cancel);
    if (st == MM_OK) {
        /* ln_q per patch; a window's M² consecutive rows are then one row of the merger */
        mmi_vision_post_ln(v, state, n);
        mmi_connector_run(&v->connector, state, n / MM, out, state + (size_t)n * v->enc.n_embd);
    }
    mmi_free(state);
    return st;
}
