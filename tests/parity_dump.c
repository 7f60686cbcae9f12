/* parity_dump: run libmm on an HF parity case and write what it computes (tests/hf_parity).
 *
 *   tests/parity_dump MODEL_CLASS GGUF_DIR IO.safetensors OUT.safetensors
 *   tests/parity_dump --has MODEL_CLASS      exit 0 if the class is implemented, else 3
 *
 * GGUF_DIR holds the converter's output (model.gguf, and mmproj.gguf for a pair); each class
 * function loads the files it needs. Inputs are
 * read from the case's io.safetensors; outputs are written under the case's tensor names, with
 * the names of the inputs used listed in the file's __metadata__ ("inputs"). One function per
 * model class: add yours to `classes` below. Sizes and settings come from the files only. */
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "decoder.h"
#include "mm.h"
#include "model.h"
#include "ops.h"
#include "sbgemm_by_sgemm.h"
#include "resampler.h"
#include "safetensors.h"
#include "tower_audio.h"
#include "vit.h"

#define NOT_IMPLEMENTED 3
#define MAX_OUTPUTS 64

/* ---- outputs, written as one safetensors file ---- */

typedef struct {
    char name[64];
    const char *dtype; /* "F32" or "I64" */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    void *data;
    size_t bytes;
} dump_tensor;

typedef struct {
    const char *gguf_dir;
    char case_dir[4096]; /* the folder of the case's io.safetensors (its image files) */
    st_file io;
    mm_model *model;
    dump_tensor out[MAX_OUTPUTS];
    int n_out;
    char inputs[512];
} dump;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "parity_dump: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void check(mm_status st, const char *what)
{
    if (st != MM_OK)
        die("%s: %s: %s", what, mm_status_str(st), mm_last_error());
}

/* Load GGUF_DIR/<file> (+ GGUF_DIR/<mmproj> when given) as d->model. */
static void load_model(dump *d, const char *file, const char *mmproj)
{
    char path[4096], mmproj_path[4096];
    snprintf(path, sizeof path, "%s/%s", d->gguf_dir, file);
    snprintf(mmproj_path, sizeof mmproj_path, "%s/%s", d->gguf_dir, mmproj ? mmproj : "");
    check(mm_model_load(path, mmproj ? mmproj_path : NULL, NULL, &d->model), path);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

/* MM_PARITY_PRECISION=bf16 (hf_parity_bf16): every computation with MM_OPT_MATMUL_PRECISION
 * set so; NULL otherwise. */
static mm_options *compute_options;



/* Record a float output of the given shape (copied). */
static void put_f32(dump *d, const char *name, const float *data, int ndim, ...)
{
    if (d->n_out == MAX_OUTPUTS || ndim > ST_MAX_DIMS)
        die("too many outputs or dimensions");
    dump_tensor *t = &d->out[d->n_out++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = "F32";
    t->ndim = ndim;
    size_t count = 1;
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++)
        count *= (size_t)(t->shape[i] = va_arg(ap, int64_t));
    va_end(ap);
    t->bytes = count * sizeof(float);
    t->data = xmalloc(t->bytes);
    memcpy(t->data, data, t->bytes);
}

static void write_outputs(const dump *d, const char *path)
{
    char header[16384];
    size_t len = (size_t)snprintf(header, sizeof header, "{\"__metadata__\":{\"inputs\":\"%s\"}",
                                  d->inputs);
    size_t offset = 0;
    for (int i = 0; i < d->n_out; i++) {
        const dump_tensor *t = &d->out[i];
        len += (size_t)snprintf(header + len, sizeof header - len,
                                ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->dtype);
        for (int k = 0; k < t->ndim; k++)
            len += (size_t)snprintf(header + len, sizeof header - len, "%s%lld", k ? "," : "",
                                    (long long)t->shape[k]);
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "],\"data_offsets\":[%zu,%zu]}", offset, offset + t->bytes);
        offset += t->bytes;
        if (len >= sizeof header - 8)
            die("safetensors header too long");
    }
    header[len++] = '}';
    while (len % 8)
        header[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f)
        die("cannot write %s", path);
    unsigned char n[8];
    for (int i = 0; i < 8; i++)
        n[i] = (unsigned char)((uint64_t)len >> (8 * i));
    fwrite(n, 1, 8, f);
    fwrite(header, 1, len, f);
    for (int i = 0; i < d->n_out; i++)
        fwrite(d->out[i].data, 1, d->out[i].bytes, f);
    if (fclose(f) != 0)
        die("cannot write %s", path);
}

/* ---- inputs ---- */

static void note_input(dump *d, const char *name)
{
    size_t len = strlen(d->inputs);
    snprintf(d->inputs + len, sizeof d->inputs - len, "%s%s", len ? "," : "", name);
}

/* A float input with exactly ndim dimensions. */
static float *input_f32(dump *d, const char *name, int ndim, int64_t shape[ST_MAX_DIMS])
{
    int got;
    float *x = st_read_f32(&d->io, name, shape, &got, NULL);
    if (!x)
        die("%s", d->io.error);
    if (got != ndim)
        die("input %s has %d dimensions, expected %d", name, got, ndim);
    note_input(d, name);
    return x;
}

/* Token ids [B][T] (int64 in the file) as int32. */
static int32_t *input_ids(dump *d, const char *name, int64_t shape[ST_MAX_DIMS])
{
    st_dtype type;
    int ndim;
    size_t bytes;
    unsigned char *raw = st_read_raw(&d->io, name, &type, shape, &ndim, &bytes);
    if (!raw)
        die("%s", d->io.error);
    if (type != ST_I64 || ndim != 2)
        die("input %s: expected 2-D int64 token ids", name);
    size_t n = bytes / 8;
    int32_t *ids = xmalloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, raw + 8 * i, 8);
        if (v < INT32_MIN || v > INT32_MAX)
            die("input %s: id %lld out of range", name, (long long)v);
        ids[i] = (int32_t)v;
    }
    free(raw);
    note_input(d, name);
    return ids;
}

/* pixel_values [B][3][H][W]: images are planar already. */
static float *input_pixels(dump *d, int *batch, int *height, int *width)
{
    int64_t shape[ST_MAX_DIMS];
    float *px = input_f32(d, "pixel_values", 4, shape);
    if (shape[1] != 3)
        die("pixel_values has %lld channels", (long long)shape[1]);
    *batch = (int)shape[0];
    *height = (int)shape[2];
    *width = (int)shape[3];
    return px;
}

/* ---- vision tower outputs shared by several classes ---- */

/* hidden_states[layer] for each image of the batch: [B][N][D]. */
static void put_hidden_state(dump *d, const char *name, const float *px, int B, int H, int W,
                             int layer, int post_ln)
{
    const mmi_vision *v = d->model->vision;
    int n, D = v->enc.n_embd;
    check(mmi_vision_tower_tokens(v, W, H, &n), "tower tokens");
    float *all = xmalloc((size_t)B * n * D * sizeof(float));
    for (int b = 0; b < B; b++) {
        float *x = all + (size_t)b * n * D;
        check(mmi_vision_hidden_states(v, px + (size_t)b * 3 * H * W, W, H, &layer, 1, x, NULL),
              name);
        if (post_ln)
            check(mmi_vision_post_ln(v, x, n), name);
    }
    put_f32(d, name, all, 3, (int64_t)B, (int64_t)n, (int64_t)D);
    free(all);
}

/* The tower's pooled vector per image: [B][D]. */
static void put_pooled(dump *d, const char *name, const float *px, int B, int H, int W)
{
    const mmi_vision *v = d->model->vision;
    int D = v->enc.n_embd;
    float *all = xmalloc((size_t)B * D * sizeof(float));
    for (int b = 0; b < B; b++)
        check(mmi_vision_pooled(v, px + (size_t)b * 3 * H * W, W, H, all + (size_t)b * D, NULL),
              name);
    put_f32(d, name, all, 2, (int64_t)B, (int64_t)D);
    free(all);
}

/* mm_image_encode_pixels per image, rows of all images stacked: [B·n_tokens][n_embd]. With
 * batch_dim, shaped [B][n_tokens][n_embd] instead. */
static void put_encoded(dump *d, const char *name, const float *px, int B, int H, int W,
                        int batch_dim)
{
    float *all = NULL;
    size_t n_tokens = 0, n_embd = 0;
    for (int b = 0; b < B; b++) {
        mm_embeddings *e;
        check(mm_image_encode_pixels(d->model, px + (size_t)b * 3 * H * W, W, H,
                                     compute_options, &e),
              "mm_image_encode_pixels");
        n_tokens = mm_embeddings_n_tokens(e);
        n_embd = mm_embeddings_n_embd(e);
        if (!all)
            all = xmalloc((size_t)B * n_tokens * n_embd * sizeof(float));
        memcpy(all + (size_t)b * n_tokens * n_embd, mm_embeddings_data(e),
               n_tokens * n_embd * sizeof(float));
        mm_embeddings_free(e);
    }
    if (batch_dim)
        put_f32(d, name, all, 3, (int64_t)B, (int64_t)n_tokens, (int64_t)n_embd);
    else
        put_f32(d, name, all, 2, (int64_t)B * (int64_t)n_tokens, (int64_t)n_embd);
    free(all);
}

/* mm_image_token_count against what encoding then gives, at every detail level, for images
 * of several shapes (dies on a difference). */
static void check_token_counts(dump *d)
{
    static const int sizes[][2] = {{75, 50}, {23, 61}, {64, 64}, {300, 41}};
    static const char *const details[] = {"low", "high", "auto"};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int w = sizes[i][0], h = sizes[i][1];
        uint8_t *px = xmalloc((size_t)w * h * 3);
        for (size_t k = 0; k < (size_t)w * h * 3; k++)
            px[k] = (uint8_t)(k * 7 % 251);
        mm_image *image;
        check(mm_image_from_pixels(px, w, h, (size_t)w * 3, MM_PIXEL_RGB8, &image), "image");
        for (size_t j = 0; j < sizeof details / sizeof details[0]; j++) {
            mm_options *o;
            check(mm_options_create(&o), "options");
            check(mm_options_set_string(o, MM_OPT_IMAGE_DETAIL, details[j]), "detail");
            if (compute_options)
                check(mm_options_set_string(o, MM_OPT_MATMUL_PRECISION, "bf16"), "precision");
            size_t count;
            int views;
            check(mm_image_token_count(d->model, w, h, o, &count, &views), "token count");
            mm_embeddings *e;
            check(mm_image_encode(d->model, image, o, &e), "mm_image_encode");
            if (mm_embeddings_n_tokens(e) != count)
                die("%dx%d at %s detail: %zu rows encoded, mm_image_token_count said %zu", w, h,
                    details[j], mm_embeddings_n_tokens(e), count);
            mm_embeddings_free(e);
            mm_options_free(o);
        }
        mm_image_free(image);
        free(px);
    }
}

/* ---- language model outputs shared by several classes ---- */

/* Record integer outputs (token ids, sizes) as I64: [rows][cols], or [cols] when rows is 0. */
static void put_i64(dump *d, const char *name, const int32_t *ids, int64_t rows, int64_t cols)
{
    if (d->n_out == MAX_OUTPUTS)
        die("too many outputs");
    dump_tensor *t = &d->out[d->n_out++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = "I64";
    t->ndim = rows ? 2 : 1;
    t->shape[0] = rows ? rows : cols;
    t->shape[1] = cols;
    rows = rows ? rows : 1;
    t->bytes = (size_t)(rows * cols) * 8;
    t->data = xmalloc(t->bytes);
    for (int64_t i = 0; i < rows * cols; i++) {
        int64_t v = ids[i];
        memcpy((char *)t->data + 8 * i, &v, 8);
    }
}

/* The prompt ids[T] as runs: a run of `image_token` ids takes the next rows of image[] (none
 * when image_token < 0). add_run(user, ids, embd, n) gets each run in order. */
static void walk_prompt(const int32_t *ids, int T, int32_t image_token, const float *image,
                        size_t n_image_rows, int n_embd,
                        void (*add_run)(void *user, const int32_t *ids, const float *embd, int n),
                        void *user)
{
    size_t used = 0;
    for (int i = 0; i < T;) {
        int is_image = ids[i] == image_token, j = i;
        while (j < T && (ids[j] == image_token) == is_image)
            j++;
        if (is_image) {
            if (used + (size_t)(j - i) > n_image_rows)
                die("the prompt has more image positions than image rows (%zu)", n_image_rows);
            add_run(user, NULL, image + used * (size_t)n_embd, j - i);
            used += (size_t)(j - i);
        } else {
            add_run(user, ids + i, NULL, j - i);
        }
        i = j;
    }
    if (used != n_image_rows)
        die("%zu image rows but %zu image positions", n_image_rows, used);
}

typedef struct {
    const mmi_decoder *dec;
    mmi_decoder_state state;
    float *logits; /* [T][V] */
    int done;
} prefill_run;

static void prefill_add(void *user, const int32_t *ids, const float *embd, int n)
{
    prefill_run *r = user;
    check(mmi_decoder_eval(r->dec, &r->state, ids, embd, n,
                           r->logits + (size_t)r->done * r->dec->config.n_vocab, NULL),
          "prefill");
    r->done += n;
}

typedef struct {
    mm_session *s;
    int n_embd;
} session_run;

static void session_add(void *user, const int32_t *ids, const float *embd, int n)
{
    session_run *r = user;
    if (ids)
        check(mm_session_add_tokens(r->s, ids, (size_t)n), "mm_session_add_tokens");
    else
        check(mm_session_add_embeddings(r->s, embd, (size_t)n, (size_t)r->n_embd),
              "mm_session_add_embeddings");
}

/* logits [1][T][V] of every prompt position (one prefill pass per run of text or image rows),
 * then greedy generation through the public session API with its KV cache: generated [1][G]
 * and the logits that chose each token, generated_step_logits [1][G][V], G taken from the
 * case's `generated` shape. */
static void put_language_model(dump *d, const int32_t *ids, int T, int32_t image_token,
                               const float *image, size_t n_image_rows)
{
    const mmi_decoder *dec = d->model->decoder;
    if (!dec)
        die("the model has no language model");
    int V = dec->config.n_vocab, E = dec->config.n_embd;
    const st_tensor *gen = st_find(&d->io, "generated");
    if (!gen || gen->ndim != 2)
        die("the case has no 2-D generated tensor");
    int G = (int)gen->shape[1];

    prefill_run r = {.dec = dec};
    r.logits = xmalloc((size_t)T * V * sizeof(float));
    check(mmi_decoder_state_init(&r.state, dec, T, T), "decoder state");
    walk_prompt(ids, T, image_token, image, n_image_rows, E, prefill_add, &r);
    put_f32(d, "logits", r.logits, 3, (int64_t)1, (int64_t)T, (int64_t)V);
    mmi_decoder_state_free(&r.state);
    free(r.logits);

    mm_options *o;
    check(mm_options_create(&o), "options");
    check(mm_options_set_int(o, MM_OPT_N_CTX, T + G), "n_ctx");
    check(mm_options_set_int(o, MM_OPT_MAX_TOKENS, G), "max_tokens");
    if (compute_options)
        check(mm_options_set_string(o, MM_OPT_MATMUL_PRECISION, "bf16"), "precision");
    mm_session *s;
    check(mm_session_create(d->model, o, &s), "mm_session_create");
    mm_options_free(o);
    session_run sr = {s, E};
    walk_prompt(ids, T, image_token, image, n_image_rows, E, session_add, &sr);
    int32_t *tokens = xmalloc((size_t)G * sizeof *tokens);
    float *step_logits = xmalloc((size_t)G * V * sizeof(float));
    for (int i = 0; i < G; i++) {
        const char *piece;
        size_t len, n_vocab;
        const float *logits;
        check(mm_session_next(s, &tokens[i], &piece, &len), "mm_session_next");
        if (!piece)
            die("generation ended after %d of %d tokens", i, G);
        check(mm_session_logits(s, &logits, &n_vocab), "mm_session_logits");
        memcpy(step_logits + (size_t)i * V, logits, (size_t)V * sizeof(float));
    }
    put_i64(d, "generated", tokens, 1, G);
    put_f32(d, "generated_step_logits", step_logits, 3, (int64_t)1, (int64_t)G, (int64_t)V);
    free(tokens);
    free(step_logits);
    mm_session_free(s);
}

/* ---- one function per model class ---- */

/* transformers.CLIPModel: both towers, projections, logits. */
static void dump_clip(dump *d)
{
    load_model(d, "model.gguf", NULL);
    const mmi_vision *v = d->model->vision;
    const mmi_clip_text *c = d->model->clip_text;
    if (!v || !c)
        die("the CLIP file lacks a tower");
    int B, H, W;
    float *px = input_pixels(d, &B, &H, &W);
    put_hidden_state(d, "vision_last_hidden_state", px, B, H, W, v->enc.n_layer, 0);
    put_pooled(d, "vision_pooled", px, B, H, W);

    int P = c->n_proj, Dt = c->enc.n_embd;
    float *image_proj = xmalloc((size_t)B * P * sizeof(float));
    float *image_embeds = xmalloc((size_t)B * P * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *img = px + (size_t)b * 3 * H * W;
        check(mmi_clip_image_embed(c, v, img, W, H, image_proj + (size_t)b * P, 0), "image_proj");
        check(mm_clip_image_embedding_pixels(d->model, img, W, H, image_embeds + (size_t)b * P,
                                             (size_t)P), "mm_clip_image_embedding_pixels");
    }
    put_f32(d, "image_proj", image_proj, 2, (int64_t)B, (int64_t)P);
    put_f32(d, "image_embeds", image_embeds, 2, (int64_t)B, (int64_t)P);

    int64_t shape[ST_MAX_DIMS];
    int32_t *ids = input_ids(d, "input_ids", shape);
    int Bt = (int)shape[0], T = (int)shape[1];
    float *hidden = xmalloc((size_t)Bt * T * Dt * sizeof(float));
    float *pooled = xmalloc((size_t)Bt * Dt * sizeof(float));
    float *text_proj = xmalloc((size_t)Bt * P * sizeof(float));
    float *text_embeds = xmalloc((size_t)Bt * P * sizeof(float));
    for (int b = 0; b < Bt; b++) {
        const int32_t *row = ids + (size_t)b * T;
        float *h = hidden + (size_t)b * T * Dt;
        check(mmi_clip_text_hidden(c, row, T, h), "text_last_hidden_state");
        memcpy(pooled + (size_t)b * Dt, h + (size_t)mmi_clip_text_pool_index(c, row, T) * Dt,
               (size_t)Dt * sizeof(float));
        check(mmi_clip_text_embed(c, row, T, text_proj + (size_t)b * P, 0), "text_proj");
        check(mm_clip_text_embedding_tokens(d->model, row, (size_t)T,
                                            text_embeds + (size_t)b * P, (size_t)P),
              "mm_clip_text_embedding_tokens");
    }
    put_f32(d, "text_last_hidden_state", hidden, 3, (int64_t)Bt, (int64_t)T, (int64_t)Dt);
    put_f32(d, "text_pooled", pooled, 2, (int64_t)Bt, (int64_t)Dt);
    put_f32(d, "text_proj", text_proj, 2, (int64_t)Bt, (int64_t)P);
    put_f32(d, "text_embeds", text_embeds, 2, (int64_t)Bt, (int64_t)P);

    float scale;
    check(mm_clip_logit_scale(d->model, &scale), "mm_clip_logit_scale");
    float *per_image = xmalloc((size_t)B * Bt * sizeof(float));
    float *per_text = xmalloc((size_t)B * Bt * sizeof(float));
    for (int i = 0; i < B; i++)
        for (int t = 0; t < Bt; t++) {
            float s = scale * mm_clip_similarity(image_embeds + (size_t)i * P,
                                                 text_embeds + (size_t)t * P, (size_t)P);
            per_image[i * Bt + t] = per_text[t * B + i] = s;
        }
    put_f32(d, "logits_per_image", per_image, 2, (int64_t)B, (int64_t)Bt);
    put_f32(d, "logits_per_text", per_text, 2, (int64_t)Bt, (int64_t)B);
    free(per_image);
    free(per_text);
    free(hidden);
    free(pooled);
    free(text_proj);
    free(text_embeds);
    free(ids);
    free(image_proj);
    free(image_embeds);
    free(px);
}

/* transformers.SiglipVisionModel: post-normalised last state (through the public encoder,
 * which returns it for a tower without projector) and the pooling head. */
static void dump_siglip_vision(dump *d)
{
    load_model(d, "model.gguf", NULL);
    if (!d->model->vision)
        die("the file has no vision tower");
    int B, H, W;
    float *px = input_pixels(d, &B, &H, &W);
    put_encoded(d, "last_hidden_state", px, B, H, W, 1);
    put_pooled(d, "pooler_output", px, B, H, W);
    free(px);
}

/* HF's hidden_states [L+1][1][T][E] of a prompt (token ids, or rows embd[T][E]; at positions
 * pos[T][n_pos_dims], NULL for 0 .. T-1): the residual stream after 0 .. L-1 blocks (a copy of
 * the decoder cut to that many blocks leaves it in the state's x), then the final RMSNorm of
 * the last block's output. */
static void put_decoder_hidden_states(dump *d, const char *name, const int32_t *ids,
                                      const float *embd, const int32_t *pos, int T)
{
    const mmi_decoder *dec = d->model->decoder;
    int L = dec->config.n_layer, E = dec->config.n_embd;
    float *all = xmalloc((size_t)(L + 1) * T * E * sizeof(float));
    for (int k = 0; k <= L; k++) {
        mmi_decoder cut = *dec;
        cut.config.n_layer = k;
        mmi_decoder_state s;
        check(mmi_decoder_state_init(&s, &cut, T, T), "decoder state");
        check(mmi_decoder_eval_at(&cut, &s, ids, embd, pos, T, NULL, NULL), "hidden states");
        float *h = all + (size_t)k * T * E;
        if (k < L)
            memcpy(h, s.x, (size_t)T * E * sizeof(float));
        else
            mmi_rmsnorm(h, s.x, T, E, dec->weights.output_norm, dec->config.norm_eps);
        mmi_decoder_state_free(&s);
    }
    put_f32(d, name, all, 4, (int64_t)(L + 1), (int64_t)1, (int64_t)T, (int64_t)E);
    free(all);
}

/* transformers.LlamaForCausalLM, and every decoder-only family: hidden states and logits of the prompt, greedy generation
 * with the cache. */
static void dump_llama(dump *d)
{
    load_model(d, "model.gguf", NULL);
    int64_t shape[ST_MAX_DIMS];
    int32_t *ids = input_ids(d, "input_ids", shape);
    if (shape[0] != 1)
        die("input_ids has a batch of %lld", (long long)shape[0]);
    put_decoder_hidden_states(d, "hidden_states", ids, NULL, NULL, (int)shape[1]);
    put_language_model(d, ids, (int)shape[1], -1, NULL, 0);
    free(ids);
}

/* put_language_model on the case's input_ids, whose clip.image_token_id positions take the
 * image's rows in order. */
static void put_prompt_with_image(dump *d, const float *image, size_t n_rows)
{
    int64_t image_token;
    check(mmi_gguf_get_int(d->model->files[1], "clip.image_token_id", &image_token),
          "clip.image_token_id");
    int64_t shape[ST_MAX_DIMS];
    int32_t *ids = input_ids(d, "input_ids", shape);
    if (shape[0] != 1)
        die("input_ids has a batch of %lld", (long long)shape[0]);
    put_language_model(d, ids, (int)shape[1], (int32_t)image_token, image, n_rows);
    free(ids);
}

/* transformers.LlavaForConditionalGeneration: the vision half (embeddings, the feature layer,
 * the projected image features), then the language model on the prompt whose image-token
 * positions (clip.image_token_id) take the image features in order. */
static void dump_llava(dump *d)
{
    load_model(d, "model.gguf", "mmproj.gguf");
    const mmi_vision *v = d->model->vision;
    if (!v)
        die("the LLaVA pair has no vision file");
    check_token_counts(d);
    int B, H, W;
    float *px = input_pixels(d, &B, &H, &W);
    put_hidden_state(d, "vision_embeddings", px, B, H, W, 0, 0);
    if (v->n_feature_layers == 1)
        put_hidden_state(d, "vision_hidden_states", px, B, H, W, v->feature_layers[0], 0);
    put_encoded(d, "image_features", px, B, H, W, 0);
    const dump_tensor *features = &d->out[d->n_out - 1];
    put_prompt_with_image(d, features->data, (size_t)features->shape[0]);
    free(px);
}

/* transformers.LlavaNextForConditionalGeneration, from the case's image.png through libmm's
 * own AnyRes preprocessing: every view's pixels, the image size, the token count known before
 * encoding (mm_image_token_count), every view's feature-layer state and projected features
 * (the views as one batch), the packed features (mm_image_encode at the default detail), then
 * the language model on the prompt as for LLaVA. */
static void dump_llava_next(dump *d)
{
    load_model(d, "model.gguf", "mmproj.gguf");
    const mmi_vision *v = d->model->vision;
    if (!v || !v->image_newline || v->n_feature_layers != 1)
        die("the LLaVA-NeXT pair has no vision file with one feature layer and image_newline");
    check_token_counts(d);
    char path[sizeof d->case_dir + 16];
    snprintf(path, sizeof path, "%s/image.png", d->case_dir);
    mm_image *image;
    check(mm_image_load_file(path, NULL, &image), path);
    int w = mm_image_width(image), h = mm_image_height(image);
    mmi_views views;
    check(mmi_preprocess(&v->preprocess, image, MMI_DETAIL_HIGH, &views), "preprocess");
    int S = views.size, N = views.n_views, n, D = v->enc.n_embd;
    put_f32(d, "pixel_values", views.pixels, 5, (int64_t)1, (int64_t)N, (int64_t)3, (int64_t)S,
            (int64_t)S);
    const int32_t size_hw[2] = {h, w};
    put_i64(d, "image_sizes", size_hw, 1, 2);
    size_t count;
    int count_views;
    check(mm_image_token_count(d->model, w, h, NULL, &count, &count_views), "token count");
    if (count_views != N)
        die("mm_image_token_count says %d views, preprocessing made %d", count_views, N);
    const int32_t count_id = (int32_t)count;
    put_i64(d, "num_image_tokens", &count_id, 0, 1);

    check(mmi_vision_tower_tokens(v, S, S, &n), "tower tokens");
    float *states = xmalloc((size_t)N * n * D * sizeof(float));
    for (int i = 0; i < N; i++)
        check(mmi_vision_hidden_states(v, views.pixels + (size_t)i * 3 * S * S, S, S,
                                       v->feature_layers, 1, states + (size_t)i * n * D, NULL),
              "vision hidden states");
    put_f32(d, "vision_hidden_states", states, 3, (int64_t)N, (int64_t)n, (int64_t)D);
    int per_view, E;
    check(mmi_vision_output_shape(v, S, S, &per_view, &E), "output shape");
    float *tiles = xmalloc((size_t)N * per_view * E * sizeof(float));
    check(mmi_vision_encode_views(v, views.pixels, N, S, S, tiles, NULL), "encode views");
    put_f32(d, "tile_features", tiles, 3, (int64_t)N, (int64_t)per_view, (int64_t)E);

    mm_embeddings *e;
    check(mm_image_encode(d->model, image, compute_options, &e), "mm_image_encode");
    size_t rows = mm_embeddings_n_tokens(e);
    if (rows != count)
        die("mm_image_encode made %zu rows, mm_image_token_count said %zu", rows, count);
    put_f32(d, "image_features", mm_embeddings_data(e), 2, (int64_t)rows, (int64_t)E);

    put_prompt_with_image(d, mm_embeddings_data(e), rows);
    mm_embeddings_free(e);
    free(tiles);
    free(states);
    mmi_views_free(&views);
    mm_image_free(image);
}

/* transformers.Blip2ForConditionalGeneration: the tower's post-normalised last state, the
 * Q-Former's query outputs on it, the projected queries through the public encoder; then the
 * language model on [projected queries; input_ids] (prepended: the file has no image token),
 * as for LLaVA. */
static void dump_blip2(dump *d)
{
    load_model(d, "model.gguf", "mmproj.gguf");
    const mmi_vision *v = d->model->vision;
    const mmi_decoder *dec = d->model->decoder;
    if (!v || v->connector.kind != MMI_CONNECTOR_QFORMER || !dec)
        die("the BLIP-2 pair lacks the vision file with a Q-Former or the language model");
    check_token_counts(d);
    int B, H, W, n, D = v->enc.n_embd, last = v->enc.n_layer;
    float *px = input_pixels(d, &B, &H, &W);
    put_hidden_state(d, "vision_last_hidden_state", px, B, H, W, last, 1);

    const mmi_qformer *qf = &v->connector.qformer;
    int nq = qf->cfg.n_query, dq = qf->cfg.n_embd;
    check(mmi_vision_tower_tokens(v, W, H, &n), "tower tokens");
    float *state = xmalloc((size_t)n * D * sizeof(float));
    float *scratch = xmalloc(mmi_qformer_scratch_floats(qf, n) * sizeof(float));
    float *queries = xmalloc((size_t)B * nq * dq * sizeof(float));
    for (int b = 0; b < B; b++) {
        check(mmi_vision_hidden_states(v, px + (size_t)b * 3 * H * W, W, H, &last, 1, state,
                                       NULL), "vision last state");
        check(mmi_vision_post_ln(v, state, n), "vision post_ln");
        mmi_qformer_encode(qf, state, n, queries + (size_t)b * nq * dq, scratch);
    }
    put_f32(d, "qformer_output", queries, 3, (int64_t)B, (int64_t)nq, (int64_t)dq);
    put_encoded(d, "language_projection", px, B, H, W, 1);
    const dump_tensor *proj = &d->out[d->n_out - 1]; /* [B][nq][E] */

    /* The prompt with the nq query rows in front, marked by an id no vocabulary has. */
    int64_t shape[ST_MAX_DIMS];
    int32_t *ids = input_ids(d, "input_ids", shape);
    if (shape[0] != 1 || B != 1)
        die("batches of %lld prompts and %d images (1 each expected)", (long long)shape[0], B);
    int T = (int)shape[1];
    const int32_t query_mark = -1;
    int32_t *prompt = xmalloc((size_t)(nq + T) * sizeof *prompt);
    for (int i = 0; i < nq; i++)
        prompt[i] = query_mark;
    memcpy(prompt + nq, ids, (size_t)T * sizeof *ids);
    put_language_model(d, prompt, nq + T, query_mark, proj->data, (size_t)nq);
    free(prompt);
    free(ids);
    free(queries);
    free(scratch);
    free(state);
    free(px);
}

/* Idefics2PerceiverResampler alone (a `clip` file with only the resampler): context rows with
 * attention_mask 0 are left out, which is what the mask does. */
static void dump_idefics2_perceiver(dump *d)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.gguf", d->gguf_dir);
    mmi_gguf *g;
    check(mmi_gguf_open(path, 1, &g), path);
    int64_t shape[ST_MAX_DIMS], mask_shape[ST_MAX_DIMS];
    float *context = input_f32(d, "context", 3, shape);
    int32_t *mask = input_ids(d, "attention_mask", mask_shape);
    int B = (int)shape[0], T = (int)shape[1], Dr = (int)shape[2];
    if (mask_shape[0] != B || mask_shape[1] != T)
        die("attention_mask does not match the context's [B, T]");
    mmi_weights w;
    mmi_resampler r;
    mmi_weights_init(&w, g);
    check(mmi_resampler_load(&r, g, &w, Dr), "resampler");
    int nl = r.cfg.n_latent;
    float *rows = xmalloc((size_t)T * Dr * sizeof(float));
    float *scratch = xmalloc(mmi_resampler_scratch_floats(&r, T) * sizeof(float));
    float *out = xmalloc((size_t)B * nl * Dr * sizeof(float));
    for (int b = 0; b < B; b++) {
        int n = 0;
        for (int t = 0; t < T; t++)
            if (mask[(size_t)b * T + t])
                memcpy(rows + (size_t)n++ * Dr, context + ((size_t)b * T + t) * Dr,
                       (size_t)Dr * sizeof(float));
        if (n == 0)
            die("batch row %d has no unmasked context", b);
        mmi_resampler_run(&r, rows, n, out + (size_t)b * nl * Dr, scratch);
    }
    put_f32(d, "output", out, 3, (int64_t)B, (int64_t)nl, (int64_t)Dr);
    free(out);
    free(scratch);
    free(rows);
    free(mask);
    free(context);
    mmi_resampler_free(&r);
    mmi_weights_free(&w);
    mmi_gguf_close(g);
}

/* transformers.Qwen2AudioForConditionalGeneration: the log-mel features of the waveform, the
 * encoder input after the convolutions and positions, the pooled and normalised encoder output
 * and its projection (all n_ctx rows, padding included, for the comparison; the session uses
 * the real rows only), then the language model on the prompt with its single audio token
 * expanded to the real rows, as HF 4.45.1 does inside the model. */
static void dump_qwen2_audio(dump *d)
{
    load_model(d, "model.gguf", "mmproj.gguf");
    const mmi_audio_tower *t = d->model->audio;
    if (!t)
        die("the Qwen2-Audio pair has no audio file");
    int64_t shape[ST_MAX_DIMS];
    float *wave = input_f32(d, "waveform", 1, shape);
    size_t n = (size_t)shape[0];
    int M = t->n_mels, F = t->mel.n_frames, T = t->n_ctx, D = t->enc.n_embd, E = t->n_out;
    if (n > mmi_audio_chunk_samples(t))
        n = mmi_audio_chunk_samples(t); /* HF's extractor keeps one chunk */
    float *features = xmalloc((size_t)M * F * sizeof(float));
    float *scratch = xmalloc(mmi_mel_scratch_floats(&t->mel) * sizeof(float));
    int frames = mmi_log_mel(&t->mel, wave, n, features, scratch);
    put_f32(d, "input_features", features, 3, (int64_t)1, (int64_t)M, (int64_t)F);
    int32_t *mask = xmalloc((size_t)F * sizeof *mask);
    for (int i = 0; i < F; i++)
        mask[i] = i < frames;
    put_i64(d, "feature_attention_mask", mask, 1, F);

    int n_tok = (int)mmi_audio_tower_rows(t, n);
    put_i64(d, "num_audio_tokens", &n_tok, 1, 1);
    d->out[d->n_out - 1].ndim = 1;
    float *x0 = xmalloc((size_t)T * D * sizeof(float));
    float *enc = xmalloc((size_t)(T / t->pool) * D * sizeof(float));
    float *proj = xmalloc((size_t)(T / t->pool) * E * sizeof(float));
    check(mmi_audio_tower_chunk(t, features, frames, T, x0, enc, proj, NULL), "audio tower");
    put_f32(d, "encoder_conv_pos", x0, 3, (int64_t)1, (int64_t)T, (int64_t)D);
    put_f32(d, "encoder_output", enc, 3, (int64_t)1, (int64_t)(T / t->pool), (int64_t)D);
    put_f32(d, "audio_features", proj, 3, (int64_t)1, (int64_t)(T / t->pool), (int64_t)E);

    /* The session's own encoding of the clip: its real rows, equal to the first rows above. */
    float *rows = xmalloc((size_t)n_tok * E * sizeof(float));
    check(mmi_audio_tower_encode(t, wave, n, rows, NULL), "audio encode");
    for (size_t i = 0; i < (size_t)n_tok * E; i++)
        if (rows[i] != proj[i])
            die("the clip's rows differ from the chunk's at %zu", i);

    int64_t audio_token;
    check(mmi_gguf_get_int(d->model->files[1], "clip.audio_token_id", &audio_token),
          "clip.audio_token_id");
    int32_t *ids = input_ids(d, "input_ids", shape);
    if (shape[0] != 1)
        die("input_ids has a batch of %lld", (long long)shape[0]);
    int L = (int)shape[1], k = 0;
    int32_t *prompt = xmalloc((size_t)(L + n_tok) * sizeof *prompt);
    for (int i = 0; i < L; i++)
        for (int r = 0; r < (ids[i] == audio_token ? n_tok : 1); r++)
            prompt[k++] = ids[i];
    put_language_model(d, prompt, k, (int32_t)audio_token, rows, (size_t)n_tok);
    free(prompt);
    free(ids);
    free(rows);
    free(proj);
    free(enc);
    free(x0);
    free(mask);
    free(scratch);
    free(features);
    free(wave);
}

/* transformers.Qwen2VLForConditionalGeneration, language side: M-RoPE position_ids [3][1][T]
 * and rope_deltas as get_rope_index gives them (text one position per token, each run of
 * qwen2vl.image_token_id the cells of the next image_grid_thw entry, merged to as many cells
 * as the run has tokens); the vision tower on pixel_values (patch rows, one image per
 * image_grid_thw row) gives patch_embeds, vision_last_block and image_embeds; the prompt's rows
 * (token embeddings, those image_embeds at the image tokens) at the positions give
 * text_hidden_states and logits; greedy generation then continues on the decoder's cache after
 * the largest position (HF's rope_deltas). */
static void dump_qwen2_vl(dump *d)
{
    load_model(d, "model.gguf", "mmproj.gguf");
    const mmi_decoder *dec = d->model->decoder;
    const mmi_vision *vis = d->model->vision;
    int64_t image_token;
    check(mmi_gguf_get_int(d->model->files[0], "qwen2vl.image_token_id", &image_token),
          "qwen2vl.image_token_id");
    int64_t shape[ST_MAX_DIMS];
    int32_t *ids = input_ids(d, "input_ids", shape);
    int T = (int)shape[1], E = dec->config.n_embd, V = dec->config.n_vocab;
    int dims = dec->config.n_pos_dims;
    int32_t *grids = input_ids(d, "image_grid_thw", shape); /* [images][3] */
    int n_images = (int)shape[0], grid = 0;
    if (n_images != 1)
        die("the case has %d images, image.png is one", n_images);
    /* From image.png through libmm's own preprocessing, tower and merger. */
    check_token_counts(d);
    char path[sizeof d->case_dir + 16];
    snprintf(path, sizeof path, "%s/image.png", d->case_dir);
    mm_image *picture;
    check(mm_image_load_file(path, NULL, &picture), path);
    float *pixels;
    int g[3];
    check(mmi_preprocess_patch_rows(&vis->preprocess, &vis->grid, picture, &pixels, g),
          "patch rows");
    int n = g[0] * g[1] * g[2], Dv = vis->enc.n_embd, K = vis->rows_embd.n_in;
    put_f32(d, "pixel_values", pixels, 2, (int64_t)n, (int64_t)K);
    for (int j = 0; j < 3; j++)
        if (g[j] != grids[j])
            die("image.png makes grid %d x %d x %d, image_grid_thw says %d x %d x %d", g[0], g[1],
                g[2], grids[0], grids[1], grids[2]);
    put_i64(d, "image_grid_thw", g, 1, 3);
    int32_t *rope_pos = xmalloc((size_t)n * 2 * sizeof *rope_pos);
    mmi_vision_patch_positions(vis, g, rope_pos);
    put_i64(d, "vision_rope_pos_ids", rope_pos, n, 2);
    free(rope_pos);
    float *states = xmalloc((size_t)n * Dv * sizeof(float));
    mmi_linear(states, pixels, n, &vis->rows_embd, vis->patch.bias);
    put_f32(d, "patch_embeds", states, 2, (int64_t)n, (int64_t)Dv);
    check(mmi_vision_patch_rows_hidden(vis, pixels, g, states, NULL), "tower");
    put_f32(d, "vision_last_block", states, 2, (int64_t)n, (int64_t)Dv);
    free(states);
    free(pixels);
    size_t count;
    check(mm_image_token_count(d->model, mm_image_width(picture), mm_image_height(picture), NULL,
                               &count, NULL), "token count");
    mm_embeddings *e;
    check(mm_image_encode(d->model, picture, NULL, &e), "mm_image_encode");
    mm_image_free(picture);
    if (mm_embeddings_n_tokens(e) != count || mm_embeddings_n_embd(e) != (size_t)E)
        die("mm_image_encode made %zu rows of %zu, mm_image_token_count said %zu rows",
            mm_embeddings_n_tokens(e), mm_embeddings_n_embd(e), count);
    int64_t img_rows = (int64_t)count;
    float *image = xmalloc((size_t)count * E * sizeof(float));
    memcpy(image, mm_embeddings_data(e), (size_t)count * E * sizeof(float));
    mm_embeddings_free(e);
    put_f32(d, "image_embeds", image, 2, img_rows, (int64_t)E);
    int32_t *pos = xmalloc((size_t)T * dims * sizeof *pos);
    int64_t next = 0;
    for (int t = 0; t < T;) {
        if (ids[t] != image_token) {
            for (int j = 0; j < dims; j++)
                pos[t * dims + j] = (int32_t)next;
            next++, t++;
            continue;
        }
        int run = 0;
        while (t + run < T && ids[t + run] == image_token)
            run++;
        if (grid == n_images)
            die("more image token runs than image_grid_thw rows (%d)", n_images);
        const int32_t *g = grids + 3 * grid++;
        int merge = 1; /* the merge that turns the grid's cells into the run's tokens */
        while ((int64_t)g[0] * (g[1] / merge) * (g[2] / merge) > run)
            merge++;
        if ((int64_t)g[0] * (g[1] / merge) * (g[2] / merge) != run)
            die("an image run of %d tokens does not fit grid %dx%dx%d", run, g[0], g[1], g[2]);
        next = mmi_decoder_grid_positions(dec, (int)next, g[0], g[1] / merge, g[2] / merge,
                                          pos + (size_t)t * dims);
        t += run;
    }
    int32_t *rows3 = xmalloc((size_t)3 * T * sizeof *rows3); /* [3][1][T] */
    for (int j = 0; j < 3; j++)
        for (int t = 0; t < T; t++)
            rows3[j * T + t] = pos[t * dims + (dims == 3 ? j : 0)];
    put_i64(d, "position_ids", rows3, 3, T);
    dump_tensor *pt = &d->out[d->n_out - 1];
    pt->ndim = 3;
    pt->shape[1] = 1;
    pt->shape[2] = T;
    int32_t delta = (int32_t)(next - T);
    put_i64(d, "rope_deltas", &delta, 1, 1);
    free(rows3);
    free(grids);

    float *rows = xmalloc((size_t)T * E * sizeof(float));
    int64_t used = 0;
    for (int t = 0; t < T; t++) {
        if (ids[t] == image_token && used < img_rows)
            memcpy(rows + (size_t)t * E, image + (size_t)used++ * E, (size_t)E * sizeof(float));
        else if (ids[t] == image_token)
            die("more image tokens than image_embeds rows (%lld)", (long long)img_rows);
        else
            mmi_matrix_row(&dec->weights.token_embd, ids[t], rows + (size_t)t * E);
    }
    if (used != img_rows)
        die("%lld image_embeds rows but %lld image tokens", (long long)img_rows,
            (long long)used);

    put_decoder_hidden_states(d, "text_hidden_states", NULL, rows, pos, T);

    const st_tensor *gen = st_find(&d->io, "generated");
    if (!gen || gen->ndim != 2)
        die("the case has no 2-D generated tensor");
    int G = (int)gen->shape[1];
    mmi_decoder_state s;
    check(mmi_decoder_state_init(&s, dec, T + G, T), "decoder state");
    float *logits = xmalloc((size_t)T * V * sizeof(float));
    check(mmi_decoder_eval_at(dec, &s, NULL, rows, pos, T, logits, NULL), "prefill");
    put_f32(d, "logits", logits, 3, (int64_t)1, (int64_t)T, (int64_t)V);
    int32_t *tokens = xmalloc((size_t)G * sizeof *tokens);
    float *steps = xmalloc((size_t)G * V * sizeof(float));
    for (int i = 0; i < G; i++) {
        memcpy(steps + (size_t)i * V, s.logits, (size_t)V * sizeof(float));
        int best = 0;
        for (int v = 1; v < V; v++)
            best = s.logits[v] > s.logits[best] ? v : best;
        tokens[i] = best;
        if (i + 1 < G)
            check(mmi_decoder_eval(dec, &s, &tokens[i], NULL, 1, NULL, NULL), "generation");
    }
    put_i64(d, "generated", tokens, 1, G);
    put_f32(d, "generated_step_logits", steps, 3, (int64_t)1, (int64_t)G, (int64_t)V);
    mmi_decoder_state_free(&s);
    free(tokens);
    free(steps);
    free(logits);
    free(rows);
    free(pos);
    free(image);
    free(ids);
}

static const struct {
    const char *model_class;
    void (*run)(dump *d);
} classes[] = {
    {"transformers.CLIPModel", dump_clip},
    {"transformers.SiglipVisionModel", dump_siglip_vision},
    {"transformers.LlavaForConditionalGeneration", dump_llava},
    {"transformers.LlavaNextForConditionalGeneration", dump_llava_next},
    {"transformers.LlamaForCausalLM", dump_llama},
    {"transformers.Qwen2ForCausalLM", dump_llama},
    {"transformers.Phi3ForCausalLM", dump_llama},
    {"transformers.MistralForCausalLM", dump_llama},
    {"transformers.Qwen2VLForConditionalGeneration", dump_qwen2_vl},
    {"transformers.Blip2ForConditionalGeneration", dump_blip2},
    {"transformers.Qwen2AudioForConditionalGeneration", dump_qwen2_audio},
    {"transformers.models.idefics2.modeling_idefics2.Idefics2PerceiverResampler",
     dump_idefics2_perceiver},
};

static int find_class(const char *name)
{
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (strcmp(classes[i].model_class, name) == 0)
            return (int)i;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--has") == 0)
        return find_class(argv[2]) >= 0 ? 0 : NOT_IMPLEMENTED;
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL_CLASS GGUF_DIR IO.safetensors OUT.safetensors\n"
                        "       %s --has MODEL_CLASS\n", argv[0], argv[0]);
        return 2;
    }
    int cls = find_class(argv[1]);
    if (cls < 0) {
        fprintf(stderr, "parity_dump: model class %s not implemented\n", argv[1]);
        return NOT_IMPLEMENTED;
    }
    /* bf16: public calls get the option, internal ones (the prefill pass) a bound bf16 exec. */
    const char *precision = getenv("MM_PARITY_PRECISION");
    static mmi_exec exec;
    if (precision) {
        if (!dlsym(RTLD_DEFAULT, "cblas_sbgemm"))
            mmi_ops_sbgemm_hook(sbgemm_by_sgemm);
        check(mm_options_create(&compute_options), "options");
        check(mm_options_set_string(compute_options, MM_OPT_MATMUL_PRECISION, precision),
              "precision");
        check(mmi_exec_init(&exec, 2), "threads");
        check(mmi_exec_set_precision(&exec, precision), "precision");
        if (!exec.bf16)
            die("matmul precision %s does not take effect here", precision);
        mmi_exec_bind(&exec);
    }
    static dump d;
    d.gguf_dir = argv[2];
    snprintf(d.case_dir, sizeof d.case_dir, "%s", argv[3]);
    char *slash = strrchr(d.case_dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(d.case_dir, ".");
    if (st_load(&d.io, argv[3]) != 0)
        die("%s", d.io.error);
    classes[cls].run(&d);
    write_outputs(&d, argv[4]);
    for (int i = 0; i < d.n_out; i++)
        free(d.out[i].data);
    st_free(&d.io);
    mm_model_free(d.model);
    if (precision) {
        mmi_exec_bind(NULL);
        mmi_exec_free(&exec);
        mm_options_free(compute_options);
    }
    return 0;
}
