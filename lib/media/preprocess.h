/* From a decoded RGB8 image to the vision tower's input: planar float views [3][S][S].
 *
 * Follows HF transformers' processors step for step, on 8-bit pixels as they do, so the floats
 * match theirs to rounding:
 *  - CLIPImageProcessor: resize the shortest edge to S (longer edge int(S * long / short)),
 *    center crop (top = (h - crop) // 2, zero fill where the crop overhangs), rescale by 1/255
 *    in double then to float, normalize (x - mean) / std in float;
 *  - "squash" (SigLIP, BLIP-2): resize to S x S, no crop;
 *  - LLaVA-1.5 pad: first pad to a square of the mean colour (int(mean * 255) per channel),
 *    image centred;
 *  - LLaVA-1.6 AnyRes (LlavaNextImageProcessor): pick the grid resolution from the candidate
 *    pinpoints (select_best_resolution), resize keeping the aspect (ceil on the short side),
 *    centre on a black canvas, cut S x S tiles row by row; the views are the whole image resized
 *    to S x S first, then the tiles.
 * Resizing is PIL's Image.resize (Pillow 9.4 Resample.c semantics): separable, horizontal pass
 * first into an 8-bit intermediate, the filter support widened by the downscale factor
 * (antialiasing), weights in 22-bit fixed point. */
#ifndef MMI_PREPROCESS_H
#define MMI_PREPROCESS_H

#include <stdint.h>

#include "gguf.h"
#include "image.h"
#include "mm.h"

typedef enum {
    MMI_RESAMPLE_BILINEAR = 2, /* PIL's numbering, as HF's `resample` */
    MMI_RESAMPLE_BICUBIC = 3
} mmi_resample;

typedef enum {
    MMI_RESIZE_SHORTEST_EDGE_CROP = 0, /* CLIP: shortest edge to S, center crop */
    MMI_RESIZE_SQUASH = 1              /* SigLIP, BLIP-2: straight to S x S */
} mmi_resize_mode;

typedef enum {
    MMI_PAD_NONE = 0,
    MMI_PAD_MEAN = 1 /* LLaVA-1.5: pad to square with the mean colour before resizing */
} mmi_pad_mode;

/* How tiled features become tokens (llama.cpp's clip.vision.mm_patch_merge_type). */
typedef enum {
    MMI_MERGE_FLAT = 0,          /* every view's patches, one after another */
    MMI_MERGE_SPATIAL_UNPAD = 1  /* LLaVA-1.6: tile grid unpadded, a newline token per row */
} mmi_merge_mode;

typedef enum {
    MMI_DETAIL_LOW = 0,  /* one view of the whole image */
    MMI_DETAIL_HIGH = 1  /* AnyRes tiles plus the whole image, when the model has pinpoints */
} mmi_detail;

#define MMI_MAX_PINPOINTS 64

typedef struct {
    int image_size;                /* S: shortest-edge target and view side */
    int crop_size;                 /* center-crop side (== image_size from a GGUF file) */
    mmi_resize_mode resize;
    mmi_resample resample;
    mmi_pad_mode pad;
    uint8_t pad_color[3];          /* MMI_PAD_MEAN fill: int(mean[c] * 255) */
    float mean[3], std[3];
    int n_pinpoints;               /* AnyRes candidates; 0 = no tiling */
    int pinpoints[MMI_MAX_PINPOINTS][2]; /* (height, width), multiples of crop_size */
    mmi_merge_mode merge;
} mmi_preprocess_config;

/* CLIP's processor at side S (OpenAI mean/std, bicubic, shortest edge + crop, no pad/tiles). */
void mmi_preprocess_config_init(mmi_preprocess_config *cfg, int image_size);

/* Fill cfg from a vision GGUF file:
 *   clip.vision.image_size (u32, required), clip.vision.image_mean / image_std ([f32] x 3,
 *   required), clip.vision.image_resize ("shortest_edge_crop" default | "squash"),
 *   clip.vision.image_pad ("none" default | "mean"), clip.vision.image_resample ("bicubic"
 *   default | "bilinear"), clip.vision.image_grid_pinpoints ([int] of (height, width) pairs as
 *   HF lists them; absent = no tiling), clip.vision.mm_patch_merge_type ("flat" default |
 *   "spatial_unpad").
 * MM_ERR_FORMAT for a missing or malformed key, MM_ERR_UNSUPPORTED for an unknown mode. */
mm_status mmi_preprocess_config_load(const mmi_gguf *g, mmi_preprocess_config *cfg);

/* The views of one image, ready for the patch embedding. */
typedef struct {
    int n_views;               /* 1, or 1 + grid_rows * grid_cols when tiled */
    int size;                  /* side of every view (crop_size, or image_size when squashed) */
    int grid_rows, grid_cols;  /* tile grid (0 x 0 when not tiled) */
    int image_width, image_height; /* the input's size (the connector unpads against it) */
    float *pixels;             /* n_views x [3][size][size]; the whole-image view first */
} mmi_views;

mm_status mmi_preprocess(const mmi_preprocess_config *cfg, const mm_image *image,
                         mmi_detail detail, mmi_views *out);
void mmi_views_free(mmi_views *views);

/* Image tokens an image of width x height costs at `detail`, before encoding it: each view
 * yields patches_per_side^2 patch tokens plus extra_per_view (1 when the class token is kept).
 * Tiled + MMI_MERGE_SPATIAL_UNPAD follows HF LlavaNextProcessor._get_number_of_features. */
mm_status mmi_preprocess_token_count(const mmi_preprocess_config *cfg, int width, int height,
                                     mmi_detail detail, int patches_per_side, int extra_per_view,
                                     int64_t *out);

/* Qwen2VLImageProcessor (dynamic resolution, no crop): how an image is cut into patch rows. */
typedef struct {
    int patch;       /* patch side in pixels */
    int merge;       /* merge window side in patches: sides become multiples of patch * merge */
    int temporal;    /* frames per patch: an image is its frame repeated this many times */
    int64_t min_pixels, max_pixels;
} mmi_patch_grid;

/* HF's smart_resize: each side rounded (half to even) to a multiple of factor; if the area
 * then exceeds max_pixels both sides shrink by sqrt(area / max_pixels) rounding down, if below
 * min_pixels grow by sqrt(min_pixels / area) rounding up. MM_ERR_ARG when a side is shorter
 * than factor or the aspect ratio exceeds 200. */
mm_status mmi_smart_resize(int width, int height, int factor, int64_t min_pixels,
                           int64_t max_pixels, int *out_width, int *out_height);
/* The image resized (smart_resize with factor patch * merge, cfg's filter), rescaled and
 * normalized, then cut into rows[gh * gw][3 * temporal * patch * patch] (channel, frame, y,
 * x within a row), rows in merge-window order: windows row by row, patches row by row inside
 * each, as HF's pixel_values. grid = (1, gh, gw) in patches; *rows is allocated (mmi_free). */
mm_status mmi_preprocess_patch_rows(const mmi_preprocess_config *cfg, const mmi_patch_grid *pg,
                                    const mm_image *image, float **rows, int grid[3]);

/* LlavaNextForConditionalGeneration's unpad_image on a rows x cols grid of tile features for
 * a width x height image: the window [top, top + kept_rows) x [left, left + kept_cols) that
 * holds the image rather than the padding. */
void mmi_unpad_window(int width, int height, int rows, int cols, int *top, int *left,
                      int *kept_rows, int *kept_cols);

/* The steps, exposed for tests and for callers that need one of them. Each allocates a new
 * image (free with mmi_image_free). */
mm_status mmi_resize(const mm_image *src, int width, int height, mmi_resample filter,
                     mm_image **out);
/* A width x height image whose pixel (x, y) is src(x - left, y - top), `fill` where that lies
 * outside src: padding, centring and cropping in one. */
mm_status mmi_place(const mm_image *src, int width, int height, int left, int top,
                    const uint8_t fill[3], mm_image **out);
/* HF's select_best_resolution: index into cfg->pinpoints. */
int mmi_select_pinpoint(const mmi_preprocess_config *cfg, int width, int height);
/* Rescale by 1/255 and normalize into dst[3][h][w]. */
void mmi_normalize(const mmi_preprocess_config *cfg, const mm_image *src, float *dst);

#endif
