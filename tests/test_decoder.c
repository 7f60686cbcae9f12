/* The language model (lib/lm/decoder.c) on tiny random models written here with the GGUF writer:
 * the KV cache reproduces a full recompute, chunked prefill equals one pass, embedding rows
 * equal token rows, cancellation and overflow leave the state as it was, and malformed files
 * are refused with a message naming the key or tensor. Agreement with HF transformers itself
 * is checked by the parity runner (tests/hf_parity, cases llama and llava). */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "decoder.h"
#include "model.h"
#include "testutil.h"
#include "tiny_llama.h"

#define ck_assert_message_has(text)                                                             \
    ck_assert_msg(strstr(mm_last_error(), (text)) != NULL, "error \"%s\" lacks \"%s\"",         \
                  mm_last_error(), (text))

/* Largest |a - b| / max(1, |b|) over n values. */
static double max_rel_err(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        worst = d > worst ? d : worst;
    }
    return worst;
}

static mm_model *load(const tiny_llama *c)
{
    mm_model *m = NULL;
    ck_assert_ok(tiny_llama_load(c, &m));
    ck_assert_ptr_nonnull(m->decoder);
    return m;
}

static void fill_prompt(int32_t *ids, int n, int n_vocab)
{
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)((i * 7 + 3) % n_vocab);
}

/* Logits of every position from one pass, from a prefill then one token at a time, and from
 * chunks of 5 rows must agree: the cache holds exactly what a recompute would. */
static void check_cache_equals_recompute(const tiny_llama *c)
{
    mm_model *m = load(c);
    const mmi_decoder *d = m->decoder;
    enum { N = 20, PREFILL = 12 };
    int v = d->config.n_vocab;
    int32_t ids[N];
    fill_prompt(ids, N, v);
    float *full = malloc(sizeof(float) * N * v), *chunked = malloc(sizeof(float) * N * v);

    mmi_decoder_state s;
    ck_assert_ok(mmi_decoder_state_init(&s, d, 32, 64));
    ck_assert_ok(mmi_decoder_eval(d, &s, ids, NULL, N, full, NULL));
    ck_assert_int_eq(s.n_past, N);
    /* the last row's logits are kept (sgemv there, sgemm for all rows: rounding differs) */
    ck_assert_msg(max_rel_err(s.logits, full + (N - 1) * v, (size_t)v) <= 1e-6, "last row");
    mmi_decoder_state_free(&s);

    ck_assert_ok(mmi_decoder_state_init(&s, d, 32, 64));
    ck_assert_ok(mmi_decoder_eval(d, &s, ids, NULL, PREFILL, NULL, NULL));
    double worst = max_rel_err(s.logits, full + (PREFILL - 1) * v, (size_t)v);
    for (int i = PREFILL; i < N; i++) {
        ck_assert_ok(mmi_decoder_eval(d, &s, ids + i, NULL, 1, NULL, NULL));
        worst = fmax(worst, max_rel_err(s.logits, full + (size_t)i * v, (size_t)v));
    }
    ck_assert_msg(worst <= 1e-5, "decode vs full recompute: max rel err %g", worst);
    mmi_decoder_state_free(&s);

    ck_assert_ok(mmi_decoder_state_init(&s, d, 32, 5));
    ck_assert_int_eq(s.n_batch, 5);
    ck_assert_ok(mmi_decoder_eval(d, &s, ids, NULL, N, chunked, NULL));
    worst = max_rel_err(chunked, full, (size_t)N * v);
    ck_assert_msg(worst <= 1e-5, "chunked prefill vs one pass: max rel err %g", worst);
    mmi_decoder_state_free(&s);
    free(full);
    free(chunked);
    mm_model_free(m);
}

START_TEST(cache_equals_recompute_gqa)
{
    check_cache_equals_recompute(&tiny_llama_default);
}
END_TEST

START_TEST(cache_equals_recompute_mqa_tied_biases)
{
    tiny_llama c = tiny_llama_default;
    c.n_head_kv = 1;
    c.tied = 1;
    c.with_biases = 1;
    c.rope_base = 500000.0f;
    check_cache_equals_recompute(&c);
}
END_TEST

START_TEST(embedding_rows_equal_token_rows)
{
    mm_model *m = load(&tiny_llama_default);
    const mmi_decoder *d = m->decoder;
    int e = d->config.n_embd, v = d->config.n_vocab;
    int32_t ids[6];
    fill_prompt(ids, 6, v);
    float rows[6 * 32];
    for (int i = 0; i < 6; i++)
        mmi_matrix_row(&d->weights.token_embd, ids[i], rows + i * e);
    mmi_decoder_state a, b;
    ck_assert_ok(mmi_decoder_state_init(&a, d, 16, 16));
    ck_assert_ok(mmi_decoder_state_init(&b, d, 16, 16));
    /* Same chunking on both sides, so the same GEMM shapes: results must be bit-identical. */
    ck_assert_ok(mmi_decoder_eval(d, &a, ids, NULL, 2, NULL, NULL));
    ck_assert_ok(mmi_decoder_eval(d, &a, ids + 2, NULL, 4, NULL, NULL));
    ck_assert_ok(mmi_decoder_eval(d, &b, ids, NULL, 2, NULL, NULL));
    ck_assert_ok(mmi_decoder_eval(d, &b, NULL, rows + 2 * e, 4, NULL, NULL));
    ck_assert_mem_eq(a.logits, b.logits, sizeof(float) * v);
    mmi_decoder_state_free(&a);
    mmi_decoder_state_free(&b);
    mm_model_free(m);
}
END_TEST

/* A tied head is the embedding matrix: a file with output.weight = token_embd gives the same
 * logits as one without output.weight. */
static float *saved_embd;

static void copy_embd_to_output(const char *name, float *v, size_t n, void *user)
{
    (void)user;
    if (strcmp(name, "token_embd.weight") == 0)
        memcpy(saved_embd, v, n * sizeof *v);
    if (strcmp(name, "output.weight") == 0)
        memcpy(v, saved_embd, n * sizeof *v);
}

START_TEST(tied_head_is_the_embedding)
{
    tiny_llama c = tiny_llama_default;
    saved_embd = malloc(sizeof(float) * c.n_vocab * c.n_embd);
    c.hook = copy_embd_to_output;
    mm_model *untied = load(&c);
    c.tied = 1;
    mm_model *tied = load(&c);
    ck_assert_ptr_eq(tied->decoder->weights.output.data, tied->decoder->weights.token_embd.data);
    int32_t ids[4] = {1, 5, 9, 2};
    mmi_decoder_state a, b;
    ck_assert_ok(mmi_decoder_state_init(&a, untied->decoder, 8, 8));
    ck_assert_ok(mmi_decoder_state_init(&b, tied->decoder, 8, 8));
    ck_assert_ok(mmi_decoder_eval(untied->decoder, &a, ids, NULL, 4, NULL, NULL));
    ck_assert_ok(mmi_decoder_eval(tied->decoder, &b, ids, NULL, 4, NULL, NULL));
    ck_assert_mem_eq(a.logits, b.logits, sizeof(float) * c.n_vocab);
    mmi_decoder_state_free(&a);
    mmi_decoder_state_free(&b);
    mm_model_free(untied);
    mm_model_free(tied);
    free(saved_embd);
}
END_TEST

START_TEST(overflow_and_cancel_leave_state_unchanged)
{
    mm_model *m = load(&tiny_llama_default);
    const mmi_decoder *d = m->decoder;
    int v = d->config.n_vocab;
    int32_t ids[12];
    fill_prompt(ids, 12, v);
    mmi_decoder_state s;
    ck_assert_ok(mmi_decoder_state_init(&s, d, 10, 4));
    ck_assert_ok(mmi_decoder_eval(d, &s, ids, NULL, 6, NULL, NULL));
    float *before = malloc(sizeof(float) * v);
    memcpy(before, s.logits, sizeof(float) * v);

    ck_assert_status(mmi_decoder_eval(d, &s, ids, NULL, 5, NULL, NULL), MM_ERR_CTX_FULL);
    ck_assert_message_has("6 of 10");
    ck_assert_int_eq(s.n_past, 6);

    atomic_int cancel;
    atomic_init(&cancel, 1);
    ck_assert_status(mmi_decoder_eval(d, &s, ids + 6, NULL, 4, NULL, &cancel), MM_ERR_CANCELLED);
    ck_assert_int_eq(s.n_past, 6);
    ck_assert_mem_eq(s.logits, before, sizeof(float) * v);

    /* The same input afterwards gives what an uninterrupted run gives. */
    ck_assert_ok(mmi_decoder_eval(d, &s, ids + 6, NULL, 4, NULL, NULL));
    mmi_decoder_state ref;
    ck_assert_ok(mmi_decoder_state_init(&ref, d, 10, 10));
    ck_assert_ok(mmi_decoder_eval(d, &ref, ids, NULL, 10, NULL, NULL));
    ck_assert_msg(max_rel_err(s.logits, ref.logits, (size_t)v) <= 1e-5, "after cancel");
    mmi_decoder_state_free(&ref);
    ck_assert_status(mmi_decoder_state_init(&ref, d, 0, 1), MM_ERR_ARG);
    mmi_decoder_state_free(&s);
    free(before);
    mm_model_free(m);
}
END_TEST

/* phi3's fused tensors are split into views of the file's own bytes (f32 and f16 alike): Q, K,
 * V and gate, up start where their rows start, and the model runs (the math is checked against
 * HF by tests/hf_parity). */
START_TEST(fused_tensors_are_views)
{
    static const mmi_tensor_type types[] = {MMI_TENSOR_F32, MMI_TENSOR_F16};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        tiny_llama c = tiny_llama_default;
        c.arch = "phi3";
        c.fused = 1;
        c.matrix_type = types[k];
        mm_model *m = load(&c);
        ck_assert_str_eq(mm_model_family(m), "phi3");
        const mmi_decoder_config *cfg = &m->decoder->config;
        size_t value = types[k] == MMI_TENSOR_F32 ? 4 : 2, row = (size_t)cfg->n_embd * value;
        size_t eq = (size_t)cfg->n_head * cfg->head_dim;
        size_t ekv = (size_t)cfg->n_head_kv * cfg->head_dim;
        for (int l = 0; l < cfg->n_layer; l++) {
            const mmi_decoder_layer *dl = &m->decoder->weights.layers[l];
            char name[64];
            snprintf(name, sizeof name, "blk.%d.attn_qkv.weight", l);
            const char *qkv = mmi_gguf_find_tensor(m->files[0], name)->data;
            snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l);
            const char *gate_up = mmi_gguf_find_tensor(m->files[0], name)->data;
            ck_assert_ptr_eq(dl->wq.data, qkv);
            ck_assert_ptr_eq(dl->wk.data, qkv + eq * row);
            ck_assert_ptr_eq(dl->wv.data, qkv + (eq + ekv) * row);
            ck_assert_int_eq(dl->wv.n_out, (int)ekv);
            ck_assert_ptr_eq(dl->ffn_gate.data, gate_up);
            ck_assert_ptr_eq(dl->ffn_up.data, gate_up + (size_t)cfg->n_ff * row);
            ck_assert_int_eq(dl->ffn_up.n_out, cfg->n_ff);
        }
        mm_session *s;
        ck_assert_ok(mm_session_create(m, NULL, &s));
        int32_t ids[5] = {3, 1, 4, 1, 5};
        ck_assert_ok(mm_session_add_tokens(s, ids, 5));
        mm_session_free(s);
        mm_model_free(m);
    }
}
END_TEST

/* M-RoPE with the same number on all three position rows is qwen2's RoPE: a qwen2vl file and a
 * qwen2 file of the same weights give the same logits, row by row, through explicit positions
 * and the sequential ones that follow them; and an image grid's positions are its cells. */
START_TEST(mrope_of_equal_positions_is_neox)
{
    tiny_llama c = tiny_llama_default;
    c.arch = "qwen2";
    c.with_biases = 1;
    mm_model *plain = load(&c);
    c.arch = "qwen2vl";
    c.rope_sections[0] = 1, c.rope_sections[1] = 2, c.rope_sections[2] = 1;
    mm_model *multi = load(&c);
    ck_assert_str_eq(mm_model_family(multi), "qwen2vl");
    const mmi_decoder *dp = plain->decoder, *dm = multi->decoder;
    ck_assert_int_eq(dm->config.n_pos_dims, 3);
    enum { T = 6 };
    int32_t ids[T + 1] = {3, 9, 4, 1, 7, 2, 5}, pos[T * 3];
    int V = dp->config.n_vocab;
    float *lp = malloc(sizeof(float) * T * V), *lm = malloc(sizeof(float) * T * V);
    for (int t = 0; t < T; t++)
        pos[3 * t] = pos[3 * t + 1] = pos[3 * t + 2] = t;
    mmi_decoder_state sp, sm;
    ck_assert_ok(mmi_decoder_state_init(&sp, dp, 16, 4));
    ck_assert_ok(mmi_decoder_state_init(&sm, dm, 16, 4));
    ck_assert_ok(mmi_decoder_eval(dp, &sp, ids, NULL, T, lp, NULL));
    ck_assert_ok(mmi_decoder_eval_at(dm, &sm, ids, NULL, pos, T, lm, NULL));
    ck_assert_mem_eq(lp, lm, sizeof(float) * T * V);
    ck_assert_int_eq(sm.pos_delta, 0);
    ck_assert_ok(mmi_decoder_eval(dp, &sp, ids + T, NULL, 1, NULL, NULL));
    ck_assert_ok(mmi_decoder_eval(dm, &sm, ids + T, NULL, 1, NULL, NULL));
    ck_assert_mem_eq(sp.logits, sm.logits, sizeof(float) * V);
    /* Negative positions, and positions for learned-position models, are refused. */
    pos[0] = -1;
    ck_assert_status(mmi_decoder_eval_at(dm, &sm, ids, NULL, pos, 1, NULL, NULL), MM_ERR_ARG);
    ck_assert_int_eq(sm.n_past, T + 1);

    /* A 2 x 2 x 3 grid at text position 5: cells (t, h, w) + 5; the text goes on at 5 + 3. */
    int32_t grid[12 * 3];
    ck_assert_int_eq(mmi_decoder_grid_positions(dm, 5, 2, 2, 3, grid), 8);
    for (int k = 0; k < 12; k++) {
        ck_assert_int_eq(grid[3 * k], 5 + k / 6);
        ck_assert_int_eq(grid[3 * k + 1], 5 + k / 3 % 2);
        ck_assert_int_eq(grid[3 * k + 2], 5 + k % 3);
    }
    /* One number per row elsewhere: the rows follow each other. */
    ck_assert_int_eq(mmi_decoder_grid_positions(dp, 5, 2, 2, 3, grid), 17);
    ck_assert_int_eq(grid[11], 16);
    /* Text after explicit positions continues after the largest one (HF's rope_deltas). */
    mmi_decoder_state_free(&sm);
    ck_assert_ok(mmi_decoder_state_init(&sm, dm, 32, 4));
    int32_t at[12 * 3];
    ck_assert_int_eq(mmi_decoder_grid_positions(dm, 0, 2, 2, 3, at), 3);
    ck_assert_ok(mmi_decoder_eval_at(dm, &sm, ids, NULL, at, 12 > T ? T : 12, NULL, NULL));
    ck_assert_int_eq(sm.pos_delta, 2 + 1 - T); /* the first 6 cells reach position 2 */
    mmi_decoder_state_free(&sp);
    mmi_decoder_state_free(&sm);
    free(lp);
    free(lm);
    mm_model_free(plain);
    mm_model_free(multi);
}
END_TEST

/* ---- malformed files ---- */

static void check_refused(tiny_llama c, mm_status expected, const char *message_part)
{
    mm_model *m = NULL;
    ck_assert_status(tiny_llama_load(&c, &m), expected);
    ck_assert_ptr_null(m);
    ck_assert_message_has(message_part);
}

START_TEST(malformed_files_are_refused)
{
    tiny_llama c = tiny_llama_default;
    c.arch = "falcon";
    check_refused(c, MM_ERR_UNSUPPORTED, "falcon");

    c = tiny_llama_default;
    c.set_key = "llama.attention.head_count_kv";
    c.set_value = 3;
    check_refused(c, MM_ERR_FORMAT, "not a multiple of 3 KV heads");

    c.set_key = "llama.block_count";
    c.set_value = 4000000000;
    check_refused(c, MM_ERR_FORMAT, "llama.block_count");

    c.set_key = "llama.context_length";
    c.set_value = 0;
    check_refused(c, MM_ERR_FORMAT, "llama.context_length");

    c.set_key = "llama.rope.dimension_count";
    c.set_value = 7;
    check_refused(c, MM_ERR_FORMAT, "rope.dimension_count 7");

    c.set_key = "llama.embedding_length"; /* the tensors no longer have this width */
    c.set_value = 30;
    check_refused(c, MM_ERR_FORMAT, "token_embd.weight");

    c.set_key = "llama.block_count"; /* more blocks declared than stored */
    c.set_value = 3;
    check_refused(c, MM_ERR_FORMAT, "blk.2.attn_norm.weight");

    c = tiny_llama_default;
    c.set_float_key = "llama.rope.scaling.factor";
    c.set_float_value = 4;
    check_refused(c, MM_ERR_UNSUPPORTED, "RoPE scaling");

    /* Families: a qwen2 block without a Q/K/V bias, a phi3 fused tensor of the wrong size, a
     * sliding window of 0, a LongRoPE factor table. */
    c = tiny_llama_default;
    c.arch = "qwen2";
    c.with_biases = 1;
    c.drop_tensor = "blk.1.attn_k.bias";
    check_refused(c, MM_ERR_FORMAT, "blk.1.attn_k.bias");
    c = tiny_llama_default;
    c.arch = "phi3";
    c.fused = 1;
    c.fused_rows_extra = 8;
    check_refused(c, MM_ERR_FORMAT, "blk.0.attn_qkv.weight");
    c.fused_rows_extra = 0;
    c.set_key = "phi3.attention.sliding_window";
    c.set_value = 0;
    check_refused(c, MM_ERR_FORMAT, "phi3.attention.sliding_window");
    c.set_key = NULL;
    c.drop_tensor = "blk.0.ffn_up.weight";
    check_refused(c, MM_ERR_FORMAT, "blk.0.ffn_up.weight");
    c = tiny_llama_default; /* head_dim 8: M-RoPE sections must add up to 4 pairs */
    c.arch = "qwen2vl";
    c.with_biases = 1;
    check_refused(c, MM_ERR_FORMAT, "qwen2vl.rope.dimension_sections");
    c.rope_sections[0] = 2, c.rope_sections[1] = 1, c.rope_sections[2] = 2;
    check_refused(c, MM_ERR_FORMAT, "qwen2vl.rope.dimension_sections = [2, 1, 2] add up to 5");

    c = tiny_llama_default;
    c.drop_tensor = "blk.1.ffn_down.weight";
    check_refused(c, MM_ERR_FORMAT, "blk.1.ffn_down.weight");
    c.drop_tensor = "token_embd.weight";
    check_refused(c, MM_ERR_FORMAT, "token_embd.weight");
}
END_TEST

/* Every allocation of load and state creation may fail: each failure is reported, nothing
 * leaks (checked under ASan), and the next attempt succeeds. */
START_TEST(allocation_failures_are_reported)
{
    const char *path = tiny_temp_path("alloc.gguf");
    ck_assert_ok(tiny_llama_write(&tiny_llama_default, path));
    for (long n = 1;; n++) {
        mm_model *m = NULL;
        mmi_alloc_fail_at(n);
        mm_status st = mm_model_load(path, NULL, NULL, &m);
        mmi_decoder_state s;
        if (st == MM_OK)
            st = mmi_decoder_state_init(&s, m->decoder, 16, 4);
        long used = mmi_alloc_fail_at(0);
        if (st == MM_OK) {
            mmi_decoder_state_free(&s);
            mm_model_free(m);
            ck_assert_int_lt(used, n); /* no allocation was made to fail */
            break;
        }
        ck_assert_int_eq(st, MM_ERR_NOMEM);
        mm_model_free(m);
    }
    unlink(path);
}
END_TEST

/* Rounds every matrix (not the norm vectors) to the precision in *user. */
static void round_matrices(const char *name, float *v, size_t n, void *user)
{
    mmi_tensor_type type = *(const mmi_tensor_type *)user;
    if (strstr(name, "norm"))
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = type == MMI_TENSOR_F16 ? mmi_f16_to_f32(mmi_f32_to_f16(v[i]))
                                      : mmi_bf16_to_f32(mmi_f32_to_bf16(v[i]));
}

/* f16 and bf16 matrices, read from the file as they are (blocks converted for cblas_sgemm, the
 * dot kernel for single rows), give the logits of the same model stored in f32 with its
 * weights rounded alike: a prompt, then tokens one at a time, unbound and on a pool of three
 * threads; tied and untied heads. Tokens one at a time allocate nothing. */
START_TEST(half_precision_matrices_equal_rounded_f32)
{
    enum { N = 20, PREFILL = 12 };
    const mmi_tensor_type types[2] = {MMI_TENSOR_F16, MMI_TENSOR_BF16};
    mmi_exec exec;
    ck_assert_ok(mmi_exec_init(&exec, 3));
    for (int t = 0; t < 4; t++) {
        mmi_tensor_type type = types[t % 2];
        tiny_llama c = tiny_llama_default;
        c.tied = t >= 2;
        c.hook = round_matrices;
        c.hook_user = &type;
        mm_model *m32 = load(&c);
        c.matrix_type = type;
        mm_model *mh = load(&c);
        ck_assert_int_eq(mh->decoder->weights.layers[0].wq.type, type);
        int v = m32->decoder->config.n_vocab;
        int32_t ids[N];
        fill_prompt(ids, N, v);
        float *want = malloc(sizeof(float) * N * v), *got = malloc(sizeof(float) * N * v);
        for (int bound = 0; bound < 2; bound++) {
            mmi_decoder_state s32, sh;
            ck_assert_ok(mmi_decoder_state_init(&s32, m32->decoder, 32, 64));
            ck_assert_ok(mmi_decoder_state_init(&sh, mh->decoder, 32, 64));
            const mmi_exec *previous = mmi_exec_bind(bound ? &exec : NULL);
            ck_assert_ok(mmi_decoder_eval(m32->decoder, &s32, ids, NULL, PREFILL, want, NULL));
            ck_assert_ok(mmi_decoder_eval(mh->decoder, &sh, ids, NULL, PREFILL, got, NULL));
            mmi_alloc_fail_at(0);
            for (int i = PREFILL; i < N; i++) {
                ck_assert_ok(mmi_decoder_eval(m32->decoder, &s32, ids + i, NULL, 1,
                                              want + (size_t)i * v, NULL));
                ck_assert_ok(mmi_decoder_eval(mh->decoder, &sh, ids + i, NULL, 1,
                                              got + (size_t)i * v, NULL));
            }
            ck_assert_int_eq(mmi_alloc_fail_at(0), 0);
            mmi_exec_bind(previous);
            ck_assert_msg(max_rel_err(got, want, (size_t)N * v) <= 1e-5,
                          "type %d, tied %d, bound %d: %g", type, c.tied, bound,
                          max_rel_err(got, want, (size_t)N * v));
            mmi_decoder_state_free(&s32);
            mmi_decoder_state_free(&sh);
        }
        free(want);
        free(got);
        mm_model_free(m32);
        mm_model_free(mh);
    }
    mmi_exec_free(&exec);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("decoder");
    TCase *tc = tcase_create("decoder");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cache_equals_recompute_gqa);
    tcase_add_test(tc, cache_equals_recompute_mqa_tied_biases);
    tcase_add_test(tc, embedding_rows_equal_token_rows);
    tcase_add_test(tc, tied_head_is_the_embedding);
    tcase_add_test(tc, overflow_and_cancel_leave_state_unchanged);
    tcase_add_test(tc, fused_tensors_are_views);
    tcase_add_test(tc, mrope_of_equal_positions_is_neox);
    tcase_add_test(tc, malformed_files_are_refused);
    tcase_add_test(tc, allocation_failures_are_reported);
    tcase_add_test(tc, half_precision_matrices_equal_rounded_f32);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
