/* The fuzz targets: each takes arbitrary bytes into one entry point that reads untrusted input
 * and checks what must hold for every input (an error comes with a message; a success gives a
 * consistent result). A broken rule calls abort() after naming it, so libFuzzer keeps the input.
 *
 * tests/fuzz/fuzz.c builds one libFuzzer binary per target; tests/test_fuzz_replay.c feeds the
 * committed corpora and regressions (tests/fuzz/{corpus,regressions}/<target>/) through the
 * same functions in the normal test build. */
#ifndef MM_FUZZ_TARGETS_H
#define MM_FUZZ_TARGETS_H

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "audio.h"
#include "chatjson.h"
#include "clip.h"
#include "connector.h"
#include "decoder.h"
#include "resample.h"
#include "gguf.h"
#include "image.h"
#include "mel.h"
#include "mm.h"
#include "preprocess.h"
#include "tokenizer.h"
#include "tower_audio.h"
#include "tower_points.h"
#include "unicode.h"
#include "vit.h"

#include "../tiny_llama.h"

/* The input being replayed, named when a rule breaks (set by the replay suite). */
static const char *fuzz_input_name = "(libFuzzer input)";

#define FUZZ_CHECK(cond, ...)                                                           \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: %s: rule broken: %s: ", __FILE__, __LINE__,         \
                    fuzz_input_name, #cond);                                            \
            fprintf(stderr, __VA_ARGS__);                                               \
            fputc('\n', stderr);                                                        \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* No input may make the library ask for a block out of proportion to it (libFuzzer stops at
 * 2 GiB; this holds the replay build to a bound too). */
#define FUZZ_MAX_ALLOC(size) ((size_t)64 << 20 | (size_t)(size) * 64)

static void fuzz_check_allocations(size_t input_size)
{
    size_t largest = mmi_alloc_largest();
    FUZZ_CHECK(largest <= FUZZ_MAX_ALLOC(input_size), "a %zu-byte input made the library ask "
               "for %zu bytes at once", input_size, largest);
}

/* A failing call returns a defined status and leaves a message. */
static void fuzz_check_failure(mm_status st, const char *call)
{
    FUZZ_CHECK(st > MM_OK && st <= MM_ERR_LIMIT, "%s returned status %d", call, (int)st);
    FUZZ_CHECK(mm_last_error()[0] != '\0', "%s failed (%s) without a message", call,
               mm_status_str(st));
}

/* Read the first and last byte of a block the library handed out, so that ASan checks that
 * it lies in valid memory. */
static void fuzz_touch(const void *p, size_t n)
{
    if (n) {
        volatile uint8_t sink = ((const uint8_t *)p)[0] ^ ((const uint8_t *)p)[n - 1];
        (void)sink;
    }
}

/* ---- GGUF: the reader, then every loader on whatever it accepted ---- */

/* Every value and tensor of an accepted file can be read. */
static void fuzz_gguf_walk(const mmi_gguf *g)
{
    for (uint64_t i = 0; i < mmi_gguf_n_kv(g); i++) {
        const char *key = mmi_gguf_key(g, i);
        FUZZ_CHECK(key != NULL, "key %llu of %llu is NULL", (unsigned long long)i,
                   (unsigned long long)mmi_gguf_n_kv(g));
        mmi_gguf_type type;
        const void *raw;
        size_t size;
        FUZZ_CHECK(mmi_gguf_get_raw(g, key, &type, &raw, &size) == MM_OK, "raw %s", key);
        fuzz_touch(raw, size);
        /* As text (mm-info): the length is the same cut short or not. */
        char small[8], *whole;
        size_t len_small, len;
        mmi_gguf_value_text(g, i, small, sizeof small, &len_small);
        mmi_gguf_value_text(g, i, NULL, 0, &len);
        FUZZ_CHECK(len == len_small && strlen(small) == (len < 8 ? len : 7), "text of %s", key);
        if ((whole = mmi_malloc(len + 1)) != NULL) {
            mmi_gguf_value_text(g, i, whole, len + 1, &len_small);
            FUZZ_CHECK(strlen(whole) <= len, "text of %s: %zu bytes, said %zu", key,
                       strlen(whole), len);
            mmi_free(whole);
        }
        if (type == MMI_GGUF_STRING) {
            const char *s;
            size_t len;
            FUZZ_CHECK(mmi_gguf_get_string(g, key, &s, &len) == MM_OK, "string %s", key);
            FUZZ_CHECK(s[len] == '\0', "string %s is not terminated", key);
        } else if (type == MMI_GGUF_ARRAY) {
            mmi_gguf_type elem;
            uint64_t n;
            FUZZ_CHECK(mmi_gguf_get_array_info(g, key, &elem, &n) == MM_OK, "array %s", key);
            if (elem == MMI_GGUF_STRING) {
                for (uint64_t k = 0; k < n && k < 4096; k++) {
                    const char *s;
                    size_t len;
                    FUZZ_CHECK(mmi_gguf_get_array_string(g, key, k, &s, &len) == MM_OK,
                               "%s[%llu]", key, (unsigned long long)k);
                    FUZZ_CHECK(s[len] == '\0', "%s[%llu] is not terminated", key,
                               (unsigned long long)k);
                }
            } else if (elem != MMI_GGUF_ARRAY && n <= 4096) {
                float f[4096];
                int64_t v[4096];
                mm_status st = mmi_gguf_get_float_array(g, key, f, n);
                if (st != MM_OK)
                    fuzz_check_failure(st, "mmi_gguf_get_float_array");
                st = mmi_gguf_get_int_array(g, key, v, n);
                if (st != MM_OK)
                    fuzz_check_failure(st, "mmi_gguf_get_int_array");
            }
        } else {
            int64_t v;
            double f;
            mm_status st = mmi_gguf_get_int(g, key, &v);
            if (st != MM_OK)
                fuzz_check_failure(st, "mmi_gguf_get_int");
            st = mmi_gguf_get_float(g, key, &f);
            if (st != MM_OK)
                fuzz_check_failure(st, "mmi_gguf_get_float");
        }
    }
    for (uint64_t i = 0; i < mmi_gguf_n_tensors(g); i++) {
        const mmi_tensor *t = mmi_gguf_tensor(g, i);
        FUZZ_CHECK(t && t->name, "tensor %llu", (unsigned long long)i);
        FUZZ_CHECK(mmi_gguf_find_tensor(g, t->name) == t, "tensor %s is not found by name",
                   t->name);
        float head[64];
        uint64_t n = t->n_elements < 64 ? t->n_elements : 64;
        FUZZ_CHECK(mmi_tensor_to_f32(t, 0, n, head) == MM_OK, "tensor %s: first %llu values",
                   t->name, (unsigned long long)n);
        fuzz_touch(t->data, t->n_bytes);
    }
}

/* Shapes are small enough to run the loaded towers on this input. */
#define FUZZ_MAX_WORK (1u << 16)

static void fuzz_run_vision(const mmi_vision *v)
{
    int n_tokens, n_embd;
    int side = v->image_size;
    mm_status st = mmi_vision_output_shape(v, side, side, &n_tokens, &n_embd);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mmi_vision_output_shape");
        return;
    }
    FUZZ_CHECK(n_tokens > 0 && n_embd > 0, "output shape %d x %d", n_tokens, n_embd);
    if ((uint64_t)side * side * 3 > FUZZ_MAX_WORK ||
        (uint64_t)n_tokens * n_embd > FUZZ_MAX_WORK)
        return;
    float *pixels = mmi_calloc((size_t)side * side * 3, sizeof(float));
    float *out = mmi_calloc((size_t)n_tokens * n_embd, sizeof(float));
    if (pixels && out) {
        st = mmi_vision_encode(v, pixels, side, side, out, NULL);
        if (st != MM_OK)
            fuzz_check_failure(st, "mmi_vision_encode");
    }
    mmi_free(pixels);
    mmi_free(out);
}

static void fuzz_run_decoder(const mmi_decoder *d)
{
    const mmi_decoder_config *c = &d->config;
    if ((uint64_t)c->n_vocab * c->n_embd > FUZZ_MAX_WORK * 16u)
        return;
    mmi_decoder_state s;
    mm_status st = mmi_decoder_state_init(&s, d, 4, 4);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mmi_decoder_state_init");
        return;
    }
    int32_t tokens[3] = {0, c->n_vocab - 1, c->n_vocab / 2};
    st = mmi_decoder_eval(d, &s, tokens, NULL, 3, NULL, NULL);
    if (st != MM_OK)
        fuzz_check_failure(st, "mmi_decoder_eval");
    mmi_decoder_state_free(&s);
}

static void fuzz_run_tokenizer(const mmi_tokenizer *tok)
{
    static const char text[] = "Hello <s> world</s>  \xe4\xb8\xad\xf0\x9f\x98\x80 it's 123\n";
    mmi_tokens ids = {0};
    mm_status st = mmi_tokenize(tok, text, sizeof text - 1,
                                MM_TOKENIZE_ADD_SPECIAL | MM_TOKENIZE_PARSE_SPECIAL, &ids);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mmi_tokenize");
        return;
    }
    int32_t n_vocab = mmi_tokenizer_n_vocab(tok);
    mmi_detok_stream stream;
    if (mmi_detok_stream_init(&stream, tok, MM_DETOKENIZE_RENDER_SPECIAL) == MM_OK) {
        for (size_t i = 0; i < ids.n; i++) {
            FUZZ_CHECK(ids.ids[i] >= 0 && ids.ids[i] < n_vocab, "id %d of a %d vocabulary",
                       (int)ids.ids[i], (int)n_vocab);
            const char *piece;
            size_t len;
            FUZZ_CHECK(mmi_detok_stream_push(&stream, ids.ids[i], &piece, &len) == MM_OK,
                       "detokenizing id %d", (int)ids.ids[i]);
            FUZZ_CHECK(mmi_utf8_check(piece, len) == len, "piece of id %d is not UTF-8",
                       (int)ids.ids[i]);
        }
        mmi_detok_stream_free(&stream);
    }
    mmi_tokens_free(&ids);
}

static void fuzz_run_clip_text(const mmi_clip_text *c)
{
    if ((uint64_t)c->n_ctx * c->enc.n_embd > FUZZ_MAX_WORK)
        return;
    int32_t ids[2] = {0, c->n_vocab - 1};
    float *out = mmi_calloc((size_t)c->n_proj, sizeof(float));
    if (out) {
        mm_status st = mmi_clip_text_embed(c, ids, c->n_ctx < 2 ? c->n_ctx : 2, out, 1);
        if (st != MM_OK)
            fuzz_check_failure(st, "mmi_clip_text_embed");
    }
    mmi_free(out);
}

/* The projector on its own (a standalone resampler file has no vision tower to load it). */
static void fuzz_run_connector(const mmi_gguf *g)
{
    int64_t n_in;
    if (mmi_gguf_get_int_or(g, "clip.perceiver.embedding_length", 8, &n_in) != MM_OK ||
        n_in < 1 || n_in > 4096)
        return;
    mmi_weights w;
    mmi_connector c;
    mmi_weights_init(&w, g);
    mm_status st = mmi_connector_load(&c, g, &w, (int)n_in);
    if (st == MM_OK) {
        int n = 3, n_out = mmi_connector_n_tokens(&c, n), n_embd = mmi_connector_n_embd(&c);
        FUZZ_CHECK(n_out >= 0 && n_embd >= 0, "%d tokens of %d", n_out, n_embd);
        if ((uint64_t)n_out * n_embd <= FUZZ_MAX_WORK) {
            float *x = mmi_calloc((size_t)n * n_in, sizeof(float));
            float *out = mmi_calloc((size_t)n_out * n_embd, sizeof(float));
            float *scratch = mmi_calloc(mmi_connector_scratch_floats(&c, n), sizeof(float));
            if (x && out && scratch)
                mmi_connector_run(&c, x, n, out, scratch);
            mmi_free(x);
            mmi_free(out);
            mmi_free(scratch);
        }
    } else {
        fuzz_check_failure(st, "mmi_connector_load");
    }
    mmi_connector_free(&c);
    mmi_weights_free(&w);
}

static int fuzz_gguf(const uint8_t *data, size_t size)
{
    mmi_gguf *g;
    mm_status st = mmi_gguf_open_memory(data, size, &g);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mmi_gguf_open_memory");
        return 0;
    }
    fuzz_gguf_walk(g);

    mmi_tokenizer *tok;
    if ((st = mmi_tokenizer_load(g, &tok)) == MM_OK) {
        fuzz_run_tokenizer(tok);
        mmi_tokenizer_free(tok);
    } else {
        fuzz_check_failure(st, "mmi_tokenizer_load");
    }
    mmi_vision *v;
    if ((st = mmi_vision_load(g, &v)) == MM_OK) {
        fuzz_run_vision(v);
        mmi_vision_free(v);
    } else {
        fuzz_check_failure(st, "mmi_vision_load");
    }
    fuzz_run_connector(g);
    mmi_clip_text *ct;
    if ((st = mmi_clip_text_load(g, &ct)) == MM_OK) {
        fuzz_run_clip_text(ct);
        mmi_clip_text_free(ct);
    } else {
        fuzz_check_failure(st, "mmi_clip_text_load");
    }
    /* The audio tower is loaded, not run: its run state follows the file's n_mels x frames,
     * which a small file can make large, as an image tower's follows its image size. */
    mmi_audio_tower *at;
    if ((st = mmi_audio_tower_load(g, &at)) == MM_OK) {
        FUZZ_CHECK(at->n_out > 0 && at->n_ctx > 0 && at->mel.n_frames == 2 * at->n_ctx,
                   "audio tower of %d rows out, %d positions", at->n_out, at->n_ctx);
        mmi_audio_tower_free(at);
    } else {
        fuzz_check_failure(st, "mmi_audio_tower_load");
    }
    mmi_decoder *d;
    if ((st = mmi_decoder_load(g, &d)) == MM_OK) {
        fuzz_run_decoder(d);
        mmi_decoder_free(d);
    } else {
        fuzz_check_failure(st, "mmi_decoder_load");
    }
    mmi_gguf_close(g);
    return 0;
}

/* ---- images: PNG / JPEG decoding, then the preprocessing a model would apply ---- */

static int fuzz_image(const uint8_t *data, size_t size)
{
    /* Small limits keep each run fast; the limit checks themselves are exercised too. */
    mm_options *options;
    if (mm_options_create(&options) != MM_OK)
        return 0;
    mm_options_set_int(options, MM_OPT_IMAGE_MAX_SIDE, 1024);
    mm_options_set_int(options, MM_OPT_IMAGE_MAX_PIXELS, 1 << 18);
    mm_image *image;
    mm_status st = mm_image_load_memory(data, size, options, &image);
    mm_options_free(options);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mm_image_load_memory");
        FUZZ_CHECK(image == NULL, "failed decode returned an image");
        return 0;
    }
    int w = mm_image_width(image), h = mm_image_height(image);
    FUZZ_CHECK(w > 0 && h > 0 && w <= 1024 && h <= 1024 && (int64_t)w * h <= 1 << 18,
               "decoded %d x %d", w, h);
    const uint8_t *px = mm_image_pixels(image);
    FUZZ_CHECK(px != NULL, "no pixels");
    fuzz_touch(px, (size_t)w * h * 3);
    /* LLaVA-1.5 (mean pad, shortest edge + crop) and SigLIP (squash, bilinear) at side 16. */
    mmi_preprocess_config cfg;
    mmi_preprocess_config_init(&cfg, 16);
    for (int variant = 0; variant < 2; variant++) {
        if (variant == 0) {
            cfg.pad = MMI_PAD_MEAN;
        } else {
            cfg.pad = MMI_PAD_NONE;
            cfg.resize = MMI_RESIZE_SQUASH;
            cfg.resample = MMI_RESAMPLE_BILINEAR;
        }
        mmi_views views;
        st = mmi_preprocess(&cfg, image, MMI_DETAIL_LOW, &views);
        if (st != MM_OK) {
            fuzz_check_failure(st, "mmi_preprocess");
            continue;
        }
        FUZZ_CHECK(views.n_views == 1 && views.size == 16, "%d views of %d", views.n_views,
                   views.size);
        mmi_views_free(&views);
    }
    mm_image_free(image);
    return 0;
}

/* ---- point clouds: the PLY reader ---- */

static int fuzz_points(const uint8_t *data, size_t size)
{
    /* A small count limit keeps each run fast and exercises the limit check too. */
    mm_options *options;
    if (mm_options_create(&options) != MM_OK)
        return 0;
    mm_options_set_int(options, MM_OPT_POINTS_MAX_COUNT, 4096);
    mm_points *points;
    mm_status st = mm_points_load_memory(data, size, options, &points);
    mm_options_free(options);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mm_points_load_memory");
        FUZZ_CHECK(points == NULL, "failed read returned a point cloud");
        return 0;
    }
    size_t n = mm_points_count(points);
    FUZZ_CHECK(n > 0 && n <= 4096, "read %zu points", n);
    const float *rows[3] = {mm_points_xyz(points), mm_points_rgb(points),
                            mm_points_normals(points)};
    FUZZ_CHECK(rows[0] != NULL, "no coordinates");
    for (int r = 0; r < 3; r++) {
        if (!rows[r])
            continue;
        fuzz_touch(rows[r], n * 3 * sizeof(float));
        for (size_t i = 0; i < n * 3; i++)
            FUZZ_CHECK(isfinite(rows[r][i]) && (r != 1 || (rows[r][i] >= 0 && rows[r][i] <= 1)),
                       "row kind %d value %zu is %g", r, i, (double)rows[r][i]);
    }
    /* The point encoder's sampling steps on whatever was accepted: the normalised cloud lies in
     * the unit sphere, and every index they give is a point of it. */
    float *unit = malloc(n * 3 * sizeof(float)), *scratch = malloc(n * sizeof(float));
    int32_t idx[8];
    FUZZ_CHECK(unit && scratch, "test allocation");
    mmi_points_normalise(rows[0], n, unit);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(unit[3 * i] * unit[3 * i] + unit[3 * i + 1] * unit[3 * i + 1] +
                   unit[3 * i + 2] * unit[3 * i + 2] <= 1.0001f, "point %zu outside the unit "
                   "sphere after normalising", i);
    int m = n < 8 ? (int)n : 8;
    mmi_points_fps(unit, n, m, size, idx, scratch);
    for (int i = 0; i < m; i++)
        FUZZ_CHECK(idx[i] >= 0 && (size_t)idx[i] < n, "sample %d is index %d of %zu", i,
                   (int)idx[i], n);
    mmi_points_knn(unit, n, unit + 3 * (size_t)idx[m - 1], m, idx, scratch);
    for (int i = 0; i < m; i++)
        FUZZ_CHECK(idx[i] >= 0 && (size_t)idx[i] < n, "neighbour %d is index %d of %zu", i,
                   (int)idx[i], n);
    free(unit);
    free(scratch);
    mm_points_free(points);
    return 0;
}

/* ---- tokenizer: arbitrary text through llama.cpp's vocabularies ---- */

/* The vocabularies, opened once: $MM_VECTORS_DIR/tokenizer (default tests/vectors/tokenizer). */
#define FUZZ_N_VOCABS 2
static mmi_gguf *fuzz_vocab_files[FUZZ_N_VOCABS];
static mmi_tokenizer *fuzz_vocabs[FUZZ_N_VOCABS];

static void fuzz_vocabs_free(void)
{
    for (int i = 0; i < FUZZ_N_VOCABS; i++) {
        mmi_tokenizer_free(fuzz_vocabs[i]);
        mmi_gguf_close(fuzz_vocab_files[i]);
        fuzz_vocabs[i] = NULL;
        fuzz_vocab_files[i] = NULL;
    }
}

static const mmi_tokenizer *fuzz_vocab(int i)
{
    static const char *const names[FUZZ_N_VOCABS] = {"ggml-vocab-llama-spm.gguf",
                                                     "ggml-vocab-gpt-2.gguf"};
    if (!fuzz_vocabs[0] && !fuzz_vocabs[1])
        atexit(fuzz_vocabs_free);
    if (!fuzz_vocabs[i]) {
        const char *dir = getenv("MM_VECTORS_DIR");
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer/%s", dir && *dir ? dir : "tests/vectors",
                 names[i]);
        if (mmi_gguf_open(path, 1, &fuzz_vocab_files[i]) != MM_OK ||
            mmi_tokenizer_load(fuzz_vocab_files[i], &fuzz_vocabs[i]) != MM_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", mm_last_error());
            abort();
        }
    }
    return fuzz_vocabs[i];
}

/* Decode ids through the streaming decoder into a new buffer (free() it) of *n bytes. */
static char *fuzz_detokenize(const mmi_tokenizer *tok, const mmi_tokens *ids, unsigned flags,
                             size_t *n)
{
    /* Each byte comes out as itself or as a 3-byte U+FFFD. */
    size_t cap = 16;
    for (size_t i = 0; i < ids->n; i++) {
        size_t len;
        mmi_token_piece(tok, ids->ids[i], &len);
        cap += 3 * len;
    }
    char *buf = malloc(cap);
    mmi_detok_stream s;
    FUZZ_CHECK(buf && mmi_detok_stream_init(&s, tok, flags) == MM_OK, "out of memory");
    *n = 0;
    for (size_t i = 0; i <= ids->n; i++) {
        const char *piece;
        size_t len;
        if (i < ids->n)
            FUZZ_CHECK(mmi_detok_stream_push(&s, ids->ids[i], &piece, &len) == MM_OK,
                       "id %d", (int)ids->ids[i]);
        else
            mmi_detok_stream_finish(&s, &piece, &len);
        FUZZ_CHECK(*n + len <= cap, "%zu bytes decoded from pieces of %zu", *n + len, cap);
        memcpy(buf + *n, piece, len);
        *n += len;
    }
    mmi_detok_stream_free(&s);
    FUZZ_CHECK(mmi_utf8_check(buf, *n) == *n, "decoded text is not UTF-8");
    return buf;
}

/* First byte: vocabulary and flags; the rest is the text. */
static int fuzz_tokenizer(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    const mmi_tokenizer *tok = fuzz_vocab(data[0] % FUZZ_N_VOCABS);
    unsigned flags = (data[0] >> 1) & (MM_TOKENIZE_ADD_SPECIAL | MM_TOKENIZE_PARSE_SPECIAL);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    mmi_tokens ids = {0};
    mm_status st = mmi_tokenize(tok, text, len, flags, &ids);
    size_t valid = mmi_utf8_check(text, len);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mmi_tokenize");
        FUZZ_CHECK(st == MM_ERR_FORMAT && valid < len, "valid UTF-8 text refused: %s",
                   mm_last_error());
        FUZZ_CHECK(ids.n == 0, "%zu ids left after a failure", ids.n);
        mmi_tokens_free(&ids);
        return 0;
    }
    FUZZ_CHECK(valid == len, "invalid UTF-8 at byte %zu accepted", valid);
    int32_t n_vocab = mmi_tokenizer_n_vocab(tok);
    for (size_t i = 0; i < ids.n; i++)
        FUZZ_CHECK(ids.ids[i] >= 0 && ids.ids[i] < n_vocab, "id %d", (int)ids.ids[i]);
    /* Any id sequence decodes to valid UTF-8 (checked in fuzz_detokenize): the ids, and the
     * input bytes read as ids. */
    size_t n;
    free(fuzz_detokenize(tok, &ids, MM_DETOKENIZE_RENDER_SPECIAL, &n));
    mmi_tokens raw = {0};
    FUZZ_CHECK(mmi_tokens_reserve(&raw, len / 2 + 1) == MM_OK, "out of memory");
    for (size_t i = 0; i + 1 < len; i += 2)
        raw.ids[raw.n++] = (int32_t)(((uint8_t)text[i] << 8 | (uint8_t)text[i + 1]) %
                                     (uint32_t)n_vocab);
    free(fuzz_detokenize(tok, &raw, 0, &n));
    mmi_tokens_free(&raw);
    /* Round trip: without special-token parsing, decoding gives back the text exactly. SPM
     * vocabularies write spaces as U+2581, so text holding that character cannot round-trip. */
    int spm_marker = data[0] % FUZZ_N_VOCABS == 0 && len >= 3 &&
                     memmem(text, len, "\xe2\x96\x81", 3) != NULL;
    if (!(flags & MM_TOKENIZE_PARSE_SPECIAL) && !spm_marker) {
        char *out = fuzz_detokenize(tok, &ids, 0, &n);
        FUZZ_CHECK(n == len && memcmp(out, text, len) == 0,
                   "\"%.*s\" came back as \"%.*s\"", (int)len, text, (int)n, out);
        free(out);
    }
    mmi_tokens_free(&ids);
    return 0;
}

/* ---- chat JSON: the strict parser, the conversation reader, and a session taking it ---- */

/* A tiny LLaVA pair with a 16-token vocabulary (the GGUF seed's), written and loaded once. */
static mm_model *fuzz_llava;

static void fuzz_llava_free(void)
{
    mm_model_free(fuzz_llava);
    fuzz_llava = NULL;
}

static mm_model *fuzz_chat_model(void)
{
    if (!fuzz_llava) {
        tiny_llama c = tiny_llama_default;
        c.vocab_path = "tests/fuzz/corpus/gguf/llama_spm.gguf";
        c.n_ctx = 96;
        if (tiny_llava_load(&c, &fuzz_llava) != MM_OK) {
            fprintf(stderr, "fuzz_chatjson: %s\n", mm_last_error());
            abort();
        }
        atexit(fuzz_llava_free);
    }
    return fuzz_llava;
}

static int fuzz_chatjson(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    mmi_json doc;
    mm_status st = mmi_json_parse(text, size, &doc);
    if (st == MM_OK) {
        FUZZ_CHECK(doc.n_values >= 1 && doc.values[0].next == doc.n_values,
                   "root spans %zu of %zu values", doc.values[0].next, doc.n_values);
        for (size_t i = 0; i < doc.n_values; i++) {
            const mmi_json_value *v = &doc.values[i];
            FUZZ_CHECK(v->next > i && v->next <= doc.n_values, "value %zu ends at %zu", i,
                       v->next);
            FUZZ_CHECK(v->offset < size, "value %zu at offset %zu of %zu", i, v->offset, size);
            if (v->type == MMI_JSON_STRING) {
                FUZZ_CHECK(mmi_utf8_check(v->str, v->len) == v->len && v->str[v->len] == '\0',
                           "string value %zu", i);
            } else if (v->type == MMI_JSON_ARRAY || v->type == MMI_JSON_OBJECT) {
                /* The children tile the subtree; an array's are also what first/next give. */
                size_t children = 0, c = i + 1;
                const mmi_json_value *e = mmi_json_first(&doc, v);
                for (; c < v->next; c = doc.values[c].next, children++) {
                    FUZZ_CHECK(doc.values[c].next > c, "value %zu ends at %zu", c,
                               doc.values[c].next);
                    if (v->type == MMI_JSON_OBJECT && children % 2 == 0)
                        FUZZ_CHECK(doc.values[c].type == MMI_JSON_STRING, "key %zu", c);
                    if (v->type == MMI_JSON_ARRAY) {
                        FUZZ_CHECK(e == &doc.values[c], "element %zu of value %zu", children, i);
                        e = mmi_json_next(&doc, v, e);
                    }
                }
                FUZZ_CHECK(c == v->next && e == NULL, "children of value %zu overrun", i);
                FUZZ_CHECK(children == v->n_children * (v->type == MMI_JSON_OBJECT ? 2u : 1u),
                           "value %zu has %zu children, says %u", i, children, v->n_children);
            }
        }
        mmi_json_free(&doc);
    } else {
        fuzz_check_failure(st, "mmi_json_parse");
    }
    /* Any bytes written as a JSON string read back: as they were when they are UTF-8. */
    mmi_json_writer w = {0};
    mmi_json_write_string(&w, text, size);
    if (mmi_json_writer_finish(&w) == MM_OK) {
        st = mmi_json_parse(w.data, w.len, &doc);
        FUZZ_CHECK(st == MM_OK && doc.values[0].type == MMI_JSON_STRING,
                   "written string does not read back: %s", mm_last_error());
        if (mmi_utf8_check(text, size) == size)
            FUZZ_CHECK(doc.values[0].len == size && memcmp(doc.values[0].str, text, size) == 0,
                       "written string reads back changed");
        mmi_json_free(&doc);
        mmi_free(w.data);
    }
    mm_chat_request *request;
    st = mm_chat_request_parse(text, size, &request);
    if (st == MM_OK) {
        for (size_t i = 0; i < mm_chat_request_n_stop(request); i++)
            FUZZ_CHECK(mm_chat_request_stop(request, i)[0] != '\0', "empty stop string %zu", i);
        mm_chat_request_free(request);
    } else {
        fuzz_check_failure(st, "mm_chat_request_parse");
    }
    mmi_chat chat;
    st = mmi_chat_parse(text, size, &chat);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mmi_chat_parse");
        return 0;
    }
    for (size_t m = 0; m < chat.n_messages; m++) {
        const mmi_chat_message *msg = &chat.messages[m];
        FUZZ_CHECK(msg->first_part + msg->n_parts <= chat.n_parts, "message %zu parts", m);
        for (size_t p = msg->first_part; p < msg->first_part + msg->n_parts; p++) {
            const mmi_chat_part *part = &chat.parts[p];
            if (part->kind == MMI_PART_TEXT)
                FUZZ_CHECK(mmi_utf8_check(part->text, part->text_len) == part->text_len &&
                           memchr(part->text, 0, part->text_len) == NULL, "part %zu text", p);
            else
                FUZZ_CHECK(part->image != NULL || part->image_len == 0, "part %zu image", p);
        }
    }
    mmi_chat_free(&chat);

    /* The whole conversation into a session: all of it, part of it (the text says how many
     * messages stayed), or nothing when it is refused before the session changes. */
    mm_session *session;
    mm_options *options;
    if (mm_options_create(&options) != MM_OK)
        return 0;
    mm_options_set_int(options, MM_OPT_IMAGE_MAX_SIDE, 256);
    mm_options_set_int(options, MM_OPT_IMAGE_MAX_PIXELS, 1 << 14);
    mm_options_set_int(options, MM_OPT_IMAGE_MAX_TOTAL_PIXELS, 1 << 16);
    if (mm_session_create(fuzz_chat_model(), options, &session) == MM_OK) {
        st = mm_session_add_messages_json(session, text, size, options);
        if (st != MM_OK)
            fuzz_check_failure(st, "mm_session_add_messages_json");
        int n_past = mm_session_n_past(session);
        FUZZ_CHECK(n_past >= 0 && n_past <= mm_session_n_ctx(session), "%d positions of %d",
                   n_past, mm_session_n_ctx(session));
        mm_session_free(session);
    }
    mm_options_free(options);
    return 0;
}

/* ---- audio: WAV reading, resampling to 16 kHz and the first chunk of log-mel features ---- */

static int fuzz_audio(const uint8_t *data, size_t size)
{
    /* 60 s at most: that also bounds the resampled clip to 960000 samples. */
    mm_options *options;
    if (mm_options_create(&options) != MM_OK)
        return 0;
    mm_options_set_int(options, MM_OPT_AUDIO_MAX_SECONDS, 60);
    mm_audio *audio;
    mm_status st = mm_audio_load_memory(data, size, options, &audio);
    mm_options_free(options);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mm_audio_load_memory");
        FUZZ_CHECK(audio == NULL, "failed read returned a clip");
        return 0;
    }
    size_t n = mm_audio_n_samples(audio);
    int rate = mm_audio_sample_rate(audio);
    const float *x = mm_audio_samples(audio);
    FUZZ_CHECK(n > 0 && rate > 0 && (double)n <= 60.0 * rate, "%zu samples at %d Hz", n, rate);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(isfinite(x[i]), "sample %zu is %g", i, x[i]);
    float *y;
    size_t n_y;
    st = mmi_resample_audio(x, n, rate, MMI_MEL_RATE, &y, &n_y);
    if (st == MM_OK) {
        mmi_mel mel;
        if (mmi_mel_init(&mel, 16, 100) == MM_OK) {
            float *scratch = mmi_array(mmi_mel_scratch_floats(&mel), sizeof(float));
            float *out = mmi_array(16 * 100, sizeof(float));
            if (scratch && out) {
                int frames = mmi_log_mel(&mel, y, n_y, out, scratch);
                FUZZ_CHECK(frames >= 1 && frames <= 100, "%d frames", frames);
                for (int i = 0; i < 16 * 100; i++)
                    FUZZ_CHECK(isfinite(out[i]), "feature %d is %g", i, out[i]);
            }
            mmi_free(scratch);
            mmi_free(out);
            mmi_mel_free(&mel);
        }
        mmi_free(y);
    } else {
        fuzz_check_failure(st, "mmi_resample_audio");
    }
    mm_audio_free(audio);
    return 0;
}

/* Video: the input's first bytes shape a clip of caller frames (frame count, sampling options,
 * sizes, times, pixels), then the whole input goes to the file loader (FFmpeg, when built in).
 * Every sampled clip is 1..max frames, in time order, each one of the frames given. */
static void fuzz_video_frames(const uint8_t *data, size_t size)
{
    uint8_t head[4 + 3 * 8] = {0};
    memcpy(head, data, size < sizeof head ? size : sizeof head);
    int n = 1 + head[0] % 8, max = 1 + head[3] % 16;
    mm_options *o;
    if (mm_options_create(&o) != MM_OK)
        return;
    mm_options_set_int(o, MM_OPT_VIDEO_FRAMES, 1 + head[1] % 16);
    mm_options_set_float(o, MM_OPT_VIDEO_INTERVAL, head[2] % 8 * 0.25);
    mm_options_set_int(o, MM_OPT_VIDEO_MAX_FRAMES, max);
    mm_image *frames[8] = {0};
    double times[8];
    double t = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *f = head + 4 + 3 * i;
        int w = 1 + f[0] % 6, h = 1 + f[1] % 6;
        t += f[2] == 255 ? NAN : (int8_t)f[2] * 0.125; /* may go back in time */
        times[i] = t;
        uint8_t px[3 * 6 * 6] = {0};
        if (size > sizeof head)
            memcpy(px, data + sizeof head, size - sizeof head < sizeof px ? size - sizeof head
                                                                           : sizeof px);
        if (mm_image_from_pixels(px, w, h, (size_t)w * 3, MM_PIXEL_RGB8, &frames[i]) != MM_OK)
            goto done;
    }
    mm_video *v = NULL;
    mm_status st = mm_video_from_frames((const mm_image *const *)frames, times, (size_t)n, o, &v);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mm_video_from_frames");
        FUZZ_CHECK(v == NULL, "failed call returned a clip");
        goto done;
    }
    size_t k = mm_video_n_frames(v);
    FUZZ_CHECK(k >= 1 && k <= (size_t)max && k <= (size_t)n, "%zu frames of %d (cap %d)", k, n,
               max);
    for (size_t i = 0; i < k; i++) {
        FUZZ_CHECK(mm_video_frame(v, i) != NULL, "frame %zu missing", i);
        double ti = mm_video_frame_time(v, i);
        FUZZ_CHECK(i == 0 || ti >= mm_video_frame_time(v, i - 1), "frame %zu goes back", i);
        int found = 0;
        for (int j = 0; j < n; j++)
            found |= times[j] == ti;
        FUZZ_CHECK(found, "frame %zu at %g s, no frame given then", i, ti);
    }
    mm_video_free(v);
done:
    for (int i = 0; i < n; i++)
        mm_image_free(frames[i]);
    mm_options_free(o);
}

static int fuzz_video(const uint8_t *data, size_t size)
{
    fuzz_video_frames(data, size);
    mm_options *o;
    if (mm_options_create(&o) != MM_OK)
        return 0;
    mm_options_set_int(o, MM_OPT_VIDEO_MAX_SECONDS, 60);
    mm_options_set_int(o, MM_OPT_VIDEO_FRAMES, 2);
    mm_options_set_int(o, MM_OPT_IMAGE_MAX_SIDE, 256);
    mm_video *v = NULL;
    mm_status st = mm_video_load_memory(data, size, o, &v);
    mm_options_free(o);
    if (st != MM_OK) {
        fuzz_check_failure(st, "mm_video_load_memory");
        FUZZ_CHECK(v == NULL, "failed read returned a clip");
        return 0;
    }
    size_t k = mm_video_n_frames(v);
    FUZZ_CHECK(k >= 1 && k <= 2, "%zu frames", k);
    for (size_t i = 0; i < k; i++) {
        const mm_image *f = mm_video_frame(v, i);
        FUZZ_CHECK(f && mm_image_width(f) <= 256 && mm_image_height(f) <= 256, "frame %zu", i);
        fuzz_touch(mm_image_pixels(f), (size_t)mm_image_width(f) * mm_image_height(f) * 3);
    }
    mm_video_free(v);
    return 0;
}

static const struct {
    const char *name; /* the folder under tests/fuzz/corpus and tests/fuzz/regressions */
    int (*run)(const uint8_t *data, size_t size);
} fuzz_targets[] = {
    {"gguf", fuzz_gguf},
    {"image", fuzz_image},
    {"points", fuzz_points},
    {"tokenizer", fuzz_tokenizer},
    {"chatjson", fuzz_chatjson},
    {"audio", fuzz_audio},
    {"video", fuzz_video},
};

/* Run target t on one input, with the rules that hold for every target. */
static int fuzz_one(size_t t, const uint8_t *data, size_t size)
{
    mmi_alloc_largest();
    int r = fuzz_targets[t].run(data, size);
    fuzz_check_allocations(size);
    return r;
}

#endif
