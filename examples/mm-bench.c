/* mm-bench: how fast libmm runs a model, measured against what this machine can do.
 *
 *   mm-bench [--vision VISION.gguf | --audio AUDIO.gguf] [--text MODEL.gguf] [-t THREADS]
 *            [-r RUNS]
 *
 * Stages (each the median of RUNS timed runs after one warm-up run):
 *   load      mm_model_load of the given file(s)
 *   vision    mm_image_encode of a 640x480 picture (preprocess + encode), and
 *             mm_image_encode_pixels at the trained size (encode alone); for a file that
 *             tiles (LLaVA-1.6) at the default detail, encode alone is every view of the picture
 *             as the one batch the library runs, and the report adds the time per view, the
 *             preprocessing, and the rest of mm_image_encode (packing and unpadding)
 *   audio     mm_media_encode of a 30-second clip at 16 kHz (log-mel features + encoder +
 *             projector), and the log-mel features alone (the library's mel.h, timed apart)
 *   prefill   mm_session_add_tokens of 512 random ids into an empty session
 *   decode    128 tokens of greedy generation after that prompt (mm_session_next)
 * and the peak resident memory of the process. After each timed run, in the same process, the
 * limits: cblas_sgemm alone on every GEMM shape libmm used in the stage (the same transposes and
 * leading dimensions), and the memory bandwidth of a STREAM-style triad. Each stage is printed
 * as a fraction of its limit, the median of the per-run ratios (the machine may be shared, so
 * only times taken side by side are compared):
 *   vision, audio, prefill  the time cblas_sgemm alone takes for the stage's GEMMs (2mnk flops each,
 *                    at the rate measured for that shape) against the time inside BLAS during the
 *                    stage ("GEMM parts") and against the whole stage ("end to end");
 *   decode           the time streaming the weights once per token would take at triad bandwidth
 *                    (bytes of every matrix a token reads ÷ bandwidth) against the measured time;
 *   peak RSS         against the bytes of the weights plus the KV cache.
 *
 * Every GEMM stage is also set against what the CPU could do: the best shape of the stage timed
 * in a child process with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (OpenBLAS then picks the
 * kernel for this CPU; the environment here forces Haswell), named with its OpenBLAS core. The
 * report starts with the CPU's extensions (cpuid) and the core in use. Each stage is warmed up
 * (one untimed short call) right before each timed run: the limit measurements between runs
 * leave the threads asleep. Decode is timed twice: from an empty context (after one token)
 * and after the prompt. The peak RSS is also given less what the bench itself holds before
 * and besides the library (its buffers), as "the library alone".
 *
 * The program drives libmm through its public API only. It is linked statically so that it can
 * also see the BLAS calls the library makes (the linker wraps cblas_sgemm and cblas_sgemv, see
 * the Makefile) and read tensor sizes with the library's GGUF reader.
 * The last line is a Markdown table row (see docs/performance.md). */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#  include <cpuid.h>
#endif

#include "args.h"
#include "gguf.h"
#include "mel.h"
#include "mm.h"
#include "model.h"
#include "ops.h"
#include "vec.h"
#include "vit.h"

#define MAX_SHAPES 64
#define MAX_RUNS 32

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, mm_status st)
{
    fprintf(stderr, "mm-bench: %s: %s: %s\n", what, mm_status_str(st), mm_last_error());
    exit(1);
}

static void check(mm_status st, const char *what)
{
    if (st != MM_OK)
        die(what, st);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- counting the BLAS calls libmm makes ---- */

/* One GEMM shape as the library called it. */
typedef struct {
    int ta, tb, m, n, k, lda, ldb, ldc;
    long calls;
    double flops, seconds;
} gemm_shape;

typedef struct {
    double gemm_flops, gemm_seconds, gemv_flops, gemv_seconds;
    long gemm_calls, gemv_calls;
    gemm_shape shapes[MAX_SHAPES];
    int n_shapes, shapes_dropped;
} blas_tally;

static blas_tally *tally; /* the stage being counted, or NULL */

void __real_cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
                        enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha,
                        const float *a, blasint lda, const float *b, blasint ldb, float beta,
                        float *c, blasint ldc);
void __real_cblas_sgemv(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE trans, blasint m, blasint n,
                        float alpha, const float *a, blasint lda, const float *x, blasint incx,
                        float beta, float *y, blasint incy);
void __wrap_cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
                        enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha,
                        const float *a, blasint lda, const float *b, blasint ldb, float beta,
                        float *c, blasint ldc);
void __wrap_cblas_sgemv(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE trans, blasint m, blasint n,
                        float alpha, const float *a, blasint lda, const float *x, blasint incx,
                        float beta, float *y, blasint incy);

void __wrap_cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
                        enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha,
                        const float *a, blasint lda, const float *b, blasint ldb, float beta,
                        float *c, blasint ldc)
{
    double t0 = tally ? now() : 0.0;
    __real_cblas_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (!tally)
        return;
    double dt = now() - t0, flops = 2.0 * m * n * k;
    tally->gemm_flops += flops;
    tally->gemm_seconds += dt;
    tally->gemm_calls++;
    gemm_shape key = {ta == CblasTrans, tb == CblasTrans, m, n, k, lda, ldb, ldc, 0, 0, 0};
    for (int i = 0; i < tally->n_shapes; i++) {
        gemm_shape *s = &tally->shapes[i];
        if (s->ta == key.ta && s->tb == key.tb && s->m == m && s->n == n && s->k == k &&
            s->lda == lda && s->ldb == ldb && s->ldc == ldc) {
            s->calls++;
            s->flops += flops;
            s->seconds += dt;
            return;
        }
    }
    if (tally->n_shapes == MAX_SHAPES) {
        tally->shapes_dropped++;
        return;
    }
    key.calls = 1;
    key.flops = flops;
    key.seconds = dt;
    tally->shapes[tally->n_shapes++] = key;
}

void __wrap_cblas_sgemv(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE trans, blasint m, blasint n,
                        float alpha, const float *a, blasint lda, const float *x, blasint incx,
                        float beta, float *y, blasint incy)
{
    double t0 = tally ? now() : 0.0;
    __real_cblas_sgemv(order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy);
    if (!tally)
        return;
    tally->gemv_seconds += now() - t0;
    tally->gemv_flops += 2.0 * m * n;
    tally->gemv_calls++;
}

/* ---- the machine's limits ---- */

static void fill(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

/* GFLOP/s of cblas_sgemm alone on one shape (same transposes and leading dimensions): repeated
 * calls for at least 0.2 s after one untimed call, total time over calls (a mean, as the stage's
 * own time is a sum: on a shared machine a median would leave out the calls that lost a core). */
static double sgemm_rate(const gemm_shape *s)
{
    size_t rows_a = s->ta ? (size_t)s->k : (size_t)s->m;
    size_t rows_b = s->tb ? (size_t)s->n : (size_t)s->k;
    float *a = malloc(rows_a * s->lda * sizeof *a), *b = malloc(rows_b * s->ldb * sizeof *b);
    float *c = malloc((size_t)s->m * s->ldc * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "mm-bench: out of memory for a %dx%dx%d GEMM\n", s->m, s->n, s->k);
        exit(1);
    }
    fill(a, rows_a * s->lda, 1);
    fill(b, rows_b * s->ldb, 2);
    int n = 0;
    double start = 0;
    for (int i = -1; i < 1000 && (i < 3 || now() - start < 0.2); i++) {
        if (i == 0)
            start = now();
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                    s->tb ? CblasTrans : CblasNoTrans, s->m, s->n, s->k, 1.0f, a, s->lda, b,
                    s->ldb, 0.0f, c, s->ldc);
        n += i >= 0;
    }
    double seconds = now() - start;
    free(a);
    free(b);
    free(c);
    return 2.0 * s->m * s->n * s->k * n / seconds * 1e-9;
}

typedef struct {
    float *a, *b, *c;
    size_t n;
    int read_only;
    float max;
} stream_part;

static void *stream_worker(void *arg)
{
    stream_part *p = arg;
    if (p->read_only) {
        p->max = mmi_vec_max(p->b, p->n); /* one vectorised read of b */
        return NULL;
    }
    for (size_t i = 0; i < p->n; i++)
        p->a[i] = p->b[i] + 3.0f * p->c[i];
    return NULL;
}

typedef struct {
    double triad, read; /* GB/s */
} bandwidth;

/* Memory bandwidth on `threads` threads over arrays far larger than the caches, the median of
 * 5 passes: a STREAM-style triad a = b + s*c (counting 3 arrays of traffic), and a read-only
 * pass over b (what a matrix-vector product does with its weights). The arrays hold varied
 * values: pages of zeros may be merged by the host and then read from one cached page. */
static bandwidth memory_bandwidth(int threads)
{
    const size_t n = (size_t)24 << 20; /* floats per array: 96 MiB each */
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "mm-bench: out of memory for the bandwidth test\n");
        exit(1);
    }
    stream_part parts[64];
    pthread_t ids[64];
    size_t chunk = n / (size_t)threads;
    double times[2][5];
    for (int pass = -1; pass < 5; pass++)
        for (int read_only = 0; read_only < 2; read_only++) {
            double t0 = now();
            for (int t = 0; t < threads; t++) {
                size_t first = (size_t)t * chunk;
                parts[t] = (stream_part){a + first, b + first, c + first,
                                         t == threads - 1 ? n - first : chunk, read_only, 0};
                if (pass < 0 && !read_only) { /* first touch, on the thread that uses the pages */
                    fill(parts[t].b, parts[t].n, 5 + (unsigned)t);
                    fill(parts[t].c, parts[t].n, 9 + (unsigned)t);
                }
                pthread_create(&ids[t], NULL, stream_worker, &parts[t]);
            }
            for (int t = 0; t < threads; t++)
                pthread_join(ids[t], NULL);
            if (pass >= 0)
                times[read_only][pass] = now() - t0;
        }
    free(a);
    free(b);
    free(c);
    return (bandwidth){3.0 * n * sizeof(float) / median(times[0], 5) * 1e-9,
                       1.0 * n * sizeof(float) / median(times[1], 5) * 1e-9};
}

/* ---- memory ---- */

/* Peak resident set (VmHWM) in bytes; 0 when /proc is not there. */
static double peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024.0;
}

/* Start counting the peak from the current resident set (Linux: clear_refs 5). */
static void reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

/* What a file's tensors weigh, and what a token streams through: every tensor but the token
 * embedding, which a token reads one row of (unless it is also the output head). */
typedef struct {
    double bytes, token_bytes;
    int64_t n_layer, kv_width, n_vocab, image_size, n_mels;
} file_facts;

static file_facts read_facts(const char *path)
{
    mmi_gguf *g;
    check(mmi_gguf_open(path, 1, &g), path);
    file_facts f = {0};
    int tied = !mmi_gguf_find_tensor(g, "output.weight");
    for (uint64_t i = 0; i < mmi_gguf_n_tensors(g); i++) {
        const mmi_tensor *t = mmi_gguf_tensor(g, i);
        f.bytes += (double)t->n_bytes;
        if (strcmp(t->name, "token_embd.weight") != 0 || tied)
            f.token_bytes += (double)t->n_bytes;
        if (strcmp(t->name, "token_embd.weight") == 0)
            f.n_vocab = (int64_t)t->ne[1];
    }
    const char *arch = "";
    mmi_gguf_get_string(g, "general.architecture", &arch, NULL);
    char key[96];
    int64_t embd = 0, heads = 1, heads_kv = 0, head_dim = 0;
    snprintf(key, sizeof key, "%s.block_count", arch);
    mmi_gguf_get_int_or(g, key, 0, &f.n_layer);
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    mmi_gguf_get_int_or(g, key, 0, &embd);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    mmi_gguf_get_int_or(g, key, 1, &heads);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    mmi_gguf_get_int_or(g, key, heads, &heads_kv);
    snprintf(key, sizeof key, "%s.attention.key_length", arch);
    mmi_gguf_get_int_or(g, key, heads ? embd / heads : 0, &head_dim);
    f.kv_width = heads_kv * head_dim;
    mmi_gguf_get_int_or(g, "clip.vision.image_size", 0, &f.image_size);
    mmi_gguf_get_int_or(g, "clip.audio.num_mel_bins", 0, &f.n_mels);
    mmi_gguf_close(g);
    return f;
}

/* ---- what the CPU could do ---- */

/* The extensions that decide the kernels (cpuid leaf 1 and leaf 7). */
static void print_cpu_flags(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    int f16c = 0, avx2 = 0, avx512f = 0, vnni = 0, bf16 = 0, fma = 0;
    if (__get_cpuid(1, &a, &b, &c, &d))
        f16c = !!(c & bit_F16C), fma = !!(c & bit_FMA);
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d))
        avx2 = !!(b & bit_AVX2), avx512f = !!(b & bit_AVX512F), vnni = !!(c & (1u << 11));
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d))
        bf16 = !!(a & (1u << 5));
    printf("cpu: avx2 %s, fma %s, f16c %s, avx512f %s, avx512_vnni %s, avx512_bf16 %s; libmm "
           "vector level %d (0 portable, 1 AVX2, 2 AVX-512)\n", avx2 ? "yes" : "no",
           fma ? "yes" : "no", f16c ? "yes" : "no", avx512f ? "yes" : "no", vnni ? "yes" : "no",
           bf16 ? "yes" : "no", mmi_vec_simd_limit(MMI_VEC_AVX512));
#else
    printf("cpu: not x86; libmm vector level %d\n", mmi_vec_simd_limit(MMI_VEC_AVX512));
#endif
}

#define PROBE_ENV "MM_BENCH_SGEMM_PROBE"

/* In the child: time the one shape given in PROBE_ENV and print "core GFLOP/s". */
static int sgemm_probe(const char *spec)
{
    gemm_shape g = {0};
    int threads;
    if (sscanf(spec, "%d %d %d %d %d %d %d %d %d", &g.ta, &g.tb, &g.m, &g.n, &g.k, &g.lda,
               &g.ldb, &g.ldc, &threads) != 9)
        return 2;
    openblas_set_num_threads(threads);
    double rate = sgemm_rate(&g);
    printf("%s %.3f\n", openblas_get_corename(), rate);
    return 0;
}

/* The same shape in a child process with the OPENBLAS_* settings unset; 0 when that fails. */
static double sgemm_rate_unforced(const gemm_shape *g, int threads, char core[32])
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
             PROBE_ENV "='%d %d %d %d %d %d %d %d %d' /proc/%ld/exe", g->ta, g->tb, g->m, g->n,
             g->k, g->lda, g->ldb, g->ldc, threads, (long)getpid());
    FILE *f = popen(cmd, "r");
    double rate = 0;
    strcpy(core, "?");
    if (f) {
        if (fscanf(f, "%31s %lf", core, &rate) != 2)
            rate = 0;
        pclose(f);
    }
    return rate;
}

/* ---- stages ---- */

/* One stage over the timed runs, with the limits measured right after each run, so that every
 * ratio compares times taken side by side on this shared machine. */
typedef struct {
    double seconds[MAX_RUNS]; /* wall time of the stage (decode: per token) */
    double in_blas[MAX_RUNS]; /* of which inside cblas_sgemm */
    double ideal[MAX_RUNS];   /* the same sgemm calls on cblas_sgemm alone */
    double bound[MAX_RUNS];   /* decode: weight bytes per token at triad bandwidth */
    double read_bound[MAX_RUNS]; /* the same at read-only bandwidth */
    double alone[MAX_RUNS][MAX_SHAPES]; /* GFLOP/s of each shape alone */
    blas_tally blas;          /* the calls of the warm-up run, in order of first use */
    blas_tally last;          /* the calls of the last run */
} stage;

static double ratio_median(const double *num, const double *den, int n)
{
    double r[MAX_RUNS];
    for (int i = 0; i < n; i++)
        r[i] = num[i] / den[i];
    return median(r, n);
}

static double stage_median(const double *v, int n)
{
    double copy[MAX_RUNS];
    memcpy(copy, v, (size_t)n * sizeof *v);
    return median(copy, n);
}

/* cblas_sgemm alone on every shape the stage used: the time the same products take by
 * themselves. */
static void measure_sgemm(stage *s, int r)
{
    s->ideal[r] = 0;
    for (int i = 0; i < s->blas.n_shapes; i++) {
        s->alone[r][i] = sgemm_rate(&s->blas.shapes[i]);
        s->ideal[r] += s->blas.shapes[i].flops / (s->alone[r][i] * 1e9);
    }
}

static void report_gemm(const stage *s, const char *name, int runs, int threads)
{
    const blas_tally *b = &s->last;
    if (b->gemm_calls == 0)
        return;
    printf("  %-8s %5s %5s %5s %2s %6s %8s %9s %9s\n", "GEMMs", "m", "n", "k", "tt", "calls",
           "GFLOP", "in-run/s", "alone/s");
    for (int i = 0; i < b->n_shapes; i++) {
        const gemm_shape *g = &b->shapes[i];
        double alone[MAX_RUNS];
        for (int r = 0; r < runs; r++)
            alone[r] = s->alone[r][i];
        printf("  %-8s %5d %5d %5d %c%c %6ld %8.2f %9.1f %9.1f\n", "", g->m, g->n, g->k,
               g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->calls, g->flops * 1e-9,
               g->flops / g->seconds * 1e-9, median(alone, runs));
    }
    if (b->shapes_dropped)
        printf("  (%d further shapes not listed)\n", b->shapes_dropped);
    printf("  %s: %.1f GFLOP in GEMMs; cblas_sgemm alone on the same calls: %.1f GFLOP/s\n",
           name, b->gemm_flops * 1e-9, b->gemm_flops / stage_median(s->ideal, runs) * 1e-9);
    double best = 0;
    int best_i = 0;
    for (int i = 0; i < b->n_shapes; i++) {
        double alone[MAX_RUNS];
        for (int r = 0; r < runs; r++)
            alone[r] = s->alone[r][i];
        double rate = median(alone, runs);
        if (rate > best)
            best = rate, best_i = i;
    }
    printf("  (best single shape alone: %dx%dx%d at %.1f GFLOP/s; the stage's GEMMs reach %.0f %% "
           "of it inside BLAS, %.0f %% end to end)\n", b->shapes[best_i].m, b->shapes[best_i].n,
           b->shapes[best_i].k, best,
           100 * b->gemm_flops / (stage_median(s->in_blas, runs) * 1e9) / best,
           100 * b->gemm_flops / (stage_median(s->seconds, runs) * 1e9) / best);
    int heaviest = 0;
    for (int i = 1; i < b->n_shapes; i++)
        if (b->shapes[i].flops > b->shapes[heaviest].flops)
            heaviest = i;
    const gemm_shape *h = &b->shapes[heaviest];
    char core[32];
    double unforced = sgemm_rate_unforced(h, threads, core);
    if (unforced > 0)
        printf("  (its heaviest shape, %dx%dx%d, in a child process with OPENBLAS_CORETYPE and "
               "OPENBLAS_L2_SIZE unset: core %s, %.1f GFLOP/s; the stage's GEMMs end to end are "
               "%.0f %% of that)\n", h->m, h->n, h->k, core, unforced,
               100 * b->gemm_flops / (stage_median(s->seconds, runs) * 1e9) / unforced);
    printf("  GEMM parts  %3.0f %% of the rate of its shapes alone (%.0f %% of the stage's time is in sgemm)\n",
           100 * ratio_median(s->ideal, s->in_blas, runs),
           100 * ratio_median(s->in_blas, s->seconds, runs));
    printf("  end to end  %3.0f %% of the rate of its shapes alone (core %s)\n",
           100 * ratio_median(s->ideal, s->seconds, runs), openblas_get_corename());
}

typedef struct {
    const char *vision, *audio, *text, *precision;
    int threads, runs, n_prompt, n_gen;
} bench_args;

/* Decode against the time streaming its weights once per token takes at each bandwidth, both
 * measured on all the bench's threads right after each run. */
static void report_decode(const stage *d, const char *name, int context, const file_facts *ft,
                          const bench_args *a)
{
    double t = stage_median(d->seconds, a->runs);
    printf("%-11s %8.2f tokens/s after %d token%s (%.2f ms per token; %ld GEMV + %ld GEMM calls "
           "per token)\n", name, 1 / t, context, context > 1 ? "s" : "", t * 1e3,
           d->last.gemv_calls / (a->n_gen - 1), d->last.gemm_calls / (a->n_gen - 1));
    printf("  weights read per token %.1f MiB -> %.1f GB/s; %.0f %% of the triad bound (%.1f "
           "GB/s, %d threads: %.2f ms), %.0f %% of the read-only bound (%.1f GB/s: %.2f ms)\n",
           ft->token_bytes / 1048576, ft->token_bytes / t * 1e-9,
           100 * ratio_median(d->bound, d->seconds, a->runs),
           ft->token_bytes / stage_median(d->bound, a->runs) * 1e-9, a->threads,
           stage_median(d->bound, a->runs) * 1e3,
           100 * ratio_median(d->read_bound, d->seconds, a->runs),
           ft->token_bytes / stage_median(d->read_bound, a->runs) * 1e-9,
           stage_median(d->read_bound, a->runs) * 1e3);
}

static bench_args parse_args(int argc, char **argv)
{
    const char *vision = NULL, *audio = NULL, *text = NULL, *precision = NULL;
    long long threads = 1, runs = 3, n_prompt = 512, n_gen = 128;
    const arg_spec specs[] = {
        {"--vision", "FILE", ARG_TEXT, &vision, (mm_opt)0, 0, 0,
         "vision GGUF (mmproj or CLIP): image preprocess + encode"},
        {"--audio", "FILE", ARG_TEXT, &audio, (mm_opt)0, 0, 0,
         "audio GGUF (mmproj): features + encode of 30 s of audio"},
        {"--text", "FILE", ARG_TEXT, &text, (mm_opt)0, 0, 0,
         "language model GGUF: prefill and decode"},
        {"-t, --threads", "N", ARG_INT, &threads, (mm_opt)0, 1, 64,
         "compute threads for libmm, OpenBLAS and the limits (default 1)"},
        {"-r, --runs", "N", ARG_INT, &runs, (mm_opt)0, 1, MAX_RUNS,
         "timed runs per stage after a warm-up, median (default 3)"},
        {"--prompt", "N", ARG_INT, &n_prompt, (mm_opt)0, 1, 1 << 20,
         "prefill tokens (default 512)"},
        {"--gen", "N", ARG_INT, &n_gen, (mm_opt)0, 2, 1 << 20, "decoded tokens (default 128)"},
        {"--precision", "P", ARG_TEXT, &precision, (mm_opt)0, 0, 0,
         "MM_OPT_MATMUL_PRECISION: f32 (default) or bf16"},
    };
    arg_parser parser = {"mm-bench", "[--vision FILE | --audio FILE] [--text FILE] [options]",
                         "Time each stage against the BLAS rate and memory bandwidth limits "
                         "(docs/performance.md).",
                         specs, sizeof specs / sizeof specs[0], NULL, NULL, 0, 0, 0};
    int rc = args_parse(&parser, argc, argv);
    if (rc < 0 && !vision && !audio && !text)
        rc = args_refuse(&parser, "mm-bench", "--vision, --audio or --text is needed");
    if (rc < 0 && vision && audio)
        rc = args_refuse(&parser, "--audio", "goes with --text, not with --vision");
    if (rc >= 0)
        exit(rc);
    bench_args a = {vision, audio, text, precision, (int)threads, (int)runs, (int)n_prompt,
                    (int)n_gen};
    return a;
}

static const char *base_name(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : path ? path : "-";
}

/* What one run works on. */
typedef struct {
    mm_model *model;
    mm_session *session;
    mm_image *image;    /* 640x480 picture */
    float *chw;         /* normalised pixels at the trained size, n_views views */
    int image_size;
    int n_views;        /* views of the picture at the default detail */
    size_t n_positions; /* its rows in the context */
    mmi_exec exec;      /* libmm's threads for the batched views */
    double preprocess[MAX_RUNS]; /* tiled: mmi_preprocess of the picture */
    mm_audio *clip;     /* 30 s at 16 kHz */
    mm_media *clip_media;
    mmi_mel mel;        /* the features of one 30 s chunk, timed apart */
    float *mel_out, *mel_scratch;
    int32_t *prompt;
} workload;

static void run_vision(workload *w, const mm_options *opts, stage *full, stage *encode, int r)
{
    blas_tally counted = {0};
    mm_embeddings *e;
    if (r >= 0) { /* warm-up: the limits measured since the last run left the threads asleep */
        check(mm_image_encode(w->model, w->image, opts, &e), "encode");
        mm_embeddings_free(e);
    }
    tally = &counted;
    double t0 = now();
    if (w->n_views > 1) { /* the views as the library batches them */
        const mmi_exec *previous = mmi_exec_bind(&w->exec);
        int per_view, n_embd;
        check(mmi_vision_output_shape(w->model->vision, w->image_size, w->image_size, &per_view,
                                      &n_embd), "shape");
        float *rows = malloc((size_t)w->n_views * per_view * n_embd * sizeof *rows);
        if (!rows)
            die("rows", MM_ERR_NOMEM);
        check(mmi_vision_encode_views(w->model->vision, w->chw, w->n_views, w->image_size,
                                      w->image_size, rows, NULL), "encode views");
        mmi_exec_bind(previous);
        free(rows);
    } else {
        check(mm_image_encode_pixels(w->model, w->chw, w->image_size, w->image_size, opts, &e),
              "encode");
        mm_embeddings_free(e);
    }
    double t1 = now();
    tally = NULL;
    double t2 = now();
    check(mm_image_encode(w->model, w->image, opts, &e), "encode");
    double t3 = now();
    mm_embeddings_free(e);
    if (w->n_views > 1 && r >= 0) {
        mmi_views views;
        double t4 = now();
        check(mmi_preprocess(&w->model->vision->preprocess, w->image, MMI_DETAIL_HIGH, &views),
              "preprocess");
        w->preprocess[r] = now() - t4;
        mmi_views_free(&views);
    }
    if (r < 0) {
        encode->blas = counted;
        return;
    }
    encode->last = counted;
    encode->seconds[r] = t1 - t0;
    encode->in_blas[r] = counted.gemm_seconds;
    full->seconds[r] = t3 - t2;
}

/* The clip through the audio tower (features, encoder, projector), then its features alone. */
static void run_audio(workload *w, const mm_options *opts, stage *encode, double *features,
                      int r)
{
    blas_tally counted = {0};
    mm_embeddings *e;
    tally = &counted;
    double t0 = now();
    check(mm_media_encode(w->model, w->clip_media, opts, &e), "audio encode");
    double t1 = now();
    tally = NULL;
    mm_embeddings_free(e);
    double t2 = now();
    mmi_log_mel(&w->mel, mm_audio_samples(w->clip), mm_audio_n_samples(w->clip), w->mel_out,
                w->mel_scratch);
    double t3 = now();
    if (r < 0) {
        encode->blas = counted;
        return;
    }
    encode->last = counted;
    encode->seconds[r] = t1 - t0;
    encode->in_blas[r] = counted.gemm_seconds;
    features[r] = t3 - t2;
}

/* n_gen greedy tokens: the first comes from the logits already there, the later ones each
 * evaluate one position and are timed; seconds per token. */
static double time_decode(workload *w, const bench_args *a, blas_tally *counted)
{
    int32_t tok;
    const char *piece;
    size_t len;
    check(mm_session_next(w->session, &tok, &piece, &len), "decode");
    tally = counted;
    double t0 = now();
    for (int i = 1; i < a->n_gen; i++)
        check(mm_session_next(w->session, &tok, &piece, &len), "decode");
    double t1 = now();
    tally = NULL;
    return (t1 - t0) / (a->n_gen - 1);
}

/* Decode from an empty context (one token in it), then the prefill of the prompt into a fresh
 * conversation and greedy tokens after it. A short prefill warms the threads up first. */
static void run_text(workload *w, const bench_args *a, stage *prefill, stage *decode,
                     stage *decode_empty, int r)
{
    blas_tally counted = {0}, counted_dec = {0}, counted_empty = {0};
    int n_warm = a->n_prompt < 16 ? a->n_prompt : 16;
    mm_session_reset(w->session);
    check(mm_session_add_tokens(w->session, w->prompt, (size_t)n_warm), "warm-up");
    mm_session_reset(w->session);
    check(mm_session_add_tokens(w->session, w->prompt, 1), "first token");
    double t_empty = time_decode(w, a, &counted_empty);
    mm_session_reset(w->session);
    check(mm_session_add_tokens(w->session, w->prompt, (size_t)n_warm), "warm-up");
    mm_session_reset(w->session);
    tally = &counted;
    double t0 = now();
    check(mm_session_add_tokens(w->session, w->prompt, (size_t)a->n_prompt), "prefill");
    double t1 = now();
    tally = NULL;
    double t_dec = time_decode(w, a, &counted_dec);
    if (r < 0) {
        prefill->blas = counted;
        decode->blas = counted_dec;
        decode_empty->blas = counted_empty;
        return;
    }
    prefill->last = counted;
    prefill->seconds[r] = t1 - t0;
    prefill->in_blas[r] = counted.gemm_seconds;
    decode->last = counted_dec;
    decode->seconds[r] = t_dec;
    decode_empty->last = counted_empty;
    decode_empty->seconds[r] = t_empty;
}

int main(int argc, char **argv)
{
    const char *probe = getenv(PROBE_ENV);
    if (probe)
        return sgemm_probe(probe);
    bench_args a = parse_args(argc, argv);
    file_facts fv = {0}, ft = {0};
    const char *media_file = a.vision ? a.vision : a.audio;
    if (media_file)
        fv = read_facts(media_file);
    if (a.text)
        ft = read_facts(a.text);

    /* OpenBLAS's thread count is the host's to set (libmm leaves it alone): the same as
     * libmm's, so that the GEMMs and the library's own work use the same cores. */
    openblas_set_num_threads(a.threads);
    mm_options *opts;
    check(mm_options_create(&opts), "options");
    check(mm_options_set_int(opts, MM_OPT_N_THREADS, a.threads), "threads");
    int n_ctx = a.n_prompt + a.n_gen + 1;
    check(mm_options_set_int(opts, MM_OPT_N_CTX, n_ctx), "n_ctx");
    check(mm_options_set_int(opts, MM_OPT_MAX_TOKENS, a.n_gen), "max_tokens");
    if (a.precision)
        check(mm_options_set_string(opts, MM_OPT_MATMUL_PRECISION, a.precision), "precision");

    printf("libmm %s bench: %d thread%s, %d runs (median) after a warm-up; OpenBLAS core %s; "
           "matmul precision %s\n", mm_version_string(), a.threads, a.threads > 1 ? "s" : "",
           a.runs, openblas_get_corename(), a.precision ? a.precision : "f32");
    printf("files: %s %s, text %s\n", a.audio ? "audio" : "vision", base_name(media_file),
           base_name(a.text));
    print_cpu_flags();

    /* Loading: the first load warms the page cache; the next ones are timed. */
    reset_peak_rss();
    double rss0 = peak_rss(), t_load[MAX_RUNS];
    workload w = {0};
    for (int r = -1; r < a.runs; r++) {
        mm_model_free(w.model);
        double t0 = now();
        check(mm_model_load(a.text ? a.text : media_file, a.text ? media_file : NULL, opts,
                            &w.model), "load");
        if (r >= 0)
            t_load[r] = now() - t0;
    }
    double load = median(t_load, a.runs);

    enum { W = 640, H = 480 };
    static uint8_t rgb[W * H * 3];
    if (a.vision) {
        for (int i = 0; i < W * H * 3; i++)
            rgb[i] = (uint8_t)((i * 7 + (i / (3 * W)) * 13) & 0xff);
        check(mm_image_from_pixels(rgb, W, H, (size_t)W * 3, MM_PIXEL_RGB8, &w.image), "image");
        w.image_size = (int)fv.image_size;
        check(mm_image_token_count(w.model, W, H, opts, &w.n_positions, &w.n_views), "count");
        check(mmi_exec_init(&w.exec, a.threads), "threads");
        check(mmi_exec_set_precision(&w.exec, a.precision), "precision");
        size_t n_px = (size_t)3 * w.image_size * w.image_size * w.n_views;
        w.chw = malloc(n_px * sizeof *w.chw);
        if (!w.chw)
            die("pixels", MM_ERR_NOMEM);
        fill(w.chw, n_px, 3);
    }
    if (a.audio) {
        enum { RATE = 16000, SECONDS = 30 };
        static float samples[RATE * SECONDS];
        for (int i = 0; i < RATE * SECONDS; i++) /* a chirp from 100 Hz up, with noise */
            samples[i] = 0.3f * sinf(6.2831853f * (100.0f + 50.0f * i / RATE) * i / RATE) +
                         0.01f * (float)((long)i * 7919 % 1000 - 500) / 500.0f;
        check(mm_audio_from_samples(samples, RATE * SECONDS, 1, RATE, &w.clip), "clip");
        check(mm_media_from_audio(w.clip, &w.clip_media), "clip");
        check(mmi_mel_init(&w.mel, (int)fv.n_mels, SECONDS * RATE / MMI_MEL_HOP), "mel");
        w.mel_out = malloc((size_t)fv.n_mels * w.mel.n_frames * sizeof(float));
        w.mel_scratch = malloc(mmi_mel_scratch_floats(&w.mel) * sizeof(float));
        if (!w.mel_out || !w.mel_scratch)
            die("features", MM_ERR_NOMEM);
    }
    if (a.text) {
        check(mm_session_create(w.model, opts, &w.session), "session");
        w.prompt = malloc((size_t)a.n_prompt * sizeof *w.prompt);
        if (!w.prompt)
            die("prompt", MM_ERR_NOMEM);
        unsigned seed = 7;
        for (int i = 0; i < a.n_prompt; i++) {
            seed = seed * 1664525u + 1013904223u;
            w.prompt[i] = (int32_t)((seed >> 8) % (unsigned)ft.n_vocab);
        }
    }

    double bench_bytes = (a.vision ? sizeof rgb + 3.0 * w.image_size * w.image_size * w.n_views *
                          sizeof *w.chw : 0) + (a.text ? a.n_prompt * sizeof *w.prompt : 0);
    static stage full, encode, audio, prefill, decode, decode_empty;
    double rss = 0, features[MAX_RUNS];
    for (int r = -1; r < a.runs; r++) {
        if (a.vision)
            run_vision(&w, opts, &full, &encode, r);
        if (a.audio)
            run_audio(&w, opts, &audio, features, r);
        if (a.text)
            run_text(&w, &a, &prefill, &decode, &decode_empty, r);
        if (r < 0)
            continue;
        if (r == 0) /* every run allocates alike: the peak is reached by now */
            rss = peak_rss();
        measure_sgemm(&encode, r);
        measure_sgemm(&audio, r);
        measure_sgemm(&prefill, r);
        if (a.text) {
            bandwidth bw = memory_bandwidth(a.threads);
            decode.bound[r] = decode_empty.bound[r] = ft.token_bytes / (bw.triad * 1e9);
            decode.read_bound[r] = decode_empty.read_bound[r] = ft.token_bytes / (bw.read * 1e9);
        }
    }
    double kv = 2.0 * ft.n_layer * n_ctx * ft.kv_width * sizeof(float);
    double weights = fv.bytes + ft.bytes;

    printf("load        %8.1f ms\n", load * 1e3);
    printf("peak RSS    %8.1f MiB = %.3f x (weights %.1f MiB + KV cache %.1f MiB); %.1f MiB "
           "before loading\n", rss / 1048576, rss / (weights + kv), weights / 1048576,
           kv / 1048576, rss0 / 1048576);
    double own = rss - rss0 - bench_bytes;
    printf("  the library alone (peak less the RSS before loading and the bench's %.1f MiB of "
           "buffers) %.1f MiB = %.3f x (weights + KV)\n", bench_bytes / 1048576, own / 1048576,
           own / (weights + kv));
    if (a.vision) {
        printf("vision      %8.1f ms preprocess + encode of a %dx%d picture (encode alone %.1f "
               "ms)\n", stage_median(full.seconds, a.runs) * 1e3, W, H,
               stage_median(encode.seconds, a.runs) * 1e3);
        report_gemm(&encode, "encode", a.runs, a.threads);
        if (w.n_views > 1) {
            double t_full = stage_median(full.seconds, a.runs);
            double t_enc = stage_median(encode.seconds, a.runs);
            double t_pre = median(w.preprocess, a.runs), rest = t_full - t_pre - t_enc;
            printf("  tiled: %d views, %zu positions: encode %.1f ms per view; preprocess %.1f "
                   "ms; the rest of mm_image_encode (packing, unpadding) %.2f ms = %.2f %% of "
                   "the encode\n", w.n_views, w.n_positions, t_enc / w.n_views * 1e3,
                   t_pre * 1e3, rest * 1e3, 100 * rest / t_enc);
        }
    }
    if (a.audio) {
        double t_all = stage_median(audio.seconds, a.runs);
        printf("audio       %8.1f ms features + encode of 30 s (features alone %.1f ms: %.1f %% "
               "of it)\n", t_all * 1e3, stage_median(features, a.runs) * 1e3,
               100 * ratio_median(features, audio.seconds, a.runs));
        report_gemm(&audio, "audio", a.runs, a.threads);
    }
    if (a.text) {
        double t_pre = stage_median(prefill.seconds, a.runs);
        printf("prefill     %8.1f tokens/s (%d tokens in %.1f ms)\n", a.n_prompt / t_pre,
               a.n_prompt, t_pre * 1e3);
        report_gemm(&prefill, "prefill", a.runs, a.threads);
        report_decode(&decode, "decode", a.n_prompt, &ft, &a);
        report_decode(&decode_empty, "decode", 1, &ft, &a);
    }

    /* | files | threads | load ms | peak RSS / (weights + KV) | image ms | encode GEMM % |
     * encode e2e % | prefill tok/s | prefill GEMM % | prefill e2e % | decode tok/s | decode %
     * of the bandwidth bound | */
    char vis[96] = " - | - | - ", pre[96] = " - | - | - ", dec[64] = " - | - ";
    if (a.vision)
        snprintf(vis, sizeof vis, " %.1f | %.0f %% | %.0f %% ",
                 stage_median(full.seconds, a.runs) * 1e3,
                 100 * ratio_median(encode.ideal, encode.in_blas, a.runs),
                 100 * ratio_median(encode.ideal, encode.seconds, a.runs));
    if (a.audio) /* the media columns hold the clip's features + encode */
        snprintf(vis, sizeof vis, " %.1f | %.0f %% | %.0f %% ",
                 stage_median(audio.seconds, a.runs) * 1e3,
                 100 * ratio_median(audio.ideal, audio.in_blas, a.runs),
                 100 * ratio_median(audio.ideal, audio.seconds, a.runs));
    if (a.text) {
        snprintf(pre, sizeof pre, " %.1f | %.0f %% | %.0f %% ",
                 a.n_prompt / stage_median(prefill.seconds, a.runs),
                 100 * ratio_median(prefill.ideal, prefill.in_blas, a.runs),
                 100 * ratio_median(prefill.ideal, prefill.seconds, a.runs));
        snprintf(dec, sizeof dec, " %.2f | %.0f %% ", 1 / stage_median(decode.seconds, a.runs),
                 100 * ratio_median(decode.bound, decode.seconds, a.runs));
    }
    printf("| %s%s%s | %d | %.1f | %.2f |%s|%s|%s|\n", base_name(a.text ? a.text : media_file),
           a.text && media_file ? " + " : "", a.text && media_file ? base_name(media_file) : "",
           a.threads, load * 1e3, rss / (weights + kv), vis, pre, dec);

    mm_session_free(w.session);
    mm_image_free(w.image);
    mm_media_free(w.clip_media);
    mm_audio_free(w.clip);
    mmi_mel_free(&w.mel);
    free(w.mel_out);
    free(w.mel_scratch);
    if (a.vision)
        mmi_exec_free(&w.exec);
    mm_model_free(w.model);
    mm_options_free(opts);
    free(w.chw);
    free(w.prompt);
    return 0;
}
