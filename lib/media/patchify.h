/* Image -> patch embeddings: cut planar pixels into P×P patches (im2col), embed all patches in
 * one GEMM (the ViT's stride-P convolution), put the class token first, add position
 * embeddings — interpolated bicubically when the patch grid differs from the trained one. */
#ifndef MMI_PATCHIFY_H
#define MMI_PATCHIFY_H

#include <stddef.h>

#include "ops.h"

typedef struct {
    int patch_size; /* P */
    int n_embd;     /* D */
    int pos_grid;   /* G: the position table covers a G×G grid (+ the class row) */
    mmi_matrix weight;        /* [3·P·P → D]: conv filter d is row d, in (c, ky, kx) order */
    const float *bias;        /* [D] or NULL */
    const float *class_embd;  /* [D] or NULL (no class token) */
    const float *pos;         /* [(class?1:0) + G·G][D], class row first */
} mmi_patch_embed;

/* Tokens for a width×height input: class token (if any) + floor(h/P)·floor(w/P) patches, as
 * HF's convolution drops a partial last row/column of patches. */
int mmi_patch_tokens(const mmi_patch_embed *pe, int width, int height);
/* Floats of scratch mmi_patchify needs for that input. */
size_t mmi_patch_scratch_floats(const mmi_patch_embed *pe, int width, int height);

/* x[n_tokens][D] = [class; patches] + positions for planar pixels chw[3][height][width]. */
void mmi_patchify(const mmi_patch_embed *pe, const float *chw, int width, int height, float *x,
                  float *scratch);

/* Resample a grid of d-vectors src[src_h][src_w][d] to dst[dst_h][dst_w][d] as PyTorch's
 * interpolate(mode="bicubic", align_corners=False) does (what HF's interpolate_pos_encoding
 * calls): source coordinate (i + 0.5)·in/out − 0.5, Keys cubic with a = −0.75, indices clamped
 * to the border. */
void mmi_resize_bicubic(const float *src, int src_h, int src_w, int d, float *dst, int dst_h,
                        int dst_w);

#endif
