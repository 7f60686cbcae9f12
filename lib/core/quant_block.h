/* Field readers of ggml's block layouts that the portable kernels (quant.c) and the x86 ones
 * (quant_x86.c) share. Internal to those two files. */
#ifndef MMI_QUANT_BLOCK_H
#define MMI_QUANT_BLOCK_H

#include <stdint.h>

#include "half.h"

/* Q8_K: f32 d at byte 0, 256 int8 at 4, the int16 sums of each 16 values at 260. */
static inline float mmi_q8_k_d(const uint8_t *x)
{
    return mmi_bits_f32((uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 |
                        (uint32_t)x[3] << 24);
}

static inline int32_t mmi_q8_k_bsum(const uint8_t *x, int g)
{
    return (int16_t)(x[260 + 2 * g] | x[261 + 2 * g] << 8);
}

/* The 6-bit scale and min of group j (0..7) of a Q4_K/Q5_K block's 12 scale bytes. */
static inline void mmi_k4_scale_min(const uint8_t *s, int j, int *sc, int *mn)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

#endif
