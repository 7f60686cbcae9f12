/* The type table, dequantization, the reference quantizers and the portable dot kernels (see
 * quant.h). Block layouts and formulas are ggml's, as ggml-common.h and ggml-quants.c define
 * them; the code is our own. */
#include "quant.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "half.h"
#include "quant_block.h"

/* ---- dequantization ---- */

static void f32_to_f32(const void *src, float *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

static void f16_to_f32(const void *src, float *dst, size_t n)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = mmi_f16_at(p + 2 * i);
}

static void bf16_to_f32(const void *src, float *dst, size_t n)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = mmi_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
}

/* Q4_0: f16 d, 16 bytes of nibbles; low nibbles are values 0..15, high ones 16..31; x = d (q-8). */
static void q4_0_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 32, b += 18, y += 32) {
        float d = mmi_f16_at(b);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 15) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
    }
}

/* Q4_1: f16 d, f16 m, nibbles as Q4_0; x = d q + m. */
static void q4_1_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 32, b += 20, y += 32) {
        float d = mmi_f16_at(b), m = mmi_f16_at(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(b[4 + j] & 15) * d + m;
            y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
        }
    }
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q5_0: f16 d, u32 qh (bit j: 5th bit of value j), nibbles as Q4_0; x = d (q-16). */
static void q5_0_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 32, b += 22, y += 32) {
        float d = mmi_f16_at(b);
        uint32_t qh = le32(b + 2);
        for (int j = 0; j < 16; j++) {
            int lo = (b[6 + j] & 15) | (int)((qh >> j) & 1) << 4;
            int hi = (b[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

/* Q5_1: f16 d, f16 m, u32 qh, nibbles; x = d q + m. */
static void q5_1_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 32, b += 24, y += 32) {
        float d = mmi_f16_at(b), m = mmi_f16_at(b + 2);
        uint32_t qh = le32(b + 4);
        for (int j = 0; j < 16; j++) {
            int lo = (b[8 + j] & 15) | (int)((qh >> j) & 1) << 4;
            int hi = (b[8 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)lo * d + m;
            y[j + 16] = (float)hi * d + m;
        }
    }
}

/* Q8_0: f16 d, 32 int8; x = d q. */
static void q8_0_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 32, b += 34, y += 32) {
        float d = mmi_f16_at(b);
        for (int j = 0; j < 32; j++)
            y[j] = (float)(int8_t)b[2 + j] * d;
    }
}

/* Q8_1: f16 d, f16 s (= d * sum of q), 32 int8; x = d q. */
static void q8_1_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 32, b += 36, y += 32) {
        float d = mmi_f16_at(b);
        for (int j = 0; j < 32; j++)
            y[j] = (float)(int8_t)b[4 + j] * d;
    }
}

/* Q2_K: 16 bytes of (4-bit scale | 4-bit min << 4) for 16 groups of 16, 64 bytes of 2-bit
 * values, f16 d, f16 dmin; x = d scale q - dmin min. Each 32 bytes of qs hold 128 values:
 * bits 2s..2s+1 of byte l are value 32s + l. */
static void q2_k_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 256, b += 84) {
        float d = mmi_f16_at(b + 80), dmin = mmi_f16_at(b + 82);
        const uint8_t *sc = b, *q = b + 16;
        for (int half = 0; half < 2; half++, q += 32)
            for (int shift = 0; shift < 8; shift += 2)
                for (int g = 0; g < 2; g++, sc++) {
                    float dl = d * (float)(*sc & 15), ml = dmin * (float)(*sc >> 4);
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (float)((q[16 * g + l] >> shift) & 3) - ml;
                }
    }
}

/* The 6-bit scale j (0..15) of a Q3_K block: low 4 bits in scales[0..7] (low nibbles for
 * j < 8, high nibbles for j >= 8), high 2 bits in scales[8..11]. */
static int q3_k_scale(const uint8_t *s, int j)
{
    int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Q3_K: 32 bytes hmask, 64 bytes of 2-bit values, 12 bytes of 6-bit scales, f16 d;
 * x = d (scale-32) (q - (high bit clear ? 4 : 0)). */
static void q3_k_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 256, b += 110) {
        float d = mmi_f16_at(b + 108);
        const uint8_t *hm = b, *q = b + 32, *s = b + 96;
        int is = 0, m = 1;
        for (int half = 0; half < 2; half++, q += 32)
            for (int shift = 0; shift < 8; shift += 2, m <<= 1)
                for (int g = 0; g < 2; g++) {
                    float dl = d * (float)q3_k_scale(s, is++);
                    for (int l = 16 * g; l < 16 * g + 16; l++)
                        *y++ = dl * (float)(((q[l] >> shift) & 3) - (hm[l] & m ? 0 : 4));
                }
    }
}

/* Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles; each 32 bytes hold two groups
 * of 32 (low nibbles, then high); x = d sc q - dmin m. */
static void q4_k_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 256, b += 144) {
        float d = mmi_f16_at(b), dmin = mmi_f16_at(b + 2);
        const uint8_t *q = b + 16;
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc, mn;
            mmi_k4_scale_min(b + 4, j, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            mmi_k4_scale_min(b + 4, j + 1, &sc, &mn);
            float d2 = d * (float)sc, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 15) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: as Q4_K plus 32 bytes qh after the scales: bit j of qh[l] is the 5th bit of value
 * 32 j + l. */
static void q5_k_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 256, b += 176) {
        float d = mmi_f16_at(b), dmin = mmi_f16_at(b + 2);
        const uint8_t *qh = b + 16, *q = b + 48;
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc, mn;
            mmi_k4_scale_min(b + 4, j, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            mmi_k4_scale_min(b + 4, j + 1, &sc, &mn);
            float d2 = d * (float)sc, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((q[l] & 15) + ((qh[l] >> j) & 1) * 16) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((q[l] >> 4) + ((qh[l] >> (j + 1)) & 1) * 16) - m2;
        }
    }
}

/* The value i (0..255) of a Q6_K block, -32..31: low 4 bits from ql, high 2 from qh. Within
 * each half of 128 values, value 32 k + l takes nibble k/2 of ql[l + 32 (k%2)] and bits 2k of
 * qh[l]. */
static int q6_k_value(const uint8_t *b, int i)
{
    const uint8_t *ql = b + 64 * (i / 128), *qh = b + 128 + 32 * (i / 128);
    int k = (i % 128) / 32, l = i % 32;
    int lo = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 15;
    int hi = (qh[l] >> (2 * k)) & 3;
    return (lo | hi << 4) - 32;
}

/* Q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales (one per 16 values), f16 d; x = d sc q. */
static void q6_k_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 256, b += 210, y += 256) {
        float d = mmi_f16_at(b + 208);
        for (int i = 0; i < 256; i++)
            y[i] = d * (float)(int8_t)b[192 + i / 16] * (float)q6_k_value(b, i);
    }
}

/* Q8_K: f32 d, 256 int8, 16 int16 sums of 16 values; x = d q. */
static void q8_k_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 256, b += 292, y += 256) {
        float d = mmi_bits_f32(le32(b));
        for (int j = 0; j < 256; j++)
            y[j] = d * (float)(int8_t)b[4 + j];
    }
}

/* The 16 values of IQ4_NL / IQ4_XS codes: a non-linear 4-bit grid. */
static const int8_t iq4_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

/* IQ4_NL: f16 d, 16 bytes of codes as Q4_0; x = d grid[q]. */
static void iq4_nl_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 32, b += 18, y += 32) {
        float d = mmi_f16_at(b);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)iq4_grid[b[2 + j] & 15];
            y[j + 16] = d * (float)iq4_grid[b[2 + j] >> 4];
        }
    }
}

/* The 6-bit scale (minus 32) of group j (0..7) of an IQ4_XS block: low 4 bits from
 * scales_l (bytes 4..7), high 2 from the u16 scales_h (bytes 2..3). */
static int iq4_xs_scale(const uint8_t *b, int j)
{
    int hi = ((b[2] | b[3] << 8) >> (2 * j)) & 3;
    return (((b[4 + j / 2] >> (4 * (j % 2))) & 15) | hi << 4) - 32;
}

/* IQ4_XS: f16 d, scales, 128 bytes of codes, 16 per group of 32 as IQ4_NL; x = d scale grid[q]. */
static void iq4_xs_to_f32(const void *src, float *y, size_t n)
{
    for (const uint8_t *b = src; n; n -= 256, b += 136)
        for (int j = 0; j < 8; j++, y += 32) {
            float dl = mmi_f16_at(b) * (float)iq4_xs_scale(b, j);
            const uint8_t *q = b + 8 + 16 * j;
            for (int l = 0; l < 16; l++) {
                y[l] = dl * (float)iq4_grid[q[l] & 15];
                y[l + 16] = dl * (float)iq4_grid[q[l] >> 4];
            }
        }
}

/* ---- reference quantizers (ggml's deterministic rounding) ---- */

static void put_f16(uint8_t *p, float v)
{
    uint16_t h = mmi_f32_to_f16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* The value of largest magnitude (the first of equal magnitudes), keeping its sign. */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static void f32_from_f32(const float *src, void *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

static void f16_from_f32(const float *src, void *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_f16((uint8_t *)dst + 2 * i, src[i]);
}

static void bf16_from_f32(const float *src, void *dst, size_t n)
{
    uint8_t *p = dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = mmi_f32_to_bf16(src[i]);
        p[2 * i] = (uint8_t)h;
        p[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* Symmetric 4/5-bit: d = max / -2^(bits-1), q = trunc(x/d + 2^(bits-1) + 0.5) capped. */
static void q4_0_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 32, b += 18, x += 32) {
        float d = signed_absmax(x, 32) / -8, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < 16; j++) {
            int lo = (int8_t)(x[j] * id + 8.5f), hi = (int8_t)(x[j + 16] * id + 8.5f);
            b[2 + j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
        }
    }
}

static void q5_0_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 32, b += 22, x += 32) {
        float d = signed_absmax(x, 32) / -16, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (int8_t)(x[j] * id + 16.5f), hi = (int8_t)(x[j + 16] * id + 16.5f);
            lo = lo < 31 ? lo : 31;
            hi = hi < 31 ? hi : 31;
            b[6 + j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; k++)
            b[2 + k] = (uint8_t)(qh >> 8 * k);
    }
}

/* Asymmetric: d = (max - min) / (2^bits - 1), m = min, q = trunc((x - min)/d + 0.5). */
static void minmax(const float *x, int n, float *min, float *max)
{
    *min = INFINITY;
    *max = -INFINITY;
    for (int j = 0; j < n; j++) {
        *min = x[j] < *min ? x[j] : *min;
        *max = x[j] > *max ? x[j] : *max;
    }
}

static void q4_1_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 32, b += 20, x += 32) {
        float min, max;
        minmax(x, 32, &min, &max);
        float d = (max - min) / 15, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        put_f16(b + 2, min);
        for (int j = 0; j < 16; j++) {
            int lo = (int8_t)((x[j] - min) * id + 0.5f), hi = (int8_t)((x[j + 16] - min) * id + 0.5f);
            b[4 + j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
        }
    }
}

static void q5_1_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 32, b += 24, x += 32) {
        float min, max;
        minmax(x, 32, &min, &max);
        float d = (max - min) / 31, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        put_f16(b + 2, min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (uint8_t)((x[j] - min) * id + 0.5f), hi = (uint8_t)((x[j + 16] - min) * id + 0.5f);
            b[8 + j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            qh |= (uint32_t)((lo >> 4) & 1) << j | (uint32_t)((hi >> 4) & 1) << (j + 16);
        }
        for (int k = 0; k < 4; k++)
            b[4 + k] = (uint8_t)(qh >> 8 * k);
    }
}

/* Q8_0 / Q8_1: d = amax / 127, q = round(x / d) half away from zero. Q8_1 also stores
 * s = d * sum(q), which its dot kernels use for the weight's min term. */
static void q8_from_f32(const float *x, uint8_t *b, float *d_out, int *sum)
{
    float amax = fabsf(signed_absmax(x, 32));
    float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    *d_out = d;
    *sum = 0;
    for (int j = 0; j < 32; j++) {
        int q = (int)roundf(x[j] * id);
        b[j] = (uint8_t)(int8_t)q;
        *sum += q;
    }
}

static void q8_0_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 32, b += 34, x += 32) {
        float d;
        int sum;
        q8_from_f32(x, b + 2, &d, &sum);
        put_f16(b, d);
    }
}

static void q8_1_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 32, b += 36, x += 32) {
        float d;
        int sum;
        q8_from_f32(x, b + 4, &d, &sum);
        put_f16(b, d);
        put_f16(b + 2, (float)sum * d);
    }
}

/* Round to nearest, ties to even (the FPU's mode), for |v| < 2^22. */
static int nearest_int(float v)
{
    return (int)lrintf(v);
}

/* Q8_K: d = max / -127 (max the signed value of largest magnitude), q = round(x / d) capped at
 * 127, and the sums of each 16 values. */
static void q8_k_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 256, b += 292, x += 256) {
        memset(b, 0, 292);
        float max = signed_absmax(x, 256);
        if (max == 0.0f)
            continue;
        float iscale = -127.0f / max;
        for (int j = 0; j < 256; j++) {
            int q = nearest_int(iscale * x[j]);
            b[4 + j] = (uint8_t)(int8_t)(q < 127 ? q : 127);
        }
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += (int8_t)b[4 + 16 * g + l];
            b[260 + 2 * g] = (uint8_t)sum;
            b[261 + 2 * g] = (uint8_t)((unsigned)sum >> 8);
        }
        uint32_t d = mmi_f32_bits(1.0f / iscale);
        for (int k = 0; k < 4; k++)
            b[k] = (uint8_t)(d >> 8 * k);
    }
}

/* ---- K-quant quantizers (ggml's reference search, without an importance matrix) ---- */

/* Asymmetric levels 0..nmax for n values with weights w: scale and offset (returned as
 * *neg_min = -offset >= 0) chosen by least squares over a sweep of nstep + 1 trial scales,
 * starting from the min/max grid; L receives the levels. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        min = x[i] < min ? x[i] : min;
        max = x[i] > max ? x[i] : max;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * L[i] + min - x[i];
        best_error += w[i] * diff * diff;
    }
    uint8_t trial[32];
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + rdelta * step + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            trial[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
            sum_l += w[i] * trial[i];
            sum_l2 += w[i] * trial[i] * trial[i];
            sum_xl += w[i] * trial[i] * x[i];
        }
        float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det <= 0)
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float error = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * trial[i] + this_min - x[i];
            error += w[i] * diff * diff;
        }
        if (error < best_error) {
            memcpy(L, trial, (size_t)n);
            best_error = error;
            scale = this_scale;
            min = this_min;
        }
    }
    *neg_min = -min;
    return scale;
}

/* Q4_K (nmax 15) and Q5_K (nmax 31): a scale and min per group of 32 by fit_scale_min with
 * weights rms + |x|, both quantized to 6 bits against the block's largest, then the values
 * requantized with the stored scales. L receives the 256 levels. */
static void k4_quantize_block(const float *x, int nmax, float rmin, int nstep, uint8_t *b,
                              uint8_t L[256])
{
    float scales[8], mins[8], w[32], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
        max_scale = scales[j] > max_scale ? scales[j] : max_scale;
        max_min = mins[j] > max_min ? mins[j] : max_min;
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t *s = b + 4;
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = nearest_int(inv_scale * scales[j]), lm = nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            s[j] = (uint8_t)ls;
            s[j + 4] = (uint8_t)lm;
        } else {
            s[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
            s[j - 4] |= (uint8_t)((ls >> 4) << 6);
            s[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    put_f16(b, max_scale / 63);
    put_f16(b + 2, max_min / 63);
    float d_all = mmi_f16_at(b), dmin_all = mmi_f16_at(b + 2);
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        mmi_k4_scale_min(s, j, &sc, &mn);
        float d = d_all * (float)sc;
        if (!d)
            continue;
        float dm = dmin_all * (float)mn;
        for (int l = 0; l < 32; l++) {
            int q = nearest_int((x[32 * j + l] + dm) / d);
            L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
        }
    }
}

static void q4_k_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 256, b += 144, x += 256) {
        uint8_t L[256];
        k4_quantize_block(x, 15, -1.0f, 20, b, L);
        for (int j = 0; j < 256; j += 64)
            for (int l = 0; l < 32; l++)
                b[16 + j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
    }
}

static void q5_k_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 256, b += 176, x += 256) {
        uint8_t L[256];
        k4_quantize_block(x, 31, -0.5f, 15, b, L);
        uint8_t *qh = b + 16, *ql = b + 48;
        memset(qh, 0, 32);
        for (int j = 0; j < 256; j += 64)
            for (int l = 0; l < 32; l++) {
                int lo = L[j + l], hi = L[j + l + 32];
                ql[j / 2 + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                qh[l] |= (uint8_t)((lo >> 4) << (j / 32) | (hi >> 4) << (j / 32 + 1));
            }
    }
}

/* Symmetric levels -nmax..nmax-1 for n values, weighted by x^2: the scale with the least
 * weighted error over 19 trial scales around nmax / max. L receives level + nmax. */
static float fit_scale_symmetric(int n, int nmax, const float *x, uint8_t *L)
{
    float max = signed_absmax(x, n);
    if (fabsf(max) < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float best = 0, scale = 0;
    for (int step = 0; step <= 19; step++) {
        int is = step == 0 ? 0 : step <= 9 ? step - 10 : step - 9; /* 0, then -9..-1, 1..9 */
        float iscale = -(nmax + 0.1f * (float)is) / max;
        float sum_lx = 0, sum_l2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sum_lx += w * x[i] * (float)l;
            sum_l2 += w * (float)l * (float)l;
        }
        if (step == 0 || (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2)) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (uint8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sum_l2 ? sum_lx / sum_l2 : 0.0f;
            best = scale * sum_lx;
        }
    }
    return scale;
}

/* Q6_K: a scale per group of 16 by fit_scale_symmetric, quantized to int8 against the block's
 * largest (d = max / -128), then the values requantized with the stored scales. */
static void q6_k_from_f32(const float *x, void *dst, size_t n)
{
    for (uint8_t *b = dst; n; n -= 256, b += 210, x += 256) {
        uint8_t L[256];
        float scales[16], max_scale = 0, max_abs = 0;
        for (int g = 0; g < 16; g++) {
            scales[g] = fit_scale_symmetric(16, 32, x + 16 * g, L + 16 * g);
            if (fabsf(scales[g]) > max_abs) {
                max_abs = fabsf(scales[g]);
                max_scale = scales[g];
            }
        }
        memset(b, 0, 210);
        if (max_abs < 1e-15f)
            continue;
        float iscale = -128.0f / max_scale;
        put_f16(b + 208, 1 / iscale);
        for (int g = 0; g < 16; g++) {
            int s = nearest_int(iscale * scales[g]);
            b[192 + g] = (uint8_t)(int8_t)(s < 127 ? s : 127);
        }
        for (int g = 0; g < 16; g++) {
            float d = mmi_f16_at(b + 208) * (float)(int8_t)b[192 + g];
            if (!d)
                continue;
            for (int l = 0; l < 16; l++) {
                int q = nearest_int(x[16 * g + l] / d);
                L[16 * g + l] = (uint8_t)(32 + (q < -32 ? -32 : q > 31 ? 31 : q));
            }
        }
        for (int h = 0; h < 2; h++) {
            const uint8_t *Lh = L + 128 * h;
            uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 15) | (Lh[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 15) | (Lh[l + 96] & 15) << 4);
                qh[l] = (uint8_t)(Lh[l] >> 4 | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 |
                                  (Lh[l + 96] >> 4) << 6);
            }
        }
    }
}

/* ---- portable dot kernels ----
 * Each block's integer sum is exact; the blocks are accumulated in float, in order. */

/* Sum of w[i] * x[i] over n int8 pairs. */
static int32_t isum8(const int8_t *w, const int8_t *x, int n)
{
    int32_t s = 0;
    for (int i = 0; i < n; i++)
        s += w[i] * x[i];
    return s;
}

/* The 32 values of a Q4_0/Q4_1/Q5_0/Q5_1/IQ4_NL-style block of nibbles, with the 5th bits
 * from qh (NULL: none), mapped through grid (NULL: minus `offset`). */
static void unpack_nibbles(const uint8_t *qs, const uint8_t *qh, const int8_t *grid, int offset,
                           int8_t q[32])
{
    uint32_t h = qh ? le32(qh) : 0;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 15) | (int)((h >> j) & 1) << 4;
        int hi = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
        q[j] = (int8_t)(grid ? grid[lo] : lo - offset);
        q[j + 16] = (int8_t)(grid ? grid[hi] : hi - offset);
    }
}

/* Weight block formats against Q8_0 (f16 d, 32 int8): x = d_w d_x sum(q_w q_x). */
#define DOT_Q8_0(fn, bytes, qh_at, grid, offset)                                       \
    static float fn(const void *w, const void *xq, size_t n)                            \
    {                                                                                    \
        const uint8_t *b = w, *x = xq;                                                   \
        float sum = 0.0f;                                                                \
        for (; n; n -= 32, b += (bytes), x += 34) {                                      \
            int8_t q[32];                                                                \
            unpack_nibbles(b + 2 + ((qh_at) ? 4 : 0), (qh_at) ? b + (qh_at) : NULL, grid, \
                           offset, q);                                                   \
            sum += (float)isum8(q, (const int8_t *)x + 2, 32) *                          \
                   (mmi_f16_at(b) * mmi_f16_at(x));                                      \
        }                                                                                \
        return sum;                                                                      \
    }

DOT_Q8_0(dot_q4_0, 18, 0, NULL, 8)
DOT_Q8_0(dot_q5_0, 22, 2, NULL, 16)
DOT_Q8_0(dot_iq4_nl, 18, 0, iq4_grid, 0)

static float dot_q8_0(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    float sum = 0.0f;
    for (; n; n -= 32, b += 34, x += 34)
        sum += (float)isum8((const int8_t *)b + 2, (const int8_t *)x + 2, 32) *
               (mmi_f16_at(b) * mmi_f16_at(x));
    return sum;
}

/* Q4_1/Q5_1 against Q8_1 (f16 d, f16 s = d sum(q), 32 int8): d_w d_x sum(q_w q_x) + m_w s_x. */
#define DOT_Q8_1(fn, bytes, qh_at)                                                       \
    static float fn(const void *w, const void *xq, size_t n)                            \
    {                                                                                    \
        const uint8_t *b = w, *x = xq;                                                   \
        float sum = 0.0f;                                                                \
        for (; n; n -= 32, b += (bytes), x += 36) {                                      \
            int8_t q[32];                                                                \
            unpack_nibbles(b + 4 + ((qh_at) ? 4 : 0), (qh_at) ? b + (qh_at) : NULL, NULL, \
                           0, q);                                                        \
            sum += (float)isum8(q, (const int8_t *)x + 4, 32) *                          \
                       (mmi_f16_at(b) * mmi_f16_at(x)) +                                 \
                   mmi_f16_at(b + 2) * mmi_f16_at(x + 2);                                \
        }                                                                                \
        return sum;                                                                      \
    }

DOT_Q8_1(dot_q4_1, 20, 0)
DOT_Q8_1(dot_q5_1, 24, 4)

/* The K types against Q8_K (f32 d, 256 int8, int16 sums of each 16): per block
 * d_w d_x sum_g(scale_g sum(q_w q_x)) - dmin_w d_x sum_g(min_g sum_g(q_x)). */
static float dot_q2_k(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    float sum = 0.0f;
    for (; n; n -= 256, b += 84, x += 292) {
        int8_t q[256];
        const uint8_t *qs = b + 16;
        for (int i = 0; i < 256; i++)
            q[i] = (int8_t)((qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3);
        int32_t isum = 0, imin = 0;
        for (int g = 0; g < 16; g++) {
            isum += (b[g] & 15) * isum8(q + 16 * g, (const int8_t *)x + 4 + 16 * g, 16);
            imin += (b[g] >> 4) * mmi_q8_k_bsum(x, g);
        }
        float dx = mmi_q8_k_d(x);
        sum += dx * mmi_f16_at(b + 80) * (float)isum - dx * mmi_f16_at(b + 82) * (float)imin;
    }
    return sum;
}

static float dot_q3_k(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    float sum = 0.0f;
    for (; n; n -= 256, b += 110, x += 292) {
        int8_t q[256];
        const uint8_t *hm = b, *qs = b + 32;
        for (int i = 0; i < 256; i++) {
            int k = (i % 128) / 32, l = i % 32;
            int v = (qs[32 * (i / 128) + l] >> (2 * k)) & 3;
            q[i] = (int8_t)(v - (hm[l] >> (4 * (i / 128) + k) & 1 ? 0 : 4));
        }
        int32_t isum = 0;
        for (int g = 0; g < 16; g++)
            isum += q3_k_scale(b + 96, g) * isum8(q + 16 * g, (const int8_t *)x + 4 + 16 * g, 16);
        sum += mmi_q8_k_d(x) * mmi_f16_at(b + 108) * (float)isum;
    }
    return sum;
}

/* Q4_K and Q5_K: 8 groups of 32 with 6-bit scales and mins. */
static float k4_block(const uint8_t *b, const int8_t q[256], const uint8_t *x)
{
    int32_t isum = 0, imin = 0;
    for (int g = 0; g < 8; g++) {
        int sc, mn;
        mmi_k4_scale_min(b + 4, g, &sc, &mn);
        isum += sc * isum8(q + 32 * g, (const int8_t *)x + 4 + 32 * g, 32);
        imin += mn * (mmi_q8_k_bsum(x, 2 * g) + mmi_q8_k_bsum(x, 2 * g + 1));
    }
    float dx = mmi_q8_k_d(x);
    return dx * mmi_f16_at(b) * (float)isum - dx * mmi_f16_at(b + 2) * (float)imin;
}

static float dot_q4_k(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    float sum = 0.0f;
    for (; n; n -= 256, b += 144, x += 292) {
        int8_t q[256];
        for (int i = 0; i < 256; i++)
            q[i] = (int8_t)((b[16 + 32 * (i / 64) + i % 32] >> (4 * ((i / 32) % 2))) & 15);
        sum += k4_block(b, q, x);
    }
    return sum;
}

static float dot_q5_k(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    float sum = 0.0f;
    for (; n; n -= 256, b += 176, x += 292) {
        int8_t q[256];
        for (int i = 0; i < 256; i++) {
            int lo = (b[48 + 32 * (i / 64) + i % 32] >> (4 * ((i / 32) % 2))) & 15;
            q[i] = (int8_t)(lo | ((b[16 + i % 32] >> (i / 32)) & 1) << 4);
        }
        sum += k4_block(b, q, x);
    }
    return sum;
}

static float dot_q6_k(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    float sum = 0.0f;
    for (; n; n -= 256, b += 210, x += 292) {
        int8_t q[256];
        for (int i = 0; i < 256; i++)
            q[i] = (int8_t)q6_k_value(b, i);
        int32_t isum = 0;
        for (int g = 0; g < 16; g++)
            isum += (int8_t)b[192 + g] * isum8(q + 16 * g, (const int8_t *)x + 4 + 16 * g, 16);
        sum += mmi_q8_k_d(x) * mmi_f16_at(b + 208) * (float)isum;
    }
    return sum;
}

static float dot_iq4_xs(const void *w, const void *xq, size_t n)
{
    const uint8_t *b = w, *x = xq;
    float sum = 0.0f;
    for (; n; n -= 256, b += 136, x += 292) {
        int32_t isum = 0;
        for (int g = 0; g < 8; g++) {
            int8_t q[32];
            unpack_nibbles(b + 8 + 16 * g, NULL, iq4_grid, 0, q);
            isum += iq4_xs_scale(b, g) * isum8(q, (const int8_t *)x + 4 + 32 * g, 32);
        }
        sum += mmi_q8_k_d(x) * mmi_f16_at(b) * (float)isum;
    }
    return sum;
}

/* ---- the table ---- */

#define TYPE(id, nm, be, bb, w, to, from, partner, s0, s1) \
    [id] = {nm, be, bb, w, to, from, partner, {s0, s1}}

static const mmi_type_traits types[MMI_TENSOR_COUNT] = {
    TYPE(MMI_TENSOR_F32, "F32", 1, 4, 1, f32_to_f32, f32_from_f32, MMI_TENSOR_F32, -1, -1),
    TYPE(MMI_TENSOR_F16, "F16", 1, 2, 1, f16_to_f32, f16_from_f32, MMI_TENSOR_F32, -1, -1),
    TYPE(MMI_TENSOR_BF16, "BF16", 1, 2, 1, bf16_to_f32, bf16_from_f32, MMI_TENSOR_F32, -1, -1),
    TYPE(MMI_TENSOR_Q4_0, "Q4_0", 32, 18, 1, q4_0_to_f32, q4_0_from_f32, MMI_TENSOR_Q8_0, 0, -1),
    TYPE(MMI_TENSOR_Q4_1, "Q4_1", 32, 20, 1, q4_1_to_f32, q4_1_from_f32, MMI_TENSOR_Q8_1, 0, 2),
    TYPE(MMI_TENSOR_Q5_0, "Q5_0", 32, 22, 1, q5_0_to_f32, q5_0_from_f32, MMI_TENSOR_Q8_0, 0, -1),
    TYPE(MMI_TENSOR_Q5_1, "Q5_1", 32, 24, 1, q5_1_to_f32, q5_1_from_f32, MMI_TENSOR_Q8_1, 0, 2),
    TYPE(MMI_TENSOR_Q8_0, "Q8_0", 32, 34, 1, q8_0_to_f32, q8_0_from_f32, MMI_TENSOR_Q8_0, 0, -1),
    TYPE(MMI_TENSOR_Q8_1, "Q8_1", 32, 36, 0, q8_1_to_f32, q8_1_from_f32, MMI_TENSOR_Q8_1, 0, 2),
    TYPE(MMI_TENSOR_Q2_K, "Q2_K", 256, 84, 1, q2_k_to_f32, NULL, MMI_TENSOR_Q8_K, 80, 82),
    TYPE(MMI_TENSOR_Q3_K, "Q3_K", 256, 110, 1, q3_k_to_f32, NULL, MMI_TENSOR_Q8_K, 108, -1),
    TYPE(MMI_TENSOR_Q4_K, "Q4_K", 256, 144, 1, q4_k_to_f32, q4_k_from_f32, MMI_TENSOR_Q8_K, 0, 2),
    TYPE(MMI_TENSOR_Q5_K, "Q5_K", 256, 176, 1, q5_k_to_f32, q5_k_from_f32, MMI_TENSOR_Q8_K, 0, 2),
    TYPE(MMI_TENSOR_Q6_K, "Q6_K", 256, 210, 1, q6_k_to_f32, q6_k_from_f32, MMI_TENSOR_Q8_K, 208, -1),
    TYPE(MMI_TENSOR_Q8_K, "Q8_K", 256, 292, 0, q8_k_to_f32, q8_k_from_f32, MMI_TENSOR_Q8_K, -1, -1),
    TYPE(MMI_TENSOR_IQ4_NL, "IQ4_NL", 32, 18, 1, iq4_nl_to_f32, NULL, MMI_TENSOR_Q8_0, 0, -1),
    TYPE(MMI_TENSOR_IQ4_XS, "IQ4_XS", 256, 136, 1, iq4_xs_to_f32, NULL, MMI_TENSOR_Q8_K, 0, -1),
    /* Types ggml defines that libmm does not read, named for messages (designated, so that
     * clang sees no missing initializer). */
    [16] = {.name = "IQ2_XXS"}, [17] = {.name = "IQ2_XS"}, [18] = {.name = "IQ3_XXS"},
    [19] = {.name = "IQ1_S"}, [21] = {.name = "IQ3_S"}, [22] = {.name = "IQ2_S"},
    [24] = {.name = "I8"}, [25] = {.name = "I16"}, [26] = {.name = "I32"}, [27] = {.name = "I64"},
    [28] = {.name = "F64"}, [29] = {.name = "IQ1_M"}, [34] = {.name = "TQ1_0"},
    [35] = {.name = "TQ2_0"}, [39] = {.name = "MXFP4"},
};

const mmi_type_traits *mmi_type(uint32_t type)
{
    static const mmi_type_traits unknown = {0};
    return type < MMI_TENSOR_COUNT ? &types[type] : &unknown;
}

const char *mmi_tensor_type_name(mmi_tensor_type type)
{
    const char *name = mmi_type(type)->name;
    return name ? name : "unknown";
}

size_t mmi_type_row_bytes(mmi_tensor_type type, size_t n)
{
    const mmi_type_traits *t = mmi_type(type);
    return t->block_elems ? n / t->block_elems * t->block_bytes : 0;
}

int mmi_type_scales_finite(mmi_tensor_type type, const void *data, size_t n_blocks)
{
    const mmi_type_traits *t = mmi_type(type);
    const uint8_t *b = data;
    for (size_t i = 0; i < n_blocks; i++, b += t->block_bytes)
        for (int k = 0; k < 2; k++)
            if (t->scale_at[k] >= 0 && (b[t->scale_at[k] + 1] & 0x7c) == 0x7c)
                return 0; /* exponent all ones: inf or nan */
    return 1;
}

/* ---- kernel choice ---- */

static const mmi_kernels portable = {
    .dot = {[MMI_TENSOR_Q4_0] = dot_q4_0, [MMI_TENSOR_Q4_1] = dot_q4_1,
            [MMI_TENSOR_Q5_0] = dot_q5_0, [MMI_TENSOR_Q5_1] = dot_q5_1,
            [MMI_TENSOR_Q8_0] = dot_q8_0, [MMI_TENSOR_Q2_K] = dot_q2_k,
            [MMI_TENSOR_Q3_K] = dot_q3_k, [MMI_TENSOR_Q4_K] = dot_q4_k,
            [MMI_TENSOR_Q5_K] = dot_q5_k, [MMI_TENSOR_Q6_K] = dot_q6_k,
            [MMI_TENSOR_IQ4_NL] = dot_iq4_nl, [MMI_TENSOR_IQ4_XS] = dot_iq4_xs},
    .isa = "c",
};

const mmi_kernels *mmi_quant_kernels_portable(void)
{
    return &portable;
}

static mmi_kernels chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    chosen = portable;
    mmi_quant_kernels_x86(&chosen);
}

const mmi_kernels *mmi_quant_kernels(void)
{
    pthread_once(&chosen_once, choose);
    return &chosen;
}
