/* A small safetensors reader for tests (header-only, plain libc; not part of the library).
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {...}}
 * then the data area; offsets are relative to its start, data is little-endian row-major.
 *
 * Every check is done at load time (JSON syntax, dtype, shape, offsets inside the data area,
 * byte count = elements * dtype size), so the readers below cannot go out of bounds. Errors
 * return -1 / NULL with a message in st_file.error; nothing aborts.
 *
 *   st_file f;
 *   if (st_load(&f, path) != 0) fail(f.error);
 *   int64_t shape[ST_MAX_DIMS]; int ndim; size_t n;
 *   float *x = st_read_f32(&f, "logits", shape, &ndim, &n);   // malloc'd; free(x)
 *   st_free(&f);
 */
#ifndef MM_TESTS_SAFETENSORS_H
#define MM_TESTS_SAFETENSORS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_DIMS 8
#define ST_MAX_NAME 256

typedef enum { ST_F32, ST_F64, ST_I64, ST_I32, ST_U8, ST_U16 } st_dtype;

typedef struct {
    char name[ST_MAX_NAME];
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t count;              /* number of elements */
    size_t begin, end;         /* byte offsets into the data area */
} st_tensor;

typedef struct {
    unsigned char *bytes;      /* whole file */
    size_t size;
    size_t data_start;         /* 8 + header length */
    st_tensor *tensors;
    int n_tensors;
    char error[512];
} st_file;

static inline size_t st_dtype_size(st_dtype t)
{
    switch (t) {
    case ST_F64: case ST_I64: return 8;
    case ST_F32: case ST_I32: return 4;
    case ST_U16: return 2;
    case ST_U8: return 1;
    }
    return 0;
}

/* ---- JSON scanning over [p, end) ---- */

typedef struct {
    const char *p, *end;
    st_file *f;
} st_json;

static inline int st_json_error(st_json *j, const char *what)
{
    snprintf(j->f->error, sizeof j->f->error, "safetensors: %s at header byte %ld", what,
             (long)(j->p - (const char *)j->f->bytes - 8));
    return -1;
}

static inline void st_json_ws(st_json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static inline int st_json_expect(st_json *j, char c)
{
    st_json_ws(j);
    if (j->p >= j->end || *j->p != c) {
        char msg[32];
        snprintf(msg, sizeof msg, "expected '%c'", c);
        return st_json_error(j, msg);
    }
    j->p++;
    return 0;
}

/* A string into out (truncation is an error); escapes \" \\ \/ \b \f \n \r \t \uXXXX (ASCII). */
static inline int st_json_string(st_json *j, char *out, size_t cap)
{
    size_t n = 0;
    if (st_json_expect(j, '"'))
        return -1;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if ((unsigned char)c < 0x20)
            return st_json_error(j, "control character in string");
        if (c == '\\') {
            if (j->p >= j->end)
                break;
            char e = *j->p++;
            switch (e) {
            case '"': case '\\': case '/': c = e; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                unsigned v = 0;
                for (int k = 0; k < 4; k++) {
                    if (j->p >= j->end)
                        return st_json_error(j, "truncated \\u escape");
                    char h = *j->p++;
                    v <<= 4;
                    if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
                    else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
                    else return st_json_error(j, "bad \\u escape");
                }
                if (v == 0 || v > 0x7f)
                    return st_json_error(j, "non-ASCII \\u escape not supported");
                c = (char)v;
                break;
            }
            default: return st_json_error(j, "bad escape");
            }
        }
        if (n + 1 >= cap)
            return st_json_error(j, "string too long");
        out[n++] = c;
    }
    if (j->p >= j->end)
        return st_json_error(j, "unterminated string");
    j->p++;
    out[n] = '\0';
    return 0;
}

/* A non-negative integer that fits in int64. */
static inline int st_json_uint(st_json *j, int64_t *out)
{
    st_json_ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return st_json_error(j, "expected a non-negative integer");
    int64_t v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        int d = *j->p++ - '0';
        if (v > (INT64_MAX - d) / 10)
            return st_json_error(j, "integer too large");
        v = v * 10 + d;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return st_json_error(j, "expected an integer, found a fraction");
    *out = v;
    return 0;
}

/* [int, int, ...] with at most cap items. */
static inline int st_json_uint_array(st_json *j, int64_t *out, int cap, int *n)
{
    *n = 0;
    if (st_json_expect(j, '['))
        return -1;
    st_json_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        if (*n >= cap)
            return st_json_error(j, "too many array items");
        if (st_json_uint(j, &out[(*n)++]))
            return -1;
        st_json_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        return st_json_expect(j, ']');
    }
}

/* Skip any JSON value (used for __metadata__ and unknown keys); depth-limited. */
static inline int st_json_skip(st_json *j, int depth)
{
    char scratch[4096];
    if (depth > 32)
        return st_json_error(j, "nesting too deep");
    st_json_ws(j);
    if (j->p >= j->end)
        return st_json_error(j, "expected a value");
    char c = *j->p;
    if (c == '"')
        return st_json_string(j, scratch, sizeof scratch);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        st_json_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                if (st_json_string(j, scratch, sizeof scratch) || st_json_expect(j, ':'))
                    return -1;
            }
            if (st_json_skip(j, depth + 1))
                return -1;
            st_json_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            return st_json_expect(j, close);
        }
    }
    /* number, true, false, null */
    const char *start = j->p;
    while (j->p < j->end && strchr("+-.0123456789eEtruefalsn", *j->p))
        j->p++;
    return j->p == start ? st_json_error(j, "unexpected character") : 0;
}

static inline int st_parse_dtype(const char *s, st_dtype *out)
{
    static const struct { const char *name; st_dtype t; } table[] = {
        {"F32", ST_F32}, {"F64", ST_F64}, {"I64", ST_I64},
        {"I32", ST_I32}, {"U8", ST_U8},   {"U16", ST_U16},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(s, table[i].name)) {
            *out = table[i].t;
            return 0;
        }
    return -1;
}

/* One tensor description {"dtype":..., "shape":[...], "data_offsets":[b, e]}. */
static inline int st_parse_tensor(st_json *j, st_tensor *t, size_t data_size)
{
    char key[64], dtype[32];
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (st_json_expect(j, '{'))
        return -1;
    for (;;) {
        if (st_json_string(j, key, sizeof key) || st_json_expect(j, ':'))
            return -1;
        if (!strcmp(key, "dtype")) {
            if (st_json_string(j, dtype, sizeof dtype))
                return -1;
            if (st_parse_dtype(dtype, &t->dtype)) {
                snprintf(j->f->error, sizeof j->f->error,
                         "safetensors: tensor '%s': unsupported dtype '%s'", t->name, dtype);
                return -1;
            }
            have_dtype = 1;
        } else if (!strcmp(key, "shape")) {
            if (st_json_uint_array(j, t->shape, ST_MAX_DIMS, &t->ndim))
                return -1;
            have_shape = 1;
        } else if (!strcmp(key, "data_offsets")) {
            int64_t off[2];
            int n;
            if (st_json_uint_array(j, off, 2, &n))
                return -1;
            if (n != 2)
                return st_json_error(j, "data_offsets needs two items");
            t->begin = (size_t)off[0];
            t->end = (size_t)off[1];
            have_offsets = 1;
        } else if (st_json_skip(j, 1)) {
            return -1;
        }
        st_json_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (st_json_expect(j, '}'))
            return -1;
        break;
    }
    if (!have_dtype || !have_shape || !have_offsets) {
        snprintf(j->f->error, sizeof j->f->error,
                 "safetensors: tensor '%s' lacks dtype, shape or data_offsets", t->name);
        return -1;
    }
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] != 0 && count > SIZE_MAX / 16 / (size_t)t->shape[d]) {
            snprintf(j->f->error, sizeof j->f->error, "safetensors: tensor '%s' too large",
                     t->name);
            return -1;
        }
        count *= (size_t)t->shape[d];
    }
    t->count = count;
    if (t->begin > t->end || t->end > data_size ||
        t->end - t->begin != count * st_dtype_size(t->dtype)) {
        snprintf(j->f->error, sizeof j->f->error,
                 "safetensors: tensor '%s': data_offsets [%zu, %zu] do not hold %zu elements of "
                 "%zu bytes inside a data area of %zu bytes",
                 t->name, t->begin, t->end, count, st_dtype_size(t->dtype), data_size);
        return -1;
    }
    return 0;
}

static inline void st_free(st_file *f)
{
    free(f->bytes);
    free(f->tensors);
    f->bytes = NULL;
    f->tensors = NULL;
    f->size = 0;
    f->n_tensors = 0;
}

/* Parse a buffer (copied). Returns 0, or -1 with f->error set (f is then empty). */
static inline int st_parse(st_file *f, const void *bytes, size_t size)
{
    memset(f, 0, sizeof *f);
    if (size < 8) {
        snprintf(f->error, sizeof f->error, "safetensors: %zu bytes, shorter than the 8-byte "
                 "header length", size);
        return -1;
    }
    const unsigned char *b = bytes;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | b[i];
    if (header_len > size - 8) {
        snprintf(f->error, sizeof f->error, "safetensors: header length %llu exceeds the %zu "
                 "bytes after it", (unsigned long long)header_len, size - 8);
        return -1;
    }
    f->bytes = malloc(size ? size : 1);
    if (!f->bytes) {
        snprintf(f->error, sizeof f->error, "safetensors: out of memory (%zu bytes)", size);
        return -1;
    }
    memcpy(f->bytes, bytes, size);
    f->size = size;
    f->data_start = 8 + (size_t)header_len;
    size_t data_size = size - f->data_start;

    st_json j = {(const char *)f->bytes + 8, (const char *)f->bytes + f->data_start, f};
    int cap = 0;
    if (st_json_expect(&j, '{'))
        goto fail;
    st_json_ws(&j);
    if (j.p < j.end && *j.p == '}') {
        j.p++;
    } else {
        for (;;) {
            char name[ST_MAX_NAME];
            if (st_json_string(&j, name, sizeof name) || st_json_expect(&j, ':'))
                goto fail;
            if (!strcmp(name, "__metadata__")) {
                if (st_json_skip(&j, 1))
                    goto fail;
            } else {
                if (f->n_tensors == cap) {
                    cap = cap ? cap * 2 : 16;
                    st_tensor *grown = realloc(f->tensors, (size_t)cap * sizeof *grown);
                    if (!grown) {
                        snprintf(f->error, sizeof f->error, "safetensors: out of memory");
                        goto fail;
                    }
                    f->tensors = grown;
                }
                st_tensor *t = &f->tensors[f->n_tensors];
                memset(t, 0, sizeof *t);
                memcpy(t->name, name, sizeof name);
                if (st_parse_tensor(&j, t, data_size))
                    goto fail;
                for (int i = 0; i < f->n_tensors; i++)
                    if (!strcmp(f->tensors[i].name, name)) {
                        snprintf(f->error, sizeof f->error,
                                 "safetensors: tensor '%s' listed twice", name);
                        goto fail;
                    }
                f->n_tensors++;
            }
            st_json_ws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (st_json_expect(&j, '}'))
                goto fail;
            break;
        }
    }
    st_json_ws(&j);
    if (j.p != j.end) {
        st_json_error(&j, "trailing bytes after the header object");
        goto fail;
    }
    return 0;
fail: {
        char keep[sizeof f->error];
        memcpy(keep, f->error, sizeof keep);
        st_free(f);
        memcpy(f->error, keep, sizeof keep);
        return -1;
    }
}

/* Read and parse a whole file. Returns 0, or -1 with f->error set. */
static inline int st_load(st_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(f->error, sizeof f->error, "safetensors: cannot open %s", path);
        return -1;
    }
    unsigned char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(fp);
                snprintf(f->error, sizeof f->error, "safetensors: out of memory reading %s", path);
                return -1;
            }
            buf = grown;
        }
        size_t got = fread(buf + size, 1, cap - size, fp);
        size += got;
        if (got == 0)
            break;
    }
    int read_error = ferror(fp);
    fclose(fp);
    if (read_error) {
        free(buf);
        snprintf(f->error, sizeof f->error, "safetensors: read error on %s", path);
        return -1;
    }
    int rc = st_parse(f, buf, size);
    free(buf);
    if (rc) {
        size_t len = strlen(f->error);
        snprintf(f->error + len, sizeof f->error - len, " (%s)", path);
    }
    return rc;
}

/* The tensor called name, or NULL (f->error set). */
static inline const st_tensor *st_find(st_file *f, const char *name)
{
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name))
            return &f->tensors[i];
    snprintf(f->error, sizeof f->error, "safetensors: no tensor '%s'", name);
    return NULL;
}

static inline void st_copy_shape(const st_tensor *t, int64_t *shape, int *ndim)
{
    if (shape)
        memcpy(shape, t->shape, sizeof t->shape);
    if (ndim)
        *ndim = t->ndim;
}

/* The tensor's bytes as stored (little-endian), malloc'd; shape/ndim/nbytes may be NULL. */
static inline void *st_read_raw(st_file *f, const char *name, st_dtype *dtype,
                                int64_t shape[ST_MAX_DIMS], int *ndim, size_t *nbytes)
{
    const st_tensor *t = st_find(f, name);
    if (!t)
        return NULL;
    size_t n = t->end - t->begin;
    void *out = malloc(n ? n : 1);
    if (!out) {
        snprintf(f->error, sizeof f->error, "safetensors: out of memory for '%s'", name);
        return NULL;
    }
    memcpy(out, f->bytes + f->data_start + t->begin, n);
    if (dtype)
        *dtype = t->dtype;
    st_copy_shape(t, shape, ndim);
    if (nbytes)
        *nbytes = n;
    return out;
}

/* The tensor converted to float (any dtype), malloc'd; shape/ndim/count may be NULL. */
static inline float *st_read_f32(st_file *f, const char *name, int64_t shape[ST_MAX_DIMS],
                                 int *ndim, size_t *count)
{
    const st_tensor *t = st_find(f, name);
    if (!t)
        return NULL;
    float *out = malloc(t->count ? t->count * sizeof *out : 1);
    if (!out) {
        snprintf(f->error, sizeof f->error, "safetensors: out of memory for '%s'", name);
        return NULL;
    }
    const unsigned char *src = f->bytes + f->data_start + t->begin;
    size_t es = st_dtype_size(t->dtype);
    for (size_t i = 0; i < t->count; i++) {
        const unsigned char *e = src + i * es;
        uint64_t u = 0;
        for (size_t k = es; k-- > 0;)
            u = u << 8 | e[k];
        switch (t->dtype) {
        case ST_F32: { uint32_t w = (uint32_t)u; float v; memcpy(&v, &w, 4); out[i] = v; break; }
        case ST_F64: { double v; memcpy(&v, &u, 8); out[i] = (float)v; break; }
        case ST_I64: out[i] = (float)(int64_t)u; break;
        case ST_I32: out[i] = (float)(int32_t)(uint32_t)u; break;
        case ST_U8: case ST_U16: out[i] = (float)u; break;
        }
    }
    st_copy_shape(t, shape, ndim);
    if (count)
        *count = t->count;
    return out;
}

#endif
