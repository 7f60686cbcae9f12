/* Video clips (video.h): frame sampling, clips from caller frames, and the video media row. */
#include "video.h"

#include <math.h>
#include <string.h>

#include "alloc.h"
#include "image.h"
#include "media.h"
#include "options.h"
#include "status.h"
#include "vit.h"

mm_status mmi_video_new(size_t n_frames, mm_video **out)
{
    mm_video *v = mmi_calloc(1, sizeof *v);
    if (v) {
        v->frames = mmi_calloc(n_frames, sizeof *v->frames);
        v->times = mmi_calloc(n_frames, sizeof *v->times);
    }
    if (!v || !v->frames || !v->times) {
        mm_video_free(v);
        return mmi_fail(MM_ERR_NOMEM, "out of memory for a clip of %zu frames", n_frames);
    }
    v->n_frames = n_frames;
    *out = v;
    return MM_OK;
}

void mm_video_free(mm_video *video)
{
    if (!video)
        return;
    for (size_t i = 0; video->frames && i < video->n_frames; i++)
        mmi_image_free(video->frames[i]);
    mmi_free(video->frames);
    mmi_free(video->times);
    mmi_free(video);
}

mm_status mmi_video_sample(const double *times, size_t total, const mm_options *options,
                           size_t **idx, size_t *n_out)
{
    double interval = mmi_opt_float(options, MM_OPT_VIDEO_INTERVAL);
    size_t max = (size_t)mmi_opt_int(options, MM_OPT_VIDEO_MAX_FRAMES);
    size_t n = 0;
    if (total == 0)
        return mmi_fail(MM_ERR_FORMAT, "the clip has no frames");
    if (interval > 0) {
        /* The first frame at or after each multiple of the interval from the first frame. */
        double span = times[total - 1] - times[0];
        n = (size_t)fmin(floor(span / interval) + 1, (double)SIZE_MAX / 2);
    } else {
        n = (size_t)mmi_opt_int(options, MM_OPT_VIDEO_FRAMES);
        n = n < total ? n : total;
    }
    if (n > max)
        return mmi_fail(MM_ERR_LIMIT, "the clip samples %zu frames, more than "
                        "MM_OPT_VIDEO_MAX_FRAMES (%zu)", n, max);
    size_t *out = mmi_array(n, sizeof *out);
    if (!out)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu frame indices", n);
    size_t k = 0;
    if (interval > 0) {
        for (size_t i = 0; i < total && k < n; i++)
            if (times[i] - times[0] >= (double)k * interval)
                out[k++] = i;
    } else {
        /* HF's LLaVA-NeXT-Video examples: np.arange(0, total, total / n).astype(int). */
        for (; k < n; k++)
            out[k] = (size_t)floor((double)k * ((double)total / (double)n));
    }
    *idx = out;
    *n_out = k;
    return MM_OK;
}

/* Times checked and given: the caller's, or frame i at i seconds. */
static mm_status frame_times(const double *times, size_t n, double **out)
{
    double *t = mmi_array(n, sizeof *t);
    if (!t)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu frame times", n);
    for (size_t i = 0; i < n; i++) {
        t[i] = times ? times[i] : (double)i;
        if (!isfinite(t[i]) || (i > 0 && t[i] < t[i - 1])) {
            double bad = t[i];
            mmi_free(t);
            return mmi_fail(MM_ERR_ARG, "mm_video_from_frames: frame %zu's time %g is %s", i,
                            bad, isfinite(bad) ? "before the previous frame's" : "not finite");
        }
    }
    *out = t;
    return MM_OK;
}

mm_status mmi_video_from_frames(const mm_image *const *frames, const double *times,
                                size_t n_frames, const mm_options *options, mm_video **out)
{
    for (size_t i = 0; i < n_frames; i++)
        if (!frames[i])
            return mmi_fail(MM_ERR_ARG, "mm_video_from_frames: frame %zu is NULL", i);
    double *t = NULL;
    MMI_TRY(frame_times(times, n_frames, &t));
    size_t *idx = NULL, n = 0;
    mm_status st = mmi_video_sample(t, n_frames, options, &idx, &n);
    mm_video *v = NULL;
    if (st == MM_OK)
        st = mmi_video_new(n, &v);
    for (size_t k = 0; k < n && st == MM_OK; k++) {
        const mm_image *f = frames[idx[k]];
        v->times[k] = t[idx[k]];
        st = mmi_image_from_pixels(f->pixels, f->width, f->height, (size_t)f->width * 3,
                                   MM_PIXEL_RGB8, &v->frames[k]);
    }
    mmi_free(idx);
    mmi_free(t);
    if (st != MM_OK) {
        mm_video_free(v);
        return st;
    }
    *out = v;
    return MM_OK;
}

/* ---- the media row: frames through the vision tower ---- */

mm_status mmi_video_frame_pixels(const mmi_vision *v, const mm_video *clip, float **chw,
                                 int *side)
{
    mmi_preprocess_config cfg = v->preprocess;
    cfg.resize = MMI_RESIZE_SHORTEST_EDGE_CROP;
    cfg.pad = MMI_PAD_NONE;
    size_t frame_floats = (size_t)3 * cfg.crop_size * cfg.crop_size;
    float *px = mmi_array(clip->n_frames, frame_floats * sizeof(float));
    if (!px)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for the pixels of %zu frames",
                        clip->n_frames);
    mm_status st = MM_OK;
    for (size_t i = 0; i < clip->n_frames && st == MM_OK; i++) {
        mmi_views views;
        st = mmi_preprocess(&cfg, clip->frames[i], MMI_DETAIL_LOW, &views);
        if (st == MM_OK && views.size != cfg.crop_size)
            st = mmi_fail(MM_ERR_UNSUPPORTED, "video frame %zu: preprocessing gave side %d, "
                          "expected %d", i, views.size, cfg.crop_size);
        if (st == MM_OK)
            memcpy(px + i * frame_floats, views.pixels, frame_floats * sizeof(float));
        mmi_views_free(&views);
    }
    if (st != MM_OK) {
        mmi_free(px);
        return st;
    }
    *chw = px;
    *side = cfg.crop_size;
    return MM_OK;
}

static mm_status video_plan(const mm_model *m, const void *source, const mmi_media_params *p,
                            mmi_media_plan *out)
{
    (void)p;
    const mm_video *clip = source;
    const mmi_vision *v = m->vision;
    if (!v)
        return mmi_fail(MM_ERR_STATE, "the model has no vision encoder (load an mmproj file "
                        "with it)");
    int side = v->preprocess.crop_size, per_frame, n_embd;
    MMI_TRY(mmi_vision_frame_shape(v, side, side, &per_frame, &n_embd));
    size_t n_rows = clip->n_frames * (size_t)per_frame;
    if (n_rows > MMI_MAX_CTX)
        return mmi_fail(MM_ERR_LIMIT, "a clip of %zu frames makes %zu rows", clip->n_frames,
                        n_rows);
    *out = (mmi_media_plan){n_rows, (int)n_rows, (int)clip->n_frames, n_embd, {0, 0, 0}};
    return MM_OK;
}

static mm_status video_encode(const mm_model *m, const void *source, const mmi_media_params *p,
                              const mmi_media_plan *plan, float *rows, const atomic_int *cancel)
{
    (void)p;
    float *chw;
    int side;
    MMI_TRY(mmi_video_frame_pixels(m->vision, source, &chw, &side));
    mm_status st = mmi_vision_encode_frames(m->vision, chw, plan->n_views, side, side, rows,
                                            cancel);
    mmi_free(chw);
    return st;
}

const mmi_media_ops mmi_video_ops = {"video", video_plan, video_encode};
