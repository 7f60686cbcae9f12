/* Point clouds from PLY files and caller arrays (points.h).
 *
 * PLY (Turk, 1994): a text header ("ply", "format ascii|binary_little_endian|binary_big_endian
 * 1.0", "element NAME COUNT", "property TYPE NAME", "property list COUNT_TYPE ITEM_TYPE NAME",
 * "comment ...", "obj_info ...", "end_header") and then the elements' items in order. The
 * points are the "vertex" element's x, y, z with optional red, green, blue and nx, ny, nz;
 * every other property, list and element before it is skipped by its declared types, and
 * whatever follows the vertex element is not read. */
#include "points.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "json.h"
#include "options.h"
#include "status.h"

#define PLY_MAX_HEADER   65536 /* bytes up to and including end_header */
#define PLY_MAX_ELEMENTS 64
#define PLY_MAX_PROPS    256   /* per element */
#define PLY_MAX_NAME     64

typedef enum { PLY_ASCII, PLY_LE, PLY_BE } ply_format;

typedef enum {
    PLY_NONE, PLY_INT8, PLY_UINT8, PLY_INT16, PLY_UINT16, PLY_INT32, PLY_UINT32, PLY_FLOAT32,
    PLY_FLOAT64
} ply_type;

static const struct {
    const char *name, *alias;
    unsigned size;
} ply_types[] = {
    [PLY_INT8] = {"char", "int8", 1},       [PLY_UINT8] = {"uchar", "uint8", 1},
    [PLY_INT16] = {"short", "int16", 2},    [PLY_UINT16] = {"ushort", "uint16", 2},
    [PLY_INT32] = {"int", "int32", 4},      [PLY_UINT32] = {"uint", "uint32", 4},
    [PLY_FLOAT32] = {"float", "float32", 4}, [PLY_FLOAT64] = {"double", "float64", 8},
};

typedef struct {
    char name[PLY_MAX_NAME];
    ply_type type;
    ply_type count_type; /* PLY_NONE for a scalar, else the type of a list's length */
} ply_property;

typedef struct {
    char name[PLY_MAX_NAME];
    uint64_t count;
    int n_props;
    ply_property props[PLY_MAX_PROPS];
} ply_element;

typedef struct {
    ply_format format;
    int n_elements;
    ply_element elements[PLY_MAX_ELEMENTS];
} ply_header;

/* The body being read: bytes, position, and what to name in messages. */
typedef struct {
    const uint8_t *data;
    size_t size, pos;
    ply_format format;
    const char *name;
    const char *element;
    uint64_t item;
} ply_reader;

/* ---- header ---- */

/* The next whitespace-separated word of line[0..len) from *at, copied (NUL-terminated) into
 * word; 0 when the line has no more words or the word does not fit. */
static int next_word(const char *line, size_t len, size_t *at, char *word, size_t cap)
{
    size_t i = *at;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t start = i;
    while (i < len && line[i] != ' ' && line[i] != '\t')
        i++;
    *at = i;
    if (i == start || i - start >= cap)
        return 0;
    memcpy(word, line + start, i - start);
    word[i - start] = '\0';
    return 1;
}

static ply_type type_from_name(const char *word)
{
    for (int t = PLY_INT8; t <= PLY_FLOAT64; t++)
        if (!strcmp(word, ply_types[t].name) || !strcmp(word, ply_types[t].alias))
            return (ply_type)t;
    return PLY_NONE;
}

static mm_status parse_count(const char *word, uint64_t *out)
{
    uint64_t v = 0;
    for (const char *p = word; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return MM_ERR_FORMAT;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return MM_OK;
}

/* One header line (without its line end), number `line_no` from 1. */
static mm_status parse_header_line(ply_header *h, const char *line, size_t len, int line_no,
                                   const char *name)
{
    char word[PLY_MAX_NAME], a[PLY_MAX_NAME], b[PLY_MAX_NAME], c[PLY_MAX_NAME], extra[8];
    size_t at = 0;
    if (!next_word(line, len, &at, word, sizeof word))
        return mmi_fail(MM_ERR_FORMAT, "%s: PLY header line %d is empty or has a word over %d "
                        "bytes", name, line_no, PLY_MAX_NAME - 1);
    if (!strcmp(word, "comment") || !strcmp(word, "obj_info"))
        return MM_OK;
    if (!strcmp(word, "format")) {
        if (!next_word(line, len, &at, a, sizeof a) || !next_word(line, len, &at, b, sizeof b) ||
            next_word(line, len, &at, extra, sizeof extra))
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY format line %d is not 'format TYPE 1.0'",
                            name, line_no);
        if (!strcmp(a, "ascii"))
            h->format = PLY_ASCII;
        else if (!strcmp(a, "binary_little_endian"))
            h->format = PLY_LE;
        else if (!strcmp(a, "binary_big_endian"))
            h->format = PLY_BE;
        else
            return mmi_fail(MM_ERR_FORMAT, "%s: unknown PLY format '%s'", name, a);
        if (strcmp(b, "1.0"))
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY version '%s' (only 1.0 exists)", name, b);
        return MM_OK;
    }
    if (!strcmp(word, "element")) {
        if (h->n_elements == PLY_MAX_ELEMENTS)
            return mmi_fail(MM_ERR_FORMAT, "%s: more than %d PLY elements", name,
                            PLY_MAX_ELEMENTS);
        ply_element *e = &h->elements[h->n_elements];
        if (!next_word(line, len, &at, e->name, sizeof e->name) ||
            !next_word(line, len, &at, a, sizeof a) ||
            next_word(line, len, &at, extra, sizeof extra) || parse_count(a, &e->count))
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY element line %d is not 'element NAME COUNT'",
                            name, line_no);
        for (int i = 0; i < h->n_elements; i++)
            if (!strcmp(h->elements[i].name, e->name))
                return mmi_fail(MM_ERR_FORMAT, "%s: PLY element '%s' declared twice", name,
                                e->name);
        e->n_props = 0;
        h->n_elements++;
        return MM_OK;
    }
    if (!strcmp(word, "property")) {
        if (h->n_elements == 0)
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY property on line %d before any element",
                            name, line_no);
        ply_element *e = &h->elements[h->n_elements - 1];
        if (e->n_props == PLY_MAX_PROPS)
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY element '%s' has more than %d properties",
                            name, e->name, PLY_MAX_PROPS);
        ply_property *p = &e->props[e->n_props];
        if (!next_word(line, len, &at, a, sizeof a) || !next_word(line, len, &at, b, sizeof b))
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY property line %d is incomplete", name,
                            line_no);
        int is_list = !strcmp(a, "list");
        if (is_list && !next_word(line, len, &at, c, sizeof c))
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY list property line %d is incomplete", name,
                            line_no);
        const char *prop_name = is_list ? NULL : b;
        if (is_list && !next_word(line, len, &at, p->name, sizeof p->name))
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY list property line %d has no name", name,
                            line_no);
        if (next_word(line, len, &at, extra, sizeof extra) || at < len)
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY property line %d has extra words", name,
                            line_no);
        p->type = type_from_name(is_list ? c : a);
        p->count_type = is_list ? type_from_name(b) : PLY_NONE;
        if (p->type == PLY_NONE || (is_list && (p->count_type == PLY_NONE ||
                                                p->count_type >= PLY_FLOAT32)))
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY property line %d has an unknown or "
                            "unusable type", name, line_no);
        if (prop_name)
            snprintf(p->name, sizeof p->name, "%s", prop_name);
        for (int i = 0; i < e->n_props; i++)
            if (!strcmp(e->props[i].name, p->name))
                return mmi_fail(MM_ERR_FORMAT, "%s: PLY property '%s' declared twice", name,
                                p->name);
        e->n_props++;
        return MM_OK;
    }
    return mmi_fail(MM_ERR_FORMAT, "%s: unknown PLY header keyword '%s' on line %d", name, word,
                    line_no);
}

/* Parse the header; *body receives the offset of the first byte after "end_header\n". */
static mm_status parse_header(const uint8_t *data, size_t size, const char *name,
                              ply_header *h, size_t *body)
{
    const char *text = (const char *)data;
    size_t limit = size < PLY_MAX_HEADER ? size : PLY_MAX_HEADER, pos = 0;
    int have_format = 0;
    for (int line_no = 1;; line_no++) {
        const char *nl = memchr(text + pos, '\n', limit - pos);
        if (!nl && size > PLY_MAX_HEADER)
            return mmi_fail(MM_ERR_FORMAT, "%s: no PLY end_header within the first %d bytes",
                            name, PLY_MAX_HEADER);
        if (!nl)
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY header cut short (no end_header in %zu "
                            "bytes)", name, size);
        size_t len = (size_t)(nl - (text + pos));
        const char *line = text + pos;
        pos += len + 1;
        if (len && line[len - 1] == '\r')
            len--;
        if (line_no == 1) {
            if (len != 3 || memcmp(line, "ply", 3))
                return mmi_fail(MM_ERR_FORMAT, "%s: not a PLY file (no 'ply' line first)", name);
            continue;
        }
        if (len == 10 && !memcmp(line, "end_header", 10))
            break;
        if (line_no == 2 && (len < 7 || memcmp(line, "format ", 7)))
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY format line missing after 'ply'", name);
        have_format |= line_no == 2;
        MMI_TRY(parse_header_line(h, line, len, line_no, name));
    }
    if (!have_format)
        return mmi_fail(MM_ERR_FORMAT, "%s: PLY header has no format line", name);
    *body = pos;
    return MM_OK;
}

/* ---- body ---- */

static mm_status truncated(const ply_reader *r)
{
    return mmi_fail(MM_ERR_FORMAT, "%s: PLY data cut short in element '%s' item %llu (offset "
                    "%zu of %zu)", r->name, r->element, (unsigned long long)r->item, r->pos,
                    r->size);
}

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static mm_status read_ascii(ply_reader *r, double *out)
{
    while (r->pos < r->size && is_space(r->data[r->pos]))
        r->pos++;
    if (r->pos == r->size)
        return truncated(r);
    const char *s = (const char *)r->data + r->pos;
    size_t len = 0, used;
    while (r->pos + len < r->size && !is_space(r->data[r->pos + len]))
        len++;
    double v = mmi_decimal_parse(s, len, &used);
    if (used != len)
        return mmi_fail(MM_ERR_FORMAT, "%s: PLY element '%s' item %llu: '%.*s' is not a number "
                        "(offset %zu)", r->name, r->element, (unsigned long long)r->item,
                        (int)(len < 32 ? len : 32), s, r->pos);
    r->pos += len;
    *out = v;
    return MM_OK;
}

static mm_status read_value(ply_reader *r, ply_type type, double *out)
{
    if (r->format == PLY_ASCII)
        return read_ascii(r, out);
    unsigned n = ply_types[type].size;
    if (r->size - r->pos < n)
        return truncated(r);
    uint8_t b[8];
    for (unsigned i = 0; i < n; i++)
        b[i] = r->data[r->pos + (r->format == PLY_LE ? i : n - 1 - i)];
    r->pos += n;
    uint64_t u = 0;
    for (unsigned i = 0; i < n; i++)
        u |= (uint64_t)b[i] << (8 * i);
    switch (type) {
    case PLY_INT8: *out = (int8_t)u; break;
    case PLY_UINT8: *out = (uint8_t)u; break;
    case PLY_INT16: *out = (int16_t)u; break;
    case PLY_UINT16: *out = (uint16_t)u; break;
    case PLY_INT32: *out = (int32_t)u; break;
    case PLY_UINT32: *out = (uint32_t)u; break;
    case PLY_FLOAT32: {
        uint32_t bits = (uint32_t)u;
        float f;
        memcpy(&f, &bits, sizeof f);
        *out = f;
        break;
    }
    default: {
        double d;
        memcpy(&d, &u, sizeof d);
        *out = d;
        break;
    }
    }
    return MM_OK;
}

/* Skip one list property: its length, then that many items. */
static mm_status skip_list(ply_reader *r, const ply_property *p)
{
    double count;
    MMI_TRY(read_value(r, p->count_type, &count));
    /* Each item takes at least one byte (binary: its size; ASCII: a digit and a space). */
    size_t min_item = r->format == PLY_ASCII ? 1 : ply_types[p->type].size;
    if (!(count >= 0) || count != floor(count) || count > (double)((r->size - r->pos) / min_item))
        return mmi_fail(MM_ERR_FORMAT, "%s: PLY list '%s' of element '%s' item %llu has length "
                        "%g, not a count of the items present", r->name, p->name, r->element,
                        (unsigned long long)r->item, count);
    double ignored;
    if (r->format != PLY_ASCII) {
        r->pos += (size_t)count * min_item;
        return MM_OK;
    }
    for (size_t i = 0; i < (size_t)count; i++)
        MMI_TRY(read_value(r, p->type, &ignored));
    return MM_OK;
}

/* The fewest bytes one item of e can take, so a declared count can be checked against the
 * bytes left before any work or allocation. */
static size_t min_item_bytes(const ply_element *e, ply_format format)
{
    size_t n = 0;
    for (int i = 0; i < e->n_props; i++) {
        const ply_property *p = &e->props[i];
        if (format == PLY_ASCII)
            n += 2; /* a digit and a separator */
        else
            n += ply_types[p->count_type != PLY_NONE ? p->count_type : p->type].size;
    }
    return n;
}

static mm_status check_count(const ply_reader *r, const ply_element *e)
{
    size_t min = min_item_bytes(e, r->format);
    /* ASCII: the last number of the file needs no separator after it. */
    size_t left = r->size - r->pos + (r->format == PLY_ASCII);
    if (min && e->count > left / min)
        return mmi_fail(MM_ERR_FORMAT, "%s: PLY element '%s' declares %llu items, more than "
                        "the %zu bytes left can hold", r->name, e->name,
                        (unsigned long long)e->count, r->size - r->pos);
    return MM_OK;
}

static mm_status skip_element(ply_reader *r, const ply_element *e)
{
    MMI_TRY(check_count(r, e));
    r->element = e->name;
    double ignored;
    for (r->item = 0; e->n_props && r->item < e->count; r->item++)
        for (int i = 0; i < e->n_props; i++) {
            const ply_property *p = &e->props[i];
            if (p->count_type != PLY_NONE)
                MMI_TRY(skip_list(r, p));
            else
                MMI_TRY(read_value(r, p->type, &ignored));
        }
    return MM_OK;
}

/* Where each property of the vertex element goes: 0..2 xyz, 3..5 rgb, 6..8 normals, -1 none. */
static const char *const vertex_slots[9] = {"x", "y", "z", "red", "green", "blue",
                                            "nx", "ny", "nz"};

/* The scale that takes a colour of this type into [0, 1]; 0 for types colours do not use. */
static double colour_scale(ply_type t)
{
    return t == PLY_UINT8 ? 1.0 / 255 : t == PLY_UINT16 ? 1.0 / 65535
         : t == PLY_FLOAT32 || t == PLY_FLOAT64 ? 1 : 0;
}

static mm_status read_vertices(ply_reader *r, const ply_element *e, const mm_options *options,
                               mm_points **out)
{
    int slot_of[PLY_MAX_PROPS], prop_of[9];
    for (int s = 0; s < 9; s++)
        prop_of[s] = -1;
    for (int i = 0; i < e->n_props; i++) {
        slot_of[i] = -1;
        for (int s = 0; s < 9; s++)
            if (e->props[i].count_type == PLY_NONE && !strcmp(e->props[i].name, vertex_slots[s])) {
                slot_of[i] = s;
                prop_of[s] = i;
            }
    }
    for (int group = 0; group < 3; group++) {
        int present = 0;
        for (int s = 3 * group; s < 3 * group + 3; s++)
            present += prop_of[s] >= 0;
        if (group == 0 && present < 3)
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY vertex element lacks scalar x, y and z",
                            r->name);
        if (present != 0 && present != 3)
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY vertex element has only some of %s, %s, %s",
                            r->name, vertex_slots[3 * group], vertex_slots[3 * group + 1],
                            vertex_slots[3 * group + 2]);
    }
    for (int s = 3; s < 6 && prop_of[3] >= 0; s++)
        if (!colour_scale(e->props[prop_of[s]].type))
            return mmi_fail(MM_ERR_FORMAT, "%s: PLY colour '%s' has type %s (uchar, ushort, "
                            "float or double expected)", r->name, vertex_slots[s],
                            ply_types[e->props[prop_of[s]].type].name);
    if (e->count == 0)
        return mmi_fail(MM_ERR_FORMAT, "%s: PLY file has no points", r->name);
    int64_t max_count = mmi_opt_int(options, MM_OPT_POINTS_MAX_COUNT);
    if (e->count > (uint64_t)max_count)
        return mmi_fail(MM_ERR_LIMIT, "%s: %llu points, more than the limit of %lld "
                        "(MM_OPT_POINTS_MAX_COUNT)", r->name, (unsigned long long)e->count,
                        (long long)max_count);
    MMI_TRY(check_count(r, e));

    size_t n = (size_t)e->count;
    mm_points *pts = mmi_calloc(1, sizeof *pts);
    if (pts) {
        pts->n_points = n;
        pts->xyz = mmi_array(n * 3, sizeof(float));
        pts->rgb = prop_of[3] >= 0 ? mmi_array(n * 3, sizeof(float)) : NULL;
        pts->normals = prop_of[6] >= 0 ? mmi_array(n * 3, sizeof(float)) : NULL;
    }
    if (!pts || !pts->xyz || (prop_of[3] >= 0 && !pts->rgb) || (prop_of[6] >= 0 && !pts->normals)) {
        mmi_points_free(pts);
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %zu points", r->name, n);
    }
    r->element = e->name;
    mm_status st = MM_OK;
    for (r->item = 0; st == MM_OK && r->item < e->count; r->item++) {
        size_t k = (size_t)r->item * 3;
        for (int i = 0; st == MM_OK && i < e->n_props; i++) {
            const ply_property *p = &e->props[i];
            double v;
            if (p->count_type != PLY_NONE) {
                st = skip_list(r, p);
                continue;
            }
            st = read_value(r, p->type, &v);
            int s = slot_of[i];
            if (st != MM_OK || s < 0)
                continue;
            if (!isfinite(v) || fabs(v) > FLT_MAX) {
                st = mmi_fail(MM_ERR_FORMAT, "%s: point %llu has %s = %g, not a finite float",
                              r->name, (unsigned long long)r->item, vertex_slots[s], v);
                continue;
            }
            if (s < 3) {
                pts->xyz[k + (size_t)s] = (float)v;
            } else if (s < 6) {
                v *= colour_scale(p->type);
                if (!(v >= 0 && v <= 1))
                    st = mmi_fail(MM_ERR_FORMAT, "%s: point %llu has %s = %g, outside [0, 1]",
                                  r->name, (unsigned long long)r->item, vertex_slots[s], v);
                pts->rgb[k + (size_t)s - 3] = (float)v;
            } else {
                pts->normals[k + (size_t)s - 6] = (float)v;
            }
        }
    }
    if (st != MM_OK) {
        mmi_points_free(pts);
        return st;
    }
    *out = pts;
    return MM_OK;
}

mm_status mmi_points_parse_ply(const void *data, size_t size, const char *name,
                               const mm_options *options, mm_points **out)
{
    *out = NULL;
    ply_header *h = mmi_calloc(1, sizeof *h);
    if (!h)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the PLY header", name);
    size_t body = 0;
    mm_status st = parse_header(data, size, name, h, &body);
    ply_reader r = {.data = data, .size = size, .pos = body, .format = h->format, .name = name};
    int vertex = -1;
    for (int i = 0; st == MM_OK && i < h->n_elements && vertex < 0; i++) {
        if (!strcmp(h->elements[i].name, "vertex"))
            vertex = i;
        else
            st = skip_element(&r, &h->elements[i]);
    }
    if (st == MM_OK && vertex < 0)
        st = mmi_fail(MM_ERR_FORMAT, "%s: PLY file has no vertex element", name);
    if (st == MM_OK)
        st = read_vertices(&r, &h->elements[vertex], options, out);
    mmi_free(h);
    return st;
}

mm_status mmi_points_load_file(const char *path, const mm_options *options, mm_points **out)
{
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (!file)
        return mmi_fail(MM_ERR_IO, "%s: cannot open point cloud file", path);
    /* Read in growing blocks to the end: no size is trusted from the file system (a pipe or a
     * directory reports none or a false one). */
    uint8_t *data = NULL;
    size_t size = 0, cap = 0;
    mm_status st = MM_OK;
    while (st == MM_OK) {
        if (size == cap) {
            size_t grown = cap ? 2 * cap : 1 << 16;
            uint8_t *bigger = grown > cap ? mmi_realloc(data, grown) : NULL;
            if (!bigger) {
                st = mmi_fail(MM_ERR_NOMEM, "%s: out of memory after %zu bytes", path, size);
                break;
            }
            data = bigger;
            cap = grown;
        }
        size_t got = fread(data + size, 1, cap - size, file);
        size += got;
        if (ferror(file))
            st = mmi_fail(MM_ERR_IO, "%s: read error", path);
        else if (got == 0)
            break;
    }
    fclose(file);
    if (st == MM_OK)
        st = mmi_points_parse_ply(data, size, path, options, out);
    mmi_free(data);
    return st;
}

mm_status mmi_points_from_arrays(const float *xyz, const float *rgb, size_t n_points,
                                 mm_points **out)
{
    *out = NULL;
    if (n_points == 0 || n_points > SIZE_MAX / (3 * sizeof(float)))
        return mmi_fail(MM_ERR_ARG, "point count %zu is 0 or beyond memory", n_points);
    for (size_t i = 0; i < n_points * 3; i++) {
        if (!isfinite(xyz[i]))
            return mmi_fail(MM_ERR_ARG, "point %zu has a coordinate that is not a finite number",
                            i / 3);
        if (rgb && !(rgb[i] >= 0 && rgb[i] <= 1))
            return mmi_fail(MM_ERR_ARG, "point %zu has a colour outside [0, 1]", i / 3);
    }
    mm_points *pts = mmi_calloc(1, sizeof *pts);
    if (pts) {
        pts->n_points = n_points;
        pts->xyz = mmi_array(n_points * 3, sizeof(float));
        pts->rgb = rgb ? mmi_array(n_points * 3, sizeof(float)) : NULL;
    }
    if (!pts || !pts->xyz || (rgb && !pts->rgb)) {
        mmi_points_free(pts);
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu points", n_points);
    }
    memcpy(pts->xyz, xyz, n_points * 3 * sizeof(float));
    if (rgb)
        memcpy(pts->rgb, rgb, n_points * 3 * sizeof(float));
    *out = pts;
    return MM_OK;
}

void mmi_points_free(mm_points *points)
{
    if (!points)
        return;
    mmi_free(points->xyz);
    mmi_free(points->rgb);
    mmi_free(points->normals);
    mmi_free(points);
}
