/* Patch embeddings (see patchify.h). */
#include "patchify.h"

#include <math.h>
#include <string.h>

int mmi_patch_tokens(const mmi_patch_embed *pe, int width, int height)
{
    int P = pe->patch_size;
    return (pe->class_embd ? 1 : 0) + (height / P) * (width / P);
}

size_t mmi_patch_scratch_floats(const mmi_patch_embed *pe, int width, int height)
{
    int P = pe->patch_size;
    size_t n_patches = (size_t)(height / P) * (size_t)(width / P);
    /* im2col rows, then (when the grid differs from the table) the resized table */
    return n_patches * 3 * P * P + n_patches * pe->n_embd;
}

/* One row per patch, in the (c, ky, kx) order of the conv filter rows. */
static void im2col(const float *chw, int width, int height, int P, float *cols)
{
    int gw = width / P, gh = height / P;
    for (int py = 0; py < gh; py++)
        for (int px = 0; px < gw; px++) {
            float *row = cols + ((size_t)py * gw + px) * 3 * P * P;
            for (int c = 0; c < 3; c++)
                for (int ky = 0; ky < P; ky++) {
                    const float *src = chw + ((size_t)c * height + py * P + ky) * width + px * P;
                    memcpy(row + (c * P + ky) * P, src, sizeof(float) * P);
                }
        }
}

void mmi_patchify(const mmi_patch_embed *pe, const float *chw, int width, int height, float *x,
                  float *scratch)
{
    int P = pe->patch_size, D = pe->n_embd, G = pe->pos_grid;
    int gw = width / P, gh = height / P;
    int n_patches = gw * gh;
    int first = pe->class_embd ? 1 : 0;
    float *cols = scratch;
    im2col(chw, width, height, P, cols);
    mmi_linear(x + (size_t)first * D, cols, n_patches, &pe->weight, pe->bias);
    if (first)
        memcpy(x, pe->class_embd, sizeof(float) * D);

    const float *pos = pe->pos + (size_t)first * D;
    if (gh != G || gw != G) {
        float *resized = scratch + (size_t)n_patches * 3 * P * P;
        mmi_resize_bicubic(pos, G, G, D, resized, gh, gw);
        pos = resized;
    }
    if (first)
        mmi_add(x, pe->pos, D);
    mmi_add(x + (size_t)first * D, pos, (size_t)n_patches * D);
}

/* Keys' cubic convolution kernel with a = -0.75, weights for the 4 taps around offset t. */
static void cubic_weights(float t, float w[4])
{
    const float a = -0.75f;
    float t1 = t + 1.0f, t2 = 1.0f - t, t3 = 2.0f - t;
    w[0] = ((a * t1 - 5.0f * a) * t1 + 8.0f * a) * t1 - 4.0f * a;
    w[1] = ((a + 2.0f) * t - (a + 3.0f)) * t * t + 1.0f;
    w[2] = ((a + 2.0f) * t2 - (a + 3.0f)) * t2 * t2 + 1.0f;
    w[3] = ((a * t3 - 5.0f * a) * t3 + 8.0f * a) * t3 - 4.0f * a;
}

/* Source index of the first tap and the 4 weights for output index i (PyTorch's rules). */
static int cubic_taps(int i, int in, int out, float w[4])
{
    float scale = (float)in / (float)out;
    float real = scale * ((float)i + 0.5f) - 0.5f;
    int idx = (int)floorf(real);
    if (idx > in - 1)
        idx = in - 1;
    float t = real - (float)idx;
    t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
    cubic_weights(t, w);
    return idx - 1;
}

static int clamp_index(int i, int n)
{
    return i < 0 ? 0 : i >= n ? n - 1 : i;
}

void mmi_resize_bicubic(const float *src, int src_h, int src_w, int d, float *dst, int dst_h,
                        int dst_w)
{
    for (int oy = 0; oy < dst_h; oy++) {
        float wy[4];
        int y0 = cubic_taps(oy, src_h, dst_h, wy);
        for (int ox = 0; ox < dst_w; ox++) {
            float wx[4];
            int x0 = cubic_taps(ox, src_w, dst_w, wx);
            float *o = dst + ((size_t)oy * dst_w + ox) * d;
            for (int c = 0; c < d; c++) {
                /* along x within each of the 4 source rows, then along y (PyTorch's order) */
                float acc = 0.0f;
                for (int j = 0; j < 4; j++) {
                    const float *row = src + (size_t)clamp_index(y0 + j, src_h) * src_w * d + c;
                    float r = 0.0f;
                    for (int i = 0; i < 4; i++)
                        r += wx[i] * row[(size_t)clamp_index(x0 + i, src_w) * d];
                    acc += wy[j] * r;
                }
                o[c] = acc;
            }
        }
    }
}
