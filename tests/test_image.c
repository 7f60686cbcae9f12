/* Image decoding (lib/media/image.c) and preprocessing (lib/media/preprocess.c) against PIL and HF.
 *
 * References: tests/vectors/hf/preprocess (PIL + CLIPImageProcessor, HF transformers 4.45)
 * and tests/data/images/reference.safetensors, written by tests/data/gen_images.py from PIL and
 * from a NumPy restatement of HF's processors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "gguf.h"
#include "image.h"
#include "mm.h"
#include "preprocess.h"
#include "safetensors.h"
#include "testutil.h"

#define DATA_DIR "tests/data/images/"

static st_file refs;   /* tests/data/images/reference.safetensors */
static st_file shared; /* tests/vectors/hf/preprocess/io.safetensors */

static void load_refs(void)
{
    ck_assert_msg(st_load(&refs, DATA_DIR "reference.safetensors") == 0, "%s", refs.error);
    ck_assert_msg(st_load(&shared, test_vectors_path("hf/preprocess/io.safetensors")) == 0,
                  "%s", shared.error);
}

static void free_refs(void)
{
    st_free(&refs);
    st_free(&shared);
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(n > 0 ? (size_t)n : 1);
    ck_assert_uint_eq(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return data;
}

/* The image equals the (h, w, 3) uint8 reference tensor `name` exactly. */
static void assert_pixels(const mm_image *image, st_file *file, const char *name)
{
    int64_t shape[ST_MAX_DIMS];
    int ndim;
    size_t n;
    st_dtype dtype;
    unsigned char *ref = st_read_raw(file, name, &dtype, shape, &ndim, &n);
    ck_assert_msg(ref != NULL, "%s", file->error);
    ck_assert_int_eq(dtype, ST_U8);
    ck_assert_int_eq(ndim, 3);
    ck_assert_int_eq(shape[2], 3);
    ck_assert_msg(mm_image_height(image) == shape[0] && mm_image_width(image) == shape[1],
                  "%s: decoded %dx%d, reference %lldx%lld", name, mm_image_width(image),
                  mm_image_height(image), (long long)shape[1], (long long)shape[0]);
    const uint8_t *px = mm_image_pixels(image);
    size_t differ = 0, first = 0;
    int worst = 0;
    for (size_t i = 0; i < n; i++)
        if (px[i] != ref[i]) {
            if (!differ++)
                first = i;
            int d = abs((int)px[i] - (int)ref[i]);
            worst = d > worst ? d : worst;
        }
    free(ref);
    ck_assert_msg(differ == 0, "%s: %zu of %zu samples differ (first at %zu, max |diff| %d)", name,
                  differ, n, first, worst);
}

/* ---- decoding ---- */

START_TEST(decodes_shared_vectors_like_pil)
{
    /* Exact: same libjpeg-turbo settings as PIL (islow IDCT, fancy upsampling). */
    static const char *files[] = {"rgb_61x47.png", "rgba_40x64.png", "q90_80x50.jpg"};
    load_refs();
    for (size_t i = 0; i < 3; i++) {
        char path[256], name[64];
        snprintf(path, sizeof path, "hf/preprocess/%s", files[i]);
        snprintf(name, sizeof name, "%.*s.rgb", (int)(strchr(files[i], '.') - files[i]), files[i]);
        mm_image *image;
        ck_assert_ok(mm_image_load_file(test_vectors_path(path), NULL, &image));
        assert_pixels(image, &shared, name);
        mm_image_free(image);

        size_t size;
        unsigned char *data = read_file(test_vectors_path(path), &size);
        ck_assert_ok(mm_image_load_memory(data, size, NULL, &image));
        assert_pixels(image, &shared, name);
        mm_image_free(image);
        free(data);
    }
    /* RGBA: alpha dropped, colour kept: equals the decoded RGBA's first three channels. */
    int64_t shape[ST_MAX_DIMS];
    unsigned char *rgba = st_read_raw(&shared, "rgba_40x64.decoded", NULL, shape, NULL, NULL);
    mm_image *image;
    ck_assert_ok(mm_image_load_file(test_vectors_path("hf/preprocess/rgba_40x64.png"),
                                    NULL, &image));
    for (int64_t p = 0; p < shape[0] * shape[1]; p++)
        for (int c = 0; c < 3; c++)
            ck_assert_int_eq(mm_image_pixels(image)[p * 3 + c], rgba[p * 4 + c]);
    mm_image_free(image);
    free(rgba);
    free_refs();
}
END_TEST

static const char *generated[] = {
    "grey1.png", "grey2_interlaced.png", "grey4.png", "grey8.png", "grey8_trns.png",
    "grey16.png", "greyalpha8.png", "greyalpha16_interlaced.png", "rgb8.png",
    "rgb8_interlaced.png", "rgb16.png", "rgba8.png", "rgba16_interlaced.png", "palette1.png",
    "palette2_interlaced.png", "palette4.png", "palette8_trns.png", "resize_src.png",
    "baseline444.jpg", "baseline422.jpg", "progressive420.jpg", "grey.jpg",
    "grey_progressive.jpg", "cmyk_adobe.jpg", "exif_orient2.jpg", "exif_orient3.jpg",
    "exif_orient4.jpg", "exif_orient5.jpg", "exif_orient6.jpg", "exif_orient7.jpg",
    "exif_orient8.jpg", "exif_be_orient6.jpg",
};
#define N_GENERATED (sizeof generated / sizeof generated[0])

START_TEST(decodes_every_png_and_jpeg_kind_like_pil)
{
    load_refs();
    const char *name = generated[_i];
    char path[256], ref[128];
    snprintf(path, sizeof path, DATA_DIR "%s", name);
    snprintf(ref, sizeof ref, "%s.rgb", name);
    mm_image *image;
    ck_assert_ok(mm_image_load_file(path, NULL, &image));
    assert_pixels(image, &refs, ref);
    mm_image_free(image);
    size_t size;
    unsigned char *data = read_file(path, &size);
    ck_assert_ok(mm_image_load_memory(data, size, NULL, &image));
    assert_pixels(image, &refs, ref);
    mm_image_free(image);
    free(data);
    free_refs();
}
END_TEST

START_TEST(copies_caller_pixels)
{
    /* 2x2 image, stride 16 bytes with junk in the padding. */
    uint8_t rgb[32], rgba[32], bgr[32];
    memset(rgb, 0xee, sizeof rgb);
    memset(rgba, 0xee, sizeof rgba);
    memset(bgr, 0xee, sizeof bgr);
    const uint8_t want[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++) {
            const uint8_t *p = want + (y * 2 + x) * 3;
            memcpy(rgb + y * 16 + x * 3, p, 3);
            uint8_t a[4] = {p[0], p[1], p[2], (uint8_t)(200 + x)};
            memcpy(rgba + y * 16 + x * 4, a, 4);
            uint8_t b[3] = {p[2], p[1], p[0]};
            memcpy(bgr + y * 16 + x * 3, b, 3);
        }
    const struct { const uint8_t *src; mm_pixel_format format; } cases[] = {
        {rgb, MM_PIXEL_RGB8}, {rgba, MM_PIXEL_RGBA8}, {bgr, MM_PIXEL_BGR8}};
    for (int i = 0; i < 3; i++) {
        uint8_t copy[32];
        memcpy(copy, cases[i].src, 32);
        mm_image *image;
        ck_assert_ok(mm_image_from_pixels(copy, 2, 2, 16, cases[i].format, &image));
        memset(copy, 0, sizeof copy); /* the image holds its own copy */
        ck_assert_int_eq(mm_image_width(image), 2);
        ck_assert_int_eq(mm_image_height(image), 2);
        ck_assert_mem_eq(mm_image_pixels(image), want, 12);
        mm_image_free(image);
    }
    /* Packed rows (stride = width * bpp) and the smallest image. */
    mm_image *image;
    ck_assert_ok(mm_image_from_pixels(want, 4, 1, 12, MM_PIXEL_RGB8, &image));
    ck_assert_mem_eq(mm_image_pixels(image), want, 12);
    mm_image_free(image);
    ck_assert_ok(mm_image_from_pixels(want, 1, 1, 3, MM_PIXEL_BGR8, &image));
    ck_assert_int_eq(mm_image_pixels(image)[0], 3);
    ck_assert_int_eq(mm_image_pixels(image)[2], 1);
    mm_image_free(image);
}
END_TEST

START_TEST(rejects_bad_arguments)
{
    uint8_t px[12] = {0};
    mm_image *image = (mm_image *)px; /* must be reset to NULL on failure */
    ck_assert_status(mm_image_load_file(NULL, NULL, &image), MM_ERR_ARG);
    ck_assert_ptr_null(image);
    ck_assert_status(mm_image_load_file(DATA_DIR "rgb8.png", NULL, NULL), MM_ERR_ARG);
    image = (mm_image *)px;
    ck_assert_status(mm_image_load_memory(NULL, 10, NULL, &image), MM_ERR_ARG);
    ck_assert_ptr_null(image);
    ck_assert_status(mm_image_load_memory(px, sizeof px, NULL, NULL), MM_ERR_ARG);
    image = (mm_image *)px;
    ck_assert_status(mm_image_from_pixels(NULL, 1, 1, 3, MM_PIXEL_RGB8, &image), MM_ERR_ARG);
    ck_assert_ptr_null(image);
    ck_assert_status(mm_image_from_pixels(px, 1, 1, 3, MM_PIXEL_RGB8, NULL), MM_ERR_ARG);
    ck_assert_status(mm_image_from_pixels(px, 0, 1, 3, MM_PIXEL_RGB8, &image), MM_ERR_ARG);
    ck_assert_status(mm_image_from_pixels(px, 1, -1, 3, MM_PIXEL_RGB8, &image), MM_ERR_ARG);
    ck_assert_status(mm_image_from_pixels(px, 2, 1, 5, MM_PIXEL_RGB8, &image), MM_ERR_ARG);
    ck_assert_status(mm_image_from_pixels(px, 2, 1, 7, MM_PIXEL_RGBA8, &image), MM_ERR_ARG);
    ck_assert_status(mm_image_from_pixels(px, 1, 1, 3, (mm_pixel_format)0, &image), MM_ERR_ARG);
    ck_assert_status(mm_image_from_pixels(px, 1, 1, 3, (mm_pixel_format)4, &image), MM_ERR_ARG);
    ck_assert_ptr_null(strstr(mm_last_error(), "NULL"));
    ck_assert_int_eq(mm_image_width(NULL), 0);
    ck_assert_int_eq(mm_image_height(NULL), 0);
    ck_assert_ptr_null(mm_image_pixels(NULL));
    mm_image_free(NULL);
}
END_TEST

START_TEST(reports_unreadable_and_unknown_input)
{
    mm_image *image;
    ck_assert_status(mm_image_load_file(DATA_DIR "no-such-file.png", NULL, &image), MM_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "no-such-file.png"));
    ck_assert_status(mm_image_load_file(DATA_DIR, NULL, &image), MM_ERR_IO); /* a directory */
    ck_assert_status(mm_image_load_memory("", 0, NULL, &image), MM_ERR_FORMAT);
    ck_assert_status(mm_image_load_memory("GIF89a\1\0\1\0", 10, NULL, &image), MM_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "not a PNG or JPEG"));
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "47 49 46 38")); /* "GIF8" */
    ck_assert_status(mm_image_load_file(DATA_DIR "gen_images_missing.jpg", NULL, &image),
                     MM_ERR_IO);
    ck_assert_ptr_null(image);
}
END_TEST

/* Allocations a refused file may still cost: libpng's read and info structs, which come from
 * the library's allocator too. */
#define HEADER_ALLOCATIONS 2

/* Load with a fresh allocation count; returns how many allocations the call made. */
static long count_allocations(mm_status expected, const char *path, const mm_options *options)
{
    mm_image *image;
    mmi_alloc_fail_at(0);
    ck_assert_status(mm_image_load_file(path, options, &image), expected);
    long n = mmi_alloc_fail_at(0);
    mm_image_free(image);
    return n;
}

START_TEST(refuses_huge_declared_sizes_before_allocating)
{
    /* Headers declaring 20000x8, 9000x9000 (81M pixels > 64 Mi) and 60000x60000. */
    static const char *files[] = {"huge_side.png", "huge_area.png", "huge.jpg"};
    static const char *words[] = {"MM_OPT_IMAGE_MAX_SIDE", "MM_OPT_IMAGE_MAX_PIXELS",
                                  "MM_OPT_IMAGE_MAX_SIDE"};
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, DATA_DIR "%s", files[i]);
        ck_assert_int_le(count_allocations(MM_ERR_LIMIT, path, NULL), HEADER_ALLOCATIONS);
        ck_assert_msg(strstr(mm_last_error(), words[i]), "%s", mm_last_error());
    }
    /* Configured limits, on both sides of the boundary (61 x 47 = 2867 pixels). */
    const char *png = test_vectors_path("hf/preprocess/rgb_61x47.png");
    char path[4096];
    snprintf(path, sizeof path, "%s", png);
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_SIDE, 60));
    ck_assert_int_le(count_allocations(MM_ERR_LIMIT, path, o), HEADER_ALLOCATIONS);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_SIDE, 61));
    ck_assert_int_gt(count_allocations(MM_OK, path, o), HEADER_ALLOCATIONS);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_PIXELS, 61 * 47 - 1));
    ck_assert_int_le(count_allocations(MM_ERR_LIMIT, path, o), HEADER_ALLOCATIONS);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_PIXELS, 61 * 47));
    count_allocations(MM_OK, path, o);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_SIDE, 49)); /* JPEG: 80 x 50 */
    count_allocations(MM_ERR_LIMIT, test_vectors_path("hf/preprocess/q90_80x50.jpg"), o);
    mm_options_free(o);
}
END_TEST

/* Redirect stderr to a temporary file; restore_stderr returns how many bytes were written. */
static int saved_stderr = -1;
static FILE *captured;

static void capture_stderr(void)
{
    fflush(stderr);
    captured = tmpfile();
    ck_assert_ptr_nonnull(captured);
    saved_stderr = dup(2);
    dup2(fileno(captured), 2);
}

static long restore_stderr(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    long n = ftell(captured) > 0 ? ftell(captured) : (fseek(captured, 0, SEEK_END), ftell(captured));
    fclose(captured);
    return n;
}

/* Files for the damage tests, with how many trailing bytes may go missing without losing a
 * pixel (PNG: the IEND chunk; JPEG: the EOI marker), since decoding stops after the pixels. */
static const struct { const char *name; size_t tail; } damaged[] = {
    {"rgb8.png", 12}, {"rgb8_interlaced.png", 12}, {"palette8_trns.png", 12},
    {"greyalpha16_interlaced.png", 12}, {"baseline444.jpg", 2}, {"progressive420.jpg", 2},
    {"grey.jpg", 2}, {"cmyk_adobe.jpg", 2}, {"exif_orient6.jpg", 2},
};
#define N_DAMAGED (sizeof damaged / sizeof damaged[0])

START_TEST(truncated_files_fail_with_format_errors)
{
    load_refs();
    char path[256], ref[128];
    snprintf(path, sizeof path, DATA_DIR "%s", damaged[_i].name);
    snprintf(ref, sizeof ref, "%s.rgb", damaged[_i].name);
    size_t size;
    unsigned char *data = read_file(path, &size);
    capture_stderr();
    for (size_t cut = 0; cut < size; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, data, cut);
        mm_image *image;
        mm_status st = mm_image_load_memory(copy, cut, NULL, &image);
        if (cut + damaged[_i].tail < size) {
            ck_assert_msg(st == MM_ERR_FORMAT, "%s cut at %zu of %zu: status %d (%s)",
                          damaged[_i].name, cut, size, st, mm_last_error());
            ck_assert_msg(strstr(mm_last_error(), "<memory>"), "%s", mm_last_error());
        } else if (st == MM_OK) {
            assert_pixels(image, &refs, ref);
        } else {
            ck_assert_int_eq(st, MM_ERR_FORMAT);
        }
        mm_image_free(image);
        free(copy);
    }
    ck_assert_int_eq(restore_stderr(), 0);
    /* The message says what happened. */
    mm_image *image;
    ck_assert_status(mm_image_load_memory(data, size / 2, NULL, &image), MM_ERR_FORMAT);
    const char *e = mm_last_error();
    ck_assert_msg(strstr(e, "truncated") || strstr(e, "Premature end"), "%s", e);
    free(data);
    free_refs();
}
END_TEST

/* A few hundred bytes declaring a huge picture (tests/data/gen_bombs.py: scan data cut short and
 * closed with EOI) are refused, not painted grey. PIL accepts these two (it refuses only a file
 * without EOI); libmm refuses any JPEG whose pixels are not all in the file. */
START_TEST(bombs_are_refused)
{
    static const char *bombs[] = {DATA_DIR "bomb_baseline.jpg", DATA_DIR "bomb_progressive.jpg"};
    for (int i = 0; i < 2; i++) {
        int width = 0, height = 0;
        size_t size;
        unsigned char *data = read_file(bombs[i], &size);
        ck_assert_uint_lt(size, 400);
        /* The header alone: the declared size, no pixel memory asked for. */
        mmi_alloc_largest();
        ck_assert_ok(mmi_image_size_memory(data, size, NULL, &width, &height));
        ck_assert_int_eq(width, 16384);
        ck_assert_int_eq(height, 4096);
        ck_assert_uint_lt(mmi_alloc_largest(), 1 << 20);
        mm_image *image = (mm_image *)1;
        ck_assert_status(mm_image_load_memory(data, size, NULL, &image), MM_ERR_FORMAT);
        ck_assert_ptr_null(image);
        ck_assert_msg(strstr(mm_last_error(), "premature end of data segment"), "%s", mm_last_error());
        free(data);
    }
    /* libjpeg's working memory is capped from MM_OPT_IMAGE_MAX_PIXELS: a progressive CMYK
     * image keeps 8 bytes of coefficients per pixel, over the cap of 6 per allowed pixel when
     * the image is as large as allowed (2048 x 1024), under it with room to spare. */
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_PIXELS, 2048 * 1024));
    mm_image *image;
    ck_assert_status(mm_image_load_file(DATA_DIR "bomb_cmyk_head.jpg", o, &image), MM_ERR_LIMIT);
    ck_assert_msg(strstr(mm_last_error(), "working memory") &&
                  strstr(mm_last_error(), "MM_OPT_IMAGE_MAX_PIXELS = 2097152"), "%s",
                  mm_last_error());
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_PIXELS, 2 * 2048 * 1024));
    ck_assert_status(mm_image_load_file(DATA_DIR "bomb_cmyk_head.jpg", o, &image), MM_ERR_FORMAT);
    mm_options_free(o);
}
END_TEST

/* The size read from the header is the decoded size, EXIF orientation included. */
START_TEST(header_size_equals_decoded_size)
{
    static const char *files[] = {"rgb8.png", "rgb8_interlaced.png", "palette4.png",
                                  "baseline444.jpg", "progressive420.jpg", "cmyk_adobe.jpg",
                                  "exif_orient5.jpg", "exif_orient6.jpg", "exif_be_orient6.jpg"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, DATA_DIR "%s", files[i]);
        size_t size;
        unsigned char *data = read_file(path, &size);
        int width, height;
        mm_image *image;
        ck_assert_ok(mmi_image_size_memory(data, size, NULL, &width, &height));
        ck_assert_ok(mm_image_load_memory(data, size, NULL, &image));
        ck_assert_msg(width == mm_image_width(image) && height == mm_image_height(image),
                      "%s: header says %dx%d, decoded %dx%d", files[i], width, height,
                      mm_image_width(image), mm_image_height(image));
        mm_image_free(image);
        free(data);
    }
}
END_TEST

START_TEST(corrupt_bytes_never_crash)
{
    char path[256];
    snprintf(path, sizeof path, DATA_DIR "%s", damaged[_i].name);
    size_t size;
    unsigned char *data = read_file(path, &size);
    unsigned char *copy = malloc(size);
    uint32_t rng = 12345u + (uint32_t)_i;
    int failed = 0, decoded = 0;
    capture_stderr();
    /* Every byte inverted in turn, then 300 files with 1..8 random bytes replaced. */
    for (size_t round = 0; round < size + 300; round++) {
        memcpy(copy, data, size);
        if (round < size) {
            copy[round] ^= 0xff;
        } else {
            for (int k = 0, n = 1 + (int)(round % 8); k < n; k++) {
                rng = rng * 1664525u + 1013904223u;
                copy[(rng >> 8) % size] = (unsigned char)(rng >> 24);
            }
        }
        mm_image *image;
        mm_status st = mm_image_load_memory(copy, size, NULL, &image);
        ck_assert_msg(st == MM_OK || st == MM_ERR_FORMAT || st == MM_ERR_LIMIT,
                      "%s round %zu: status %d (%s)", damaged[_i].name, round, st,
                      mm_last_error());
        if (st == MM_OK) {
            ck_assert_int_gt(mm_image_width(image), 0);
            decoded++;
        } else {
            ck_assert_ptr_null(image);
            ck_assert_msg(strlen(mm_last_error()) > 12, "%s", mm_last_error());
            failed++;
        }
        mm_image_free(image);
    }
    ck_assert_int_eq(restore_stderr(), 0);
    /* Damage to the signature, header or checksums must be caught. */
    ck_assert_int_gt(failed, 0);
    copy[0] = 0;
    memcpy(copy, data, size);
    copy[1] ^= 0x01;
    mm_image *image;
    ck_assert_status(mm_image_load_memory(copy, size, NULL, &image), MM_ERR_FORMAT);
    (void)decoded;
    free(copy);
    free(data);
}
END_TEST

START_TEST(allocation_failures_are_reported)
{
    static const char *files[] = {DATA_DIR "rgb8_interlaced.png", DATA_DIR "progressive420.jpg"};
    for (int f = 0; f < 2; f++) {
        for (long n = 1;; n++) {
            mm_image *image;
            mmi_alloc_fail_at(n);
            mm_status st = mm_image_load_file(files[f], NULL, &image);
            mmi_alloc_fail_at(0);
            if (st == MM_OK) {
                mm_image_free(image);
                ck_assert_int_gt(n, 1);
                break;
            }
            ck_assert_status(st, MM_ERR_NOMEM);
            ck_assert_ptr_null(image);
        }
    }
}
END_TEST

/* ---- preprocessing ---- */

static mm_image *load_image(const char *path)
{
    mm_image *image;
    ck_assert_ok(mm_image_load_file(path, NULL, &image));
    return image;
}

/* An image from a (h, w, 3) uint8 reference tensor. */
static mm_image *tensor_image(st_file *file, const char *name)
{
    int64_t shape[ST_MAX_DIMS];
    unsigned char *px = st_read_raw(file, name, NULL, shape, NULL, NULL);
    ck_assert_msg(px != NULL, "%s", file->error);
    mm_image *image;
    ck_assert_ok(mm_image_from_pixels(px, (int)shape[1], (int)shape[0], (size_t)shape[1] * 3,
                                      MM_PIXEL_RGB8, &image));
    free(px);
    return image;
}

/* max |views - reference| over the float tensor `name` of n_views x 3 x size x size values. */
static double views_error(const mmi_views *v, st_file *file, const char *name)
{
    size_t n;
    int64_t shape[ST_MAX_DIMS];
    int ndim;
    float *ref = st_read_f32(file, name, shape, &ndim, &n);
    ck_assert_msg(ref != NULL, "%s", file->error);
    ck_assert_uint_eq(n, (size_t)v->n_views * 3 * v->size * v->size);
    ck_assert_int_eq(shape[ndim - 1], v->size);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)v->pixels[i] - ref[i]);
        worst = d > worst ? d : worst;
    }
    free(ref);
    return worst;
}

/* Run the pipeline and compare; HF's float32 steps are followed, so the tolerance is 1e-6
 * (one 8-bit level off would show as about 0.015). */
static void assert_views(const mmi_preprocess_config *cfg, const mm_image *image,
                         mmi_detail detail, st_file *file, const char *name, int n_views)
{
    mmi_views v;
    ck_assert_ok(mmi_preprocess(cfg, image, detail, &v));
    ck_assert_int_eq(v.n_views, n_views);
    double err = views_error(&v, file, name);
    ck_assert_msg(err <= 1e-6, "%s: max abs error %g", name, err);
    mmi_views_free(&v);
}

START_TEST(resize_matches_pil)
{
    load_refs();
    mm_image *src = load_image(DATA_DIR "resize_src.png");
    int checked = 0;
    for (int i = 0; i < refs.n_tensors; i++) {
        const char *name = refs.tensors[i].name;
        if (strncmp(name, "resize.", 7))
            continue;
        mmi_resample filter = strstr(name, "bilinear") ? MMI_RESAMPLE_BILINEAR
                                                       : MMI_RESAMPLE_BICUBIC;
        mm_image *out;
        ck_assert_ok(mmi_resize(src, (int)refs.tensors[i].shape[1],
                                (int)refs.tensors[i].shape[0], filter, &out));
        assert_pixels(out, &refs, name);
        mmi_image_free(out);
        checked++;
    }
    ck_assert_int_eq(checked, 16);
    mmi_image_free(src);
    free_refs();
}
END_TEST

START_TEST(clip_processor_matches_hf_vectors)
{
    static const char *stems[] = {"rgb_61x47", "rgba_40x64", "q90_80x50"};
    static const char *files[] = {"rgb_61x47.png", "rgba_40x64.png", "q90_80x50.jpg"};
    load_refs();
    for (int i = 0; i < 3; i++) {
        char path[256], name[128];
        snprintf(path, sizeof path, "hf/preprocess/%s", files[i]);
        mm_image *image = load_image(test_vectors_path(path));
        /* The bicubic resize before the crop (sizes from the reference's shape). */
        snprintf(name, sizeof name, "%s.resized_s32", stems[i]);
        const st_tensor *t = st_find(&shared, name);
        ck_assert_ptr_nonnull(t);
        mm_image *resized;
        ck_assert_ok(mmi_resize(image, (int)t->shape[1], (int)t->shape[0], MMI_RESAMPLE_BICUBIC,
                                &resized));
        assert_pixels(resized, &shared, name);
        mmi_image_free(resized);
        for (int s = 32; s <= 224; s += 192) {
            mmi_preprocess_config cfg;
            mmi_preprocess_config_init(&cfg, s);
            snprintf(name, sizeof name, "%s.pixel_values_s%d", stems[i], s);
            assert_views(&cfg, image, MMI_DETAIL_HIGH, &shared, name, 1); /* no pinpoints */
        }
        mmi_image_free(image);
    }
    free_refs();
}
END_TEST

/* Qwen2VLImageProcessor: smart_resize by hand (round half to even, then the area bounds), and
 * the shared case's pixel_values [patches][3 * 2 * 6 * 6] and image_grid_thw from its
 * image.png with its preprocessor_config.json settings (patch 6, merge 2, 2 frames, 576 ..
 * 2304 pixels, CLIP mean/std, bicubic). */
START_TEST(patch_rows_match_qwen2_vl)
{
    int w, h;
    ck_assert_ok(mmi_smart_resize(75, 50, 12, 576, 2304, &w, &h)); /* 72x48 too big: shrink */
    ck_assert_int_eq(w, 48);
    ck_assert_int_eq(h, 36);
    ck_assert_ok(mmi_smart_resize(30, 18, 12, 1, 1 << 20, &w, &h)); /* 2.5, 1.5: to even */
    ck_assert_int_eq(w, 24);
    ck_assert_int_eq(h, 24);
    ck_assert_ok(mmi_smart_resize(13, 13, 12, 2000, 1 << 20, &w, &h)); /* 144 < 2000: grow */
    ck_assert_int_eq(w, 48);
    ck_assert_int_eq(h, 48);
    ck_assert_status(mmi_smart_resize(11, 40, 12, 1, 1 << 20, &w, &h), MM_ERR_ARG);
    ck_assert_status(mmi_smart_resize(12, 2500, 12, 1, 1 << 30, &w, &h), MM_ERR_ARG);

    st_file io;
    ck_assert_msg(st_load(&io, test_vectors_path("hf/qwen2_vl/io.safetensors")) == 0, "%s",
                  io.error);
    mm_image *image = load_image(test_vectors_path("hf/qwen2_vl/image.png"));
    mmi_preprocess_config cfg;
    mmi_preprocess_config_init(&cfg, 224); /* OpenAI CLIP mean/std, bicubic */
    const mmi_patch_grid pg = {6, 2, 2, 576, 2304};
    float *rows;
    int grid[3];
    ck_assert_ok(mmi_preprocess_patch_rows(&cfg, &pg, image, &rows, grid));
    int64_t shape[ST_MAX_DIMS];
    int ndim;
    size_t n;
    float *ref = st_read_f32(&io, "pixel_values", shape, &ndim, &n);
    ck_assert_ptr_nonnull(ref);
    ck_assert_int_eq(shape[0], (int64_t)grid[1] * grid[2]);
    ck_assert_int_eq(shape[1], 3 * 2 * 6 * 6);
    float worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmaxf(worst, fabsf(rows[i] - ref[i]));
    ck_assert_float_le(worst, 1e-5f); /* HF normalizes in float too: rounding only */
    int32_t thw[3];
    unsigned char *raw = st_read_raw(&io, "image_grid_thw", &(st_dtype){0}, shape, &ndim, &n);
    ck_assert_ptr_nonnull(raw);
    for (int k = 0; k < 3; k++) {
        int64_t v;
        memcpy(&v, raw + 8 * k, 8);
        thw[k] = (int32_t)v;
        ck_assert_int_eq(grid[k], thw[k]);
    }
    free(raw);
    free(ref);
    mmi_free(rows);
    mmi_image_free(image);
    st_free(&io);
}
END_TEST

START_TEST(resize_modes_match_hf_rules)
{
    load_refs();
    mm_image *src = load_image(DATA_DIR "resize_src.png");
    mmi_preprocess_config cfg;
    mmi_preprocess_config_init(&cfg, 24);
    assert_views(&cfg, src, MMI_DETAIL_LOW, &refs, "clip.s24", 1);
    cfg.resample = MMI_RESAMPLE_BILINEAR;
    assert_views(&cfg, src, MMI_DETAIL_LOW, &refs, "clip.s24.bilinear", 1);
    cfg.resample = MMI_RESAMPLE_BICUBIC;
    cfg.resize = MMI_RESIZE_SQUASH;
    assert_views(&cfg, src, MMI_DETAIL_LOW, &refs, "squash.s24", 1);
    cfg.resize = MMI_RESIZE_SHORTEST_EDGE_CROP;
    /* LLaVA-1.5 pad with int(mean * 255) = (122, 116, 104), wide and tall inputs. */
    cfg.pad = MMI_PAD_MEAN;
    ck_assert_int_eq(cfg.pad_color[0], 122);
    ck_assert_int_eq(cfg.pad_color[1], 116);
    ck_assert_int_eq(cfg.pad_color[2], 104);
    assert_views(&cfg, src, MMI_DETAIL_LOW, &refs, "pad.s24", 1);
    mm_image *tall;
    ck_assert_ok(mmi_image_create(src->height, src->width, &tall));
    for (int y = 0; y < src->height; y++)
        for (int x = 0; x < src->width; x++)
            memcpy(tall->pixels + ((size_t)x * tall->width + y) * 3,
                   src->pixels + ((size_t)y * src->width + x) * 3, 3);
    assert_views(&cfg, tall, MMI_DETAIL_LOW, &refs, "pad_tall.s24", 1);
    mmi_image_free(tall);
    /* A crop larger than the resized image: HF pads with zeros. */
    mmi_preprocess_config_init(&cfg, 40);
    cfg.crop_size = 48;
    assert_views(&cfg, src, MMI_DETAIL_LOW, &refs, "clip.s40_crop48", 1);
    mmi_image_free(src);

    /* 200 x 3 strip: resized to 1600 x 24 before the crop; padded to 200 x 200. */
    mm_image *thin = tensor_image(&refs, "thin.input");
    mmi_preprocess_config_init(&cfg, 24);
    assert_views(&cfg, thin, MMI_DETAIL_LOW, &refs, "thin.clip.s24", 1);
    cfg.pad = MMI_PAD_MEAN;
    assert_views(&cfg, thin, MMI_DETAIL_LOW, &refs, "thin.pad.s24", 1);
    mmi_image_free(thin);
    free_refs();
}
END_TEST

static void set_pinpoints(mmi_preprocess_config *cfg, st_file *file, const char *name)
{
    int64_t shape[ST_MAX_DIMS];
    float *pp = st_read_f32(file, name, shape, NULL, NULL);
    ck_assert_ptr_nonnull(pp);
    cfg->n_pinpoints = (int)shape[0];
    for (int i = 0; i < cfg->n_pinpoints; i++) {
        cfg->pinpoints[i][0] = (int)pp[2 * i];
        cfg->pinpoints[i][1] = (int)pp[2 * i + 1];
    }
    free(pp);
}

START_TEST(anyres_tiles_match_llava_next)
{
    load_refs();
    mmi_preprocess_config cfg;
    mmi_preprocess_config_init(&cfg, 16);
    set_pinpoints(&cfg, &refs, "anyres.pinpoints_hw");
    mm_image *src = load_image(DATA_DIR "resize_src.png");
    mm_image *tall;
    ck_assert_ok(mmi_image_create(src->height, src->width, &tall));
    for (int y = 0; y < src->height; y++)
        for (int x = 0; x < src->width; x++)
            memcpy(tall->pixels + ((size_t)x * tall->width + y) * 3,
                   src->pixels + ((size_t)y * src->width + x) * 3, 3);
    const struct { mm_image *image; const char *name; } cases[] = {
        {src, "anyres.s16"}, {tall, "anyres_tall.s16"}};
    for (int i = 0; i < 2; i++) {
        char best_name[64];
        snprintf(best_name, sizeof best_name, "%s.best_hw", cases[i].name);
        float *best = st_read_f32(&refs, best_name, NULL, NULL, NULL);
        int pin = mmi_select_pinpoint(&cfg, cases[i].image->width, cases[i].image->height);
        ck_assert_int_eq(cfg.pinpoints[pin][0], (int)best[0]);
        ck_assert_int_eq(cfg.pinpoints[pin][1], (int)best[1]);
        int rows = (int)best[0] / 16, cols = (int)best[1] / 16;
        free(best);
        mmi_views v;
        ck_assert_ok(mmi_preprocess(&cfg, cases[i].image, MMI_DETAIL_HIGH, &v));
        ck_assert_int_eq(v.grid_rows, rows);
        ck_assert_int_eq(v.grid_cols, cols);
        ck_assert_int_eq(v.image_width, cases[i].image->width);
        double err = views_error(&v, &refs, cases[i].name);
        ck_assert_msg(err <= 1e-6, "%s: max abs error %g", cases[i].name, err);
        mmi_views_free(&v);
        /* Low detail: one view, the plain CLIP processor. */
        ck_assert_ok(mmi_preprocess(&cfg, cases[i].image, MMI_DETAIL_LOW, &v));
        ck_assert_int_eq(v.n_views, 1);
        ck_assert_int_eq(v.grid_rows, 0);
        mmi_views_free(&v);
    }
    mmi_image_free(src);
    mmi_image_free(tall);
    free_refs();
}
END_TEST

START_TEST(token_counts_match_llava_next)
{
    load_refs();
    mmi_preprocess_config cfg;
    mmi_preprocess_config_init(&cfg, 336);
    static const int pp16[5][2] = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
    cfg.n_pinpoints = 5;
    memcpy(cfg.pinpoints, pp16, sizeof pp16);
    cfg.merge = MMI_MERGE_SPATIAL_UNPAD;
    int64_t tokens;
    /* By hand, 640x480: 2x2 grid (672x672), 48x48 patches; 480*48/640 = 36 rows kept
     * (padding 6 each side): 36*48 + 36 newlines + 576 for the whole image = 2340. */
    ck_assert_ok(mmi_preprocess_token_count(&cfg, 640, 480, MMI_DETAIL_HIGH, 24, 0, &tokens));
    ck_assert_int_eq(tokens, 2340);
    ck_assert_ok(mmi_preprocess_token_count(&cfg, 640, 480, MMI_DETAIL_LOW, 24, 0, &tokens));
    ck_assert_int_eq(tokens, 576);
    ck_assert_ok(mmi_preprocess_token_count(&cfg, 640, 480, MMI_DETAIL_LOW, 24, 1, &tokens));
    ck_assert_int_eq(tokens, 577);
    cfg.merge = MMI_MERGE_FLAT;   /* 5 views of 576 */
    ck_assert_ok(mmi_preprocess_token_count(&cfg, 640, 480, MMI_DETAIL_HIGH, 24, 0, &tokens));
    ck_assert_int_eq(tokens, 5 * 576);
    cfg.merge = MMI_MERGE_SPATIAL_UNPAD;

    /* The table from HF's formula: width, height, best height, best width, tokens. */
    size_t n;
    int64_t shape[ST_MAX_DIMS];
    float *table = st_read_f32(&refs, "tokens.llava16", shape, NULL, &n);
    ck_assert_ptr_nonnull(table);
    ck_assert_int_eq(shape[1], 5);
    for (int64_t r = 0; r < shape[0]; r++) {
        const float *row = table + r * 5;
        int w = (int)row[0], h = (int)row[1];
        int pin = mmi_select_pinpoint(&cfg, w, h);
        ck_assert_int_eq(cfg.pinpoints[pin][0], (int)row[2]);
        ck_assert_int_eq(cfg.pinpoints[pin][1], (int)row[3]);
        ck_assert_ok(mmi_preprocess_token_count(&cfg, w, h, MMI_DETAIL_HIGH, 24, 0, &tokens));
        ck_assert_msg(tokens == (int64_t)row[4], "%dx%d: %lld tokens, HF %d", w, h,
                      (long long)tokens, (int)row[4]);
    }
    free(table);
    ck_assert_status(mmi_preprocess_token_count(&cfg, 0, 5, MMI_DETAIL_HIGH, 24, 0, &tokens),
                     MM_ERR_ARG);
    ck_assert_status(mmi_preprocess_token_count(&cfg, 5, 5, MMI_DETAIL_HIGH, 0, 0, &tokens),
                     MM_ERR_ARG);
    free_refs();
}
END_TEST

/* A vision file holding the given preprocessing keys (mean/std: 3 values unless n_mean says). */
static mmi_gguf *vision_file(int64_t size, int n_mean, const char *resize, const char *pad,
                             const char *merge, const int32_t *pinpoints, int n_pinpoints)
{
    mmi_gguf_writer *w;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    ck_assert_ok(mmi_gguf_writer_add_string(w, "general.architecture", "clip"));
    if (size >= 0)
        ck_assert_ok(mmi_gguf_writer_add_int(w, "clip.vision.image_size", MMI_GGUF_UINT32, size));
    const float mean[4] = {0.5f, 0.25f, 0.125f, 0}, std[4] = {0.5f, 0.5f, 2.0f, 1};
    ck_assert_ok(mmi_gguf_writer_add_array(w, "clip.vision.image_mean", MMI_GGUF_FLOAT32, mean,
                                           (uint64_t)n_mean));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "clip.vision.image_std", MMI_GGUF_FLOAT32, std, 3));
    if (resize)
        ck_assert_ok(mmi_gguf_writer_add_string(w, "clip.vision.image_resize", resize));
    if (pad)
        ck_assert_ok(mmi_gguf_writer_add_string(w, "clip.vision.image_pad", pad));
    if (merge)
        ck_assert_ok(mmi_gguf_writer_add_string(w, "clip.vision.mm_patch_merge_type", merge));
    if (pinpoints)
        ck_assert_ok(mmi_gguf_writer_add_array(w, "clip.vision.image_grid_pinpoints",
                                               MMI_GGUF_INT32, pinpoints,
                                               (uint64_t)n_pinpoints));
    void *data;
    size_t n;
    ck_assert_ok(mmi_gguf_writer_write_memory(w, &data, &n));
    mmi_gguf_writer_free(w);
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(data, n, &g));
    mmi_free(data);
    return g;
}

START_TEST(config_is_read_from_the_vision_file)
{
    static const int32_t pins[] = {336, 672, 672, 336, 672, 672};
    mmi_gguf *g = vision_file(336, 3, "shortest_edge_crop", "mean", "spatial_unpad", pins, 6);
    mmi_preprocess_config cfg;
    ck_assert_ok(mmi_preprocess_config_load(g, &cfg));
    ck_assert_int_eq(cfg.image_size, 336);
    ck_assert_int_eq(cfg.crop_size, 336);
    ck_assert_int_eq(cfg.resize, MMI_RESIZE_SHORTEST_EDGE_CROP);
    ck_assert_int_eq(cfg.resample, MMI_RESAMPLE_BICUBIC);
    ck_assert_int_eq(cfg.pad, MMI_PAD_MEAN);
    ck_assert_int_eq(cfg.merge, MMI_MERGE_SPATIAL_UNPAD);
    ck_assert_float_eq(cfg.mean[1], 0.25f);
    ck_assert_float_eq(cfg.std[2], 2.0f);
    ck_assert_int_eq(cfg.pad_color[0], 127); /* int(0.5 * 255) */
    ck_assert_int_eq(cfg.pad_color[1], 63);
    ck_assert_int_eq(cfg.pad_color[2], 31);
    ck_assert_int_eq(cfg.n_pinpoints, 3);
    ck_assert_int_eq(cfg.pinpoints[1][0], 672);
    ck_assert_int_eq(cfg.pinpoints[1][1], 336);
    mmi_gguf_close(g);

    /* Absent optional keys: CLIP's processor, no pad, no tiles, flat merge. */
    g = vision_file(224, 3, NULL, NULL, NULL, NULL, 0);
    ck_assert_ok(mmi_preprocess_config_load(g, &cfg));
    ck_assert_int_eq(cfg.resize, MMI_RESIZE_SHORTEST_EDGE_CROP);
    ck_assert_int_eq(cfg.pad, MMI_PAD_NONE);
    ck_assert_int_eq(cfg.n_pinpoints, 0);
    ck_assert_int_eq(cfg.merge, MMI_MERGE_FLAT);
    mmi_gguf_close(g);
    g = vision_file(224, 3, "squash", "none", "flat", NULL, 0);
    ck_assert_ok(mmi_preprocess_config_load(g, &cfg));
    ck_assert_int_eq(cfg.resize, MMI_RESIZE_SQUASH);
    mmi_gguf_close(g);
}
END_TEST

START_TEST(bad_config_keys_are_named)
{
    static const int32_t odd[] = {336, 672, 672};
    static const int32_t not_multiple[] = {336, 600};
    static const int32_t negative[] = {336, -336};
    const struct {
        mmi_gguf *g;
        mm_status status;
        const char *key;
    } cases[] = {
        {vision_file(-1, 3, NULL, NULL, NULL, NULL, 0), MM_ERR_FORMAT, "clip.vision.image_size"},
        {vision_file(0, 3, NULL, NULL, NULL, NULL, 0), MM_ERR_FORMAT, "clip.vision.image_size"},
        {vision_file(224, 2, NULL, NULL, NULL, NULL, 0), MM_ERR_FORMAT, "clip.vision.image_mean"},
        {vision_file(224, 3, "letterbox", NULL, NULL, NULL, 0), MM_ERR_UNSUPPORTED,
         "clip.vision.image_resize"},
        {vision_file(224, 3, NULL, "edge", NULL, NULL, 0), MM_ERR_UNSUPPORTED,
         "clip.vision.image_pad"},
        {vision_file(224, 3, NULL, NULL, "unpad", NULL, 0), MM_ERR_UNSUPPORTED,
         "clip.vision.mm_patch_merge_type"},
        {vision_file(336, 3, NULL, NULL, NULL, odd, 3), MM_ERR_FORMAT, "image_grid_pinpoints"},
        {vision_file(336, 3, NULL, NULL, NULL, not_multiple, 2), MM_ERR_FORMAT,
         "image_grid_pinpoints[1]"},
        {vision_file(336, 3, NULL, NULL, NULL, negative, 2), MM_ERR_FORMAT,
         "image_grid_pinpoints[1]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mmi_preprocess_config cfg;
        ck_assert_status(mmi_preprocess_config_load(cases[i].g, &cfg), cases[i].status);
        ck_assert_msg(strstr(mm_last_error(), cases[i].key), "case %zu: %s", i, mm_last_error());
        mmi_gguf_close(cases[i].g);
    }
}
END_TEST

START_TEST(preprocess_allocation_failures_are_reported)
{
    mmi_preprocess_config cfg;
    mmi_preprocess_config_init(&cfg, 16);
    static const int pins[3][2] = {{16, 32}, {32, 16}, {32, 32}};
    cfg.n_pinpoints = 3;
    memcpy(cfg.pinpoints, pins, sizeof pins);
    cfg.pad = MMI_PAD_MEAN;
    mm_image *src = load_image(DATA_DIR "rgb8.png");
    for (int detail = 0; detail < 2; detail++)
        for (long n = 1;; n++) {
            mmi_views v;
            mmi_alloc_fail_at(n);
            mm_status st = mmi_preprocess(&cfg, src, (mmi_detail)detail, &v);
            mmi_alloc_fail_at(0);
            if (st == MM_OK) {
                /* 23x17 picks 32x32 (391 of its pixels kept vs 336): a 2x2 grid. */
                ck_assert_int_eq(v.n_views, (detail ? 5 : 1));
                mmi_views_free(&v);
                break;
            }
            ck_assert_status(st, MM_ERR_NOMEM);
            ck_assert_ptr_null(v.pixels);
        }
    mmi_image_free(src);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("image");
    TCase *decode = tcase_create("decode");
    tcase_set_timeout(decode, 120);
    tcase_add_test(decode, decodes_shared_vectors_like_pil);
    tcase_add_loop_test(decode, decodes_every_png_and_jpeg_kind_like_pil, 0, N_GENERATED);
    tcase_add_test(decode, copies_caller_pixels);
    tcase_add_test(decode, rejects_bad_arguments);
    tcase_add_test(decode, reports_unreadable_and_unknown_input);
    tcase_add_test(decode, refuses_huge_declared_sizes_before_allocating);
    tcase_add_loop_test(decode, truncated_files_fail_with_format_errors, 0, N_DAMAGED);
    tcase_add_loop_test(decode, corrupt_bytes_never_crash, 0, N_DAMAGED);
    tcase_add_test(decode, allocation_failures_are_reported);
    tcase_add_test(decode, bombs_are_refused);
    tcase_add_test(decode, header_size_equals_decoded_size);
    suite_add_tcase(s, decode);
    TCase *pre = tcase_create("preprocess");
    tcase_set_timeout(pre, 60);
    tcase_add_test(pre, resize_matches_pil);
    tcase_add_test(pre, clip_processor_matches_hf_vectors);
    tcase_add_test(pre, resize_modes_match_hf_rules);
    tcase_add_test(pre, patch_rows_match_qwen2_vl);
    tcase_add_test(pre, anyres_tiles_match_llava_next);
    tcase_add_test(pre, token_counts_match_llava_next);
    tcase_add_test(pre, config_is_read_from_the_vision_file);
    tcase_add_test(pre, bad_config_keys_are_named);
    tcase_add_test(pre, preprocess_allocation_failures_are_reported);
    suite_add_tcase(s, pre);
    return test_run_suite(s);
}
