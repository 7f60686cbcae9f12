/* IEEE half (f16) and bfloat16 conversions, round to nearest even; subnormals, inf and nan
 * kept. Header-only: the dequantization loops call them per block scale. */
#ifndef MMI_HALF_H
#define MMI_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t mmi_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float mmi_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float mmi_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan: keep the payload */
        return mmi_bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) { /* zero / subnormal: mant * 2^-24, exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return mmi_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

static inline uint16_t mmi_f32_to_f16(float f)
{
    uint32_t u = mmi_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t exp = (u >> 23) & 0xff;
    uint32_t mant = u & 0x7fffff;
    if (exp == 0xff) /* inf stays inf; nan stays a (quiet) nan */
        return sign | 0x7c00 | (mant ? 0x200 | (uint16_t)(mant >> 13) : 0);
    int e = (int)exp - 127 + 15; /* biased f16 exponent */
    if (e >= 0x1f)
        return sign | 0x7c00; /* overflow -> inf */
    if (e <= 0) {
        /* Subnormal result: value = m * 2^(e-1-23+... ); shift the full significand down and
         * round to nearest even. Below half the smallest subnormal it becomes zero. */
        if (e < -10)
            return sign;
        uint32_t m = mant | 0x800000;
        int shift = 14 - e; /* 24-bit significand -> 10-bit field scaled by 2^-24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return sign | (uint16_t)q; /* q may carry into the exponent: still correct */
    }
    uint32_t q = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1)))
        q++; /* may carry to the next exponent, and up to inf: both correct */
    return sign | (uint16_t)q;
}

static inline float mmi_bf16_to_f32(uint16_t h)
{
    return mmi_bits_f32((uint32_t)h << 16);
}

static inline uint16_t mmi_f32_to_bf16(float f)
{
    uint32_t u = mmi_f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) /* nan: truncate, keeping it a quiet nan */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1); /* round to nearest even; overflow reaches inf */
    return (uint16_t)(u >> 16);
}

/* A little-endian f16 at p (block scales are not aligned). */
static inline float mmi_f16_at(const uint8_t *p)
{
    return mmi_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

#endif
