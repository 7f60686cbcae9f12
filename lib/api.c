/* Exported entry points for the library's handles: argument checks, then the stage that does
 * the work. (Status and log functions live in status.c, the options bag in options.c.) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "audio.h"
#include "chatjson.h"
#include "clip.h"
#include "decoder.h"
#include "resample.h"
#include "mm.h"
#include "image.h"
#include "media.h"
#include "video.h"
#include "model.h"
#include "options.h"
#include "ops.h"
#include "points.h"
#include "session.h"
#include "status.h"
#include "tokenizer.h"
#include "vit.h"

unsigned mm_version_number(void)
{
    return MM_VERSION_NUMBER;
}

#define MMI_STR2(x) #x
#define MMI_STR(x) MMI_STR2(x)

const char *mm_version_string(void)
{
    return MMI_STR(MM_VERSION_MAJOR) "." MMI_STR(MM_VERSION_MINOR) "." MMI_STR(MM_VERSION_PATCH);
}

int mm_abi_version(void)
{
    return MM_ABI_VERSION;
}

/* ---- models ---- */

mm_status mm_model_load(const char *path, const char *mmproj_path, const mm_options *options,
                        mm_model **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_model_load: out is NULL");
    *out = NULL;
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mm_model_load: path is NULL");
    return mmi_model_load(path, mmproj_path, options, out);
}

void mm_model_free(mm_model *model)
{
    mmi_model_release(model);
}

const char *mm_model_family(const mm_model *model)
{
    return model && model->decoder ? model->decoder->config.family->arch : NULL;
}

size_t mm_model_meta_count(const mm_model *model)
{
    return model ? mmi_model_meta_count(model) : 0;
}

const char *mm_model_meta_key(const mm_model *model, size_t index)
{
    if (!model || index >= mmi_model_meta_count(model))
        return NULL;
    const mmi_gguf *g = mmi_model_meta_file(model, &index);
    return mmi_gguf_key(g, index);
}

mm_status mm_model_meta_value(const mm_model *model, size_t index, char *buf, size_t capacity,
                              size_t *len)
{
    static const char fn[] = "mm_model_meta_value";
    if (len)
        *len = 0;
    if (!model || (!buf && capacity > 0))
        return mmi_fail(MM_ERR_ARG, "%s: %s is NULL", fn, model ? "buf" : "model");
    size_t n = mmi_model_meta_count(model), need;
    if (index >= n)
        return mmi_fail(MM_ERR_ARG, "%s: index %zu, the model has %zu entries", fn, index, n);
    size_t in_file = index;
    const mmi_gguf *g = mmi_model_meta_file(model, &in_file);
    mmi_gguf_value_text(g, in_file, NULL, 0, &need);
    if (len)
        *len = need;
    if (capacity <= need)
        return mmi_fail(MM_ERR_ARG, "%s: the value of %s takes %zu bytes and its NUL, the "
                        "buffer holds %zu", fn, mm_model_meta_key(model, index), need, capacity);
    mmi_gguf_value_text(g, in_file, buf, capacity, &need);
    return MM_OK;
}

size_t mm_model_tensor_count(const mm_model *model)
{
    return model ? mmi_model_tensor_count(model) : 0;
}

mm_status mm_model_tensor_info(const mm_model *model, size_t index, const char **name,
                               const char **type, uint64_t *n_bytes)
{
    if (name)
        *name = NULL;
    if (type)
        *type = NULL;
    if (n_bytes)
        *n_bytes = 0;
    if (!model)
        return mmi_fail(MM_ERR_ARG, "mm_model_tensor_info: model is NULL");
    const mmi_tensor *t = mmi_model_tensor(model, index);
    if (!t)
        return mmi_fail(MM_ERR_ARG, "mm_model_tensor_info: index %zu, the model has %zu "
                        "tensors", index, mmi_model_tensor_count(model));
    if (name)
        *name = t->name;
    if (type)
        *type = mmi_tensor_type_name(t->type);
    if (n_bytes)
        *n_bytes = t->n_bytes;
    return MM_OK;
}

mm_status mm_model_memory(const mm_model *model, int n_ctx, uint64_t *weight_bytes,
                          uint64_t *kv_bytes)
{
    if (weight_bytes)
        *weight_bytes = 0;
    if (kv_bytes)
        *kv_bytes = 0;
    if (!model || n_ctx < 0)
        return mmi_fail(MM_ERR_ARG, "mm_model_memory: %s", model ? "n_ctx < 0" : "model is NULL");
    uint64_t in_files, converted;
    mmi_model_weight_bytes(model, &in_files, &converted);
    if (weight_bytes)
        *weight_bytes = in_files + converted;
    if (kv_bytes && model->decoder) {
        const mmi_decoder_config *c = &model->decoder->config;
        uint64_t positions = (uint64_t)(n_ctx ? n_ctx : c->n_ctx_train);
        *kv_bytes = 2 * (uint64_t)c->n_layer * positions * (uint64_t)c->n_head_kv *
                    (uint64_t)c->head_dim * sizeof(float);
    }
    return MM_OK;
}

/* ---- images ---- */

mm_status mm_image_load_file(const char *path, const mm_options *options, mm_image **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_image_load_file: out is NULL");
    *out = NULL;
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mm_image_load_file: path is NULL");
    return mmi_image_load_file(path, options, out);
}

mm_status mm_image_load_memory(const void *data, size_t size, const mm_options *options,
                               mm_image **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_image_load_memory: out is NULL");
    *out = NULL;
    if (!data)
        return mmi_fail(MM_ERR_ARG, "mm_image_load_memory: data is NULL");
    return mmi_image_load_memory(data, size, options, out);
}

mm_status mm_image_from_pixels(const uint8_t *pixels, int width, int height, size_t stride,
                               mm_pixel_format format, mm_image **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_image_from_pixels: out is NULL");
    *out = NULL;
    if (!pixels)
        return mmi_fail(MM_ERR_ARG, "mm_image_from_pixels: pixels is NULL");
    return mmi_image_from_pixels(pixels, width, height, stride, format, out);
}

int mm_image_width(const mm_image *image)
{
    return image ? image->width : 0;
}

int mm_image_height(const mm_image *image)
{
    return image ? image->height : 0;
}

const uint8_t *mm_image_pixels(const mm_image *image)
{
    return image ? image->pixels : NULL;
}

void mm_image_free(mm_image *image)
{
    mmi_image_free(image);
}

/* ---- point clouds ---- */

mm_status mm_points_load_file(const char *path, const mm_options *options, mm_points **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_points_load_file: out is NULL");
    *out = NULL;
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mm_points_load_file: path is NULL");
    return mmi_points_load_file(path, options, out);
}

mm_status mm_points_load_memory(const void *data, size_t size, const mm_options *options,
                                mm_points **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_points_load_memory: out is NULL");
    *out = NULL;
    if (!data)
        return mmi_fail(MM_ERR_ARG, "mm_points_load_memory: data is NULL");
    return mmi_points_parse_ply(data, size, "<memory>", options, out);
}

mm_status mm_points_from_arrays(const float *xyz, const float *rgb, size_t n_points,
                                mm_points **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_points_from_arrays: out is NULL");
    *out = NULL;
    if (!xyz)
        return mmi_fail(MM_ERR_ARG, "mm_points_from_arrays: xyz is NULL");
    return mmi_points_from_arrays(xyz, rgb, n_points, out);
}

size_t mm_points_count(const mm_points *points)
{
    return points ? points->n_points : 0;
}

const float *mm_points_xyz(const mm_points *points)
{
    return points ? points->xyz : NULL;
}

const float *mm_points_rgb(const mm_points *points)
{
    return points ? points->rgb : NULL;
}

const float *mm_points_normals(const mm_points *points)
{
    return points ? points->normals : NULL;
}

void mm_points_free(mm_points *points)
{
    mmi_points_free(points);
}

/* ---- audio ---- */

mm_status mm_audio_load_file(const char *path, const mm_options *options, mm_audio **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_audio_load_file: out is NULL");
    *out = NULL;
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mm_audio_load_file: path is NULL");
    return mmi_audio_load_file(path, options, out);
}

mm_status mm_audio_load_memory(const void *data, size_t size, const mm_options *options,
                               mm_audio **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_audio_load_memory: out is NULL");
    *out = NULL;
    if (!data)
        return mmi_fail(MM_ERR_ARG, "mm_audio_load_memory: data is NULL");
    return mmi_audio_load_memory(data, size, options, out);
}

mm_status mm_audio_from_samples(const float *samples, size_t n_frames, int n_channels,
                                int sample_rate, mm_audio **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_audio_from_samples: out is NULL");
    *out = NULL;
    if (!samples)
        return mmi_fail(MM_ERR_ARG, "mm_audio_from_samples: samples is NULL");
    return mmi_audio_from_samples(samples, n_frames, n_channels, sample_rate, out);
}

int mm_audio_sample_rate(const mm_audio *audio)
{
    return audio ? audio->sample_rate : 0;
}

size_t mm_audio_n_samples(const mm_audio *audio)
{
    return audio ? audio->n_samples : 0;
}

const float *mm_audio_samples(const mm_audio *audio)
{
    return audio ? audio->samples : NULL;
}

void mm_audio_free(mm_audio *audio)
{
    mmi_audio_free(audio);
}

int mm_audio_resampling_available(void)
{
    return mmi_resampling_available();
}

/* ---- media ---- */

static mm_status media_new(const mmi_media_ops *ops, const void *source, const char *fn,
                           mm_media **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!source)
        return mmi_fail(MM_ERR_ARG, "%s: the %s is NULL", fn, ops->kind);
    *out = mmi_malloc(sizeof **out);
    if (!*out)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory", fn);
    **out = (mm_media){ops, source};
    return MM_OK;
}

mm_status mm_media_from_image(const mm_image *image, mm_media **out)
{
    return media_new(&mmi_image_ops, image, "mm_media_from_image", out);
}

mm_status mm_media_from_audio(const mm_audio *audio, mm_media **out)
{
    return media_new(&mmi_audio_ops, audio, "mm_media_from_audio", out);
}

mm_status mm_media_from_video(const mm_video *video, mm_media **out)
{
    return media_new(&mmi_video_ops, video, "mm_media_from_video", out);
}

void mm_media_free(mm_media *media)
{
    mmi_free(media);
}

mm_status mm_media_n_tokens(const mm_model *model, const mm_media *media, size_t *n_tokens)
{
    if (!model || !media || !n_tokens)
        return mmi_fail(MM_ERR_ARG, "mm_media_n_tokens: %s is NULL",
                        !model ? "model" : !media ? "media" : "n_tokens");
    mmi_media_params p;
    MMI_TRY(mmi_media_params_from_options(NULL, &p)); /* images at the default detail */
    mmi_media_plan plan;
    MMI_TRY(media->ops->plan(model, media->source, &p, &plan));
    *n_tokens = plan.n_rows;
    return MM_OK;
}

/* ---- video ---- */

mm_status mm_video_from_frames(const mm_image *const *frames, const double *times,
                               size_t n_frames, const mm_options *options, mm_video **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_video_from_frames: out is NULL");
    *out = NULL;
    if (!frames || n_frames == 0)
        return mmi_fail(MM_ERR_ARG, "mm_video_from_frames: %s", !frames ? "frames is NULL"
                                                                        : "no frames");
    return mmi_video_from_frames(frames, times, n_frames, options, out);
}

mm_status mm_video_load_file(const char *path, const mm_options *options, mm_video **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_video_load_file: out is NULL");
    *out = NULL;
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mm_video_load_file: path is NULL");
    return mmi_video_load_file(path, options, out);
}

mm_status mm_video_load_memory(const void *data, size_t size, const mm_options *options,
                               mm_video **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_video_load_memory: out is NULL");
    *out = NULL;
    if (!data)
        return mmi_fail(MM_ERR_ARG, "mm_video_load_memory: data is NULL");
    return mmi_video_load_memory(data, size, options, out);
}

int mm_video_files_available(void)
{
    return mmi_video_files_available();
}

size_t mm_video_n_frames(const mm_video *video)
{
    return video ? video->n_frames : 0;
}

const mm_image *mm_video_frame(const mm_video *video, size_t i)
{
    return video && i < video->n_frames ? video->frames[i] : NULL;
}

double mm_video_frame_time(const mm_video *video, size_t i)
{
    return video && i < video->n_frames ? video->times[i] : 0;
}

/* ---- vision encoding and CLIP ---- */

struct mm_embeddings {
    size_t n_tokens, n_embd;
    float data[]; /* n_tokens * n_embd */
};

/* A computation outside a session runs on a pool of its own (MM_OPT_N_THREADS of the options;
 * NULL options: one thread per CPU), bound to this thread between begin and end. */
typedef struct {
    mmi_exec exec;
    const mmi_exec *previous;
} compute;

static mm_status compute_begin(compute *c, const mm_options *options)
{
    MMI_TRY(mmi_exec_init(&c->exec, (int)mmi_opt_int(options, MM_OPT_N_THREADS)));
    mm_status st = mmi_exec_set_precision(&c->exec, mmi_opt_string(options,
                                                                   MM_OPT_MATMUL_PRECISION));
    if (st != MM_OK) {
        mmi_exec_free(&c->exec);
        return st;
    }
    c->previous = mmi_exec_bind(&c->exec);
    return MM_OK;
}

static mm_status compute_end(compute *c, mm_status st)
{
    mmi_exec_bind(c->previous);
    mmi_exec_free(&c->exec);
    return st;
}

static mm_status check_pixels(const char *fn, const float *planar_chw, int width, int height)
{
    if (!planar_chw)
        return mmi_fail(MM_ERR_ARG, "%s: planar_chw is NULL", fn);
    if (width < 1 || height < 1)
        return mmi_fail(MM_ERR_ARG, "%s: image size %dx%d", fn, width, height);
    return MM_OK;
}

/* Rows of one image into a new mm_embeddings: run(model, job, rows) on the options' threads,
 * progress reported in vision blocks, for now before and after the tower runs. */
static mm_status new_embeddings(const mm_model *model, const mm_options *options, size_t n_rows,
                                int n_embd, mm_status (*run)(const mm_model *, const void *,
                                                             float *),
                                const void *job, mm_embeddings **out)
{
    size_t n = n_rows * (size_t)n_embd;
    mm_embeddings *e = mmi_malloc(sizeof *e + n * sizeof(float));
    if (!e)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu image embeddings of %d floats",
                        n_rows, n_embd);
    e->n_tokens = n_rows;
    e->n_embd = (size_t)n_embd;
    uint64_t n_blocks = (uint64_t)model->vision->enc.n_layer;
    mm_status st = mmi_progress(options, MM_PROGRESS_IMAGE_ENCODE, 0, n_blocks);
    compute c;
    if (st == MM_OK && (st = compute_begin(&c, options)) == MM_OK)
        st = compute_end(&c, run(model, job, e->data));
    if (st == MM_OK)
        st = mmi_progress(options, MM_PROGRESS_IMAGE_ENCODE, n_blocks, n_blocks);
    if (st != MM_OK) {
        mmi_free(e);
        return st;
    }
    *out = e;
    return MM_OK;
}

typedef struct {
    const float *chw;
    int width, height;
} pixels_job;

static mm_status encode_pixels(const mm_model *model, const void *job, float *rows)
{
    const pixels_job *j = job;
    return mmi_vision_encode(model->vision, j->chw, j->width, j->height, rows, NULL);
}

typedef struct {
    const mm_image *image;
    const mmi_media_params *params;
    const mmi_media_plan *plan;
} image_job;

static mm_status encode_image(const mm_model *model, const void *job, float *rows)
{
    const image_job *j = job;
    return mmi_image_ops.encode(model, j->image, j->params, j->plan, rows, NULL);
}

mm_status mm_image_encode_pixels(const mm_model *model, const float *planar_chw, int width,
                                 int height, const mm_options *options, mm_embeddings **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_image_encode_pixels: out is NULL");
    *out = NULL;
    if (!model)
        return mmi_fail(MM_ERR_ARG, "mm_image_encode_pixels: model is NULL");
    if (!model->vision)
        return mmi_fail(MM_ERR_ARG, "mm_image_encode_pixels: the model has no vision encoder");
    MMI_TRY(check_pixels("mm_image_encode_pixels", planar_chw, width, height));
    int n_tokens, n_embd;
    MMI_TRY(mmi_vision_output_shape(model->vision, width, height, &n_tokens, &n_embd));
    pixels_job job = {planar_chw, width, height};
    return new_embeddings(model, options, (size_t)n_tokens, n_embd, encode_pixels, &job, out);
}

mm_status mm_media_encode(const mm_model *model, const mm_media *media, const mm_options *options,
                          mm_embeddings **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_media_encode: out is NULL");
    *out = NULL;
    if (!model || !media)
        return mmi_fail(MM_ERR_ARG, "mm_media_encode: %s is NULL", !model ? "model" : "media");
    mmi_media_params p;
    MMI_TRY(mmi_media_params_from_options(options, &p));
    mmi_media_plan plan;
    MMI_TRY(media->ops->plan(model, media->source, &p, &plan));
    size_t n = plan.n_rows * (size_t)plan.n_embd;
    mm_embeddings *e = mmi_malloc(sizeof *e + n * sizeof(float));
    if (!e)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu rows of %d floats", plan.n_rows,
                        plan.n_embd);
    e->n_tokens = plan.n_rows;
    e->n_embd = (size_t)plan.n_embd;
    compute c;
    mm_status st = compute_begin(&c, options);
    if (st == MM_OK)
        st = compute_end(&c, media->ops->encode(model, media->source, &p, &plan, e->data, NULL));
    if (st != MM_OK) {
        mmi_free(e);
        return st;
    }
    *out = e;
    return MM_OK;
}

mm_status mm_image_encode(const mm_model *model, const mm_image *image, const mm_options *options,
                          mm_embeddings **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_image_encode: out is NULL");
    *out = NULL;
    if (!model || !image)
        return mmi_fail(MM_ERR_ARG, "mm_image_encode: %s is NULL", model ? "image" : "model");
    if (!model->vision)
        return mmi_fail(MM_ERR_ARG, "mm_image_encode: the model has no vision encoder");
    mmi_media_params p;
    mmi_media_plan plan;
    MMI_TRY(mmi_media_params_from_options(options, &p));
    MMI_TRY(mmi_image_ops.plan(model, image, &p, &plan));
    image_job job = {image, &p, &plan};
    return new_embeddings(model, options, plan.n_rows, plan.n_embd, encode_image, &job, out);
}

mm_status mm_image_token_count(const mm_model *model, int width, int height,
                               const mm_options *options, size_t *n_positions, int *n_views)
{
    static const char fn[] = "mm_image_token_count";
    if (!model || !n_positions)
        return mmi_fail(MM_ERR_ARG, "%s: %s is NULL", fn, model ? "n_positions" : "model");
    *n_positions = 0;
    if (n_views)
        *n_views = 0;
    if (!model->vision)
        return mmi_fail(MM_ERR_ARG, "%s: the model has no vision encoder", fn);
    mmi_media_params p;
    mmi_media_plan plan;
    mm_status st = mmi_media_params_from_options(options, &p);
    if (st == MM_OK)
        st = mmi_image_plan(model, width, height, &p, &plan);
    if (st != MM_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", mm_last_error());
        return mmi_fail(st, "%s: %s", fn, why);
    }
    *n_positions = plan.n_rows;
    if (n_views)
        *n_views = plan.n_views;
    return MM_OK;
}

size_t mm_embeddings_n_tokens(const mm_embeddings *embeddings)
{
    return embeddings ? embeddings->n_tokens : 0;
}

size_t mm_embeddings_n_embd(const mm_embeddings *embeddings)
{
    return embeddings ? embeddings->n_embd : 0;
}

const float *mm_embeddings_data(const mm_embeddings *embeddings)
{
    return embeddings ? embeddings->data : NULL;
}

void mm_embeddings_free(mm_embeddings *embeddings)
{
    mmi_free(embeddings);
}

size_t mm_clip_embedding_size(const mm_model *model)
{
    return model && model->clip_text && model->vision ? (size_t)model->clip_text->n_proj : 0;
}

/* The CLIP parts of a model, and an output buffer of the joint space's size. */
static mm_status check_clip(const char *fn, const mm_model *model, const float *out, size_t n)
{
    if (!model)
        return mmi_fail(MM_ERR_ARG, "%s: model is NULL", fn);
    if (!mm_clip_embedding_size(model))
        return mmi_fail(MM_ERR_ARG, "%s: the model is not a CLIP dual encoder", fn);
    if (!out)
        return mmi_fail(MM_ERR_ARG, "%s: output is NULL", fn);
    if (n != mm_clip_embedding_size(model))
        return mmi_fail(MM_ERR_ARG, "%s: output holds %zu floats, the embedding has %zu", fn, n,
                        mm_clip_embedding_size(model));
    return MM_OK;
}

mm_status mm_clip_logit_scale(const mm_model *model, float *scale)
{
    MMI_TRY(check_clip("mm_clip_logit_scale", model, scale, mm_clip_embedding_size(model)));
    *scale = expf(model->clip_text->logit_scale);
    return MM_OK;
}

mm_status mm_clip_image_embedding(const mm_model *model, const mm_image *image, float *out,
                                  size_t n)
{
    MMI_TRY(check_clip("mm_clip_image_embedding", model, out, n));
    if (!image)
        return mmi_fail(MM_ERR_ARG, "mm_clip_image_embedding: image is NULL");
    mmi_views views;
    MMI_TRY(mmi_vision_preprocess(model->vision, image, &views));
    compute c;
    mm_status st = compute_begin(&c, NULL);
    if (st == MM_OK)
        st = compute_end(&c, mmi_clip_image_embed(model->clip_text, model->vision, views.pixels,
                                                  views.size, views.size, out, 1));
    mmi_views_free(&views);
    return st;
}

mm_status mm_clip_image_embedding_pixels(const mm_model *model, const float *planar_chw,
                                         int width, int height, float *out, size_t n)
{
    MMI_TRY(check_clip("mm_clip_image_embedding_pixels", model, out, n));
    MMI_TRY(check_pixels("mm_clip_image_embedding_pixels", planar_chw, width, height));
    compute c;
    MMI_TRY(compute_begin(&c, NULL));
    return compute_end(&c, mmi_clip_image_embed(model->clip_text, model->vision, planar_chw,
                                                width, height, out, 1));
}

mm_status mm_clip_text_embedding_tokens(const mm_model *model, const int32_t *ids, size_t n_ids,
                                        float *out, size_t n)
{
    MMI_TRY(check_clip("mm_clip_text_embedding_tokens", model, out, n));
    if (!ids)
        return mmi_fail(MM_ERR_ARG, "mm_clip_text_embedding_tokens: ids is NULL");
    if (n_ids < 1 || n_ids > (size_t)model->clip_text->n_ctx)
        return mmi_fail(MM_ERR_ARG, "mm_clip_text_embedding_tokens: %zu ids, the model takes 1 "
                        "to %d", n_ids, model->clip_text->n_ctx);
    compute c;
    MMI_TRY(compute_begin(&c, NULL));
    return compute_end(&c, mmi_clip_text_embed(model->clip_text, ids, (int)n_ids, out, 1));
}

mm_status mm_clip_text_embedding(const mm_model *model, const char *text, float *out, size_t n)
{
    MMI_TRY(check_clip("mm_clip_text_embedding", model, out, n));
    if (!text)
        return mmi_fail(MM_ERR_ARG, "mm_clip_text_embedding: text is NULL");
    if (!model->tokenizer)
        return mmi_fail(MM_ERR_UNSUPPORTED, "mm_clip_text_embedding: the model file carries no "
                        "usable tokenizer; pass token ids to mm_clip_text_embedding_tokens");
    compute c;
    MMI_TRY(compute_begin(&c, NULL));
    return compute_end(&c, mmi_clip_text_embed_string(model->clip_text, model->tokenizer, text,
                                                      out, 1));
}

mm_status mm_clip_classify(const mm_model *model, const mm_image *image,
                           const char *const *labels, size_t n_labels, float *probs)
{
    if (!model || !image || !labels || !probs || n_labels < 1)
        return mmi_fail(MM_ERR_ARG, "mm_clip_classify: %s", !model ? "model is NULL"
                        : !image ? "image is NULL" : !labels ? "labels is NULL"
                        : !probs ? "probs is NULL" : "no labels");
    size_t dim = mm_clip_embedding_size(model);
    if (!dim)
        return mmi_fail(MM_ERR_ARG, "mm_clip_classify: the model is not a CLIP dual encoder");
    float *embd = mmi_array(2 * dim, sizeof(float));
    if (!embd)
        return mmi_fail(MM_ERR_NOMEM, "mm_clip_classify: out of memory");
    float *img = embd, *txt = embd + dim;
    float scale = expf(model->clip_text->logit_scale);
    mm_status st = mm_clip_image_embedding(model, image, img, dim);
    for (size_t i = 0; i < n_labels && st == MM_OK; i++) {
        if (!labels[i])
            st = mmi_fail(MM_ERR_ARG, "mm_clip_classify: label %zu is NULL", i);
        else
            st = mm_clip_text_embedding(model, labels[i], txt, dim);
        if (st == MM_OK)
            probs[i] = scale * mm_clip_similarity(img, txt, dim);
    }
    if (st == MM_OK)
        mmi_softmax(probs, 1, (int)n_labels);
    mmi_free(embd);
    return st;
}

float mm_clip_similarity(const float *a, const float *b, size_t n)
{
    if (!a || !b)
        return 0.0f;
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0.0 && bb > 0.0 ? (float)(ab / sqrt(aa * bb)) : 0.0f;
}

/* ---- tokenizer ---- */

/* The model's tokenizer, or NULL with MM_ERR_ARG / MM_ERR_STATE reported. */
static const mmi_tokenizer *model_tokenizer(const mm_model *model, const char *fn, mm_status *st)
{
    if (!model) {
        *st = mmi_fail(MM_ERR_ARG, "%s: model is NULL", fn);
        return NULL;
    }
    if (!model->tokenizer) {
        *st = mmi_fail(MM_ERR_STATE, "%s: the model files hold no tokenizer", fn);
        return NULL;
    }
    return model->tokenizer;
}

mm_status mm_tokenize(const mm_model *model, const char *text, size_t text_len, unsigned flags,
                      int32_t *ids, size_t capacity, size_t *n_ids)
{
    if (!n_ids)
        return mmi_fail(MM_ERR_ARG, "mm_tokenize: n_ids is NULL");
    *n_ids = 0;
    mm_status st;
    const mmi_tokenizer *tok = model_tokenizer(model, "mm_tokenize", &st);
    if (!tok)
        return st;
    if ((!text && text_len) || (!ids && capacity))
        return mmi_fail(MM_ERR_ARG, "mm_tokenize: %s is NULL", !text && text_len ? "text" : "ids");
    if (flags & ~(unsigned)(MM_TOKENIZE_ADD_SPECIAL | MM_TOKENIZE_PARSE_SPECIAL))
        return mmi_fail(MM_ERR_ARG, "mm_tokenize: unknown flags 0x%x", flags);
    mmi_tokens out = {0};
    st = mmi_tokenize(tok, text ? text : "", text_len, flags, &out);
    if (st == MM_OK) {
        *n_ids = out.n;
        if (out.n > capacity)
            st = mmi_fail(MM_ERR_ARG, "mm_tokenize: %zu ids do not fit in a capacity of %zu",
                          out.n, capacity);
        else if (out.n)
            memcpy(ids, out.ids, out.n * sizeof *ids);
    }
    mmi_tokens_free(&out);
    return st;
}

mm_status mm_detokenize(const mm_model *model, const int32_t *ids, size_t n_ids, unsigned flags,
                        char *text, size_t capacity, size_t *text_len)
{
    if (!text_len)
        return mmi_fail(MM_ERR_ARG, "mm_detokenize: text_len is NULL");
    *text_len = 0;
    mm_status st;
    const mmi_tokenizer *tok = model_tokenizer(model, "mm_detokenize", &st);
    if (!tok)
        return st;
    if ((!ids && n_ids) || (!text && capacity))
        return mmi_fail(MM_ERR_ARG, "mm_detokenize: %s is NULL", !ids && n_ids ? "ids" : "text");
    if (flags & ~(unsigned)(MM_DETOKENIZE_RENDER_SPECIAL | MM_DETOKENIZE_KEEP_LEADING_SPACE))
        return mmi_fail(MM_ERR_ARG, "mm_detokenize: unknown flags 0x%x", flags);
    mmi_detok_stream stream;
    MMI_TRY(mmi_detok_stream_init(&stream, tok, flags));
    /* Write what fits and count the rest, so the caller learns the size needed. */
    size_t n = 0;
    for (size_t i = 0; i <= n_ids; i++) {
        const char *piece;
        size_t len;
        if (i < n_ids) {
            st = mmi_detok_stream_push(&stream, ids[i], &piece, &len);
            if (st != MM_OK)
                break;
        } else {
            mmi_detok_stream_finish(&stream, &piece, &len);
        }
        if (n + len < capacity)
            memcpy(text + n, piece, len);
        n += len;
    }
    mmi_detok_stream_free(&stream);
    if (st != MM_OK)
        return st;
    *text_len = n;
    if (n >= capacity)
        return mmi_fail(MM_ERR_ARG, "mm_detokenize: %zu bytes and the NUL do not fit in a "
                        "capacity of %zu", n, capacity);
    text[n] = '\0';
    return MM_OK;
}

mm_status mm_token_to_piece(const mm_model *model, int32_t id, char *buf, size_t capacity,
                            size_t *len)
{
    if (!len)
        return mmi_fail(MM_ERR_ARG, "mm_token_to_piece: len is NULL");
    *len = 0;
    mm_status st;
    const mmi_tokenizer *tok = model_tokenizer(model, "mm_token_to_piece", &st);
    if (!tok)
        return st;
    if (!buf && capacity)
        return mmi_fail(MM_ERR_ARG, "mm_token_to_piece: buf is NULL");
    if (id < 0 || id >= mmi_tokenizer_n_vocab(tok))
        return mmi_fail(MM_ERR_ARG, "mm_token_to_piece: id %d is outside the vocabulary (%d "
                        "tokens)", (int)id, (int)mmi_tokenizer_n_vocab(tok));
    size_t n;
    const char *piece = mmi_token_piece(tok, id, &n);
    *len = n;
    if (n > capacity)
        return mmi_fail(MM_ERR_ARG, "mm_token_to_piece: %zu bytes do not fit in a capacity of "
                        "%zu", n, capacity);
    if (n)
        memcpy(buf, piece, n);
    return MM_OK;
}

int32_t mm_n_vocab(const mm_model *model)
{
    return model && model->tokenizer ? mmi_tokenizer_n_vocab(model->tokenizer) : 0;
}

int32_t mm_token_bos(const mm_model *model)
{
    return model && model->tokenizer ? mmi_token_bos(model->tokenizer) : -1;
}

int32_t mm_token_eos(const mm_model *model)
{
    return model && model->tokenizer ? mmi_token_eos(model->tokenizer) : -1;
}

int mm_token_is_eog(const mm_model *model, int32_t id)
{
    return model && model->tokenizer ? mmi_token_is_eog(model->tokenizer, id) : 0;
}

/* ---- sessions and generation ---- */

#define CHECK_SESSION(s, fn)                                                 \
    do {                                                                     \
        if (!(s))                                                            \
            return mmi_fail(MM_ERR_ARG, fn ": session is NULL");             \
        MMI_TRY(mmi_session_check_reentry(s, fn));                           \
    } while (0)

mm_status mm_session_create(mm_model *model, const mm_options *options, mm_session **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_session_create: out is NULL");
    *out = NULL;
    if (!model)
        return mmi_fail(MM_ERR_ARG, "mm_session_create: model is NULL");
    return mmi_session_create(model, options, out);
}

/* A void call refused for re-entry does nothing; mm_last_error() says why. */
void mm_session_free(mm_session *session)
{
    if (session && mmi_session_check_reentry(session, "mm_session_free") == MM_OK)
        mmi_session_free(session);
}

mm_status mm_session_set_options(mm_session *session, const mm_options *options)
{
    CHECK_SESSION(session, "mm_session_set_options");
    return mmi_session_set_options(session, options);
}

mm_status mm_session_add_text(mm_session *session, const char *text, size_t len, unsigned flags)
{
    CHECK_SESSION(session, "mm_session_add_text");
    if (!text && len > 0)
        return mmi_fail(MM_ERR_ARG, "mm_session_add_text: text is NULL");
    return mmi_session_add_text(session, text ? text : "", len, flags);
}

/* Argument checks shared by the message calls. */
static mm_status check_message(const char *fn, const mm_session *session, const char *role,
                               mmi_chat_role *r, const char *text, size_t len,
                               const void *images, size_t n_images)
{
    if (!session)
        return mmi_fail(MM_ERR_ARG, "%s: session is NULL", fn);
    MMI_TRY(mmi_session_check_reentry(session, fn));
    if (!role || !mmi_chat_role_from_name(role, r))
        return mmi_fail(MM_ERR_ARG, "%s: role '%s' is not system, user or assistant", fn,
                        role ? role : "(null)");
    if (!text && len > 0)
        return mmi_fail(MM_ERR_ARG, "%s: text is NULL", fn);
    if (!images && n_images > 0)
        return mmi_fail(MM_ERR_ARG, "%s: images is NULL", fn);
    return MM_OK;
}

mm_status mm_session_add_message(mm_session *session, const char *role, const char *text,
                                 size_t len)
{
    mmi_chat_role r;
    MMI_TRY(check_message("mm_session_add_message", session, role, &r, text, len, NULL, 0));
    return mmi_session_add_message(session, r, text ? text : "", len, NULL, 0);
}

mm_status mm_session_add_message_images(mm_session *session, const char *role, const char *text,
                                        size_t len, const mm_image *const *images,
                                        size_t n_images)
{
    static const char fn[] = "mm_session_add_message_images";
    mmi_chat_role r;
    MMI_TRY(check_message(fn, session, role, &r, text, len, images, n_images));
    for (size_t i = 0; i < n_images; i++)
        if (!images[i])
            return mmi_fail(MM_ERR_ARG, "%s: image %zu is NULL", fn, i);
    return mmi_session_add_message_images(session, r, text ? text : "", len, images, n_images);
}

mm_status mm_session_add_message_media(mm_session *session, const char *role, const char *text,
                                       size_t len, const mm_media *const *media, size_t n_media)
{
    static const char fn[] = "mm_session_add_message_media";
    mmi_chat_role r;
    MMI_TRY(check_message(fn, session, role, &r, text, len, media, n_media));
    mmi_media *items = mmi_array(n_media ? n_media : 1, sizeof *items);
    if (!items)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory", fn);
    mm_status st = MM_OK;
    for (size_t i = 0; i < n_media && st == MM_OK; i++) {
        if (!media[i])
            st = mmi_fail(MM_ERR_ARG, "%s: media %zu is NULL", fn, i);
        else
            items[i] = (mmi_media){.ops = media[i]->ops, .source = media[i]->source};
    }
    if (st == MM_OK)
        st = mmi_session_add_message(session, r, text ? text : "", len, items, n_media);
    mmi_free(items);
    return st;
}

mm_status mm_session_add_message_embeddings(mm_session *session, const char *role,
                                            const char *text, size_t len,
                                            const mm_embeddings *const *images, size_t n_images)
{
    static const char fn[] = "mm_session_add_message_embeddings";
    mmi_chat_role r;
    MMI_TRY(check_message(fn, session, role, &r, text, len, images, n_images));
    size_t n_embd = (size_t)mmi_session_n_embd(session);
    mmi_media *media = mmi_array(n_images ? n_images : 1, sizeof *media);
    if (!media)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory", fn);
    mm_status st = MM_OK;
    for (size_t i = 0; i < n_images && st == MM_OK; i++) {
        if (!images[i] || images[i]->n_embd != n_embd)
            st = mmi_fail(MM_ERR_ARG, "%s: image %zu has rows of %zu values, the language model "
                          "takes %zu", fn, i, images[i] ? images[i]->n_embd : 0, n_embd);
        else
            media[i] = (mmi_media){.rows = images[i]->data, .n_rows = images[i]->n_tokens};
    }
    if (st == MM_OK)
        st = mmi_session_add_message(session, r, text ? text : "", len, media, n_images);
    mmi_free(media);
    return st;
}

mm_status mm_session_add_tokens(mm_session *session, const int32_t *ids, size_t n_ids)
{
    CHECK_SESSION(session, "mm_session_add_tokens");
    if (!ids && n_ids > 0)
        return mmi_fail(MM_ERR_ARG, "mm_session_add_tokens: ids is NULL");
    return mmi_session_add_tokens(session, ids, n_ids);
}

mm_status mm_session_add_embeddings(mm_session *session, const float *embd, size_t n_rows,
                                    size_t n_embd)
{
    CHECK_SESSION(session, "mm_session_add_embeddings");
    if (!embd && n_rows > 0)
        return mmi_fail(MM_ERR_ARG, "mm_session_add_embeddings: embd is NULL");
    return mmi_session_add_embeddings(session, embd, n_rows, n_embd);
}

mm_status mm_session_add_stop_string(mm_session *session, const char *stop)
{
    CHECK_SESSION(session, "mm_session_add_stop_string");
    if (!stop)
        return mmi_fail(MM_ERR_ARG, "mm_session_add_stop_string: stop is NULL");
    return mmi_session_add_stop_string(session, stop);
}

void mm_session_clear_stop_strings(mm_session *session)
{
    if (session && mmi_session_check_reentry(session, "mm_session_clear_stop_strings") == MM_OK)
        mmi_session_clear_stop_strings(session);
}

mm_status mm_session_generate(mm_session *session, const mm_options *options, mm_piece_fn fn,
                              void *user)
{
    CHECK_SESSION(session, "mm_session_generate");
    return mmi_session_generate(session, options, fn, user);
}

mm_status mm_session_next(mm_session *session, int32_t *token, const char **piece, size_t *len)
{
    CHECK_SESSION(session, "mm_session_next");
    if (!token || !piece || !len)
        return mmi_fail(MM_ERR_ARG, "mm_session_next: token, piece and len must not be NULL");
    return mmi_session_next(session, token, piece, len);
}

mm_stop_reason mm_session_stop_reason(const mm_session *session)
{
    return session ? mmi_session_stop_reason(session) : MM_STOP_NONE;
}

mm_status mm_session_logits(const mm_session *session, const float **logits, size_t *n_vocab)
{
    CHECK_SESSION(session, "mm_session_logits");
    if (!logits || !n_vocab)
        return mmi_fail(MM_ERR_ARG, "mm_session_logits: logits and n_vocab must not be NULL");
    return mmi_session_logits(session, logits, n_vocab);
}

int mm_session_n_ctx(const mm_session *session)
{
    return session ? mmi_session_n_ctx(session) : 0;
}

int mm_session_n_past(const mm_session *session)
{
    return session ? mmi_session_n_past(session) : 0;
}

const char *mm_session_chat_template(const mm_session *session)
{
    return session ? mmi_session_template_name(session) : NULL;
}

void mm_session_cancel(mm_session *session)
{
    if (session)
        mmi_session_cancel(session);
}

void mm_session_reset(mm_session *session)
{
    if (session && mmi_session_check_reentry(session, "mm_session_reset") == MM_OK)
        mmi_session_reset(session);
}

/* ---- conversations as JSON ---- */

mm_status mm_session_add_messages_json(mm_session *session, const char *json, size_t len,
                                       const mm_options *options)
{
    CHECK_SESSION(session, "mm_session_add_messages_json");
    if (!json && len > 0)
        return mmi_fail(MM_ERR_ARG, "mm_session_add_messages_json: json is NULL");
    mmi_chat chat;
    MMI_TRY(mmi_chat_parse(json ? json : "", len, &chat));
    mm_status st = mmi_chat_add_to_session(session, &chat, options);
    mmi_chat_free(&chat);
    return st;
}

/* ---- chat requests and responses ---- */

mm_status mm_chat_request_parse(const char *json, size_t len, mm_chat_request **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_chat_request_parse: out is NULL");
    *out = NULL;
    if (!json && len > 0)
        return mmi_fail(MM_ERR_ARG, "mm_chat_request_parse: json is NULL");
    return mmi_chat_request_parse(json ? json : "", len, out);
}

void mm_chat_request_free(mm_chat_request *request)
{
    mmi_chat_request_free(request);
}

mm_chat_api mm_chat_request_api(const mm_chat_request *request)
{
    return request ? request->api : (mm_chat_api)0;
}

mm_status mm_chat_request_set_api(mm_chat_request *request, mm_chat_api api)
{
    if (!request)
        return mmi_fail(MM_ERR_ARG, "mm_chat_request_set_api: request is NULL");
    if (api != MM_CHAT_API_OPENAI && api != MM_CHAT_API_ANTHROPIC)
        return mmi_fail(MM_ERR_ARG, "mm_chat_request_set_api: %d is not an mm_chat_api",
                        (int)api);
    request->api = api;
    return MM_OK;
}

const mm_options *mm_chat_request_options(const mm_chat_request *request)
{
    return request ? request->settings : NULL;
}

size_t mm_chat_request_n_stop(const mm_chat_request *request)
{
    return request ? request->n_stops : 0;
}

const char *mm_chat_request_stop(const mm_chat_request *request, size_t index)
{
    return request && index < request->n_stops ? request->stops[index] : NULL;
}

const char *mm_chat_request_model(const mm_chat_request *request)
{
    return request ? request->model : NULL;
}

int mm_chat_request_stream(const mm_chat_request *request)
{
    return request ? request->stream : 0;
}

mm_status mm_session_add_chat_request(mm_session *session, const mm_chat_request *request,
                                      const mm_options *options)
{
    CHECK_SESSION(session, "mm_session_add_chat_request");
    if (!request)
        return mmi_fail(MM_ERR_ARG, "mm_session_add_chat_request: request is NULL");
    return mmi_chat_add_to_session(session, &request->chat, options);
}

mm_status mm_session_generate_response(mm_session *session, mm_chat_request *request,
                                       const mm_options *options, mm_piece_fn fn, void *user,
                                       const char **response, size_t *len)
{
    if (response)
        *response = NULL;
    if (len)
        *len = 0;
    CHECK_SESSION(session, "mm_session_generate_response");
    if (!request || !response)
        return mmi_fail(MM_ERR_ARG, "mm_session_generate_response: %s is NULL",
                        request ? "response" : "request");
    MMI_TRY(mmi_chat_generate_response(session, request, options, fn, user));
    *response = request->response;
    if (len)
        *len = request->response_len;
    return MM_OK;
}

