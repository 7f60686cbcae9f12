/* Point clouds: the PLY reader (ASCII, binary little and big endian; hand-made files whose
 * values are written out below, so every expected number is known by construction), caller
 * arrays, and the refusals: truncated and hostile files, non-finite values, the count limit,
 * allocation failures without leaks. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "mm.h"
#include "tower_points.h"
#include "testutil.h"

static mm_points *load(const void *data, size_t size)
{
    mm_points *p = NULL;
    ck_assert_ok(mm_points_load_memory(data, size, NULL, &p));
    return p;
}

static mm_status load_status(const char *text)
{
    mm_points *p = (mm_points *)1;
    mm_status st = mm_points_load_memory(text, strlen(text), NULL, &p);
    ck_assert_ptr_null(p);
    if (st != MM_OK)
        ck_assert_str_ne(mm_last_error(), "");
    return st;
}

#define CK_F(a, b) ck_assert_msg(fabsf((a) - (b)) <= 1e-7f * (1 + fabsf(b)), "%s = %.9g, not %.9g", \
                                 #a, (double)(a), (double)(b))

START_TEST(ascii_with_colours_and_extras)
{
    /* Colours as uchar (51/255 = 0.2), an extra scalar and a list inside the vertex element
     * skipped, a face element after it never read. CRLF line ends in the header. */
    static const char ply[] =
        "ply\r\nformat ascii 1.0\r\ncomment made by hand\r\nobj_info none\r\n"
        "element vertex 2\r\nproperty float x\r\nproperty float y\r\nproperty double z\r\n"
        "property float intensity\r\nproperty uchar red\r\nproperty uchar green\r\n"
        "property uchar blue\r\nproperty list uchar int tags\r\n"
        "element face 1\r\nproperty list uchar int vertex_indices\r\nend_header\r\n"
        "1.5 -2 3e-1 9 255 0 51 2 7 8\n"
        "-0.25 +4. .5 1 0 102 255 0\n"
        "3 0 1 2\n";
    mm_points *p = load(ply, sizeof ply - 1);
    ck_assert_uint_eq(mm_points_count(p), 2);
    const float *xyz = mm_points_xyz(p), *rgb = mm_points_rgb(p);
    ck_assert_ptr_nonnull(rgb);
    ck_assert_ptr_null(mm_points_normals(p));
    CK_F(xyz[0], 1.5f); CK_F(xyz[1], -2.0f); CK_F(xyz[2], 0.3f);
    CK_F(xyz[3], -0.25f); CK_F(xyz[4], 4.0f); CK_F(xyz[5], 0.5f);
    CK_F(rgb[0], 1.0f); CK_F(rgb[1], 0.0f); CK_F(rgb[2], 0.2f);
    CK_F(rgb[3], 0.0f); CK_F(rgb[4], 0.4f); CK_F(rgb[5], 1.0f);
    mm_points_free(p);
}
END_TEST

/* A binary file in either byte order: an element before the vertices (with a list) to skip,
 * then vertices of x double, y float, z short, nx ny nz float, red green blue ushort, and
 * alpha uchar ignored. */
typedef struct {
    uint8_t b[1024];
    size_t n;
    int big;
} buf;

static void put(buf *w, const void *v, size_t size)
{
    ck_assert_uint_le(w->n + size, sizeof w->b);
    for (size_t i = 0; i < size; i++)
        w->b[w->n + i] = ((const uint8_t *)v)[w->big ? size - 1 - i : i];
    w->n += size;
}

static void put_text(buf *w, const char *s)
{
    memcpy(w->b + w->n, s, strlen(s));
    w->n += strlen(s);
}

static void put_f32(buf *w, float v) { put(w, &v, 4); }
static void put_f64(buf *w, double v) { put(w, &v, 8); }
static void put_i16(buf *w, int16_t v) { put(w, &v, 2); }
static void put_u16(buf *w, uint16_t v) { put(w, &v, 2); }
static void put_u8(buf *w, uint8_t v) { put(w, &v, 1); }
static void put_i32(buf *w, int32_t v) { put(w, &v, 4); }

static const float bin_xyz[3][3] = {{0.125f, -1.5f, 7}, {1e-3f, 2.5e3f, -300}, {-8, 0, 1}};
static const uint16_t bin_rgb[3][3] = {{0, 65535, 13107}, {65535, 0, 0}, {26214, 26214, 26214}};

static size_t write_binary(buf *w, int big, float bad_y)
{
    w->n = 0;
    w->big = big;
    put_text(w, big ? "ply\nformat binary_big_endian 1.0\n" : "ply\nformat binary_little_endian 1.0\n");
    put_text(w, "element material 2\nproperty list uint8 int32 ids\nproperty float32 shine\n"
                "element vertex 3\nproperty float64 x\nproperty float32 y\nproperty int16 z\n"
                "property float nx\nproperty float ny\nproperty float nz\n"
                "property ushort red\nproperty ushort green\nproperty ushort blue\n"
                "property uchar alpha\nend_header\n");
    size_t header = w->n;
    put_u8(w, 2); put_i32(w, 1); put_i32(w, 2); put_f32(w, 0.5f);
    put_u8(w, 0); put_f32(w, 0.25f);
    for (int i = 0; i < 3; i++) {
        put_f64(w, bin_xyz[i][0]);
        put_f32(w, i == 1 ? bad_y : bin_xyz[i][1]);
        put_i16(w, (int16_t)bin_xyz[i][2]);
        put_f32(w, 0); put_f32(w, (float)i); put_f32(w, -1);
        for (int c = 0; c < 3; c++)
            put_u16(w, bin_rgb[i][c]);
        put_u8(w, 200);
    }
    return header;
}

START_TEST(binary_both_endians)
{
    buf w;
    write_binary(&w, _i, bin_xyz[1][1]);
    mm_points *p = load(w.b, w.n);
    ck_assert_uint_eq(mm_points_count(p), 3);
    const float *xyz = mm_points_xyz(p), *rgb = mm_points_rgb(p), *nrm = mm_points_normals(p);
    ck_assert_ptr_nonnull(nrm);
    for (int i = 0; i < 3; i++) {
        for (int c = 0; c < 3; c++) {
            CK_F(xyz[3 * i + c], bin_xyz[i][c]);
            CK_F(rgb[3 * i + c], bin_rgb[i][c] / 65535.0f);
        }
        CK_F(nrm[3 * i], 0.0f); CK_F(nrm[3 * i + 1], (float)i); CK_F(nrm[3 * i + 2], -1.0f);
    }
    mm_points_free(p);
}
END_TEST

START_TEST(binary_truncated_everywhere)
{
    /* Every prefix that ends before the last vertex's last byte is refused, none read past. */
    buf w;
    write_binary(&w, 0, bin_xyz[1][1]);
    for (size_t n = 0; n < w.n; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, w.b, n);
        mm_points *p = (mm_points *)1;
        mm_status st = mm_points_load_memory(copy, n, NULL, &p);
        ck_assert_msg(st == MM_ERR_FORMAT, "prefix %zu: %s", n, mm_status_str(st));
        ck_assert_ptr_null(p);
        free(copy);
    }
}
END_TEST

START_TEST(non_finite_refused)
{
    buf w;
    write_binary(&w, 1, INFINITY);
    mm_points *p = (mm_points *)1;
    ck_assert_status(mm_points_load_memory(w.b, w.n, NULL, &p), MM_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "point 1 has y"));
    write_binary(&w, 0, NAN);
    ck_assert_status(mm_points_load_memory(w.b, w.n, NULL, &p), MM_ERR_FORMAT);
    /* ASCII spellings of NaN and infinity, and a double beyond float range. */
    const char *head = "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                       "property float y\nproperty float z\nend_header\n";
    const char *bodies[] = {"1 nan 2\n", "inf 0 0\n", "0 0 -inf\n", "1e39 0 0\n", "1 2 x\n",
                            "1 2 3abc\n", "1 2\n", "1 2 .\n"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "%s%s", head, bodies[i]);
        ck_assert_int_eq(load_status(text), MM_ERR_FORMAT);
    }
}
END_TEST

START_TEST(hostile_headers)
{
#define V3 "property float x\nproperty float y\nproperty float z\n"
    static const char *const bad[] = {
        "",
        "plx\nformat ascii 1.0\nelement vertex 1\n" V3 "end_header\n0 0 0\n",
        "ply\nelement vertex 1\n" V3 "end_header\n0 0 0\n",
        "ply\nformat ascii 2.0\nelement vertex 1\n" V3 "end_header\n0 0 0\n",
        "ply\nformat binary_middle_endian 1.0\nelement vertex 1\n" V3 "end_header\n0 0 0\n",
        "ply\nformat ascii 1.0\nelement vertex 1\n" V3,                       /* no end_header */
        "ply\nformat ascii 1.0\nproperty float x\nend_header\n",               /* no element */
        "ply\nformat ascii 1.0\nelement face 1\nproperty float x\nend_header\n1\n",
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
        "end_header\n0 0\n",                                                   /* no z */
        "ply\nformat ascii 1.0\nelement vertex 1\n" V3 "property uchar red\nend_header\n0 0 0 1\n",
        "ply\nformat ascii 1.0\nelement vertex 1\n" V3 "property int red\nproperty int green\n"
        "property int blue\nend_header\n0 0 0 1 1 1\n",                        /* colour type */
        "ply\nformat ascii 1.0\nelement vertex 1\n" V3 "property float red\nproperty float green\n"
        "property float blue\nend_header\n0 0 0 1 2 0\n",                      /* colour > 1 */
        "ply\nformat ascii 1.0\nelement vertex 0\n" V3 "end_header\n",         /* no points */
        "ply\nformat ascii 1.0\nelement vertex 5000\n" V3 "end_header\n0 0 0\n",
        "ply\nformat ascii 1.0\nelement vertex 99999999999999999999\n" V3 "end_header\n0 0 0\n",
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n0\n",
        "ply\nformat ascii 1.0\nelement vertex 1\n" V3 "property float x\nend_header\n0 0 0 0\n",
        "ply\nformat ascii 1.0\nelement vertex 1\n" V3 "property list float int l\nend_header\n0 0 0 0\n",
        "ply\nformat ascii 1.0\nelement vertex 1\n" V3 "property list uchar int l\nend_header\n"
        "0 0 0 1000000000\n",                                                  /* list length */
        "ply\nformat ascii 1.0\nelement vertex 1\n" V3 "property list uchar int l\nend_header\n"
        "0 0 0 -1\n",
        "ply\nformat binary_little_endian 1.0\nelement junk 4000000000\nproperty double a\n"
        "element vertex 1\n" V3 "end_header\n",                                /* skip count */
        "ply\nformat ascii 1.0\nbogus line\nelement vertex 1\n" V3 "end_header\n0 0 0\n",
        "ply\nformat ascii 1.0\nelement vertex 1\nelement vertex 1\n" V3 "end_header\n0 0 0\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mm_status st = load_status(bad[i]);
        ck_assert_msg(st == MM_ERR_FORMAT, "case %zu: %s (%s)", i, mm_status_str(st),
                      mm_last_error());
    }
    /* A count beyond the limit is refused as such, before the bytes are looked at. */
    ck_assert_int_eq(load_status("ply\nformat ascii 1.0\nelement vertex 18446744073709551615\n"
                                 V3 "end_header\n0 0 0\n"), MM_ERR_LIMIT);
    /* A header longer than the reader's 64 KiB bound. */
    size_t n = 70000;
    char *big = malloc(n + 1);
    memcpy(big, "ply\nformat ascii 1.0\n", 21);
    memset(big + 21, '\n', n - 21);
    big[n] = '\0';
    ck_assert_int_eq(load_status(big), MM_ERR_FORMAT);
    free(big);
    /* Elements without properties are skipped without reading, whatever their count. */
    const char *empty = "ply\nformat ascii 1.0\nelement nothing 18446744073709551615\n"
                        "element vertex 1\n" V3 "end_header\n1 2 3\n";
    mm_points *p = load(empty, strlen(empty));
    CK_F(mm_points_xyz(p)[2], 3.0f);
    mm_points_free(p);
#undef V3
}
END_TEST

START_TEST(count_limit)
{
    const char *text = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                       "property float y\nproperty float z\nend_header\n0 0 0\n1 1 1\n2 2 2\n";
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_POINTS_MAX_COUNT, 2));
    mm_points *p = (mm_points *)1;
    ck_assert_status(mm_points_load_memory(text, strlen(text), o, &p), MM_ERR_LIMIT);
    ck_assert_ptr_null(p);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_POINTS_MAX_COUNT, 3));
    ck_assert_ok(mm_points_load_memory(text, strlen(text), o, &p));
    ck_assert_uint_eq(mm_points_count(p), 3);
    mm_points_free(p);
    ck_assert_status(mm_options_set_int(o, MM_OPT_POINTS_MAX_COUNT, 0), MM_ERR_ARG);
    mm_options_free(o);
}
END_TEST

START_TEST(from_arrays)
{
    const float xyz[6] = {1, 2, 3, -4, 5.5f, 6}, rgb[6] = {0, 0.5f, 1, 1, 1, 0};
    mm_points *p;
    ck_assert_ok(mm_points_from_arrays(xyz, rgb, 2, &p));
    ck_assert_uint_eq(mm_points_count(p), 2);
    ck_assert_int_eq(memcmp(mm_points_xyz(p), xyz, sizeof xyz), 0);
    ck_assert_int_eq(memcmp(mm_points_rgb(p), rgb, sizeof rgb), 0);
    ck_assert_ptr_null(mm_points_normals(p));
    mm_points_free(p);
    ck_assert_ok(mm_points_from_arrays(xyz, NULL, 2, &p));
    ck_assert_ptr_null(mm_points_rgb(p));
    mm_points_free(p);
    float bad[6] = {1, 2, 3, 4, NAN, 6}, bad_rgb[6] = {0, 0, 0, 0, 1.5f, 0};
    ck_assert_status(mm_points_from_arrays(bad, NULL, 2, &p), MM_ERR_ARG);
    ck_assert_ptr_null(p);
    bad[4] = -INFINITY;
    ck_assert_status(mm_points_from_arrays(bad, NULL, 2, &p), MM_ERR_ARG);
    ck_assert_status(mm_points_from_arrays(xyz, bad_rgb, 2, &p), MM_ERR_ARG);
    ck_assert_status(mm_points_from_arrays(xyz, NULL, 0, &p), MM_ERR_ARG);
}
END_TEST

START_TEST(load_file)
{
    buf w;
    write_binary(&w, 1, bin_xyz[1][1]);
    char path[] = "/tmp/mm_points_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "wb");
    ck_assert_uint_eq(fwrite(w.b, 1, w.n, f), w.n);
    fclose(f);
    mm_points *p;
    ck_assert_ok(mm_points_load_file(path, NULL, &p));
    ck_assert_uint_eq(mm_points_count(p), 3);
    CK_F(mm_points_xyz(p)[4], bin_xyz[1][1]);
    mm_points_free(p);
    remove(path);
    ck_assert_status(mm_points_load_file(path, NULL, &p), MM_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), path));
}
END_TEST

START_TEST(allocation_failures)
{
    buf w;
    write_binary(&w, 0, bin_xyz[1][1]);
    const float xyz[3] = {1, 2, 3}, rgb[3] = {0.5f, 0, 1};
    for (int call = 0; call < 2; call++)
        for (long n = 1;; n++) {
            long live = mmi_alloc_live();
            mmi_alloc_fail_at(n);
            mm_points *p = NULL;
            mm_status st = call ? mm_points_from_arrays(xyz, rgb, 1, &p)
                                : mm_points_load_memory(w.b, w.n, NULL, &p);
            mmi_alloc_fail_at(0);
            if (st == MM_OK) {
                mm_points_free(p);
                ck_assert_int_gt(n, 1);
                break;
            }
            ck_assert_int_eq(st, MM_ERR_NOMEM);
            ck_assert_ptr_null(p);
            ck_assert_int_eq(mmi_alloc_live(), live);
        }
}
END_TEST

/* The sampling steps of the point encoder on points along x at 0, 1, 2, 3, 10 (hand-worked:
 * from 0 the farthest is 10; then 3, at squared distance 9 from {0, 10}; then 1 and 2 tie at
 * 1, and the first index wins). */
START_TEST(sampling)
{
    const float xyz[15] = {0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 10, 0, 0};
    float scratch[5];
    int32_t idx[4];
    mmi_points_fps(xyz, 5, 4, 0, idx, scratch);
    ck_assert_int_eq(idx[0], 0); ck_assert_int_eq(idx[1], 4);
    ck_assert_int_eq(idx[2], 3); ck_assert_int_eq(idx[3], 1);
    mmi_points_fps(xyz, 5, 2, 7, idx, scratch); /* starts at 7 % 5 = 2; farthest is 10 */
    ck_assert_int_eq(idx[0], 2); ck_assert_int_eq(idx[1], 4);
    mmi_points_knn(xyz, 5, xyz + 6, 3, idx, scratch); /* around 2: itself, then 1 and 3 tied */
    ck_assert_int_eq(idx[0], 2); ck_assert_int_eq(idx[1], 1); ck_assert_int_eq(idx[2], 3);
    /* Normalised: mean 3.2 subtracted, the farthest (10, at 6.8) at distance 1. */
    float norm[15];
    mmi_points_normalise(xyz, 5, norm);
    CK_F(norm[0], -3.2f / 6.8f); CK_F(norm[12], 1.0f); CK_F(norm[1], 0.0f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("points");
    TCase *tc = tcase_create("ply");
    tcase_add_test(tc, ascii_with_colours_and_extras);
    tcase_add_loop_test(tc, binary_both_endians, 0, 2);
    tcase_add_test(tc, binary_truncated_everywhere);
    tcase_add_test(tc, non_finite_refused);
    tcase_add_test(tc, hostile_headers);
    tcase_add_test(tc, count_limit);
    tcase_add_test(tc, from_arrays);
    tcase_add_test(tc, load_file);
    tcase_add_test(tc, allocation_failures);
    tcase_add_test(tc, sampling);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
