/* Q-Former, Perceiver resampler and the OPT form of the decoder on cases the HF parity vectors
 * do not reach (see tests/data/gen_connector_ref.py: PyTorch float64 references for
 * cross-attention every 2nd block, unequal widths, grouped KV with head_dim != width/heads, the
 * Flamingo form; OPT post-LN without final norm, untied head, position offset 0, GELU), and their
 * loaders on broken files: missing or misshapen tensors and keys, bad values, failed allocations. */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "data/connector_ref.h"
#include "decoder.h"
#include "gguf.h"
#include "qformer.h"
#include "model.h"
#include "resampler.h"
#include "session.h"
#include "testutil.h"
#include "tiny_llama.h"
#include "vit.h"

static const ref_case *const cases[] = {&qformer_freq2, &qformer_small, &perceiver_gqa,
                                        &perceiver_flamingo};
#define N_CASES (int)(sizeof cases / sizeof cases[0])
static const ref_case *const opt_cases[] = {&opt_post_ln, &opt_untied};
#define N_OPT_CASES (int)(sizeof opt_cases / sizeof opt_cases[0])

static int is_qformer(const ref_case *c)
{
    return c->hidden != NULL;
}

/* The case as a GGUF file in memory, leaving out the key or tensor called `drop` and giving
 * key `set->key` the value in `set` (added if the case has no such key). */
static mmi_gguf *build(const ref_case *c, const char *drop, const ref_key *set)
{
    mmi_gguf_writer *w;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    int set_done = 0;
    for (int i = 0; i <= c->n_keys; i++) {
        const ref_key *k = i < c->n_keys ? &c->keys[i] : NULL;
        if (k && drop && strcmp(k->key, drop) == 0)
            continue;
        if (set && (k ? strcmp(k->key, set->key) == 0 : !set_done)) {
            k = set;
            set_done = 1;
        }
        if (!k)
            continue;
        if (strcmp(k->type, "str") == 0)
            ck_assert_ok(mmi_gguf_writer_add_string(w, k->key, k->str));
        else if (strcmp(k->type, "bool") == 0)
            ck_assert_ok(mmi_gguf_writer_add_bool(w, k->key, k->num != 0));
        else if (strcmp(k->type, "f32") == 0)
            ck_assert_ok(mmi_gguf_writer_add_float(w, k->key, MMI_GGUF_FLOAT32, k->num));
        else if (strcmp(k->type, "i64") == 0)
            ck_assert_ok(mmi_gguf_writer_add_int(w, k->key, MMI_GGUF_INT64, (int64_t)k->num));
        else
            ck_assert_ok(mmi_gguf_writer_add_int(w, k->key, MMI_GGUF_UINT32, (int64_t)k->num));
    }
    for (int i = 0; i < c->n_tensors; i++) {
        const ref_tensor *t = &c->tensors[i];
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        const uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        ck_assert_ok(mmi_gguf_writer_add_tensor(w, t->name, MMI_TENSOR_F32, (uint32_t)t->n_dims,
                                                ne, t->data));
    }
    void *data;
    size_t size;
    ck_assert_ok(mmi_gguf_writer_write_memory(w, &data, &size));
    mmi_gguf_writer_free(w);
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(data, size, &g));
    mmi_free(data);
    return g;
}

/* Either connector, loaded from g for c's input width. */
typedef struct {
    mmi_weights w;
    mmi_qformer qf;
    mmi_resampler rs;
} loaded;

static mm_status load(loaded *l, const ref_case *c, const mmi_gguf *g, int in_width)
{
    memset(l, 0, sizeof *l);
    mmi_weights_init(&l->w, g);
    return is_qformer(c) ? mmi_qformer_load(&l->qf, g, &l->w, in_width)
                         : mmi_resampler_load(&l->rs, g, &l->w, in_width);
}

static void unload(loaded *l)
{
    mmi_qformer_free(&l->qf);
    mmi_resampler_free(&l->rs);
    mmi_weights_free(&l->w);
}

/* float32 against the float64 reference: |got - ref| <= tol * max(1, |ref|). */
static void check_close(const char *what, const float *got, const float *ref, int n, double tol)
{
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]) / fmax(1.0, fabs(ref[i]));
        worst = fmax(worst, err);
        ck_assert_msg(err <= tol, "%s[%d] = %.9g, torch %.9g", what, i, (double)got[i],
                      (double)ref[i]);
    }
    ck_assert_msg(worst > 0 || n == 0, "%s: suspiciously exact", what);
}

START_TEST(matches_torch)
{
    const ref_case *c = cases[_i];
    mmi_gguf *g = build(c, NULL, NULL);
    loaded l;
    ck_assert_ok(load(&l, c, g, c->in_width));
    size_t n_scratch = is_qformer(c) ? mmi_qformer_scratch_floats(&l.qf, c->n_in)
                                     : mmi_resampler_scratch_floats(&l.rs, c->n_in);
    float *scratch = mmi_array(n_scratch, sizeof(float));
    float *out = mmi_array((size_t)c->n_out * c->out_width, sizeof(float));
    ck_assert_ptr_nonnull(scratch);
    ck_assert_ptr_nonnull(out);
    if (is_qformer(c)) {
        ck_assert_int_eq(l.qf.cfg.n_query, c->n_out);
        ck_assert_int_eq(l.qf.cfg.n_out, c->out_width);
        float *hidden = mmi_array((size_t)c->n_out * c->hidden_width, sizeof(float));
        ck_assert_ptr_nonnull(hidden);
        mmi_qformer_encode(&l.qf, c->input, c->n_in, hidden, scratch);
        check_close("hidden", hidden, c->hidden, c->n_out * c->hidden_width, 1e-5);
        mmi_free(hidden);
        mmi_qformer_run(&l.qf, c->input, c->n_in, out, scratch);
    } else {
        ck_assert_int_eq(l.rs.cfg.n_latent, c->n_out);
        mmi_resampler_run(&l.rs, c->input, c->n_in, out, scratch);
    }
    check_close(c->name, out, c->output, c->n_out * c->out_width, 1e-5);
    mmi_free(out);
    mmi_free(scratch);
    unload(&l);
    mmi_gguf_close(g);
}
END_TEST

/* Load must fail with `want` and a message containing `needle` (NULL: any message). */
static void expect_failure(const ref_case *c, const char *drop, const ref_key *set, int in_width,
                           mm_status want, const char *needle)
{
    mmi_gguf *g = build(c, drop, set);
    loaded l;
    mm_status st = load(&l, c, g, in_width);
    ck_assert_msg(st == want, "%s without %s / with %s: status %d (%s), expected %d", c->name,
                  drop ? drop : "-", set ? set->key : "-", (int)st, mm_last_error(), (int)want);
    ck_assert_msg(!needle || strstr(mm_last_error(), needle), "%s: message '%s' lacks '%s'",
                  c->name, mm_last_error(), needle);
    unload(&l);
    mmi_gguf_close(g);
}

START_TEST(every_tensor_required)
{
    const ref_case *c = cases[_i];
    for (int i = 0; i < c->n_tensors; i++) {
        const char *name = c->tensors[i].name;
        /* Without block 0's gate the file reads as ungated, and block 1's gate is the error. */
        int gate0 = strcmp(name, "perceiver.blk.0.ffn_gate.weight") == 0;
        expect_failure(c, name, NULL, c->in_width, MM_ERR_FORMAT,
                       gate0 ? "perceiver.blk.1.ffn_gate.weight" : name);
    }
}
END_TEST

START_TEST(every_key_required_or_defaulted)
{
    const ref_case *c = cases[_i];
    for (int i = 0; i < c->n_keys; i++) {
        const char *key = c->keys[i].key;
        if (strncmp(key, "general.", 8) == 0)
            continue; /* read by the model loader, not here */
        /* Optional keys (docs/model-format.md §7): head_count_kv defaults to head_count,
         * key_length to width/heads, norm to rms; with those defaults this case's tensors or
         * the eps key no longer fit, except for norm = rms itself. */
        if (c == &perceiver_gqa && strcmp(key, "clip.perceiver.norm") == 0) {
            mmi_gguf *g = build(c, key, NULL);
            loaded l;
            ck_assert_ok(load(&l, c, g, c->in_width));
            unload(&l);
            mmi_gguf_close(g);
            continue;
        }
        int optional = strstr(key, "head_count_kv") || strstr(key, "key_length") ||
                       strstr(key, ".norm");
        expect_failure(c, key, NULL, c->in_width, MM_ERR_FORMAT, optional ? NULL : key);
    }
}
END_TEST

START_TEST(bad_values)
{
    const ref_case *q = &qformer_freq2, *p = &perceiver_gqa;
    const ref_key heads3 = {"clip.qformer.attention.head_count", "u32", 3, NULL};
    expect_failure(q, NULL, &heads3, q->in_width, MM_ERR_FORMAT, "head_count");
    const ref_key no_blocks = {"clip.qformer.block_count", "u32", 0, NULL};
    expect_failure(q, NULL, &no_blocks, q->in_width, MM_ERR_FORMAT, "block_count");
    const ref_key freq0 = {"clip.qformer.cross_attention_frequency", "u32", 0, NULL};
    expect_failure(q, NULL, &freq0, q->in_width, MM_ERR_FORMAT, "cross_attention_frequency");
    const ref_key huge = {"clip.qformer.query_count", "i64", 4294967296.0, NULL};
    expect_failure(q, NULL, &huge, q->in_width, MM_ERR_FORMAT, "query_count");
    const ref_key negative = {"clip.qformer.feed_forward_length", "i64", -12, NULL};
    expect_failure(q, NULL, &negative, q->in_width, MM_ERR_FORMAT, "feed_forward_length");
    const ref_key act = {"clip.qformer.hidden_act", "str", 0, "swish"};
    expect_failure(q, NULL, &act, q->in_width, MM_ERR_UNSUPPORTED, "swish");
    const ref_key eps_type = {"clip.qformer.attention.layer_norm_epsilon", "str", 0, "1e-12"};
    expect_failure(q, NULL, &eps_type, q->in_width, MM_ERR_FORMAT, "layer_norm_epsilon");
    /* Vision features of another width than the file's encoder_width. */
    expect_failure(q, NULL, NULL, q->in_width + 1, MM_ERR_FORMAT, "encoder_width");

    const ref_key kv2 = {"clip.perceiver.attention.head_count_kv", "u32", 2, NULL};
    expect_failure(p, NULL, &kv2, p->in_width, MM_ERR_FORMAT, "head_count_kv");
    const ref_key norm = {"clip.perceiver.norm", "str", 0, "batch"};
    expect_failure(p, NULL, &norm, p->in_width, MM_ERR_UNSUPPORTED, "batch");
    const ref_key wide = {"clip.perceiver.attention.key_length", "u32", 1 << 20, NULL};
    expect_failure(p, NULL, &wide, p->in_width, MM_ERR_FORMAT, "too wide");
    expect_failure(p, NULL, NULL, p->in_width - 1, MM_ERR_FORMAT, "embedding_length");
}
END_TEST

START_TEST(misshapen_tensor)
{
    /* The cross-attention key matrix stored for Dq-wide instead of D-wide vision rows. */
    const ref_case *q = &qformer_freq2;
    ref_tensor tensors[128];
    ck_assert_int_le(q->n_tensors, 128);
    memcpy(tensors, q->tensors, sizeof(ref_tensor) * (size_t)q->n_tensors);
    static const float zeros[8 * 8];
    int found = 0;
    for (int i = 0; i < q->n_tensors; i++)
        if (strcmp(tensors[i].name, "qformer.blk.2.cross_k.weight") == 0) {
            tensors[i].ne[0] = tensors[i].ne[1]; /* [6, 8] -> [8, 8] */
            tensors[i].data = zeros;
            found = 1;
        }
    ck_assert(found);
    ref_case bad = *q;
    bad.tensors = tensors;
    expect_failure(&bad, NULL, NULL, q->in_width, MM_ERR_FORMAT, "qformer.blk.2.cross_k.weight");
}
END_TEST

START_TEST(allocation_failures)
{
    /* Fail each allocation of the load in turn: NOMEM reported, nothing leaked (ASan). */
    const ref_case *c = cases[_i];
    mmi_gguf *g = build(c, NULL, NULL);
    for (long n = 1;; n++) {
        loaded l;
        mmi_alloc_fail_at(n);
        mm_status st = load(&l, c, g, c->in_width);
        mmi_alloc_fail_at(0);
        unload(&l);
        if (st == MM_OK)
            break;
        ck_assert_int_eq(st, MM_ERR_NOMEM);
        ck_assert_ptr_nonnull(strstr(mm_last_error(), "out of memory"));
    }
    mmi_gguf_close(g);
}
END_TEST

/* ---- the decoder's OPT form ---- */

static mmi_decoder *load_opt(const ref_case *c, const char *drop, const ref_key *set,
                             mmi_gguf **g)
{
    *g = build(c, drop, set);
    mmi_decoder *d = NULL;
    ck_assert_ok(mmi_decoder_load(*g, &d));
    return d;
}

/* Row i of the case's input: an embedding row, then the token ids. */
static void eval_row(const mmi_decoder *d, mmi_decoder_state *s, const ref_case *c, int i)
{
    if (i < c->n_in) {
        ck_assert_ok(mmi_decoder_eval(d, s, NULL, c->input + (size_t)i * c->in_width, 1, NULL,
                                      NULL));
    } else {
        int32_t id = c->ids[i - c->n_in];
        ck_assert_ok(mmi_decoder_eval(d, s, &id, NULL, 1, NULL, NULL));
    }
}

START_TEST(opt_matches_torch)
{
    const ref_case *c = opt_cases[_i];
    mmi_gguf *g;
    mmi_decoder *d = load_opt(c, NULL, NULL, &g);
    ck_assert_str_eq(d->config.family->arch, "opt");
    ck_assert_int_eq(d->config.n_vocab, c->out_width);
    const int rows = c->n_in + c->n_ids, V = c->out_width;
    ck_assert_int_eq(rows, c->n_out);
    float *logits = mmi_array((size_t)rows * V, sizeof(float));
    ck_assert_ptr_nonnull(logits);

    /* Prefill: the input rows, then the ids, with every row's logits. */
    mmi_decoder_state s;
    ck_assert_ok(mmi_decoder_state_init(&s, d, rows, rows));
    if (c->n_in)
        ck_assert_ok(mmi_decoder_eval(d, &s, NULL, c->input, c->n_in, logits, NULL));
    int32_t ids[64];
    ck_assert_int_le(c->n_ids, 64);
    for (int j = 0; j < c->n_ids; j++)
        ids[j] = c->ids[j];
    ck_assert_ok(mmi_decoder_eval(d, &s, ids, NULL, c->n_ids, logits + (size_t)c->n_in * V,
                                  NULL));
    check_close(c->name, logits, c->output, rows * V, 1e-5);
    mmi_decoder_state_free(&s);

    /* One row at a time through the KV cache, as generation runs: each position again. */
    ck_assert_ok(mmi_decoder_state_init(&s, d, rows, 1));
    for (int i = 0; i < rows; i++) {
        eval_row(d, &s, c, i);
        memcpy(logits + (size_t)i * V, s.logits, sizeof(float) * (size_t)V);
    }
    check_close("one row at a time", logits, c->output, rows * V, 1e-5);
    mmi_decoder_state_free(&s);
    mmi_free(logits);
    mmi_decoder_free(d);
    mmi_gguf_close(g);
}
END_TEST

START_TEST(opt_context_is_the_position_table)
{
    /* 12 learned positions (rows 2 .. 13 of a 14-row table): a context of 13 cannot exist. */
    const ref_case *c = &opt_post_ln;
    mmi_gguf *g;
    mmi_decoder *d = load_opt(c, NULL, NULL, &g);
    ck_assert_int_eq(d->config.n_pos, 12);
    ck_assert_int_eq(d->config.n_ctx_train, 12);
    mmi_decoder_state s;
    ck_assert_status(mmi_decoder_state_init(&s, d, 13, 1), MM_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "12 learned positions"));
    /* All 12 evaluate (the last reads the table's last row: ASan would see any overrun). */
    ck_assert_ok(mmi_decoder_state_init(&s, d, 12, 4));
    int32_t ids[12];
    for (int i = 0; i < 12; i++)
        ids[i] = i;
    ck_assert_ok(mmi_decoder_eval(d, &s, ids, NULL, 12, NULL, NULL));
    ck_assert_status(mmi_decoder_eval(d, &s, ids, NULL, 1, NULL, NULL), MM_ERR_CTX_FULL);
    mmi_decoder_state_free(&s);
    mmi_decoder_free(d);
    mmi_gguf_close(g);
}
END_TEST

/* Loading the decoder must fail with `want` and a message containing `needle`. */
static void expect_opt_failure(const ref_case *c, const char *drop, const ref_key *set,
                               mm_status want, const char *needle)
{
    mmi_gguf *g = build(c, drop, set);
    mmi_decoder *d = NULL;
    mm_status st = mmi_decoder_load(g, &d);
    ck_assert_msg(st == want, "%s without %s / with %s: status %d (%s), expected %d", c->name,
                  drop ? drop : "-", set ? set->key : "-", (int)st, mm_last_error(), (int)want);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(mm_last_error(), needle), "message '%s' lacks '%s'", mm_last_error(),
                  needle);
    mmi_gguf_close(g);
}

START_TEST(opt_malformed_files)
{
    const ref_case *c = &opt_post_ln;
    const ref_key past_table = {"opt.position_offset", "u32", 14, NULL};
    expect_opt_failure(c, NULL, &past_table, MM_ERR_FORMAT, "opt.position_offset");
    const ref_key projected = {"opt.word_embed_proj_dim", "u32", 4, NULL};
    expect_opt_failure(c, NULL, &projected, MM_ERR_UNSUPPORTED, "word_embed_proj_dim");
    const ref_key act = {"opt.hidden_act", "str", 0, "swish"};
    expect_opt_failure(c, NULL, &act, MM_ERR_UNSUPPORTED, "swish");
    const ref_key arch = {"general.architecture", "str", 0, "gptj"};
    expect_opt_failure(c, NULL, &arch, MM_ERR_UNSUPPORTED, "gptj");
    const ref_key heads = {"opt.attention.head_count", "u32", 3, NULL};
    expect_opt_failure(c, NULL, &heads, MM_ERR_FORMAT, "attn_q.weight");
    expect_opt_failure(c, "position_embd.weight", NULL, MM_ERR_FORMAT, "position_embd.weight");
    expect_opt_failure(c, "blk.1.ffn_up.weight", NULL, MM_ERR_FORMAT, "blk.1.ffn_up.weight");
    expect_opt_failure(c, "blk.0.attn_norm.weight", NULL, MM_ERR_FORMAT,
                       "blk.0.attn_norm.weight");
    expect_opt_failure(c, "opt.embedding_length", NULL, MM_ERR_FORMAT, "opt.embedding_length");

    /* Optional: the final norm, the biases (absent = zero). */
    mmi_gguf *g;
    mmi_decoder *d = load_opt(&opt_untied, "output_norm.weight", NULL, &g);
    ck_assert_ptr_null(d->weights.output_norm);
    mmi_decoder_free(d);
    mmi_gguf_close(g);
    d = load_opt(c, "blk.0.ffn_down.bias", NULL, &g);
    ck_assert_ptr_null(d->weights.layers[0].b_down);
    mmi_decoder_free(d);
    mmi_gguf_close(g);
}
END_TEST

START_TEST(opt_allocation_failures)
{
    mmi_gguf *g = build(&opt_post_ln, NULL, NULL);
    for (long n = 1;; n++) {
        mmi_decoder *d = NULL;
        mmi_alloc_fail_at(n);
        mm_status st = mmi_decoder_load(g, &d);
        mmi_alloc_fail_at(0);
        if (st == MM_OK) {
            mmi_decoder_free(d);
            break;
        }
        ck_assert_int_eq(st, MM_ERR_NOMEM);
        ck_assert_ptr_null(d);
    }
    mmi_gguf_close(g);
}
END_TEST

/* ---- where BLIP-2's image goes in a chat message ---- */

/* A kind of media whose source is 3 rows of 32, handed out by its encoder. */
static mm_status plan_rows(const mm_model *m, const void *source, const mmi_media_params *p,
                           mmi_media_plan *out)
{
    (void)m, (void)source, (void)p;
    *out = (mmi_media_plan){3, 3, 1, 32, {0, 0, 0}};
    return MM_OK;
}

static mm_status encode_rows(const mm_model *m, const void *source, const mmi_media_params *p,
                             const mmi_media_plan *plan, float *rows, const atomic_int *cancel)
{
    (void)m, (void)p, (void)cancel;
    ck_assert_uint_eq(plan->n_rows, 3);
    memcpy(rows, source, 3 * 32 * sizeof(float));
    return MM_OK;
}

static const mmi_media_ops rows_ops = {"rows", plan_rows, encode_rows};

START_TEST(blip2_image_goes_before_bos)
{
    /* A LLaMA-vocabulary model given a vision tower whose connector is a Q-Former without
     * clip.image_token_id (only images_first matters to the session). */
    tiny_llama c = tiny_llama_default;
    c.vocab_path = test_vectors_path("tokenizer/ggml-vocab-llama-spm.gguf");
    mm_model *m;
    ck_assert_ok(tiny_llama_load(&c, &m));
    m->vision = mmi_calloc(1, sizeof *m->vision);
    ck_assert_ptr_nonnull(m->vision);
    m->vision->connector.kind = MMI_CONNECTOR_QFORMER;
    m->vision->connector.images_first = 1;

    mm_session *s;
    ck_assert_ok(mm_session_create(m, NULL, &s));
    ck_assert_str_eq(mm_session_chat_template(s), "raw"); /* not LLaVA's */
    float rows[3 * 32];
    for (int i = 0; i < 3 * 32; i++)
        rows[i] = (float)cos(i);
    const mmi_media image = {.rows = rows, .n_rows = 3};
    const char *text = "Question: what is it? Answer:";
    ck_assert_ok(mmi_session_add_message(s, MMI_ROLE_USER, text, strlen(text), &image, 1));
    /* HF Blip2: [3 query rows][BOS "Question: ..."] at positions 0, 1, ... */
    int32_t want[64] = {-1, -1, -1, 1};
    size_t n;
    ck_assert_ok(mm_tokenize(m, text, strlen(text), MM_TOKENIZE_PARSE_SPECIAL, want + 4, 60, &n));
    n += 4;
    ck_assert_int_eq(mm_session_n_past(s), (int)n);
    const int32_t *h = mmi_session_history(s);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(h[i] == want[i], "position %zu holds %d, expected %d", i, h[i], want[i]);

    /* The same rows through the decoder directly: the same logits. */
    mmi_decoder_state ds;
    ck_assert_ok(mmi_decoder_state_init(&ds, m->decoder, 64, 64));
    ck_assert_ok(mmi_decoder_eval(m->decoder, &ds, NULL, rows, 3, NULL, NULL));
    ck_assert_ok(mmi_decoder_eval(m->decoder, &ds, want + 3, NULL, (int)n - 3, NULL, NULL));
    const float *logits;
    size_t n_vocab;
    ck_assert_ok(mm_session_logits(s, &logits, &n_vocab));
    ck_assert_int_eq(n_vocab, m->decoder->config.n_vocab);
    for (size_t i = 0; i < n_vocab; i++)
        ck_assert_msg(fabsf(logits[i] - ds.logits[i]) <= 1e-6f * fmaxf(1, fabsf(ds.logits[i])),
                      "logit %zu: %g vs %g", i, (double)logits[i], (double)ds.logits[i]);
    mmi_decoder_state_free(&ds);

    /* An image encoded only once the message fits goes to the same place. */
    float *first_logits = mmi_array(n_vocab, sizeof(float));
    ck_assert_ptr_nonnull(first_logits);
    memcpy(first_logits, logits, n_vocab * sizeof(float));
    mm_session_reset(s);
    const mmi_media later = {.ops = &rows_ops, .source = rows};
    ck_assert_ok(mmi_session_add_message(s, MMI_ROLE_USER, text, strlen(text), &later, 1));
    ck_assert_int_eq(mm_session_n_past(s), (int)n);
    h = mmi_session_history(s);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(h[i], want[i]);
    ck_assert_ok(mm_session_logits(s, &logits, &n_vocab));
    ck_assert_mem_eq(logits, first_logits, n_vocab * sizeof(float));
    mmi_free(first_logits);

    /* Markers make no sense for such a model. */
    mm_session_reset(s);
    text = "<image> what is it?";
    ck_assert_status(mmi_session_add_message(s, MMI_ROLE_USER, text, strlen(text), &image, 1),
                     MM_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "in front of the text"));
    ck_assert_int_eq(mm_session_n_past(s), 0);
    mm_session_free(s);
    mm_model_free(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("connectors");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, matches_torch, 0, N_CASES);
    tcase_add_loop_test(tc, every_tensor_required, 0, N_CASES);
    tcase_add_loop_test(tc, every_key_required_or_defaulted, 0, N_CASES);
    tcase_add_test(tc, bad_values);
    tcase_add_test(tc, misshapen_tensor);
    tcase_add_loop_test(tc, allocation_failures, 0, N_CASES);
    tcase_add_loop_test(tc, opt_matches_torch, 0, N_OPT_CASES);
    tcase_add_test(tc, opt_context_is_the_position_table);
    tcase_add_test(tc, opt_malformed_files);
    tcase_add_test(tc, opt_allocation_failures);
    tcase_add_test(tc, blip2_image_goes_before_bos);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(suite());
}
