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

START_TEST(round_trip_memory)
{
    mmi_gguf_writer *w = make_writer();
    void *data;
    size_t size;
    ck_assert_ok(mmi_gguf_writer_write_memory(w, &data, &size));
    mmi_gguf_writer_free(w);
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(data, size, &g));
    mmi_free(data);
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
        ck_assert_ok(mmi_gguf_open(test_shared_path("vectors/tokenizer/ggml-vocab-llama-spm.gguf"),
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

        ck_assert_ok(mmi_gguf_open(test_shared_path("vectors/tokenizer/ggml-vocab-gpt-2.gguf"),
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
    tcase_add_test(tc, round_trip_file_mmap_and_read);
    tcase_add_test(tc, reads_llama_cpp_vocab_files);
    tcase_add_test(tc, open_reports_io_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(gguf_suite());
}
