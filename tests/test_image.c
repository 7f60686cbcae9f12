/* Image decoding (lib/image.c) and preprocessing (lib/preprocess.c) against PIL and HF.
 *
 * References: ../shared/vectors/hf/preprocess (PIL + CLIPImageProcessor, HF transformers 4.45)
 * and tests/data/images/reference.safetensors, written by tests/data/gen_images.py from PIL and
 * from a NumPy restatement of HF's processors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "image.h"
#include "mm.h"
#include "safetensors.h"
#include "testutil.h"

#define DATA_DIR "tests/data/images/"

static st_file refs;   /* tests/data/images/reference.safetensors */
static st_file shared; /* ../shared/vectors/hf/preprocess/io.safetensors */

static void load_refs(void)
{
    ck_assert_msg(st_load(&refs, DATA_DIR "reference.safetensors") == 0, "%s", refs.error);
    ck_assert_msg(st_load(&shared, test_shared_path("vectors/hf/preprocess/io.safetensors")) == 0,
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
        snprintf(path, sizeof path, "vectors/hf/preprocess/%s", files[i]);
        snprintf(name, sizeof name, "%.*s.rgb", (int)(strchr(files[i], '.') - files[i]), files[i]);
        mm_image *image;
        ck_assert_ok(mm_image_load_file(test_shared_path(path), NULL, &image));
        assert_pixels(image, &shared, name);
        mm_image_free(image);

        size_t size;
        unsigned char *data = read_file(test_shared_path(path), &size);
        ck_assert_ok(mm_image_load_memory(data, size, NULL, &image));
        assert_pixels(image, &shared, name);
        mm_image_free(image);
        free(data);
    }
    /* RGBA: alpha dropped, colour kept: equals the decoded RGBA's first three channels. */
    int64_t shape[ST_MAX_DIMS];
    unsigned char *rgba = st_read_raw(&shared, "rgba_40x64.decoded", NULL, shape, NULL, NULL);
    mm_image *image;
    ck_assert_ok(mm_image_load_file(test_shared_path("vectors/hf/preprocess/rgba_40x64.png"),
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
        ck_assert_int_eq(count_allocations(MM_ERR_LIMIT, path, NULL), 0);
        ck_assert_msg(strstr(mm_last_error(), words[i]), "%s", mm_last_error());
    }
    /* Configured limits, on both sides of the boundary (61 x 47 = 2867 pixels). */
    const char *png = test_shared_path("vectors/hf/preprocess/rgb_61x47.png");
    char path[4096];
    snprintf(path, sizeof path, "%s", png);
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_SIDE, 60));
    ck_assert_int_eq(count_allocations(MM_ERR_LIMIT, path, o), 0);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_SIDE, 61));
    ck_assert_int_gt(count_allocations(MM_OK, path, o), 0);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_PIXELS, 61 * 47 - 1));
    ck_assert_int_eq(count_allocations(MM_ERR_LIMIT, path, o), 0);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_PIXELS, 61 * 47));
    count_allocations(MM_OK, path, o);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_SIDE, 49)); /* JPEG: 80 x 50 */
    count_allocations(MM_ERR_LIMIT, test_shared_path("vectors/hf/preprocess/q90_80x50.jpg"), o);
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
    suite_add_tcase(s, decode);
    return test_run_suite(s);
}
