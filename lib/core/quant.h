/* Tensor element types: one row per type in one table (name, block layout, conversions, the
 * activation type its dot product pairs with), and the dot kernels, chosen once per process for
 * the processor (portable C, AVX2, AVX-512). Every switch over types elsewhere is a lookup here.
 *
 * Block layouts are ggml's (ggml-common.h): a block of `block_elems` values takes `block_bytes`
 * bytes; a row of n values (n a multiple of block_elems) takes n / block_elems * block_bytes. */
#ifndef MMI_QUANT_H
#define MMI_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* Numbered as ggml numbers them (the numbers are in the file format). */
typedef enum {
    MMI_TENSOR_F32 = 0, MMI_TENSOR_F16 = 1, MMI_TENSOR_Q4_0 = 2, MMI_TENSOR_Q4_1 = 3,
    MMI_TENSOR_Q5_0 = 6, MMI_TENSOR_Q5_1 = 7, MMI_TENSOR_Q8_0 = 8, MMI_TENSOR_Q8_1 = 9,
    MMI_TENSOR_Q2_K = 10, MMI_TENSOR_Q3_K = 11, MMI_TENSOR_Q4_K = 12, MMI_TENSOR_Q5_K = 13,
    MMI_TENSOR_Q6_K = 14, MMI_TENSOR_Q8_K = 15, MMI_TENSOR_IQ4_NL = 20, MMI_TENSOR_IQ4_XS = 23,
    MMI_TENSOR_BF16 = 30,
    MMI_TENSOR_COUNT = 40 /* above every number ggml has used */
} mmi_tensor_type;

typedef struct {
    const char *name;     /* ggml's name; NULL for numbers ggml does not use */
    uint32_t block_elems; /* 0 for types libmm cannot read */
    uint32_t block_bytes;
    int weight;           /* 1: accepted in model files; 0: an activation type (Q8_K, Q8_1) */
    /* n values (a multiple of block_elems) from / to the type. from_f32 is NULL where libmm
     * has no quantizer for the type. */
    void (*to_f32)(const void *src, float *dst, size_t n);
    void (*from_f32)(const float *src, void *dst, size_t n);
    /* The type a row of activations is quantized to for this type's dot kernel; F32 for
     * F32/F16/BF16, whose kernels take f32 activations. */
    mmi_tensor_type dot_partner;
    /* Byte offsets in a block of its f16 scales (-1: none), which must be finite. */
    int16_t scale_at[2];
} mmi_type_traits;

/* The row of `type`; a row with name NULL and block_elems 0 for unknown numbers. */
const mmi_type_traits *mmi_type(uint32_t type);
/* ggml's name of a type number, "unknown" for numbers ggml does not use. */
const char *mmi_tensor_type_name(mmi_tensor_type type);
/* Bytes of a row of n values; n a multiple of the block size. */
size_t mmi_type_row_bytes(mmi_tensor_type type, size_t n);
/* Whether every f16 scale in n_blocks blocks of `type` at data is finite. */
int mmi_type_scales_finite(mmi_tensor_type type, const void *data, size_t n_blocks);

/* Dot product of a weight row (n values of a quantized type) with an activation row already
 * quantized to the type's dot_partner. The integer sums are exact, so every variant gives the
 * same sum per block; only the float accumulation of the blocks may round differently. */
typedef float (*mmi_dot_fn)(const void *w, const void *xq, size_t n);

typedef struct {
    mmi_dot_fn dot[MMI_TENSOR_COUNT]; /* NULL for the float types and activation types */
    const char *isa;                  /* "c", "avx2", "avx512" */
} mmi_kernels;

/* The kernels for this processor, chosen on first use. */
const mmi_kernels *mmi_quant_kernels(void);
/* Test hook: the portable kernels whatever the processor. */
const mmi_kernels *mmi_quant_kernels_portable(void);
/* quant_x86.c: replaces the entries it has variants of for this processor (no-op elsewhere). */
void mmi_quant_kernels_x86(mmi_kernels *k);

#endif
