/* JSON: the strict reader and the writer. See json.h. */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "status.h"
#include "unicode.h"

/* ---------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------- */


typedef struct {
    const unsigned char *text;
    size_t len, pos;
    mmi_json *doc;
} json_parser;

static mm_status json_error(size_t offset, const char *what)
{
    return mmi_fail(MM_ERR_FORMAT, "JSON: %s at offset %zu", what, offset);
}

static mm_status json_unexpected(const json_parser *ps)
{
    if (ps->pos >= ps->len)
        return json_error(ps->pos, "unexpected end of input");
    unsigned char c = ps->text[ps->pos];
    if (c >= 0x20 && c < 0x7f)
        return mmi_fail(MM_ERR_FORMAT, "JSON: unexpected character '%c' at offset %zu", c,
                        ps->pos);
    return mmi_fail(MM_ERR_FORMAT, "JSON: unexpected byte 0x%02x at offset %zu", c, ps->pos);
}

static void skip_space(json_parser *ps)
{
    while (ps->pos < ps->len) {
        unsigned char c = ps->text[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        ps->pos++;
    }
}

static int peek(const json_parser *ps)
{
    return ps->pos < ps->len ? ps->text[ps->pos] : -1;
}

/* Append a value; its fields other than type and offset are filled by the caller. */
static mm_status new_value(json_parser *ps, mmi_json_type type, size_t *index)
{
    mmi_json *doc = ps->doc;
    if (doc->n_values == doc->cap_values) {
        if (doc->n_values >= MMI_JSON_MAX_VALUES)
            return mmi_fail(MM_ERR_LIMIT, "JSON: more than %u values (at offset %zu)",
                            MMI_JSON_MAX_VALUES, ps->pos);
        size_t cap = doc->cap_values ? doc->cap_values * 2 : 64;
        mmi_json_value *values = mmi_realloc(doc->values, cap * sizeof *values);
        if (!values)
            return mmi_fail(MM_ERR_NOMEM, "JSON: out of memory for %zu values", cap);
        doc->values = values;
        doc->cap_values = cap;
    }
    *index = doc->n_values++;
    mmi_json_value *v = &doc->values[*index];
    memset(v, 0, sizeof *v);
    v->type = type;
    v->offset = ps->pos;
    v->next = doc->n_values;
    return MM_OK;
}

/* The four hex digits of a \u escape starting at ps->pos (just after the 'u'). */
static mm_status hex4(json_parser *ps, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++, ps->pos++) {
        int c = peek(ps), d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return json_error(ps->pos, "bad \\u escape (4 hex digits expected)");
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return MM_OK;
}

/* One escape sequence at ps->pos (at the backslash), decoded into out; returns its length. */
static mm_status parse_escape(json_parser *ps, char *out, size_t *n_out)
{
    size_t start = ps->pos;
    ps->pos++;
    int c = peek(ps);
    static const char simple_in[] = "\"\\/bfnrt", simple_out[] = "\"\\/\b\f\n\r\t";
    const char *hit = c > 0 ? strchr(simple_in, c) : NULL;
    if (hit) {
        ps->pos++;
        out[0] = simple_out[hit - simple_in];
        *n_out = 1;
        return MM_OK;
    }
    if (c != 'u')
        return json_error(start, "invalid escape sequence");
    ps->pos++;
    uint32_t cp;
    MMI_TRY(hex4(ps, &cp));
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return json_error(start, "lone low surrogate escape");
    if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t low;
        if (ps->pos + 1 >= ps->len || ps->text[ps->pos] != '\\' || ps->text[ps->pos + 1] != 'u')
            return json_error(start, "high surrogate escape without its low surrogate");
        ps->pos += 2;
        MMI_TRY(hex4(ps, &low));
        if (low < 0xdc00 || low > 0xdfff)
            return json_error(start, "high surrogate escape without its low surrogate");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    *n_out = mmi_utf8_encode(cp, out);
    return MM_OK;
}

/* Decoded text goes to doc->strings, which has room for the whole input (a string's decoded
 * form plus its NUL is shorter than its quoted form; a number's literal plus NUL fits in the
 * literal plus the byte that ends it). */
static mm_status parse_string(json_parser *ps)
{
    size_t index;
    MMI_TRY(new_value(ps, MMI_JSON_STRING, &index));
    size_t start = ps->pos++;
    char *dst = ps->doc->strings + ps->doc->strings_len;
    size_t n = 0;
    for (;;) {
        if (ps->pos >= ps->len)
            return json_error(start, "unterminated string");
        unsigned char c = ps->text[ps->pos];
        if (c == '"') {
            ps->pos++;
            break;
        }
        if (c < 0x20)
            return mmi_fail(MM_ERR_FORMAT,
                            "JSON: unescaped control character 0x%02x in string at offset %zu", c,
                            ps->pos);
        if (c == '\\') {
            size_t k = 0;
            MMI_TRY(parse_escape(ps, dst + n, &k));
            n += k;
            continue;
        }
        if (c < 0x80) { /* plain ASCII, most of any text: no decoding needed */
            dst[n++] = (char)c;
            ps->pos++;
            continue;
        }
        uint32_t cp;
        int k = mmi_utf8_decode(ps->text + ps->pos, ps->len - ps->pos, &cp);
        if (k <= 0)
            return json_error(ps->pos, "invalid UTF-8 in string");
        memcpy(dst + n, ps->text + ps->pos, (size_t)k);
        n += (size_t)k;
        ps->pos += (size_t)k;
    }
    dst[n] = '\0';
    mmi_json_value *v = &ps->doc->values[index];
    v->str = dst;
    v->len = n;
    ps->doc->strings_len += n + 1;
    return MM_OK;
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static mm_status parse_number(json_parser *ps)
{
    size_t index;
    MMI_TRY(new_value(ps, MMI_JSON_NUMBER, &index));
    size_t start = ps->pos;
    if (peek(ps) == '-')
        ps->pos++;
    if (peek(ps) == '0')
        ps->pos++;
    else if (is_digit(peek(ps)))
        while (is_digit(peek(ps)))
            ps->pos++;
    else
        return json_error(start, "invalid number");
    if (peek(ps) == '.') {
        ps->pos++;
        if (!is_digit(peek(ps)))
            return json_error(start, "invalid number (digits expected after '.')");
        while (is_digit(peek(ps)))
            ps->pos++;
    }
    if (peek(ps) == 'e' || peek(ps) == 'E') {
        ps->pos++;
        if (peek(ps) == '+' || peek(ps) == '-')
            ps->pos++;
        if (!is_digit(peek(ps)))
            return json_error(start, "invalid number (digits expected in the exponent)");
        while (is_digit(peek(ps)))
            ps->pos++;
    }
    size_t n = ps->pos - start;
    char *dst = ps->doc->strings + ps->doc->strings_len;
    memcpy(dst, ps->text + start, n);
    dst[n] = '\0';
    ps->doc->strings_len += n + 1;
    mmi_json_value *v = &ps->doc->values[index];
    v->str = dst;
    v->len = n;
    return MM_OK;
}

static mm_status parse_literal(json_parser *ps, const char *word, mmi_json_type type)
{
    size_t n = strlen(word), index;
    if (ps->len - ps->pos < n || memcmp(ps->text + ps->pos, word, n) != 0)
        return json_unexpected(ps);
    MMI_TRY(new_value(ps, type, &index));
    ps->pos += n;
    return MM_OK;
}

static mm_status parse_value(json_parser *ps, int depth);

static mm_status parse_container(json_parser *ps, int depth, mmi_json_type type)
{
    if (depth > MMI_JSON_MAX_DEPTH)
        return mmi_fail(MM_ERR_LIMIT, "JSON: nested deeper than %d levels at offset %zu",
                        MMI_JSON_MAX_DEPTH, ps->pos);
    size_t index;
    MMI_TRY(new_value(ps, type, &index));
    int close = type == MMI_JSON_OBJECT ? '}' : ']';
    ps->pos++;
    skip_space(ps);
    uint32_t n = 0;
    if (peek(ps) == close)
        ps->pos++;
    else
        for (;;) {
            if (type == MMI_JSON_OBJECT) {
                skip_space(ps);
                if (peek(ps) != '"')
                    return ps->pos < ps->len ? json_error(ps->pos, "object key expected")
                                             : json_unexpected(ps);
                MMI_TRY(parse_string(ps));
                skip_space(ps);
                if (peek(ps) != ':')
                    return ps->pos < ps->len ? json_error(ps->pos, "':' expected")
                                             : json_unexpected(ps);
                ps->pos++;
            }
            MMI_TRY(parse_value(ps, depth + 1));
            n++;
            skip_space(ps);
            int c = peek(ps);
            ps->pos++;
            if (c == close)
                break;
            if (c != ',') {
                ps->pos--;
                if (c < 0)
                    return json_unexpected(ps);
                return json_error(ps->pos, type == MMI_JSON_OBJECT ? "',' or '}' expected"
                                                                       : "',' or ']' expected");
            }
        }
    mmi_json_value *v = &ps->doc->values[index];
    v->n_children = n;
    v->next = ps->doc->n_values;
    return MM_OK;
}

static mm_status parse_value(json_parser *ps, int depth)
{
    skip_space(ps);
    int c = peek(ps);
    switch (c) {
    case '{': return parse_container(ps, depth, MMI_JSON_OBJECT);
    case '[': return parse_container(ps, depth, MMI_JSON_ARRAY);
    case '"': return parse_string(ps);
    case 't': return parse_literal(ps, "true", MMI_JSON_TRUE);
    case 'f': return parse_literal(ps, "false", MMI_JSON_FALSE);
    case 'n': return parse_literal(ps, "null", MMI_JSON_NULL);
    default:
        if (c == '-' || is_digit(c))
            return parse_number(ps);
        return json_unexpected(ps);
    }
}

mm_status mmi_json_parse(const char *text, size_t len, mmi_json *out)
{
    memset(out, 0, sizeof *out);
    if (len == SIZE_MAX)
        return mmi_fail(MM_ERR_LIMIT, "JSON: input too large");
    out->strings = mmi_malloc(len + 1);
    if (!out->strings)
        return mmi_fail(MM_ERR_NOMEM, "JSON: out of memory for a %zu-byte document", len);
    json_parser ps = {(const unsigned char *)text, len, 0, out};
    mm_status st = parse_value(&ps, 1);
    if (st == MM_OK) {
        skip_space(&ps);
        if (ps.pos < len)
            st = json_error(ps.pos, "unexpected data after the value");
    }
    if (st != MM_OK)
        mmi_json_free(out);
    return st;
}

void mmi_json_free(mmi_json *doc)
{
    mmi_free(doc->values);
    mmi_free(doc->strings);
    memset(doc, 0, sizeof *doc);
}

mm_status mmi_json_member(const mmi_json *doc, const mmi_json_value *object, const char *key,
                          const mmi_json_value **out)
{
    *out = NULL;
    if (!object || object->type != MMI_JSON_OBJECT)
        return MM_OK;
    size_t key_len = strlen(key);
    size_t k = (size_t)(object - doc->values) + 1;
    for (uint32_t i = 0; i < object->n_children; i++) {
        const mmi_json_value *name = &doc->values[k], *value = &doc->values[k + 1];
        if (name->len == key_len && memcmp(name->str, key, key_len) == 0) {
            if (*out)
                return mmi_fail(MM_ERR_FORMAT, "JSON: duplicate key \"%s\" at offset %zu", key,
                                name->offset);
            *out = value;
        }
        k = value->next;
    }
    return MM_OK;
}

const mmi_json_value *mmi_json_first(const mmi_json *doc, const mmi_json_value *array)
{
    if (!array || array->type != MMI_JSON_ARRAY || array->n_children == 0)
        return NULL;
    return &doc->values[array - doc->values + 1];
}

const mmi_json_value *mmi_json_next(const mmi_json *doc, const mmi_json_value *parent,
                                    const mmi_json_value *v)
{
    return v->next < parent->next ? &doc->values[v->next] : NULL;
}

const char *mmi_json_type_name(mmi_json_type type)
{
    static const char *const names[] = {"null", "false", "true", "number",
                                        "string", "array", "object"};
    return names[type];
}

/* ---------------------------------------------------------------------------------------------
 * Numbers
 * ------------------------------------------------------------------------------------------- */

static mm_status not_a_number(const mmi_json_value *v, const char *where, const char *expected)
{
    if (!v)
        return mmi_fail(MM_ERR_FORMAT, "%s: missing (%s expected)", where, expected);
    return mmi_fail(MM_ERR_FORMAT, "%s: %s expected, found %s%s%.32s%s (offset %zu)", where,
                    expected, mmi_json_type_name(v->type), v->type == MMI_JSON_NUMBER ? " " : "",
                    v->type == MMI_JSON_NUMBER ? v->str : "",
                    v->type == MMI_JSON_NUMBER && v->len > 32 ? "..." : "", v->offset);
}

mm_status mmi_json_int(const mmi_json_value *v, int64_t min, int64_t max, const char *where,
                       int64_t *out)
{
    char range[96];
    snprintf(range, sizeof range, "a whole number in [%" PRId64 ", %" PRId64 "]", min, max);
    if (!v || v->type != MMI_JSON_NUMBER || strpbrk(v->str, ".eE"))
        return not_a_number(v, where, range);
    /* The syntax was checked by the parser: an optional '-', then digits. */
    const char *p = v->str + (v->str[0] == '-');
    uint64_t mag = 0;
    int overflow = 0;
    for (; *p; p++) {
        unsigned d = (unsigned)(*p - '0');
        overflow |= mag > (UINT64_MAX - d) / 10;
        mag = mag * 10 + d;
    }
    int negative = v->str[0] == '-';
    if (overflow || mag > (uint64_t)INT64_MAX + negative)
        return not_a_number(v, where, range);
    int64_t value = negative ? (int64_t)(0 - mag) : (int64_t)mag;
    if (value < min || value > max)
        return not_a_number(v, where, range);
    *out = value;
    return MM_OK;
}

double mmi_decimal_parse(const char *s, size_t len, size_t *used)
{
    /* Digits as a decimal mantissa and a power of ten; the digits past 17 only move the
     * exponent (they cannot change a double's nearest value by more than an ulp). */
    size_t i = 0;
    int negative = i < len && s[i] == '-';
    i += i < len && (s[i] == '-' || s[i] == '+');
    double mantissa = 0;
    long exponent = 0;
    int digits = 0, seen = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, seen++) {
        if (digits < 17) {
            mantissa = mantissa * 10 + (s[i] - '0');
            digits += mantissa > 0;
        } else
            exponent++;
    }
    if (i < len && s[i] == '.')
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, seen++)
            if (digits < 17) {
                mantissa = mantissa * 10 + (s[i] - '0');
                digits += mantissa > 0;
                exponent--;
            }
    if (!seen) {
        if (used)
            *used = 0;
        return 0;
    }
    if (i + 1 < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        int exp_negative = s[j] == '-';
        j += s[j] == '-' || s[j] == '+';
        if (j < len && s[j] >= '0' && s[j] <= '9') {
            long e = 0;
            for (; j < len && s[j] >= '0' && s[j] <= '9'; j++)
                if (e < 100000)
                    e = e * 10 + (s[j] - '0');
            exponent += exp_negative ? -e : e;
            i = j;
        }
    }
    if (used)
        *used = i;
    double value = mantissa == 0 ? 0 : mantissa * pow(10, (double)exponent);
    return negative ? -value : value;
}

mm_status mmi_json_double(const mmi_json_value *v, const char *where, double *out)
{
    if (!v || v->type != MMI_JSON_NUMBER)
        return not_a_number(v, where, "a number");
    double value = mmi_decimal_parse(v->str, v->len, NULL);
    if (!isfinite(value))
        return not_a_number(v, where, "a number within the range of a double");
    *out = value;
    return MM_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------- */

static void write_bytes(mmi_json_writer *w, const char *bytes, size_t n)
{
    if (w->status != MM_OK)
        return;
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n + 1)
            cap *= 2;
        char *data = mmi_realloc(w->data, cap);
        if (!data) {
            w->status = mmi_fail(MM_ERR_NOMEM, "JSON: out of memory for %zu bytes of output",
                                 cap);
            return;
        }
        w->data = data;
        w->cap = cap;
    }
    memcpy(w->data + w->len, bytes, n);
    w->len += n;
    w->data[w->len] = '\0';
}

void mmi_json_write_raw(mmi_json_writer *w, const char *text)
{
    write_bytes(w, text, strlen(text));
}

void mmi_json_write_string(mmi_json_writer *w, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    write_bytes(w, "\"", 1);
    size_t run = 0; /* bytes from s[i - run] that need no escaping, written in one go */
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = mmi_utf8_decode(s + i, len - i, &cp);
        if (k > 0 && cp >= 0x20 && cp != '"' && cp != '\\') {
            i += (size_t)k;
            run += (size_t)k;
            continue;
        }
        write_bytes(w, (const char *)s + i - run, run);
        run = 0;
        char esc[8];
        const char *out = esc;
        if (k <= 0) {
            out = "\xef\xbf\xbd"; /* U+FFFD for the bytes that form no character */
            i += k < 0 ? (size_t)-k : len - i; /* 0: a character cut off at the end */
        } else {
            switch (cp) {
            case '"': out = "\\\""; break;
            case '\\': out = "\\\\"; break;
            case '\n': out = "\\n"; break;
            case '\r': out = "\\r"; break;
            case '\t': out = "\\t"; break;
            case '\b': out = "\\b"; break;
            case '\f': out = "\\f"; break;
            default: snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
            }
            i += (size_t)k;
        }
        write_bytes(w, out, strlen(out));
    }
    write_bytes(w, (const char *)s + len - run, run);
    write_bytes(w, "\"", 1);
}

void mmi_json_write_int(mmi_json_writer *w, int64_t value)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRId64, value);
    write_bytes(w, text, strlen(text));
}

mm_status mmi_json_writer_finish(mmi_json_writer *w)
{
    if (w->status == MM_OK && !w->data)
        write_bytes(w, "", 0);
    if (w->status != MM_OK) {
        mmi_free(w->data);
        w->data = NULL;
        w->len = w->cap = 0;
    }
    return w->status;
}
