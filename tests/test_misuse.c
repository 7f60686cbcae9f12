/* Misuse of the public API: every exported function (tests/abi/libmm.symbols) called with NULL
 * pointers, wrong sizes, out-of-range option values, objects of the wrong kind, and after the
 * free of a related object where the API allows it (a session or embeddings outliving their
 * model). Each call must return the documented error with a message, leave outputs cleared
 * and state unchanged, and never crash or touch memory it was not given (run under ASan, UBSan
 * and valgrind). The first test fails when an exported symbol has no case here. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "model.h"
#include "testutil.h"
#include "tiny_llama.h"

/* Tiny models written for this test, and two seed files of the GGUF fuzz target that are
 * valid models: a 16-token SentencePiece vocabulary and a CLIP dual encoder with tokenizer. */
#define SPM_VOCAB "tests/fuzz/corpus/gguf/llama_spm.gguf"
#define CLIP_FILE "tests/fuzz/corpus/gguf/clip_dual.gguf"

static mm_model *llava;     /* language model + vision tower + tokenizer (n_embd 32) */
static mm_model *ids_model; /* language model alone, no tokenizer */
static mm_model *clip;      /* CLIP dual encoder */
static mm_image *image;

static void load_models(void)
{
    tiny_llama c = tiny_llama_default;
    c.vocab_path = SPM_VOCAB;
    ck_assert_ok(tiny_llava_load(&c, &llava));
    ck_assert_ok(tiny_llama_load(&tiny_llama_default, &ids_model));
    ck_assert_ok(mm_model_load(CLIP_FILE, NULL, NULL, &clip));
    uint8_t px[24 * 20 * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 29 % 253);
    ck_assert_ok(mm_image_from_pixels(px, 24, 20, 24 * 3, MM_PIXEL_RGB8, &image));
}

static void free_models(void)
{
    mm_model_free(llava);
    mm_model_free(ids_model);
    mm_model_free(clip);
    mm_image_free(image);
}

/* The call fails with `expected` and leaves a message. */
#define EXPECT(call, expected)                                                                  \
    do {                                                                                        \
        ck_assert_status(call, expected);                                                       \
        ck_assert_msg(mm_last_error()[0] != '\0', "%s: no message", #call);                     \
    } while (0)

/* A pointer an `out` argument must be cleared from on failure. */
#define SENTINEL ((void *)&sentinel_byte)
static char sentinel_byte;

static mm_session *new_session(mm_model *m)
{
    mm_session *s;
    ck_assert_ok(mm_session_create(m, NULL, &s));
    return s;
}

static mm_options *new_options(void)
{
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    return o;
}

/* ---- status, errors, logging, version ---- */

static void m_mm_abi_version(void)
{
    ck_assert_int_eq(mm_abi_version(), MM_ABI_VERSION); /* no argument to misuse */
}

static void m_mm_version_number(void)
{
    ck_assert_uint_eq(mm_version_number(), MM_VERSION_NUMBER);
}

static void m_mm_version_string(void)
{
    ck_assert_ptr_nonnull(mm_version_string());
}

static void m_mm_status_str(void)
{
    static const int bad[] = {-1, 10, 1000, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *s = mm_status_str((mm_status)bad[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(s, "unknown status");
    }
}

static void m_mm_last_error(void)
{
    ck_assert_ptr_nonnull(mm_last_error());
    EXPECT(mm_options_create(NULL), MM_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "mm_options_create"));
}

static int log_calls;

static void count_log(void *user, mm_log_level level, const char *message)
{
    (void)level;
    ck_assert_ptr_eq(user, &log_calls);
    ck_assert_ptr_nonnull(message);
    log_calls++;
}

static void m_mm_set_log(void)
{
    /* A level above every level logs nothing; the failures below are logged at DEBUG. */
    mm_set_log(count_log, &log_calls, (mm_log_level)99);
    EXPECT(mm_options_create(NULL), MM_ERR_ARG);
    ck_assert_int_eq(log_calls, 0);
    mm_set_log(count_log, &log_calls, MM_LOG_DEBUG);
    EXPECT(mm_options_create(NULL), MM_ERR_ARG);
    ck_assert_int_eq(log_calls, 1);
    mm_set_log(NULL, &log_calls, MM_LOG_DEBUG);
    EXPECT(mm_options_create(NULL), MM_ERR_ARG);
    ck_assert_int_eq(log_calls, 1);
}

/* ---- options ---- */

static void m_mm_options_create(void)
{
    EXPECT(mm_options_create(NULL), MM_ERR_ARG);
}

static void m_mm_options_copy(void)
{
    mm_options *o = new_options(), *copy = SENTINEL;
    EXPECT(mm_options_copy(NULL, &copy), MM_ERR_ARG);
    ck_assert_ptr_null(copy);
    EXPECT(mm_options_copy(o, NULL), MM_ERR_ARG);
    mm_options_free(o);
}

static void m_mm_options_free(void)
{
    mm_options_free(NULL);
}

static void m_mm_options_set_int(void)
{
    mm_options *o = new_options();
    EXPECT(mm_options_set_int(NULL, MM_OPT_N_CTX, 8), MM_ERR_ARG);
    EXPECT(mm_options_set_int(o, (mm_opt)9999, 8), MM_ERR_UNSUPPORTED);
    EXPECT(mm_options_set_int(o, (mm_opt)-1, 8), MM_ERR_UNSUPPORTED);
    EXPECT(mm_options_set_int(o, MM_OPT_TEMPERATURE, 1), MM_ERR_ARG);    /* a float key */
    EXPECT(mm_options_set_int(o, MM_OPT_CHAT_TEMPLATE, 1), MM_ERR_ARG);  /* a string key */
    ck_assert_ok(mm_options_set_int(o, MM_OPT_N_CTX, 32));
    const struct { mm_opt key; int64_t value; } bad[] = {
        {MM_OPT_N_THREADS, -1},       {MM_OPT_N_THREADS, 1025},   {MM_OPT_USE_MMAP, 2},
        {MM_OPT_N_CTX, -1},           {MM_OPT_N_CTX, (1 << 24) + 1}, {MM_OPT_MAX_TOKENS, -1},
        {MM_OPT_MAX_TOKENS, INT64_MAX}, {MM_OPT_SEED, -1},        {MM_OPT_TOP_K, -1},
        {MM_OPT_REPEAT_LAST_N, INT64_MIN}, {MM_OPT_IMAGE_MAX_SIDE, 0},
        {MM_OPT_IMAGE_MAX_PIXELS, 0}, {MM_OPT_N_CTX, INT64_MIN},
        {MM_OPT_IMAGE_MAX_TOTAL_PIXELS, 0}, {MM_OPT_IMAGE_MAX_TOTAL_PIXELS, INT64_MAX},
        {MM_OPT_AUDIO_MAX_SECONDS, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT(mm_options_set_int(o, bad[i].key, bad[i].value), MM_ERR_ARG);
    int64_t v;
    ck_assert_ok(mm_options_get_int(o, MM_OPT_N_CTX, &v));
    ck_assert_int_eq(v, 32); /* the bag is unchanged */
    ck_assert_ok(mm_options_get_int(o, MM_OPT_TOP_K, &v));
    ck_assert_int_eq(v, 0);
    mm_options_free(o);
}

static void m_mm_options_set_float(void)
{
    mm_options *o = new_options();
    EXPECT(mm_options_set_float(NULL, MM_OPT_TOP_P, 0.5), MM_ERR_ARG);
    EXPECT(mm_options_set_float(o, (mm_opt)12345, 0.5), MM_ERR_UNSUPPORTED);
    EXPECT(mm_options_set_float(o, MM_OPT_N_CTX, 8.0), MM_ERR_ARG); /* an int key */
    ck_assert_ok(mm_options_set_float(o, MM_OPT_TOP_P, 0.5));
    const struct { mm_opt key; double value; } bad[] = {
        {MM_OPT_TEMPERATURE, -0.1}, {MM_OPT_TEMPERATURE, NAN},     {MM_OPT_TEMPERATURE, INFINITY},
        {MM_OPT_TOP_P, 0.0},        {MM_OPT_TOP_P, 1.5},           {MM_OPT_TOP_P, NAN},
        {MM_OPT_MIN_P, 1.0},        {MM_OPT_MIN_P, -0.5},          {MM_OPT_REPEAT_PENALTY, 0.0},
        {MM_OPT_REPEAT_PENALTY, -INFINITY},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT(mm_options_set_float(o, bad[i].key, bad[i].value), MM_ERR_ARG);
    double v;
    ck_assert_ok(mm_options_get_float(o, MM_OPT_TOP_P, &v));
    ck_assert(v == 0.5);
    mm_options_free(o);
}

static void m_mm_options_set_string(void)
{
    mm_options *o = new_options();
    EXPECT(mm_options_set_string(NULL, MM_OPT_CHAT_TEMPLATE, "raw"), MM_ERR_ARG);
    EXPECT(mm_options_set_string(o, MM_OPT_CHAT_TEMPLATE, NULL), MM_ERR_ARG);
    EXPECT(mm_options_set_string(o, MM_OPT_N_CTX, "8"), MM_ERR_ARG);
    EXPECT(mm_options_set_string(o, (mm_opt)0, "x"), MM_ERR_UNSUPPORTED);
    const char *v = SENTINEL;
    ck_assert_ok(mm_options_get_string(o, MM_OPT_CHAT_TEMPLATE, &v));
    ck_assert_ptr_null(v);
    mm_options_free(o);
}

static void m_mm_options_unset(void)
{
    mm_options *o = new_options();
    EXPECT(mm_options_unset(NULL, MM_OPT_N_CTX), MM_ERR_ARG);
    EXPECT(mm_options_unset(o, (mm_opt)77), MM_ERR_UNSUPPORTED);
    ck_assert_ok(mm_options_unset(o, MM_OPT_N_CTX)); /* not set: nothing to do */
    mm_options_free(o);
}

static void m_mm_options_get_int(void)
{
    int64_t v;
    EXPECT(mm_options_get_int(NULL, MM_OPT_N_CTX, NULL), MM_ERR_ARG);
    EXPECT(mm_options_get_int(NULL, (mm_opt)9999, &v), MM_ERR_UNSUPPORTED);
    EXPECT(mm_options_get_int(NULL, MM_OPT_TOP_P, &v), MM_ERR_ARG);
    ck_assert_ok(mm_options_get_int(NULL, MM_OPT_MAX_TOKENS, &v)); /* NULL bag: defaults */
    ck_assert_int_eq(v, 256);
}

static void m_mm_options_get_float(void)
{
    double v;
    EXPECT(mm_options_get_float(NULL, MM_OPT_TOP_P, NULL), MM_ERR_ARG);
    EXPECT(mm_options_get_float(NULL, (mm_opt)9999, &v), MM_ERR_UNSUPPORTED);
    EXPECT(mm_options_get_float(NULL, MM_OPT_SEED, &v), MM_ERR_ARG);
    ck_assert_ok(mm_options_get_float(NULL, MM_OPT_TOP_P, &v));
    ck_assert(v == 1.0);
}

static void m_mm_options_get_string(void)
{
    const char *v;
    EXPECT(mm_options_get_string(NULL, MM_OPT_CHAT_TEMPLATE, NULL), MM_ERR_ARG);
    EXPECT(mm_options_get_string(NULL, (mm_opt)-7, &v), MM_ERR_UNSUPPORTED);
    EXPECT(mm_options_get_string(NULL, MM_OPT_TOP_K, &v), MM_ERR_ARG);
}

static void m_mm_option_name(void)
{
    ck_assert_ptr_null(mm_option_name((mm_opt)9999));
    ck_assert_ptr_null(mm_option_name((mm_opt)-1));
    ck_assert_str_eq(mm_option_name(MM_OPT_N_CTX), "n_ctx");
}

static void m_mm_option_type(void)
{
    mm_opt_type t;
    EXPECT(mm_option_type(MM_OPT_N_CTX, NULL), MM_ERR_ARG);
    EXPECT(mm_option_type((mm_opt)9999, &t), MM_ERR_UNSUPPORTED);
}

static int never_called(void *user, mm_progress_stage stage, uint64_t done, uint64_t total)
{
    (void)user, (void)stage, (void)done, (void)total;
    return 0;
}

static void m_mm_options_set_progress(void)
{
    EXPECT(mm_options_set_progress(NULL, never_called, NULL), MM_ERR_ARG);
    mm_options *o = new_options();
    ck_assert_ok(mm_options_set_progress(o, NULL, SENTINEL)); /* removing it is fine */
    mm_options_free(o);
}

/* ---- models ---- */

/* A file of the given bytes under $TMPDIR. */
static const char *temp_file(const char *name, const void *data, size_t size)
{
    const char *path = tiny_temp_path(name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, size, f), size);
    fclose(f);
    return path;
}

static void m_mm_model_load(void)
{
    mm_model *m = SENTINEL;
    EXPECT(mm_model_load(CLIP_FILE, NULL, NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_model_load(NULL, NULL, NULL, &m), MM_ERR_ARG);
    ck_assert_ptr_null(m);
    m = SENTINEL;
    EXPECT(mm_model_load("tests/no-such-file.gguf", NULL, NULL, &m), MM_ERR_IO);
    ck_assert_ptr_null(m);
    EXPECT(mm_model_load("tests", NULL, NULL, &m), MM_ERR_IO); /* a directory */
    EXPECT(mm_model_load(CLIP_FILE, "tests/no-such-file.gguf", NULL, &m), MM_ERR_IO);
    /* Files of the wrong kind: empty, not GGUF, two vision files. */
    char path[512];
    snprintf(path, sizeof path, "%s", temp_file("empty.gguf", "", 0));
    EXPECT(mm_model_load(path, NULL, NULL, &m), MM_ERR_FORMAT);
    snprintf(path, sizeof path, "%s", temp_file("text.gguf", "hello, world\n", 13));
    EXPECT(mm_model_load(path, NULL, NULL, &m), MM_ERR_FORMAT);
    unlink(path);
    EXPECT(mm_model_load(CLIP_FILE, CLIP_FILE, NULL, &m), MM_ERR_FORMAT);
    ck_assert_ptr_null(m);
    /* Without mmap, too. */
    mm_options *o = new_options();
    ck_assert_ok(mm_options_set_int(o, MM_OPT_USE_MMAP, 0));
    snprintf(path, sizeof path, "%s", temp_file("empty.gguf", "", 0));
    EXPECT(mm_model_load(path, NULL, o, &m), MM_ERR_FORMAT);
    unlink(path);
    mm_options_free(o);
}

/* Sessions and embeddings keep working after their model is freed. */
static void m_mm_model_family(void)
{
    ck_assert_ptr_null(mm_model_family(NULL));
    ck_assert_str_eq(mm_model_family(llava), "llama");
}

static void m_mm_model_free(void)
{
    mm_model_free(NULL);
    tiny_llama c = tiny_llama_default;
    c.vocab_path = SPM_VOCAB;
    mm_model *m;
    ck_assert_ok(tiny_llava_load(&c, &m));
    mm_session *s = new_session(m);
    mm_embeddings *e;
    ck_assert_ok(mm_image_encode(m, image, NULL, &e));
    mm_model_free(m);
    const mm_image *images[1] = {image};
    ck_assert_ok(mm_session_add_message_images(s, "user", "ab c", 4, images, 1));
    const mm_embeddings *embds[1] = {e};
    ck_assert_ok(mm_session_add_message_embeddings(s, "user", "<image>a", 8, embds, 1));
    mm_options *o = new_options();
    ck_assert_ok(mm_options_set_int(o, MM_OPT_MAX_TOKENS, 3));
    ck_assert_ok(mm_session_generate(s, o, NULL, NULL));
    int32_t token;
    const char *piece;
    size_t len;
    ck_assert_ok(mm_session_next(s, &token, &piece, &len));
    ck_assert_str_eq(mm_session_chat_template(s), "llava");
    ck_assert_uint_eq(mm_embeddings_n_embd(e), 32);
    float sum = 0;
    for (size_t i = 0; i < mm_embeddings_n_tokens(e) * mm_embeddings_n_embd(e); i++)
        sum += mm_embeddings_data(e)[i];
    ck_assert(isfinite(sum));
    mm_options_free(o);
    mm_session_free(s);
    mm_embeddings_free(e);
}


/* ---- model metadata ---- */

static void m_mm_model_meta_count(void)
{
    ck_assert_uint_eq(mm_model_meta_count(NULL), 0);
}

static void m_mm_model_meta_key(void)
{
    ck_assert_ptr_null(mm_model_meta_key(NULL, 0));
    ck_assert_ptr_null(mm_model_meta_key(llava, mm_model_meta_count(llava)));
    ck_assert_ptr_null(mm_model_meta_key(llava, SIZE_MAX));
}

static void m_mm_model_meta_value(void)
{
    char buf[8];
    size_t len = 5;
    EXPECT(mm_model_meta_value(NULL, 0, buf, sizeof buf, &len), MM_ERR_ARG);
    ck_assert_uint_eq(len, 0);
    EXPECT(mm_model_meta_value(llava, 0, NULL, 8, &len), MM_ERR_ARG);
    EXPECT(mm_model_meta_value(llava, SIZE_MAX, buf, sizeof buf, NULL), MM_ERR_ARG);
    EXPECT(mm_model_meta_value(llava, 0, buf, 0, NULL), MM_ERR_ARG);
}

static void m_mm_model_tensor_count(void)
{
    ck_assert_uint_eq(mm_model_tensor_count(NULL), 0);
}

static void m_mm_model_tensor_info(void)
{
    const char *name = SENTINEL, *type = SENTINEL;
    uint64_t n = 5;
    EXPECT(mm_model_tensor_info(NULL, 0, &name, &type, &n), MM_ERR_ARG);
    ck_assert_ptr_null(name);
    ck_assert_ptr_null(type);
    ck_assert_uint_eq(n, 0);
    EXPECT(mm_model_tensor_info(llava, mm_model_tensor_count(llava), &name, NULL, NULL),
           MM_ERR_ARG);
    ck_assert_ok(mm_model_tensor_info(llava, 0, NULL, NULL, NULL));
}

static void m_mm_model_memory(void)
{
    uint64_t w = 5, kv = 5;
    EXPECT(mm_model_memory(NULL, 0, &w, &kv), MM_ERR_ARG);
    ck_assert_uint_eq(w, 0);
    ck_assert_uint_eq(kv, 0);
    EXPECT(mm_model_memory(llava, -1, &w, &kv), MM_ERR_ARG);
    ck_assert_ok(mm_model_memory(clip, 0, &w, &kv)); /* no language model: no KV cache */
    ck_assert_uint_gt(w, 0);
    ck_assert_uint_eq(kv, 0);
}

/* ---- images ---- */

static void m_mm_image_load_file(void)
{
    mm_image *img = SENTINEL;
    EXPECT(mm_image_load_file(NULL, NULL, &img), MM_ERR_ARG);
    ck_assert_ptr_null(img);
    EXPECT(mm_image_load_file("tests/data/images/grey1.png", NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_image_load_file("tests/no-such-image.png", NULL, &img), MM_ERR_IO);
    EXPECT(mm_image_load_file("tests", NULL, &img), MM_ERR_IO);
    EXPECT(mm_image_load_file(CLIP_FILE, NULL, &img), MM_ERR_FORMAT);
    ck_assert_ptr_null(img);
}

static void m_mm_image_load_memory(void)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    mm_image *img = SENTINEL;
    EXPECT(mm_image_load_memory(NULL, 10, NULL, &img), MM_ERR_ARG);
    ck_assert_ptr_null(img);
    EXPECT(mm_image_load_memory(png_magic, 8, NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_image_load_memory(png_magic, 0, NULL, &img), MM_ERR_FORMAT);
    EXPECT(mm_image_load_memory(png_magic, 8, NULL, &img), MM_ERR_FORMAT);  /* header only */
    EXPECT(mm_image_load_memory("\xff\xd8\xff", 3, NULL, &img), MM_ERR_FORMAT); /* JPEG start */
    ck_assert_ptr_null(img);
}

static void m_mm_image_from_pixels(void)
{
    uint8_t px[4 * 3 * 4] = {0};
    mm_image *img = SENTINEL;
    EXPECT(mm_image_from_pixels(NULL, 2, 2, 6, MM_PIXEL_RGB8, &img), MM_ERR_ARG);
    ck_assert_ptr_null(img);
    EXPECT(mm_image_from_pixels(px, 2, 2, 6, MM_PIXEL_RGB8, NULL), MM_ERR_ARG);
    EXPECT(mm_image_from_pixels(px, 0, 2, 6, MM_PIXEL_RGB8, &img), MM_ERR_ARG);
    EXPECT(mm_image_from_pixels(px, 2, -1, 6, MM_PIXEL_RGB8, &img), MM_ERR_ARG);
    EXPECT(mm_image_from_pixels(px, 2, 2, 5, MM_PIXEL_RGB8, &img), MM_ERR_ARG);  /* stride */
    EXPECT(mm_image_from_pixels(px, 2, 2, 7, MM_PIXEL_RGBA8, &img), MM_ERR_ARG);
    EXPECT(mm_image_from_pixels(px, 2, 2, 8, (mm_pixel_format)0, &img), MM_ERR_ARG);
    EXPECT(mm_image_from_pixels(px, 2, 2, 8, (mm_pixel_format)99, &img), MM_ERR_ARG);
    /* A size no allocator can give: refused before the pixels are read. */
    EXPECT(mm_image_from_pixels(px, INT_MAX, INT_MAX, (size_t)INT_MAX * 3, MM_PIXEL_RGB8, &img),
           MM_ERR_NOMEM);
    ck_assert_ptr_null(img);
}

static void m_mm_image_width(void)
{
    ck_assert_int_eq(mm_image_width(NULL), 0);
}

static void m_mm_image_height(void)
{
    ck_assert_int_eq(mm_image_height(NULL), 0);
}

static void m_mm_image_pixels(void)
{
    ck_assert_ptr_null(mm_image_pixels(NULL));
}

static void m_mm_image_free(void)
{
    mm_image_free(NULL);
}

/* ---- point clouds ---- */

static void m_mm_points_load_file(void)
{
    mm_points *p = SENTINEL;
    EXPECT(mm_points_load_file(NULL, NULL, &p), MM_ERR_ARG);
    ck_assert_ptr_null(p);
    EXPECT(mm_points_load_file("tests/data/images/grey1.png", NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_points_load_file("tests/no-such-cloud.ply", NULL, &p), MM_ERR_IO);
    EXPECT(mm_points_load_file("tests", NULL, &p), MM_ERR_IO);
    EXPECT(mm_points_load_file(CLIP_FILE, NULL, &p), MM_ERR_FORMAT);
    ck_assert_ptr_null(p);
}

static void m_mm_points_load_memory(void)
{
    static const char head[] = "ply\nformat ascii 1.0\n";
    mm_points *p = SENTINEL;
    EXPECT(mm_points_load_memory(NULL, 10, NULL, &p), MM_ERR_ARG);
    ck_assert_ptr_null(p);
    EXPECT(mm_points_load_memory(head, sizeof head - 1, NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_points_load_memory(head, 0, NULL, &p), MM_ERR_FORMAT);
    EXPECT(mm_points_load_memory(head, sizeof head - 1, NULL, &p), MM_ERR_FORMAT);
    ck_assert_ptr_null(p);
}

static void m_mm_points_from_arrays(void)
{
    const float xyz[3] = {0, 1, 2}, rgb[3] = {2, 0, 0};
    mm_points *p = SENTINEL;
    EXPECT(mm_points_from_arrays(NULL, NULL, 1, &p), MM_ERR_ARG);
    ck_assert_ptr_null(p);
    EXPECT(mm_points_from_arrays(xyz, NULL, 1, NULL), MM_ERR_ARG);
    EXPECT(mm_points_from_arrays(xyz, NULL, 0, &p), MM_ERR_ARG);
    EXPECT(mm_points_from_arrays(xyz, rgb, 1, &p), MM_ERR_ARG);
    EXPECT(mm_points_from_arrays(xyz, NULL, SIZE_MAX, &p), MM_ERR_ARG);
    ck_assert_ptr_null(p);
}

static void m_mm_points_count(void)
{
    ck_assert_uint_eq(mm_points_count(NULL), 0);
}

static void m_mm_points_xyz(void)
{
    ck_assert_ptr_null(mm_points_xyz(NULL));
}

static void m_mm_points_rgb(void)
{
    ck_assert_ptr_null(mm_points_rgb(NULL));
}

static void m_mm_points_normals(void)
{
    ck_assert_ptr_null(mm_points_normals(NULL));
}

static void m_mm_points_free(void)
{
    mm_points_free(NULL);
}

/* ---- audio ---- */

static void m_mm_audio_load_file(void)
{
    mm_audio *a = SENTINEL;
    EXPECT(mm_audio_load_file(NULL, NULL, &a), MM_ERR_ARG);
    ck_assert_ptr_null(a);
    EXPECT(mm_audio_load_file("tests/vectors/hf/qwen2_audio/audio.wav", NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_audio_load_file("tests/no-such-clip.wav", NULL, &a), MM_ERR_IO);
    EXPECT(mm_audio_load_file(CLIP_FILE, NULL, &a), MM_ERR_FORMAT);
    ck_assert_ptr_null(a);
}

static void m_mm_audio_load_memory(void)
{
    mm_audio *a = SENTINEL;
    EXPECT(mm_audio_load_memory(NULL, 10, NULL, &a), MM_ERR_ARG);
    ck_assert_ptr_null(a);
    EXPECT(mm_audio_load_memory("RIFF", 4, NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_audio_load_memory("RIFF", 0, NULL, &a), MM_ERR_FORMAT);
    EXPECT(mm_audio_load_memory("RIFF\x04\0\0\0WAVE", 12, NULL, &a), MM_ERR_FORMAT);
    EXPECT(mm_audio_load_memory("fLaC", 4, NULL, &a), MM_ERR_UNSUPPORTED);
    ck_assert_ptr_null(a);
}

static void m_mm_audio_from_samples(void)
{
    float x[4] = {0};
    mm_audio *a = SENTINEL;
    EXPECT(mm_audio_from_samples(NULL, 2, 1, 16000, &a), MM_ERR_ARG);
    ck_assert_ptr_null(a);
    EXPECT(mm_audio_from_samples(x, 2, 1, 16000, NULL), MM_ERR_ARG);
    EXPECT(mm_audio_from_samples(x, 0, 1, 16000, &a), MM_ERR_ARG);
    EXPECT(mm_audio_from_samples(x, 2, 0, 16000, &a), MM_ERR_ARG);
    EXPECT(mm_audio_from_samples(x, 2, 1, -1, &a), MM_ERR_ARG);
    EXPECT(mm_audio_from_samples(x, SIZE_MAX, 2, 16000, &a), MM_ERR_ARG);
    ck_assert_ptr_null(a);
}

static void m_mm_audio_sample_rate(void)
{
    ck_assert_int_eq(mm_audio_sample_rate(NULL), 0);
}

static void m_mm_audio_n_samples(void)
{
    ck_assert_uint_eq(mm_audio_n_samples(NULL), 0);
}

static void m_mm_audio_samples(void)
{
    ck_assert_ptr_null(mm_audio_samples(NULL));
}

static void m_mm_audio_free(void)
{
    mm_audio_free(NULL);
}

static void m_mm_audio_resampling_available(void)
{
    int r = mm_audio_resampling_available();
    ck_assert(r == 0 || r == 1);
}

/* ---- media ---- */

static void m_mm_media_from_image(void)
{
    mm_media *m = SENTINEL;
    EXPECT(mm_media_from_image(NULL, &m), MM_ERR_ARG);
    ck_assert_ptr_null(m);
    EXPECT(mm_media_from_image(image, NULL), MM_ERR_ARG);
}

static void m_mm_media_from_audio(void)
{
    mm_media *m = SENTINEL;
    EXPECT(mm_media_from_audio(NULL, &m), MM_ERR_ARG);
    ck_assert_ptr_null(m);
}

static void m_mm_media_from_video(void)
{
    mm_media *m = SENTINEL;
    EXPECT(mm_media_from_video(NULL, &m), MM_ERR_ARG);
    ck_assert_ptr_null(m);
}

/* ---- video ---- */

static void m_mm_video_from_frames(void)
{
    const mm_image *frames[2] = {image, NULL};
    const double bad_times[2] = {1, 0};
    mm_video *v = SENTINEL;
    EXPECT(mm_video_from_frames(NULL, NULL, 1, NULL, &v), MM_ERR_ARG);
    ck_assert_ptr_null(v);
    EXPECT(mm_video_from_frames(frames, NULL, 0, NULL, &v), MM_ERR_ARG);
    EXPECT(mm_video_from_frames(frames, NULL, 2, NULL, &v), MM_ERR_ARG); /* a NULL frame */
    frames[1] = image;
    EXPECT(mm_video_from_frames(frames, bad_times, 2, NULL, &v), MM_ERR_ARG);
    EXPECT(mm_video_from_frames(frames, NULL, 1, NULL, NULL), MM_ERR_ARG);
    ck_assert_ptr_null(v);
}

static void m_mm_video_load_file(void)
{
    mm_video *v = SENTINEL;
    EXPECT(mm_video_load_file(NULL, NULL, &v), MM_ERR_ARG);
    ck_assert_ptr_null(v);
    EXPECT(mm_video_load_file("x.mp4", NULL, NULL), MM_ERR_ARG);
    mm_status st = mm_video_load_file("/nonexistent/clip.mp4", NULL, &v);
    ck_assert_int_eq(st, mm_video_files_available() ? MM_ERR_IO : MM_ERR_UNSUPPORTED);
    ck_assert_ptr_null(v);
}

static void m_mm_video_load_memory(void)
{
    mm_video *v = SENTINEL;
    EXPECT(mm_video_load_memory(NULL, 4, NULL, &v), MM_ERR_ARG);
    ck_assert_ptr_null(v);
    EXPECT(mm_video_load_memory("abcd", 4, NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_video_load_memory("abcd", 4, NULL, &v),
           mm_video_files_available() ? MM_ERR_FORMAT : MM_ERR_UNSUPPORTED);
    ck_assert_ptr_null(v);
}

static void m_mm_video_files_available(void)
{
    int r = mm_video_files_available();
    ck_assert(r == 0 || r == 1);
}

static void m_mm_video_n_frames(void)
{
    ck_assert_uint_eq(mm_video_n_frames(NULL), 0);
}

static void m_mm_video_frame(void)
{
    const mm_image *frames[1] = {image};
    mm_video *v;
    ck_assert_ptr_null(mm_video_frame(NULL, 0));
    ck_assert_ok(mm_video_from_frames(frames, NULL, 1, NULL, &v));
    ck_assert_ptr_nonnull(mm_video_frame(v, 0));
    ck_assert_ptr_null(mm_video_frame(v, 1));
    mm_video_free(v);
}

static void m_mm_video_frame_time(void)
{
    ck_assert(mm_video_frame_time(NULL, 0) == 0);
}

static void m_mm_video_free(void)
{
    mm_video_free(NULL);
}

static void m_mm_media_free(void)
{
    mm_media_free(NULL);
}

static void m_mm_media_n_tokens(void)
{
    float x[1600] = {0};
    mm_audio *a;
    ck_assert_ok(mm_audio_from_samples(x, 1600, 1, 16000, &a));
    mm_media *pic, *sound;
    ck_assert_ok(mm_media_from_image(image, &pic));
    ck_assert_ok(mm_media_from_audio(a, &sound));
    size_t n = 7;
    EXPECT(mm_media_n_tokens(NULL, pic, &n), MM_ERR_ARG);
    EXPECT(mm_media_n_tokens(llava, NULL, &n), MM_ERR_ARG);
    EXPECT(mm_media_n_tokens(llava, pic, NULL), MM_ERR_ARG);
    EXPECT(mm_media_n_tokens(llava, sound, &n), MM_ERR_STATE); /* no audio encoder */
    EXPECT(mm_media_n_tokens(ids_model, pic, &n), MM_ERR_STATE); /* no vision encoder */
    ck_assert_uint_eq(n, 7);
    ck_assert_ok(mm_media_n_tokens(llava, pic, &n));
    ck_assert_uint_gt(n, 0);
    mm_media_free(sound);
    mm_media_free(pic);
    mm_audio_free(a);
}

static void m_mm_media_encode(void)
{
    mm_media *pic;
    ck_assert_ok(mm_media_from_image(image, &pic));
    mm_embeddings *e = SENTINEL;
    EXPECT(mm_media_encode(NULL, pic, NULL, &e), MM_ERR_ARG);
    ck_assert_ptr_null(e);
    EXPECT(mm_media_encode(llava, NULL, NULL, &e), MM_ERR_ARG);
    EXPECT(mm_media_encode(llava, pic, NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_media_encode(ids_model, pic, NULL, &e), MM_ERR_STATE);
    ck_assert_ptr_null(e);
    ck_assert_ok(mm_media_encode(llava, pic, NULL, &e));
    size_t n;
    ck_assert_ok(mm_media_n_tokens(llava, pic, &n));
    ck_assert_uint_eq(mm_embeddings_n_tokens(e), n);
    mm_embeddings_free(e);
    mm_media_free(pic);
}

/* ---- vision encoding and CLIP ---- */

static void m_mm_image_encode(void)
{
    mm_embeddings *e = SENTINEL;
    EXPECT(mm_image_encode(NULL, image, NULL, &e), MM_ERR_ARG);
    ck_assert_ptr_null(e);
    EXPECT(mm_image_encode(llava, NULL, NULL, &e), MM_ERR_ARG);
    EXPECT(mm_image_encode(llava, image, NULL, NULL), MM_ERR_ARG);
    e = SENTINEL;
    EXPECT(mm_image_encode(ids_model, image, NULL, &e), MM_ERR_ARG); /* no vision tower */
    ck_assert_ptr_null(e);
    mm_options *o = new_options();
    ck_assert_ok(mm_options_set_string(o, MM_OPT_IMAGE_DETAIL, "ultra"));
    e = SENTINEL;
    EXPECT(mm_image_encode(llava, image, o, &e), MM_ERR_ARG);
    ck_assert_ptr_null(e);
    mm_options_free(o);
    o = new_options();
    ck_assert_ok(mm_options_set_string(o, MM_OPT_MATMUL_PRECISION, "F32 "));
    e = SENTINEL;
    EXPECT(mm_image_encode(llava, image, o, &e), MM_ERR_ARG);
    ck_assert_ptr_null(e);
    mm_options_free(o);
}

static void m_mm_image_token_count(void)
{
    size_t n = 7;
    int views = 7;
    EXPECT(mm_image_token_count(NULL, 64, 64, NULL, &n, &views), MM_ERR_ARG);
    EXPECT(mm_image_token_count(llava, 64, 64, NULL, NULL, &views), MM_ERR_ARG);
    EXPECT(mm_image_token_count(llava, 0, 64, NULL, &n, &views), MM_ERR_ARG);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(views, 0);
    EXPECT(mm_image_token_count(llava, 64, -1, NULL, &n, NULL), MM_ERR_ARG);
    EXPECT(mm_image_token_count(ids_model, 64, 64, NULL, &n, NULL), MM_ERR_ARG);
    mm_options *o = new_options();
    ck_assert_ok(mm_options_set_string(o, MM_OPT_IMAGE_DETAIL, "ultra"));
    EXPECT(mm_image_token_count(llava, 64, 64, o, &n, NULL), MM_ERR_ARG);
    mm_options_free(o);
    /* Any size is counted without overflow. */
    ck_assert_ok(mm_image_token_count(llava, INT_MAX, INT_MAX, NULL, &n, &views));
    ck_assert_uint_gt(n, 0);
}

static void m_mm_image_encode_pixels(void)
{
    float px[3 * 16 * 16] = {0};
    mm_embeddings *e = SENTINEL;
    EXPECT(mm_image_encode_pixels(NULL, px, 16, 16, NULL, &e), MM_ERR_ARG);
    ck_assert_ptr_null(e);
    EXPECT(mm_image_encode_pixels(llava, NULL, 16, 16, NULL, &e), MM_ERR_ARG);
    EXPECT(mm_image_encode_pixels(llava, px, 16, 16, NULL, NULL), MM_ERR_ARG);
    EXPECT(mm_image_encode_pixels(llava, px, 0, 16, NULL, &e), MM_ERR_ARG);
    EXPECT(mm_image_encode_pixels(llava, px, 16, -3, NULL, &e), MM_ERR_ARG);
    EXPECT(mm_image_encode_pixels(llava, px, 7, 16, NULL, &e), MM_ERR_ARG); /* < one patch */
    EXPECT(mm_image_encode_pixels(ids_model, px, 16, 16, NULL, &e), MM_ERR_ARG);
    /* Sizes far beyond the buffer's: refused before a pixel is read. */
    EXPECT(mm_image_encode_pixels(llava, px, 100000, 100000, NULL, &e), MM_ERR_LIMIT);
    EXPECT(mm_image_encode_pixels(llava, px, INT_MAX, INT_MAX, NULL, &e), MM_ERR_LIMIT);
    ck_assert_ptr_null(e);
}

static void m_mm_embeddings_n_tokens(void)
{
    ck_assert_uint_eq(mm_embeddings_n_tokens(NULL), 0);
}

static void m_mm_embeddings_n_embd(void)
{
    ck_assert_uint_eq(mm_embeddings_n_embd(NULL), 0);
}

static void m_mm_embeddings_data(void)
{
    ck_assert_ptr_null(mm_embeddings_data(NULL));
}

static void m_mm_embeddings_free(void)
{
    mm_embeddings_free(NULL);
}

static void m_mm_clip_embedding_size(void)
{
    ck_assert_uint_eq(mm_clip_embedding_size(NULL), 0);
    ck_assert_uint_eq(mm_clip_embedding_size(llava), 0);
    ck_assert_uint_eq(mm_clip_embedding_size(clip), 4);
}

static void m_mm_clip_logit_scale(void)
{
    float f;
    EXPECT(mm_clip_logit_scale(NULL, &f), MM_ERR_ARG);
    EXPECT(mm_clip_logit_scale(clip, NULL), MM_ERR_ARG);
    EXPECT(mm_clip_logit_scale(llava, &f), MM_ERR_ARG);
}

static void m_mm_clip_image_embedding(void)
{
    float out[8];
    EXPECT(mm_clip_image_embedding(NULL, image, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding(clip, NULL, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding(clip, image, NULL, 4), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding(clip, image, out, 3), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding(clip, image, out, 5), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding(clip, image, out, 0), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding(llava, image, out, 4), MM_ERR_ARG);
}

static void m_mm_clip_image_embedding_pixels(void)
{
    float px[3 * 8 * 8] = {0}, out[4];
    EXPECT(mm_clip_image_embedding_pixels(NULL, px, 8, 8, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding_pixels(clip, NULL, 8, 8, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding_pixels(clip, px, 8, 8, NULL, 4), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding_pixels(clip, px, 8, 8, out, 2), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding_pixels(clip, px, 0, 8, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_image_embedding_pixels(clip, px, 3, 3, out, 4), MM_ERR_ARG); /* < a patch */
    EXPECT(mm_clip_image_embedding_pixels(clip, px, INT_MAX, 8, out, 4), MM_ERR_LIMIT);
    EXPECT(mm_clip_image_embedding_pixels(llava, px, 8, 8, out, 4), MM_ERR_ARG);
}

static void m_mm_clip_text_embedding(void)
{
    float out[4];
    EXPECT(mm_clip_text_embedding(NULL, "a", out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding(clip, NULL, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding(clip, "a", NULL, 4), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding(clip, "a", out, 1), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding(clip, "\xff\xfe", out, 4), MM_ERR_FORMAT);
    EXPECT(mm_clip_text_embedding(llava, "a", out, 4), MM_ERR_ARG);
    /* Longer than the context: cut to fit, as documented. */
    ck_assert_ok(mm_clip_text_embedding(clip, "ab ab ab ab ab ab ab ab ab ab ab ab", out, 4));
}

static void m_mm_clip_text_embedding_tokens(void)
{
    const int32_t ids[8] = {8, 0, 1, 9, 0, 0, 0, 9}, bad[2] = {8, 10}, neg[2] = {-1, 9};
    float out[4];
    EXPECT(mm_clip_text_embedding_tokens(NULL, ids, 4, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding_tokens(clip, NULL, 4, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding_tokens(clip, ids, 4, NULL, 4), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding_tokens(clip, ids, 4, out, 8), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding_tokens(clip, ids, 0, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding_tokens(clip, ids, 7, out, 4), MM_ERR_ARG); /* context 6 */
    EXPECT(mm_clip_text_embedding_tokens(clip, ids, SIZE_MAX, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding_tokens(clip, bad, 2, out, 4), MM_ERR_ARG); /* vocabulary 10 */
    EXPECT(mm_clip_text_embedding_tokens(clip, neg, 2, out, 4), MM_ERR_ARG);
    EXPECT(mm_clip_text_embedding_tokens(llava, ids, 4, out, 4), MM_ERR_ARG);
}

static void m_mm_clip_similarity(void)
{
    const float a[2] = {1, 0}, zero[2] = {0, 0};
    ck_assert(mm_clip_similarity(NULL, a, 2) == 0.0f);
    ck_assert(mm_clip_similarity(a, NULL, 2) == 0.0f);
    ck_assert(mm_clip_similarity(a, a, 0) == 0.0f);
    ck_assert(mm_clip_similarity(a, zero, 2) == 0.0f);
}

static void m_mm_clip_classify(void)
{
    const char *labels[3] = {"a", "b", NULL};
    float probs[3];
    EXPECT(mm_clip_classify(NULL, image, labels, 2, probs), MM_ERR_ARG);
    EXPECT(mm_clip_classify(clip, NULL, labels, 2, probs), MM_ERR_ARG);
    EXPECT(mm_clip_classify(clip, image, NULL, 2, probs), MM_ERR_ARG);
    EXPECT(mm_clip_classify(clip, image, labels, 0, probs), MM_ERR_ARG);
    EXPECT(mm_clip_classify(clip, image, labels, 2, NULL), MM_ERR_ARG);
    EXPECT(mm_clip_classify(clip, image, labels, 3, probs), MM_ERR_ARG); /* a NULL label */
    EXPECT(mm_clip_classify(llava, image, labels, 2, probs), MM_ERR_ARG);
}

/* ---- tokenizer ---- */

static void m_mm_tokenize(void)
{
    int32_t ids[4];
    size_t n = 99;
    EXPECT(mm_tokenize(llava, "ab", 2, 0, ids, 4, NULL), MM_ERR_ARG);
    EXPECT(mm_tokenize(NULL, "ab", 2, 0, ids, 4, &n), MM_ERR_ARG);
    ck_assert_uint_eq(n, 0);
    EXPECT(mm_tokenize(ids_model, "ab", 2, 0, ids, 4, &n), MM_ERR_STATE);
    EXPECT(mm_tokenize(llava, NULL, 2, 0, ids, 4, &n), MM_ERR_ARG);
    EXPECT(mm_tokenize(llava, "ab", 2, 0, NULL, 4, &n), MM_ERR_ARG);
    EXPECT(mm_tokenize(llava, "ab", 2, 0x80, ids, 4, &n), MM_ERR_ARG);
    EXPECT(mm_tokenize(llava, "a\xc3", 2, 0, ids, 4, &n), MM_ERR_FORMAT);
    /* Too small a buffer: the size needed comes back, nothing is written past capacity. */
    int32_t small[2] = {-7, -7};
    EXPECT(mm_tokenize(llava, "ab ab ab ab", 11, 0, small, 1, &n), MM_ERR_ARG);
    ck_assert_uint_gt(n, 1);
    ck_assert_int_eq(small[1], -7);
    ck_assert_ok(mm_tokenize(llava, NULL, 0, 0, NULL, 0, &n)); /* empty text, no buffer */
    ck_assert_uint_eq(n, 0);
}

static void m_mm_detokenize(void)
{
    const int32_t ids[3] = {7, 8, 9}, bad[2] = {7, 16}, neg[1] = {-1};
    char text[8] = "zzzzzzz";
    size_t n = 99;
    EXPECT(mm_detokenize(llava, ids, 3, 0, text, 8, NULL), MM_ERR_ARG);
    EXPECT(mm_detokenize(NULL, ids, 3, 0, text, 8, &n), MM_ERR_ARG);
    ck_assert_uint_eq(n, 0);
    EXPECT(mm_detokenize(ids_model, ids, 3, 0, text, 8, &n), MM_ERR_STATE);
    EXPECT(mm_detokenize(llava, NULL, 3, 0, text, 8, &n), MM_ERR_ARG);
    EXPECT(mm_detokenize(llava, ids, 3, 0, NULL, 8, &n), MM_ERR_ARG);
    EXPECT(mm_detokenize(llava, ids, 3, 0x40, text, 8, &n), MM_ERR_ARG);
    EXPECT(mm_detokenize(llava, bad, 2, 0, text, 8, &n), MM_ERR_ARG); /* vocabulary 16 */
    EXPECT(mm_detokenize(llava, neg, 1, 0, text, 8, &n), MM_ERR_ARG);
    /* "abc" and its NUL need 4 bytes. */
    EXPECT(mm_detokenize(llava, ids, 3, 0, text, 3, &n), MM_ERR_ARG);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(text[3], 'z');
    EXPECT(mm_detokenize(llava, ids, 3, 0, NULL, 0, &n), MM_ERR_ARG);
    ck_assert_uint_eq(n, 3);
}

static void m_mm_token_to_piece(void)
{
    char buf[4] = "zzz";
    size_t n = 99;
    EXPECT(mm_token_to_piece(llava, 7, buf, 4, NULL), MM_ERR_ARG);
    EXPECT(mm_token_to_piece(NULL, 7, buf, 4, &n), MM_ERR_ARG);
    ck_assert_uint_eq(n, 0);
    EXPECT(mm_token_to_piece(ids_model, 7, buf, 4, &n), MM_ERR_STATE);
    EXPECT(mm_token_to_piece(llava, -1, buf, 4, &n), MM_ERR_ARG);
    EXPECT(mm_token_to_piece(llava, 16, buf, 4, &n), MM_ERR_ARG);
    EXPECT(mm_token_to_piece(llava, INT32_MIN, buf, 4, &n), MM_ERR_ARG);
    EXPECT(mm_token_to_piece(llava, 7, NULL, 4, &n), MM_ERR_ARG);
    EXPECT(mm_token_to_piece(llava, 12, buf, 1, &n), MM_ERR_ARG); /* " ab" needs 3 */
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(buf[1], 'z');
}

static void m_mm_n_vocab(void)
{
    ck_assert_int_eq(mm_n_vocab(NULL), 0);
    ck_assert_int_eq(mm_n_vocab(ids_model), 0);
}

static void m_mm_token_bos(void)
{
    ck_assert_int_eq(mm_token_bos(NULL), -1);
    ck_assert_int_eq(mm_token_bos(ids_model), -1);
}

static void m_mm_token_eos(void)
{
    ck_assert_int_eq(mm_token_eos(NULL), -1);
    ck_assert_int_eq(mm_token_eos(ids_model), -1);
}

static void m_mm_token_is_eog(void)
{
    ck_assert_int_eq(mm_token_is_eog(NULL, 2), 0);
    ck_assert_int_eq(mm_token_is_eog(llava, -1), 0);
    ck_assert_int_eq(mm_token_is_eog(llava, 16), 0);
    ck_assert_int_eq(mm_token_is_eog(llava, INT32_MAX), 0);
    ck_assert_int_eq(mm_token_is_eog(ids_model, 0), 0);
}

/* ---- sessions ---- */

static void m_mm_session_create(void)
{
    mm_session *s = SENTINEL;
    EXPECT(mm_session_create(NULL, NULL, &s), MM_ERR_ARG);
    ck_assert_ptr_null(s);
    EXPECT(mm_session_create(llava, NULL, NULL), MM_ERR_ARG);
    s = SENTINEL;
    EXPECT(mm_session_create(clip, NULL, &s), MM_ERR_STATE); /* no language model */
    ck_assert_ptr_null(s);
    mm_options *o = new_options();
    ck_assert_ok(mm_options_set_string(o, MM_OPT_CHAT_TEMPLATE, "klingon"));
    s = SENTINEL;
    EXPECT(mm_session_create(llava, o, &s), MM_ERR_ARG);
    ck_assert_ptr_null(s);
    mm_options_free(o);
    o = new_options();
    ck_assert_ok(mm_options_set_string(o, MM_OPT_IMAGE_DETAIL, "medium"));
    s = SENTINEL;
    EXPECT(mm_session_create(llava, o, &s), MM_ERR_ARG);
    ck_assert_ptr_null(s);
    mm_options_free(o);
    o = new_options();
    ck_assert_ok(mm_options_set_string(o, MM_OPT_MATMUL_PRECISION, "fp8"));
    s = SENTINEL;
    EXPECT(mm_session_create(llava, o, &s), MM_ERR_ARG);
    ck_assert_ptr_null(s);
    ck_assert_ok(mm_options_set_string(o, MM_OPT_MATMUL_PRECISION, "bf16"));
    ck_assert_ok(mm_session_create(llava, o, &s)); /* f32 where the CPU has no bf16 products */
    mm_session_free(s);
    mm_options_free(o);
}

static void m_mm_session_free(void)
{
    mm_session_free(NULL);
}

static void m_mm_session_set_options(void)
{
    mm_options *o = new_options();
    EXPECT(mm_session_set_options(NULL, o), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    ck_assert_ok(mm_session_set_options(s, NULL)); /* back to the defaults */
    mm_session_free(s);
    mm_options_free(o);
}

/* Input that cannot fit leaves the session as it was. */
static void check_unchanged(mm_session *s, int n_past)
{
    ck_assert_int_eq(mm_session_n_past(s), n_past);
}

static void m_mm_session_add_text(void)
{
    EXPECT(mm_session_add_text(NULL, "a", 1, 0), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_text(s, NULL, 3, 0), MM_ERR_ARG);
    EXPECT(mm_session_add_text(s, "a", 1, MM_TOKENIZE_ADD_SPECIAL), MM_ERR_ARG);
    EXPECT(mm_session_add_text(s, "a", 1, 0x100), MM_ERR_ARG);
    EXPECT(mm_session_add_text(s, "a\x80", 2, 0), MM_ERR_FORMAT);
    char long_text[200];
    memset(long_text, 'c', sizeof long_text); /* 200 tokens into 64 positions */
    EXPECT(mm_session_add_text(s, long_text, sizeof long_text, 0), MM_ERR_CTX_FULL);
    check_unchanged(s, 0);
    mm_session_free(s);
    s = new_session(ids_model);
    EXPECT(mm_session_add_text(s, "a", 1, 0), MM_ERR_STATE);
    mm_session_free(s);
}

static void m_mm_session_add_message(void)
{
    EXPECT(mm_session_add_message(NULL, "user", "a", 1), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_message(s, NULL, "a", 1), MM_ERR_ARG);
    EXPECT(mm_session_add_message(s, "robot", "a", 1), MM_ERR_ARG);
    EXPECT(mm_session_add_message(s, "", "a", 1), MM_ERR_ARG);
    EXPECT(mm_session_add_message(s, "user", NULL, 1), MM_ERR_ARG);
    EXPECT(mm_session_add_message(s, "user", "\xed\xa0\x80", 3), MM_ERR_FORMAT); /* surrogate */
    check_unchanged(s, 0);
    mm_session_free(s);
    s = new_session(ids_model);
    EXPECT(mm_session_add_message(s, "user", "a", 1), MM_ERR_STATE);
    mm_session_free(s);
}

static void m_mm_session_add_message_images(void)
{
    const mm_image *images[2] = {image, NULL};
    EXPECT(mm_session_add_message_images(NULL, "user", "a", 1, images, 1), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_message_images(s, "user", "a", 1, NULL, 1), MM_ERR_ARG);
    EXPECT(mm_session_add_message_images(s, "user", "a", 1, images, 2), MM_ERR_ARG);
    EXPECT(mm_session_add_message_images(s, "robot", "a", 1, images, 1), MM_ERR_ARG);
    /* Two markers for one image. */
    EXPECT(mm_session_add_message_images(s, "user", "<image><image>", 14, images, 1),
           MM_ERR_ARG);
    check_unchanged(s, 0);
    mm_session_free(s);
    s = new_session(ids_model);
    EXPECT(mm_session_add_message_images(s, "user", "a", 1, images, 1), MM_ERR_STATE);
    mm_session_free(s);
}

static void m_mm_session_add_message_media(void)
{
    float x[16000] = {0};
    mm_audio *clip16k;
    ck_assert_ok(mm_audio_from_samples(x, 16000, 1, 16000, &clip16k));
    mm_media *pic, *sound;
    ck_assert_ok(mm_media_from_image(image, &pic));
    ck_assert_ok(mm_media_from_audio(clip16k, &sound));
    const mm_media *media[2] = {pic, NULL}, *audio_only[1] = {sound};
    EXPECT(mm_session_add_message_media(NULL, "user", "a", 1, media, 1), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_message_media(s, "user", "a", 1, NULL, 1), MM_ERR_ARG);
    EXPECT(mm_session_add_message_media(s, "user", "a", 1, media, 2), MM_ERR_ARG);
    EXPECT(mm_session_add_message_media(s, "robot", "a", 1, media, 1), MM_ERR_ARG);
    EXPECT(mm_session_add_message_media(s, "user", "<audio><image>", 14, media, 1), MM_ERR_ARG);
    /* The llava pair has no audio encoder. */
    EXPECT(mm_session_add_message_media(s, "user", "a", 1, audio_only, 1), MM_ERR_STATE);
    check_unchanged(s, 0);
    mm_session_free(s);
    mm_media_free(sound);
    mm_media_free(pic);
    mm_audio_free(clip16k);
}

static void m_mm_session_add_message_embeddings(void)
{
    mm_embeddings *good, *narrow;
    ck_assert_ok(mm_image_encode(llava, image, NULL, &good));
    ck_assert_ok(mm_image_encode(clip, image, NULL, &narrow)); /* rows of 8, not 32 */
    const mm_embeddings *images[2] = {good, NULL}, *wrong[1] = {narrow};
    EXPECT(mm_session_add_message_embeddings(NULL, "user", "a", 1, images, 1), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_message_embeddings(s, "user", "a", 1, NULL, 1), MM_ERR_ARG);
    EXPECT(mm_session_add_message_embeddings(s, "user", "a", 1, images, 2), MM_ERR_ARG);
    EXPECT(mm_session_add_message_embeddings(s, "user", "a", 1, wrong, 1), MM_ERR_ARG);
    EXPECT(mm_session_add_message_embeddings(s, NULL, "a", 1, images, 1), MM_ERR_ARG);
    check_unchanged(s, 0);
    mm_session_free(s);
    mm_embeddings_free(good);
    mm_embeddings_free(narrow);
}

static void m_mm_session_add_messages_json(void)
{
    /* grey1.png (13 x 9) as a data URL. */
    static const char image[] = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAA0AAAAJAQAAAADB"
                                "AZvHAAAAJElEQVR42mP4J8Go+Zyp7AGzuyuLOgODrATjWmemRy+YH54AAG2bCNjs"
                                "QjP8AAAAAElFTkSuQmCC";
    char with_image[512];
    snprintf(with_image, sizeof with_image, "[{\"role\":\"user\",\"content\":[{\"type\":"
             "\"image_url\",\"image_url\":{\"url\":\"%s\"}},{\"type\":\"text\","
             "\"text\":\"a b\"}]}]", image);
    EXPECT(mm_session_add_messages_json(NULL, "[]", 2, NULL), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_messages_json(s, NULL, 5, NULL), MM_ERR_ARG);
    EXPECT(mm_session_add_messages_json(s, "", 0, NULL), MM_ERR_FORMAT);
    EXPECT(mm_session_add_messages_json(s, NULL, 0, NULL), MM_ERR_FORMAT);
    EXPECT(mm_session_add_messages_json(s, "[{\"role\":\"user\"", 16, NULL), MM_ERR_FORMAT);
    /* A length shorter than the text: only that much is read. */
    EXPECT(mm_session_add_messages_json(s, with_image, 40, NULL), MM_ERR_FORMAT);
    const char *robot = "[{\"role\":\"robot\",\"content\":\"a\"}]";
    EXPECT(mm_session_add_messages_json(s, robot, strlen(robot), NULL), MM_ERR_UNSUPPORTED);
    const char *remote = "[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                         "\"image_url\":{\"url\":\"https://example.com/a.png\"}}]}]";
    EXPECT(mm_session_add_messages_json(s, remote, strlen(remote), NULL), MM_ERR_UNSUPPORTED);
    const char *marker = "[{\"role\":\"user\",\"content\":\"a <image> b\"}]";
    EXPECT(mm_session_add_messages_json(s, marker, strlen(marker), NULL), MM_ERR_FORMAT);
    mm_options *o = new_options();
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_SIDE, 12)); /* the image is 13 wide */
    EXPECT(mm_session_add_messages_json(s, with_image, strlen(with_image), o), MM_ERR_LIMIT);
    check_unchanged(s, 0);
    ck_assert_ok(mm_session_add_messages_json(s, with_image, strlen(with_image), NULL));
    mm_session_free(s);
    s = new_session(ids_model);
    EXPECT(mm_session_add_messages_json(s, with_image, strlen(with_image), NULL), MM_ERR_STATE);
    mm_session_free(s);
    mm_options_free(o);
}

static void m_mm_session_add_tokens(void)
{
    const int32_t ids[4] = {1, 7, 8, 9}, bad[2] = {1, 50}, neg[2] = {-1, 3};
    EXPECT(mm_session_add_tokens(NULL, ids, 4), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_tokens(s, NULL, 4), MM_ERR_ARG);
    EXPECT(mm_session_add_tokens(s, bad, 2), MM_ERR_ARG); /* vocabulary (rows) 50 */
    EXPECT(mm_session_add_tokens(s, neg, 2), MM_ERR_ARG);
    /* More ids than the context holds: refused before they are read. */
    EXPECT(mm_session_add_tokens(s, ids, 1000), MM_ERR_CTX_FULL);
    EXPECT(mm_session_add_tokens(s, ids, SIZE_MAX), MM_ERR_CTX_FULL);
    check_unchanged(s, 0);
    mm_session_free(s);
}

static void m_mm_session_add_embeddings(void)
{
    float embd[2 * 32] = {0};
    EXPECT(mm_session_add_embeddings(NULL, embd, 2, 32), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_embeddings(s, NULL, 2, 32), MM_ERR_ARG);
    EXPECT(mm_session_add_embeddings(s, embd, 2, 31), MM_ERR_ARG);
    EXPECT(mm_session_add_embeddings(s, embd, 2, 0), MM_ERR_ARG);
    EXPECT(mm_session_add_embeddings(s, embd, 1000, 32), MM_ERR_CTX_FULL);
    EXPECT(mm_session_add_embeddings(s, embd, SIZE_MAX, 32), MM_ERR_CTX_FULL);
    EXPECT(mm_session_add_embeddings(s, embd, 2, SIZE_MAX), MM_ERR_ARG);
    check_unchanged(s, 0);
    mm_session_free(s);
}

static void m_mm_session_add_stop_string(void)
{
    EXPECT(mm_session_add_stop_string(NULL, "x"), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_stop_string(s, NULL), MM_ERR_ARG);
    EXPECT(mm_session_add_stop_string(s, ""), MM_ERR_ARG);
    mm_session_free(s);
}

static void m_mm_session_clear_stop_strings(void)
{
    mm_session_clear_stop_strings(NULL);
}

static void m_mm_session_generate(void)
{
    EXPECT(mm_session_generate(NULL, NULL, NULL, NULL), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_generate(s, NULL, NULL, NULL), MM_ERR_STATE); /* nothing added */
    ck_assert_int_eq(mm_session_stop_reason(s), MM_STOP_NONE);
    mm_session_free(s);
}

static void m_mm_session_next(void)
{
    int32_t token = 5;
    const char *piece = SENTINEL;
    size_t len = 5;
    EXPECT(mm_session_next(NULL, &token, &piece, &len), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_next(s, NULL, &piece, &len), MM_ERR_ARG);
    EXPECT(mm_session_next(s, &token, NULL, &len), MM_ERR_ARG);
    EXPECT(mm_session_next(s, &token, &piece, NULL), MM_ERR_ARG);
    EXPECT(mm_session_next(s, &token, &piece, &len), MM_ERR_STATE);
    mm_session_free(s);
}

static void m_mm_session_stop_reason(void)
{
    ck_assert_int_eq(mm_session_stop_reason(NULL), MM_STOP_NONE);
}

static void m_mm_session_logits(void)
{
    const float *logits = SENTINEL;
    size_t n = 7;
    EXPECT(mm_session_logits(NULL, &logits, &n), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_logits(s, NULL, &n), MM_ERR_ARG);
    EXPECT(mm_session_logits(s, &logits, NULL), MM_ERR_ARG);
    EXPECT(mm_session_logits(s, &logits, &n), MM_ERR_STATE); /* nothing evaluated */
    mm_session_free(s);
}

static void m_mm_session_n_ctx(void)
{
    ck_assert_int_eq(mm_session_n_ctx(NULL), 0);
}

static void m_mm_session_n_past(void)
{
    ck_assert_int_eq(mm_session_n_past(NULL), 0);
}

static void m_mm_session_chat_template(void)
{
    ck_assert_ptr_null(mm_session_chat_template(NULL));
}

static void m_mm_session_cancel(void)
{
    mm_session_cancel(NULL);
    /* A cancel while nothing runs is dropped when the next call begins. */
    mm_session *s = new_session(llava);
    mm_session_cancel(s);
    const int32_t ids[2] = {1, 7};
    ck_assert_ok(mm_session_add_tokens(s, ids, 2));
    mm_session_free(s);
}

static void m_mm_session_reset(void)
{
    mm_session_reset(NULL);
    mm_session *s = new_session(llava);
    mm_session_reset(s); /* nothing to forget */
    ck_assert_int_eq(mm_session_n_past(s), 0);
    mm_session_free(s);
}

/* ---- chat requests and responses ---- */

static mm_chat_request *new_request(const char *json)
{
    mm_chat_request *rq;
    ck_assert_ok(mm_chat_request_parse(json, strlen(json), &rq));
    return rq;
}

static void m_mm_chat_request_parse(void)
{
    mm_chat_request *rq = SENTINEL;
    EXPECT(mm_chat_request_parse("[]", 2, NULL), MM_ERR_ARG);
    EXPECT(mm_chat_request_parse(NULL, 2, &rq), MM_ERR_ARG);
    ck_assert_ptr_null(rq);
    rq = SENTINEL;
    EXPECT(mm_chat_request_parse(NULL, 0, &rq), MM_ERR_FORMAT);
    ck_assert_ptr_null(rq);
    const char *bad = "{\"messages\":[],\"max_tokens\":-1}";
    rq = SENTINEL;
    EXPECT(mm_chat_request_parse(bad, strlen(bad), &rq), MM_ERR_FORMAT);
    ck_assert_ptr_null(rq);
    const char *two = "{\"messages\":[],\"n\":2}";
    EXPECT(mm_chat_request_parse(two, strlen(two), &rq), MM_ERR_UNSUPPORTED);
}

static void m_mm_chat_request_free(void)
{
    mm_chat_request_free(NULL);
}

static void m_mm_chat_request_api(void)
{
    ck_assert_int_eq(mm_chat_request_api(NULL), 0);
}

static void m_mm_chat_request_set_api(void)
{
    EXPECT(mm_chat_request_set_api(NULL, MM_CHAT_API_OPENAI), MM_ERR_ARG);
    mm_chat_request *rq = new_request("[]");
    EXPECT(mm_chat_request_set_api(rq, (mm_chat_api)0), MM_ERR_ARG);
    EXPECT(mm_chat_request_set_api(rq, (mm_chat_api)3), MM_ERR_ARG);
    ck_assert_int_eq(mm_chat_request_api(rq), MM_CHAT_API_OPENAI);
    mm_chat_request_free(rq);
}

static void m_mm_chat_request_options(void)
{
    ck_assert_ptr_null(mm_chat_request_options(NULL));
}

static void m_mm_chat_request_n_stop(void)
{
    ck_assert_uint_eq(mm_chat_request_n_stop(NULL), 0);
}

static void m_mm_chat_request_stop(void)
{
    ck_assert_ptr_null(mm_chat_request_stop(NULL, 0));
    mm_chat_request *rq = new_request("{\"messages\":[],\"stop\":\"x\"}");
    ck_assert_ptr_null(mm_chat_request_stop(rq, 1));
    ck_assert_ptr_null(mm_chat_request_stop(rq, SIZE_MAX));
    mm_chat_request_free(rq);
}

static void m_mm_chat_request_model(void)
{
    ck_assert_ptr_null(mm_chat_request_model(NULL));
}

static void m_mm_chat_request_stream(void)
{
    ck_assert_int_eq(mm_chat_request_stream(NULL), 0);
}

static void m_mm_session_add_chat_request(void)
{
    mm_chat_request *rq = new_request("[{\"role\":\"user\",\"content\":\"a\"}]");
    EXPECT(mm_session_add_chat_request(NULL, rq, NULL), MM_ERR_ARG);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_add_chat_request(s, NULL, NULL), MM_ERR_ARG);
    check_unchanged(s, 0);
    mm_session_free(s);
    mm_chat_request_free(rq);
}

static void m_mm_session_generate_response(void)
{
    mm_chat_request *rq = new_request("[{\"role\":\"user\",\"content\":\"a\"}]");
    const char *response = SENTINEL;
    size_t len = 5;
    EXPECT(mm_session_generate_response(NULL, rq, NULL, NULL, NULL, &response, &len),
           MM_ERR_ARG);
    ck_assert_ptr_null(response);
    ck_assert_uint_eq(len, 0);
    mm_session *s = new_session(llava);
    EXPECT(mm_session_generate_response(s, NULL, NULL, NULL, NULL, &response, NULL), MM_ERR_ARG);
    EXPECT(mm_session_generate_response(s, rq, NULL, NULL, NULL, NULL, NULL), MM_ERR_ARG);
    response = SENTINEL;
    EXPECT(mm_session_generate_response(s, rq, NULL, NULL, NULL, &response, NULL),
           MM_ERR_STATE); /* nothing added */
    ck_assert_ptr_null(response);
    mm_session_free(s);
    mm_chat_request_free(rq);
}

/* ---- every exported symbol has a case ---- */

#define CASE(name) {#name, m_##name}
static const struct {
    const char *symbol;
    void (*run)(void);
} cases[] = {
    CASE(mm_abi_version), CASE(mm_version_number), CASE(mm_version_string),
    CASE(mm_status_str), CASE(mm_last_error), CASE(mm_set_log),
    CASE(mm_options_create), CASE(mm_options_copy), CASE(mm_options_free),
    CASE(mm_options_set_int), CASE(mm_options_set_float), CASE(mm_options_set_string),
    CASE(mm_options_unset), CASE(mm_options_get_int), CASE(mm_options_get_float),
    CASE(mm_options_get_string), CASE(mm_option_name), CASE(mm_option_type),
    CASE(mm_options_set_progress),
    CASE(mm_model_load), CASE(mm_model_free), CASE(mm_model_family), CASE(mm_model_meta_count),
    CASE(mm_model_meta_key), CASE(mm_model_meta_value), CASE(mm_model_tensor_count),
    CASE(mm_model_tensor_info), CASE(mm_model_memory),
    CASE(mm_image_load_file), CASE(mm_image_load_memory), CASE(mm_image_from_pixels),
    CASE(mm_image_width), CASE(mm_image_height), CASE(mm_image_pixels), CASE(mm_image_free),
    CASE(mm_points_load_file), CASE(mm_points_load_memory), CASE(mm_points_from_arrays),
    CASE(mm_points_count), CASE(mm_points_xyz), CASE(mm_points_rgb), CASE(mm_points_normals),
    CASE(mm_points_free),
    CASE(mm_audio_load_file), CASE(mm_audio_load_memory), CASE(mm_audio_from_samples),
    CASE(mm_audio_sample_rate), CASE(mm_audio_n_samples), CASE(mm_audio_samples),
    CASE(mm_audio_free), CASE(mm_audio_resampling_available),
    CASE(mm_media_from_image), CASE(mm_media_from_audio), CASE(mm_media_from_video),
    CASE(mm_media_free), CASE(mm_video_from_frames), CASE(mm_video_load_file), CASE(mm_video_load_memory),
    CASE(mm_video_files_available), CASE(mm_video_n_frames), CASE(mm_video_frame),
    CASE(mm_video_frame_time), CASE(mm_video_free),
    CASE(mm_media_n_tokens), CASE(mm_media_encode),
    CASE(mm_image_encode), CASE(mm_image_token_count), CASE(mm_image_encode_pixels),
    CASE(mm_embeddings_n_tokens),
    CASE(mm_embeddings_n_embd), CASE(mm_embeddings_data), CASE(mm_embeddings_free),
    CASE(mm_clip_embedding_size), CASE(mm_clip_logit_scale), CASE(mm_clip_image_embedding),
    CASE(mm_clip_image_embedding_pixels), CASE(mm_clip_text_embedding),
    CASE(mm_clip_text_embedding_tokens), CASE(mm_clip_similarity), CASE(mm_clip_classify),
    CASE(mm_tokenize), CASE(mm_detokenize), CASE(mm_token_to_piece), CASE(mm_n_vocab),
    CASE(mm_token_bos), CASE(mm_token_eos), CASE(mm_token_is_eog),
    CASE(mm_session_create), CASE(mm_session_free), CASE(mm_session_set_options),
    CASE(mm_session_add_text), CASE(mm_session_add_message), CASE(mm_session_add_message_images),
    CASE(mm_session_add_message_embeddings), CASE(mm_session_add_message_media),
    CASE(mm_session_add_messages_json),
    CASE(mm_session_add_tokens),
    CASE(mm_session_add_embeddings), CASE(mm_session_add_stop_string),
    CASE(mm_session_clear_stop_strings), CASE(mm_session_generate), CASE(mm_session_next),
    CASE(mm_session_stop_reason), CASE(mm_session_logits), CASE(mm_session_n_ctx),
    CASE(mm_session_n_past), CASE(mm_session_chat_template), CASE(mm_session_cancel),
    CASE(mm_session_reset),
    CASE(mm_chat_request_parse), CASE(mm_chat_request_free), CASE(mm_chat_request_api),
    CASE(mm_chat_request_set_api), CASE(mm_chat_request_options), CASE(mm_chat_request_n_stop),
    CASE(mm_chat_request_stop), CASE(mm_chat_request_model), CASE(mm_chat_request_stream),
    CASE(mm_session_add_chat_request), CASE(mm_session_generate_response),
};
#define N_CASES (sizeof cases / sizeof cases[0])

START_TEST(every_exported_symbol_has_a_case)
{
    FILE *f = fopen("tests/abi/libmm.symbols", "r");
    ck_assert_msg(f != NULL, "cannot open tests/abi/libmm.symbols");
    char line[256];
    size_t listed = 0;
    int missing = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        listed++;
        size_t i = 0;
        while (i < N_CASES && strcmp(cases[i].symbol, line) != 0)
            i++;
        if (i == N_CASES) {
            fprintf(stderr, "test_misuse: no misuse case for exported %s\n", line);
            missing++;
        }
    }
    fclose(f);
    ck_assert_msg(missing == 0, "%d exported symbols have no misuse case", missing);
    /* And no case for a symbol that is gone. */
    ck_assert_uint_eq(listed, N_CASES);
}
END_TEST

START_TEST(misuse)
{
    cases[_i].run();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("misuse");
    TCase *tc = tcase_create("misuse");
    tcase_add_unchecked_fixture(tc, load_models, free_models);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, every_exported_symbol_has_a_case);
    tcase_add_loop_test(tc, misuse, 0, (int)N_CASES);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
