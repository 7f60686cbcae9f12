/* BLIP-2 Q-Former (see qformer.h and docs/model-format.md §6). */
#include "qformer.h"

#include "alloc.h"
#include "status.h"

static mm_status load_attn(mmi_qformer_attn *a, mmi_weights *w, const mmi_qformer_config *c,
                           int i, const char *kind, int kv_width)
{
    const int d = c->n_embd;
    MMI_TRY(mmi_weights_matrix(w, 1, &a->q, d, d, "qformer.blk.%d.%s_q.weight", i, kind));
    MMI_TRY(mmi_weights_vector(w, 1, &a->q_b, d, "qformer.blk.%d.%s_q.bias", i, kind));
    MMI_TRY(mmi_weights_matrix(w, 1, &a->k, kv_width, d, "qformer.blk.%d.%s_k.weight", i, kind));
    MMI_TRY(mmi_weights_vector(w, 1, &a->k_b, d, "qformer.blk.%d.%s_k.bias", i, kind));
    MMI_TRY(mmi_weights_matrix(w, 1, &a->v, kv_width, d, "qformer.blk.%d.%s_v.weight", i, kind));
    MMI_TRY(mmi_weights_vector(w, 1, &a->v_b, d, "qformer.blk.%d.%s_v.bias", i, kind));
    MMI_TRY(mmi_weights_matrix(w, 1, &a->out, d, d, "qformer.blk.%d.%s_out.weight", i, kind));
    MMI_TRY(mmi_weights_vector(w, 1, &a->out_b, d, "qformer.blk.%d.%s_out.bias", i, kind));
    MMI_TRY(mmi_weights_vector(w, 1, &a->ln_w, d, "qformer.blk.%d.%s_ln.weight", i, kind));
    MMI_TRY(mmi_weights_vector(w, 1, &a->ln_b, d, "qformer.blk.%d.%s_ln.bias", i, kind));
    return MM_OK;
}

static mm_status load_config(mmi_qformer_config *c, const mmi_gguf *g, int n_vision)
{
    static const char *const keys[] = {
        "clip.qformer.embedding_length", "clip.qformer.feed_forward_length",
        "clip.qformer.block_count", "clip.qformer.attention.head_count",
        "clip.qformer.query_count", "clip.qformer.encoder_width",
        "clip.qformer.cross_attention_frequency"};
    int *const dst[] = {&c->n_embd, &c->n_ff, &c->n_block, &c->n_head, &c->n_query, &c->n_vision,
                        &c->cross_freq};
    const char *path = mmi_gguf_path(g);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        MMI_TRY(mmi_weights_dim(g, keys[i], MMI_MAX_DIM, dst[i]));
    if ((uint64_t)c->n_block > mmi_gguf_n_tensors(g)) /* each block has tensors of its own */
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.qformer.block_count = %d but the file holds "
                        "%llu tensors", path, c->n_block, (unsigned long long)mmi_gguf_n_tensors(g));
    if (c->n_embd % c->n_head)
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.qformer.embedding_length %d is not a multiple "
                        "of clip.qformer.attention.head_count %d", path, c->n_embd, c->n_head);
    if (c->n_vision != n_vision)
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.qformer.encoder_width is %d but the vision "
                        "features are %d wide", path, c->n_vision, n_vision);
    double eps;
    MMI_TRY(mmi_gguf_get_float(g, "clip.qformer.attention.layer_norm_epsilon", &eps));
    c->eps = (float)eps;
    const char *act;
    MMI_TRY(mmi_gguf_get_string(g, "clip.qformer.hidden_act", &act, NULL));
    if (!mmi_act_from_name(act, &c->act))
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: clip.qformer.hidden_act '%s' is unknown", path,
                        act);
    /* The projection's output width is the language model's: read it off the tensor. */
    const mmi_tensor *t = mmi_gguf_find_tensor(g, "mm.proj.weight");
    if (!t)
        return mmi_fail(MM_ERR_FORMAT, "%s: Q-Former without tensor mm.proj.weight", path);
    if (t->n_dims != 2 || t->ne[0] != (uint64_t)c->n_embd || t->ne[1] < 1 || t->ne[1] > MMI_MAX_DIM)
        return mmi_fail(MM_ERR_FORMAT, "%s: mm.proj.weight has shape [%llu, %llu], expected "
                        "[%d, E]", path, (unsigned long long)t->ne[0],
                        (unsigned long long)t->ne[1], c->n_embd);
    c->n_out = (int)t->ne[1];
    return MM_OK;
}

mm_status mmi_qformer_load(mmi_qformer *qf, const mmi_gguf *g, mmi_weights *w, int n_vision)
{
    *qf = (mmi_qformer){0};
    mmi_qformer_config *c = &qf->cfg;
    MMI_TRY(load_config(c, g, n_vision));
    const int d = c->n_embd;
    const uint64_t query_ne[2] = {(uint64_t)d, (uint64_t)c->n_query};
    MMI_TRY(mmi_weights_get(w, 1, &qf->query, 2, query_ne, "qformer.query_embd"));
    MMI_TRY(mmi_weights_vector(w, 1, &qf->embd_ln_w, d, "qformer.embd_ln.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &qf->embd_ln_b, d, "qformer.embd_ln.bias"));
    MMI_TRY(mmi_weights_matrix(w, 1, &qf->proj, d, c->n_out, "mm.proj.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &qf->proj_b, c->n_out, "mm.proj.bias"));

    qf->blocks = mmi_calloc((size_t)c->n_block, sizeof *qf->blocks);
    if (!qf->blocks)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %d Q-Former blocks",
                        mmi_gguf_path(g), c->n_block);
    mm_status st = MM_OK;
    for (int i = 0; i < c->n_block && st == MM_OK; i++) {
        mmi_qformer_block *b = &qf->blocks[i];
        st = load_attn(&b->self, w, c, i, "attn", d);
        if (st == MM_OK && i % c->cross_freq == 0)
            st = load_attn(&b->cross, w, c, i, "cross", c->n_vision);
        if (st == MM_OK)
            st = mmi_weights_matrix(w, 1, &b->ffn_up, d, c->n_ff, "qformer.blk.%d.ffn_up.weight",
                                    i);
        if (st == MM_OK)
            st = mmi_weights_vector(w, 1, &b->ffn_up_b, c->n_ff, "qformer.blk.%d.ffn_up.bias", i);
        if (st == MM_OK)
            st = mmi_weights_matrix(w, 1, &b->ffn_down, c->n_ff, d,
                                    "qformer.blk.%d.ffn_down.weight", i);
        if (st == MM_OK)
            st = mmi_weights_vector(w, 1, &b->ffn_down_b, d, "qformer.blk.%d.ffn_down.bias", i);
        if (st == MM_OK)
            st = mmi_weights_vector(w, 1, &b->ffn_ln_w, d, "qformer.blk.%d.ffn_ln.weight", i);
        if (st == MM_OK)
            st = mmi_weights_vector(w, 1, &b->ffn_ln_b, d, "qformer.blk.%d.ffn_ln.bias", i);
    }
    if (st != MM_OK)
        mmi_qformer_free(qf);
    return st;
}

void mmi_qformer_free(mmi_qformer *qf)
{
    mmi_free(qf->blocks);
    *qf = (mmi_qformer){0};
}

typedef struct {
    float *q, *attn;  /* [Nq][Dq] */
    float *k, *v;     /* [max(Nq, n)][Dq] */
    float *ffn;       /* [Nq][Fq] */
    float *scores;    /* [Nq][max(Nq, n)] */
} scratch_bufs;

/* Lay the sublayer buffers out in s (NULL: just measure); returns the floats used. */
static size_t split_scratch(const mmi_qformer_config *c, int n, float *s, scratch_bufs *b)
{
    size_t nq = (size_t)c->n_query, d = (size_t)c->n_embd, at = 0;
    size_t m = n > c->n_query ? (size_t)n : nq;
    b->q = mmi_carve(s, &at, nq * d);
    b->attn = mmi_carve(s, &at, nq * d);
    b->k = mmi_carve(s, &at, m * d);
    b->v = mmi_carve(s, &at, m * d);
    b->ffn = mmi_carve(s, &at, nq * (size_t)c->n_ff);
    b->scores = mmi_carve(s, &at, nq * m);
    return at;
}

/* The run keeps the hidden state [Nq][Dq] in front of the sublayer buffers. */
size_t mmi_qformer_scratch_floats(const mmi_qformer *qf, int n_vision_tokens)
{
    scratch_bufs b;
    return (size_t)qf->cfg.n_query * qf->cfg.n_embd +
           split_scratch(&qf->cfg, n_vision_tokens, NULL, &b);
}

/* x[Nq][Dq] = ln(x + out(attention(q(x), k(y), v(y)))), no mask: queries see every row of y. */
static void attend(const mmi_qformer_attn *a, const mmi_qformer_config *c, float *x,
                   const float *y, int n_y, const scratch_bufs *s)
{
    const int nq = c->n_query, d = c->n_embd;
    mmi_linear(s->q, x, nq, &a->q, a->q_b);
    mmi_linear(s->k, y, n_y, &a->k, a->k_b);
    mmi_linear(s->v, y, n_y, &a->v, a->v_b);
    mmi_attention(s->attn, s->q, s->k, s->v, nq, n_y, c->n_head, c->n_head, d / c->n_head, d, 0,
                  0, s->scores);
    mmi_linear(s->q, s->attn, nq, &a->out, a->out_b);
    mmi_add(x, s->q, (size_t)nq * d);
    mmi_layernorm(x, x, nq, d, a->ln_w, a->ln_b, c->eps);
}

void mmi_qformer_encode(const mmi_qformer *qf, const float *vision, int n, float *hidden,
                        float *scratch)
{
    const mmi_qformer_config *c = &qf->cfg;
    const int nq = c->n_query, d = c->n_embd;
    scratch_bufs s;
    split_scratch(c, n, scratch, &s);
    mmi_layernorm(hidden, qf->query, nq, d, qf->embd_ln_w, qf->embd_ln_b, c->eps);
    for (int i = 0; i < c->n_block; i++) {
        const mmi_qformer_block *b = &qf->blocks[i];
        attend(&b->self, c, hidden, hidden, nq, &s);
        if (b->cross.q.data)
            attend(&b->cross, c, hidden, vision, n, &s);
        mmi_linear(s.ffn, hidden, nq, &b->ffn_up, b->ffn_up_b);
        mmi_activate(c->act, s.ffn, (size_t)nq * c->n_ff);
        mmi_linear(s.q, s.ffn, nq, &b->ffn_down, b->ffn_down_b);
        mmi_add(hidden, s.q, (size_t)nq * d);
        mmi_layernorm(hidden, hidden, nq, d, b->ffn_ln_w, b->ffn_ln_b, c->eps);
    }
}

void mmi_qformer_run(const mmi_qformer *qf, const float *vision, int n, float *out,
                     float *scratch)
{
    float *hidden = scratch;
    mmi_qformer_encode(qf, vision, n, hidden, hidden + (size_t)qf->cfg.n_query * qf->cfg.n_embd);
    mmi_linear(out, hidden, qf->cfg.n_query, &qf->proj, qf->proj_b);
}
