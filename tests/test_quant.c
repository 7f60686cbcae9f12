/* The type table and kernels of lib/core/quant.c against llama.cpp's own output
 * (tests/vectors/quant, see its README): rows quantized by ggml, their dequantized floats, the
 * activations quantized to the dot partner type, and the dot products of ggml's CPU kernels.
 *
 * Tolerances:
 * - dequantization and the reference quantizers: bit-exact.
 * - dot(q, yq) against ggml's dot on the same bytes: the per-block integer sums are exact in
 *   both, so only the float accumulation of the block terms differs: at most
 *   (blocks + 2) * 2^-24 * sum|w_i yq_i| (each addition and the two scale products round once).
 *   libmm's SIMD kernels against its portable ones: bit-identical (same float order).
 * - dot(q, quantize(y)) against the exact sum(w_i y_i) (w the dequantized weights): what the Q8
 *   activation rounding costs. |y_i - yq_i| <= d/2 from rounding plus |q| |d - f16(d)| <=
 *   127 d 2^-11 from storing d as f16 (Q8_0/Q8_1; Q8_K keeps d in f32), so the bound is
 *   sum_i |w_i| 0.57 d_block(i) plus the accumulation term above. */
#include <math.h>
#include <string.h>

#include "decoder.h"
#include "gguf.h"
#include "half.h"
#include "quant.h"
#include "safetensors.h"
#include "testutil.h"

static const struct {
    const char *file;
    mmi_tensor_type type;
} files[] = {
    {"q4_0", MMI_TENSOR_Q4_0}, {"q4_1", MMI_TENSOR_Q4_1},   {"q5_0", MMI_TENSOR_Q5_0},
    {"q5_1", MMI_TENSOR_Q5_1}, {"q8_0", MMI_TENSOR_Q8_0},   {"q2_k", MMI_TENSOR_Q2_K},
    {"q3_k", MMI_TENSOR_Q3_K}, {"q4_k", MMI_TENSOR_Q4_K},   {"q5_k", MMI_TENSOR_Q5_K},
    {"q6_k", MMI_TENSOR_Q6_K}, {"iq4_nl", MMI_TENSOR_IQ4_NL}, {"iq4_xs", MMI_TENSOR_IQ4_XS},
    {"q8_k", MMI_TENSOR_Q8_K}, {"q8_1", MMI_TENSOR_Q8_1},
};
#define N_FILES (int)(sizeof files / sizeof files[0])

typedef struct {
    int rows, n;
    float *x, *deq, *y, *dot;
    uint8_t *q, *yq;
    size_t q_bytes, yq_bytes;
} row_set;

static void load_set(st_file *f, const char *set, row_set *s, int weight)
{
    char name[64];
    int64_t shape[ST_MAX_DIMS];
    *s = (row_set){0};
    snprintf(name, sizeof name, "%s.x", set);
    s->x = st_read_f32(f, name, shape, NULL, NULL);
    ck_assert_msg(s->x, "%s", f->error);
    s->rows = (int)shape[0];
    s->n = (int)shape[1];
    snprintf(name, sizeof name, "%s.deq", set);
    s->deq = st_read_f32(f, name, NULL, NULL, NULL);
    snprintf(name, sizeof name, "%s.q", set);
    s->q = st_read_raw(f, name, NULL, NULL, NULL, &s->q_bytes);
    ck_assert_msg(s->deq && s->q, "%s", f->error);
    if (!weight)
        return;
    snprintf(name, sizeof name, "%s.y", set);
    s->y = st_read_f32(f, name, NULL, NULL, NULL);
    snprintf(name, sizeof name, "%s.dot", set);
    s->dot = st_read_f32(f, name, NULL, NULL, NULL);
    snprintf(name, sizeof name, "%s.yq", set);
    s->yq = st_read_raw(f, name, NULL, NULL, NULL, &s->yq_bytes);
    ck_assert_msg(s->y && s->dot && s->yq, "%s", f->error);
}

static void free_set(row_set *s)
{
    free(s->x);
    free(s->deq);
    free(s->y);
    free(s->dot);
    free(s->q);
    free(s->yq);
}

static int open_vectors(int i, st_file *f)
{
    char rel[64], path[256];
    snprintf(rel, sizeof rel, "quant/%s.safetensors", files[i].file);
    snprintf(path, sizeof path, "%.200s", test_vectors_path(rel));
    ck_assert_msg(st_load(f, path) == 0, "%s", f->error);
    return 1;
}

/* Every row of the table is consistent, and the vectors' layouts are the table's. */
START_TEST(table_rows)
{
    int weights = 0;
    for (uint32_t t = 0; t < MMI_TENSOR_COUNT + 2; t++) {
        const mmi_type_traits *tt = mmi_type(t);
        ck_assert_ptr_nonnull(tt);
        ck_assert_str_eq(mmi_tensor_type_name(t), tt->name ? tt->name : "unknown");
        if (!tt->block_elems) {
            ck_assert(!tt->weight && !tt->to_f32 && !tt->from_f32);
            continue;
        }
        ck_assert(tt->to_f32 != NULL);
        ck_assert_uint_eq(mmi_type_row_bytes(t, 512), 512 / tt->block_elems * tt->block_bytes);
        const mmi_type_traits *partner = mmi_type(tt->dot_partner);
        ck_assert(partner->from_f32 != NULL); /* activations can be quantized to it */
        int quantized = tt->dot_partner != MMI_TENSOR_F32;
        if (tt->weight && quantized) {
            ck_assert_msg(mmi_quant_kernels()->dot[t], "%s has no dot kernel", tt->name);
            ck_assert(mmi_quant_kernels_portable()->dot[t] != NULL);
        }
        weights += tt->weight;
    }
    ck_assert_int_eq(weights, 15); /* F32 F16 BF16, 5 legacy, 5 K, 2 IQ4 */
    for (int i = 0; i < N_FILES; i++) {
        st_file f;
        open_vectors(i, &f);
        row_set a;
        load_set(&f, "A", &a, 0);
        ck_assert_uint_eq(a.q_bytes, (size_t)a.rows * mmi_type_row_bytes(files[i].type, a.n));
        free_set(&a);
        st_free(&f);
    }
}
END_TEST

static void check_dequant(st_file *f, mmi_tensor_type type, const char *set)
{
    row_set s;
    load_set(f, set, &s, 0);
    size_t row_bytes = mmi_type_row_bytes(type, s.n);
    float *out = malloc((size_t)s.n * sizeof *out);
    for (int r = 0; r < s.rows; r++) {
        mmi_type(type)->to_f32(s.q + r * row_bytes, out, s.n);
        for (int i = 0; i < s.n; i++)
            ck_assert_msg(mmi_f32_bits(out[i]) == mmi_f32_bits(s.deq[r * s.n + i]),
                          "%s %s row %d [%d]: %.9g, llama.cpp %.9g", mmi_tensor_type_name(type),
                          set, r, i, (double)out[i], (double)s.deq[r * s.n + i]);
    }
    free(out);
    free_set(&s);
}

START_TEST(dequantize_bit_exact)
{
    st_file f;
    open_vectors(_i, &f);
    check_dequant(&f, files[_i].type, "A");
    check_dequant(&f, files[_i].type, "B");
    st_free(&f);
}
END_TEST

/* Where libmm has a quantizer: llama.cpp's reference bytes from the same floats. */
static void check_quantize(st_file *f, mmi_tensor_type type, const char *set)
{
    row_set s;
    load_set(f, set, &s, 0);
    uint8_t *out = malloc(s.q_bytes);
    mmi_type(type)->from_f32(s.x, out, (size_t)s.rows * s.n);
    size_t row_bytes = s.q_bytes / s.rows;
    for (size_t k = 0; k < s.q_bytes; k++)
        ck_assert_msg(out[k] == s.q[k], "%s %s row %zu byte %zu: %u, llama.cpp %u",
                      mmi_tensor_type_name(type), set, k / row_bytes, k % row_bytes, out[k], s.q[k]);
    free(out);
    free_set(&s);
}

START_TEST(quantize_reference_bytes)
{
    mmi_tensor_type type = files[_i].type;
    if (!mmi_type(type)->from_f32)
        return; /* Q2_K, Q3_K, IQ4_NL, IQ4_XS: libmm has no quantizer for them */
    st_file f;
    open_vectors(_i, &f);
    check_quantize(&f, type, "A");
    check_quantize(&f, type, "B");
    st_free(&f);
}
END_TEST

/* The scale of the activation block holding value i of a row quantized to `partner`. */
static double partner_scale(mmi_tensor_type partner, const uint8_t *row, int i)
{
    if (partner == MMI_TENSOR_Q8_K)
        return fabs((double)mmi_bits_f32((uint32_t)row[292 * (i / 256)] |
                                         (uint32_t)row[292 * (i / 256) + 1] << 8 |
                                         (uint32_t)row[292 * (i / 256) + 2] << 16 |
                                         (uint32_t)row[292 * (i / 256) + 3] << 24));
    size_t bytes = mmi_type(partner)->block_bytes;
    return fabs((double)mmi_f16_at(row + bytes * (size_t)(i / 32)));
}

static void check_dots(const mmi_kernels *k, st_file *f, mmi_tensor_type type, const char *set)
{
    row_set s;
    load_set(f, set, &s, 1);
    mmi_tensor_type partner = mmi_type(type)->dot_partner;
    size_t row_bytes = mmi_type_row_bytes(type, s.n), yq_bytes = mmi_type_row_bytes(partner, s.n);
    uint8_t *yq = malloc(yq_bytes);
    float *yd = malloc((size_t)s.n * sizeof *yd);
    for (int r = 0; r < s.rows; r++) {
        const float *w = s.deq + r * s.n, *y = s.y + r * s.n;
        /* the activation's bytes are llama.cpp's */
        mmi_type(partner)->from_f32(y, yq, s.n);
        ck_assert_msg(memcmp(yq, s.yq + r * yq_bytes, yq_bytes) == 0, "%s %s row %d: yq differs",
                      mmi_tensor_type_name(type), set, r);
        mmi_type(partner)->to_f32(yq, yd, s.n);
        double mag = 0, exact = 0, rounding = 0;
        for (int i = 0; i < s.n; i++) {
            mag += fabs((double)w[i] * yd[i]);
            exact += (double)w[i] * y[i];
            rounding += fabs((double)w[i]) * 0.57 * partner_scale(partner, yq, i);
        }
        double accumulation = (s.n / mmi_type(type)->block_elems + 2) * 0x1p-24 * mag;
        float got = k->dot[type](s.q + r * row_bytes, yq, s.n);
        float portable = mmi_quant_kernels_portable()->dot[type](s.q + r * row_bytes, yq, s.n);
        ck_assert_msg(mmi_f32_bits(got) == mmi_f32_bits(portable),
                      "%s %s row %d: %s kernel %.9g, portable %.9g", mmi_tensor_type_name(type),
                      set, r, k->isa, (double)got, (double)portable);
        ck_assert_msg(fabs(got - (double)s.dot[r]) <= accumulation,
                      "%s %s row %d (%s): dot %.9g, llama.cpp %.9g, tolerance %.3g",
                      mmi_tensor_type_name(type), set, r, k->isa, (double)got, (double)s.dot[r],
                      accumulation);
        ck_assert_msg(fabs(got - exact) <= rounding + accumulation,
                      "%s %s row %d: dot %.9g, exact %.9g, Q8 bound %.3g",
                      mmi_tensor_type_name(type), set, r, (double)got, exact, rounding);
    }
    free(yq);
    free(yd);
    free_set(&s);
}

START_TEST(dot_products)
{
    mmi_tensor_type type = files[_i].type;
    if (!mmi_type(type)->weight)
        return; /* the activation types have no kernel of their own */
    st_file f;
    open_vectors(_i, &f);
    check_dots(mmi_quant_kernels_portable(), &f, type, "A");
    check_dots(mmi_quant_kernels_portable(), &f, type, "B");
    check_dots(mmi_quant_kernels(), &f, type, "A");
    check_dots(mmi_quant_kernels(), &f, type, "B");
    st_free(&f);
}
END_TEST

/* Scales: a NaN or infinite f16 scale anywhere is found; finite ones pass. */
START_TEST(scales_checked)
{
    uint8_t blocks[2 * 292] = {0};
    for (uint32_t t = 0; t < MMI_TENSOR_COUNT; t++) {
        const mmi_type_traits *tt = mmi_type(t);
        if (!tt->weight)
            continue;
        memset(blocks, 0, sizeof blocks);
        ck_assert(mmi_type_scales_finite(t, blocks, 2));
        for (int k = 0; k < 2; k++) {
            if (tt->scale_at[k] < 0)
                continue;
            for (uint16_t bad = 0x7c00; bad; bad = bad == 0x7c00 ? 0xfe01 : 0) {
                memset(blocks, 0, sizeof blocks);
                uint8_t *p = blocks + tt->block_bytes + tt->scale_at[k];
                p[0] = (uint8_t)bad;
                p[1] = (uint8_t)(bad >> 8);
                ck_assert_msg(!mmi_type_scales_finite(t, blocks, 2), "%s scale %d", tt->name, k);
                ck_assert(mmi_type_scales_finite(t, blocks, 1)); /* only the second block */
            }
        }
    }
}
END_TEST

/* ---- the tiny LLaMA quantized by llama-quantize, against llama.cpp's logits ---- */

static const char *models[] = {"Q4_0", "Q8_0", "Q4_K_M", "Q5_K_M", "Q6_K"};
#define N_MODELS (int)(sizeof models / sizeof models[0])

/* The integers of the JSON array after "key": in `text`; returns the count. */
static int json_ints(const char *text, const char *key, int32_t *out, int cap)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\": [", key);
    const char *p = strstr(text, pattern);
    ck_assert_msg(p, "no %s", key);
    p += strlen(pattern);
    int n = 0;
    while (n < cap && *p != ']') {
        char *end;
        out[n++] = (int32_t)strtol(p, &end, 10);
        p = end + strspn(end, ", ");
    }
    return n;
}

static void *read_file(const char *rel, size_t *size)
{
    FILE *f = fopen(test_vectors_path(rel), "rb");
    ck_assert_msg(f, "cannot open %s", rel);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc(*size + 1);
    ck_assert(fread(data, 1, *size, f) == *size);
    data[*size] = 0;
    fclose(f);
    return data;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        best = x[i] > x[best] ? i : best;
    return best;
}

START_TEST(tiny_llama_logits)
{
    char rel[128];
    size_t size;
    snprintf(rel, sizeof rel, "quant/logits/tiny-llama-%s.json", models[_i]);
    char *json = read_file(rel, &size);
    int32_t prompt[64], greedy[64];
    int n_prompt = json_ints(json, "prompt", prompt, 64);
    int n_greedy = json_ints(json, "greedy", greedy, 64);
    free(json);
    snprintf(rel, sizeof rel, "quant/logits/tiny-llama-%s.logits.f32", models[_i]);
    float *want = read_file(rel, &size);
    snprintf(rel, sizeof rel, "quant/logits/tiny-llama-%s.greedy_logits.f32", models[_i]);
    float *want_greedy = read_file(rel, &size);

    snprintf(rel, sizeof rel, "quant/model/tiny-llama-%s.gguf", models[_i]);
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open(test_vectors_path(rel), 1, &g));
    mmi_decoder *d;
    ck_assert_ok(mmi_decoder_load(g, &d));
    int v = d->config.n_vocab;
    ck_assert_uint_eq(size, (size_t)n_greedy * v * sizeof(float));
    mmi_exec exec;
    ck_assert_ok(mmi_exec_init(&exec, 2));
    const mmi_exec *previous = mmi_exec_bind(&exec);
    mmi_decoder_state s;
    ck_assert_ok(mmi_decoder_state_init(&s, d, 64, 64));
    float *got = malloc(sizeof(float) * n_prompt * v);
    ck_assert_ok(mmi_decoder_eval(d, &s, prompt, NULL, n_prompt, got, NULL));
    /* Tolerance (see the top of the file): each of the 4 L + 1 quantized inputs of a pass
     * (attention, its output projection, the feed-forward in and out, the head) rounds the
     * activations to Q8 in llama.cpp, a relative error of at most 1/254 of the block's largest
     * value; taken through unamplified, that is (4 L + 1) / 254 of the largest logit. */
    double max_logit = 0;
    for (int i = 0; i < n_prompt * v; i++)
        max_logit = fmax(max_logit, fabs((double)want[i]));
    double tol = (4 * d->config.n_layer + 1) / 254.0 * max_logit;
    double prefill_err = max_abs_diff(got, want, (size_t)n_prompt * v);
    ck_assert_msg(prefill_err <= tol, "%s prompt logits: max |diff| %.4g > %.4g", models[_i],
                  prefill_err, tol);
    /* Decode llama.cpp's greedy tokens one at a time (teacher forcing). */
    double decode_err = 0;
    for (int k = 0; k < n_greedy; k++) {
        const float *row = k == 0 ? got + (size_t)(n_prompt - 1) * v : s.logits;
        decode_err = fmax(decode_err, max_abs_diff(row, want_greedy + (size_t)k * v, v));
        int ours = argmax(row, v), theirs = argmax(want_greedy + (size_t)k * v, v);
        ck_assert_msg(ours == greedy[k], "%s step %d: token %d, llama.cpp %d", models[_i], k, ours, greedy[k]);
        ck_assert_int_eq(theirs, greedy[k]);
        if (k + 1 < n_greedy)
            ck_assert_ok(mmi_decoder_eval(d, &s, &greedy[k], NULL, 1, NULL, NULL));
    }
    ck_assert_msg(decode_err <= tol, "%s decode logits: max |diff| %.4g > %.4g", models[_i],
                  decode_err, tol);
    mmi_decoder_state_free(&s);

    /* The prompt one token at a time: every product then quantizes its activations to Q8 as
     * llama.cpp does, so only the float accumulation differs: at most n 2^-24 of the largest
     * logit for sums of n <= n_ff terms. (This holds while no activation lands so close to a
     * Q8 rounding boundary that the two accumulations round it to different steps; the
     * kernels add the blocks in ggml's order, and on these inputs none does.) */
    ck_assert_ok(mmi_decoder_state_init(&s, d, 64, 64));
    double exact_tol = d->config.n_ff * 0x1p-24 * max_logit, stepwise_err = 0;
    for (int i = 0; i < n_prompt; i++) {
        ck_assert_ok(mmi_decoder_eval(d, &s, &prompt[i], NULL, 1, NULL, NULL));
        stepwise_err = fmax(stepwise_err, max_abs_diff(s.logits, want + (size_t)i * v, v));
    }
    ck_assert_msg(stepwise_err <= exact_tol, "%s prompt one token at a time: max |diff| %.4g > %.4g",
                  models[_i], stepwise_err, exact_tol);
    fprintf(stderr, "%s: batched prompt max |diff| %.3g, decode %.3g (tolerance %.3g); token by token %.3g (tolerance %.3g)\n",
            models[_i], prefill_err, decode_err, tol, stepwise_err, exact_tol);
    free(got);
    mmi_decoder_state_free(&s);
    mmi_exec_bind(previous);
    mmi_exec_free(&exec);
    mmi_decoder_free(d);
    mmi_gguf_close(g);
    free(want);
    free(want_greedy);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quant");
    TCase *tc = tcase_create("quant");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, table_rows);
    tcase_add_loop_test(tc, dequantize_bit_exact, 0, N_FILES);
    tcase_add_loop_test(tc, quantize_reference_bytes, 0, N_FILES);
    tcase_add_loop_test(tc, dot_products, 0, N_FILES);
    tcase_add_test(tc, scales_checked);
    tcase_add_loop_test(tc, tiny_llama_logits, 0, N_MODELS);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
