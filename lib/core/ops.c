/* Numerical kernels (see ops.h). The only file that talks to BLAS. None of them allocates:
 * attention works in the caller's scratch, f16/bf16 products in the bound execution context's.
 *
 * Threads: products of more than one row run on OpenBLAS's threads (cblas_sgemm); everything
 * else libmm parallelises itself on the pool of the execution context bound to the calling
 * thread, cutting rows or elements into chunks. The two never run at once: a BLAS call returns
 * before the pool starts the next step, and the pool's idle workers are parked before each
 * BLAS call. */
#include "ops.h"

#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "alloc.h"
#include "status.h"
#include "quant.h"
#include "vec.h"

/* ---- execution context ---- */

static _Thread_local const mmi_exec *bound;

mm_status mmi_exec_init(mmi_exec *e, int n_threads)
{
    *e = (mmi_exec){0};
    e->scratch = mmi_array(MMI_EXEC_SCRATCH, sizeof(float));
    if (!e->scratch)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu MiB of compute scratch",
                        MMI_EXEC_SCRATCH * sizeof(float) >> 20);
    mm_status st = mmi_pool_create(n_threads, &e->pool);
    if (st != MM_OK)
        mmi_exec_free(e);
    return st;
}

void mmi_exec_free(mmi_exec *e)
{
    mmi_pool_free(e->pool);
    mmi_free(e->scratch);
    *e = (mmi_exec){0};
}

/* OpenBLAS's bf16 GEMM, looked up at run time: builds without BUILD_BFLOAT16 (Debian's 0.3.21
 * among them) have none, and then bf16 precision stays f32. */
static _Atomic(mmi_sbgemm_fn) sbgemm_hook;

static mmi_sbgemm_fn sbgemm(void)
{
    static _Atomic(mmi_sbgemm_fn) found;
    static atomic_int looked;
    mmi_sbgemm_fn hook = atomic_load(&sbgemm_hook);
    if (hook)
        return hook;
    if (!atomic_load(&looked)) {
        void *symbol = dlsym(RTLD_DEFAULT, "cblas_sbgemm");
        mmi_sbgemm_fn fn;
        memcpy(&fn, &symbol, sizeof fn); /* ISO C has no object-to-function pointer cast */
        atomic_store(&found, fn);
        atomic_store(&looked, 1);
    }
    return atomic_load(&found);
}

void mmi_ops_sbgemm_hook(mmi_sbgemm_fn fn)
{
    atomic_store(&sbgemm_hook, fn);
}

mm_status mmi_exec_set_precision(mmi_exec *e, const char *precision)
{
    if (precision && strcmp(precision, "f32") != 0 && strcmp(precision, "bf16") != 0)
        return mmi_fail(MM_ERR_ARG, "matmul_precision \"%s\" is not \"f32\" or \"bf16\"",
                        precision);
    e->bf16 = precision && strcmp(precision, "bf16") == 0 && sbgemm() &&
              (atomic_load(&sbgemm_hook) || mmi_vec_has_bf16_products());
    return MM_OK;
}

const mmi_exec *mmi_exec_bind(const mmi_exec *e)
{
    const mmi_exec *previous = bound;
    bound = e;
    return previous;
}

/* ---- splitting work over the pool ---- */

/* The least work, in values, worth a chunk of its own: waking the team costs a few
 * microseconds, as much as a step this size. */
#define GRAIN_VALUES 16384

/* fn over [0, n) on the bound pool, in chunks of at least `grain` items and about 8 per thread
 * (threads that lose their core to another process leave their share to the others); on this
 * thread alone when n < 2 grains. Chunks start at multiples of 8, so that every value takes the
 * same path through the vector loops (8 at a time, or the scalar tail) whatever the thread
 * count: results do not depend on it. */
static void parallel_for(size_t n, size_t grain, mmi_pool_fn fn, void *ctx)
{
    mmi_pool *pool = bound ? bound->pool : NULL;
    size_t threads = (size_t)mmi_pool_size(pool);
    if (threads == 1 || n < 2 * grain) {
        if (n)
            fn(ctx, 0, n);
        return;
    }
    size_t chunk = (n + 8 * threads - 1) / (8 * threads);
    chunk = ((chunk > grain ? chunk : grain) + 7) & ~(size_t)7;
    mmi_pool_run(pool, n, chunk, fn, ctx);
}

/* Rows of width d that make a grain. */
static size_t grain_rows(size_t d)
{
    return GRAIN_VALUES / (d ? d : 1) + 1;
}

/* ---- matrix products ---- */

/* Before each BLAS call: the pool's idle workers sleep, leaving the cores to OpenBLAS. */
static void blas_begins(void)
{
    if (bound)
        mmi_pool_park(bound->pool);
}

void mmi_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                 int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    blas_begins();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}

void mmi_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                 int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    blas_begins();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta,
                c, ldc);
}

/* Row r of w's data. */
static const void *row_data(const mmi_matrix *w, size_t r)
{
    return (const uint8_t *)w->data + r * mmi_type_row_bytes(w->type, (size_t)w->n_in);
}

/* The float storage types multiply f32 activations directly, with vec.c's kernels; the
 * quantized types go through quant.c's table instead (activations quantized first). */
static float dot_f32(const void *w, const float *x, size_t n) { return mmi_vec_dot(w, x, n); }
static float dot_f16(const void *w, const float *x, size_t n) { return mmi_vec_dot_f16(w, x, n); }
static float dot_bf16(const void *w, const float *x, size_t n) { return mmi_vec_dot_bf16(w, x, n); }
static void dot4_f32(const void *w, size_t stride, const float *x, size_t n, float out[4])
{
    mmi_vec_dot4(w, stride, x, n, out);
}
static void dot4_f16(const void *w, size_t stride, const float *x, size_t n, float out[4])
{
    mmi_vec_dot4_f16(w, stride, x, n, out);
}
static void dot4_bf16(const void *w, size_t stride, const float *x, size_t n, float out[4])
{
    mmi_vec_dot4_bf16(w, stride, x, n, out);
}
static void f16_to_f32(const void *w, float *out, size_t n) { mmi_vec_f16_to_f32(w, out, n); }
static void bf16_to_f32(const void *w, float *out, size_t n) { mmi_vec_bf16_to_f32(w, out, n); }

static const struct {
    float (*dot)(const void *w, const float *x, size_t n);
    void (*dot4)(const void *w, size_t stride, const float *x, size_t n, float out[4]);
    void (*to_f32)(const void *w, float *out, size_t n);
} float_kernels[MMI_TENSOR_COUNT] = {
    [MMI_TENSOR_F32] = {dot_f32, dot4_f32, NULL},
    [MMI_TENSOR_F16] = {dot_f16, dot4_f16, f16_to_f32},
    [MMI_TENSOR_BF16] = {dot_bf16, dot4_bf16, bf16_to_f32},
};

static void row_to_f32(const mmi_matrix *w, size_t r, float *out)
{
    void (*convert)(const void *, float *, size_t) = float_kernels[w->type].to_f32;
    (convert ? convert : mmi_type(w->type)->to_f32)(row_data(w, r), out, (size_t)w->n_in);
}

static float row_dot(const mmi_matrix *w, size_t r, const float *x)
{
    return float_kernels[w->type].dot(row_data(w, r), x, (size_t)w->n_in);
}

/* Rows r .. r+3 dotted with x, read together (see mmi_vec_dot4). */
static void rows_dot4(const mmi_matrix *w, size_t r, const float *x, float out[4])
{
    float_kernels[w->type].dot4(row_data(w, r), (size_t)w->n_in, x, (size_t)w->n_in, out);
}

mmi_matrix mmi_matrix_rows(const mmi_matrix *w, int first, int n_out)
{
    mmi_matrix view = *w;
    view.data = row_data(w, (size_t)first);
    view.n_out = n_out;
    return view;
}

void mmi_matrix_row(const mmi_matrix *w, int r, float *out)
{
    row_to_f32(w, (size_t)r, out);
}

typedef struct {
    float *y;
    const float *x;
    int n;
    const mmi_matrix *w;
    const float *bias;
    float *block; /* converted rows, for block_range */
    int first;    /* first output row of the block */
} linear_job;

/* Output rows [begin, end) of every input row by dot products, four weight rows at a time:
 * each is read once for all n input rows. (Chunks start at multiples of 8, so the rows go in
 * the same groups of four whatever the thread count.) */
static void dot_range(void *ctx, size_t begin, size_t end)
{
    const linear_job *j = ctx;
    size_t n_in = (size_t)j->w->n_in, n_out = (size_t)j->w->n_out;
    size_t o = begin;
    for (; o + 4 <= end; o += 4)
        for (int i = 0; i < j->n; i++) {
            float d[4];
            rows_dot4(j->w, o, j->x + i * n_in, d);
            for (int r = 0; r < 4; r++)
                j->y[i * n_out + o + r] = d[r] + (j->bias ? j->bias[o + r] : 0);
        }
    for (; o < end; o++)
        for (int i = 0; i < j->n; i++)
            j->y[i * n_out + o] = row_dot(j->w, o, j->x + i * n_in) + (j->bias ? j->bias[o] : 0);
}

static void block_range(void *ctx, size_t begin, size_t end)
{
    const linear_job *j = ctx;
    for (size_t r = begin; r < end; r++)
        row_to_f32(j->w, (size_t)j->first + r, j->block + r * (size_t)j->w->n_in);
}

/* Quantized weights, few input rows: the activations quantized to the type's dot partner once,
 * then integer dot products, each weight row read once for all input rows. */
typedef struct {
    float *y;
    int n, n_out;
    const mmi_matrix *w;
    mmi_dot_fn dot;
    const uint8_t *xq;   /* n rows of quantized activations, xq_stride bytes apart */
    size_t xq_stride;
    size_t first, len;   /* the columns of this pass */
} quant_job;

static void quant_range(void *ctx, size_t begin, size_t end)
{
    const quant_job *j = ctx;
    size_t skip = mmi_type_row_bytes(j->w->type, j->first);
    for (size_t o = begin; o < end; o++) {
        const uint8_t *row = (const uint8_t *)row_data(j->w, o) + skip;
        for (int i = 0; i < j->n; i++) {
            float *yi = j->y + (size_t)i * j->n_out + o;
            *yi = (j->first ? *yi : 0.0f) + j->dot(row, j->xq + i * j->xq_stride, j->len);
        }
    }
}

/* Columns per pass when there is no scratch to quantize whole rows into: a multiple of every
 * block size; its Q8_K form (the widest per value) fits the stack buffer. */
#define QUANT_CHUNK 4096

static void linear_quantized(float *y, const float *x, int n, const mmi_matrix *w,
                             const float *bias)
{
    const mmi_type_traits *partner = mmi_type(mmi_type(w->type)->dot_partner);
    size_t n_in = (size_t)w->n_in, n_out = (size_t)w->n_out;
    size_t xq_row = mmi_type_row_bytes(mmi_type(w->type)->dot_partner, n_in);
    quant_job j = {y, n, w->n_out, w, mmi_quant_kernels()->dot[w->type], NULL, xq_row, 0, n_in};
    if (bound && (size_t)n * xq_row <= MMI_EXEC_SCRATCH * sizeof(float)) {
        uint8_t *xq = (uint8_t *)bound->scratch;
        for (int i = 0; i < n; i++)
            partner->from_f32(x + i * n_in, xq + i * xq_row, n_in);
        j.xq = xq;
        parallel_for(n_out, grain_rows((size_t)n * n_in), quant_range, &j);
    } else { /* one input row, QUANT_CHUNK columns at a time */
        uint8_t xq[QUANT_CHUNK / 256 * 292];
        j.n = 1;
        j.xq = xq;
        for (int i = 0; i < n; i++) {
            j.y = y + i * n_out;
            for (j.first = 0; j.first < n_in; j.first += j.len) {
                j.len = n_in - j.first < QUANT_CHUNK ? n_in - j.first : QUANT_CHUNK;
                partner->from_f32(x + i * n_in + j.first, xq, j.len);
                parallel_for(n_out, grain_rows(j.len), quant_range, &j);
            }
        }
    }
    if (bias)
        for (int i = 0; i < n; i++)
            mmi_add(y + i * n_out, bias, n_out);
}

/* ---- bf16 products ---- */

typedef struct {
    const void *src;
    uint16_t *dst;
    size_t width;
    mmi_tensor_type type;
} bf16_job;

static void to_bf16_range(void *ctx, size_t begin, size_t end)
{
    const bf16_job *j = ctx;
    size_t from = begin * j->width, n = (end - begin) * j->width;
    if (j->type == MMI_TENSOR_F16)
        mmi_vec_f16_to_bf16((const uint16_t *)j->src + from, j->dst + from, n);
    else
        mmi_vec_f32_to_bf16((const float *)j->src + from, j->dst + from, n);
}

/* rows x width values of an f32 or f16 matrix to bf16, on the pool. */
static void rows_to_bf16(const void *src, mmi_tensor_type type, size_t rows, size_t width,
                         uint16_t *dst)
{
    bf16_job j = {src, dst, width, type};
    parallel_for(rows, grain_rows(width), to_bf16_range, &j);
}

/* y (n rows) = beta y + x Wᵀ with cblas_sbgemm: the activations in batches of rows and the
 * weights in blocks of rows, each converted to bf16 into one half of the scratch (bf16 weights
 * are used where they lie). false when a row does not fit the scratch: the caller goes on in f32. */
static int linear_bf16(float *y, const float *x, int n, const mmi_matrix *w, float beta)
{
    size_t n_in = (size_t)w->n_in, n_out = (size_t)w->n_out;
    size_t half = MMI_EXEC_SCRATCH; /* uint16 values in each half of the scratch */
    size_t x_rows = half / n_in, w_rows = half / n_in;
    if (w_rows < 16 || (w->type != MMI_TENSOR_F32 && w->type != MMI_TENSOR_F16 &&
                        w->type != MMI_TENSOR_BF16))
        return 0; /* quantized types: converted to f32 blocks */
    uint16_t *xb = (uint16_t *)bound->scratch, *wb = xb + half;
    for (size_t i0 = 0; i0 < (size_t)n; i0 += x_rows) {
        size_t rows_x = (size_t)n - i0 < x_rows ? (size_t)n - i0 : x_rows;
        rows_to_bf16(x + i0 * n_in, MMI_TENSOR_F32, rows_x, n_in, xb);
        for (size_t o = 0; o < n_out; o += w_rows) {
            size_t rows = n_out - o < w_rows ? n_out - o : w_rows;
            const uint16_t *block = wb;
            if (w->type == MMI_TENSOR_BF16)
                block = (const uint16_t *)row_data(w, o);
            else
                rows_to_bf16(row_data(w, o), w->type, rows, n_in, wb);
            blas_begins();
            sbgemm()(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows_x, (int)rows, (int)n_in,
                     1.0f, xb, (int)n_in, block, (int)n_in, beta, y + i0 * n_out + o, (int)n_out);
        }
    }
    return 1;
}

/* The dot kernel's case of mmi_linear: one row, or no scratch to convert blocks in. */
static int takes_dot_path(const mmi_matrix *w, int n)
{
    int block_rows = (int)(MMI_EXEC_SCRATCH / (size_t)w->n_in);
    return (w->type == MMI_TENSOR_F16 || w->type == MMI_TENSOR_BF16) &&
           (n == 1 || !bound || block_rows < 16);
}

void mmi_linear(float *y, const float *x, int n, const mmi_matrix *w, const float *bias)
{
    if (n <= 0)
        return;
    linear_job j = {y, x, n, w, bias, NULL, 0};
    int n_in = w->n_in, n_out = w->n_out;
    /* Half-precision weights in blocks of rows, as many as the scratch holds (at least 16, so
     * that each cblas_sgemm is worth its call); otherwise row by row. */
    int block_rows = (int)(MMI_EXEC_SCRATCH / (size_t)n_in);
    if (mmi_type(w->type)->dot_partner != MMI_TENSOR_F32 &&
        (n <= MMI_QUANT_DOT_ROWS || !bound || block_rows < 16)) {
        linear_quantized(y, x, n, w, bias);
        return;
    }
    if (takes_dot_path(w, n)) {
        parallel_for((size_t)n_out, grain_rows((size_t)n * n_in), dot_range, &j);
        return;
    }
    /* Start from the bias (beta = 1) so the product is added to it in one pass. */
    float beta = 0.0f;
    if (bias) {
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * n_out, bias, (size_t)n_out * sizeof(float));
        beta = 1.0f;
    }
    if (n > 1 && bound && bound->bf16 && linear_bf16(y, x, n, w, beta))
        return;
    if (w->type == MMI_TENSOR_F32) {
        blas_begins();
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f, w->data, n_in, x, 1,
                        beta, y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n_out, n_in, 1.0f, x, n_in,
                        w->data, n_in, beta, y, n_out);
        return;
    }
    j.block = bound->scratch;
    for (j.first = 0; j.first < n_out; j.first += block_rows) {
        int rows = n_out - j.first < block_rows ? n_out - j.first : block_rows;
        parallel_for((size_t)rows, grain_rows((size_t)n_in), block_range, &j);
        blas_begins();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, n_in, 1.0f, x, n_in,
                    j.block, n_in, beta, y + j.first, n_out);
    }
}

/* The products of mmi_linear_each, their rows end to end. */
#define MAX_PRODUCTS 4

typedef struct {
    linear_job part[MAX_PRODUCTS];
    size_t first[MAX_PRODUCTS + 1]; /* part i holds rows [first[i], first[i + 1]) */
    int count;
} each_job;

static void each_range(void *ctx, size_t begin, size_t end)
{
    const each_job *j = ctx;
    for (int i = 0; i < j->count && begin < end; i++) {
        if (begin >= j->first[i + 1])
            continue;
        size_t stop = end < j->first[i + 1] ? end : j->first[i + 1];
        dot_range((void *)&j->part[i], begin - j->first[i], stop - j->first[i]);
        begin = stop;
    }
}

void mmi_linear_each(const float *x, int n, const mmi_product *p, int count)
{
    /* Parts of whole groups of 8 rows: chunks start at multiples of 8, so each part's rows go
     * in the same groups of four whatever the chunking (results independent of threads). */
    int fuse = n > 0 && count <= MAX_PRODUCTS;
    for (int i = 0; fuse && i < count; i++)
        fuse = takes_dot_path(p[i].w, n) && p[i].w->n_out % 8 == 0 && p[i].w->n_in == p[0].w->n_in;
    if (!fuse) {
        for (int i = 0; i < count; i++)
            mmi_linear(p[i].y, x, n, p[i].w, p[i].bias);
        return;
    }
    each_job j = {.count = count};
    for (int i = 0; i < count; i++) {
        j.part[i] = (linear_job){p[i].y, x, n, p[i].w, p[i].bias, NULL, 0};
        j.first[i + 1] = j.first[i] + (size_t)p[i].w->n_out;
    }
    parallel_for(j.first[count], grain_rows((size_t)n * p[0].w->n_in), each_range, &j);
}

/* ---- norms ---- */

typedef struct {
    float *out;
    const float *x;
    int d;
    const float *weight, *bias;
    float eps;
} norm_job;

/* Norm statistics are accumulated in double: the rows can be thousands wide. */
static void layernorm_range(void *ctx, size_t begin, size_t end)
{
    const norm_job *j = ctx;
    int d = j->d;
    for (size_t i = begin; i < end; i++) {
        const float *xi = j->x + i * d;
        float *oi = j->out + i * d;
        double sum = 0.0;
        for (int c = 0; c < d; c++)
            sum += xi[c];
        double mean = sum / d;
        double var = 0.0;
        for (int c = 0; c < d; c++)
            var += (xi[c] - mean) * (xi[c] - mean);
        double inv = 1.0 / sqrt(var / d + j->eps);
        for (int c = 0; c < d; c++) {
            float v = (float)((xi[c] - mean) * inv);
            oi[c] = v * (j->weight ? j->weight[c] : 1.0f) + (j->bias ? j->bias[c] : 0.0f);
        }
    }
}

static void rmsnorm_range(void *ctx, size_t begin, size_t end)
{
    const norm_job *j = ctx;
    int d = j->d;
    for (size_t i = begin; i < end; i++) {
        const float *xi = j->x + i * d;
        float *oi = j->out + i * d;
        double ss = 0.0;
        for (int c = 0; c < d; c++)
            ss += (double)xi[c] * xi[c];
        float inv = (float)(1.0 / sqrt(ss / d + j->eps));
        for (int c = 0; c < d; c++)
            oi[c] = xi[c] * inv * (j->weight ? j->weight[c] : 1.0f);
    }
}

void mmi_layernorm(float *out, const float *x, int n, int d, const float *weight,
                   const float *bias, float eps)
{
    norm_job j = {out, x, d, weight, bias, eps};
    parallel_for((size_t)n, grain_rows((size_t)d), layernorm_range, &j);
}

void mmi_rmsnorm(float *out, const float *x, int n, int d, const float *weight, float eps)
{
    norm_job j = {out, x, d, weight, NULL, eps};
    parallel_for((size_t)n, grain_rows((size_t)d), rmsnorm_range, &j);
}

/* ---- element-wise ---- */

typedef struct {
    mmi_act act;
    float *x;
    const float *y;
} elementwise_job;

static void activate_range(void *ctx, size_t begin, size_t end)
{
    const elementwise_job *j = ctx;
    float *x = j->x + begin;
    size_t n = end - begin;
    switch (j->act) {
    case MMI_ACT_GELU:
        for (size_t i = 0; i < n; i++)
            x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
        break;
    case MMI_ACT_GELU_TANH: {
        /* 0.5 x (1 + tanh(y)) = x sigmoid(2y), y = sqrt(2/pi) (x + 0.044715 x^3) */
        const float c = 2.0f * 0.7978845608028654f;
        mmi_vec_x_sigmoid(x, n, c, c * 0.044715f);
        break;
    }
    case MMI_ACT_QUICK_GELU: mmi_vec_x_sigmoid(x, n, 1.702f, 0.0f); break;
    case MMI_ACT_SILU: mmi_vec_x_sigmoid(x, n, 1.0f, 0.0f); break;
    case MMI_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    }
}

void mmi_activate(mmi_act act, float *x, size_t n)
{
    elementwise_job j = {act, x, NULL};
    parallel_for(n, GRAIN_VALUES, activate_range, &j);
}

void mmi_gelu(float *x, size_t n)
{
    mmi_activate(MMI_ACT_GELU, x, n);
}

void mmi_gelu_tanh(float *x, size_t n)
{
    mmi_activate(MMI_ACT_GELU_TANH, x, n);
}

void mmi_quick_gelu(float *x, size_t n)
{
    mmi_activate(MMI_ACT_QUICK_GELU, x, n);
}

void mmi_silu(float *x, size_t n)
{
    mmi_activate(MMI_ACT_SILU, x, n);
}

void mmi_relu(float *x, size_t n)
{
    mmi_activate(MMI_ACT_RELU, x, n);
}

static void swiglu_range(void *ctx, size_t begin, size_t end)
{
    const elementwise_job *j = ctx;
    mmi_vec_swiglu(j->x + begin, j->y + begin, end - begin);
}

void mmi_swiglu(float *gate, const float *up, size_t n)
{
    elementwise_job j = {MMI_ACT_SILU, gate, up};
    parallel_for(n, GRAIN_VALUES, swiglu_range, &j);
}

static void add_range(void *ctx, size_t begin, size_t end)
{
    const elementwise_job *j = ctx;
    for (size_t i = begin; i < end; i++)
        j->x[i] += j->y[i];
}

void mmi_add(float *x, const float *y, size_t n)
{
    elementwise_job j = {MMI_ACT_RELU, x, y};
    parallel_for(n, GRAIN_VALUES, add_range, &j);
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

/* ---- softmax ---- */

static void softmax_row(float *x, int d)
{
    float max = mmi_vec_max(x, (size_t)d);
    float sum = mmi_vec_exp_sum(x, (size_t)d, max);
    mmi_vec_scale(x, (size_t)d, 1.0f / sum);
}

typedef struct {
    float *x;
    int d;
} softmax_job;

static void softmax_range(void *ctx, size_t begin, size_t end)
{
    const softmax_job *j = ctx;
    for (size_t i = begin; i < end; i++)
        softmax_row(j->x + i * j->d, j->d);
}

void mmi_softmax(float *x, int n, int d)
{
    softmax_job j = {x, d};
    parallel_for((size_t)n, grain_rows((size_t)d), softmax_range, &j);
}

/* ---- RoPE ---- */

typedef struct {
    float *x;
    int n_heads, head_dim, n_rot;
    const int32_t *pos;
    int n_sections;      /* 0: pos[t]; else pos[t][j] for the pairs of section j (M-RoPE) */
    const int *sections;
    float base;
    int neox;
    size_t stride;     /* floats from one token's row to the next */
    int section_freqs; /* each section its own frequencies base^(-i/size) (ViT 2-D RoPE) */
} rope_job;

static void rope_range(void *ctx, size_t begin, size_t end)
{
    const rope_job *j = ctx;
    int half = j->n_rot / 2;
    for (size_t t = begin; t < end; t++) {
        for (int i = 0, section = 0, section_end = j->n_sections ? j->sections[0] : half;
             i < half; i++) {
            while (i >= section_end && section + 1 < j->n_sections)
                section_end += j->sections[++section];
            int32_t p = j->n_sections ? j->pos[t * (size_t)j->n_sections + section] : j->pos[t];
            /* Angles in double: positions reach 10^5 and more, where float loses the phase. */
            double theta = p * pow(j->base, -2.0 * i / j->n_rot);
            if (j->section_freqs) {
                int size = j->sections[section], first = section_end - size;
                theta = p * pow(j->base, -(double)(i - first) / size);
            }
            float c = (float)cos(theta), s = (float)sin(theta);
            int a = j->neox ? i : 2 * i;
            int b = j->neox ? i + half : 2 * i + 1;
            for (int h = 0; h < j->n_heads; h++) {
                float *xh = j->x + t * j->stride + (size_t)h * j->head_dim;
                float x0 = xh[a], x1 = xh[b];
                xh[a] = x0 * c - x1 * s;
                xh[b] = x0 * s + x1 * c;
            }
        }
    }
}

void mmi_rope(float *x, int n_tokens, int n_heads, int head_dim, int n_rot, const int32_t *pos,
              float base, int neox)
{
    mmi_rope_sections(x, n_tokens, n_heads, head_dim, n_rot, pos, base, neox, 0, NULL);
}

void mmi_rope_sections(float *x, int n_tokens, int n_heads, int head_dim, int n_rot,
                       const int32_t *pos, float base, int neox, int n_sections,
                       const int *sections)
{
    rope_job j = {x, n_heads, head_dim, n_rot, pos, n_sections, sections, base, neox,
                  (size_t)n_heads * head_dim, 0};
    /* Each token costs n_rot/2 angles (pow, cos, sin) on top of its values. */
    parallel_for((size_t)n_tokens, grain_rows((size_t)n_heads * head_dim + 16 * n_rot),
                 rope_range, &j);
}

void mmi_rope_2d(float *x, size_t stride, int n_tokens, int n_heads, int head_dim,
                 const int32_t *pos, float base)
{
    int sections[2] = {head_dim / 4, head_dim / 4};
    rope_job j = {x, n_heads, head_dim, head_dim, pos, 2, sections, base, 1, stride, 1};
    parallel_for((size_t)n_tokens, grain_rows((size_t)n_heads * head_dim + 16 * head_dim),
                 rope_range, &j);
}

/* ---- attention ---- */

/* Query rows per block: a block's scores (rows x visible keys) stay in the L2 cache through
 * the softmax, and a causal block computes only the keys it sees. */
#define QUERY_BLOCK 128

typedef struct {
    float *out;
    int out_stride;
    const float *q;
    int q_stride;
    const float *k, *v;
    int kv_stride, n_kv, group, head_dim;
    float scale;
    float *scratch;
    /* for block_softmax_range: the block's first query position, key count and row stride */
    int causal, pos0, n_visible;
    int window; /* causal only: a query at p sees keys p - window + 1 .. p; 0: all */
} attention_job;

/* Softmax of score rows [begin, end) of a block, each over the keys its query sees. */
static void block_softmax_range(void *ctx, size_t begin, size_t end)
{
    const attention_job *j = ctx;
    for (size_t i = begin; i < end; i++) {
        float *row = j->scratch + i * j->n_visible;
        int visible = j->n_visible;
        if (j->causal && j->pos0 + (int)i + 1 < visible)
            visible = j->pos0 + (int)i + 1;
        for (int t = 0; j->window && t <= j->pos0 + (int)i - j->window; t++)
            row[t] = -INFINITY; /* slid out of the window */
        softmax_row(row, visible);
        memset(row + visible, 0, (size_t)(j->n_visible - visible) * sizeof(float));
    }
}

/* A single query row (a decoded token) by single-row products, keys in chunks with a running
 * softmax: scores of a chunk, then the earlier sum rescaled to the new maximum. The work items
 * are batches of up to GROUP_BATCH heads that share one KV head (GQA): each chunk of keys and
 * values is read from memory once for the batch and from the cache for its other heads. Needs
 * no scratch, so the batches can run in parallel. */
#define KEY_CHUNK 256
#define GROUP_BATCH 8

static void one_row_range(void *ctx, size_t begin, size_t end)
{
    const attention_job *j = ctx;
    size_t hd = (size_t)j->head_dim, group = (size_t)j->group;
    size_t batches = (group + GROUP_BATCH - 1) / GROUP_BATCH; /* per KV head */
    float scores[KEY_CHUNK], max[GROUP_BATCH], sum[GROUP_BATCH];
    for (size_t item = begin; item < end; item++) {
        size_t kv_head = item / batches, h0 = kv_head * group + item % batches * GROUP_BATCH;
        size_t n_heads = (kv_head + 1) * group - h0 < GROUP_BATCH ? (kv_head + 1) * group - h0
                                                                  : GROUP_BATCH;
        const float *kh = j->k + kv_head * hd, *vh = j->v + kv_head * hd;
        for (size_t b = 0; b < n_heads; b++) {
            max[b] = -INFINITY, sum[b] = 0.0f;
            memset(j->out + (h0 + b) * hd, 0, hd * sizeof(float));
        }
        int first = j->window && j->n_kv > j->window ? j->n_kv - j->window : 0;
        for (int t0 = first; t0 < j->n_kv; t0 += KEY_CHUNK) {
            int n = j->n_kv - t0 < KEY_CHUNK ? j->n_kv - t0 : KEY_CHUNK;
            for (size_t b = 0; b < n_heads; b++) {
                const float *qh = j->q + (h0 + b) * hd;
                float *oh = j->out + (h0 + b) * hd;
                int t = 0;
                for (; t + 4 <= n; t += 4) {
                    mmi_vec_dot4(kh + (size_t)(t0 + t) * j->kv_stride, (size_t)j->kv_stride, qh,
                                 hd, scores + t);
                    for (int r = 0; r < 4; r++)
                        scores[t + r] *= j->scale;
                }
                for (; t < n; t++)
                    scores[t] = j->scale *
                                mmi_vec_dot(kh + (size_t)(t0 + t) * j->kv_stride, qh, hd);
                float chunk_max = mmi_vec_max(scores, (size_t)n);
                if (chunk_max > max[b]) {
                    float rescale = expf(max[b] - chunk_max);
                    mmi_vec_scale(oh, hd, rescale);
                    sum[b] *= rescale;
                    max[b] = chunk_max;
                }
                sum[b] += mmi_vec_exp_sum(scores, (size_t)n, max[b]);
                for (int t = 0; t < n; t++)
                    mmi_vec_axpy(oh, scores[t], vh + (size_t)(t0 + t) * j->kv_stride, hd);
            }
        }
        for (size_t b = 0; b < n_heads; b++)
            mmi_vec_scale(j->out + (h0 + b) * hd, hd, 1.0f / sum[b]);
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

static void attend(float *out, int out_stride, const float *q, int q_stride, const float *k,
                   const float *v, int kv_stride, int n_q, int n_kv, int n_head, int n_kv_head,
                   int head_dim, int causal, int q_pos0, int window, float *scratch);

void mmi_attention_strided(float *out, int out_stride, const float *q, int q_stride,
                           const float *k, const float *v, int kv_stride, int n_q, int n_kv,
                           int n_head, int n_kv_head, int head_dim, int causal, int q_pos0,
                           float *scratch)
{
    attend(out, out_stride, q, q_stride, k, v, kv_stride, n_q, n_kv, n_head, n_kv_head, head_dim,
           causal, q_pos0, 0, scratch);
}

void mmi_attention_window(float *out, const float *q, const float *k, const float *v, int n_q,
                          int n_kv, int n_head, int n_kv_head, int head_dim, int kv_stride,
                          int q_pos0, int window, float *scratch)
{
    int stride = n_head * head_dim;
    attend(out, stride, q, stride, k, v, kv_stride, n_q, n_kv, n_head, n_kv_head, head_dim, 1,
           q_pos0, window, scratch);
}

static void attend(float *out, int out_stride, const float *q, int q_stride, const float *k,
                   const float *v, int kv_stride, int n_q, int n_kv, int n_head, int n_kv_head,
                   int head_dim, int causal, int q_pos0, int window, float *scratch)
{
    /* With a causal mask no query sees past q_pos0 + n_q - 1: keys beyond may be unwritten
     * cache, so leave them out of both products. */
    if (causal && n_kv > q_pos0 + n_q)
        n_kv = q_pos0 + n_q;
    attention_job j = {out, out_stride, q, q_stride, k, v, kv_stride, n_kv, n_head / n_kv_head,
                       head_dim, 1.0f / sqrtf((float)head_dim), scratch, causal, 0, 0,
                       causal ? window : 0};
    if (n_q == 1) {
        size_t batches = (size_t)(j.group + GROUP_BATCH - 1) / GROUP_BATCH;
        parallel_for((size_t)n_kv_head * batches, 1, one_row_range, &j);
        return;
    }
    int n_blocks = (n_q + QUERY_BLOCK - 1) / QUERY_BLOCK;
    int block = (n_q + n_blocks - 1) / n_blocks; /* even blocks: no sliver at the end */
    for (int h = 0; h < n_head; h++) {
        const float *kh = k + (size_t)(h / j.group) * head_dim;
        const float *vh = v + (size_t)(h / j.group) * head_dim;
        for (int i0 = 0; i0 < n_q; i0 += block) {
            int rows = n_q - i0 < block ? n_q - i0 : block;
            j.pos0 = q_pos0 + i0;
            j.n_visible = causal && j.pos0 + rows < n_kv ? j.pos0 + rows : n_kv;
            /* scores[rows][n_visible] = scale · Q_block · K_hᵀ */
            mmi_gemm_nt(rows, j.n_visible, head_dim, j.scale, q + (size_t)i0 * q_stride +
                        (size_t)h * head_dim, q_stride, kh, kv_stride, 0.0f, scratch,
                        j.n_visible);
            parallel_for((size_t)rows, grain_rows((size_t)j.n_visible), block_softmax_range,
                         &j);
            /* out_block,h[rows][head_dim] = P · V_h */
            mmi_gemm_nn(rows, head_dim, j.n_visible, 1.0f, scratch, j.n_visible, vh, kv_stride,
                        0.0f, out + (size_t)i0 * out_stride + (size_t)h * head_dim, out_stride);
        }
    }
}
