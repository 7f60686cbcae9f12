/* tests/safetensors.h, the test-data reader: hand-built files and hostile headers. */
#include <string.h>

#include "safetensors.h"
#include "testutil.h"

/* Build "u64 length + header + data" into buf; returns the total size. */
static size_t build(unsigned char *buf, const char *header, const void *data, size_t data_size)
{
    size_t n = strlen(header);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    memcpy(buf + 8 + n, data, data_size);
    return 8 + n + data_size;
}

START_TEST(reads_every_dtype)
{
    /* Little-endian bytes written out by hand. */
    const unsigned char data[] = {
        0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x20, 0xc0,                 /* F32 1.5, -2.5 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd0, 0x3f,                 /* F64 0.25 */
        0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,                 /* I64 -3 */
        0x07, 0x00, 0x00, 0x00,                                         /* I32 7 */
        0xff, 0x01,                                                     /* U8 255, 1 */
        0x34, 0x12,                                                     /* U16 0x1234 */
    };
    const char *header =
        "{\"__metadata__\": {\"format\": \"pt\", \"nested\": [1, {\"a\": null}]},"
        " \"f32\": {\"dtype\": \"F32\", \"shape\": [1, 2], \"data_offsets\": [0, 8]},"
        " \"f64\": {\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]},"
        " \"i64\": {\"shape\": [1], \"dtype\": \"I64\", \"data_offsets\": [16, 24]},"
        " \"i\\u0033\\\"2\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [24, 28]},"
        " \"u8\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [28, 30]},"
        " \"u16\": {\"dtype\": \"U16\", \"shape\": [1], \"data_offsets\": [30, 32]}}";
    unsigned char buf[1024];
    size_t size = build(buf, header, data, sizeof data);
    st_file f;
    ck_assert_msg(st_parse(&f, buf, size) == 0, "%s", f.error);
    ck_assert_int_eq(f.n_tensors, 6);

    int64_t shape[ST_MAX_DIMS];
    int ndim;
    size_t n;
    float *v = st_read_f32(&f, "f32", shape, &ndim, &n);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(ndim, 2);
    ck_assert_int_eq(shape[0], 1);
    ck_assert_int_eq(shape[1], 2);
    ck_assert_uint_eq(n, 2);
    ck_assert_float_eq(v[0], 1.5f);
    ck_assert_float_eq(v[1], -2.5f);
    free(v);

    v = st_read_f32(&f, "f64", shape, &ndim, &n);
    ck_assert_int_eq(ndim, 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_float_eq(v[0], 0.25f);
    free(v);
    v = st_read_f32(&f, "i64", NULL, NULL, NULL);
    ck_assert_float_eq(v[0], -3.0f);
    free(v);
    v = st_read_f32(&f, "i3\"2", NULL, NULL, NULL);  /* escaped name */
    ck_assert_ptr_nonnull(v);
    ck_assert_float_eq(v[0], 7.0f);
    free(v);
    v = st_read_f32(&f, "u8", NULL, NULL, NULL);
    ck_assert_float_eq(v[0], 255.0f);
    ck_assert_float_eq(v[1], 1.0f);
    free(v);
    v = st_read_f32(&f, "u16", NULL, NULL, NULL);
    ck_assert_float_eq(v[0], 4660.0f);
    free(v);

    st_dtype dt;
    size_t nbytes;
    unsigned char *raw = st_read_raw(&f, "u8", &dt, shape, &ndim, &nbytes);
    ck_assert_int_eq(dt, ST_U8);
    ck_assert_uint_eq(nbytes, 2);
    ck_assert_int_eq(raw[0], 255);
    free(raw);

    ck_assert_ptr_null(st_read_f32(&f, "missing", NULL, NULL, NULL));
    ck_assert_ptr_nonnull(strstr(f.error, "missing"));
    st_free(&f);
}
END_TEST

START_TEST(rejects_bad_headers)
{
    static const char *bad[] = {
        "",                                                            /* no object */
        "{",                                                           /* truncated */
        "[]",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 8]}}", /* size */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", /* order */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 99]}}", /* outside */
        "{\"a\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", /* dtype */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}",                 /* no offsets */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [99999999999999999999], \"data_offsets\": [0, 4]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
        "\"data_offsets\": [0, 4]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
        " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", /* twice */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}} x",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"b",
        "{\"__metadata__\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "{\"a\\u00e9\": {}}",
        "{\"a\\x\": {}}",
    };
    const unsigned char data[4] = {0};
    unsigned char buf[1024];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t size = build(buf, bad[i], data, sizeof data);
        st_file f;
        ck_assert_msg(st_parse(&f, buf, size) == -1, "case %zu accepted: %s", i, bad[i]);
        ck_assert_msg(strncmp(f.error, "safetensors: ", 13) == 0, "case %zu: '%s'", i, f.error);
        ck_assert_ptr_null(f.bytes);
        /* Every truncation of the header is refused too. */
        for (size_t cut = 0; cut < size; cut++)
            if (st_parse(&f, buf, cut) == 0)
                st_free(&f);
    }
    /* Header length larger than the file; a file shorter than 8 bytes. */
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    st_file f;
    ck_assert_int_eq(st_parse(&f, huge, sizeof huge), -1);
    ck_assert_int_eq(st_parse(&f, huge, 7), -1);
    ck_assert_int_eq(st_load(&f, "/nonexistent/x.safetensors"), -1);
    ck_assert_ptr_nonnull(strstr(f.error, "/nonexistent/x.safetensors"));
}
END_TEST

START_TEST(reads_shared_vectors)
{
    /* The preprocess case: uint8 and float32 tensors with shapes from its case.json. */
    st_file f;
    ck_assert_msg(st_load(&f, test_vectors_path("hf/preprocess/io.safetensors")) == 0,
                  "%s", f.error);
    int64_t shape[ST_MAX_DIMS];
    int ndim;
    size_t n;
    float *pv = st_read_f32(&f, "rgb_61x47.pixel_values_s32", shape, &ndim, &n);
    ck_assert_ptr_nonnull(pv);
    ck_assert_int_eq(ndim, 4);
    ck_assert_int_eq(shape[1], 3);
    ck_assert_int_eq(shape[3], 32);
    ck_assert_uint_eq(n, 3 * 32 * 32);
    free(pv);
    st_dtype dt;
    unsigned char *rgba = st_read_raw(&f, "rgba_40x64.decoded", &dt, shape, &ndim, &n);
    ck_assert_ptr_nonnull(rgba);
    ck_assert_int_eq(dt, ST_U8);
    ck_assert_int_eq(shape[0], 64);
    ck_assert_int_eq(shape[1], 40);
    ck_assert_int_eq(shape[2], 4);
    ck_assert_uint_eq(n, 64 * 40 * 4);
    free(rgba);
    st_free(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("reader");
    tcase_add_test(tc, reads_every_dtype);
    tcase_add_test(tc, rejects_bad_headers);
    tcase_add_test(tc, reads_shared_vectors);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
