/* Image preprocessing for the vision towers (see preprocess.h for the rules followed). */
#include "preprocess.h"

#include <math.h>
#include <string.h>

#include "alloc.h"
#include "status.h"

static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
static const uint8_t black[3] = {0, 0, 0};

/* Largest tiling canvas side a file may ask for (LLaVA-OneVision's largest is 2304). */
#define MAX_PINPOINT_SIDE 8192

/* Resampling weights are fixed point with this many fraction bits (8-bit data, as PIL). */
#define WEIGHT_BITS 22

void mmi_preprocess_config_init(mmi_preprocess_config *cfg, int image_size)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->image_size = image_size;
    cfg->crop_size = image_size;
    cfg->resize = MMI_RESIZE_SHORTEST_EDGE_CROP;
    cfg->resample = MMI_RESAMPLE_BICUBIC;
    cfg->pad = MMI_PAD_NONE;
    memcpy(cfg->mean, clip_mean, sizeof cfg->mean);
    memcpy(cfg->std, clip_std, sizeof cfg->std);
    for (int c = 0; c < 3; c++)
        cfg->pad_color[c] = (uint8_t)(cfg->mean[c] * 255.0);
    cfg->merge = MMI_MERGE_FLAT;
}

/* ---- loading the configuration ---- */

/* A string key that must be one of names[]; *out = its index, or def when the key is absent. */
static mm_status read_choice(const mmi_gguf *g, const char *key, const char *const *names,
                             int n_names, int def, int *out)
{
    *out = def;
    if (!mmi_gguf_has(g, key))
        return MM_OK;
    const char *value;
    MMI_TRY(mmi_gguf_get_string(g, key, &value, NULL));
    for (int i = 0; i < n_names; i++)
        if (!strcmp(value, names[i])) {
            *out = i;
            return MM_OK;
        }
    return mmi_fail(MM_ERR_UNSUPPORTED, "%s: %s = '%s' is not a known value (first known: '%s')",
                    mmi_gguf_path(g), key, value, names[0]);
}

static mm_status read_pinpoints(const mmi_gguf *g, mmi_preprocess_config *cfg)
{
    static const char key[] = "clip.vision.image_grid_pinpoints";
    if (!mmi_gguf_has(g, key))
        return MM_OK;
    mmi_gguf_type type;
    uint64_t count;
    MMI_TRY(mmi_gguf_get_array_info(g, key, &type, &count));
    if (count == 0 || count % 2 || count > 2 * MMI_MAX_PINPOINTS)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s holds %llu numbers, expected (height, width) "
                        "pairs, at most %d", mmi_gguf_path(g), key, (unsigned long long)count,
                        MMI_MAX_PINPOINTS);
    int64_t values[2 * MMI_MAX_PINPOINTS];
    MMI_TRY(mmi_gguf_get_int_array(g, key, values, count));
    for (uint64_t i = 0; i < count; i++)
        if (values[i] <= 0 || values[i] > MAX_PINPOINT_SIDE || values[i] % cfg->crop_size)
            return mmi_fail(MM_ERR_FORMAT, "%s: %s[%llu] = %lld is not a positive multiple of "
                            "the tile side %d", mmi_gguf_path(g), key, (unsigned long long)i,
                            (long long)values[i], cfg->crop_size);
    cfg->n_pinpoints = (int)(count / 2);
    for (int i = 0; i < cfg->n_pinpoints; i++) {
        cfg->pinpoints[i][0] = (int)values[2 * i];
        cfg->pinpoints[i][1] = (int)values[2 * i + 1];
    }
    return MM_OK;
}

mm_status mmi_preprocess_config_load(const mmi_gguf *g, mmi_preprocess_config *cfg)
{
    static const char *const resize_names[] = {"shortest_edge_crop", "squash"};
    static const char *const pad_names[] = {"none", "mean"};
    static const char *const resample_names[] = {"bicubic", "bilinear"};
    static const char *const merge_names[] = {"flat", "spatial_unpad"};
    int64_t size;
    MMI_TRY(mmi_gguf_get_int(g, "clip.vision.image_size", &size));
    if (size < 1 || size > 16384)
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.vision.image_size = %lld is out of range",
                        mmi_gguf_path(g), (long long)size);
    mmi_preprocess_config_init(cfg, (int)size);
    MMI_TRY(mmi_gguf_get_float_array(g, "clip.vision.image_mean", cfg->mean, 3));
    MMI_TRY(mmi_gguf_get_float_array(g, "clip.vision.image_std", cfg->std, 3));
    for (int c = 0; c < 3; c++) {
        if (!(cfg->std[c] > 0.0f) || !isfinite(cfg->std[c]) || !isfinite(cfg->mean[c]))
            return mmi_fail(MM_ERR_FORMAT, "%s: clip.vision.image_std[%d] = %g / image_mean = "
                            "%g: std must be positive and both finite", mmi_gguf_path(g), c,
                            cfg->std[c], cfg->mean[c]);
        double fill = floor(cfg->mean[c] * 255.0);   /* LLaVA: int(mean * 255) */
        cfg->pad_color[c] = (uint8_t)(fill < 0 ? 0 : fill > 255 ? 255 : fill);
    }
    int resize, pad, resample, merge;
    MMI_TRY(read_choice(g, "clip.vision.image_resize", resize_names, 2, 0, &resize));
    MMI_TRY(read_choice(g, "clip.vision.image_pad", pad_names, 2, 0, &pad));
    MMI_TRY(read_choice(g, "clip.vision.image_resample", resample_names, 2, 0, &resample));
    MMI_TRY(read_choice(g, "clip.vision.mm_patch_merge_type", merge_names, 2, 0, &merge));
    cfg->resize = resize ? MMI_RESIZE_SQUASH : MMI_RESIZE_SHORTEST_EDGE_CROP;
    cfg->pad = pad ? MMI_PAD_MEAN : MMI_PAD_NONE;
    cfg->resample = resample ? MMI_RESAMPLE_BILINEAR : MMI_RESAMPLE_BICUBIC;
    cfg->merge = merge ? MMI_MERGE_SPATIAL_UNPAD : MMI_MERGE_FLAT;
    return read_pinpoints(g, cfg);
}

/* ---- resampling (PIL's separable convolution) ---- */

static double filter_bicubic(double x)
{
    const double a = -0.5; /* Keys' cubic as PIL uses it */
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static double filter_bilinear(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* For output samples first_out .. first_out + n - 1 along one axis of in_size -> out_size: the
 * first input sample and how many contribute, and their fixed-point weights (ksize slots each).
 * Only the samples of an output window are planned: a resize followed by a crop computes just
 * the crop, with the same values. */
typedef struct {
    int ksize;
    int *first, *count;
    int32_t *weights;
} resample_plan;

static void plan_free(resample_plan *p)
{
    mmi_free(p->first);
    mmi_free(p->count);
    mmi_free(p->weights);
}

static mm_status plan_make(int in_size, int out_size, int first_out, int n, mmi_resample filter,
                           resample_plan *p)
{
    double (*kernel)(double) = filter == MMI_RESAMPLE_BILINEAR ? filter_bilinear : filter_bicubic;
    double scale = (double)in_size / out_size;
    /* Downscaling widens the kernel by the scale factor: every input sample is averaged in. */
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = (filter == MMI_RESAMPLE_BILINEAR ? 1.0 : 2.0) * filterscale;
    double inv_filterscale = 1.0 / filterscale;
    memset(p, 0, sizeof *p);
    p->ksize = in_size == out_size ? 1 : (int)ceil(support) * 2 + 1;
    p->first = mmi_array((size_t)n, sizeof *p->first);
    p->count = mmi_array((size_t)n, sizeof *p->count);
    p->weights = mmi_calloc((size_t)n * (size_t)p->ksize, sizeof *p->weights);
    double *w = mmi_array((size_t)p->ksize, sizeof *w);
    if (!p->first || !p->count || !p->weights || !w) {
        plan_free(p);
        mmi_free(w);
        return mmi_fail(MM_ERR_NOMEM, "out of memory resampling %d to %d samples", in_size,
                        out_size);
    }
    for (int i = 0; i < n; i++) {
        int o = first_out + i;
        int32_t *dst = p->weights + (size_t)i * p->ksize;
        if (in_size == out_size) { /* PIL skips such a pass: a copy */
            p->first[i] = o;
            p->count[i] = 1;
            dst[0] = 1 << WEIGHT_BITS;
            continue;
        }
        double center = (o + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > in_size ? in_size : hi;
        int count = hi - lo < p->ksize ? hi - lo : p->ksize;
        double sum = 0.0;
        for (int k = 0; k < count; k++) {
            w[k] = kernel((k + lo - center + 0.5) * inv_filterscale);
            sum += w[k];
        }
        for (int k = 0; k < count; k++) {
            double v = (sum != 0.0 ? w[k] / sum : w[k]) * (1 << WEIGHT_BITS);
            dst[k] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5); /* half away from zero */
        }
        p->first[i] = lo;
        p->count[i] = count;
    }
    mmi_free(w);
    return MM_OK;
}

/* One output sample: n input samples `step` bytes apart, weighted, rounded, clamped. */
static void convolve(const uint8_t *s, size_t step, const int32_t *k, int n, uint8_t *d)
{
    int32_t acc[3] = {1 << (WEIGHT_BITS - 1), 1 << (WEIGHT_BITS - 1), 1 << (WEIGHT_BITS - 1)};
    for (int i = 0; i < n; i++, s += step)
        for (int c = 0; c < 3; c++)
            acc[c] += s[c] * k[i];
    for (int c = 0; c < 3; c++)
        d[c] = acc[c] < 0 ? 0 : acc[c] >> WEIGHT_BITS > 255 ? 255 : (uint8_t)(acc[c] >> WEIGHT_BITS);
}

/* The picture being resampled: `image` at (left, top) on a width x height canvas of `fill`
 * (the canvas is the image itself unless padding to a square). */
typedef struct {
    const mm_image *image;
    int width, height;
    int left, top;
    const uint8_t *fill;
} resample_source;

static resample_source plain_source(const mm_image *image)
{
    resample_source src = {image, image->width, image->height, 0, 0, black};
    return src;
}

/* Canvas row y into row[canvas width * 3]. */
static void canvas_row(const resample_source *src, int y, uint8_t *row)
{
    const mm_image *im = src->image;
    int sy = y - src->top;
    for (int x = 0; x < src->width; x++)
        memcpy(row + (size_t)x * 3, src->fill, 3);
    if (sy >= 0 && sy < im->height)
        memcpy(row + (size_t)src->left * 3, im->pixels + (size_t)sy * im->width * 3,
               (size_t)im->width * 3);
}

/* The window (x0, y0, win_w x win_h) of the canvas resized to full_w x full_h, as PIL computes
 * it: horizontal pass first into an 8-bit intermediate, then vertical. */
static mm_status resample_window(const resample_source *src, int full_w, int full_h, int x0,
                                 int y0, int win_w, int win_h, mmi_resample filter,
                                 mm_image **out)
{
    *out = NULL;
    resample_plan px, py;
    MMI_TRY(plan_make(src->width, full_w, x0, win_w, filter, &px));
    mm_status st = plan_make(src->height, full_h, y0, win_h, filter, &py);
    if (st != MM_OK) {
        plan_free(&px);
        return st;
    }
    /* Only the canvas rows the vertical pass reads go through the horizontal pass. */
    int row_first = py.first[0];
    int row_end = py.first[win_h - 1] + py.count[win_h - 1];
    mm_image *mid = NULL;
    uint8_t *row = mmi_array((size_t)src->width, 3);
    if (!row)
        st = mmi_fail(MM_ERR_NOMEM, "out of memory for a %d-pixel row", src->width);
    if (st == MM_OK)
        st = mmi_image_create(win_w, row_end - row_first, &mid);
    if (st == MM_OK)
        st = mmi_image_create(win_w, win_h, out);
    if (st == MM_OK) {
        for (int y = row_first; y < row_end; y++) {
            canvas_row(src, y, row);
            uint8_t *d = mid->pixels + (size_t)(y - row_first) * win_w * 3;
            for (int x = 0; x < win_w; x++)
                convolve(row + (size_t)px.first[x] * 3, 3, px.weights + (size_t)x * px.ksize,
                         px.count[x], d + (size_t)x * 3);
        }
        size_t stride = (size_t)win_w * 3;
        for (int y = 0; y < win_h; y++)
            for (int x = 0; x < win_w; x++)
                convolve(mid->pixels + (size_t)(py.first[y] - row_first) * stride + x * 3,
                         stride, py.weights + (size_t)y * py.ksize, py.count[y],
                         (*out)->pixels + (size_t)y * stride + x * 3);
    }
    plan_free(&px);
    plan_free(&py);
    mmi_free(row);
    mmi_image_free(mid);
    return st;
}

mm_status mmi_resize(const mm_image *src, int width, int height, mmi_resample filter,
                     mm_image **out)
{
    *out = NULL;
    if (width <= 0 || height <= 0)
        return mmi_fail(MM_ERR_ARG, "resize to %dx%d", width, height);
    resample_source source = plain_source(src);
    return resample_window(&source, width, height, 0, 0, width, height, filter, out);
}

mm_status mmi_place(const mm_image *src, int width, int height, int left, int top,
                    const uint8_t fill[3], mm_image **out)
{
    MMI_TRY(mmi_image_create(width, height, out));
    mm_image *dst = *out;
    for (int y = 0; y < height; y++) {
        uint8_t *d = dst->pixels + (size_t)y * width * 3;
        int sy = y - top;
        for (int x = 0; x < width; x++, d += 3) {
            int sx = x - left;
            if (sy < 0 || sy >= src->height || sx < 0 || sx >= src->width)
                memcpy(d, fill, 3);
            else
                memcpy(d, src->pixels + ((size_t)sy * src->width + sx) * 3, 3);
        }
    }
    return MM_OK;
}

void mmi_normalize(const mmi_preprocess_config *cfg, const mm_image *src, float *dst)
{
    size_t plane = (size_t)src->width * src->height;
    for (int c = 0; c < 3; c++) {
        float mean = cfg->mean[c], std = cfg->std[c];
        for (size_t i = 0; i < plane; i++) {
            /* HF: uint8 * (1/255) in double, stored as float; then float arithmetic. */
            float x = (float)(src->pixels[i * 3 + c] * (1.0 / 255.0));
            dst[c * plane + i] = (x - mean) / std;
        }
    }
}

/* ---- the pipelines ---- */

static int floor_div2(int v)
{
    return v >= 0 ? v / 2 : -((-v + 1) / 2);
}

/* CLIPImageProcessor's resize (shortest edge to S) and center crop, or the squash resize, of
 * the canvas. Only the cropped window is resampled. */
static mm_status clip_steps(const mmi_preprocess_config *cfg, const resample_source *src,
                            mm_image **out)
{
    int s = cfg->image_size;
    if (cfg->resize == MMI_RESIZE_SQUASH)
        return resample_window(src, s, s, 0, 0, s, s, cfg->resample, out);
    int w = src->width, h = src->height;
    int portrait = w <= h;
    int shorter = portrait ? w : h, longer = portrait ? h : w;
    double scaled = floor((double)((int64_t)s * longer) / shorter); /* int(S * long / short) */
    if (scaled > 1 << 30)
        return mmi_fail(MM_ERR_LIMIT, "a %dx%d image resized to shortest edge %d would be "
                        "%.0f pixels long", w, h, s, scaled);
    int full_w = portrait ? s : (int)scaled, full_h = portrait ? (int)scaled : s;
    /* HF's crop offsets (floor division); where the crop overhangs, zeros. */
    int crop = cfg->crop_size;
    int x0 = floor_div2(full_w - crop), y0 = floor_div2(full_h - crop);
    int wx0 = x0 > 0 ? x0 : 0, wy0 = y0 > 0 ? y0 : 0;
    int wx1 = x0 + crop < full_w ? x0 + crop : full_w;
    int wy1 = y0 + crop < full_h ? y0 + crop : full_h;
    mm_image *window;
    MMI_TRY(resample_window(src, full_w, full_h, wx0, wy0, wx1 - wx0, wy1 - wy0, cfg->resample,
                            &window));
    if (wx1 - wx0 == crop && wy1 - wy0 == crop) {
        *out = window;
        return MM_OK;
    }
    mm_status st = mmi_place(window, crop, crop, wx0 - x0, wy0 - y0, black, out);
    mmi_image_free(window);
    return st;
}

static mm_status clip_steps_image(const mmi_preprocess_config *cfg, const mm_image *image,
                                  mm_image **out)
{
    resample_source src = plain_source(image);
    return clip_steps(cfg, &src, out);
}

/* One view of the whole image: on a square canvas of the mean colour when padding, then the
 * CLIP steps. */
static mm_status single_view(const mmi_preprocess_config *cfg, const mm_image *image,
                             mm_image **out)
{
    resample_source src = plain_source(image);
    if (cfg->pad == MMI_PAD_MEAN && image->width != image->height) {
        int side = image->width > image->height ? image->width : image->height;
        src.width = src.height = side;
        src.left = (side - image->width) / 2;
        src.top = (side - image->height) / 2;
        src.fill = cfg->pad_color;
    }
    return clip_steps(cfg, &src, out);
}

int mmi_select_pinpoint(const mmi_preprocess_config *cfg, int width, int height)
{
    int best = 0;
    int64_t best_effective = 0, best_wasted = INT64_MAX;
    for (int i = 0; i < cfg->n_pinpoints; i++) {
        int ph = cfg->pinpoints[i][0], pw = cfg->pinpoints[i][1];
        double scale = fmin((double)pw / width, (double)ph / height);
        int64_t dw = (int64_t)(width * scale), dh = (int64_t)(height * scale);
        int64_t effective = dw * dh < (int64_t)width * height ? dw * dh : (int64_t)width * height;
        int64_t wasted = (int64_t)pw * ph - effective;
        if (effective > best_effective ||
            (effective == best_effective && wasted < best_wasted)) {
            best = i;
            best_effective = effective;
            best_wasted = wasted;
        }
    }
    return best;
}

/* LlavaNextImageProcessor: the canvas of the chosen resolution, the image resized into it
 * keeping its aspect and centred on black. As HF's _pad_for_patching, the padding is
 * (target - resized) // 2 on both sides, so an odd remainder leaves the canvas one pixel short
 * of the pinpoint (the last row or column of tiles is then cut smaller). */
static mm_status anyres_canvas(const mmi_preprocess_config *cfg, const mm_image *src, int pin,
                               mm_image **out)
{
    int th = cfg->pinpoints[pin][0], tw = cfg->pinpoints[pin][1];
    double scale_w = (double)tw / src->width, scale_h = (double)th / src->height;
    int nw = tw, nh = th;
    if (scale_w < scale_h) {
        double v = ceil(src->height * scale_w);
        nh = v < th ? (int)v : th;
    } else {
        double v = ceil(src->width * scale_h);
        nw = v < tw ? (int)v : tw;
    }
    mm_image *resized;
    MMI_TRY(mmi_resize(src, nw, nh, cfg->resample, &resized));
    int left = (tw - nw) / 2, top = (th - nh) / 2;
    mm_status st = mmi_place(resized, nw + 2 * left, nh + 2 * top, left, top, black, out);
    mmi_image_free(resized);
    return st;
}

static mm_status views_alloc(mmi_views *v, int n_views, int size)
{
    v->n_views = n_views;
    v->size = size;
    v->pixels = mmi_array((size_t)n_views * 3, (size_t)size * size * sizeof(float));
    if (!v->pixels)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %d views of %dx%d", n_views, size,
                        size);
    return MM_OK;
}

/* Normalize view i from an 8-bit image of the view size, then free that image. */
static void views_put(const mmi_preprocess_config *cfg, mmi_views *v, int i, mm_image *img)
{
    mmi_normalize(cfg, img, v->pixels + (size_t)i * 3 * v->size * v->size);
    mmi_image_free(img);
}

static int view_size(const mmi_preprocess_config *cfg)
{
    return cfg->resize == MMI_RESIZE_SQUASH ? cfg->image_size : cfg->crop_size;
}

static mm_status preprocess_tiled(const mmi_preprocess_config *cfg, const mm_image *image,
                                  mmi_views *out)
{
    int pin = mmi_select_pinpoint(cfg, image->width, image->height);
    int tile = cfg->crop_size;
    out->grid_rows = cfg->pinpoints[pin][0] / tile;
    out->grid_cols = cfg->pinpoints[pin][1] / tile;
    MMI_TRY(views_alloc(out, 1 + out->grid_rows * out->grid_cols, view_size(cfg)));

    /* The whole image, squashed to S x S, then through the CLIP steps (a no-op resize). */
    mm_image *whole, *view;
    MMI_TRY(mmi_resize(image, cfg->image_size, cfg->image_size, cfg->resample, &whole));
    mm_status st = clip_steps_image(cfg, whole, &view);
    mmi_image_free(whole);
    MMI_TRY(st);
    views_put(cfg, out, 0, view);

    mm_image *canvas;
    MMI_TRY(anyres_canvas(cfg, image, pin, &canvas));
    for (int r = 0; r < out->grid_rows && st == MM_OK; r++)
        for (int c = 0; c < out->grid_cols && st == MM_OK; c++) {
            /* HF's divide_to_patches: slices of up to tile x tile; each then goes through
             * the CLIP steps like any image. */
            int w = canvas->width - c * tile < tile ? canvas->width - c * tile : tile;
            int h = canvas->height - r * tile < tile ? canvas->height - r * tile : tile;
            mm_image *tile_img;
            st = mmi_place(canvas, w, h, -c * tile, -r * tile, black, &tile_img);
            if (st != MM_OK)
                break;
            st = clip_steps_image(cfg, tile_img, &view);
            mmi_image_free(tile_img);
            if (st == MM_OK)
                views_put(cfg, out, 1 + r * out->grid_cols + c, view);
        }
    mmi_image_free(canvas);
    return st;
}

mm_status mmi_preprocess(const mmi_preprocess_config *cfg, const mm_image *image,
                         mmi_detail detail, mmi_views *out)
{
    memset(out, 0, sizeof *out);
    out->image_width = image->width;
    out->image_height = image->height;
    mm_status st;
    if (detail == MMI_DETAIL_HIGH && cfg->n_pinpoints > 0) {
        st = preprocess_tiled(cfg, image, out);
    } else {
        mm_image *view;
        st = views_alloc(out, 1, view_size(cfg));
        if (st == MM_OK)
            st = single_view(cfg, image, &view);
        if (st == MM_OK)
            views_put(cfg, out, 0, view);
    }
    if (st != MM_OK)
        mmi_views_free(out);
    return st;
}

void mmi_views_free(mmi_views *views)
{
    mmi_free(views->pixels);
    memset(views, 0, sizeof *views);
}

/* ---- token counts ---- */

/* Python's int(round(x, 7)) for the non-negative x met here. */
static int64_t round7_trunc(double x)
{
    return (int64_t)(nearbyint(x * 1e7) / 1e7);
}

mm_status mmi_preprocess_token_count(const mmi_preprocess_config *cfg, int width, int height,
                                     mmi_detail detail, int patches_per_side, int extra_per_view,
                                     int64_t *out)
{
    *out = 0;
    if (width <= 0 || height <= 0 || patches_per_side <= 0 || extra_per_view < 0)
        return mmi_fail(MM_ERR_ARG, "token count for a %dx%d image, %d patches per side, %d "
                        "extra", width, height, patches_per_side, extra_per_view);
    int64_t per_view = (int64_t)patches_per_side * patches_per_side + extra_per_view;
    if (detail != MMI_DETAIL_HIGH || cfg->n_pinpoints == 0) {
        *out = per_view;
        return MM_OK;
    }
    int pin = mmi_select_pinpoint(cfg, width, height);
    int64_t rows = cfg->pinpoints[pin][0] / cfg->crop_size;
    int64_t cols = cfg->pinpoints[pin][1] / cfg->crop_size;
    if (cfg->merge == MMI_MERGE_FLAT) {
        *out = (1 + rows * cols) * per_view;
        return MM_OK;
    }
    /* LLaVA-1.6: the tile grid's patch rows/columns that hold padding are dropped, and each
     * remaining row ends with a newline token; then the whole-image view. */
    int top, left, kept_rows, kept_cols;
    mmi_unpad_window(width, height, patches_per_side * (int)rows, patches_per_side * (int)cols,
                     &top, &left, &kept_rows, &kept_cols);
    *out = (int64_t)kept_rows * kept_cols + kept_rows + per_view;
    return MM_OK;
}

/* ---- dynamic resolution (Qwen2-VL) ---- */

mm_status mmi_smart_resize(int width, int height, int factor, int64_t min_pixels,
                           int64_t max_pixels, int *out_width, int *out_height)
{
    if (factor < 1 || width < factor || height < factor)
        return mmi_fail(MM_ERR_ARG, "image of %dx%d pixels is smaller than %d on a side", width,
                        height, factor);
    int longer = width > height ? width : height, shorter = width > height ? height : width;
    if (longer > 200 * (int64_t)shorter)
        return mmi_fail(MM_ERR_ARG, "image of %dx%d pixels: aspect ratio over 200", width,
                        height);
    /* nearbyint rounds half to even in the default rounding mode, as Python's round. */
    double h = height, w = width, f = factor;
    double hb = nearbyint(h / f) * f, wb = nearbyint(w / f) * f;
    if (hb * wb > (double)max_pixels) {
        double beta = sqrt(h * w / (double)max_pixels);
        hb = floor(h / beta / f) * f;
        wb = floor(w / beta / f) * f;
    } else if (hb * wb < (double)min_pixels) {
        double beta = sqrt((double)min_pixels / (h * w));
        hb = ceil(h * beta / f) * f;
        wb = ceil(w * beta / f) * f;
    }
    if (hb < f || wb < f || hb > INT32_MAX || wb > INT32_MAX)
        return mmi_fail(MM_ERR_ARG, "image of %dx%d pixels cannot be resized within [%lld, %lld] "
                        "pixels", width, height, (long long)min_pixels, (long long)max_pixels);
    *out_width = (int)wb;
    *out_height = (int)hb;
    return MM_OK;
}

mm_status mmi_preprocess_patch_rows(const mmi_preprocess_config *cfg, const mmi_patch_grid *pg,
                                    const mm_image *image, float **rows, int grid[3])
{
    *rows = NULL;
    int P = pg->patch, M = pg->merge, T = pg->temporal, W, H;
    if (P < 1 || M < 1 || T < 1 || (int64_t)P * M > 1 << 16)
        return mmi_fail(MM_ERR_ARG, "patch grid %d x %d (x %d frames) is not usable", P, M, T);
    MMI_TRY(mmi_smart_resize(image->width, image->height, P * M, pg->min_pixels,
                             pg->max_pixels, &W, &H));
    mm_image *sized;
    MMI_TRY(mmi_resize(image, W, H, cfg->resample, &sized));
    size_t plane = (size_t)W * H, row = (size_t)3 * T * P * P;
    float *chw = mmi_array(3 * plane, sizeof(float));
    float *out = mmi_array(plane / ((size_t)P * P), row * sizeof(float));
    if (!chw || !out) {
        mmi_image_free(sized);
        mmi_free(chw);
        mmi_free(out);
        return mmi_fail(MM_ERR_NOMEM, "out of memory for the patches of a %dx%d image", W, H);
    }
    mmi_normalize(cfg, sized, chw);
    mmi_image_free(sized);
    int gh = H / P, gw = W / P;
    float *r = out;
    for (int bh = 0; bh < gh / M; bh++)
        for (int bw = 0; bw < gw / M; bw++)
            for (int mh = 0; mh < M; mh++)
                for (int mw = 0; mw < M; mw++) {
                    int y0 = (bh * M + mh) * P, x0 = (bw * M + mw) * P;
                    for (int c = 0; c < 3; c++)
                        for (int t = 0; t < T; t++) /* every frame is the image */
                            for (int y = 0; y < P; y++, r += P)
                                memcpy(r, chw + c * plane + (size_t)(y0 + y) * W + x0,
                                       (size_t)P * sizeof(float));
                }
    mmi_free(chw);
    grid[0] = 1;
    grid[1] = gh;
    grid[2] = gw;
    *rows = out;
    return MM_OK;
}

void mmi_unpad_window(int width, int height, int rows, int cols, int *top, int *left,
                      int *kept_rows, int *kept_cols)
{
    *top = *left = 0;
    *kept_rows = rows;
    *kept_cols = cols;
    if ((double)width / height > (double)cols / rows) {
        int64_t new_h = round7_trunc(height * ((double)cols / width));
        *top = floor_div2((int)(rows - new_h));
        *kept_rows = rows - 2 * *top;
    } else {
        int64_t new_w = round7_trunc(width * ((double)rows / height));
        *left = floor_div2((int)(cols - new_w));
        *kept_cols = cols - 2 * *left;
    }
}
