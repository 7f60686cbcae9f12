/* Dot kernels for x86 (see quant.h): AVX2, and AVX512-VNNI for Q8_0 / Q4_0, chosen at run time
 * by mmi_quant_kernels. The build needs no -march: each function carries its own target.
 *
 * Only the integer sums of a block are vectorised; the block's float terms are formed and
 * accumulated exactly as the portable kernels do (same expressions, same order, block scales
 * converted with F16C, which is exact; no contraction under -std=c11), so both give
 * bit-identical results. (The order matters beyond the last bit: a later layer quantizes its
 * input to Q8 again, and a value on a rounding boundary moves a whole step.) The activations
 * are Q8_0/Q8_K values in [-127, 127] (our quantizers never produce -128), so the 16-bit pair
 * sums of _mm256_maddubs_epi16 (at most 2 * 128 * 127 here) cannot saturate. */
#include "quant.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#include "quant_block.h"
#include "vec.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))

AVX2 static inline int32_t hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* The horizontal sums of four vectors at once: out[k] = sum of v[k]'s lanes. */
AVX2 static inline void hsum4_i32(__m256i v0, __m256i v1, __m256i v2, __m256i v3, int32_t out[4])
{
    __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    _mm_storeu_si128((__m128i *)out, s);
}

/* A little-endian f16 at p, by F16C (exact, as mmi_f16_at). */
AVX2 static inline float f16_at(const uint8_t *p)
{
    return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8));
}

/* Sums of signed w * signed x over each 4 bytes, as 8 int32 (|w| times x with w's sign). */
AVX2 static inline __m256i dot_i8(__m256i w, __m256i x)
{
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* The same in one VNNI instruction (no 16-bit intermediate). */
VNNI static inline __m256i dot_i8_vnni(__m256i w, __m256i x)
{
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w),
                               _mm256_sign_epi8(x, w));
}

AVX2 static inline __m256i load32(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* 32 nibbles of a Q4_0-style block: low nibbles are values 0..15, high ones 16..31. */
AVX2 static inline __m256i nibbles(const uint8_t *qs)
{
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i mask = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask), _mm_and_si128(q, mask));
}

/* Q8_0 and Q4_0 against Q8_0, four blocks' integer sums reduced together; with AVX2's
 * maddubs + madd, or AVX512-VNNI's dpbusd. */
#define DOT_Q8_0(fn, target, dot_i8, bytes, values)                                        \
    target static float fn(const void *w, const void *xq, size_t n)                       \
    {                                                                                      \
        const uint8_t *b = w, *x = xq;                                                     \
        float sum = 0.0f;                                                                  \
        for (; n >= 128; n -= 128) {                                                       \
            int32_t s[4];                                                                  \
            hsum4_i32(dot_i8(values(b), load32(x + 2)),                                    \
                      dot_i8(values(b + (bytes)), load32(x + 36)),                         \
                      dot_i8(values(b + 2 * (bytes)), load32(x + 70)),                     \
                      dot_i8(values(b + 3 * (bytes)), load32(x + 104)), s);                \
            for (int k = 0; k < 4; k++, b += (bytes), x += 34)                             \
                sum += (float)s[k] * (f16_at(b) * f16_at(x));                              \
        }                                                                                  \
        for (; n; n -= 32, b += (bytes), x += 34)                                          \
            sum += (float)hsum_i32(dot_i8(values(b), load32(x + 2))) *                     \
                   (f16_at(b) * f16_at(x));                                                \
        return sum;                                                                        \
    }

AVX2 static inline __m256i q8_0_values(const uint8_t *b)
{
    return load32(b + 2);
}

AVX2 static inline __m256i q4_0_values(const uint8_t *b)
{
    return _mm256_sub_epi8(nibbles(b + 2), _mm256_set1_epi8(8));
}

DOT_Q8_0(dot_q8_0_avx2, AVX2, dot_i8, 34, q8_0_values)
DOT_Q8_0(dot_q4_0_avx2, AVX2, dot_i8, 18, q4_0_values)
DOT_Q8_0(dot_q8_0_vnni, VNNI, dot_i8_vnni, 34, q8_0_values)
DOT_Q8_0(dot_q4_0_vnni, VNNI, dot_i8_vnni, 18, q4_0_values)

/* Q4_K / Q5_K: unsigned values 0..15 (0..31) by group of 32, times the group's scale; the
 * mins against the activation sums. qh: Q5_K's 5th bits, or NULL. */
AVX2 static inline float k4_block_avx2(const uint8_t *b, const uint8_t *qs, const uint8_t *qh,
                                       const uint8_t *x)
{
    __m256i sums = _mm256_setzero_si256(), mask = _mm256_set1_epi8(15);
    __m256i one = _mm256_set1_epi8(1), high = qh ? load32(qh) : _mm256_setzero_si256();
    int32_t imin = 0;
    for (int j = 0; j < 8; j += 2, qs += 32) {
        int sc0, mn0, sc1, mn1;
        mmi_k4_scale_min(b + 4, j, &sc0, &mn0);
        mmi_k4_scale_min(b + 4, j + 1, &sc1, &mn1);
        __m256i q = load32(qs);
        __m256i lo = _mm256_and_si256(q, mask);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
        if (qh) {
            __m256i h0 = _mm256_and_si256(_mm256_srl_epi16(high, _mm_cvtsi32_si128(j)), one);
            __m256i h1 = _mm256_and_si256(_mm256_srl_epi16(high, _mm_cvtsi32_si128(j + 1)), one);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(h0, 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(h1, 4));
        }
        __m256i p0 = _mm256_maddubs_epi16(lo, load32(x + 4 + 32 * j));
        __m256i p1 = _mm256_maddubs_epi16(hi, load32(x + 4 + 32 * (j + 1)));
        sums = _mm256_add_epi32(sums, _mm256_madd_epi16(p0, _mm256_set1_epi16((int16_t)sc0)));
        sums = _mm256_add_epi32(sums, _mm256_madd_epi16(p1, _mm256_set1_epi16((int16_t)sc1)));
        imin += mn0 * (mmi_q8_k_bsum(x, 2 * j) + mmi_q8_k_bsum(x, 2 * j + 1)) +
                mn1 * (mmi_q8_k_bsum(x, 2 * j + 2) + mmi_q8_k_bsum(x, 2 * j + 3));
    }
    float dx = mmi_q8_k_d(x);
    return dx * f16_at(b) * (float)hsum_i32(sums) - dx * f16_at(b + 2) * (float)imin;
}

AVX2 static float dot_q4_k_avx2(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    float sum = 0.0f;
    for (; n; n -= 256, b += 144, x += 292)
        sum += k4_block_avx2(b, b + 16, NULL, x);
    return sum;
}

AVX2 static float dot_q5_k_avx2(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    float sum = 0.0f;
    for (; n; n -= 256, b += 176, x += 292)
        sum += k4_block_avx2(b, b + 48, b + 16, x);
    return sum;
}

/* Q6_K: values u = q + 32 in 0..63, so sum(q x) = sum(u x) - 32 sum(x), the latter from the
 * activation's group sums. */
AVX2 static float dot_q6_k_avx2(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    float sum = 0.0f;
    for (; n; n -= 256, b += 210, x += 292) {
        const int8_t *sc = (const int8_t *)b + 192;
        __m256i sums = _mm256_setzero_si256();
        int32_t offset = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            __m256i l0 = load32(ql), l1 = load32(ql + 32), hb = load32(qh);
            __m256i u[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4),
                                _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4)),
            };
            for (int k = 0; k < 4; k++) {
                int g = 8 * h + 2 * k;
                __m256i p = _mm256_maddubs_epi16(u[k], load32(x + 4 + 16 * g));
                __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]));
                sums = _mm256_add_epi32(sums, _mm256_madd_epi16(p, s));
                offset += sc[g] * mmi_q8_k_bsum(x, g) + sc[g + 1] * mmi_q8_k_bsum(x, g + 1);
            }
        }
        sum += mmi_q8_k_d(x) * f16_at(b + 208) * (float)(hsum_i32(sums) - 32 * offset);
    }
    return sum;
}

void mmi_quant_kernels_x86(mmi_kernels *k)
{
    if (!mmi_cpu_has_avx2())
        return;
    k->dot[MMI_TENSOR_Q8_0] = dot_q8_0_avx2;
    k->dot[MMI_TENSOR_Q4_0] = dot_q4_0_avx2;
    k->dot[MMI_TENSOR_Q4_K] = dot_q4_k_avx2;
    k->dot[MMI_TENSOR_Q5_K] = dot_q5_k_avx2;
    k->dot[MMI_TENSOR_Q6_K] = dot_q6_k_avx2;
    k->isa = "avx2";
    if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512vl") ||
        !__builtin_cpu_supports("avx512bw"))
        return;
    k->dot[MMI_TENSOR_Q8_0] = dot_q8_0_vnni;
    k->dot[MMI_TENSOR_Q4_0] = dot_q4_0_vnni;
    k->isa = "avx512vnni";
}

#else

void mmi_quant_kernels_x86(mmi_kernels *k)
{
    (void)k;
}

#endif
