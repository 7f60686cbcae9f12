/* GGUF v2/v3 reader and v3 writer.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv times
 * {string key, u32 type, value}; n_tensors times {string name, u32 n_dims, u64 ne[n_dims],
 * u32 type, u64 offset}; padding to `general.alignment` (default 32); tensor data, each tensor at
 * data_start + offset. A string is u64 length + bytes (no NUL); an array is u32 element type +
 * u64 count + elements.
 *
 * open() validates everything once: every length is compared with the bytes left before it is
 * used, so a hostile count can neither read out of bounds nor make us allocate more than the
 * file could hold. Afterwards lookups only binary-search sorted tables. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "status.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NESTING 8 /* arrays of arrays deeper than this are refused, bounding recursion */

/* ---------------------------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------------------------- */

static const char *value_type_name(uint32_t t)
{
    static const char *const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                        "string", "array", "u64", "i64", "f64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* Size of a scalar value type in the file; 0 for string, array and unknown types. */
static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case MMI_GGUF_UINT8: case MMI_GGUF_INT8: case MMI_GGUF_BOOL: return 1;
    case MMI_GGUF_UINT16: case MMI_GGUF_INT16: return 2;
    case MMI_GGUF_UINT32: case MMI_GGUF_INT32: case MMI_GGUF_FLOAT32: return 4;
    case MMI_GGUF_UINT64: case MMI_GGUF_INT64: case MMI_GGUF_FLOAT64: return 8;
    }
    return 0;
}

static int is_int_type(uint32_t t)
{
    return scalar_size(t) && t != MMI_GGUF_BOOL && t != MMI_GGUF_FLOAT32 && t != MMI_GGUF_FLOAT64;
}

static int is_float_type(uint32_t t)
{
    return t == MMI_GGUF_FLOAT32 || t == MMI_GGUF_FLOAT64;
}

/* Element count and data size of a tensor of `type` and shape ne[0..n_dims-1], each dimension
 * at least 1. Returns NULL, or what is wrong. Shared by the reader and the writer. */
static const char *tensor_size(uint32_t type, uint32_t n_dims, const uint64_t *ne,
                               uint64_t *n_elements, uint64_t *n_bytes)
{
    const mmi_type_traits *tt = mmi_type(type);
    uint64_t block_elems = tt->block_elems, block_bytes = tt->block_bytes;
    if (!tt->weight)
        return "unsupported tensor type";
    if (n_dims == 0 || n_dims > MMI_GGUF_MAX_DIMS)
        return "dimension count is not 1 to 4";
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0)
            return "a dimension is zero";
        if (ne[d] > (uint64_t)INT64_MAX || n > (uint64_t)INT64_MAX / ne[d])
            return "element count overflows";
        n *= ne[d];
    }
    if (ne[0] % block_elems)
        return "row length is not a multiple of the block size";
    *n_elements = n;
    *n_bytes = n / block_elems * block_bytes; /* n <= 2^63 and block_bytes/block_elems <= 4 */
    if (*n_bytes / block_bytes != n / block_elems || *n_bytes > SIZE_MAX)
        return "data size overflows";
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const char *key;      /* in the string store (set once parsing is done) */
    size_t key_at;        /* offset of the key in the store */
    uint32_t type;
    uint32_t elem_type;   /* arrays */
    uint64_t count;       /* arrays: elements */
    size_t value_offset;  /* file offset of the value (arrays: of the element type field) */
    size_t value_size;    /* bytes the value takes in the file */
    size_t str_at, str_len;      /* strings: NUL-terminated copy in the store */
    size_t *item_at, *item_len;  /* string arrays: one copy per item in the store */
} gguf_kv;

struct mmi_gguf {
    char *path;
    const uint8_t *base; /* the whole file */
    size_t size;
    void *map;           /* mmap'd file, or NULL when it was read into `buffer` */
    uint8_t *buffer;     /* allocation holding the file at `base`, 64-byte aligned */
    uint32_t version;
    uint64_t alignment;
    uint64_t n_kv;
    gguf_kv *kvs;        /* file order */
    const gguf_kv **by_key;
    uint64_t n_tensors;
    mmi_tensor *tensors; /* file order */
    const mmi_tensor **by_name;
    char *strings;       /* keys, string values, string items, tensor names; each NUL-ended */
    size_t strings_used, strings_cap;
};

/* Position in the file while parsing; every read checks the bytes left first. */
typedef struct {
    mmi_gguf *g;
    size_t pos;
} cursor;

static size_t left(const cursor *c)
{
    return c->g->size - c->pos;
}

static uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    while (n--)
        v = (v << 8) | p[n];
    return v;
}

static mm_status read_uint(cursor *c, size_t n, const char *what, uint64_t *v)
{
    if (left(c) < n)
        return mmi_fail(MM_ERR_FORMAT, "%s: truncated at byte offset %zu: %s needs %zu bytes, %zu left",
                        c->g->path, c->pos, what, n, left(c));
    *v = load_le(c->g->base + c->pos, n);
    c->pos += n;
    return MM_OK;
}

static mm_status read_u32(cursor *c, const char *what, uint32_t *v)
{
    uint64_t x = 0;
    MMI_TRY(read_uint(c, 4, what, &x));
    *v = (uint32_t)x;
    return MM_OK;
}

/* A string's length, checked against the bytes left; the cursor ends after the string. */
static mm_status read_string(cursor *c, const char *what, size_t *offset, size_t *len)
{
    uint64_t n = 0;
    MMI_TRY(read_uint(c, 8, what, &n));
    if (n > left(c))
        return mmi_fail(MM_ERR_FORMAT, "%s: %s at byte offset %zu has length %llu but only %zu bytes are left",
                        c->g->path, what, c->pos - 8, (unsigned long long)n, left(c));
    *offset = c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return MM_OK;
}

/* Copy len file bytes at `offset` into the string store, NUL-terminated; *at receives where.
 * The store grows geometrically and is bounded by the header size, so pointers into it are
 * only taken once parsing is done. */
static mm_status store_string(mmi_gguf *g, size_t offset, size_t len, size_t *at)
{
    if (g->strings_cap - g->strings_used <= len) {
        size_t cap = g->strings_cap ? g->strings_cap : 4096;
        while (cap - g->strings_used <= len && cap <= SIZE_MAX / 2)
            cap *= 2;
        if (cap - g->strings_used <= len)
            return mmi_fail(MM_ERR_NOMEM, "%s: metadata strings too large", g->path);
        char *s = mmi_realloc(g->strings, cap);
        if (!s)
            return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for metadata strings", g->path);
        g->strings = s;
        g->strings_cap = cap;
    }
    memcpy(g->strings + g->strings_used, g->base + offset, len);
    g->strings[g->strings_used + len] = '\0';
    *at = g->strings_used;
    g->strings_used += len + 1;
    return MM_OK;
}

/* A key or tensor name: non-empty and free of NUL bytes, so it can be looked up as a C string.
 * `name` receives a (possibly shortened) copy for messages. */
static mm_status read_name(cursor *c, const char *what, size_t *at, char *name, size_t name_size)
{
    size_t offset, len;
    MMI_TRY(read_string(c, what, &offset, &len));
    if (len == 0 || memchr(c->g->base + offset, '\0', len))
        return mmi_fail(MM_ERR_FORMAT, "%s: %s at byte offset %zu is %s", c->g->path, what,
                        offset - 8, len ? "not a valid name (contains a NUL byte)" : "empty");
    MMI_TRY(store_string(c->g, offset, len, at));
    snprintf(name, name_size, "%s", c->g->strings + *at);
    return MM_OK;
}

static mm_status skip_value(cursor *c, uint32_t type, const char *key, int depth);

/* An array header and its elements, checked; the cursor ends after the array. */
static mm_status skip_array(cursor *c, const char *key, int depth, uint32_t *elem_type,
                            uint64_t *count)
{
    size_t at = c->pos;
    MMI_TRY(read_u32(c, "array element type", elem_type));
    MMI_TRY(read_uint(c, 8, "array length", count));
    uint32_t t = *elem_type;
    uint64_t n = *count;
    size_t elem = scalar_size(t);
    if (!elem && t != MMI_GGUF_STRING && t != MMI_GGUF_ARRAY)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s': unknown array element type %u at byte offset %zu",
                        c->g->path, key, t, at);
    /* Every element takes at least `min` bytes: a longer count cannot be genuine. */
    size_t min = elem ? elem : t == MMI_GGUF_STRING ? 8 : 12;
    if (n > left(c) / min)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s': array length %llu at byte offset %zu exceeds the %zu bytes left",
                        c->g->path, key, (unsigned long long)n, at + 4, left(c));
    if (t == MMI_GGUF_ARRAY && depth >= GGUF_MAX_NESTING)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s': arrays nested deeper than %d at byte offset %zu",
                        c->g->path, key, GGUF_MAX_NESTING, at);
    if (elem && t != MMI_GGUF_BOOL) {
        c->pos += (size_t)n * elem;
        return MM_OK;
    }
    for (uint64_t i = 0; i < n; i++)
        MMI_TRY(skip_value(c, t, key, depth));
    return MM_OK;
}

/* One value of `type`, checked; the cursor ends after it. */
static mm_status skip_value(cursor *c, uint32_t type, const char *key, int depth)
{
    if (type == MMI_GGUF_STRING) {
        size_t offset, len;
        return read_string(c, "string value", &offset, &len);
    }
    if (type == MMI_GGUF_ARRAY) {
        uint32_t elem_type;
        uint64_t count;
        return skip_array(c, key, depth + 1, &elem_type, &count);
    }
    size_t n = scalar_size(type);
    if (!n)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s': unknown value type %u before byte offset %zu",
                        c->g->path, key, type, c->pos);
    if (left(c) < n)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s': truncated at byte offset %zu: %s value needs %zu bytes, %zu left",
                        c->g->path, key, c->pos, value_type_name(type), n, left(c));
    if (type == MMI_GGUF_BOOL && c->g->base[c->pos] > 1)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s': bool value %u at byte offset %zu is not 0 or 1",
                        c->g->path, key, c->g->base[c->pos], c->pos);
    c->pos += n;
    return MM_OK;
}

/* One key/value pair; string values and string-array items are copied into the store. */
static mm_status parse_kv(cursor *c, gguf_kv *kv, uint64_t index)
{
    char what[64], key[128];
    snprintf(what, sizeof what, "key of metadata entry %llu", (unsigned long long)index);
    MMI_TRY(read_name(c, what, &kv->key_at, key, sizeof key));
    MMI_TRY(read_u32(c, "value type", &kv->type));
    kv->value_offset = c->pos;
    if (kv->type == MMI_GGUF_STRING) {
        size_t offset;
        MMI_TRY(read_string(c, "string value", &offset, &kv->str_len));
        MMI_TRY(store_string(c->g, offset, kv->str_len, &kv->str_at));
    } else if (kv->type == MMI_GGUF_ARRAY) {
        MMI_TRY(skip_array(c, key, 1, &kv->elem_type, &kv->count));
        if (kv->elem_type == MMI_GGUF_STRING) {
            /* count <= bytes left / 8 was checked: these arrays are bounded by the file size. */
            kv->item_at = mmi_array((size_t)kv->count, sizeof *kv->item_at);
            kv->item_len = mmi_array((size_t)kv->count, sizeof *kv->item_len);
            if (!kv->item_at || !kv->item_len)
                return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for string array '%s'", c->g->path, key);
            cursor items = {c->g, kv->value_offset + 12};
            for (uint64_t i = 0; i < kv->count; i++) {
                size_t offset;
                MMI_TRY(read_string(&items, "string item", &offset, &kv->item_len[i]));
                MMI_TRY(store_string(c->g, offset, kv->item_len[i], &kv->item_at[i]));
            }
        }
    } else {
        MMI_TRY(skip_value(c, kv->type, key, 0));
    }
    kv->value_size = c->pos - kv->value_offset;
    return MM_OK;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp((*(const gguf_kv *const *)a)->key, (*(const gguf_kv *const *)b)->key);
}

static int tensor_name_cmp(const void *a, const void *b)
{
    return strcmp((*(const mmi_tensor *const *)a)->name, (*(const mmi_tensor *const *)b)->name);
}

static int tensor_data_cmp(const void *a, const void *b)
{
    const uint8_t *x = (*(const mmi_tensor *const *)a)->data;
    const uint8_t *y = (*(const mmi_tensor *const *)b)->data;
    return x < y ? -1 : x > y;
}

static const gguf_kv *find_kv(const mmi_gguf *g, const char *key)
{
    if (!g || !key)
        return NULL;
    gguf_kv probe = {.key = key};
    const gguf_kv *p = &probe;
    const gguf_kv **hit = bsearch(&p, g->by_key, (size_t)g->n_kv, sizeof *g->by_key, kv_cmp);
    return hit ? *hit : NULL;
}

/* One tensor info; its data offset goes to *offset, to be placed once the data section is
 * known. Name pointers are set later too (the store may still move). */
static mm_status parse_tensor_info(cursor *c, mmi_tensor *t, size_t *name_at, uint64_t *offset,
                                   uint64_t index)
{
    size_t start = c->pos;
    char what[64], name[128];
    snprintf(what, sizeof what, "name of tensor %llu", (unsigned long long)index);
    MMI_TRY(read_name(c, what, name_at, name, sizeof name));
    MMI_TRY(read_u32(c, "tensor dimension count", &t->n_dims));
    if (t->n_dims == 0 || t->n_dims > MMI_GGUF_MAX_DIMS)
        return mmi_fail(MM_ERR_FORMAT, "%s: tensor '%s' at byte offset %zu has %u dimensions (1 to %d allowed)",
                        c->g->path, name, start, t->n_dims, MMI_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < MMI_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d < t->n_dims)
            MMI_TRY(read_uint(c, 8, "tensor dimension", &t->ne[d]));
    }
    uint32_t type;
    MMI_TRY(read_u32(c, "tensor type", &type));
    t->type = (mmi_tensor_type)type;
    uint64_t n_bytes;
    if (!mmi_type(type)->weight)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: unsupported tensor type %s (%u) in tensor '%s'",
                        c->g->path, mmi_tensor_type_name(t->type), type, name);
    const char *bad = tensor_size(type, t->n_dims, t->ne, &t->n_elements, &n_bytes);
    if (bad)
        return mmi_fail(MM_ERR_FORMAT, "%s: tensor '%s' at byte offset %zu, type %s, shape [%llu, %llu, %llu, %llu]: %s",
                        c->g->path, name, start, mmi_tensor_type_name(t->type),
                        (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                        (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], bad);
    if (n_bytes > c->g->size)
        return mmi_fail(MM_ERR_FORMAT, "%s: tensor '%s' at byte offset %zu: %llu bytes of data cannot fit in the %zu-byte file",
                        c->g->path, name, start, (unsigned long long)n_bytes, c->g->size);
    t->n_bytes = (size_t)n_bytes;
    MMI_TRY(read_uint(c, 8, "tensor data offset", offset));
    if (*offset % c->g->alignment)
        return mmi_fail(MM_ERR_FORMAT, "%s: tensor '%s': data offset %llu is not a multiple of the alignment %llu",
                        c->g->path, name, (unsigned long long)*offset,
                        (unsigned long long)c->g->alignment);
    return MM_OK;
}

/* general.alignment, if present: an integer power of two, at least 8 (the spec asks for a
 * multiple of 8; this also keeps f32 data aligned). */
static mm_status read_alignment(mmi_gguf *g)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = find_kv(g, "general.alignment");
    if (!kv)
        return MM_OK;
    if (!is_int_type(kv->type) || kv->type == MMI_GGUF_INT64 || kv->type == MMI_GGUF_UINT64)
        return mmi_fail(MM_ERR_FORMAT, "%s: key 'general.alignment' has type %s, expected u32",
                        g->path, value_type_name(kv->type));
    uint64_t a = load_le(g->base + kv->value_offset, scalar_size(kv->type));
    if (a < 8 || a > (1u << 30) || (a & (a - 1)))
        return mmi_fail(MM_ERR_FORMAT, "%s: key 'general.alignment' at byte offset %zu: %llu is not a power of two from 8 to 2^30",
                        g->path, kv->value_offset, (unsigned long long)a);
    g->alignment = a;
    return MM_OK;
}

/* Set each tensor's data pointer from its offset and check it lies inside the data section
 * and overlaps no other tensor. */
static mm_status place_tensors(mmi_gguf *g, size_t header_end, const uint64_t *offsets)
{
    uint64_t data_start = (header_end + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors == 0)
        return MM_OK; /* the data section may be absent */
    if (data_start > g->size)
        return mmi_fail(MM_ERR_FORMAT, "%s: tensor data section starts at byte offset %llu, past the end of the %zu-byte file",
                        g->path, (unsigned long long)data_start, g->size);
    size_t data_size = g->size - (size_t)data_start;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        mmi_tensor *t = &g->tensors[i];
        if (offsets[i] > data_size || t->n_bytes > data_size - offsets[i])
            return mmi_fail(MM_ERR_FORMAT, "%s: tensor '%s': data at offset %llu + %zu bytes lies outside the %zu-byte data section (file byte offset %llu)",
                            g->path, t->name, (unsigned long long)offsets[i], t->n_bytes, data_size,
                            (unsigned long long)data_start);
        t->data = g->base + data_start + offsets[i];
        const mmi_type_traits *tt = mmi_type(t->type);
        if (!mmi_type_scales_finite(t->type, t->data, t->n_bytes / tt->block_bytes))
            return mmi_fail(MM_ERR_FORMAT, "%s: tensor '%s' (%s): a block scale is infinite or NaN",
                            g->path, t->name, tt->name);
    }
    /* Sort by data position in by_name's storage, check neighbours, then sort by name. */
    for (uint64_t i = 0; i < g->n_tensors; i++)
        g->by_name[i] = &g->tensors[i];
    qsort(g->by_name, (size_t)g->n_tensors, sizeof *g->by_name, tensor_data_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const mmi_tensor *a = g->by_name[i - 1], *b = g->by_name[i];
        if ((const uint8_t *)a->data + a->n_bytes > (const uint8_t *)b->data)
            return mmi_fail(MM_ERR_FORMAT, "%s: data of tensors '%s' and '%s' overlap (at data offset %zu)",
                            g->path, a->name, b->name,
                            (size_t)((const uint8_t *)b->data - g->base - data_start));
    }
    return MM_OK;
}

static mm_status parse(mmi_gguf *g)
{
    cursor c = {g, 0};
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0)
        return mmi_fail(MM_ERR_FORMAT, "%s: not a GGUF file (bad magic at byte offset 0)", g->path);
    c.pos = 4;
    MMI_TRY(read_u32(&c, "version", &g->version));
    if (g->version == 1)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (only 2 and 3)", g->path);
    if ((g->version & 0xffff) == 0 && (g->version >> 16) != 0)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: big-endian GGUF files are not supported", g->path);
    if (g->version != 2 && g->version != 3)
        return mmi_fail(MM_ERR_FORMAT, "%s: bad GGUF version %u at byte offset 4 (2 and 3 are supported)",
                        g->path, g->version);
    MMI_TRY(read_uint(&c, 8, "tensor count", &g->n_tensors));
    MMI_TRY(read_uint(&c, 8, "metadata count", &g->n_kv));

    /* The smallest key/value takes 8+1 (key) + 4 (type) + 1 (u8) bytes: a count above what the
     * file could hold is refused before it sizes an allocation. */
    if (g->n_kv > left(&c) / 14)
        return mmi_fail(MM_ERR_FORMAT, "%s: metadata count %llu at byte offset 16 exceeds what the %zu bytes left can hold",
                        g->path, (unsigned long long)g->n_kv, left(&c));
    g->kvs = mmi_calloc((size_t)g->n_kv, sizeof *g->kvs);
    g->by_key = mmi_calloc((size_t)g->n_kv, sizeof *g->by_key);
    if (!g->kvs || !g->by_key)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %llu metadata entries", g->path,
                        (unsigned long long)g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++)
        MMI_TRY(parse_kv(&c, &g->kvs[i], i));

    /* The smallest tensor info: 8+1 (name) + 4 + 8 (one dim) + 4 (type) + 8 (offset). */
    if (g->n_tensors > left(&c) / 33)
        return mmi_fail(MM_ERR_FORMAT, "%s: tensor count %llu at byte offset 8 exceeds what the %zu bytes left can hold",
                        g->path, (unsigned long long)g->n_tensors, left(&c));
    g->tensors = mmi_calloc((size_t)g->n_tensors, sizeof *g->tensors);
    g->by_name = mmi_calloc((size_t)g->n_tensors, sizeof *g->by_name);
    uint64_t *offsets = mmi_calloc((size_t)g->n_tensors, 2 * sizeof *offsets);
    if (!g->tensors || !g->by_name || !offsets) {
        mmi_free(offsets);
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %llu tensors", g->path,
                        (unsigned long long)g->n_tensors);
    }
    uint64_t *name_at = offsets + g->n_tensors;

    /* Keys are complete: point them into the store, sort, refuse duplicates, read alignment
     * (tensor offsets are checked against it). */
    for (uint64_t i = 0; i < g->n_kv; i++) {
        g->kvs[i].key = g->strings + g->kvs[i].key_at;
        g->by_key[i] = &g->kvs[i];
    }
    qsort(g->by_key, (size_t)g->n_kv, sizeof *g->by_key, kv_cmp);
    for (uint64_t i = 1; i < g->n_kv; i++) {
        const gguf_kv *a = g->by_key[i - 1], *b = g->by_key[i];
        if (strcmp(a->key, b->key) == 0) {
            mmi_free(offsets);
            return mmi_fail(MM_ERR_FORMAT, "%s: duplicate key '%s' (values at byte offsets %zu and %zu)",
                            g->path, a->key, a->value_offset, b->value_offset);
        }
    }
    mm_status st = read_alignment(g);
    for (uint64_t i = 0; i < g->n_tensors && st == MM_OK; i++) {
        size_t at;
        st = parse_tensor_info(&c, &g->tensors[i], &at, &offsets[i], i);
        name_at[i] = at;
    }
    if (st == MM_OK) {
        /* The store is complete: every pointer into it is final now. */
        for (uint64_t i = 0; i < g->n_kv; i++)
            g->kvs[i].key = g->strings + g->kvs[i].key_at;
        for (uint64_t i = 0; i < g->n_tensors; i++)
            g->tensors[i].name = g->strings + name_at[i];
        st = place_tensors(g, c.pos, offsets);
    }
    mmi_free(offsets);
    if (st != MM_OK)
        return st;
    qsort(g->by_name, (size_t)g->n_tensors, sizeof *g->by_name, tensor_name_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++)
        if (strcmp(g->by_name[i - 1]->name, g->by_name[i]->name) == 0)
            return mmi_fail(MM_ERR_FORMAT, "%s: duplicate tensor name '%s'", g->path, g->by_name[i]->name);
    return MM_OK;
}

void mmi_gguf_close(mmi_gguf *g)
{
    if (!g)
        return;
    if (g->map)
        munmap(g->map, g->size);
    mmi_free(g->buffer);
    for (uint64_t i = 0; g->kvs && i < g->n_kv; i++) {
        mmi_free(g->kvs[i].item_at);
        mmi_free(g->kvs[i].item_len);
    }
    mmi_free(g->kvs);
    mmi_free(g->by_key);
    mmi_free(g->tensors);
    mmi_free(g->by_name);
    mmi_free(g->strings);
    mmi_free(g->path);
    mmi_free(g);
}

static mm_status gguf_new(const char *path, mmi_gguf **out)
{
    mmi_gguf *g = mmi_calloc(1, sizeof *g);
    char *p = mmi_strdup(path);
    if (!g || !p) {
        mmi_free(g);
        mmi_free(p);
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory", path);
    }
    g->path = p;
    *out = g;
    return MM_OK;
}

static mm_status parse_or_close(mmi_gguf *g, mmi_gguf **out)
{
    mm_status st = parse(g);
    if (st != MM_OK) {
        mmi_gguf_close(g);
        return st;
    }
    *out = g;
    return MM_OK;
}

/* Room for the file in memory, its start 64-byte aligned like a mapping's, so that tensor
 * data keeps the file's alignment (32 by default) whichever way the file was loaded. */
static mm_status alloc_buffer(mmi_gguf *g)
{
    g->buffer = mmi_malloc(g->size + 63);
    if (!g->buffer)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %zu bytes", g->path, g->size);
    g->base = g->buffer + (64 - (uintptr_t)g->buffer % 64) % 64;
    return MM_OK;
}

mm_status mmi_gguf_open_memory(const void *data, size_t size, mmi_gguf **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mmi_gguf_open_memory: out is NULL");
    *out = NULL;
    if (!data && size)
        return mmi_fail(MM_ERR_ARG, "mmi_gguf_open_memory: data is NULL");
    mmi_gguf *g;
    MMI_TRY(gguf_new("<memory>", &g));
    g->size = size;
    mm_status st = size < SIZE_MAX - 63 ? alloc_buffer(g)
                                        : mmi_fail(MM_ERR_NOMEM, "<memory>: %zu bytes", size);
    if (st != MM_OK) {
        mmi_gguf_close(g);
        return st;
    }
    if (size)
        memcpy((uint8_t *)g->base, data, size);
    return parse_or_close(g, out);
}

/* Read the whole file into g->buffer. */
static mm_status read_file(mmi_gguf *g, int fd)
{
    MMI_TRY(alloc_buffer(g));
    uint8_t *dst = (uint8_t *)g->base;
    size_t done = 0;
    while (done < g->size) {
        ssize_t n = pread(fd, dst + done, g->size - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return mmi_fail(MM_ERR_IO, "%s: read failed at byte offset %zu: %s", g->path, done,
                            n < 0 ? strerror(errno) : "unexpected end of file");
        done += (size_t)n;
    }
    return MM_OK;
}

mm_status mmi_gguf_open(const char *path, int use_mmap, mmi_gguf **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mmi_gguf_open: out is NULL");
    *out = NULL;
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mmi_gguf_open: path is NULL");
    mmi_gguf *g;
    MMI_TRY(gguf_new(path, &g));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        mm_status st = mmi_fail(MM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        mmi_gguf_close(g);
        return st;
    }
    struct stat sb;
    mm_status st = MM_OK;
    if (fstat(fd, &sb) != 0)
        st = mmi_fail(MM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = mmi_fail(MM_ERR_IO, "%s: not a regular file", path);
    else if ((uint64_t)sb.st_size > SIZE_MAX - 63)
        st = mmi_fail(MM_ERR_IO, "%s: file too large to address", path);
    if (st == MM_OK) {
        g->size = (size_t)sb.st_size;
        if (use_mmap && g->size > 0) {
            void *map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (map != MAP_FAILED) {
                g->map = map;
                g->base = map;
            } else {
                mmi_log(MM_LOG_INFO, "%s: mmap failed (%s); reading the file instead", path,
                        strerror(errno));
            }
        }
        if (!g->map)
            st = read_file(g, fd);
    }
    close(fd);
    if (st != MM_OK) {
        mmi_gguf_close(g);
        return st;
    }
    return parse_or_close(g, out);
}

const char *mmi_gguf_path(const mmi_gguf *g)
{
    return g ? g->path : "<null>";
}

uint32_t mmi_gguf_version(const mmi_gguf *g)
{
    return g ? g->version : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Metadata getters
 * ------------------------------------------------------------------------------------------- */

uint64_t mmi_gguf_n_kv(const mmi_gguf *g)
{
    return g ? g->n_kv : 0;
}

const char *mmi_gguf_key(const mmi_gguf *g, uint64_t i)
{
    return g && i < g->n_kv ? g->kvs[i].key : NULL;
}

int mmi_gguf_has(const mmi_gguf *g, const char *key)
{
    return find_kv(g, key) != NULL;
}

/* The entry for key, or a failure naming it. */
static mm_status lookup(const mmi_gguf *g, const char *key, const gguf_kv **kv)
{
    if (!g || !key)
        return mmi_fail(MM_ERR_ARG, "GGUF lookup: %s is NULL", g ? "key" : "file");
    *kv = find_kv(g, key);
    if (!*kv)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s' not found", g->path, key);
    return MM_OK;
}

static mm_status wrong_type(const mmi_gguf *g, const gguf_kv *kv, const char *expected)
{
    if (kv->type == MMI_GGUF_ARRAY)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s' holds an array of %s, expected %s", g->path,
                        kv->key, value_type_name(kv->elem_type), expected);
    return mmi_fail(MM_ERR_FORMAT, "%s: key '%s' holds a %s, expected %s", g->path, kv->key,
                    value_type_name(kv->type), expected);
}

/* Integer scalar of `type` at p; 0 if it does not fit in int64 (a u64 above INT64_MAX). */
static int int_at(const uint8_t *p, uint32_t type, int64_t *v)
{
    uint64_t u = load_le(p, scalar_size(type));
    switch (type) {
    case MMI_GGUF_INT8: *v = (int8_t)(uint8_t)u; return 1;
    case MMI_GGUF_INT16: *v = (int16_t)(uint16_t)u; return 1;
    case MMI_GGUF_INT32: *v = (int32_t)(uint32_t)u; return 1;
    case MMI_GGUF_INT64: memcpy(v, &u, 8); return 1;
    }
    *v = (int64_t)u;
    return u <= (uint64_t)INT64_MAX;
}

static double float_at(const uint8_t *p, uint32_t type)
{
    uint64_t u = load_le(p, scalar_size(type));
    if (type == MMI_GGUF_FLOAT32)
        return mmi_bits_f32((uint32_t)u);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

mm_status mmi_gguf_get_int(const mmi_gguf *g, const char *key, int64_t *out)
{
    const gguf_kv *kv;
    MMI_TRY(lookup(g, key, &kv));
    if (!is_int_type(kv->type))
        return wrong_type(g, kv, "an integer");
    if (!int_at(g->base + kv->value_offset, kv->type, out))
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s': value %llu does not fit in int64", g->path,
                        key, (unsigned long long)*out);
    return MM_OK;
}

mm_status mmi_gguf_get_int_or(const mmi_gguf *g, const char *key, int64_t def, int64_t *out)
{
    if (g && !find_kv(g, key)) {
        *out = def;
        return MM_OK;
    }
    return mmi_gguf_get_int(g, key, out);
}

mm_status mmi_gguf_get_float(const mmi_gguf *g, const char *key, double *out)
{
    const gguf_kv *kv;
    MMI_TRY(lookup(g, key, &kv));
    if (!is_float_type(kv->type))
        return wrong_type(g, kv, "f32 or f64");
    *out = float_at(g->base + kv->value_offset, kv->type);
    return MM_OK;
}

mm_status mmi_gguf_get_float_or(const mmi_gguf *g, const char *key, double def, double *out)
{
    if (g && !find_kv(g, key)) {
        *out = def;
        return MM_OK;
    }
    return mmi_gguf_get_float(g, key, out);
}

mm_status mmi_gguf_get_bool(const mmi_gguf *g, const char *key, int *out)
{
    const gguf_kv *kv;
    MMI_TRY(lookup(g, key, &kv));
    if (kv->type != MMI_GGUF_BOOL)
        return wrong_type(g, kv, "bool");
    *out = g->base[kv->value_offset];
    return MM_OK;
}

mm_status mmi_gguf_get_bool_or(const mmi_gguf *g, const char *key, int def, int *out)
{
    if (g && !find_kv(g, key)) {
        *out = def;
        return MM_OK;
    }
    return mmi_gguf_get_bool(g, key, out);
}

mm_status mmi_gguf_get_string(const mmi_gguf *g, const char *key, const char **out, size_t *len)
{
    const gguf_kv *kv;
    MMI_TRY(lookup(g, key, &kv));
    if (kv->type != MMI_GGUF_STRING)
        return wrong_type(g, kv, "string");
    *out = g->strings + kv->str_at;
    if (len)
        *len = kv->str_len;
    else if (strlen(*out) != kv->str_len) /* read as a C string: "llama\0x" is not "llama" */
        return mmi_fail(MM_ERR_FORMAT, "%s: %s = \"%s\\0...\" contains a NUL byte", g->path,
                        key, *out);
    return MM_OK;
}

mm_status mmi_gguf_get_raw(const mmi_gguf *g, const char *key, mmi_gguf_type *type,
                           const void **data, size_t *size)
{
    const gguf_kv *kv;
    MMI_TRY(lookup(g, key, &kv));
    *type = (mmi_gguf_type)kv->type;
    *data = g->base + kv->value_offset;
    *size = kv->value_size;
    return MM_OK;
}

static mm_status lookup_array(const mmi_gguf *g, const char *key, const gguf_kv **kv)
{
    MMI_TRY(lookup(g, key, kv));
    if ((*kv)->type != MMI_GGUF_ARRAY)
        return wrong_type(g, *kv, "an array");
    return MM_OK;
}

mm_status mmi_gguf_get_array_info(const mmi_gguf *g, const char *key, mmi_gguf_type *elem_type,
                                  uint64_t *count)
{
    const gguf_kv *kv;
    MMI_TRY(lookup_array(g, key, &kv));
    if (elem_type)
        *elem_type = (mmi_gguf_type)kv->elem_type;
    if (count)
        *count = kv->count;
    return MM_OK;
}

/* A numeric array of exactly n elements accepted by `accept`; *p receives its first element. */
static mm_status lookup_numeric_array(const mmi_gguf *g, const char *key, uint64_t n,
                                      int (*accept)(uint32_t), const char *expected,
                                      const gguf_kv **kv, const uint8_t **p)
{
    MMI_TRY(lookup_array(g, key, kv));
    if (!accept((*kv)->elem_type))
        return wrong_type(g, *kv, expected);
    if ((*kv)->count != n)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s' has %llu elements, expected %llu", g->path,
                        key, (unsigned long long)(*kv)->count, (unsigned long long)n);
    *p = g->base + (*kv)->value_offset + 12;
    return MM_OK;
}

mm_status mmi_gguf_get_int_array(const mmi_gguf *g, const char *key, int64_t *dst, uint64_t n)
{
    const gguf_kv *kv;
    const uint8_t *p = NULL;
    MMI_TRY(lookup_numeric_array(g, key, n, is_int_type, "an array of integers", &kv, &p));
    size_t size = scalar_size(kv->elem_type);
    for (uint64_t i = 0; i < n; i++, p += size)
        if (!int_at(p, kv->elem_type, &dst[i]))
            return mmi_fail(MM_ERR_FORMAT, "%s: key '%s': element %llu does not fit in int64",
                            g->path, key, (unsigned long long)i);
    return MM_OK;
}

static int is_numeric_type(uint32_t t)
{
    return is_int_type(t) || is_float_type(t);
}

mm_status mmi_gguf_get_float_array(const mmi_gguf *g, const char *key, float *dst, uint64_t n)
{
    const gguf_kv *kv;
    const uint8_t *p = NULL;
    MMI_TRY(lookup_numeric_array(g, key, n, is_numeric_type, "an array of numbers", &kv, &p));
    size_t size = scalar_size(kv->elem_type);
    for (uint64_t i = 0; i < n; i++, p += size) {
        int64_t v;
        if (is_float_type(kv->elem_type))
            dst[i] = (float)float_at(p, kv->elem_type);
        else if (int_at(p, kv->elem_type, &v))
            dst[i] = (float)v;
        else
            dst[i] = (float)load_le(p, 8);
    }
    return MM_OK;
}

mm_status mmi_gguf_get_array_string(const mmi_gguf *g, const char *key, uint64_t i,
                                    const char **out, size_t *len)
{
    const gguf_kv *kv;
    MMI_TRY(lookup_array(g, key, &kv));
    if (kv->elem_type != MMI_GGUF_STRING)
        return wrong_type(g, kv, "an array of strings");
    if (i >= kv->count)
        return mmi_fail(MM_ERR_FORMAT, "%s: key '%s': item %llu requested, the array has %llu",
                        g->path, key, (unsigned long long)i, (unsigned long long)kv->count);
    *out = g->strings + kv->item_at[i];
    if (len)
        *len = kv->item_len[i];
    return MM_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Tensors
 * ------------------------------------------------------------------------------------------- */

/* Append to buf[0..cap) at *len (the full length grows even past cap, as snprintf counts). */
#define VALUE_APPEND(...)                                                                       \
    do {                                                                                       \
        int n_ = snprintf(buf && *len < cap ? buf + *len : NULL,                               \
                          buf && *len < cap ? cap - *len : 0, __VA_ARGS__);                    \
        *len += n_ > 0 ? (size_t)n_ : 0;                                                       \
    } while (0)

void mmi_gguf_value_text(const mmi_gguf *g, uint64_t index, char *buf, size_t cap, size_t *len)
{
    const gguf_kv *kv = &g->kvs[index];
    const char *key = kv->key, *str;
    mmi_gguf_type type = (mmi_gguf_type)kv->type, elem;
    size_t str_len;
    int64_t i;
    double f;
    int b;
    uint64_t count;
    *len = 0;
    if (type == MMI_GGUF_STRING && mmi_gguf_get_string(g, key, &str, &str_len) == MM_OK)
        VALUE_APPEND("%s", str);
    else if (type == MMI_GGUF_BOOL && mmi_gguf_get_bool(g, key, &b) == MM_OK)
        VALUE_APPEND("%s", b ? "true" : "false");
    else if ((type == MMI_GGUF_FLOAT32 || type == MMI_GGUF_FLOAT64) &&
             mmi_gguf_get_float(g, key, &f) == MM_OK)
        VALUE_APPEND("%.9g", f);
    else if (type == MMI_GGUF_UINT64) /* may exceed INT64_MAX */
        VALUE_APPEND("%llu", (unsigned long long)load_le(g->base + kv->value_offset, 8));
    else if (type != MMI_GGUF_ARRAY && mmi_gguf_get_int(g, key, &i) == MM_OK)
        VALUE_APPEND("%lld", (long long)i);
    else if (mmi_gguf_get_array_info(g, key, &elem, &count) == MM_OK) {
        /* Short numeric arrays in full; others by their size. */
        int numeric = elem != MMI_GGUF_STRING && elem != MMI_GGUF_ARRAY &&
                      elem != MMI_GGUF_BOOL && elem != MMI_GGUF_UINT64; /* converted safely */
        if (numeric && count <= 16) {
            int floats = elem == MMI_GGUF_FLOAT32 || elem == MMI_GGUF_FLOAT64;
            float fv[16];
            int64_t iv[16];
            if (floats ? mmi_gguf_get_float_array(g, key, fv, count)
                       : mmi_gguf_get_int_array(g, key, iv, count))
                numeric = 0;
            for (uint64_t k = 0; numeric && k < count; k++) {
                if (floats)
                    VALUE_APPEND("%s%.9g", k ? ", " : "[", (double)fv[k]);
                else
                    VALUE_APPEND("%s%lld", k ? ", " : "[", (long long)iv[k]);
            }
            if (numeric)
                VALUE_APPEND("%s]", count ? "" : "[");
        }
        if (!numeric || count > 16)
            VALUE_APPEND("[%llu %s]", (unsigned long long)count,
                         elem == MMI_GGUF_STRING  ? "strings"
                         : elem == MMI_GGUF_ARRAY ? "arrays"
                         : elem == MMI_GGUF_BOOL  ? "bools"
                                                  : "numbers");
    }
}

uint64_t mmi_gguf_n_tensors(const mmi_gguf *g)
{
    return g ? g->n_tensors : 0;
}

const mmi_tensor *mmi_gguf_tensor(const mmi_gguf *g, uint64_t i)
{
    return g && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const mmi_tensor *mmi_gguf_find_tensor(const mmi_gguf *g, const char *name)
{
    if (!g || !name)
        return NULL;
    mmi_tensor probe = {.name = name};
    const mmi_tensor *p = &probe;
    const mmi_tensor **hit = bsearch(&p, g->by_name, (size_t)g->n_tensors, sizeof *g->by_name,
                                     tensor_name_cmp);
    return hit ? *hit : NULL;
}

/* "[a, b, c]" for messages. */
static void format_shape(char *buf, size_t size, uint32_t n_dims, const uint64_t *ne)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (uint32_t d = 0; d < n_dims && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%llu", d ? ", " : "",
                                 (unsigned long long)ne[d]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

mm_status mmi_gguf_get_tensor(const mmi_gguf *g, const char *name, uint32_t n_dims,
                              const uint64_t *ne, const mmi_tensor **out)
{
    if (!g || !name || !out || (n_dims && !ne) || n_dims > MMI_GGUF_MAX_DIMS)
        return mmi_fail(MM_ERR_ARG, "mmi_gguf_get_tensor: bad arguments");
    const mmi_tensor *t = mmi_gguf_find_tensor(g, name);
    if (!t)
        return mmi_fail(MM_ERR_FORMAT, "%s: tensor '%s' not found", g->path, name);
    /* As llama.cpp does: trailing dimensions of 1 do not count. */
    for (uint32_t d = 0; n_dims && d < MMI_GGUF_MAX_DIMS; d++)
        if (t->ne[d] != (d < n_dims ? ne[d] : 1)) {
            char have[128], want[128];
            format_shape(have, sizeof have, t->n_dims, t->ne);
            format_shape(want, sizeof want, n_dims, ne);
            return mmi_fail(MM_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", g->path,
                            name, have, want);
        }
    *out = t;
    return MM_OK;
}

mm_status mmi_tensor_to_f32(const mmi_tensor *t, uint64_t first, uint64_t n_elements, float *dst)
{
    if (!t || (!dst && n_elements))
        return mmi_fail(MM_ERR_ARG, "mmi_tensor_to_f32: NULL %s", t ? "destination" : "tensor");
    const mmi_type_traits *tt = mmi_type(t->type);
    if (!tt->weight)
        return mmi_fail(MM_ERR_UNSUPPORTED, "unsupported tensor type %s (%d) in tensor '%s'",
                        mmi_tensor_type_name(t->type), (int)t->type, t->name);
    uint64_t block_elems = tt->block_elems;
    if (first > t->n_elements || n_elements > t->n_elements - first || first % block_elems)
        return mmi_fail(MM_ERR_ARG, "tensor '%s': elements [%llu, +%llu) out of range or not at a block start (%llu elements, block %llu)",
                        t->name, (unsigned long long)first, (unsigned long long)n_elements,
                        (unsigned long long)t->n_elements, (unsigned long long)block_elems);
    const uint8_t *src = (const uint8_t *)t->data + first / block_elems * tt->block_bytes;
    uint64_t whole = n_elements / block_elems * block_elems;
    tt->to_f32(src, dst, (size_t)whole);
    if (whole < n_elements) { /* a part of the last block */
        float block[256];
        tt->to_f32(src + whole / block_elems * tt->block_bytes, block, block_elems);
        memcpy(dst + whole, block, (size_t)(n_elements - whole) * sizeof *dst);
    }
    return MM_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------------------------- */

/* Growing byte buffer; an allocation failure is remembered and reported by the caller. */
typedef struct {
    uint8_t *data;
    size_t size, cap;
    int failed;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (b->cap - b->size < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->size < n && cap <= SIZE_MAX / 2)
            cap *= 2;
        uint8_t *d = cap - b->size >= n ? mmi_realloc(b->data, cap) : NULL;
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->size, p, n);
    b->size += n;
}

static void put_le(bytes *b, uint64_t v, size_t n)
{
    uint8_t le[8];
    for (size_t i = 0; i < n; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    put(b, le, n);
}

static void put_string(bytes *b, const char *s, size_t len)
{
    put_le(b, len, 8);
    put(b, s, len);
}

static void put_padding(bytes *b, uint64_t alignment)
{
    static const uint8_t zeros[64];
    size_t pad = (size_t)((alignment - b->size % alignment) % alignment);
    for (; pad > sizeof zeros; pad -= sizeof zeros)
        put(b, zeros, sizeof zeros);
    put(b, zeros, pad);
}

typedef struct {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[MMI_GGUF_MAX_DIMS];
    uint8_t *data;
    size_t n_bytes;
} writer_tensor;

struct mmi_gguf_writer {
    uint32_t alignment;
    bytes kv;        /* key/value pairs serialised in the order added */
    uint64_t n_kv;
    char **keys;     /* n_kv keys, to refuse duplicates */
    size_t keys_cap;
    writer_tensor *tensors;
    uint64_t n_tensors;
    size_t tensors_cap;
};

mm_status mmi_gguf_writer_create(mmi_gguf_writer **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mmi_gguf_writer_create: out is NULL");
    *out = mmi_calloc(1, sizeof **out);
    if (!*out)
        return mmi_fail(MM_ERR_NOMEM, "GGUF writer: out of memory");
    (*out)->alignment = GGUF_DEFAULT_ALIGNMENT;
    return MM_OK;
}

void mmi_gguf_writer_free(mmi_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        mmi_free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        mmi_free(w->tensors[i].name);
        mmi_free(w->tensors[i].data);
    }
    mmi_free(w->keys);
    mmi_free(w->tensors);
    mmi_free(w->kv.data);
    mmi_free(w);
}

mm_status mmi_gguf_writer_set_alignment(mmi_gguf_writer *w, uint32_t alignment)
{
    if (!w || alignment < 8 || alignment > (1u << 30) || (alignment & (alignment - 1)))
        return mmi_fail(MM_ERR_ARG, "GGUF writer: alignment %u is not a power of two from 8 to 2^30",
                        alignment);
    w->alignment = alignment;
    return MM_OK;
}

/* Make room for one more element in an array of `*cap` items of `size` bytes. */
static int grow(void **array, size_t *cap, size_t used, size_t size)
{
    if (used < *cap)
        return 1;
    size_t n = *cap ? *cap * 2 : 16;
    void *p = mmi_realloc(*array, n * size);
    if (!p)
        return 0;
    *array = p;
    *cap = n;
    return 1;
}

/* Start a key/value pair: check the key, append it and the type. kv_end() commits or undoes. */
static mm_status kv_begin(mmi_gguf_writer *w, const char *key, uint32_t type, size_t *mark)
{
    if (!w || !key || !*key)
        return mmi_fail(MM_ERR_ARG, "GGUF writer: %s", w ? "empty or NULL key" : "NULL writer");
    if (strcmp(key, "general.alignment") == 0)
        return mmi_fail(MM_ERR_ARG, "GGUF writer: set 'general.alignment' with mmi_gguf_writer_set_alignment");
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return mmi_fail(MM_ERR_ARG, "GGUF writer: duplicate key '%s'", key);
    if (!grow((void **)&w->keys, &w->keys_cap, (size_t)w->n_kv, sizeof *w->keys) ||
        !(w->keys[w->n_kv] = mmi_strdup(key)))
        return mmi_fail(MM_ERR_NOMEM, "GGUF writer: out of memory adding key '%s'", key);
    *mark = w->kv.size;
    put_string(&w->kv, key, strlen(key));
    put_le(&w->kv, type, 4);
    return MM_OK;
}

static mm_status kv_end(mmi_gguf_writer *w, size_t mark)
{
    if (w->kv.failed) {
        w->kv.failed = 0;
        w->kv.size = mark;
        mm_status st = mmi_fail(MM_ERR_NOMEM, "GGUF writer: out of memory adding key '%s'",
                                w->keys[w->n_kv]);
        mmi_free(w->keys[w->n_kv]);
        return st;
    }
    w->n_kv++;
    return MM_OK;
}

/* Does v fit integer type t? */
static int int_fits(uint32_t t, int64_t v)
{
    switch (t) {
    case MMI_GGUF_UINT8: return v >= 0 && v <= UINT8_MAX;
    case MMI_GGUF_INT8: return v >= INT8_MIN && v <= INT8_MAX;
    case MMI_GGUF_UINT16: return v >= 0 && v <= UINT16_MAX;
    case MMI_GGUF_INT16: return v >= INT16_MIN && v <= INT16_MAX;
    case MMI_GGUF_UINT32: return v >= 0 && v <= (int64_t)UINT32_MAX;
    case MMI_GGUF_INT32: return v >= INT32_MIN && v <= INT32_MAX;
    case MMI_GGUF_UINT64: return v >= 0;
    }
    return 1;
}

mm_status mmi_gguf_writer_add_int(mmi_gguf_writer *w, const char *key, mmi_gguf_type type, int64_t v)
{
    if (!is_int_type(type) || !int_fits(type, v))
        return mmi_fail(MM_ERR_ARG, "GGUF writer: key '%s': %lld is not a valid %s",
                        key ? key : "(null)", (long long)v, value_type_name(type));
    size_t mark;
    MMI_TRY(kv_begin(w, key, type, &mark));
    put_le(&w->kv, (uint64_t)v, scalar_size(type));
    return kv_end(w, mark);
}

mm_status mmi_gguf_writer_add_float(mmi_gguf_writer *w, const char *key, mmi_gguf_type type, double v)
{
    if (!is_float_type(type))
        return mmi_fail(MM_ERR_ARG, "GGUF writer: key '%s': type %s is not f32 or f64",
                        key ? key : "(null)", value_type_name(type));
    size_t mark;
    MMI_TRY(kv_begin(w, key, type, &mark));
    if (type == MMI_GGUF_FLOAT32) {
        put_le(&w->kv, mmi_f32_bits((float)v), 4);
    } else {
        uint64_t u;
        memcpy(&u, &v, 8);
        put_le(&w->kv, u, 8);
    }
    return kv_end(w, mark);
}

mm_status mmi_gguf_writer_add_bool(mmi_gguf_writer *w, const char *key, int v)
{
    size_t mark;
    MMI_TRY(kv_begin(w, key, MMI_GGUF_BOOL, &mark));
    put_le(&w->kv, v != 0, 1);
    return kv_end(w, mark);
}

mm_status mmi_gguf_writer_add_string(mmi_gguf_writer *w, const char *key, const char *v)
{
    if (!v)
        return mmi_fail(MM_ERR_ARG, "GGUF writer: key '%s': NULL string", key ? key : "(null)");
    size_t mark;
    MMI_TRY(kv_begin(w, key, MMI_GGUF_STRING, &mark));
    put_string(&w->kv, v, strlen(v));
    return kv_end(w, mark);
}

mm_status mmi_gguf_writer_add_array(mmi_gguf_writer *w, const char *key, mmi_gguf_type elem_type,
                                    const void *data, uint64_t count)
{
    size_t size = scalar_size(elem_type);
    if (!size || (!data && count) || count > SIZE_MAX / size)
        return mmi_fail(MM_ERR_ARG, "GGUF writer: key '%s': bad array (element type %s, %llu elements)",
                        key ? key : "(null)", value_type_name(elem_type), (unsigned long long)count);
    for (uint64_t i = 0; elem_type == MMI_GGUF_BOOL && i < count; i++)
        if (((const uint8_t *)data)[i] > 1)
            return mmi_fail(MM_ERR_ARG, "GGUF writer: key '%s': bool element %llu is not 0 or 1",
                            key ? key : "(null)", (unsigned long long)i);
    size_t mark;
    MMI_TRY(kv_begin(w, key, MMI_GGUF_ARRAY, &mark));
    put_le(&w->kv, elem_type, 4);
    put_le(&w->kv, count, 8);
    put(&w->kv, data, (size_t)count * size);
    return kv_end(w, mark);
}

mm_status mmi_gguf_writer_add_string_array(mmi_gguf_writer *w, const char *key,
                                           const char *const *items, uint64_t count)
{
    for (uint64_t i = 0; i < count; i++)
        if (!items || !items[i])
            return mmi_fail(MM_ERR_ARG, "GGUF writer: key '%s': item %llu is NULL",
                            key ? key : "(null)", (unsigned long long)i);
    size_t mark;
    MMI_TRY(kv_begin(w, key, MMI_GGUF_ARRAY, &mark));
    put_le(&w->kv, MMI_GGUF_STRING, 4);
    put_le(&w->kv, count, 8);
    for (uint64_t i = 0; i < count; i++)
        put_string(&w->kv, items[i], strlen(items[i]));
    return kv_end(w, mark);
}

mm_status mmi_gguf_writer_add_raw(mmi_gguf_writer *w, const char *key, mmi_gguf_type type,
                                  const void *data, size_t size)
{
    /* Check the bytes with the reader's own rules, through a file made of just this value. */
    char path[160];
    snprintf(path, sizeof path, "value of '%s'", key ? key : "(null)");
    mmi_gguf value = {.path = path, .base = data, .size = data ? size : 0};
    cursor c = {&value, 0};
    MMI_TRY(skip_value(&c, type, key ? key : "(null)", 0));
    if (c.pos != size)
        return mmi_fail(MM_ERR_ARG, "GGUF writer: key '%s': %zu bytes given, the %s value takes %zu",
                        key ? key : "(null)", size, value_type_name(type), c.pos);
    size_t mark;
    MMI_TRY(kv_begin(w, key, type, &mark));
    put(&w->kv, data, size);
    return kv_end(w, mark);
}

mm_status mmi_gguf_writer_add_tensor_raw(mmi_gguf_writer *w, const char *name,
                                         mmi_tensor_type type, uint32_t n_dims,
                                         const uint64_t *ne, const void *data, size_t n_bytes)
{
    if (!w || !name || !*name || !ne || !data)
        return mmi_fail(MM_ERR_ARG, "GGUF writer: NULL writer, name, shape or data");
    uint64_t n_elements, size;
    const char *bad = tensor_size(type, n_dims, ne, &n_elements, &size);
    if (bad || size != n_bytes)
        return mmi_fail(MM_ERR_ARG, "GGUF writer: tensor '%s' (%s): %s", name,
                        mmi_tensor_type_name(type), bad ? bad : "data size does not match the shape");
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return mmi_fail(MM_ERR_ARG, "GGUF writer: duplicate tensor name '%s'", name);
    writer_tensor t = {.type = type, .n_dims = n_dims, .n_bytes = n_bytes};
    memcpy(t.ne, ne, n_dims * sizeof *ne);
    t.name = mmi_strdup(name);
    t.data = mmi_malloc(n_bytes);
    if (!t.name || !t.data ||
        !grow((void **)&w->tensors, &w->tensors_cap, (size_t)w->n_tensors, sizeof *w->tensors)) {
        mmi_free(t.name);
        mmi_free(t.data);
        return mmi_fail(MM_ERR_NOMEM, "GGUF writer: out of memory adding tensor '%s'", name);
    }
    memcpy(t.data, data, n_bytes);
    w->tensors[w->n_tensors++] = t;
    return MM_OK;
}

mm_status mmi_gguf_writer_add_tensor(mmi_gguf_writer *w, const char *name, mmi_tensor_type type,
                                     uint32_t n_dims, const uint64_t *ne, const float *values)
{
    uint64_t n_elements, n_bytes;
    if (!mmi_type(type)->weight || !mmi_type(type)->from_f32)
        return mmi_fail(MM_ERR_ARG, "GGUF writer: tensor '%s': cannot convert f32 to %s",
                        name ? name : "(null)", mmi_tensor_type_name(type));
    if (!ne || !values || tensor_size(type, n_dims, ne, &n_elements, &n_bytes))
        return mmi_fail(MM_ERR_ARG, "GGUF writer: tensor '%s': bad shape or NULL values",
                        name ? name : "(null)");
    if (type == MMI_TENSOR_F32)
        return mmi_gguf_writer_add_tensor_raw(w, name, type, n_dims, ne, values, (size_t)n_bytes);
    uint8_t *data = mmi_malloc((size_t)n_bytes);
    if (!data)
        return mmi_fail(MM_ERR_NOMEM, "GGUF writer: out of memory converting tensor '%s'", name);
    mmi_type(type)->from_f32(values, data, (size_t)n_elements);
    mm_status st = mmi_gguf_writer_add_tensor_raw(w, name, type, n_dims, ne, data, (size_t)n_bytes);
    mmi_free(data);
    return st;
}

mm_status mmi_gguf_writer_write_memory(const mmi_gguf_writer *w, void **data, size_t *size)
{
    if (!w || !data || !size)
        return mmi_fail(MM_ERR_ARG, "mmi_gguf_writer_write_memory: NULL argument");
    *data = NULL;
    *size = 0;
    int write_alignment = w->alignment != GGUF_DEFAULT_ALIGNMENT;
    bytes b = {0};
    put(&b, "GGUF", 4);
    put_le(&b, 3, 4);
    put_le(&b, w->n_tensors, 8);
    put_le(&b, w->n_kv + (uint64_t)write_alignment, 8);
    put(&b, w->kv.data, w->kv.size);
    if (write_alignment) {
        put_string(&b, "general.alignment", strlen("general.alignment"));
        put_le(&b, MMI_GGUF_UINT32, 4);
        put_le(&b, w->alignment, 4);
    }
    uint64_t offset = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_string(&b, t->name, strlen(t->name));
        put_le(&b, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++)
            put_le(&b, t->ne[d], 8);
        put_le(&b, t->type, 4);
        put_le(&b, offset, 8);
        offset += (t->n_bytes + w->alignment - 1) / w->alignment * w->alignment;
    }
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        put_padding(&b, w->alignment);
        put(&b, w->tensors[i].data, w->tensors[i].n_bytes);
    }
    if (w->n_tensors)
        put_padding(&b, w->alignment);
    if (b.failed) {
        mmi_free(b.data);
        return mmi_fail(MM_ERR_NOMEM, "GGUF writer: out of memory serialising the file");
    }
    *data = b.data;
    *size = b.size;
    return MM_OK;
}

mm_status mmi_gguf_writer_write_file(const mmi_gguf_writer *w, const char *path)
{
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mmi_gguf_writer_write_file: path is NULL");
    void *data;
    size_t size;
    MMI_TRY(mmi_gguf_writer_write_memory(w, &data, &size));
    mm_status st = MM_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        st = mmi_fail(MM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    for (size_t done = 0; st == MM_OK && done < size;) {
        ssize_t n = write(fd, (const uint8_t *)data + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            st = mmi_fail(MM_ERR_IO, "%s: write failed at byte offset %zu: %s", path, done,
                          n < 0 ? strerror(errno) : "no progress");
        else
            done += (size_t)n;
    }
    if (fd >= 0 && close(fd) != 0 && st == MM_OK)
        st = mmi_fail(MM_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    mmi_free(data);
    return st;
}
