/* Kernels of lib/core/ops.c, lib/core/vec.c and lib/core/pool.c against values worked out by hand (or from the
 * closed-form definition with Python's math module, quoted in the comments) or computed in double
 * from the definition. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"
#include "pool.h"
#include "sbgemm_by_sgemm.h"
#include "testutil.h"
#include "vec.h"

#define ck_near(a, b, tol) ck_assert_msg(fabs((double)(a) - (double)(b)) <= (tol), \
                                         "%s = %.9g, expected %.9g", #a, (double)(a), (double)(b))

static void ck_all_near(const float *got, const double *want, int n, double tol)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol, "[%d] = %.9g, expected %.9g", i,
                      (double)got[i], want[i]);
}

START_TEST(linear_with_and_without_bias)
{
    /* W[3][2] rows (1,0) (0,1) (1,1): y = (x0, x1, x0+x1) + bias. */
    const float w_data[6] = {1, 0, 0, 1, 1, 1};
    const mmi_matrix w = {w_data, 2, 3, MMI_TENSOR_F32};
    const float bias[3] = {0.5f, -1, 2};
    const float x[4] = {1, 2, 3, 4};
    float y[6];
    mmi_linear(y, x, 2, &w, bias); /* sgemm path */
    ck_all_near(y, (const double[]){1.5, 1, 5, 3.5, 3, 9}, 6, 0);
    mmi_linear(y, x, 2, &w, NULL);
    ck_all_near(y, (const double[]){1, 2, 3, 3, 4, 7}, 6, 0);
    for (int i = 0; i < 6; i++)
        y[i] = 1e30f; /* the result must not depend on what y held */
    mmi_linear(y, x + 2, 1, &w, bias); /* sgemv path */
    ck_all_near(y, (const double[]){3.5, 3, 9}, 3, 0);
    ck_assert_float_eq(y[3], 1e30f); /* nothing written past n_out */
}
END_TEST

START_TEST(gemm_nt_and_nn_with_strides)
{
    /* A = [[1,2,3],[4,5,6]], B = [[1,0,1],[0,1,0]]: A·Bᵀ = [[4,2],[10,5]];
     * 2·A·Bᵀ + 1·C with C = 1 gives [[9,5],[21,11]]. Rows padded to stride 4 / ldc 3. */
    const float a[8] = {1, 2, 3, -7, 4, 5, 6, -7};
    const float b[8] = {1, 0, 1, -7, 0, 1, 0, -7};
    float c[6] = {1, 1, -9, 1, 1, -9};
    mmi_gemm_nt(2, 2, 3, 2.0f, a, 4, b, 4, 1.0f, c, 3);
    ck_all_near(c, (const double[]){9, 5, -9, 21, 11, -9}, 6, 0);

    /* [[1,2],[3,4]] · [[1,0,2],[0,1,3]] = [[1,2,8],[3,4,18]] */
    const float p[4] = {1, 2, 3, 4};
    const float q[6] = {1, 0, 2, 0, 1, 3};
    float r[6] = {99, 99, 99, 99, 99, 99};
    mmi_gemm_nn(2, 3, 2, 1.0f, p, 2, q, 3, 0.0f, r, 3);
    ck_all_near(r, (const double[]){1, 2, 8, 3, 4, 18}, 6, 0);
}
END_TEST

START_TEST(layernorm_rows)
{
    /* Row (1,2,3,4): mean 2.5, var 1.25, (x-2.5)/sqrt(1.25) = ±1.3416408, ±0.4472136; then
     * weight (1,2,0.5,-1), bias (0,1,0,0.5). Row (1,-1) with eps 3: /sqrt(1+3) = ±0.5. */
    const float x[4] = {1, 2, 3, 4};
    const float w[4] = {1, 2, 0.5f, -1}, b[4] = {0, 1, 0, 0.5f};
    float out[4];
    mmi_layernorm(out, x, 1, 4, w, b, 0.0f);
    ck_all_near(out, (const double[]){-1.3416408, 0.1055728, 0.2236068, -0.8416408}, 4, 1e-6);
    /* Two rows at once, in place, eps taken inside the square root. */
    float y[4] = {1, -1, 5, 3};
    mmi_layernorm(y, y, 2, 2, NULL, NULL, 3.0f);
    ck_all_near(y, (const double[]){0.5, -0.5, 0.5, -0.5}, 4, 1e-7);
}
END_TEST

START_TEST(rmsnorm_rows)
{
    /* (3,4): mean square 12.5, rms 3.5355339; weight (2,-1). (1,1,1,1) with eps 3: /2. */
    const float x[2] = {3, 4}, w[2] = {2, -1};
    float out[2];
    mmi_rmsnorm(out, x, 1, 2, w, 0.0f);
    ck_all_near(out, (const double[]){1.6970563, -1.1313708}, 2, 1e-6);
    float y[4] = {1, 1, 1, 1};
    mmi_rmsnorm(y, y, 1, 4, NULL, 3.0f);
    ck_all_near(y, (const double[]){0.5, 0.5, 0.5, 0.5}, 4, 1e-7);
}
END_TEST

START_TEST(activations)
{
    /* gelu(x) = x·Φ(x): Φ(1) = 0.8413447460685429, Φ(2) = 0.9772498680518208. */
    float g[4] = {0, 1, -1, 2};
    mmi_gelu(g, 4);
    ck_all_near(g, (const double[]){0, 0.8413447460685429, -0.15865525393145707,
                                    1.9544997361036416}, 4, 1e-6);
    /* 0.5·x·(1 + tanh(sqrt(2/π)(x + 0.044715x³))) at 1, -0.5, 3. */
    float t[3] = {1, -0.5f, 3};
    mmi_gelu_tanh(t, 3);
    ck_all_near(t, (const double[]){0.8411919906082768, -0.15428599017485606,
                                    2.996362607918227}, 3, 1e-6);
    /* x·σ(1.702x) at 1 and -2. */
    float q[2] = {1, -2};
    mmi_quick_gelu(q, 2);
    ck_all_near(q, (const double[]){0.8457957659328212, -0.06434137685579186}, 2, 1e-6);
    /* silu(x) = x·σ(x): σ(1) = 0.7310585786, σ(-2) = 0.1192029220. */
    float s[3] = {1, -2, 0};
    mmi_silu(s, 3);
    ck_all_near(s, (const double[]){0.7310585786300049, -0.2384058440442351, 0}, 3, 1e-6);
    float r[3] = {-1.5f, 0, 2.5f};
    mmi_relu(r, 3);
    ck_all_near(r, (const double[]){0, 0, 2.5}, 3, 0);
    float gate[2] = {1, -2};
    const float up[2] = {2, 3};
    mmi_swiglu(gate, up, 2);
    ck_all_near(gate, (const double[]){1.4621171572600098, -0.7152175321327053}, 2, 1e-6);
    float a[3] = {1, 2, 3};
    mmi_add(a, (const float[]){0.5f, -2, 10}, 3);
    ck_all_near(a, (const double[]){1.5, 0, 13}, 3, 0);
    /* Saturation: no NaN or inf from the exponentials at large |x|. */
    float big[4] = {-100, 100, -1e4f, 1e4f};
    mmi_quick_gelu(big, 4);
    ck_all_near(big, (const double[]){0, 100, 0, 1e4}, 4, 1e-6);
}
END_TEST

START_TEST(softmax_rows_and_stability)
{
    /* e^(0,1,2)/sum: 0.09003057, 0.24472847, 0.66524096. Second row: huge equal values. */
    float x[6] = {1, 2, 3, 1000, 1000, -1e30f};
    mmi_softmax(x, 2, 3);
    ck_all_near(x, (const double[]){0.09003057317, 0.24472847105, 0.66524095577, 0.5, 0.5, 0},
                6, 1e-7);
}
END_TEST

START_TEST(rope_pairs_and_positions)
{
    /* head_dim 4, n_rot 4, base 10000: θ_0 = pos, θ_1 = pos·10000^(-1/2) = pos/100. */
    const int32_t pos[2] = {1, 0};
    float x[8] = {1, 0, 0, 1, 1, 2, 3, 4};
    mmi_rope(x, 2, 1, 4, 4, pos, 10000.0f, 0);
    /* Adjacent pairs (0,1), (2,3) at pos 1: (cos 1, sin 1), (-sin .01, cos .01); pos 0 unchanged. */
    ck_all_near(x, (const double[]){cos(1.0), sin(1.0), -sin(0.01), cos(0.01), 1, 2, 3, 4}, 8,
                1e-6);
    /* NeoX pairs (0,2), (1,3). */
    float y[4] = {1, 0, 0, 1};
    mmi_rope(y, 1, 1, 4, 4, pos, 10000.0f, 1);
    ck_all_near(y, (const double[]){cos(1.0), -sin(0.01), sin(1.0), cos(0.01)}, 4, 1e-6);
    /* Partial rotation: n_rot 2 of head_dim 4 leaves dims 2,3 alone; 2 heads rotate alike.
     * θ_0 = pos = 3 for both heads. */
    const int32_t p3 = 3;
    float z[8] = {1, 0, 7, 8, 0, 1, 5, 6};
    mmi_rope(z, 1, 2, 4, 2, &p3, 10000.0f, 1);
    ck_all_near(z, (const double[]){cos(3.0), sin(3.0), 7, 8, -sin(3.0), cos(3.0), 5, 6}, 8,
                1e-6);
    /* Large positions keep their phase: θ = 100000 rad. */
    const int32_t pbig = 100000;
    float w[2] = {1, 0};
    mmi_rope(w, 1, 1, 2, 2, &pbig, 10000.0f, 0);
    ck_all_near(w, (const double[]){cos(100000.0), sin(100000.0)}, 2, 1e-5);
}
END_TEST

START_TEST(attention_hand_values)
{
    /* 4 query heads on 2 KV heads, head_dim 4 (score scale 1/2), KV rows padded to stride 10.
     * Query head h = (2·ln r_h, 0, 0, 0); keys of every KV head: k0 = 0, k1 = (1,0,0,0), so the
     * scores are (0, ln r_h) and the weights (1, r_h)/(1 + r_h). */
    const double r[4] = {1, 3, 0.25, 9};
    float q[2][16] = {{0}};
    for (int h = 0; h < 4; h++)
        q[0][h * 4] = q[1][h * 4] = (float)(2 * log(r[h]));
    float k[2][10] = {{0}}, v[2][10];
    k[1][0] = k[1][4] = 1;
    for (int j = 0; j < 10; j++) {
        v[0][j] = (float)j;        /* v0 of KV head g, dim d: 4g + d */
        v[1][j] = (float)(10 * j); /* v1: 10·(4g + d) */
    }
    k[0][8] = k[0][9] = k[1][8] = k[1][9] = NAN; /* padding is never read */
    v[0][8] = v[0][9] = v[1][8] = v[1][9] = NAN;
    float out[2][16], scratch[4];
    mmi_attention(&out[0][0], &q[0][0], &k[0][0], &v[0][0], 2, 2, 4, 2, 4, 10, 0, 0, scratch);
    for (int i = 0; i < 2; i++)
        for (int h = 0; h < 4; h++)
            for (int d = 0; d < 4; d++) {
                double base = 4 * (h / 2) + d;
                double want = (base + r[h] * 10 * base) / (1 + r[h]);
                ck_near(out[i][h * 4 + d], want, 1e-4);
            }
    /* Causal from position 0: query 0 sees only k0 (gets v0), query 1 sees both. */
    mmi_attention(&out[0][0], &q[0][0], &k[0][0], &v[0][0], 2, 2, 4, 2, 4, 10, 1, 0, scratch);
    for (int h = 0; h < 4; h++)
        for (int d = 0; d < 4; d++) {
            double base = 4 * (h / 2) + d;
            ck_near(out[0][h * 4 + d], base, 1e-5);
            ck_near(out[1][h * 4 + d], (base + r[h] * 10 * base) / (1 + r[h]), 1e-4);
        }
}
END_TEST

/* Straight from the definition, in double, one score at a time. */
static void attention_reference(double *out, const float *q, const float *k, const float *v,
                                int n_q, int n_kv, int n_head, int n_kv_head, int hd, int kv_stride,
                                int causal, int q_pos0)
{
    for (int i = 0; i < n_q; i++)
        for (int h = 0; h < n_head; h++) {
            int g = h / (n_head / n_kv_head);
            int last = causal ? q_pos0 + i : n_kv - 1;
            double *s = malloc(sizeof(double) * (size_t)n_kv), max = -INFINITY, sum = 0;
            for (int j = 0; j <= last; j++) {
                s[j] = 0;
                for (int d = 0; d < hd; d++)
                    s[j] += (double)q[(i * n_head + h) * hd + d] * k[j * kv_stride + g * hd + d];
                s[j] /= sqrt(hd);
                max = s[j] > max ? s[j] : max;
            }
            for (int j = 0; j <= last; j++)
                sum += s[j] = exp(s[j] - max);
            for (int d = 0; d < hd; d++) {
                double acc = 0;
                for (int j = 0; j <= last; j++)
                    acc += s[j] / sum * v[j * kv_stride + g * hd + d];
                out[(i * n_head + h) * hd + d] = acc;
            }
            free(s);
        }
}

START_TEST(attention_matches_definition)
{
    /* 3 new queries at positions 5..7 over an 8-entry cache that has 12 rows, the last 4 NaN
     * (unwritten); then the same data without a mask. 6 heads on 3 KV heads, head_dim 5. */
    enum { NQ = 3, NKV = 12, NH = 6, NKVH = 3, HD = 5, STRIDE = NKVH * HD };
    float q[NQ * NH * HD], k[NKV * STRIDE], v[NKV * STRIDE], out[NQ * NH * HD];
    float scratch[NQ * NKV];
    double want[NQ * NH * HD];
    unsigned seed = 12345;
    for (int i = 0; i < NQ * NH * HD; i++)
        q[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 8192.0f - 2.0f;
    for (int i = 0; i < NKV * STRIDE; i++) {
        k[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 8192.0f - 2.0f;
        v[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 8192.0f - 2.0f;
        if (i >= 8 * STRIDE)
            k[i] = v[i] = NAN;
    }
    mmi_attention(out, q, k, v, NQ, NKV, NH, NKVH, HD, STRIDE, 1, 5, scratch);
    attention_reference(want, q, k, v, NQ, NKV, NH, NKVH, HD, STRIDE, 1, 5);
    ck_all_near(out, want, NQ * NH * HD, 1e-5);
    mmi_attention(out, q, k, v, NQ, 8, NH, NKVH, HD, STRIDE, 0, 0, scratch);
    attention_reference(want, q, k, v, NQ, 8, NH, NKVH, HD, STRIDE, 0, 0);
    ck_all_near(out, want, NQ * NH * HD, 1e-5);
}
END_TEST

START_TEST(activation_by_name)
{
    const char *names[] = {"gelu", "gelu_tanh", "quick_gelu", "relu", "silu"};
    /* Each activation at x = 1 and x = -2 (values as in the `activations` test). */
    const double at_1[] = {0.8413447460685429, 0.8411919906082768, 0.8457957659328212, 1,
                           0.7310585786300049};
    const double at_m2[] = {-0.04550026389635842, -0.04540230591222, -0.06434137685579186, 0,
                            -0.2384058440442351};
    for (int i = 0; i < 5; i++) {
        mmi_act act;
        ck_assert_int_eq(mmi_act_from_name(names[i], &act), 1);
        ck_assert_str_eq(mmi_act_name(act), names[i]);
        float x[2] = {1, -2};
        mmi_activate(act, x, 2);
        ck_near(x[0], at_1[i], 1e-6);
        ck_near(x[1], at_m2[i], 1e-6);
    }
    mmi_act act;
    ck_assert_int_eq(mmi_act_from_name("gelu_new", &act), 0);
    ck_assert_int_eq(mmi_act_from_name("", &act), 0);
}
END_TEST

START_TEST(attention_strided_fused_rows)
{
    /* Q, K and V interleaved in rows of a fused [n][3·D] buffer, output into rows of width
     * D + 2: equals the definition on the same numbers. 2 heads, head_dim 3, 4 tokens. */
    enum { N = 4, H = 2, HD = 3, D = H * HD, OUT_STRIDE = D + 2 };
    float qkv[N * 3 * D], out[N * OUT_STRIDE], scratch[N * N];
    double want[N * D];
    for (int i = 0; i < N * 3 * D; i++)
        qkv[i] = (float)sin(0.7 * i + 0.3);
    for (int i = 0; i < N * OUT_STRIDE; i++)
        out[i] = 777.0f;
    mmi_attention_strided(out, OUT_STRIDE, qkv, 3 * D, qkv + D, qkv + 2 * D, 3 * D, N, N, H, H,
                          HD, 0, 0, scratch);
    float q[N * D];
    for (int i = 0; i < N; i++)
        memcpy(q + i * D, qkv + i * 3 * D, sizeof(float) * D);
    attention_reference(want, q, qkv + D, qkv + 2 * D, N, N, H, H, HD, 3 * D, 0, 0);
    for (int i = 0; i < N; i++) {
        ck_all_near(out + i * OUT_STRIDE, want + i * D, D, 1e-5);
        ck_assert_float_eq(out[i * OUT_STRIDE + D], 777.0f); /* gaps untouched */
    }
}
END_TEST

/* Pseudo-random values in [-2, 2), the same on every run. */
static float noise(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (float)(*seed >> 16 & 0x7fff) / 8192.0f - 2.0f;
}

START_TEST(attention_in_blocks_and_by_rows)
{
    /* Long enough for several query blocks (causal ones compute only the keys they see) and,
     * for a single query row, several key chunks of the running softmax. 4 heads on 2 KV
     * heads, head_dim 16; cache rows past the positions in use are NaN (never read). */
    enum { NQ = 300, NKV = 600, NH = 4, NKVH = 2, HD = 16, STRIDE = NKVH * HD };
    float *q = malloc(sizeof(float) * NQ * NH * HD), *out = malloc(sizeof(float) * NQ * NH * HD);
    float *k = malloc(sizeof(float) * NKV * STRIDE), *v = malloc(sizeof(float) * NKV * STRIDE);
    float *scratch = malloc(sizeof(float) * NQ * NKV);
    double *want = malloc(sizeof(double) * NQ * NH * HD);
    unsigned seed = 99;
    for (int i = 0; i < NQ * NH * HD; i++)
        q[i] = noise(&seed);
    for (int i = 0; i < NKV * STRIDE; i++) {
        k[i] = noise(&seed);
        v[i] = noise(&seed);
    }
    /* A prompt from position 0: 300 queries over their own 300 keys. */
    mmi_attention(out, q, k, v, NQ, NQ, NH, NKVH, HD, STRIDE, 1, 0, scratch);
    attention_reference(want, q, k, v, NQ, NQ, NH, NKVH, HD, STRIDE, 1, 0);
    ck_all_near(out, want, NQ * NH * HD, 1e-5);
    /* Every query sees every key. */
    mmi_attention(out, q, k, v, NQ, NKV, NH, NKVH, HD, STRIDE, 0, 0, scratch);
    attention_reference(want, q, k, v, NQ, NKV, NH, NKVH, HD, STRIDE, 0, 0);
    ck_all_near(out, want, NQ * NH * HD, 1e-5);
    /* A continuation at positions 250..549 over a cache of 600 rows, 550 in use. */
    for (int i = 550 * STRIDE; i < NKV * STRIDE; i++)
        k[i] = v[i] = NAN;
    mmi_attention(out, q, k, v, NQ, NKV, NH, NKVH, HD, STRIDE, 1, 250, scratch);
    attention_reference(want, q, k, v, NQ, NKV, NH, NKVH, HD, STRIDE, 1, 250);
    ck_all_near(out, want, NQ * NH * HD, 1e-5);
    /* One decoded row at position 549: 550 keys in three chunks. */
    mmi_attention(out, q, k, v, 1, NKV, NH, NKVH, HD, STRIDE, 1, 549, scratch);
    attention_reference(want, q, k, v, 1, NKV, NH, NKVH, HD, STRIDE, 1, 549);
    ck_all_near(out, want, NH * HD, 1e-5);
    /* One row over 550 keys without a mask, and over a single key (its value, exactly). */
    mmi_attention(out, q, k, v, 1, 550, NH, NKVH, HD, STRIDE, 0, 0, scratch);
    attention_reference(want, q, k, v, 1, 550, NH, NKVH, HD, STRIDE, 0, 0);
    ck_all_near(out, want, NH * HD, 1e-5);
    mmi_attention(out, q, k, v, 1, 1, NH, NKVH, HD, STRIDE, 0, 0, scratch);
    for (int h = 0; h < NH; h++)
        for (int d = 0; d < HD; d++)
            ck_assert_float_eq(out[h * HD + d], v[h / 2 * HD + d]);
    free(q);
    free(out);
    free(k);
    free(v);
    free(scratch);
    free(want);
}
END_TEST

/* Weights that f16 and bf16 hold exactly (multiples of 1/8 in [-1, 1]), inputs too: every
 * product and partial sum is exact in float, whatever the order of summation. */
enum { HP_IN = 65536, HP_OUT = 80, HP_N = 3 };

static float hp_weight(int o, int i)
{
    return (float)((o * 7 + i * 3) % 17 - 8) / 8.0f;
}

static float hp_input(int r, int i)
{
    return (float)((r * 5 + i) % 9 - 4) / 8.0f;
}

static int sbgemm_calls;

static void counted_sbgemm(int order, int ta, int tb, int m, int n, int k, float alpha,
                           const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                           float *c, int ldc)
{
    sbgemm_calls++;
    sbgemm_by_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

START_TEST(linear_half_precision)
{
    /* f32, f16 and bf16 copies of one matrix give the same, exact products: one row by dot
     * products, several rows unbound (dot products) and on a bound context (blocks of rows
     * converted for cblas_sgemm: n_in = 65536 puts 32 rows in the scratch, so the 80 rows take
     * blocks of 32, 32 and 16). */
    float *w32 = malloc(sizeof(float) * HP_IN * HP_OUT);
    uint16_t *w16 = malloc(sizeof(uint16_t) * HP_IN * HP_OUT);
    uint16_t *wbf = malloc(sizeof(uint16_t) * HP_IN * HP_OUT);
    float *x = malloc(sizeof(float) * HP_N * HP_IN), y[HP_N * HP_OUT], bias[HP_OUT];
    float *row = malloc(sizeof(float) * HP_IN);
    double want[HP_N * HP_OUT];
    for (int o = 0; o < HP_OUT; o++) {
        bias[o] = (float)(o % 5) - 2.0f;
        for (int i = 0; i < HP_IN; i++) {
            float w = hp_weight(o, i);
            w32[(size_t)o * HP_IN + i] = w;
            w16[(size_t)o * HP_IN + i] = mmi_f32_to_f16(w);
            wbf[(size_t)o * HP_IN + i] = mmi_f32_to_bf16(w);
        }
    }
    for (int r = 0; r < HP_N; r++)
        for (int i = 0; i < HP_IN; i++)
            x[(size_t)r * HP_IN + i] = hp_input(r, i);
    for (int r = 0; r < HP_N; r++)
        for (int o = 0; o < HP_OUT; o++) {
            double acc = bias[o];
            for (int i = 0; i < HP_IN; i++)
                acc += (double)hp_weight(o, i) * hp_input(r, i);
            want[r * HP_OUT + o] = acc;
        }
    const mmi_matrix m[3] = {{w32, HP_IN, HP_OUT, MMI_TENSOR_F32},
                             {w16, HP_IN, HP_OUT, MMI_TENSOR_F16},
                             {wbf, HP_IN, HP_OUT, MMI_TENSOR_BF16}};
    mmi_exec exec;
    ck_assert_ok(mmi_exec_init(&exec, 3));
    for (int t = 0; t < 3; t++) {
        mmi_linear(y, x, 1, &m[t], bias);
        ck_all_near(y, want, HP_OUT, 0);
        mmi_linear(y, x, HP_N, &m[t], bias);
        ck_all_near(y, want, HP_N * HP_OUT, 0);
        const mmi_exec *previous = mmi_exec_bind(&exec);
        mmi_linear(y, x, HP_N, &m[t], bias);
        mmi_exec_bind(previous);
        ck_all_near(y, want, HP_N * HP_OUT, 0);
        mmi_matrix_row(&m[t], 77, row);
        for (int i = 0; i < 8; i++)
            ck_assert_float_eq(row[i], hp_weight(77, i));
    }
    /* Products of one input as one job (f16 and bf16, one row) or one by one (with f32): the
     * same exact values, bound and unbound. */
    float y2[3][HP_OUT];
    for (int bind = 0; bind < 2; bind++) {
        const mmi_exec *previous = mmi_exec_bind(bind ? &exec : NULL);
        const mmi_product each[3] = {{y2[0], &m[1], bias}, {y2[1], &m[2], NULL},
                                     {y2[2], &m[0], bias}};
        for (int count = 2; count <= 3; count++) {
            memset(y2, 0, sizeof y2);
            mmi_linear_each(x, 1, each, count);
            ck_all_near(y2[0], want, HP_OUT, 0);
            for (int o = 0; o < HP_OUT; o++)
                ck_assert_float_eq(y2[1][o], (float)(want[o] - bias[o]));
            if (count == 3)
                ck_all_near(y2[2], want, HP_OUT, 0);
        }
        mmi_exec_bind(previous);
    }
    /* bf16 products (MM_OPT_MATMUL_PRECISION): the values are exact in bf16, so the results are
     * exact too, from f32 weights (converted per block), f16 (converted) and bf16 (read where
     * they lie), each in blocks of 32, 32 and 16 rows; through the contract's stand-in, which
     * counts the calls, on any processor. */
    ck_assert_int_eq(mmi_exec_set_precision(&exec, "f64"), MM_ERR_ARG);
    mmi_ops_sbgemm_hook(counted_sbgemm);
    ck_assert_ok(mmi_exec_set_precision(&exec, "bf16"));
    ck_assert_int_eq(exec.bf16, 1);
    for (int t = 0; t < 3; t++) {
        const mmi_exec *previous = mmi_exec_bind(&exec);
        sbgemm_calls = 0;
        mmi_linear(y, x, HP_N, &m[t], bias);
        ck_assert_int_eq(sbgemm_calls, 3);
        mmi_linear(y + HP_OUT, x, 1, &m[t], NULL); /* one row: not a product of rows */
        ck_assert_int_eq(sbgemm_calls, 3);
        mmi_linear(y, x, HP_N, &m[t], bias);
        mmi_exec_bind(previous);
        ck_all_near(y, want, HP_N * HP_OUT, 0);
    }
    mmi_ops_sbgemm_hook(NULL);
    ck_assert_ok(mmi_exec_set_precision(&exec, "f32"));
    ck_assert_int_eq(exec.bf16, 0);
    mmi_exec_free(&exec);
    free(w32);
    free(w16);
    free(wbf);
    free(x);
    free(row);
}
END_TEST

/* Each item of a job counted once; jobs of 1000 items in chunks of 7 (the last one 6). */
typedef struct {
    atomic_int runs[1000];
    atomic_int bad_chunks;
} pool_tally;

static void count_items(void *ctx, size_t begin, size_t end)
{
    pool_tally *t = ctx;
    if (end - begin != 7 && !(begin == 994 && end == 1000))
        atomic_fetch_add(&t->bad_chunks, 1);
    for (size_t i = begin; i < end; i++)
        atomic_fetch_add(&t->runs[i], 1);
}

START_TEST(pool_runs_every_item_once)
{
    /* Many back-to-back jobs (workers still spinning), jobs after a pause (workers asleep) and
     * after parking. */
    mmi_pool *p;
    ck_assert_ok(mmi_pool_create(4, &p));
    ck_assert_int_eq(mmi_pool_size(p), 4);
    static pool_tally t;
    for (int i = 0; i < 3000; i++) {
        mmi_pool_run(p, 1000, 7, count_items, &t);
        if (i % 1000 == 999)
            usleep(20000);
        if (i % 500 == 17)
            mmi_pool_park(p);
    }
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(atomic_load(&t.runs[i]), 3000);
    ck_assert_int_eq(atomic_load(&t.bad_chunks), 0);
    mmi_pool_free(p);
    /* No pool, or a team of one: the caller runs the whole range at once. */
    static pool_tally alone;
    mmi_pool_run(NULL, 7, 7, count_items, &alone);
    ck_assert_int_eq(mmi_pool_size(NULL), 1);
    mmi_pool_free(NULL);
    ck_assert_ok(mmi_pool_create(1, &p));
    ck_assert_int_eq(mmi_pool_size(p), 1);
    mmi_pool_run(p, 7, 7, count_items, &alone);
    mmi_pool_free(p);
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(atomic_load(&alone.runs[i]), 2);
}
END_TEST

START_TEST(results_do_not_depend_on_threads)
{
    /* Each kernel that splits its work over the pool gives the same bits on 1 and 3 threads:
     * ranges start at multiples of 8, so no value changes path through the vector loops. */
    enum { N = 100003, ROWS = 1000, D = 77 };
    unsigned seed = 5;
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    float *up = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++)
        a[i] = 4 * noise(&seed), up[i] = noise(&seed);
    uint16_t *w = malloc(sizeof(uint16_t) * 43 * 2500);
    for (int i = 0; i < 43 * 2500; i++)
        w[i] = mmi_f32_to_f16(noise(&seed));
    const mmi_matrix m = {w, 2500, 43, MMI_TENSOR_F16}; /* 43 rows: groups of 4 and 3 alone */
    float *results[2];
    for (int threads = 1, r = 0; r < 2; threads = 3, r++) {
        mmi_exec exec;
        ck_assert_ok(mmi_exec_init(&exec, threads));
        const mmi_exec *previous = mmi_exec_bind(&exec);
        float *res = results[r] = calloc(6 * N, sizeof(float));
        float *x = res;
        for (int act = MMI_ACT_GELU; act <= MMI_ACT_SILU; act++) {
            memcpy(x, a, sizeof(float) * N);
            mmi_activate((mmi_act)act, x, N);
            x += N / 2; /* keep half of each, overlapping the next */
        }
        memcpy(x, a, sizeof(float) * N);
        mmi_swiglu(x, up, N);
        x += N;
        memcpy(x, a, sizeof(float) * ROWS * D);
        mmi_softmax(x, ROWS, D);
        memcpy(b, a, sizeof(float) * ROWS * D);
        mmi_rmsnorm(x + ROWS * D, b, ROWS, D, up, 1e-5f);
        x += 2 * ROWS * D;
        mmi_linear(x, a, 5, &m, NULL);
        mmi_linear(x + 5 * 43, a, 1, &m, up);
        mmi_exec_bind(previous);
        mmi_exec_free(&exec);
    }
    ck_assert_int_eq(memcmp(results[0], results[1], sizeof(float) * 6 * N), 0);
    free(results[0]);
    free(results[1]);
    free(a);
    free(b);
    free(up);
    free(w);
}
END_TEST

/* Each vector kernel, on its SIMD path and on the portable one, against the definition in
 * double: heads of 8 and tails, the range ends of the exponential, NaN. */
static void check_vector_kernels(void)
{
    enum { N = 203 };
    float x[N], y[N];
    double want[N];
    unsigned seed = 11;
    for (int i = 0; i < N; i++)
        x[i] = 43 * noise(&seed); /* [-86, 86) */
    x[0] = 0, x[1] = -86.3f, x[2] = 89.3f, x[3] = -200, x[4] = -INFINITY, x[5] = 1e-30f;

    /* e^(x - 1), and the sum, where e^(x - 1) is a float; below e^-87.34 the result may be 0
     * (it is < FLT_MIN). */
    double sum = 0;
    for (int i = 0; i < N; i++)
        sum += want[i] = exp((double)x[i] - 1);
    memcpy(y, x, sizeof y);
    float got_sum = mmi_vec_exp_sum(y, N, 1.0f);
    for (int i = 0; i < N; i++)
        ck_assert_msg(fabs(y[i] - want[i]) <= 4e-7 * want[i] + 1.2e-38, "exp(%g - 1) = %.9g, "
                      "expected %.9g", (double)x[i], (double)y[i], want[i]);
    ck_assert_msg(fabs(got_sum - sum) <= 1e-6 * sum, "sum %.9g, expected %.9g", (double)got_sum,
                  sum);
    /* x·σ(a·x + b·x³) for silu, quick-GELU and the tanh GELU's constants. */
    const float ab[3][2] = {{1, 0}, {1.702f, 0}, {1.5957691f, 0.0713548f}};
    for (int k = 0; k < 3; k++) {
        memcpy(y, x, sizeof y);
        mmi_vec_x_sigmoid(y, N, ab[k][0], ab[k][1]);
        for (int i = 5; i < N; i++) { /* x[4] = -inf: the definition is NaN (-inf * 0) */
            double v = x[i], z = ab[k][0] * v + ab[k][1] * v * v * v;
            ck_assert_msg(fabs(y[i] - v / (1 + exp(-z))) <= 1e-6 * fmax(1, fabs(v)),
                          "x sigmoid(%g) = %.9g", v, (double)y[i]);
        }
    }
    memcpy(y, x, sizeof y);
    mmi_vec_swiglu(y, x, N);
    for (int i = 5; i < N; i++) {
        double v = x[i];
        ck_assert_msg(fabs(y[i] - v / (1 + exp(-v)) * v) <= 1e-6 * fmax(1, v * v),
                      "swiglu(%g) = %.9g", v, (double)y[i]);
    }
    float max = -INFINITY;
    for (int i = 0; i < N; i++)
        max = x[i] > max ? x[i] : max;
    ck_assert_float_eq(mmi_vec_max(x, N), max);
    /* NaN goes through the exponential kernels. */
    float nan_row[9] = {NAN, 1, 2, 3, 4, 5, 6, 7, NAN};
    mmi_vec_exp_sum(nan_row, 9, 0.0f);
    ck_assert(isnan(nan_row[0]) && isnan(nan_row[8]));
    float nan_x[9] = {NAN, 1, 2, 3, 4, 5, 6, 7, NAN};
    mmi_vec_x_sigmoid(nan_x, 9, 1.0f, 0.0f);
    ck_assert(isnan(nan_x[0]) && isnan(nan_x[8]));

    /* Dot products and y += a·x against double sums, on finite x. */
    for (int i = 0; i < N; i++)
        x[i] = 10 * noise(&seed);
    uint16_t h[N], bf[N];
    double dot = 0, dot_h = 0, dot_bf = 0, magnitude = 0; /* float rounding scales with it */
    for (int i = 0; i < N; i++) {
        y[i] = noise(&seed);
        magnitude += fabs((double)x[i] * y[i]);
        h[i] = mmi_f32_to_f16(y[i]);
        bf[i] = mmi_f32_to_bf16(y[i]);
        dot += (double)x[i] * y[i];
        dot_h += (double)x[i] * mmi_f16_to_f32(h[i]);
        dot_bf += (double)x[i] * mmi_bf16_to_f32(bf[i]);
    }
    ck_assert(fabs(mmi_vec_dot(y, x, N) - dot) <= 1e-6 * magnitude);
    ck_assert(fabs(mmi_vec_dot_f16(h, x, N) - dot_h) <= 1e-6 * magnitude);
    ck_assert(fabs(mmi_vec_dot_bf16(bf, x, N) - dot_bf) <= 1e-6 * magnitude);
    /* Four rows at once, rows 210 values apart: each as the single-row dot product. */
    enum { STRIDE = 210 };
    static float w4[4 * STRIDE];
    static uint16_t h4[4 * STRIDE], bf4[4 * STRIDE];
    for (int i = 0; i < 4 * STRIDE; i++) {
        w4[i] = noise(&seed);
        h4[i] = mmi_f32_to_f16(w4[i]);
        bf4[i] = mmi_f32_to_bf16(w4[i]);
    }
    float d4[3][4];
    mmi_vec_dot4(w4, STRIDE, x, N, d4[0]);
    mmi_vec_dot4_f16(h4, STRIDE, x, N, d4[1]);
    mmi_vec_dot4_bf16(bf4, STRIDE, x, N, d4[2]);
    for (int r = 0; r < 4; r++) {
        double want4[3] = {0, 0, 0}, mag = 0;
        for (int i = 0; i < N; i++) {
            want4[0] += (double)x[i] * w4[r * STRIDE + i];
            want4[1] += (double)x[i] * mmi_f16_to_f32(h4[r * STRIDE + i]);
            want4[2] += (double)x[i] * mmi_bf16_to_f32(bf4[r * STRIDE + i]);
            mag += fabs((double)x[i] * w4[r * STRIDE + i]);
        }
        for (int k = 0; k < 3; k++)
            ck_assert_msg(fabs(d4[k][r] - want4[k]) <= 1e-6 * mag, "dot4 kind %d row %d: %.9g, "
                          "expected %.9g", k, r, (double)d4[k][r], want4[k]);
    }
    float acc[N];
    for (int i = 0; i < N; i++)
        acc[i] = 1.0f;
    mmi_vec_axpy(acc, 0.5f, x, N);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(acc[i], 1.0f + 0.5f * x[i]);

    /* Every f16 and bf16 bit pattern converts as the scalar conversions do (NaN to NaN). */
    static uint16_t all[65536];
    static float conv[65536];
    for (int i = 0; i < 65536; i++)
        all[i] = (uint16_t)i;
    mmi_vec_f16_to_f32(all, conv, 65536);
    for (int i = 0; i < 65536; i++) {
        float s = mmi_f16_to_f32((uint16_t)i);
        ck_assert_msg(isnan(s) ? isnan(conv[i]) : memcmp(&s, &conv[i], 4) == 0,
                      "f16 0x%04x: %g, expected %g", i, (double)conv[i], (double)s);
    }
    mmi_vec_bf16_to_f32(all, conv, 65536);
    for (int i = 0; i < 65536; i++) {
        float s = mmi_bf16_to_f32((uint16_t)i);
        ck_assert_msg(isnan(s) ? isnan(conv[i]) : memcmp(&s, &conv[i], 4) == 0,
                      "bf16 0x%04x: %g, expected %g", i, (double)conv[i], (double)s);
    }
}

/* The weight-streaming kernels of one level against the portable ones on rows long enough for
 * every loop of the wide variants (4096 + 45 values): the sums differ only by float rounding in
 * another order, bounded by n * 2^-24 * sum |w x| (here 4141 * 6e-8 < 2.5e-4 of the magnitude). */
static void check_against_portable(int level)
{
    enum { N = 4141, STRIDE = 4160 };
    static float x[N], w[4 * STRIDE], got[2][6][4]; /* [portable, level][kernel][row] */
    static uint16_t h[4 * STRIDE], bf[4 * STRIDE];
    unsigned seed = 29;
    for (int i = 0; i < N; i++)
        x[i] = noise(&seed);
    for (int i = 0; i < 4 * STRIDE; i++) {
        w[i] = noise(&seed);
        h[i] = mmi_f32_to_f16(w[i]);
        bf[i] = mmi_f32_to_bf16(w[i]);
    }
    for (int pass = 0; pass < 2; pass++) {
        int want = pass ? level : MMI_VEC_PORTABLE;
        ck_assert_int_eq(mmi_vec_simd_limit(want), want);
        mmi_vec_dot4(w, STRIDE, x, N, got[pass][0]);
        mmi_vec_dot4_f16(h, STRIDE, x, N, got[pass][1]);
        mmi_vec_dot4_bf16(bf, STRIDE, x, N, got[pass][2]);
        for (int r = 0; r < 4; r++) {
            got[pass][3][r] = mmi_vec_dot(w + r * STRIDE, x, N);
            got[pass][4][r] = mmi_vec_dot_f16(h + r * STRIDE, x, N);
            got[pass][5][r] = mmi_vec_dot_bf16(bf + r * STRIDE, x, N);
        }
    }
    for (int r = 0; r < 4; r++) {
        double mag = 0;
        for (int i = 0; i < N; i++)
            mag += fabs((double)x[i] * w[r * STRIDE + i]);
        for (int k = 0; k < 6; k++)
            ck_assert_msg(fabs(got[1][k][r] - got[0][k][r]) <= 2.5e-4 * mag,
                          "level %d kernel %d row %d: %.9g, portable %.9g", level, k, r,
                          (double)got[1][k][r], (double)got[0][k][r]);
    }
}

START_TEST(vector_kernels_every_path)
{
    int available = mmi_vec_simd_limit(MMI_VEC_AVX512);
    for (int level = MMI_VEC_PORTABLE; level <= available; level++) {
        ck_assert_int_eq(mmi_vec_simd_limit(level), level);
        check_vector_kernels();
        check_against_portable(level);
    }
    mmi_vec_simd_limit(MMI_VEC_AVX512);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, linear_with_and_without_bias);
    tcase_add_test(tc, gemm_nt_and_nn_with_strides);
    tcase_add_test(tc, layernorm_rows);
    tcase_add_test(tc, rmsnorm_rows);
    tcase_add_test(tc, activations);
    tcase_add_test(tc, softmax_rows_and_stability);
    tcase_add_test(tc, rope_pairs_and_positions);
    tcase_add_test(tc, attention_hand_values);
    tcase_add_test(tc, attention_matches_definition);
    tcase_add_test(tc, activation_by_name);
    tcase_add_test(tc, attention_strided_fused_rows);
    tcase_add_test(tc, attention_in_blocks_and_by_rows);
    tcase_add_test(tc, linear_half_precision);
    tcase_add_test(tc, vector_kernels_every_path);
    suite_add_tcase(s, tc);
    TCase *threads = tcase_create("threads");
    tcase_add_test(threads, pool_runs_every_item_once);
    tcase_add_test(threads, results_do_not_depend_on_threads);
    suite_add_tcase(s, threads);
    return s;
}

int main(void)
{
    return test_run_suite(ops_suite());
}
