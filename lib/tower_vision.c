/* Images as media parts (media.h): the plan and the encoding of one picture by the model's
 * vision tower and connector.
 *
 * Low detail is one view of the whole image. High detail on a model with pinpoints (LLaVA-1.6)
 * is the overview plus a grid of tiles, all run through the tower as one batch, then packed as
 * LlavaNextForConditionalGeneration does: the overview's features, then the tiles' features
 * laid out on the grid, cut to the image's aspect (unpad), with the learned image_newline after
 * every row ("spatial_unpad"); or every view's features one after another ("flat"). */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "image.h"
#include "media.h"
#include "status.h"
#include "vit.h"

static int tiled(const mmi_vision *v, const mmi_media_params *p)
{
    return p->detail == MMI_DETAIL_HIGH && v->preprocess.n_pinpoints > 0;
}

/* Qwen2-VL: the image at its own resolution (smart_resize), a token per merge window. */
static mm_status patch_rows_plan(const mm_model *m, int width, int height, mmi_media_plan *out)
{
    const mmi_patch_grid *pg = &m->vision->grid;
    int W, H, n_embd, n;
    MMI_TRY(mmi_smart_resize(width, height, pg->patch * pg->merge, pg->min_pixels,
                             pg->max_pixels, &W, &H));
    MMI_TRY(mmi_vision_output_shape(m->vision, W, H, &n, &n_embd));
    int h = H / (pg->patch * pg->merge), w = W / (pg->patch * pg->merge);
    int mrope = m->decoder && m->decoder->config.n_pos_dims == 3;
    *out = (mmi_media_plan){(size_t)n, mrope ? (h > w ? h : w) : n, 1, n_embd, {1, h, w}};
    return MM_OK;
}

mm_status mmi_image_plan(const mm_model *m, int width, int height, const mmi_media_params *p,
                         mmi_media_plan *out)
{
    const mmi_vision *v = m->vision;
    if (!v)
        return mmi_fail(MM_ERR_STATE, "the model has no vision encoder (load an mmproj file "
                        "with it)");
    if (width < 1 || height < 1)
        return mmi_fail(MM_ERR_ARG, "image size %dx%d", width, height);
    if (v->grid.merge)
        return patch_rows_plan(m, width, height, out);
    /* Every view has the trained side (a GGUF file's crop size is its image size), so the
     * cost is known before any preprocessing; image_encode checks it. */
    const mmi_preprocess_config *cfg = &v->preprocess;
    int side = cfg->image_size, per_view, n_embd;
    MMI_TRY(mmi_vision_output_shape(v, side, side, &per_view, &n_embd));
    int64_t n = per_view;
    int n_views = 1;
    if (tiled(v, p)) {
        int pin = mmi_select_pinpoint(cfg, width, height);
        n_views = 1 + (cfg->pinpoints[pin][0] / cfg->crop_size) *
                      (cfg->pinpoints[pin][1] / cfg->crop_size);
        int grid = side / v->patch.patch_size;
        MMI_TRY(mmi_preprocess_token_count(cfg, width, height, MMI_DETAIL_HIGH, grid,
                                           per_view - grid * grid, &n));
    } else if (v->image_newline) {
        n += 1; /* HF ends a single view with the newline too */
    }
    *out = (mmi_media_plan){(size_t)n, (int)n, n_views, n_embd, {0, 0, 0}};
    return MM_OK;
}

static mm_status image_plan(const mm_model *m, const void *source, const mmi_media_params *p,
                            mmi_media_plan *out)
{
    const mm_image *image = source;
    return mmi_image_plan(m, image->width, image->height, p, out);
}

/* rows = the overview's features, then the tile grid (features[1..] of side x side each, in
 * row-major tile order) in the unpadded window, image_newline after each of its rows. */
static void pack_spatial_unpad(const mmi_vision *v, const mmi_views *views,
                               const float *features, int per_view, int n_embd, float *rows)
{
    int side = v->image_size / v->patch.patch_size;
    int top, left, kept_rows, kept_cols;
    mmi_unpad_window(views->image_width, views->image_height, views->grid_rows * side,
                     views->grid_cols * side, &top, &left, &kept_rows, &kept_cols);
    size_t row_bytes = (size_t)n_embd * sizeof(float);
    memcpy(rows, features, (size_t)per_view * row_bytes);
    float *at = rows + (size_t)per_view * n_embd;
    for (int y = top; y < top + kept_rows; y++) {
        for (int x = left; x < left + kept_cols; x++) {
            int tile = 1 + (y / side) * views->grid_cols + x / side;
            size_t index = (size_t)tile * per_view + (size_t)(y % side) * side + x % side;
            memcpy(at, features + index * n_embd, row_bytes);
            at += n_embd;
        }
        memcpy(at, v->image_newline, row_bytes);
        at += n_embd;
    }
}

static mm_status patch_rows_encode(const mmi_vision *v, const mm_image *image,
                                   const mmi_media_plan *plan, float *rows,
                                   const atomic_int *cancel)
{
    float *patches;
    int grid[3];
    MMI_TRY(mmi_preprocess_patch_rows(&v->preprocess, &v->grid, image, &patches, grid));
    int M = v->grid.merge;
    mm_status st = MM_OK;
    if (grid[0] != plan->grid[0] || grid[1] != plan->grid[1] * M || grid[2] != plan->grid[2] * M)
        st = mmi_fail(MM_ERR_UNSUPPORTED, "image: preprocessing gave %d x %d x %d patches, the "
                      "plan %d x %d x %d", grid[0], grid[1], grid[2], plan->grid[0],
                      plan->grid[1] * M, plan->grid[2] * M);
    if (st == MM_OK)
        st = mmi_vision_encode_patch_rows(v, patches, grid, rows, cancel);
    mmi_free(patches);
    return st;
}

/* Preprocess the image as the vision file says and run the tower and projector into rows. */
static mm_status image_encode(const mm_model *m, const void *source, const mmi_media_params *p,
                              const mmi_media_plan *plan, float *rows, const atomic_int *cancel)
{
    const mmi_vision *v = m->vision;
    if (v->grid.merge) /* Qwen2-VL: patch rows at the image's own resolution */
        return patch_rows_encode(v, source, plan, rows, cancel);
    mmi_views views;
    MMI_TRY(mmi_preprocess(&v->preprocess, source, tiled(v, p) ? MMI_DETAIL_HIGH : MMI_DETAIL_LOW,
                           &views));
    mm_status st = MM_OK;
    if (views.n_views != plan->n_views || views.size != v->preprocess.image_size)
        st = mmi_fail(MM_ERR_UNSUPPORTED, "image: preprocessing gave %d views of side %d, "
                      "expected %d of %d", views.n_views, views.size, plan->n_views,
                      v->preprocess.image_size);
    int per_view = 0, n_embd = plan->n_embd;
    if (st == MM_OK)
        st = mmi_vision_output_shape(v, views.size, views.size, &per_view, &n_embd);
    /* Without a newline the views' features are the rows, one view after another. */
    int packed = v->image_newline != NULL;
    float *features = packed ? mmi_array((size_t)per_view * views.n_views,
                                         (size_t)n_embd * sizeof(float))
                             : rows;
    if (st == MM_OK && !features)
        st = mmi_fail(MM_ERR_NOMEM, "out of memory for %d views of image features",
                      views.n_views);
    if (st == MM_OK)
        st = mmi_vision_encode_views(v, views.pixels, views.n_views, views.size, views.size,
                                     features, cancel);
    if (st == MM_OK && packed && views.n_views > 1) {
        pack_spatial_unpad(v, &views, features, per_view, n_embd, rows);
    } else if (st == MM_OK && packed) {
        memcpy(rows, features, (size_t)per_view * n_embd * sizeof(float));
        memcpy(rows + (size_t)per_view * n_embd, v->image_newline, n_embd * sizeof(float));
    }
    if (packed)
        mmi_free(features);
    mmi_views_free(&views);
    return st;
}

const mmi_media_ops mmi_image_ops = {"image", image_plan, image_encode};

/* An image still in its file's bytes: planned from the size in its header, decoded when it is
 * encoded and freed as soon as it is, so that a message's pictures are never all decoded at
 * once. The plan is the decoded image's: the header gives its exact size. */
static mm_status image_bytes_plan(const mm_model *m, const void *source,
                                  const mmi_media_params *p, mmi_media_plan *out)
{
    const mmi_image_bytes *src = source;
    mm_image header = {0}; /* the size alone: a plan reads no pixel */
    MMI_TRY(mmi_image_size_memory(src->data, src->size, src->options, &header.width,
                                  &header.height));
    return image_plan(m, &header, p, out);
}

static mm_status image_bytes_encode(const mm_model *m, const void *source,
                                    const mmi_media_params *p, const mmi_media_plan *plan,
                                    float *rows, const atomic_int *cancel)
{
    const mmi_image_bytes *src = source;
    mm_image *image;
    mm_status st = mmi_image_load_memory(src->data, src->size, src->options, &image);
    if (st != MM_OK) { /* the header was fine: the data is cut short or corrupt */
        char detail[400];
        snprintf(detail, sizeof detail, "%s", mm_last_error());
        return mmi_fail(st, "%s: %s", src->place, detail);
    }
    st = image_encode(m, image, p, plan, rows, cancel);
    mmi_image_free(image);
    return st;
}

const mmi_media_ops mmi_image_bytes_ops = {"image", image_bytes_plan, image_bytes_encode};
