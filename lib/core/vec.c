/* Vectorised loops (see vec.h): portable C, AVX2/FMA/F16C variants for x86, and AVX-512
 * variants of the weight-streaming kernels (dot products, conversions), chosen at run time.
 * Each public function runs the widest variant allowed on the head it covers (a multiple of 8
 * or 16 values) and finishes the tail (or everything, elsewhere) in plain C. */
#include "vec.h"

#include <math.h>
#include <stdatomic.h>

#include "half.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define HAVE_AVX2_VARIANTS 1
#  include <cpuid.h>
#  include <immintrin.h>
#  define AVX2 __attribute__((target("avx2,fma,f16c")))
#  define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#endif

/* ---- portable C ---- */

static void x_sigmoid_c(float *x, size_t n, float a, float b)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v / (1.0f + expf(-(a * v + b * v * v * v)));
    }
}

static void swiglu_c(float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static float max_c(const float *x, size_t n, float max)
{
    for (size_t i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    return max;
}

static double exp_sum_c(float *x, size_t n, float shift)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - shift);
        sum += x[i];
    }
    return sum;
}

static float dot_c(const float *w, const float *x, size_t n)
{
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++)
        sum += w[i] * x[i];
    return sum;
}

static float dot_f16_c(const uint16_t *w, const float *x, size_t n)
{
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++)
        sum += mmi_f16_to_f32(w[i]) * x[i];
    return sum;
}

static float dot_bf16_c(const uint16_t *w, const float *x, size_t n)
{
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++)
        sum += mmi_bf16_to_f32(w[i]) * x[i];
    return sum;
}

/* ---- AVX2 ---- */

static atomic_int simd_limit = MMI_VEC_AVX512; /* test hook */

#ifdef HAVE_AVX2_VARIANTS
/* The widest level this processor (and OS, which must save the wider registers: GCC's and
 * clang's checks include XGETBV) runs, found once. */
static int cpu_level(void)
{
    static atomic_int state; /* 0: not yet known, else level + 1 */
    int s = atomic_load_explicit(&state, memory_order_relaxed);
    if (!s) {
        __builtin_cpu_init();
        /* F16C by CPUID: clang before 16 does not know __builtin_cpu_supports("f16c"). */
        unsigned eax, ebx, ecx, edx;
        int f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
        int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
        int level = !avx2 ? MMI_VEC_PORTABLE
                    : __builtin_cpu_supports("avx512f") ? MMI_VEC_AVX512 : MMI_VEC_AVX2;
        s = level + 1;
        atomic_store_explicit(&state, s, memory_order_relaxed);
    }
    return s - 1;
}

static int level_in_use(void)
{
    int limit = atomic_load_explicit(&simd_limit, memory_order_relaxed), cpu = cpu_level();
    return limit < cpu ? limit : cpu;
}

static int use_avx2(void)
{
    return level_in_use() >= MMI_VEC_AVX2;
}

AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* e^x: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts), e^r by Cephes' expf polynomial,
 * 2^n put in the exponent. x is clamped to where e^x is a normal float, and below that the
 * result is 0 as from expf (-inf included); NaN stays NaN (min and max return their second
 * operand when one is NaN). */
AVX2 static inline __m256 exp8(__m256 x)
{
    __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), _mm256_min_ps(_mm256_set1_ps(88.37626f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
    return _mm256_andnot_ps(underflow, p);
}

/* v / (1 + e^-z) */
AVX2 static inline __m256 div_one_plus_exp_neg(__m256 v, __m256 z)
{
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), z));
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

AVX2 static size_t x_sigmoid_avx2(float *x, size_t n, float a, float b)
{
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 z = _mm256_mul_ps(v, _mm256_fmadd_ps(_mm256_mul_ps(vb, v), v, va));
        _mm256_storeu_ps(x + i, div_one_plus_exp_neg(v, z));
    }
    return i;
}

AVX2 static size_t swiglu_avx2(float *gate, const float *up, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 s = div_one_plus_exp_neg(g, g);
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    return i;
}

AVX2 static size_t max_avx2(const float *x, size_t n, float *max)
{
    __m256 m = _mm256_set1_ps(*max);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    *max = _mm_cvtss_f32(h);
    return i;
}

AVX2 static size_t exp_sum_avx2(float *x, size_t n, float shift, float *sum)
{
    __m256 s = _mm256_setzero_ps(), vshift = _mm256_set1_ps(shift);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vshift));
        _mm256_storeu_ps(x + i, e);
        s = _mm256_add_ps(s, e);
    }
    *sum = hsum8(s);
    return i;
}

/* Four accumulators: the loops are bound by loads (memory for a weight row), not by the
 * latency of one chain of FMAs. */
AVX2 static size_t dot_avx2(const float *w, const float *x, size_t n, float *sum)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), s0);
    *sum = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return i;
}

AVX2 static inline __m256 load_f16(const uint16_t *w)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w));
}

AVX2 static inline __m256 load_bf16(const uint16_t *w)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

#define DOT_HALF_AVX2(name, load)                                                            \
    AVX2 static size_t name(const uint16_t *w, const float *x, size_t n, float *sum)         \
    {                                                                                         \
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                           \
        size_t i = 0;                                                                         \
        for (; i + 32 <= n; i += 32) {                                                        \
            s0 = _mm256_fmadd_ps(load(w + i), _mm256_loadu_ps(x + i), s0);                    \
            s1 = _mm256_fmadd_ps(load(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);            \
            s2 = _mm256_fmadd_ps(load(w + i + 16), _mm256_loadu_ps(x + i + 16), s2);          \
            s3 = _mm256_fmadd_ps(load(w + i + 24), _mm256_loadu_ps(x + i + 24), s3);          \
        }                                                                                     \
        for (; i + 8 <= n; i += 8)                                                            \
            s0 = _mm256_fmadd_ps(load(w + i), _mm256_loadu_ps(x + i), s0);                    \
        *sum = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));           \
        return i;                                                                             \
    }
DOT_HALF_AVX2(dot_f16_avx2, load_f16)
DOT_HALF_AVX2(dot_bf16_avx2, load_bf16)

AVX2 static inline __m256 load_f32(const float *w)
{
    return _mm256_loadu_ps(w);
}

/* Four rows at once, sharing each load of x: four memory streams keep more loads in flight
 * than one, which is what a row of weights from DRAM needs. */
#define DOT4_AVX2(name, type, load)                                                          \
    AVX2 static size_t name(const type *w, size_t stride, const float *x, size_t n,          \
                            float out[4])                                                    \
    {                                                                                         \
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                           \
        size_t i = 0;                                                                         \
        for (; i + 8 <= n; i += 8) {                                                          \
            __m256 xv = _mm256_loadu_ps(x + i);                                               \
            s0 = _mm256_fmadd_ps(load(w + i), xv, s0);                                        \
            s1 = _mm256_fmadd_ps(load(w + stride + i), xv, s1);                               \
            s2 = _mm256_fmadd_ps(load(w + 2 * stride + i), xv, s2);                           \
            s3 = _mm256_fmadd_ps(load(w + 3 * stride + i), xv, s3);                           \
        }                                                                                     \
        out[0] = hsum8(s0), out[1] = hsum8(s1), out[2] = hsum8(s2), out[3] = hsum8(s3);       \
        return i;                                                                             \
    }
DOT4_AVX2(dot4_avx2, float, load_f32)
DOT4_AVX2(dot4_f16_avx2, uint16_t, load_f16)
DOT4_AVX2(dot4_bf16_avx2, uint16_t, load_bf16)

/* Conversions to f32, `lanes` values per register (AVX2 and AVX-512 alike). */
#define TO_F32(name, target, lanes, store, load)                                             \
    target static size_t name(const uint16_t *src, float *dst, size_t n)                     \
    {                                                                                         \
        size_t i = 0;                                                                         \
        for (; i + lanes <= n; i += lanes)                                                    \
            store(dst + i, load(src + i));                                                    \
        return i;                                                                             \
    }
TO_F32(f16_to_f32_avx2, AVX2, 8, _mm256_storeu_ps, load_f16)
TO_F32(bf16_to_f32_avx2, AVX2, 8, _mm256_storeu_ps, load_bf16)

AVX2 static size_t axpy_avx2(float *y, float a, const float *x, size_t n)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i),
                                                _mm256_loadu_ps(y + i)));
    return i;
}

/* ---- AVX-512 ---- */

/* Sixteen values per register: the weight-streaming loops need half the instructions of the
 * AVX2 ones per byte, which leaves the load ports to the memory streams. */
AVX512 static inline __m512 load16_f32(const float *w)
{
    return _mm512_loadu_ps(w);
}

AVX512 static inline __m512 load16_f16(const uint16_t *w)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w));
}

AVX512 static inline __m512 load16_bf16(const uint16_t *w)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

#define DOT_AVX512(name, type, load)                                                         \
    AVX512 static size_t name(const type *w, const float *x, size_t n, float *sum)           \
    {                                                                                         \
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                           \
        size_t i = 0;                                                                         \
        for (; i + 64 <= n; i += 64) {                                                        \
            s0 = _mm512_fmadd_ps(load(w + i), _mm512_loadu_ps(x + i), s0);                    \
            s1 = _mm512_fmadd_ps(load(w + i + 16), _mm512_loadu_ps(x + i + 16), s1);          \
            s2 = _mm512_fmadd_ps(load(w + i + 32), _mm512_loadu_ps(x + i + 32), s2);          \
            s3 = _mm512_fmadd_ps(load(w + i + 48), _mm512_loadu_ps(x + i + 48), s3);          \
        }                                                                                     \
        for (; i + 16 <= n; i += 16)                                                          \
            s0 = _mm512_fmadd_ps(load(w + i), _mm512_loadu_ps(x + i), s0);                    \
        *sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1),                      \
                                                  _mm512_add_ps(s2, s3)));                    \
        return i;                                                                             \
    }
DOT_AVX512(dot_avx512, float, load16_f32)
DOT_AVX512(dot_f16_avx512, uint16_t, load16_f16)
DOT_AVX512(dot_bf16_avx512, uint16_t, load16_bf16)

/* Four rows, 32 values of each per step: eight loads of weights in flight. */
#define DOT4_AVX512(name, type, load)                                                        \
    AVX512 static size_t name(const type *w, size_t stride, const float *x, size_t n,        \
                              float out[4])                                                  \
    {                                                                                         \
        const type *w1 = w + stride, *w2 = w + 2 * stride, *w3 = w + 3 * stride;              \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                           \
        __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                            \
        size_t i = 0;                                                                         \
        for (; i + 32 <= n; i += 32) {                                                        \
            __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);             \
            a0 = _mm512_fmadd_ps(load(w + i), x0, a0);                                        \
            a1 = _mm512_fmadd_ps(load(w1 + i), x0, a1);                                       \
            a2 = _mm512_fmadd_ps(load(w2 + i), x0, a2);                                       \
            a3 = _mm512_fmadd_ps(load(w3 + i), x0, a3);                                       \
            b0 = _mm512_fmadd_ps(load(w + i + 16), x1, b0);                                   \
            b1 = _mm512_fmadd_ps(load(w1 + i + 16), x1, b1);                                  \
            b2 = _mm512_fmadd_ps(load(w2 + i + 16), x1, b2);                                  \
            b3 = _mm512_fmadd_ps(load(w3 + i + 16), x1, b3);                                  \
        }                                                                                     \
        for (; i + 16 <= n; i += 16) {                                                        \
            __m512 x0 = _mm512_loadu_ps(x + i);                                               \
            a0 = _mm512_fmadd_ps(load(w + i), x0, a0);                                        \
            a1 = _mm512_fmadd_ps(load(w1 + i), x0, a1);                                       \
            a2 = _mm512_fmadd_ps(load(w2 + i), x0, a2);                                       \
            a3 = _mm512_fmadd_ps(load(w3 + i), x0, a3);                                       \
        }                                                                                     \
        out[0] = _mm512_reduce_add_ps(_mm512_add_ps(a0, b0));                                 \
        out[1] = _mm512_reduce_add_ps(_mm512_add_ps(a1, b1));                                 \
        out[2] = _mm512_reduce_add_ps(_mm512_add_ps(a2, b2));                                 \
        out[3] = _mm512_reduce_add_ps(_mm512_add_ps(a3, b3));                                 \
        return i;                                                                             \
    }
DOT4_AVX512(dot4_avx512, float, load16_f32)
DOT4_AVX512(dot4_f16_avx512, uint16_t, load16_f16)
DOT4_AVX512(dot4_bf16_avx512, uint16_t, load16_bf16)

TO_F32(f16_to_f32_avx512, AVX512, 16, _mm512_storeu_ps, load16_f16)
TO_F32(bf16_to_f32_avx512, AVX512, 16, _mm512_storeu_ps, load16_bf16)
#endif /* HAVE_AVX2_VARIANTS */

/* ---- dispatch ---- */

int mmi_cpu_has_avx2(void)
{
#ifdef HAVE_AVX2_VARIANTS
    return cpu_level() >= MMI_VEC_AVX2;
#else
    return 0;
#endif
}

/* The weight-streaming kernels of one level; each returns how many values it covered. */
typedef struct {
    size_t (*dot)(const float *w, const float *x, size_t n, float *sum);
    size_t (*dot_f16)(const uint16_t *w, const float *x, size_t n, float *sum);
    size_t (*dot_bf16)(const uint16_t *w, const float *x, size_t n, float *sum);
    size_t (*dot4)(const float *w, size_t stride, const float *x, size_t n, float out[4]);
    size_t (*dot4_f16)(const uint16_t *w, size_t stride, const float *x, size_t n, float out[4]);
    size_t (*dot4_bf16)(const uint16_t *w, size_t stride, const float *x, size_t n,
                        float out[4]);
    size_t (*f16_to_f32)(const uint16_t *src, float *dst, size_t n);
    size_t (*bf16_to_f32)(const uint16_t *src, float *dst, size_t n);
} stream_kernels;

static size_t none_dot(const float *w, const float *x, size_t n, float *sum)
{
    (void)w, (void)x, (void)n, (void)sum;
    return 0;
}
static size_t none_dot_half(const uint16_t *w, const float *x, size_t n, float *sum)
{
    (void)w, (void)x, (void)n, (void)sum;
    return 0;
}
static size_t none_dot4(const float *w, size_t stride, const float *x, size_t n, float out[4])
{
    (void)w, (void)stride, (void)x, (void)n, (void)out;
    return 0;
}
static size_t none_dot4_half(const uint16_t *w, size_t stride, const float *x, size_t n,
                             float out[4])
{
    (void)w, (void)stride, (void)x, (void)n, (void)out;
    return 0;
}
static size_t none_to_f32(const uint16_t *src, float *dst, size_t n)
{
    (void)src, (void)dst, (void)n;
    return 0;
}

static const stream_kernels stream_table[] = {
    [MMI_VEC_PORTABLE] = {none_dot, none_dot_half, none_dot_half, none_dot4, none_dot4_half,
                          none_dot4_half, none_to_f32, none_to_f32},
#ifdef HAVE_AVX2_VARIANTS
    [MMI_VEC_AVX2] = {dot_avx2, dot_f16_avx2, dot_bf16_avx2, dot4_avx2, dot4_f16_avx2,
                      dot4_bf16_avx2, f16_to_f32_avx2, bf16_to_f32_avx2},
    [MMI_VEC_AVX512] = {dot_avx512, dot_f16_avx512, dot_bf16_avx512, dot4_avx512,
                        dot4_f16_avx512, dot4_bf16_avx512, f16_to_f32_avx512,
                        bf16_to_f32_avx512},
#endif
};

int mmi_vec_simd_limit(int level)
{
    atomic_store(&simd_limit, level);
#ifdef HAVE_AVX2_VARIANTS
    return level_in_use();
#else
    return MMI_VEC_PORTABLE;
#endif
}

#ifdef HAVE_AVX2_VARIANTS
#  define SIMD(call) (use_avx2() ? (call) : 0)
#  define STREAM (&stream_table[level_in_use()])
#else
#  define SIMD(call) ((size_t)0)
#  define STREAM (&stream_table[MMI_VEC_PORTABLE])
#endif

void mmi_vec_x_sigmoid(float *x, size_t n, float a, float b)
{
    size_t i = SIMD(x_sigmoid_avx2(x, n, a, b));
    x_sigmoid_c(x + i, n - i, a, b);
}

void mmi_vec_swiglu(float *gate, const float *up, size_t n)
{
    size_t i = SIMD(swiglu_avx2(gate, up, n));
    swiglu_c(gate + i, up + i, n - i);
}

float mmi_vec_max(const float *x, size_t n)
{
    float max = x[0];
    size_t i = SIMD(max_avx2(x, n, &max));
    return max_c(x + i, n - i, max);
}

float mmi_vec_exp_sum(float *x, size_t n, float shift)
{
    float head = 0.0f;
    size_t i = SIMD(exp_sum_avx2(x, n, shift, &head));
    return (float)(head + exp_sum_c(x + i, n - i, shift));
}

void mmi_vec_scale(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

float mmi_vec_dot(const float *w, const float *x, size_t n)
{
    float head = 0.0f;
    size_t i = STREAM->dot(w, x, n, &head);
    return head + dot_c(w + i, x + i, n - i);
}

float mmi_vec_dot_f16(const uint16_t *w, const float *x, size_t n)
{
    float head = 0.0f;
    size_t i = STREAM->dot_f16(w, x, n, &head);
    return head + dot_f16_c(w + i, x + i, n - i);
}

float mmi_vec_dot_bf16(const uint16_t *w, const float *x, size_t n)
{
    float head = 0.0f;
    size_t i = STREAM->dot_bf16(w, x, n, &head);
    return head + dot_bf16_c(w + i, x + i, n - i);
}

#define DOT4(name, type, kernel, tail)                                                       \
    void name(const type *w, size_t stride, const float *x, size_t n, float out[4])          \
    {                                                                                         \
        float head[4] = {0, 0, 0, 0};                                                         \
        size_t i = STREAM->kernel(w, stride, x, n, head);                                     \
        for (int r = 0; r < 4; r++)                                                           \
            out[r] = head[r] + tail(w + r * stride + i, x + i, n - i);                        \
    }
DOT4(mmi_vec_dot4, float, dot4, dot_c)
DOT4(mmi_vec_dot4_f16, uint16_t, dot4_f16, dot_f16_c)
DOT4(mmi_vec_dot4_bf16, uint16_t, dot4_bf16, dot_bf16_c)

void mmi_vec_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = STREAM->f16_to_f32(src, dst, n); i < n; i++)
        dst[i] = mmi_f16_to_f32(src[i]);
}

void mmi_vec_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = STREAM->bf16_to_f32(src, dst, n); i < n; i++)
        dst[i] = mmi_bf16_to_f32(src[i]);
}

void mmi_vec_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = mmi_f32_to_bf16(src[i]);
}

/* Through f32 in blocks on the stack: every f16 value is exact in f32. */
void mmi_vec_f16_to_bf16(const uint16_t *src, uint16_t *dst, size_t n)
{
    float block[256];
    for (size_t i = 0; i < n; i += 256) {
        size_t len = n - i < 256 ? n - i : 256;
        mmi_vec_f16_to_f32(src + i, block, len);
        mmi_vec_f32_to_bf16(block, dst + i, len);
    }
}

int mmi_vec_has_bf16_products(void)
{
#ifdef HAVE_AVX2_VARIANTS
    unsigned eax, ebx, ecx, edx;
    return cpu_level() >= MMI_VEC_AVX512 && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) &&
           (eax & (1u << 5));
#else
    return 0;
#endif
}

void mmi_vec_axpy(float *y, float a, const float *x, size_t n)
{
    for (size_t i = SIMD(axpy_avx2(y, a, x, n)); i < n; i++)
        y[i] += a * x[i];
}
