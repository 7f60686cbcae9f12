/* Loops over float arrays that the compiler cannot vectorise by itself (exp, half-precision
 * loads), written once in plain C and once with AVX2/FMA/F16C intrinsics, the dot products and
 * conversions also with AVX-512; the widest variant the processor has is chosen at run time.
 * All give the same results to within float rounding of the sums (they add in different orders;
 * the AVX2 exp is a degree-6 polynomial, relative error < 2e-7).
 * No allocation, no threads: ops.c splits the work. */
#ifndef MMI_VEC_H
#define MMI_VEC_H

#include <stddef.h>
#include <stdint.h>

/* x[i] = x[i] * sigmoid(a*x[i] + b*x[i]^3): silu (a = 1, b = 0), quick-GELU (a = 1.702), and
 * the tanh GELU, 0.5x(1 + tanh(y)) = x * sigmoid(2y) with y = sqrt(2/pi)(x + 0.044715x^3). */
void mmi_vec_x_sigmoid(float *x, size_t n, float a, float b);
/* gate[i] = silu(gate[i]) * up[i] */
void mmi_vec_swiglu(float *gate, const float *up, size_t n);
/* max of x[0..n), n >= 1 */
float mmi_vec_max(const float *x, size_t n);
/* x[i] = exp(x[i] - shift); returns the sum of the new values */
float mmi_vec_exp_sum(float *x, size_t n, float shift);
void mmi_vec_scale(float *x, size_t n, float s); /* x[i] *= s */

/* Dot products of a row of weights with x[0..n), and the rows converted to f32. */
float mmi_vec_dot(const float *w, const float *x, size_t n);
float mmi_vec_dot_f16(const uint16_t *w, const float *x, size_t n);
float mmi_vec_dot_bf16(const uint16_t *w, const float *x, size_t n);
/* The same for 4 rows at once, row r at w + r * stride (values): out[r]. Four memory streams
 * read a matrix from DRAM faster than one. */
void mmi_vec_dot4(const float *w, size_t stride, const float *x, size_t n, float out[4]);
void mmi_vec_dot4_f16(const uint16_t *w, size_t stride, const float *x, size_t n, float out[4]);
void mmi_vec_dot4_bf16(const uint16_t *w, size_t stride, const float *x, size_t n,
                       float out[4]);
void mmi_vec_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void mmi_vec_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/* To bf16, rounding to nearest even (NaN stays NaN), as mmi_f32_to_bf16. */
void mmi_vec_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void mmi_vec_f16_to_bf16(const uint16_t *src, uint16_t *dst, size_t n);
/* Whether the processor multiplies bf16 itself (AVX512_BF16): where bf16 products pay. */
int mmi_vec_has_bf16_products(void);
/* y[i] += a * x[i] */
void mmi_vec_axpy(float *y, float a, const float *x, size_t n);

/* Whether the processor has AVX2, FMA and F16C, what the x86 kernels need (0 elsewhere). */
int mmi_cpu_has_avx2(void);

/* Instruction-set levels of the variants. */
enum { MMI_VEC_PORTABLE, MMI_VEC_AVX2, MMI_VEC_AVX512 };
/* Test and benchmark hook: the functions use no variant above `level` (the default allows
 * MMI_VEC_AVX512); returns the level they now use, the lesser of `level` and the processor's. */
int mmi_vec_simd_limit(int level);

#endif
