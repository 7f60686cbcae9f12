/* Chat conversations as JSON: a strict parser, base64 / data-URL decoding, and the reader for
 * the OpenAI and Anthropic message shapes. See chatjson.h for what is accepted. */
#include "chatjson.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "audio.h"
#include "image.h"
#include "media.h"
#include "model.h"
#include "session.h"
#include "status.h"

/* ---------------------------------------------------------------------------------------------
 * JSON
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

/* Length (1-4) of the well-formed UTF-8 sequence at s (n bytes available), or 0 (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
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
    *n_out = utf8_encode(cp, out);
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
        size_t k = utf8_sequence(ps->text + ps->pos, ps->len - ps->pos);
        if (!k)
            return json_error(ps->pos, "invalid UTF-8 in string");
        memcpy(dst + n, ps->text + ps->pos, k);
        n += k;
        ps->pos += k;
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
 * base64 and data URLs
 * ------------------------------------------------------------------------------------------- */

static int base64_digit(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

mm_status mmi_base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len % 4 != 0)
        return mmi_fail(MM_ERR_FORMAT, "base64: length %zu is not a multiple of 4 (truncated?)",
                        len);
    size_t pad = 0;
    if (len > 0 && text[len - 1] == '=')
        pad = text[len - 2] == '=' ? 2 : 1;
    size_t n = len / 4 * 3 - pad;
    uint8_t *bytes = mmi_malloc(n);
    if (!bytes)
        return mmi_fail(MM_ERR_NOMEM, "base64: out of memory for %zu bytes", n);
    size_t w = 0;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        uint32_t group = 0;
        for (size_t k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)text[i + k];
            int d = base64_digit(c);
            if (c == '=' && last && k >= 4 - pad)
                d = 0;
            if (d < 0) {
                mmi_free(bytes);
                if (c >= 0x20 && c < 0x7f)
                    return mmi_fail(MM_ERR_FORMAT, "base64: invalid character '%c' at offset %zu",
                                    c, i + k);
                return mmi_fail(MM_ERR_FORMAT, "base64: invalid byte 0x%02x at offset %zu", c,
                                i + k);
            }
            group = group << 6 | (uint32_t)d;
        }
        size_t keep = last ? 3 - pad : 3;
        /* The bits of a padded group beyond the kept bytes must be zero (canonical form). */
        if (last && pad && (group & ((1u << (8 * pad)) - 1)) != 0) {
            mmi_free(bytes);
            return mmi_fail(MM_ERR_FORMAT, "base64: non-zero padding bits at offset %zu", i);
        }
        for (size_t k = 0; k < keep; k++)
            bytes[w++] = (uint8_t)(group >> (16 - 8 * k));
    }
    *out = bytes;
    *out_len = n;
    return MM_OK;
}

static int prefix_nocase(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    if (len < n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != prefix[i])
            return 0;
    }
    return 1;
}

mm_status mmi_data_url_decode(const char *url, size_t len, const char **media_type,
                              size_t *media_type_len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (!prefix_nocase(url, len, "data:")) {
        const char *colon = memchr(url, ':', len < 16 ? len : 16);
        if (colon)
            return mmi_fail(MM_ERR_UNSUPPORTED,
                            "URL scheme \"%.*s\" is not supported: images must be inline "
                            "(data:image/...;base64,...), nothing is fetched",
                            (int)(colon - url), url);
        return mmi_fail(MM_ERR_FORMAT, "not a URL (expected data:image/...;base64,...)");
    }
    const char *header = url + 5;
    const char *comma = memchr(header, ',', len - 5);
    if (!comma)
        return mmi_fail(MM_ERR_FORMAT, "data URL without a ','");
    size_t header_len = (size_t)(comma - header);
    const char *semicolon = memchr(header, ';', header_len);
    *media_type = header;
    *media_type_len = semicolon ? (size_t)(semicolon - header) : header_len;
    static const char base64_tag[] = ";base64";
    size_t tag_len = sizeof base64_tag - 1;
    if (header_len < tag_len || !prefix_nocase(comma - tag_len, tag_len, base64_tag))
        return mmi_fail(MM_ERR_UNSUPPORTED, "data URL is not base64-encoded (no ';base64')");
    return mmi_base64_decode(comma + 1, len - (size_t)(comma + 1 - url), out, out_len);
}

/* ---------------------------------------------------------------------------------------------
 * Conversations
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    mmi_chat *chat;
    size_t cap_parts;
} chat_reader;

/* Put the place in the conversation in front of the message a callee left. */
static mm_status at(mm_status st, const char *where)
{
    char detail[400];
    snprintf(detail, sizeof detail, "%s", mm_last_error());
    return mmi_fail(st, "%s: %s", where, detail);
}

static mm_status expect(const mmi_json_value *v, mmi_json_type type, const char *where)
{
    if (!v)
        return mmi_fail(MM_ERR_FORMAT, "%s: missing (%s expected)", where,
                        mmi_json_type_name(type));
    if (v->type != type)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s expected, found %s (offset %zu)", where,
                        mmi_json_type_name(type), mmi_json_type_name(v->type), v->offset);
    return MM_OK;
}

/* A member that must be present with the given type. */
static mm_status member(const mmi_json *doc, const mmi_json_value *object, const char *key,
                        mmi_json_type type, const char *where, const mmi_json_value **out)
{
    char place[160];
    snprintf(place, sizeof place, "%s.%s", where, key);
    mm_status st = mmi_json_member(doc, object, key, out);
    if (st != MM_OK)
        return at(st, where);
    return expect(*out, type, place);
}

static mm_status push_part(chat_reader *r, mmi_chat_part part)
{
    mmi_chat *c = r->chat;
    if (c->n_parts == r->cap_parts) {
        size_t cap = r->cap_parts ? r->cap_parts * 2 : 8;
        mmi_chat_part *parts = mmi_realloc(c->parts, cap * sizeof *parts);
        if (!parts)
            return mmi_fail(MM_ERR_NOMEM, "conversation: out of memory for %zu parts", cap);
        c->parts = parts;
        r->cap_parts = cap;
    }
    c->parts[c->n_parts++] = part;
    return MM_OK;
}

static mm_status push_text(chat_reader *r, const mmi_json_value *text, const char *where)
{
    MMI_TRY(expect(text, MMI_JSON_STRING, where));
    if (memchr(text->str, '\0', text->len))
        return mmi_fail(MM_ERR_FORMAT, "%s: text contains a NUL character (offset %zu)", where,
                        text->offset);
    mmi_chat_part part = {MMI_PART_TEXT, text->str, text->len, NULL, 0};
    return push_part(r, part);
}

static mm_status check_image_type(const char *type, size_t len, const char *where)
{
    if (!prefix_nocase(type, len, "image/"))
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: media type \"%.*s\" is not an image", where,
                        (int)(len > 64 ? 64 : len), type);
    return MM_OK;
}

static mm_status push_media(chat_reader *r, mmi_chat_part_kind kind, uint8_t *bytes, size_t n)
{
    mmi_chat_part part = {kind, NULL, 0, bytes, n};
    mm_status st = push_part(r, part);
    if (st != MM_OK)
        mmi_free(bytes);
    return st;
}

/* OpenAI: "image_url": {"url": "data:..."} or "image_url": "data:...". */
static mm_status read_image_url(chat_reader *r, const mmi_json_value *part, const char *where)
{
    const mmi_json *doc = &r->chat->doc;
    char place[160];
    snprintf(place, sizeof place, "%s.image_url", where);
    const mmi_json_value *image_url, *url = NULL;
    MMI_TRY(mmi_json_member(doc, part, "image_url", &image_url));
    if (image_url && image_url->type == MMI_JSON_OBJECT)
        MMI_TRY(member(doc, image_url, "url", MMI_JSON_STRING, place, &url));
    else {
        MMI_TRY(expect(image_url, MMI_JSON_STRING, place));
        url = image_url;
    }
    const char *type;
    size_t type_len, n;
    uint8_t *bytes;
    mm_status st = mmi_data_url_decode(url->str, url->len, &type, &type_len, &bytes, &n);
    if (st != MM_OK)
        return at(st, place);
    st = check_image_type(type, type_len, place);
    if (st != MM_OK) {
        mmi_free(bytes);
        return st;
    }
    return push_media(r, MMI_PART_IMAGE, bytes, n);
}

/* Anthropic: "source": {"type": "base64", "media_type": "image/png", "data": "..."}. */
static mm_status read_image_source(chat_reader *r, const mmi_json_value *part, const char *where)
{
    const mmi_json *doc = &r->chat->doc;
    char place[160];
    snprintf(place, sizeof place, "%s.source", where);
    const mmi_json_value *source, *type, *media_type, *data;
    MMI_TRY(member(doc, part, "source", MMI_JSON_OBJECT, where, &source));
    MMI_TRY(member(doc, source, "type", MMI_JSON_STRING, place, &type));
    if (strcmp(type->str, "base64") != 0)
        return mmi_fail(MM_ERR_UNSUPPORTED,
                        "%s.type \"%.64s\" is not supported: images must be inline (base64)",
                        place, type->str);
    MMI_TRY(member(doc, source, "media_type", MMI_JSON_STRING, place, &media_type));
    MMI_TRY(check_image_type(media_type->str, media_type->len, place));
    MMI_TRY(member(doc, source, "data", MMI_JSON_STRING, place, &data));
    uint8_t *bytes;
    size_t n;
    mm_status st = mmi_base64_decode(data->str, data->len, &bytes, &n);
    if (st != MM_OK)
        return at(st, place);
    return push_media(r, MMI_PART_IMAGE, bytes, n);
}

/* OpenAI: "input_audio": {"data": "<base64>", "format": "wav"}. */
static mm_status read_input_audio(chat_reader *r, const mmi_json_value *part, const char *where)
{
    const mmi_json *doc = &r->chat->doc;
    char place[160];
    snprintf(place, sizeof place, "%s.input_audio", where);
    const mmi_json_value *audio, *data, *format;
    MMI_TRY(member(doc, part, "input_audio", MMI_JSON_OBJECT, where, &audio));
    MMI_TRY(member(doc, audio, "format", MMI_JSON_STRING, place, &format));
    if (strcmp(format->str, "wav") != 0)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s.format \"%.64s\" is not supported (wav only)",
                        place, format->str);
    MMI_TRY(member(doc, audio, "data", MMI_JSON_STRING, place, &data));
    uint8_t *bytes;
    size_t n;
    mm_status st = mmi_base64_decode(data->str, data->len, &bytes, &n);
    if (st != MM_OK)
        return at(st, place);
    return push_media(r, MMI_PART_AUDIO, bytes, n);
}

static mm_status read_part(chat_reader *r, const mmi_json_value *part, const char *where)
{
    const mmi_json *doc = &r->chat->doc;
    const mmi_json_value *type, *text;
    MMI_TRY(expect(part, MMI_JSON_OBJECT, where));
    MMI_TRY(member(doc, part, "type", MMI_JSON_STRING, where, &type));
    if (strcmp(type->str, "text") == 0 || strcmp(type->str, "input_text") == 0) {
        char place[160];
        snprintf(place, sizeof place, "%s.text", where);
        MMI_TRY(mmi_json_member(doc, part, "text", &text));
        return push_text(r, text, place);
    }
    if (strcmp(type->str, "image_url") == 0 || strcmp(type->str, "input_image") == 0)
        return read_image_url(r, part, where);
    if (strcmp(type->str, "image") == 0)
        return read_image_source(r, part, where);
    if (strcmp(type->str, "input_audio") == 0)
        return read_input_audio(r, part, where);
    return mmi_fail(MM_ERR_UNSUPPORTED, "%s.type \"%.64s\" is not supported", where, type->str);
}

/* Content: a string (one text part) or an array of parts. */
static mm_status read_content(chat_reader *r, const mmi_json_value *content, const char *where)
{
    if (content && content->type == MMI_JSON_STRING)
        return push_text(r, content, where);
    MMI_TRY(expect(content, MMI_JSON_ARRAY, where));
    size_t i = 0;
    for (const mmi_json_value *part = mmi_json_first(&r->chat->doc, content); part;
         part = mmi_json_next(&r->chat->doc, content, part), i++) {
        char place[128];
        snprintf(place, sizeof place, "%s[%zu]", where, i);
        MMI_TRY(read_part(r, part, place));
    }
    return MM_OK;
}

static mm_status read_role(const mmi_json_value *role, const char *where, mmi_chat_role *out)
{
    MMI_TRY(expect(role, MMI_JSON_STRING, where));
    if (strcmp(role->str, "developer") == 0) /* OpenAI's newer name for system */
        *out = MMI_ROLE_SYSTEM;
    else if (!mmi_chat_role_from_name(role->str, out))
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s \"%.64s\" is not supported", where, role->str);
    return MM_OK;
}

static mm_status read_message(chat_reader *r, const mmi_json_value *content, mmi_chat_role role,
                              size_t json_index, const char *where)
{
    mmi_chat_message *m = &r->chat->messages[r->chat->n_messages];
    m->role = role;
    m->json_index = json_index;
    m->first_part = r->chat->n_parts;
    MMI_TRY(read_content(r, content, where));
    m->n_parts = r->chat->n_parts - m->first_part;
    r->chat->n_messages++;
    return MM_OK;
}

static mm_status read_conversation(chat_reader *r)
{
    const mmi_json *doc = &r->chat->doc;
    const mmi_json_value *root = &doc->values[0], *messages = root, *system = NULL;
    if (root->type == MMI_JSON_OBJECT) {
        MMI_TRY(member(doc, root, "messages", MMI_JSON_ARRAY, "conversation", &messages));
        MMI_TRY(mmi_json_member(doc, root, "system", &system));
    } else
        MMI_TRY(expect(root, MMI_JSON_ARRAY, "conversation"));
    size_t n = messages->n_children + (system != NULL);
    r->chat->messages = mmi_calloc(n, sizeof *r->chat->messages);
    if (!r->chat->messages)
        return mmi_fail(MM_ERR_NOMEM, "conversation: out of memory for %zu messages", n);
    if (system)
        MMI_TRY(read_message(r, system, MMI_ROLE_SYSTEM, MMI_CHAT_SYSTEM, "system"));
    size_t i = 0;
    for (const mmi_json_value *msg = mmi_json_first(doc, messages); msg;
         msg = mmi_json_next(doc, messages, msg), i++) {
        char where[64], place[96];
        snprintf(where, sizeof where, "messages[%zu]", i);
        MMI_TRY(expect(msg, MMI_JSON_OBJECT, where));
        const mmi_json_value *role, *content;
        mmi_chat_role chat_role = MMI_ROLE_USER;
        snprintf(place, sizeof place, "%s.role", where);
        MMI_TRY(mmi_json_member(doc, msg, "role", &role));
        MMI_TRY(read_role(role, place, &chat_role));
        snprintf(place, sizeof place, "%s.content", where);
        MMI_TRY(mmi_json_member(doc, msg, "content", &content));
        MMI_TRY(read_message(r, content, chat_role, i, place));
    }
    return MM_OK;
}

mm_status mmi_chat_parse(const char *json, size_t len, mmi_chat *out)
{
    memset(out, 0, sizeof *out);
    MMI_TRY(mmi_json_parse(json, len, &out->doc));
    chat_reader r = {out, 0};
    mm_status st = read_conversation(&r);
    if (st != MM_OK)
        mmi_chat_free(out);
    return st;
}

void mmi_chat_free(mmi_chat *chat)
{
    for (size_t i = 0; i < chat->n_parts; i++)
        mmi_free(chat->parts[i].image);
    mmi_free(chat->parts);
    mmi_free(chat->messages);
    mmi_json_free(&chat->doc);
    memset(chat, 0, sizeof *chat);
}

/* ---------------------------------------------------------------------------------------------
 * Feeding a session
 * ------------------------------------------------------------------------------------------- */

static void message_place(const mmi_chat_message *m, char *buf, size_t size)
{
    if (m->json_index == MMI_CHAT_SYSTEM)
        snprintf(buf, size, "system");
    else
        snprintf(buf, size, "messages[%zu]", m->json_index);
}

/* Check one part before anything is added: text must not hold a media marker; an image or a
 * clip is decoded (with the options' limits) into media, which then owns it. */
static mm_status prepare_part(const mmi_chat_part *part, const mm_options *options,
                              mmi_media *media)
{
    if (part->kind == MMI_PART_IMAGE) {
        mm_image *image;
        MMI_TRY(mmi_image_load_memory(part->image, part->image_len, options, &image));
        *media = (mmi_media){.ops = &mmi_image_ops, .source = image};
        return MM_OK;
    }
    if (part->kind == MMI_PART_AUDIO) {
        mm_audio *audio;
        MMI_TRY(mmi_audio_load_memory(part->image, part->image_len, options, &audio));
        *media = (mmi_media){.ops = &mmi_audio_ops, .source = audio};
        return MM_OK;
    }
    size_t n;
    const char *marker = mmi_media_find_marker(part->text, part->text_len, &n);
    if (marker)
        return mmi_fail(MM_ERR_FORMAT, "text contains \"%.*s\", which marks media positions",
                        (int)n, marker);
    return MM_OK;
}

static void media_free(const mmi_media *media)
{
    if (media->ops == &mmi_image_ops)
        mmi_image_free((mm_image *)media->source);
    else if (media->ops == &mmi_audio_ops)
        mmi_audio_free((mm_audio *)media->source);
}

/* The text of message m for the session: text parts joined by newlines, with an image marker
 * for every image, unless all images come before all text (then the template places them). */
static mm_status message_text(const mmi_chat *chat, const mmi_chat_message *m, const char *where,
                              char **out, size_t *len)
{
    /* A conversation without any part has no parts array at all. */
    const mmi_chat_part *parts = m->n_parts ? chat->parts + m->first_part : NULL;
    size_t marker = strlen(MMI_MEDIA_MARKER), cap = 1;
    int text_seen = 0, markers = 0;
    for (size_t k = 0; k < m->n_parts; k++) {
        if (parts[k].kind == MMI_PART_TEXT) {
            cap += parts[k].text_len + 1;
            text_seen = 1;
        } else {
            cap += marker;
            markers |= text_seen;
        }
    }
    char *text = mmi_malloc(cap);
    if (!text)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %zu bytes of text", where, cap);
    size_t n = 0;
    int after_text = 0;
    for (size_t k = 0; k < m->n_parts; k++) {
        if (parts[k].kind == MMI_PART_TEXT) {
            if (after_text)
                text[n++] = '\n';
            memcpy(text + n, parts[k].text, parts[k].text_len);
            n += parts[k].text_len;
            after_text = 1;
        } else {
            if (markers) {
                memcpy(text + n, MMI_MEDIA_MARKER, marker);
                n += marker;
            }
            after_text = 0;
        }
    }
    text[n] = '\0';
    *out = text;
    *len = n;
    return MM_OK;
}

mm_status mmi_chat_add_to_session(mm_session *session, const mmi_chat *chat,
                                  const mm_options *options)
{
    size_t n_images = 0, n_clips = 0;
    for (size_t i = 0; i < chat->n_parts; i++) {
        n_images += chat->parts[i].kind == MMI_PART_IMAGE;
        n_clips += chat->parts[i].kind == MMI_PART_AUDIO;
    }
    const mm_model *model = mmi_session_model(session);
    if (n_images > 0 && !model->vision)
        return mmi_fail(MM_ERR_STATE, "conversation: %zu image%s, but the model has no vision "
                        "encoder (load an mmproj file with it)", n_images,
                        n_images == 1 ? "" : "s");
    if (n_clips > 0 && !model->audio)
        return mmi_fail(MM_ERR_STATE, "conversation: %zu audio clip%s, but the model has no "
                        "audio encoder (load an mmproj file with one)", n_clips,
                        n_clips == 1 ? "" : "s");
    size_t n_all = n_images + n_clips;
    mmi_media *media = mmi_calloc(n_all + 1, sizeof *media);
    mm_status st = media ? MM_OK
                 : mmi_fail(MM_ERR_NOMEM, "conversation: out of memory for %zu media", n_all);
    /* Every part is checked and every image and clip decoded first, so that bad input fails
     * the call before the session changes. */
    char where[64];
    size_t k = 0;
    for (size_t i = 0; i < chat->n_messages && st == MM_OK; i++) {
        const mmi_chat_message *m = &chat->messages[i];
        for (size_t j = 0; j < m->n_parts && st == MM_OK; j++) {
            const mmi_chat_part *part = &chat->parts[m->first_part + j];
            st = prepare_part(part, options, &media[k]);
            k += part->kind != MMI_PART_TEXT;
            if (st != MM_OK) {
                char place[96];
                message_place(m, where, sizeof where);
                snprintf(place, sizeof place, "%s, part %zu", where, j);
                st = at(st, place);
            }
        }
    }
    /* Then message by message; the session encodes each message's media once it knows the
     * message fits (and mm_session_cancel() reaches the encoding too). */
    k = 0;
    for (size_t i = 0; i < chat->n_messages && st == MM_OK; i++) {
        const mmi_chat_message *m = &chat->messages[i];
        size_t n_media = 0;
        for (size_t j = 0; j < m->n_parts; j++)
            n_media += chat->parts[m->first_part + j].kind != MMI_PART_TEXT;
        char *text = NULL;
        size_t len = 0;
        message_place(m, where, sizeof where);
        st = message_text(chat, m, where, &text, &len);
        if (st != MM_OK)
            break;
        st = mmi_session_add_message(session, m->role, text, len, media + k, n_media);
        mmi_free(text);
        k += n_media;
        if (st != MM_OK) {
            char place[128];
            snprintf(place, sizeof place, "%s (%zu earlier message%s added)", where, i,
                     i == 1 ? " was" : "s were");
            st = at(st, place);
        }
    }
    for (size_t i = 0; i < n_all && media; i++)
        media_free(&media[i]);
    mmi_free(media);
    return st;
}
