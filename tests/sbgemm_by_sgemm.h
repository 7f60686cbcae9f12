/* cblas_sbgemm's contract for tests where OpenBLAS has none (Debian's 0.3.21 is built without
 * BUILD_BFLOAT16): bf16 operands, products exact in f32 (8-bit significands), f32 sums, which
 * cblas_sgemm on the operands widened to f32 gives. Install with mmi_ops_sbgemm_hook. */
#ifndef MM_TEST_SBGEMM_BY_SGEMM_H
#define MM_TEST_SBGEMM_BY_SGEMM_H

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void widen_bf16(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &bits, sizeof bits);
    }
}

static void sbgemm_by_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha,
                            const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                            float *c, int ldc)
{
    size_t na = (size_t)(ta == CblasTrans ? k : m) * lda;
    size_t nb = (size_t)(tb == CblasTrans ? n : k) * ldb;
    float *fa = malloc(na * sizeof *fa), *fb = malloc(nb * sizeof *fb);
    if (!fa || !fb)
        abort();
    widen_bf16(a, fa, na);
    widen_bf16(b, fb, nb);
    cblas_sgemm((enum CBLAS_ORDER)order, (enum CBLAS_TRANSPOSE)ta, (enum CBLAS_TRANSPOSE)tb, m,
                n, k, alpha, fa, lda, fb, ldb, beta, c, ldc);
    free(fa);
    free(fb);
}

#endif
