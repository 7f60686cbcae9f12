/* GGUF reader and writer: half-float conversions against hand-computed bit patterns, exact
 * write -> read round trips for every metadata and tensor type, real llama.cpp files, and a
 * corpus of broken files built here (each must fail with MM_ERR_FORMAT naming the problem). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "gguf.h"
#include "mm.h"
#include "testutil.h"

/* A file name for this test process under $TMPDIR. */
static const char *temp_path(const char *name)
{
    static char path[512];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/test_gguf_%ld_%s", dir ? dir : "/tmp", (long)getpid(), name);
    return path;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define ck_assert_message_has(text)                                                             \
    ck_assert_msg(strstr(mm_last_error(), (text)) != NULL, "error \"%s\" lacks \"%s\"",         \
                  mm_last_error(), (text))

/* ---------------------------------------------------------------------------------------------
 * Half-precision conversions. Expected bit patterns are worked out by hand from IEEE 754:
 * f16 = 1 sign, 5 exponent (bias 15), 10 mantissa bits; bf16 = the top 16 bits of an f32.
 * ------------------------------------------------------------------------------------------- */

START_TEST(f32_to_f16_bit_patterns)
{
    static const struct { float in; uint16_t out; } cases[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000},
        {0.5f, 0x3800}, {65504.0f, 0x7bff},              /* largest finite */
        {65519.0f, 0x7bff},                              /* below the halfway point */
        {65520.0f, 0x7c00},                              /* halfway to 2^16, ties to even: inf */
        {1e10f, 0x7c00}, {-1e10f, 0xfc00},
        {0x1p-14f, 0x0400},                              /* smallest normal */
        {0x1p-24f, 0x0001},                              /* smallest subnormal */
        {0x3ffp-24f, 0x03ff},                            /* largest subnormal */
        {0x1p-25f, 0x0000},                              /* half the smallest: ties to even, 0 */
        {0x3p-26f, 0x0001},                              /* 0.75 * 2^-24 rounds up */
        {0x7ffp-25f, 0x0400},                            /* 1023.5 * 2^-24: tie, even is 0x400 */
        {0x5p-26f, 0x0001},                              /* 1.25 * 2^-24 rounds down */
        {0x1p-30f, 0x0000}, {-0x1p-24f, 0x8001},
        {1.0f + 0x1p-11f, 0x3c00},                       /* tie between 0x3c00 and 0x3c01 */
        {1.0f + 0x3p-11f, 0x3c02},                       /* tie between 0x3c01 and 0x3c02 */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},            /* just above the tie */
        {1.0f - 0x1p-12f, 0x3c00},                       /* tie between 0x3bff and 0x3c00 */
        {0x1.ffcp15f, 0x7bff}, {0x1.ffep15f, 0x7c00},    /* 65504 and the tie above it */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(mmi_f32_to_f16(cases[i].in) == cases[i].out, "%a -> 0x%04x, expected 0x%04x",
                      (double)cases[i].in, mmi_f32_to_f16(cases[i].in), cases[i].out);
    ck_assert_uint_eq(mmi_f32_to_f16(INFINITY), 0x7c00);
    ck_assert_uint_eq(mmi_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t nan = mmi_f32_to_f16(NAN);
    ck_assert_msg((nan & 0x7c00) == 0x7c00 && (nan & 0x03ff) != 0, "nan -> 0x%04x", nan);
    /* A signalling nan whose payload sits only in the low bits must not become inf. */
    nan = mmi_f32_to_f16(bits_f32(0x7f800001));
    ck_assert_msg((nan & 0x7c00) == 0x7c00 && (nan & 0x03ff) != 0, "snan -> 0x%04x", nan);
}
END_TEST

START_TEST(f16_to_f32_values)
{
    ck_assert_float_eq(mmi_f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(mmi_f16_to_f32(0xc000), -2.0f);
    ck_assert_float_eq(mmi_f16_to_f32(0x7bff), 65504.0f);
    ck_assert_float_eq(mmi_f16_to_f32(0xfbff), -65504.0f);
    ck_assert_float_eq(mmi_f16_to_f32(0x0001), 0x1p-24f);
    ck_assert_float_eq(mmi_f16_to_f32(0x03ff), 0x3ffp-24f);
    ck_assert_float_eq(mmi_f16_to_f32(0x0400), 0x1p-14f);
    ck_assert_float_eq(mmi_f16_to_f32(0x3555), 0x1.554p-2f); /* nearest half to 1/3 */
    ck_assert_uint_eq(f32_bits(mmi_f16_to_f32(0x8000)), 0x80000000u);
    ck_assert_uint_eq(f32_bits(mmi_f16_to_f32(0x7c00)), 0x7f800000u);
    ck_assert_uint_eq(f32_bits(mmi_f16_to_f32(0xfc00)), 0xff800000u);
    ck_assert(isnan(mmi_f16_to_f32(0x7e00)));
    ck_assert(isnan(mmi_f16_to_f32(0x7c01)));
    /* Every finite half survives f16 -> f32 -> f16 unchanged. */
    for (uint32_t h = 0; h < 0x10000; h++)
        if ((h & 0x7c00) != 0x7c00)
            ck_assert_uint_eq(mmi_f32_to_f16(mmi_f16_to_f32((uint16_t)h)), h);
}
END_TEST

START_TEST(bf16_bit_patterns)
{
    ck_assert_uint_eq(mmi_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(mmi_f32_to_bf16(-2.0f), 0xc000);
    ck_assert_uint_eq(mmi_f32_to_bf16(bits_f32(0x3f808000)), 0x3f80); /* tie, even stays */
    ck_assert_uint_eq(mmi_f32_to_bf16(bits_f32(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    ck_assert_uint_eq(mmi_f32_to_bf16(bits_f32(0x3f808001)), 0x3f81); /* above the tie */
    ck_assert_uint_eq(mmi_f32_to_bf16(bits_f32(0x3f807fff)), 0x3f80);
    ck_assert_uint_eq(mmi_f32_to_bf16(bits_f32(0x7f7fffff)), 0x7f80); /* max float -> inf */
    ck_assert_uint_eq(mmi_f32_to_bf16(INFINITY), 0x7f80);
    ck_assert_uint_eq(mmi_f32_to_bf16(-INFINITY), 0xff80);
    ck_assert_uint_eq(mmi_f32_to_bf16(bits_f32(0x00010000)), 0x0001); /* subnormal */
    ck_assert_uint_eq(mmi_f32_to_bf16(-0.0f), 0x8000);
    uint16_t nan = mmi_f32_to_bf16(bits_f32(0x7f800001)); /* payload only in dropped bits */
    ck_assert_msg((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0, "snan -> 0x%04x", nan);
    ck_assert_uint_eq(f32_bits(mmi_bf16_to_f32(0x0001)), 0x00010000u);
    ck_assert_uint_eq(f32_bits(mmi_bf16_to_f32(0xff80)), 0xff800000u);
    ck_assert_float_eq(mmi_bf16_to_f32(0x4049), 3.140625f);
    ck_assert(isnan(mmi_bf16_to_f32(0x7fc0)));
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------------------------- */

/* Q8_0 block: f16 scale d then 32 int8 values, x = d * q. Q4_0 block: f16 scale d then 16
 * bytes; byte j holds element j in its low nibble and element j + 16 in its high nibble,
 * x = d * (nibble - 8). (Layouts as documented for ggml's block_q8_0 / block_q4_0.) */
static void make_q8_0(uint8_t block[34], float expected[32])
{
    block[0] = 0x00; block[1] = 0x38; /* d = f16 0x3800 = 0.5 */
    for (int j = 0; j < 32; j++) {
        int8_t q = (int8_t)(j * 8 - 128); /* -128, -120, ..., 120 */
        memcpy(&block[2 + j], &q, 1);
        expected[j] = 0.5f * (float)q;
    }
}

static void make_q4_0(uint8_t block[18], float expected[32])
{
    block[0] = 0x00; block[1] = 0x40; /* d = f16 0x4000 = 2.0 */
    for (int j = 0; j < 16; j++) {
        block[2 + j] = (uint8_t)(j | ((15 - j) << 4));
        expected[j] = 2.0f * (float)(j - 8);
        expected[j + 16] = 2.0f * (float)(15 - j - 8);
    }
}

/* Nested array value in file layout: array of 3 arrays: [u16 7, 9], [string "ab"], []. */
static size_t make_nested(uint8_t *p)
{
    static const uint8_t bytes[] = {
        9, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,               /* array of 3 arrays */
        2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 9, 0,   /* u16 [7, 9] */
        8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,               /* string [...] */
        2, 0, 0, 0, 0, 0, 0, 0, 'a', 'b',                 /*   "ab" */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,               /* u8 [] */
    };
    memcpy(p, bytes, sizeof bytes);
    return sizeof bytes;
}

static const float f32_values[6] = {1.5f, -2.25f, 0x1p-140f, 3.0e38f, -0.0f, 7.0f};
static const float f16_values[4] = {1.0f, -0.5f, 0x1p-24f, 65504.0f};  /* exact in f16 */
static const float bf16_values[3] = {3.140625f, -0x1.fep100f, 0x1p-130f}; /* exact in bf16 */

static mmi_gguf_writer *make_writer(void)
{
    mmi_gguf_writer *w;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    ck_assert_ok(mmi_gguf_writer_add_string(w, "general.architecture", "test"));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "t.u8", MMI_GGUF_UINT8, 200));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "t.i8", MMI_GGUF_INT8, -100));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "t.u16", MMI_GGUF_UINT16, 60000));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "t.i16", MMI_GGUF_INT16, -30000));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "t.u32", MMI_GGUF_UINT32, 4000000000LL));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "t.i32", MMI_GGUF_INT32, -2000000000LL));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "t.u64", MMI_GGUF_UINT64, INT64_MAX));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "t.i64", MMI_GGUF_INT64, INT64_MIN));
    ck_assert_ok(mmi_gguf_writer_add_float(w, "t.f32", MMI_GGUF_FLOAT32, 0.1f));
    ck_assert_ok(mmi_gguf_writer_add_float(w, "t.f64", MMI_GGUF_FLOAT64, 0.1));
    ck_assert_ok(mmi_gguf_writer_add_bool(w, "t.true", 1));
    ck_assert_ok(mmi_gguf_writer_add_bool(w, "t.false", 0));
    ck_assert_ok(mmi_gguf_writer_add_string(w, "t.str", "h\xc3\xa9llo"));
    ck_assert_ok(mmi_gguf_writer_add_string(w, "t.empty", ""));
    const uint8_t u8s[3] = {0, 1, 255};
    const int8_t i8s[2] = {-128, 127};
    const uint16_t u16s[2] = {0, 65535};
    const int16_t i16s[2] = {-32768, 32767};
    const uint32_t u32s[2] = {0, 4294967295u};
    const int32_t i32s[2] = {INT32_MIN, INT32_MAX};
    const uint64_t u64s[2] = {0, (uint64_t)INT64_MAX};
    const int64_t i64s[2] = {INT64_MIN, INT64_MAX};
    const float f32s[3] = {0.5f, -1e-3f, 1e30f};
    const double f64s[2] = {1.0 / 3.0, -1e300};
    const uint8_t bools[3] = {1, 0, 1};
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.u8", MMI_GGUF_UINT8, u8s, 3));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.i8", MMI_GGUF_INT8, i8s, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.u16", MMI_GGUF_UINT16, u16s, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.i16", MMI_GGUF_INT16, i16s, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.u32", MMI_GGUF_UINT32, u32s, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.i32", MMI_GGUF_INT32, i32s, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.u64", MMI_GGUF_UINT64, u64s, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.i64", MMI_GGUF_INT64, i64s, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.f32", MMI_GGUF_FLOAT32, f32s, 3));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.f64", MMI_GGUF_FLOAT64, f64s, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.bool", MMI_GGUF_BOOL, bools, 3));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "a.none", MMI_GGUF_INT32, NULL, 0));
    const char *const strs[3] = {"<s>", "", "\xe2\x96\x81the"};
    ck_assert_ok(mmi_gguf_writer_add_string_array(w, "a.str", strs, 3));
    uint8_t nested[128];
    size_t nested_size = make_nested(nested);
    ck_assert_ok(mmi_gguf_writer_add_raw(w, "a.nested", MMI_GGUF_ARRAY, nested, nested_size));

    const uint64_t ne_f32[2] = {3, 2}, ne_f16[1] = {4}, ne_bf16[3] = {1, 3, 1}, ne_q[2] = {32, 1};
    ck_assert_ok(mmi_gguf_writer_add_tensor(w, "w.f32", MMI_TENSOR_F32, 2, ne_f32, f32_values));
    ck_assert_ok(mmi_gguf_writer_add_tensor(w, "w.f16", MMI_TENSOR_F16, 1, ne_f16, f16_values));
    ck_assert_ok(mmi_gguf_writer_add_tensor(w, "w.bf16", MMI_TENSOR_BF16, 3, ne_bf16, bf16_values));
    uint8_t q8[34], q4[18];
    float expected[32];
    make_q8_0(q8, expected);
    make_q4_0(q4, expected);
    ck_assert_ok(mmi_gguf_writer_add_tensor_raw(w, "w.q8_0", MMI_TENSOR_Q8_0, 2, ne_q, q8, sizeof q8));
    ck_assert_ok(mmi_gguf_writer_add_tensor_raw(w, "w.q4_0", MMI_TENSOR_Q4_0, 2, ne_q, q4, sizeof q4));
    return w;
}

static void check_metadata(const mmi_gguf *g)
{
    int64_t i;
    double d;
    int b;
    const char *s;
    size_t len;
    ck_assert_uint_eq(mmi_gguf_version(g), 3);
    ck_assert_ok(mmi_gguf_get_string(g, "general.architecture", &s, &len));
    ck_assert_str_eq(s, "test");
    ck_assert_uint_eq(len, 4);
    static const struct { const char *key; int64_t v; } ints[] = {
        {"t.u8", 200}, {"t.i8", -100}, {"t.u16", 60000}, {"t.i16", -30000},
        {"t.u32", 4000000000LL}, {"t.i32", -2000000000LL}, {"t.u64", INT64_MAX}, {"t.i64", INT64_MIN},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        ck_assert_ok(mmi_gguf_get_int(g, ints[k].key, &i));
        ck_assert_msg(i == ints[k].v, "%s = %lld", ints[k].key, (long long)i);
    }
    ck_assert_ok(mmi_gguf_get_float(g, "t.f32", &d));
    ck_assert(d == (double)0.1f);
    ck_assert_ok(mmi_gguf_get_float(g, "t.f64", &d));
    ck_assert(d == 0.1);
    ck_assert_ok(mmi_gguf_get_bool(g, "t.true", &b));
    ck_assert_int_eq(b, 1);
    ck_assert_ok(mmi_gguf_get_bool(g, "t.false", &b));
    ck_assert_int_eq(b, 0);
    ck_assert_ok(mmi_gguf_get_string(g, "t.str", &s, &len));
    ck_assert_str_eq(s, "h\xc3\xa9llo");
    ck_assert_uint_eq(len, 6);
    ck_assert_ok(mmi_gguf_get_string(g, "t.empty", &s, NULL));
    ck_assert_str_eq(s, "");

    /* Defaults and type errors. */
    ck_assert_ok(mmi_gguf_get_int_or(g, "t.missing", 42, &i));
    ck_assert_int_eq(i, 42);
    ck_assert_ok(mmi_gguf_get_int_or(g, "t.u8", 42, &i));
    ck_assert_int_eq(i, 200);
    ck_assert_ok(mmi_gguf_get_float_or(g, "t.missing", 2.5, &d));
    ck_assert(d == 2.5);
    ck_assert_ok(mmi_gguf_get_bool_or(g, "t.missing", 1, &b));
    ck_assert_int_eq(b, 1);
    ck_assert(mmi_gguf_has(g, "t.u8") && !mmi_gguf_has(g, "t.missing"));
    ck_assert_status(mmi_gguf_get_int(g, "t.missing", &i), MM_ERR_FORMAT);
    ck_assert_message_has("'t.missing' not found");
    ck_assert_status(mmi_gguf_get_int(g, "t.str", &i), MM_ERR_FORMAT);
    ck_assert_message_has("'t.str'");
    ck_assert_status(mmi_gguf_get_float(g, "t.u8", &d), MM_ERR_FORMAT);
    ck_assert_status(mmi_gguf_get_bool(g, "t.u8", &b), MM_ERR_FORMAT);
    ck_assert_status(mmi_gguf_get_string(g, "t.u8", &s, NULL), MM_ERR_FORMAT);
    ck_assert_status(mmi_gguf_get_int_or(g, "t.str", 1, &i), MM_ERR_FORMAT);

    /* Arrays. */
    mmi_gguf_type type;
    uint64_t count;
    int64_t ints_out[3];
    float floats_out[3];
    ck_assert_ok(mmi_gguf_get_array_info(g, "a.u8", &type, &count));
    ck_assert_int_eq(type, MMI_GGUF_UINT8);
    ck_assert_uint_eq(count, 3);
    ck_assert_ok(mmi_gguf_get_int_array(g, "a.u8", ints_out, 3));
    ck_assert(ints_out[0] == 0 && ints_out[1] == 1 && ints_out[2] == 255);
    static const struct { const char *key; int64_t lo, hi; } arrays[] = {
        {"a.i8", -128, 127}, {"a.u16", 0, 65535}, {"a.i16", -32768, 32767},
        {"a.u32", 0, 4294967295LL}, {"a.i32", INT32_MIN, INT32_MAX}, {"a.u64", 0, INT64_MAX},
        {"a.i64", INT64_MIN, INT64_MAX},
    };
    for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++) {
        ck_assert_ok(mmi_gguf_get_int_array(g, arrays[k].key, ints_out, 2));
        ck_assert_msg(ints_out[0] == arrays[k].lo && ints_out[1] == arrays[k].hi, "%s", arrays[k].key);
    }
    ck_assert_ok(mmi_gguf_get_float_array(g, "a.f32", floats_out, 3));
    ck_assert(floats_out[0] == 0.5f && floats_out[1] == -1e-3f && floats_out[2] == 1e30f);
    ck_assert_ok(mmi_gguf_get_float_array(g, "a.f64", floats_out, 2));
    ck_assert(floats_out[0] == (float)(1.0 / 3.0) && floats_out[1] == -INFINITY);
    ck_assert_ok(mmi_gguf_get_float_array(g, "a.i16", floats_out, 2));
    ck_assert(floats_out[0] == -32768.0f && floats_out[1] == 32767.0f);
    ck_assert_ok(mmi_gguf_get_array_info(g, "a.bool", &type, &count));
    ck_assert(type == MMI_GGUF_BOOL && count == 3);
    ck_assert_ok(mmi_gguf_get_array_info(g, "a.none", &type, &count));
    ck_assert(type == MMI_GGUF_INT32 && count == 0);
    ck_assert_status(mmi_gguf_get_int_array(g, "a.u8", ints_out, 2), MM_ERR_FORMAT);
    ck_assert_message_has("'a.u8' has 3 elements, expected 2");
    ck_assert_status(mmi_gguf_get_int_array(g, "a.f32", ints_out, 3), MM_ERR_FORMAT);
    ck_assert_status(mmi_gguf_get_array_info(g, "t.u8", &type, &count), MM_ERR_FORMAT);

    ck_assert_ok(mmi_gguf_get_array_info(g, "a.str", &type, &count));
    ck_assert(type == MMI_GGUF_STRING && count == 3);
    ck_assert_ok(mmi_gguf_get_array_string(g, "a.str", 0, &s, &len));
    ck_assert_str_eq(s, "<s>");
    ck_assert_ok(mmi_gguf_get_array_string(g, "a.str", 1, &s, &len));
    ck_assert(s[0] == '\0' && len == 0);
    ck_assert_ok(mmi_gguf_get_array_string(g, "a.str", 2, &s, &len));
    ck_assert_str_eq(s, "\xe2\x96\x81the");
    ck_assert_status(mmi_gguf_get_array_string(g, "a.str", 3, &s, &len), MM_ERR_FORMAT);
    ck_assert_status(mmi_gguf_get_array_string(g, "a.u8", 0, &s, &len), MM_ERR_FORMAT);

    /* Nested arrays come back byte for byte. */
    uint8_t nested[128];
    size_t nested_size = make_nested(nested);
    const void *raw;
    size_t raw_size;
    ck_assert_ok(mmi_gguf_get_array_info(g, "a.nested", &type, &count));
    ck_assert(type == MMI_GGUF_ARRAY && count == 3);
    ck_assert_ok(mmi_gguf_get_raw(g, "a.nested", &type, &raw, &raw_size));
    ck_assert_int_eq(type, MMI_GGUF_ARRAY);
    ck_assert_uint_eq(raw_size, nested_size);
    ck_assert(memcmp(raw, nested, nested_size) == 0);
    ck_assert_ok(mmi_gguf_get_raw(g, "t.u16", &type, &raw, &raw_size));
    ck_assert(type == MMI_GGUF_UINT16 && raw_size == 2 && memcmp(raw, "\x60\xea", 2) == 0);
}

static void check_tensors(const mmi_gguf *g)
{
    ck_assert_uint_eq(mmi_gguf_n_tensors(g), 5);
    ck_assert_str_eq(mmi_gguf_tensor(g, 0)->name, "w.f32"); /* file order */
    ck_assert_str_eq(mmi_gguf_tensor(g, 4)->name, "w.q4_0");
    ck_assert_ptr_null(mmi_gguf_tensor(g, 5));
    ck_assert_ptr_null(mmi_gguf_find_tensor(g, "w.missing"));

    const mmi_tensor *t;
    float out[32];
    const uint64_t ne_f32[2] = {3, 2};
    ck_assert_ok(mmi_gguf_get_tensor(g, "w.f32", 2, ne_f32, &t));
    ck_assert(t->type == MMI_TENSOR_F32 && t->n_dims == 2 && t->n_elements == 6 && t->n_bytes == 24);
    ck_assert(t->ne[0] == 3 && t->ne[1] == 2 && t->ne[2] == 1 && t->ne[3] == 1);
    ck_assert_uint_eq((uintptr_t)t->data % 32, 0); /* default alignment of the data */
    ck_assert(memcmp(t->data, f32_values, sizeof f32_values) == 0);
    ck_assert_ok(mmi_tensor_to_f32(t, 0, 6, out));
    ck_assert(memcmp(out, f32_values, sizeof f32_values) == 0);
    ck_assert_ok(mmi_tensor_to_f32(t, 4, 2, out));
    ck_assert(out[0] == f32_values[4] && out[1] == 7.0f);
    ck_assert_status(mmi_tensor_to_f32(t, 4, 3, out), MM_ERR_ARG);

    const uint64_t wrong[2] = {2, 3};
    ck_assert_status(mmi_gguf_get_tensor(g, "w.f32", 2, wrong, &t), MM_ERR_FORMAT);
    ck_assert_message_has("'w.f32' has shape [3, 2], expected [2, 3]");
    ck_assert_status(mmi_gguf_get_tensor(g, "w.none", 0, NULL, &t), MM_ERR_FORMAT);
    ck_assert_message_has("'w.none' not found");

    ck_assert_ok(mmi_gguf_get_tensor(g, "w.f16", 0, NULL, &t));
    ck_assert(t->type == MMI_TENSOR_F16 && t->n_bytes == 8);
    ck_assert(memcmp(t->data, "\x00\x3c\x00\xb8\x01\x00\xff\x7b", 8) == 0);
    ck_assert_ok(mmi_tensor_to_f32(t, 0, 4, out));
    ck_assert(memcmp(out, f16_values, sizeof f16_values) == 0);

    const uint64_t ne_bf16[1] = {1}; /* [1, 3, 1]: ne[1] is 3, so a 1-d shape [1] differs */
    ck_assert_status(mmi_gguf_get_tensor(g, "w.bf16", 1, ne_bf16, &t), MM_ERR_FORMAT);
    const uint64_t ne_bf16_2[2] = {1, 3}; /* trailing 1s do not count */
    ck_assert_ok(mmi_gguf_get_tensor(g, "w.bf16", 2, ne_bf16_2, &t));
    ck_assert(t->type == MMI_TENSOR_BF16 && t->n_dims == 3 && t->n_bytes == 6);
    /* 3.140625 = 0x4049; -(1 + 127/128) * 2^100: sign 1, exponent 227, mantissa 0x7f = 0xf1ff;
     * 2^-130 is the f32 subnormal 0x00080000, so 0x0008. */
    ck_assert(memcmp(t->data, "\x49\x40\xff\xf1\x08\x00", 6) == 0);
    ck_assert_ok(mmi_tensor_to_f32(t, 0, 3, out));
    ck_assert(memcmp(out, bf16_values, sizeof bf16_values) == 0);

    uint8_t block[34];
    float expected[32];
    make_q8_0(block, expected);
    t = mmi_gguf_find_tensor(g, "w.q8_0");
    ck_assert(t && t->type == MMI_TENSOR_Q8_0 && t->n_bytes == 34 && t->n_elements == 32);
    ck_assert_ok(mmi_tensor_to_f32(t, 0, 32, out));
    ck_assert(memcmp(out, expected, sizeof expected) == 0);
    ck_assert(out[0] == -64.0f && out[31] == 60.0f);
    ck_assert_status(mmi_tensor_to_f32(t, 1, 2, out), MM_ERR_ARG); /* not at a block start */

    make_q4_0(block, expected);
    t = mmi_gguf_find_tensor(g, "w.q4_0");
    ck_assert(t && t->type == MMI_TENSOR_Q4_0 && t->n_bytes == 18);
    ck_assert_ok(mmi_tensor_to_f32(t, 0, 32, out));
    ck_assert(memcmp(out, expected, sizeof expected) == 0);
    ck_assert(out[0] == -16.0f && out[15] == 14.0f && out[16] == 14.0f && out[31] == -16.0f);
    float part[5];
    ck_assert_ok(mmi_tensor_to_f32(t, 0, 5, part)); /* a partial block */
    ck_assert(memcmp(part, expected, sizeof part) == 0);
}


/* The file a writer makes, opened from memory (the writer is freed). */
static mmi_gguf *open_written(mmi_gguf_writer *w)
{
    void *data;
    size_t size;
    ck_assert_ok(mmi_gguf_writer_write_memory(w, &data, &size));
    mmi_gguf_writer_free(w);
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(data, size, &g));
    mmi_free(data);
    return g;
}

/* Values as text (mm_model_meta_value, mm-info), written out by hand for each kind. */
START_TEST(values_as_text)
{
    mmi_gguf_writer *w;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    static const int32_t small[3] = {7, -2, 0};
    static const float floats[2] = {0.5f, 1e-5f};
    static const uint8_t bools[2] = {1, 0};
    static const char *const words[2] = {"a", "b"};
    int32_t many[17] = {0};
    ck_assert_ok(mmi_gguf_writer_add_string(w, "s", "text here"));
    static const uint8_t all_ones[8] = {255, 255, 255, 255, 255, 255, 255, 255};
    ck_assert_ok(mmi_gguf_writer_add_raw(w, "u64", MMI_GGUF_UINT64, all_ones, 8)); /* 2^64-1 */
    ck_assert_ok(mmi_gguf_writer_add_int(w, "i8", MMI_GGUF_INT8, -5));
    ck_assert_ok(mmi_gguf_writer_add_float(w, "f32", MMI_GGUF_FLOAT32, 0.1));
    ck_assert_ok(mmi_gguf_writer_add_bool(w, "b", 1));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "ints", MMI_GGUF_INT32, small, 3));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "floats", MMI_GGUF_FLOAT32, floats, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "bools", MMI_GGUF_BOOL, bools, 2));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "many", MMI_GGUF_INT32, many, 17));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "none", MMI_GGUF_INT32, many, 0));
    ck_assert_ok(mmi_gguf_writer_add_string_array(w, "words", words, 2));
    mmi_gguf *g = open_written(w);
    static const char *const expected[] = {
        "text here", "18446744073709551615", "-5",
        "0.100000001",            /* f32(0.1) to 9 digits */
        "true", "[7, -2, 0]",
        "[0.5, 9.99999975e-06]", /* f32(1e-5) */
        "[2 bools]", "[17 numbers]", "[]", "[2 strings]",
    };
    ck_assert_uint_eq(mmi_gguf_n_kv(g), 11);
    for (uint64_t i = 0; i < 11; i++) {
        char buf[64];
        size_t len;
        mmi_gguf_value_text(g, i, buf, sizeof buf, &len);
        ck_assert_msg(strcmp(buf, expected[i]) == 0, "%s: \"%s\"", mmi_gguf_key(g, i), buf);
        ck_assert_uint_eq(len, strlen(expected[i]));
        /* Cut short: NUL-terminated, the whole length still reported. */
        mmi_gguf_value_text(g, i, buf, 3, &len);
        ck_assert_uint_eq(strlen(buf), len < 3 ? len : 2);
        ck_assert_uint_eq(len, strlen(expected[i]));
    }
    mmi_gguf_close(g);
}
END_TEST

START_TEST(round_trip_memory)
{
    mmi_gguf_writer *w = make_writer();
    mmi_gguf *g = open_written(w);
    ck_assert_str_eq(mmi_gguf_path(g), "<memory>");
    check_metadata(g);
    check_tensors(g);
    mmi_gguf_close(g);
}
END_TEST

START_TEST(round_trip_file_mmap_and_read)
{
    mmi_gguf_writer *w = make_writer();
    const char *path = temp_path("round_trip.gguf");
    ck_assert_ok(mmi_gguf_writer_write_file(w, path));
    mmi_gguf_writer_free(w);
    for (int use_mmap = 0; use_mmap <= 1; use_mmap++) {
        mmi_gguf *g;
        ck_assert_ok(mmi_gguf_open(path, use_mmap, &g));
        ck_assert_str_eq(mmi_gguf_path(g), path);
        check_metadata(g);
        check_tensors(g);
        mmi_gguf_close(g);
    }
    unlink(path);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Real files written by llama.cpp. Expected values were read independently with Python's
 * struct module (a 20-line GGUF walker: magic, u32 version, u64 counts, then typed values):
 *   ggml-vocab-llama-spm.gguf: v3, 0 tensors, 22 keys; tokenizer.ggml.model "llama",
 *     tokens: 32000 strings, [0] "<unk>", [1] "<s>", [31999] "\xe7\xbb\x99"; scores f32 [31999]
 *     -31740.0; token_type i32 [0] 2; llama.block_count u32 32; add_bos_token bool true;
 *     add_eos_token false; layer_norm_rms_epsilon f32 9.999999747378752e-06.
 *   ggml-vocab-gpt-2.gguf: v3, 0 tensors, 16 keys; tokenizer.ggml.model "gpt2", pre "gpt-2",
 *     tokens: 50257, [50256] "<|endoftext|>"; merges: 50000, [0] "\xc4\xa0 t",
 *     [49999] "\xc4\xa0g azed"; bos_token_id u32 50256.
 * ------------------------------------------------------------------------------------------- */

START_TEST(reads_llama_cpp_vocab_files)
{
    for (int use_mmap = 0; use_mmap <= 1; use_mmap++) {
        mmi_gguf *g;
        const char *s;
        int64_t i;
        double d;
        int b;
        mmi_gguf_type type;
        uint64_t count;
        ck_assert_ok(mmi_gguf_open(test_vectors_path("tokenizer/ggml-vocab-llama-spm.gguf"),
                                   use_mmap, &g));
        ck_assert_uint_eq(mmi_gguf_version(g), 3);
        ck_assert_uint_eq(mmi_gguf_n_tensors(g), 0);
        ck_assert_ok(mmi_gguf_get_string(g, "tokenizer.ggml.model", &s, NULL));
        ck_assert_str_eq(s, "llama");
        ck_assert_ok(mmi_gguf_get_array_info(g, "tokenizer.ggml.tokens", &type, &count));
        ck_assert(type == MMI_GGUF_STRING && count == 32000);
        ck_assert_ok(mmi_gguf_get_array_string(g, "tokenizer.ggml.tokens", 0, &s, NULL));
        ck_assert_str_eq(s, "<unk>");
        ck_assert_ok(mmi_gguf_get_array_string(g, "tokenizer.ggml.tokens", 1, &s, NULL));
        ck_assert_str_eq(s, "<s>");
        ck_assert_ok(mmi_gguf_get_array_string(g, "tokenizer.ggml.tokens", 31999, &s, NULL));
        ck_assert_str_eq(s, "\xe7\xbb\x99");
        float *scores = mmi_array(32000, sizeof *scores);
        ck_assert_ok(mmi_gguf_get_float_array(g, "tokenizer.ggml.scores", scores, 32000));
        ck_assert(scores[31999] == -31740.0f && scores[0] == 0.0f);
        mmi_free(scores);
        int64_t *types = mmi_array(32000, sizeof *types);
        ck_assert_ok(mmi_gguf_get_int_array(g, "tokenizer.ggml.token_type", types, 32000));
        ck_assert(types[0] == 2 && types[1] == 3 && types[31999] == 1);
        mmi_free(types);
        ck_assert_ok(mmi_gguf_get_int(g, "llama.block_count", &i));
        ck_assert_int_eq(i, 32);
        ck_assert_ok(mmi_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b));
        ck_assert_int_eq(b, 1);
        ck_assert_ok(mmi_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b));
        ck_assert_int_eq(b, 0);
        ck_assert_ok(mmi_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &d));
        ck_assert(d == 9.999999747378752e-06);
        mmi_gguf_close(g);

        ck_assert_ok(mmi_gguf_open(test_vectors_path("tokenizer/ggml-vocab-gpt-2.gguf"),
                                   use_mmap, &g));
        ck_assert_ok(mmi_gguf_get_string(g, "tokenizer.ggml.model", &s, NULL));
        ck_assert_str_eq(s, "gpt2");
        ck_assert_ok(mmi_gguf_get_string(g, "tokenizer.ggml.pre", &s, NULL));
        ck_assert_str_eq(s, "gpt-2");
        ck_assert_ok(mmi_gguf_get_array_info(g, "tokenizer.ggml.tokens", &type, &count));
        ck_assert_uint_eq(count, 50257);
        ck_assert_ok(mmi_gguf_get_array_string(g, "tokenizer.ggml.tokens", 50256, &s, NULL));
        ck_assert_str_eq(s, "<|endoftext|>");
        ck_assert_ok(mmi_gguf_get_array_info(g, "tokenizer.ggml.merges", &type, &count));
        ck_assert_uint_eq(count, 50000);
        ck_assert_ok(mmi_gguf_get_array_string(g, "tokenizer.ggml.merges", 0, &s, NULL));
        ck_assert_str_eq(s, "\xc4\xa0 t");
        ck_assert_ok(mmi_gguf_get_array_string(g, "tokenizer.ggml.merges", 49999, &s, NULL));
        ck_assert_str_eq(s, "\xc4\xa0g azed");
        ck_assert_ok(mmi_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &i));
        ck_assert_int_eq(i, 50256);
        mmi_gguf_close(g);
    }
}
END_TEST

START_TEST(open_reports_io_errors)
{
    mmi_gguf *g = (mmi_gguf *)1;
    ck_assert_status(mmi_gguf_open("/nonexistent/model.gguf", 1, &g), MM_ERR_IO);
    ck_assert_ptr_null(g);
    ck_assert_message_has("/nonexistent/model.gguf");
    ck_assert_status(mmi_gguf_open("/tmp", 1, &g), MM_ERR_IO);
    ck_assert_status(mmi_gguf_open(NULL, 1, &g), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_open_memory(NULL, 0, &g), MM_ERR_FORMAT);
    ck_assert_message_has("magic");
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Broken files. A small builder writes GGUF bytes by hand so each field can be made hostile.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    uint8_t data[16384];
    size_t size;
} builder;

static void b_bytes(builder *b, const void *p, size_t n)
{
    ck_assert_uint_le(b->size + n, sizeof b->data);
    memcpy(b->data + b->size, p, n);
    b->size += n;
}

static void b_le(builder *b, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t byte = (uint8_t)(v >> (8 * i));
        b_bytes(b, &byte, 1);
    }
}

static void b_str(builder *b, const char *s)
{
    b_le(b, strlen(s), 8);
    b_bytes(b, s, strlen(s));
}

static void b_header(builder *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b->size = 0;
    b_bytes(b, "GGUF", 4);
    b_le(b, version, 4);
    b_le(b, n_tensors, 8);
    b_le(b, n_kv, 8);
}

static void b_kv_u32(builder *b, const char *key, uint32_t v)
{
    b_str(b, key);
    b_le(b, MMI_GGUF_UINT32, 4);
    b_le(b, v, 4);
}

/* Tensor info with up to 4 dims. */
static void b_tensor(builder *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                     uint32_t type, uint64_t offset)
{
    b_str(b, name);
    b_le(b, n_dims, 4);
    for (uint32_t d = 0; d < n_dims; d++)
        b_le(b, ne[d], 8);
    b_le(b, type, 4);
    b_le(b, offset, 8);
}

static void b_pad(builder *b, size_t alignment)
{
    while (b->size % alignment)
        b_le(b, 0, 1);
}

/* Open the built bytes; expect `status` and a message containing each of the given texts. */
static void expect_failure(const builder *b, mm_status status, const char *text1, const char *text2)
{
    mmi_gguf *g = (mmi_gguf *)1;
    ck_assert_status(mmi_gguf_open_memory(b->data, b->size, &g), status);
    ck_assert_ptr_null(g);
    ck_assert_message_has("<memory>");
    if (text1)
        ck_assert_message_has(text1);
    if (text2)
        ck_assert_message_has(text2);
}

static void expect_ok(const builder *b)
{
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(b->data, b->size, &g));
    mmi_gguf_close(g);
}

START_TEST(bad_magic_and_versions)
{
    builder b;
    b_header(&b, 3, 0, 0);
    expect_ok(&b);
    b.data[0] = 'g';
    expect_failure(&b, MM_ERR_FORMAT, "magic", "offset 0");
    b_header(&b, 2, 0, 0); /* v2 has the same layout as v3 for little-endian files */
    expect_ok(&b);
    b_header(&b, 0, 0, 0);
    expect_failure(&b, MM_ERR_FORMAT, "version 0", "offset 4");
    b_header(&b, 4, 0, 0);
    expect_failure(&b, MM_ERR_FORMAT, "version 4", NULL);
    b_header(&b, 1, 0, 0);
    expect_failure(&b, MM_ERR_UNSUPPORTED, "version 1", NULL);
    b_header(&b, 0x03000000, 0, 0); /* version 3 written big-endian */
    expect_failure(&b, MM_ERR_UNSUPPORTED, "big-endian", NULL);
    b.size = 3;
    expect_failure(&b, MM_ERR_FORMAT, "magic", NULL);
    b.size = 0;
    expect_failure(&b, MM_ERR_FORMAT, "magic", NULL);
}
END_TEST

START_TEST(huge_counts_and_lengths)
{
    builder b;
    b_header(&b, 3, 0, (uint64_t)1 << 63);
    b_kv_u32(&b, "a", 1);
    expect_failure(&b, MM_ERR_FORMAT, "metadata count 9223372036854775808", "offset 16");
    b_header(&b, 3, UINT64_MAX, 1);
    b_kv_u32(&b, "a", 1);
    expect_failure(&b, MM_ERR_FORMAT, "tensor count 18446744073709551615", "offset 8");
    b_header(&b, 3, 0, 1000); /* modest but more than the bytes can hold */
    b_kv_u32(&b, "a", 1);
    expect_failure(&b, MM_ERR_FORMAT, "metadata count 1000", NULL);

    /* Key length 2^63. */
    b_header(&b, 3, 0, 1);
    b_le(&b, (uint64_t)1 << 63, 8);
    b_bytes(&b, "abcdefghijklmnopqrstuvwxyz", 26);
    expect_failure(&b, MM_ERR_FORMAT, "key of metadata entry 0", "offset 24");
    /* String value length 2^63 and 2^64 - 1. */
    for (int k = 0; k < 2; k++) {
        b_header(&b, 3, 0, 1);
        b_str(&b, "s.key");
        b_le(&b, MMI_GGUF_STRING, 4);
        b_le(&b, k ? UINT64_MAX : (uint64_t)1 << 63, 8);
        b_bytes(&b, "xyz", 3);
        expect_failure(&b, MM_ERR_FORMAT, "string value", "offset 41");
    }
    /* Array lengths 2^63 of u8, of u32 (count * 4 overflows 64 bits), of strings, of arrays. */
    static const uint32_t elem_types[] = {MMI_GGUF_UINT8, MMI_GGUF_UINT32, MMI_GGUF_STRING,
                                          MMI_GGUF_ARRAY};
    for (size_t k = 0; k < 4; k++) {
        b_header(&b, 3, 0, 1);
        b_str(&b, "tokenizer.ggml.tokens");
        b_le(&b, MMI_GGUF_ARRAY, 4);
        b_le(&b, elem_types[k], 4);
        b_le(&b, (uint64_t)1 << 63, 8);
        b_le(&b, 0, 8);
        expect_failure(&b, MM_ERR_FORMAT, "'tokenizer.ggml.tokens'", "array length 9223372036854775808");
    }
    /* A string item inside an array claiming 2^63 bytes. */
    b_header(&b, 3, 0, 1);
    b_str(&b, "a.str");
    b_le(&b, MMI_GGUF_ARRAY, 4);
    b_le(&b, MMI_GGUF_STRING, 4);
    b_le(&b, 2, 8);
    b_str(&b, "ok");
    b_le(&b, (uint64_t)1 << 63, 8);
    expect_failure(&b, MM_ERR_FORMAT, "string value", "length 9223372036854775808");
    /* Tensor name length 2^63. */
    b_header(&b, 3, 1, 0);
    b_le(&b, (uint64_t)1 << 63, 8);
    b_bytes(&b, "0123456789012345678901234567890123456789", 40);
    expect_failure(&b, MM_ERR_FORMAT, "name of tensor 0", "offset 24");
}
END_TEST

START_TEST(bad_values)
{
    builder b;
    b_header(&b, 3, 0, 1);
    b_str(&b, "x.key");
    b_le(&b, 13, 4); /* value types end at 12 */
    b_le(&b, 0, 8);
    expect_failure(&b, MM_ERR_FORMAT, "'x.key'", "unknown value type 13");
    b_header(&b, 3, 0, 1);
    b_str(&b, "x.arr");
    b_le(&b, MMI_GGUF_ARRAY, 4);
    b_le(&b, 99, 4);
    b_le(&b, 1, 8);
    b_le(&b, 0, 8);
    expect_failure(&b, MM_ERR_FORMAT, "'x.arr'", "unknown array element type 99");
    b_header(&b, 3, 0, 1);
    b_str(&b, "x.bool");
    b_le(&b, MMI_GGUF_BOOL, 4);
    b_le(&b, 2, 1);
    expect_failure(&b, MM_ERR_FORMAT, "'x.bool'", "bool value 2");
    b_header(&b, 3, 0, 1);
    b_str(&b, "");
    b_le(&b, MMI_GGUF_UINT8, 4);
    b_le(&b, 0, 8);
    expect_failure(&b, MM_ERR_FORMAT, "key of metadata entry 0", "empty");
    b_header(&b, 3, 0, 1);
    b_le(&b, 3, 8);
    b_bytes(&b, "a\0b", 3);
    b_le(&b, MMI_GGUF_UINT8, 4);
    b_le(&b, 0, 1);
    expect_failure(&b, MM_ERR_FORMAT, "key of metadata entry 0", "NUL");
    /* Arrays nested 9 deep (8 is the limit). */
    b_header(&b, 3, 0, 1);
    b_str(&b, "x.deep");
    b_le(&b, MMI_GGUF_ARRAY, 4);
    for (int d = 0; d < 9; d++) {
        b_le(&b, MMI_GGUF_ARRAY, 4);
        b_le(&b, 1, 8);
    }
    b_le(&b, MMI_GGUF_UINT8, 4);
    b_le(&b, 0, 8);
    expect_failure(&b, MM_ERR_FORMAT, "'x.deep'", "nested deeper");
    /* 8 deep is fine. */
    b_header(&b, 3, 0, 1);
    b_str(&b, "x.deep");
    b_le(&b, MMI_GGUF_ARRAY, 4);
    for (int d = 0; d < 7; d++) {
        b_le(&b, MMI_GGUF_ARRAY, 4);
        b_le(&b, 1, 8);
    }
    b_le(&b, MMI_GGUF_UINT8, 4);
    b_le(&b, 0, 8);
    expect_ok(&b);
    /* A string value with a NUL inside: readable with its length, refused as a C string (a name
     * such as general.architecture "llama\0x" must not compare equal to "llama"). */
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.architecture");
    b_le(&b, MMI_GGUF_STRING, 4);
    b_le(&b, 7, 8);
    b_bytes(&b, "llama\0x", 7);
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(b.data, b.size, &g));
    const char *value;
    size_t value_len;
    ck_assert_ok(mmi_gguf_get_string(g, "general.architecture", &value, &value_len));
    ck_assert_uint_eq(value_len, 7);
    ck_assert_mem_eq(value, "llama\0x", 7);
    ck_assert_status(mmi_gguf_get_string(g, "general.architecture", &value, NULL),
                     MM_ERR_FORMAT);
    ck_assert_message_has("general.architecture");
    ck_assert_message_has("NUL");
    mmi_gguf_close(g);
    /* Duplicate keys. */
    b_header(&b, 3, 0, 3);
    b_kv_u32(&b, "llama.block_count", 1);
    b_kv_u32(&b, "other", 1);
    b_kv_u32(&b, "llama.block_count", 2);
    expect_failure(&b, MM_ERR_FORMAT, "duplicate key 'llama.block_count'", "offset");
}
END_TEST

START_TEST(bad_alignment)
{
    static const struct { uint32_t value; int ok; } cases[] = {
        {0, 0}, {3, 0}, {4, 0}, {48, 0}, {1u << 31, 0}, {0xffffffffu, 0}, {8, 1}, {64, 1}, {4096, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        builder b;
        b_header(&b, 3, 1, 1);
        b_kv_u32(&b, "general.alignment", cases[k].value);
        const uint64_t ne[1] = {2};
        b_tensor(&b, "t", 1, ne, MMI_TENSOR_F32, 0);
        b_pad(&b, cases[k].ok ? cases[k].value : 8);
        b_le(&b, 0, 8);
        if (cases[k].ok) {
            expect_ok(&b);
        } else {
            char value[32];
            snprintf(value, sizeof value, "%u is not a power of two", cases[k].value);
            expect_failure(&b, MM_ERR_FORMAT, "'general.alignment'", value);
        }
    }
    builder b;
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_le(&b, MMI_GGUF_STRING, 4);
    b_str(&b, "32");
    expect_failure(&b, MM_ERR_FORMAT, "'general.alignment'", "string");
}
END_TEST

/* A file with one or two tensor infos and `data_size` bytes of data after the header. */
static void b_tensor_file(builder *b, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                          uint64_t offset, size_t data_size)
{
    b_header(b, 3, 1, 0);
    b_tensor(b, "blk.0.attn_q.weight", n_dims, ne, type, offset);
    b_pad(b, 32);
    for (size_t i = 0; i < data_size; i++)
        b_le(b, 0, 1);
}

START_TEST(bad_tensor_infos)
{
    builder b;
    const uint64_t ok[2] = {4, 2};
    b_tensor_file(&b, 2, ok, MMI_TENSOR_F32, 0, 32);
    expect_ok(&b);
    b_tensor_file(&b, 2, ok, MMI_TENSOR_F32, 0, 31);
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "outside");
    b_tensor_file(&b, 2, ok, MMI_TENSOR_F32, 32, 32); /* data past the end */
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "offset 32");
    b_tensor_file(&b, 2, ok, MMI_TENSOR_F32, UINT64_MAX - 31, 32); /* offset + size overflows */
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "offset 18446744073709551584");
    b_tensor_file(&b, 2, ok, MMI_TENSOR_F32, 4, 64); /* misaligned */
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "offset 4 is not a multiple of the alignment 32");
    b_tensor_file(&b, 2, ok, MMI_TENSOR_F32, 0, 0); /* data section missing */
    expect_failure(&b, MM_ERR_FORMAT, "offset", NULL);

    const uint64_t zero[2] = {4, 0};
    b_tensor_file(&b, 2, zero, MMI_TENSOR_F32, 0, 32);
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "zero");
    const uint64_t huge[3] = {1ull << 32, 1ull << 32, 1ull << 32};
    b_tensor_file(&b, 3, huge, MMI_TENSOR_F32, 0, 32);
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "overflows");
    const uint64_t big[2] = {1ull << 40, 1ull << 20}; /* fits in 64 bits, not in the file */
    b_tensor_file(&b, 2, big, MMI_TENSOR_F16, 0, 32);
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "cannot fit");
    const uint64_t negative[1] = {(uint64_t)1 << 63};
    b_tensor_file(&b, 1, negative, MMI_TENSOR_F32, 0, 32);
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "overflows");
    const uint64_t five[5] = {1, 1, 1, 1, 1};
    b_tensor_file(&b, 5, five, MMI_TENSOR_F32, 0, 32);
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "5 dimensions");
    b_tensor_file(&b, 0, five, MMI_TENSOR_F32, 0, 32);
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "0 dimensions");
    const uint64_t row33[1] = {33};
    b_tensor_file(&b, 1, row33, MMI_TENSOR_Q8_0, 0, 128);
    expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "not a multiple of the block size");
    const uint64_t row32[1] = {32};
    b_tensor_file(&b, 1, row32, MMI_TENSOR_Q8_0, 0, 34);
    expect_ok(&b);
    /* Every quantized type: the row length, the data size and the block scales are checked. */
    for (uint32_t type = 0; type < MMI_TENSOR_COUNT; type++) {
        const mmi_type_traits *t = mmi_type(type);
        if (!t->weight || t->block_elems == 1)
            continue;
        const uint64_t two_blocks[1] = {2 * t->block_elems}, half_block[1] = {t->block_elems / 2};
        b_tensor_file(&b, 1, two_blocks, type, 0, 2 * t->block_bytes);
        expect_ok(&b);
        b_tensor_file(&b, 1, two_blocks, type, 0, 2 * t->block_bytes - 1); /* ends inside a block */
        expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "outside");
        b_tensor_file(&b, 1, half_block, type, 0, t->block_bytes);
        expect_failure(&b, MM_ERR_FORMAT, "'blk.0.attn_q.weight'", "not a multiple of the block size");
        for (int k = 0; k < 2 && t->scale_at[k] >= 0; k++)
            for (int nan = 0; nan < 2; nan++) {
                b_tensor_file(&b, 1, two_blocks, type, 0, 2 * t->block_bytes);
                uint8_t *scale = b.data + b.size - t->block_bytes + t->scale_at[k];
                scale[0] = nan ? 0x01 : 0x00; /* f16 0x7c00 is inf, 0x7c01 a NaN */
                scale[1] = 0x7c;
                char what[64];
                snprintf(what, sizeof what, "'blk.0.attn_q.weight' (%s)", t->name);
                expect_failure(&b, MM_ERR_FORMAT, what, "block scale is infinite or NaN");
            }
    }
    b_tensor_file(&b, 1, row32, 16, 0, 144);
    expect_failure(&b, MM_ERR_UNSUPPORTED, "unsupported tensor type IQ2_XXS (16) in tensor 'blk.0.attn_q.weight'", NULL);
    b_tensor_file(&b, 1, row32, MMI_TENSOR_Q8_K, 0, 292);
    expect_failure(&b, MM_ERR_UNSUPPORTED, "unsupported tensor type Q8_K (15) in tensor 'blk.0.attn_q.weight'", NULL);
    b_tensor_file(&b, 1, row32, 1000, 0, 144);
    expect_failure(&b, MM_ERR_UNSUPPORTED, "unsupported tensor type", "'blk.0.attn_q.weight'");

    /* Two tensors: duplicate names, overlapping data. */
    const uint64_t ne[1] = {8};
    b_header(&b, 3, 2, 0);
    b_tensor(&b, "a", 1, ne, MMI_TENSOR_F32, 0);
    b_tensor(&b, "a", 1, ne, MMI_TENSOR_F32, 32);
    b_pad(&b, 32);
    b_le(&b, 0, 8); b_le(&b, 0, 8); b_le(&b, 0, 8); b_le(&b, 0, 8);
    b_le(&b, 0, 8); b_le(&b, 0, 8); b_le(&b, 0, 8); b_le(&b, 0, 8);
    expect_failure(&b, MM_ERR_FORMAT, "duplicate tensor name 'a'", NULL);
    const uint64_t ne12[1] = {12};
    b_header(&b, 3, 2, 0);
    b_tensor(&b, "first", 1, ne12, MMI_TENSOR_F32, 0); /* 48 bytes: runs into the next */
    b_tensor(&b, "second", 1, ne, MMI_TENSOR_F32, 32);
    b_pad(&b, 32);
    for (int k = 0; k < 8; k++)
        b_le(&b, 0, 8);
    expect_failure(&b, MM_ERR_FORMAT, "'first' and 'second' overlap", NULL);
}
END_TEST

/* A valid file whose last tensor ends exactly at the end of the file (no trailing padding). */
static void *tight_file(size_t *size)
{
    mmi_gguf_writer *w = make_writer();
    const uint64_t ne[1] = {8};
    const float last[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_ok(mmi_gguf_writer_add_tensor(w, "w.last", MMI_TENSOR_F32, 1, ne, last));
    void *data;
    ck_assert_ok(mmi_gguf_writer_write_memory(w, &data, size));
    mmi_gguf_writer_free(w);
    return data;
}

START_TEST(truncated_at_every_byte)
{
    size_t size;
    uint8_t *data = tight_file(&size);
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(data, size, &g));
    mmi_gguf_close(g);
    ck_assert_uint_eq(size, 1472); /* 1472 prefixes: every section and field is cut somewhere */
    for (size_t n = 0; n < size; n++) {
        g = (mmi_gguf *)1;
        mm_status st = mmi_gguf_open_memory(data, n, &g);
        ck_assert_msg(st == MM_ERR_FORMAT, "truncated to %zu of %zu bytes: status %d (%s)", n, size,
                      (int)st, mm_last_error());
        ck_assert_ptr_null(g);
        ck_assert_msg(strstr(mm_last_error(), "offset"), "truncated to %zu: \"%s\" gives no offset",
                      n, mm_last_error());
    }
    mmi_free(data);
}
END_TEST

/* Every header byte set to 0x00, 0xff and flipped, then 3000 random multi-byte corruptions:
 * whatever the status, no crash or out-of-bounds access (run under ASan/valgrind), and any
 * failure carries a message. */
START_TEST(corrupted_bytes_never_crash)
{
    size_t size;
    uint8_t *data = tight_file(&size);
    uint8_t *copy = mmi_malloc(size);
    int failures = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t round = 0; round < 3 * size + 3000; round++) {
        memcpy(copy, data, size);
        if (round < 3 * size) {
            size_t at = round / 3;
            copy[at] = round % 3 == 0 ? 0x00 : round % 3 == 1 ? 0xff : (uint8_t)(copy[at] ^ 0x80);
        } else {
            for (int k = 0; k < 4; k++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                copy[(seed >> 33) % size] = (uint8_t)(seed >> 20);
            }
        }
        mmi_gguf *g;
        mm_status st = mmi_gguf_open_memory(copy, size, &g);
        if (st == MM_OK) {
            /* Whatever parsed must be usable: read every tensor. */
            for (uint64_t i = 0; i < mmi_gguf_n_tensors(g); i++) {
                const mmi_tensor *t = mmi_gguf_tensor(g, i);
                float *out = mmi_array((size_t)t->n_elements, sizeof *out);
                ck_assert_ok(mmi_tensor_to_f32(t, 0, t->n_elements, out));
                mmi_free(out);
            }
            mmi_gguf_close(g);
        } else {
            ck_assert_msg(st == MM_ERR_FORMAT || st == MM_ERR_UNSUPPORTED, "status %d", (int)st);
            ck_assert(strlen(mm_last_error()) > 0);
            failures++;
        }
    }
    ck_assert_int_gt(failures, 0);
    mmi_free(copy);
    mmi_free(data);
}
END_TEST

/* Every allocation of open and of the writer made to fail in turn: MM_ERR_NOMEM, no leak. */
START_TEST(allocation_failures)
{
    size_t size;
    uint8_t *data = tight_file(&size);
    const char *path = temp_path("alloc.gguf");
    mmi_gguf_writer *w = make_writer();
    ck_assert_ok(mmi_gguf_writer_write_file(w, path));
    mmi_gguf_writer_free(w);
    for (int mode = 0; mode < 3; mode++) {
        for (long n = 1;; n++) {
            mmi_alloc_fail_at(n);
            mmi_gguf *g = NULL;
            mm_status st = mode == 0 ? mmi_gguf_open_memory(data, size, &g)
                                     : mmi_gguf_open(path, mode == 2, &g);
            long used = mmi_alloc_fail_at(0);
            if (st == MM_OK) {
                check_metadata(g);
                mmi_gguf_close(g);
                ck_assert_int_lt(used, n);
                break;
            }
            ck_assert_msg(st == MM_ERR_NOMEM, "mode %d, failing allocation %ld: %s", mode, n,
                          mm_last_error());
            ck_assert_ptr_null(g);
        }
    }
    unlink(path);
    /* The writer: each call either succeeds or reports NOMEM and leaves the writer usable. */
    for (long n = 1; n < 200; n++) {
        mmi_gguf_writer *wr;
        mmi_alloc_fail_at(n);
        mm_status st = mmi_gguf_writer_create(&wr);
        if (st != MM_OK) {
            mmi_alloc_fail_at(0);
            ck_assert_int_eq(st, MM_ERR_NOMEM);
            continue;
        }
        const char *items[2] = {"a", "b"};
        const uint64_t ne[1] = {4};
        const float v[4] = {1, 2, 3, 4};
        mm_status sts[5] = {
            mmi_gguf_writer_add_int(wr, "k.int", MMI_GGUF_INT32, 5),
            mmi_gguf_writer_add_string_array(wr, "k.items", items, 2),
            mmi_gguf_writer_add_tensor(wr, "t.f16", MMI_TENSOR_F16, 1, ne, v),
            mmi_gguf_writer_add_tensor(wr, "t.f32", MMI_TENSOR_F32, 1, ne, v),
            MM_OK,
        };
        void *out = NULL;
        size_t out_size;
        sts[4] = mmi_gguf_writer_write_memory(wr, &out, &out_size);
        mmi_alloc_fail_at(0);
        for (int k = 0; k < 5; k++)
            ck_assert(sts[k] == MM_OK || sts[k] == MM_ERR_NOMEM);
        if (sts[4] == MM_OK) {
            mmi_gguf *g;
            ck_assert_ok(mmi_gguf_open_memory(out, out_size, &g));
            ck_assert_uint_eq(mmi_gguf_n_tensors(g), (sts[2] == MM_OK) + (sts[3] == MM_OK));
            ck_assert_int_eq(mmi_gguf_has(g, "k.int"), sts[0] == MM_OK);
            ck_assert_int_eq(mmi_gguf_has(g, "k.items"), sts[1] == MM_OK);
            mmi_gguf_close(g);
        }
        mmi_free(out);
        mmi_gguf_writer_free(wr);
    }
    mmi_free(data);
}
END_TEST

START_TEST(writer_rejects_bad_input)
{
    mmi_gguf_writer *w;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "k", MMI_GGUF_UINT8, 255));
    ck_assert_status(mmi_gguf_writer_add_int(w, "k", MMI_GGUF_UINT8, 1), MM_ERR_ARG);
    ck_assert_message_has("duplicate key 'k'");
    ck_assert_status(mmi_gguf_writer_add_int(w, "k2", MMI_GGUF_UINT8, 256), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_int(w, "k2", MMI_GGUF_INT8, -129), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_int(w, "k2", MMI_GGUF_UINT64, -1), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_int(w, "k2", MMI_GGUF_FLOAT32, 1), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_float(w, "k2", MMI_GGUF_INT32, 1), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_int(w, "general.alignment", MMI_GGUF_UINT32, 64), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_int(w, "", MMI_GGUF_UINT32, 64), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_string(w, "k2", NULL), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_array(w, "k2", MMI_GGUF_STRING, "x", 1), MM_ERR_ARG);
    const uint8_t two = 2;
    ck_assert_status(mmi_gguf_writer_add_array(w, "k2", MMI_GGUF_BOOL, &two, 1), MM_ERR_ARG);
    const uint8_t raw[3] = {1, 2, 3};
    ck_assert_status(mmi_gguf_writer_add_raw(w, "k2", MMI_GGUF_UINT16, raw, 3), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_raw(w, "k2", MMI_GGUF_STRING, raw, 3), MM_ERR_FORMAT);
    ck_assert_status(mmi_gguf_writer_set_alignment(w, 12), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_set_alignment(w, 4), MM_ERR_ARG);
    const uint64_t ne[2] = {4, 2}, ne33[1] = {33};
    const float v[8] = {0};
    ck_assert_ok(mmi_gguf_writer_add_tensor(w, "t", MMI_TENSOR_F32, 2, ne, v));
    ck_assert_status(mmi_gguf_writer_add_tensor(w, "t", MMI_TENSOR_F32, 2, ne, v), MM_ERR_ARG);
    ck_assert_message_has("duplicate tensor name 't'");
    ck_assert_status(mmi_gguf_writer_add_tensor(w, "q", MMI_TENSOR_Q8_0, 2, ne, v), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_tensor(w, "u", MMI_TENSOR_F32, 5, ne, v), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_tensor_raw(w, "r", MMI_TENSOR_F32, 2, ne, v, 31), MM_ERR_ARG);
    ck_assert_status(mmi_gguf_writer_add_tensor_raw(w, "r", MMI_TENSOR_Q8_0, 1, ne33, v, 34), MM_ERR_ARG);
    /* Nothing that failed was written. */
    void *data;
    size_t size;
    ck_assert_ok(mmi_gguf_writer_write_memory(w, &data, &size));
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(data, size, &g));
    ck_assert(mmi_gguf_has(g, "k") && !mmi_gguf_has(g, "k2"));
    ck_assert_uint_eq(mmi_gguf_n_tensors(g), 1);
    mmi_gguf_close(g);
    mmi_free(data);
    mmi_gguf_writer_free(w);
}
END_TEST

START_TEST(custom_alignment_round_trip)
{
    mmi_gguf_writer *w;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    ck_assert_ok(mmi_gguf_writer_set_alignment(w, 64));
    const uint64_t ne[1] = {3};
    const float v[3] = {1, 2, 3};
    ck_assert_ok(mmi_gguf_writer_add_tensor(w, "a", MMI_TENSOR_F32, 1, ne, v));
    ck_assert_ok(mmi_gguf_writer_add_tensor(w, "b", MMI_TENSOR_F32, 1, ne, v));
    const char *path = temp_path("align64.gguf");
    ck_assert_ok(mmi_gguf_writer_write_file(w, path));
    mmi_gguf_writer_free(w);
    for (int use_mmap = 0; use_mmap <= 1; use_mmap++) {
        mmi_gguf *g;
        int64_t alignment;
        ck_assert_ok(mmi_gguf_open(path, use_mmap, &g));
        ck_assert_ok(mmi_gguf_get_int(g, "general.alignment", &alignment));
        ck_assert_int_eq(alignment, 64);
        const mmi_tensor *a = mmi_gguf_find_tensor(g, "a"), *b = mmi_gguf_find_tensor(g, "b");
        ck_assert_uint_eq((uintptr_t)a->data % 64, 0);
        ck_assert_int_eq((const uint8_t *)b->data - (const uint8_t *)a->data, 64);
        ck_assert(memcmp(b->data, v, sizeof v) == 0);
        mmi_gguf_close(g);
    }
    unlink(path);
}
END_TEST

static Suite *gguf_suite(void)
{
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("convert");
    tcase_add_test(tc, f32_to_f16_bit_patterns);
    tcase_add_test(tc, f16_to_f32_values);
    tcase_add_test(tc, bf16_bit_patterns);
    suite_add_tcase(s, tc);
    tc = tcase_create("round_trip");
    tcase_add_test(tc, round_trip_memory);
    tcase_add_test(tc, values_as_text);
    tcase_add_test(tc, round_trip_file_mmap_and_read);
    tcase_add_test(tc, reads_llama_cpp_vocab_files);
    tcase_add_test(tc, open_reports_io_errors);
    tcase_add_test(tc, writer_rejects_bad_input);
    tcase_add_test(tc, custom_alignment_round_trip);
    suite_add_tcase(s, tc);
    tc = tcase_create("broken_files");
    tcase_set_timeout(tc, 120); /* slow under valgrind */
    tcase_add_test(tc, bad_magic_and_versions);
    tcase_add_test(tc, huge_counts_and_lengths);
    tcase_add_test(tc, bad_values);
    tcase_add_test(tc, bad_alignment);
    tcase_add_test(tc, bad_tensor_infos);
    tcase_add_test(tc, truncated_at_every_byte);
    tcase_add_test(tc, corrupted_bytes_never_crash);
    tcase_add_test(tc, allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(gguf_suite());
}
