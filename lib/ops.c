/* Numerical kernels (see ops.h). The only file that talks to BLAS. None of them allocates:
 * attention works in the caller's scratch. */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void mmi_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                 int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}

void mmi_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                 int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta,
                c, ldc);
}

void mmi_linear(float *y, const float *x, int n, const mmi_matrix *w, const float *bias)
{
    if (n <= 0)
        return;
    /* Start from the bias (beta = 1) so the product is added to it in one pass. */
    float beta = 0.0f;
    if (bias) {
        for (int i = 0; i < n; i++)
            for (int o = 0; o < w->n_out; o++)
                y[(size_t)i * w->n_out + o] = bias[o];
        beta = 1.0f;
    }
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, w->n_out, w->n_in, 1.0f, w->data, w->n_in, x, 1,
                    beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, w->n_out, w->n_in, 1.0f, x,
                    w->n_in, w->data, w->n_in, beta, y, w->n_out);
}

/* Norm statistics are accumulated in double: the rows can be thousands wide. */
void mmi_layernorm(float *out, const float *x, int n, int d, const float *weight,
                   const float *bias, float eps)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *oi = out + (size_t)i * d;
        double sum = 0.0;
        for (int j = 0; j < d; j++)
            sum += xi[j];
        double mean = sum / d;
        double var = 0.0;
        for (int j = 0; j < d; j++)
            var += (xi[j] - mean) * (xi[j] - mean);
        double inv = 1.0 / sqrt(var / d + eps);
        for (int j = 0; j < d; j++) {
            float v = (float)((xi[j] - mean) * inv);
            oi[j] = v * (weight ? weight[j] : 1.0f) + (bias ? bias[j] : 0.0f);
        }
    }
}

void mmi_rmsnorm(float *out, const float *x, int n, int d, const float *weight, float eps)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *oi = out + (size_t)i * d;
        double ss = 0.0;
        for (int j = 0; j < d; j++)
            ss += (double)xi[j] * xi[j];
        float inv = (float)(1.0 / sqrt(ss / d + eps));
        for (int j = 0; j < d; j++)
            oi[j] = xi[j] * inv * (weight ? weight[j] : 1.0f);
    }
}

void mmi_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void mmi_gelu_tanh(float *x, size_t n)
{
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
    }
}

void mmi_quick_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void mmi_silu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / (1.0f + expf(-x[i]));
}

void mmi_relu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void mmi_swiglu(float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void mmi_add(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

static const char *const act_names[] = {
    [MMI_ACT_GELU] = "gelu", [MMI_ACT_GELU_TANH] = "gelu_tanh",
    [MMI_ACT_QUICK_GELU] = "quick_gelu", [MMI_ACT_RELU] = "relu", [MMI_ACT_SILU] = "silu",
};

int mmi_act_from_name(const char *name, mmi_act *out)
{
    for (size_t i = 0; i < sizeof act_names / sizeof act_names[0]; i++)
        if (strcmp(name, act_names[i]) == 0) {
            *out = (mmi_act)i;
            return 1;
        }
    return 0;
}

const char *mmi_act_name(mmi_act act)
{
    return act_names[act];
}

void mmi_activate(mmi_act act, float *x, size_t n)
{
    switch (act) {
    case MMI_ACT_GELU: mmi_gelu(x, n); break;
    case MMI_ACT_GELU_TANH: mmi_gelu_tanh(x, n); break;
    case MMI_ACT_QUICK_GELU: mmi_quick_gelu(x, n); break;
    case MMI_ACT_RELU: mmi_relu(x, n); break;
    case MMI_ACT_SILU: mmi_silu(x, n); break;
    }
}

void mmi_softmax(float *x, int n, int d)
{
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * d;
        float max = xi[0];
        for (int j = 1; j < d; j++)
            max = xi[j] > max ? xi[j] : max;
        double sum = 0.0;
        for (int j = 0; j < d; j++) {
            xi[j] = expf(xi[j] - max);
            sum += xi[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < d; j++)
            xi[j] *= inv;
    }
}

void mmi_rope(float *x, int n_tokens, int n_heads, int head_dim, int n_rot, const int32_t *pos,
              float base, int neox)
{
    int half = n_rot / 2;
    for (int t = 0; t < n_tokens; t++) {
        for (int i = 0; i < half; i++) {
            /* Angles in double: positions reach 10^5 and more, where float loses the phase. */
            double theta = pos[t] * pow(base, -2.0 * i / n_rot);
            float c = (float)cos(theta), s = (float)sin(theta);
            int a = neox ? i : 2 * i;
            int b = neox ? i + half : 2 * i + 1;
            for (int h = 0; h < n_heads; h++) {
                float *xh = x + ((size_t)t * n_heads + h) * head_dim;
                float x0 = xh[a], x1 = xh[b];
                xh[a] = x0 * c - x1 * s;
                xh[b] = x0 * s + x1 * c;
            }
        }
    }
}

void mmi_attention(float *out, const float *q, const float *k, const float *v, int n_q, int n_kv,
                   int n_head, int n_kv_head, int head_dim, int kv_stride, int causal,
                   int q_pos0, float *scratch)
{
    int stride = n_head * head_dim;
    mmi_attention_strided(out, stride, q, stride, k, v, kv_stride, n_q, n_kv, n_head, n_kv_head,
                          head_dim, causal, q_pos0, scratch);
}

void mmi_attention_strided(float *out, int out_stride, const float *q, int q_stride,
                           const float *k, const float *v, int kv_stride, int n_q, int n_kv,
                           int n_head, int n_kv_head, int head_dim, int causal, int q_pos0,
                           float *scratch)
{
    int group = n_head / n_kv_head;
    float scale = 1.0f / sqrtf((float)head_dim);
    /* With a causal mask no query sees past q_pos0 + n_q - 1: keys beyond may be unwritten
     * cache, so leave them out of both products. */
    if (causal && n_kv > q_pos0 + n_q)
        n_kv = q_pos0 + n_q;
    for (int h = 0; h < n_head; h++) {
        const float *qh = q + (size_t)h * head_dim;
        const float *kh = k + (size_t)(h / group) * head_dim;
        const float *vh = v + (size_t)(h / group) * head_dim;
        /* scores[n_q][n_kv] = scale · Q_h · K_hᵀ */
        mmi_gemm_nt(n_q, n_kv, head_dim, scale, qh, q_stride, kh, kv_stride, 0.0f, scratch, n_kv);
        for (int i = 0; i < n_q; i++) {
            float *row = scratch + (size_t)i * n_kv;
            int visible = n_kv;
            if (causal && q_pos0 + i + 1 < n_kv)
                visible = q_pos0 + i + 1;
            mmi_softmax(row, 1, visible);
            for (int j = visible; j < n_kv; j++)
                row[j] = 0.0f;
        }
        /* out_h[n_q][head_dim] = P · V_h */
        mmi_gemm_nn(n_q, head_dim, n_kv, 1.0f, scratch, n_kv, vh, kv_stride, 0.0f,
                    out + (size_t)h * head_dim, out_stride);
    }
}
