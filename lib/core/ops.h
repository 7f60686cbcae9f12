/* Numerical kernels on f32 row-major matrices. ops.c is the only file that includes cblas.h.
 *
 * Conventions: a matrix "x[n][k]" has n rows of k contiguous floats. Weights are stored as in
 * GGUF/HF: W[out][in] (ggml ne = [in, out]), so a linear layer is y = x · Wᵀ + b. */
#ifndef MMI_OPS_H
#define MMI_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pool.h"

/* Where the kernels of one computation run: libmm's thread pool (NULL: the calling thread
 * alone) and a scratch block in which f16/bf16 weights are converted, MMI_EXEC_SCRATCH floats
 * at a time, for cblas_sgemm. A session, or an encoding call, makes one and binds it to its
 * thread while it computes (the kernels take it from there rather than from every caller).
 * Unbound, the kernels run serially and multiply f16/bf16 weights with the dot kernel. */
typedef struct {
    mmi_pool *pool;
    float *scratch;
    int bf16; /* products of several rows in bf16 (cblas_sbgemm), f32 accumulation */
} mmi_exec;

#define MMI_EXEC_SCRATCH ((size_t)1 << 21) /* 8 MiB: a block of rows of the widest matrix */

/* A pool of n_threads (0 = one per CPU) and the scratch; MM_ERR_NOMEM. */
mm_status mmi_exec_init(mmi_exec *e, int n_threads);
void mmi_exec_free(mmi_exec *e);
/* MM_OPT_MATMUL_PRECISION: "f32" (NULL: the default) or "bf16", which takes effect where the
 * processor multiplies bf16 (AVX512_BF16; elsewhere the products stay f32). MM_ERR_ARG for
 * another value. */
mm_status mmi_exec_set_precision(mmi_exec *e, const char *precision);
/* cblas_sbgemm's signature (OpenBLAS: enum values as int, bf16 as uint16_t). */
typedef void (*mmi_sbgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k,
                              float alpha, const uint16_t *a, int lda, const uint16_t *b, int ldb,
                              float beta, float *c, int ldc);
/* Test hook: run bf16 products through fn (NULL: OpenBLAS's, if it has one), on any processor. */
void mmi_ops_sbgemm_hook(mmi_sbgemm_fn fn);
/* Bind e (or NULL) to the calling thread; returns the binding it replaces, to restore. */
const mmi_exec *mmi_exec_bind(const mmi_exec *e);

/* A weight matrix as the loaders hand it to the kernels: the mapped file's own bytes, of any
 * type quant.h reads (F32 also where a loader converted a tensor once). Row r starts at
 * data + r * mmi_type_row_bytes(type, n_in). */
typedef struct {
    const void *data;     /* [n_out][n_in] values of `type` */
    int n_in, n_out;
    mmi_tensor_type type;
} mmi_matrix;

/* Output rows [first, first + n_out) of w as a matrix of their own: a view of the same bytes,
 * never a copy (how fused tensors such as Phi-3's attn_qkv are split at load). */
mmi_matrix mmi_matrix_rows(const mmi_matrix *w, int first, int n_out);

/* Row r of the matrix as f32 into out[n_in] (embedding lookup). */
void mmi_matrix_row(const mmi_matrix *w, int r, float *out);

/* y[n][out] = x[n][in] · Wᵀ (+ bias[out] if bias != NULL). F32 weights: n > 1 through
 * cblas_sgemm, n == 1 through cblas_sgemv. F16/BF16 weights: n > 1 converted a block of rows
 * at a time into the bound scratch, then cblas_sgemm on the block; n == 1 the vectorised dot
 * kernel, rows spread over the pool, each weight read once. Quantized weights: up to
 * MMI_QUANT_DOT_ROWS input rows (or unbound) quantized to the type's dot partner and
 * multiplied by quant.h's integer dot kernels on the pool; more rows dequantized a block at a
 * time for cblas_sgemm as F16. */
#define MMI_QUANT_DOT_ROWS 4
void mmi_linear(float *y, const float *x, int n, const mmi_matrix *w, const float *bias);

/* Several products of one input (a block's q, k, v; gate and up): as mmi_linear each, but
 * where all take the dot kernel (f16/bf16 weights, one row) their rows are one job on the pool,
 * so the threads stream from one matrix into the next without meeting in between. */
typedef struct {
    float *y;
    const mmi_matrix *w;
    const float *bias;
} mmi_product;
void mmi_linear_each(const float *x, int n, const mmi_product *p, int count);
/* C[m][n] = alpha · A[m][k] · B[n][k]ᵀ + beta · C, with leading dimensions lda, ldb, ldc. */
void mmi_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                 int ldb, float beta, float *c, int ldc);
/* C[m][n] = alpha · A[m][k] · B[k][n] + beta · C. */
void mmi_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                 int ldb, float beta, float *c, int ldc);

/* Row-wise normalisation of x[n][d] in place (out may equal x). */
void mmi_layernorm(float *out, const float *x, int n, int d, const float *weight,
                   const float *bias, float eps);
void mmi_rmsnorm(float *out, const float *x, int n, int d, const float *weight, float eps);

/* Element-wise activations in place on n values. */
void mmi_gelu(float *x, size_t n);       /* exact, erf */
void mmi_gelu_tanh(float *x, size_t n);  /* tanh approximation */
void mmi_quick_gelu(float *x, size_t n); /* x · sigmoid(1.702 x) */
void mmi_silu(float *x, size_t n);
void mmi_relu(float *x, size_t n);
/* gate[i] = silu(gate[i]) * up[i] (SwiGLU). */
void mmi_swiglu(float *gate, const float *up, size_t n);
void mmi_add(float *x, const float *y, size_t n); /* x += y */

/* An activation chosen by a model file (`*.hidden_act` names of docs/model-format.md). */
typedef enum {
    MMI_ACT_GELU,       /* "gelu" */
    MMI_ACT_GELU_TANH,  /* "gelu_tanh" */
    MMI_ACT_QUICK_GELU, /* "quick_gelu" */
    MMI_ACT_RELU,       /* "relu" */
    MMI_ACT_SILU        /* "silu" */
} mmi_act;
/* The activation a name stands for; 0 if the name is unknown. */
int mmi_act_from_name(const char *name, mmi_act *out);
const char *mmi_act_name(mmi_act act);
void mmi_activate(mmi_act act, float *x, size_t n);

/* Softmax of each row of x[n][d] in place, numerically stable. */
void mmi_softmax(float *x, int n, int d);

/* RoPE in place on x[n_tokens][n_heads][head_dim] at positions pos[t], rotating the first
 * n_rot dims of each head. `neox` = 0: adjacent pairs (2i, 2i+1) — llama.cpp's ordering for
 * the llama architecture (Q/K weights permuted at conversion); neox = 1: pairs (i, i+n_rot/2) —
 * HF's rotate_half. theta_i = pos · base^(-2i/n_rot). */
void mmi_rope(float *x, int n_tokens, int n_heads, int head_dim, int n_rot, const int32_t *pos,
              float base, int neox);

/* The same with positions of several numbers (M-RoPE): pos[n_tokens][n_sections], and pair i
 * of each head takes its angle from the number of the section it falls in — pairs
 * 0 .. sections[0]-1 from pos[t][0], the next sections[1] from pos[t][1], and so on (the
 * sections add up to n_rot/2). n_sections = 0: pos[n_tokens], as mmi_rope. */
void mmi_rope_sections(float *x, int n_tokens, int n_heads, int head_dim, int n_rot,
                       const int32_t *pos, float base, int neox, int n_sections,
                       const int *sections);

/* A ViT's 2-D RoPE (Qwen2-VL's vision tower) on rows x[n_tokens] of `stride` floats, each
 * n_heads heads of head_dim (a multiple of 4): pairs (i, i + head_dim/2) as rotate_half;
 * the first head_dim/4 pairs turn by pos[t][0] (the patch's row), the rest by pos[t][1] (its
 * column), pair k of each half at the angle pos · base^(-k / (head_dim/4)). */
void mmi_rope_2d(float *x, size_t stride, int n_tokens, int n_heads, int head_dim,
                 const int32_t *pos, float base);

/* Multi-head attention with grouped KV heads.
 *   q[n_q][n_head*head_dim], k and v: [n_kv][n_kv_head*head_dim] with row strides kv_stride
 *   (floats), out[n_q][n_head*head_dim]. Query head h uses KV head h / (n_head/n_kv_head).
 *   causal != 0: query i (at absolute position q_pos0 + i) sees keys 0 .. q_pos0 + i.
 *   scratch: at least n_q * n_kv floats per call. Score scale is 1/sqrt(head_dim).
 * Per head, blocks of query rows: scores = Q·Kᵀ (cblas_sgemm, only the keys a causal block
 * sees), softmax of the block's rows on the pool, P·V (cblas_sgemm). One query row (a decoded
 * token) takes the heads in parallel on the pool with single-row products instead. */
void mmi_attention(float *out, const float *q, const float *k, const float *v, int n_q, int n_kv,
                   int n_head, int n_kv_head, int head_dim, int kv_stride, int causal,
                   int q_pos0, float *scratch);
/* Causal attention with a sliding window: the query at position p sees keys
 * p - window + 1 .. p only (window 0: every earlier key, as mmi_attention with causal = 1). */
void mmi_attention_window(float *out, const float *q, const float *k, const float *v, int n_q,
                          int n_kv, int n_head, int n_kv_head, int head_dim, int kv_stride,
                          int q_pos0, int window, float *scratch);
/* The same with explicit row strides (floats) for q and out, e.g. q inside a fused QKV row. */
void mmi_attention_strided(float *out, int out_stride, const float *q, int q_stride,
                           const float *k, const float *v, int kv_stride, int n_q, int n_kv,
                           int n_head, int n_kv_head, int head_dim, int causal, int q_pos0,
                           float *scratch);

#endif
