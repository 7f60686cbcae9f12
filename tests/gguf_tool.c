/* Test helper for tests/check_gguf_interop.sh, which compares libmm's GGUF reader and writer
 * with the independent Python implementation in tools/gguf.py.
 *   gguf_tool dump FILE      every key (through the typed getters) and every tensor (converted
 *                            to f32 by mmi_tensor_to_f32), one line each, floats as bit patterns
 *   gguf_tool copy IN OUT    read IN and write it again with the writer, same order
 *   gguf_tool halve IN OUT   write each F32 tensor of IN as NAME.f16 and NAME.bf16 (the
 *                            writer's f32 -> f16 / bf16 rounding) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "gguf.h"

static int fail(const char *what)
{
    fprintf(stderr, "gguf_tool: %s: %s\n", what, mm_last_error());
    return 1;
}

static const char *type_name(mmi_gguf_type t)
{
    static const char *const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                        "str", "array", "u64", "i64", "f64"};
    return names[t];
}

static void print_hex(const void *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", ((const uint8_t *)data)[i]);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static int dump_scalar(const mmi_gguf *g, const char *key, mmi_gguf_type type)
{
    int64_t i;
    double d;
    int b;
    const char *s;
    size_t len;
    printf(" %s ", type_name(type));
    if (type == MMI_GGUF_STRING) {
        if (mmi_gguf_get_string(g, key, &s, &len) != MM_OK)
            return fail(key);
        printf("s");
        print_hex(s, len);
    } else if (type == MMI_GGUF_BOOL) {
        if (mmi_gguf_get_bool(g, key, &b) != MM_OK)
            return fail(key);
        printf("%d", b);
    } else if (type == MMI_GGUF_FLOAT32 || type == MMI_GGUF_FLOAT64) {
        if (mmi_gguf_get_float(g, key, &d) != MM_OK)
            return fail(key);
        if (type == MMI_GGUF_FLOAT32) {
            printf("%08" PRIx32, f32_bits((float)d));
        } else {
            uint64_t u;
            memcpy(&u, &d, 8);
            printf("%016" PRIx64, u);
        }
    } else {
        if (mmi_gguf_get_int(g, key, &i) != MM_OK)
            return fail(key);
        printf("%" PRId64, i);
    }
    return 0;
}

/* Arrays: strings item by item, integers and f32 through the converting getters; bools, f64
 * and nested arrays (no typed getter keeps them exactly) as the raw element bytes. */
static int dump_array(const mmi_gguf *g, const char *key)
{
    mmi_gguf_type elem;
    uint64_t n;
    if (mmi_gguf_get_array_info(g, key, &elem, &n) != MM_OK)
        return fail(key);
    if (elem == MMI_GGUF_STRING) {
        printf(" [str]");
        for (uint64_t i = 0; i < n; i++) {
            const char *s;
            size_t len;
            if (mmi_gguf_get_array_string(g, key, i, &s, &len) != MM_OK)
                return fail(key);
            printf(" s");
            print_hex(s, len);
        }
        return 0;
    }
    if (elem == MMI_GGUF_ARRAY || elem == MMI_GGUF_BOOL || elem == MMI_GGUF_FLOAT64) {
        mmi_gguf_type type;
        const void *raw;
        size_t size;
        if (mmi_gguf_get_raw(g, key, &type, &raw, &size) != MM_OK)
            return fail(key);
        printf(" [%s] raw ", type_name(elem));
        print_hex(raw, size);
        return 0;
    }
    printf(" [%s]", type_name(elem));
    int64_t *ints = mmi_array(n ? (size_t)n : 1, sizeof *ints);
    float *floats = mmi_array(n ? (size_t)n : 1, sizeof *floats);
    int st = !ints || !floats;
    if (!st && elem == MMI_GGUF_FLOAT32) {
        st = mmi_gguf_get_float_array(g, key, floats, n) != MM_OK;
        for (uint64_t i = 0; !st && i < n; i++)
            printf(" %08" PRIx32, f32_bits(floats[i]));
    } else if (!st) {
        st = mmi_gguf_get_int_array(g, key, ints, n) != MM_OK;
        for (uint64_t i = 0; !st && i < n; i++)
            printf(" %" PRId64, ints[i]);
    }
    mmi_free(ints);
    mmi_free(floats);
    return st ? fail(key) : 0;
}

static int dump(const char *path)
{
    mmi_gguf *g;
    if (mmi_gguf_open(path, 1, &g) != MM_OK)
        return fail(path);
    int st = 0;
    printf("version %u\n", mmi_gguf_version(g));
    for (uint64_t k = 0; k < mmi_gguf_n_kv(g) && !st; k++) {
        const char *key = mmi_gguf_key(g, k);
        mmi_gguf_type type;
        const void *raw;
        size_t size;
        if (mmi_gguf_get_raw(g, key, &type, &raw, &size) != MM_OK)
            return fail(key);
        printf("kv %s", key);
        st = type == MMI_GGUF_ARRAY ? dump_array(g, key) : dump_scalar(g, key, type);
        printf("\n");
    }
    for (uint64_t i = 0; i < mmi_gguf_n_tensors(g) && !st; i++) {
        const mmi_tensor *t = mmi_gguf_tensor(g, i);
        printf("tensor %s %s ", t->name, mmi_tensor_type_name(t->type));
        for (uint32_t d = 0; d < t->n_dims; d++)
            printf("%s%" PRIu64, d ? "," : "", t->ne[d]);
        float *v = mmi_array((size_t)t->n_elements, sizeof *v);
        if (!v || mmi_tensor_to_f32(t, 0, t->n_elements, v) != MM_OK) {
            mmi_free(v);
            st = fail(t->name);
            break;
        }
        for (uint64_t e = 0; e < t->n_elements; e++)
            printf(" %08" PRIx32, f32_bits(v[e]));
        printf("\n");
        mmi_free(v);
    }
    mmi_gguf_close(g);
    return st;
}

static int copy(const char *in, const char *out)
{
    mmi_gguf *g;
    mmi_gguf_writer *w;
    if (mmi_gguf_open(in, 0, &g) != MM_OK)
        return fail(in);
    if (mmi_gguf_writer_create(&w) != MM_OK) {
        mmi_gguf_close(g);
        return fail("writer");
    }
    mm_status st = MM_OK;
    int64_t alignment;
    if (mmi_gguf_get_int_or(g, "general.alignment", 32, &alignment) == MM_OK)
        st = mmi_gguf_writer_set_alignment(w, (uint32_t)alignment);
    for (uint64_t k = 0; k < mmi_gguf_n_kv(g) && st == MM_OK; k++) {
        const char *key = mmi_gguf_key(g, k);
        mmi_gguf_type type;
        const void *raw;
        size_t size;
        if (strcmp(key, "general.alignment") == 0)
            continue; /* written by the writer itself, last */
        st = mmi_gguf_get_raw(g, key, &type, &raw, &size);
        if (st == MM_OK)
            st = mmi_gguf_writer_add_raw(w, key, type, raw, size);
    }
    for (uint64_t i = 0; i < mmi_gguf_n_tensors(g) && st == MM_OK; i++) {
        const mmi_tensor *t = mmi_gguf_tensor(g, i);
        st = mmi_gguf_writer_add_tensor_raw(w, t->name, t->type, t->n_dims, t->ne, t->data,
                                            t->n_bytes);
    }
    if (st == MM_OK)
        st = mmi_gguf_writer_write_file(w, out);
    mmi_gguf_writer_free(w);
    mmi_gguf_close(g);
    return st == MM_OK ? 0 : fail(out);
}

static int halve(const char *in, const char *out)
{
    mmi_gguf *g;
    mmi_gguf_writer *w;
    if (mmi_gguf_open(in, 1, &g) != MM_OK)
        return fail(in);
    if (mmi_gguf_writer_create(&w) != MM_OK) {
        mmi_gguf_close(g);
        return fail("writer");
    }
    mm_status st = MM_OK;
    for (uint64_t i = 0; i < mmi_gguf_n_tensors(g) && st == MM_OK; i++) {
        const mmi_tensor *t = mmi_gguf_tensor(g, i);
        if (t->type != MMI_TENSOR_F32)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%s.f16", t->name);
        st = mmi_gguf_writer_add_tensor(w, name, MMI_TENSOR_F16, t->n_dims, t->ne, t->data);
        snprintf(name, sizeof name, "%s.bf16", t->name);
        if (st == MM_OK)
            st = mmi_gguf_writer_add_tensor(w, name, MMI_TENSOR_BF16, t->n_dims, t->ne, t->data);
    }
    if (st == MM_OK)
        st = mmi_gguf_writer_write_file(w, out);
    mmi_gguf_writer_free(w);
    mmi_gguf_close(g);
    return st == MM_OK ? 0 : fail(out);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "dump") == 0)
        return dump(argv[2]);
    if (argc == 4 && strcmp(argv[1], "copy") == 0)
        return copy(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "halve") == 0)
        return halve(argv[2], argv[3]);
    fprintf(stderr, "usage: gguf_tool dump FILE | gguf_tool copy|halve IN OUT\n");
    return 2;
}
