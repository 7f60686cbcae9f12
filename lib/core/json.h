/* JSON (RFC 8259): a strict, bounds-checked reader for untrusted documents and a writer that
 * always produces valid JSON. Shared by the chat-request mapping (chatjson.c) and the server.
 *
 * Any malformed byte read yields MM_ERR_FORMAT with a message naming the problem and its byte
 * offset; sizes beyond the limits below yield MM_ERR_LIMIT. */
#ifndef MMI_JSON_H
#define MMI_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "mm.h"

/* ---- reading ----
 * No comments, trailing commas, single quotes, leading zeros, BOM, or bytes after the value.
 * Strings must be valid UTF-8 (no overlongs, no surrogates) with escapes decoded, including
 * surrogate pairs; a lone surrogate escape is an error. Numbers are checked for syntax and kept
 * as their literal text (never converted, so a 1000-digit number is no problem). */

#define MMI_JSON_MAX_DEPTH 64          /* nested arrays/objects */
#define MMI_JSON_MAX_VALUES (1u << 20) /* values in one document */

typedef enum {
    MMI_JSON_NULL,
    MMI_JSON_FALSE,
    MMI_JSON_TRUE,
    MMI_JSON_NUMBER,
    MMI_JSON_STRING,
    MMI_JSON_ARRAY,
    MMI_JSON_OBJECT
} mmi_json_type;

/* The document is a flat array of values in document order. A container's children follow it;
 * an object's children alternate key (a string) and value. */
typedef struct {
    mmi_json_type type;
    uint32_t n_children; /* array: elements; object: key/value pairs */
    size_t next;         /* index of the first value after this one's subtree */
    size_t offset;       /* byte offset of the value in the input */
    const char *str;     /* string: decoded bytes; number: the literal; NUL-terminated */
    size_t len;          /* bytes in str, without the NUL (a string may hold \u0000) */
} mmi_json_value;

typedef struct {
    mmi_json_value *values; /* values[0] is the root */
    size_t n_values, cap_values;
    char *strings; /* decoded strings and number literals, each NUL-terminated */
    size_t strings_len;
} mmi_json;

mm_status mmi_json_parse(const char *text, size_t len, mmi_json *out);
void mmi_json_free(mmi_json *doc);

/* Member `key` of an object: NULL when `object` is not an object or has no such key. Fails
 * (MM_ERR_FORMAT) when the key occurs twice, so no reader can be fooled by a second copy. */
mm_status mmi_json_member(const mmi_json *doc, const mmi_json_value *object, const char *key,
                          const mmi_json_value **out);
/* Children of an array: first element (NULL if empty), and the element after `v` (NULL after
 * the last one; `parent` is the array). */
const mmi_json_value *mmi_json_first(const mmi_json *doc, const mmi_json_value *array);
const mmi_json_value *mmi_json_next(const mmi_json *doc, const mmi_json_value *parent,
                                    const mmi_json_value *v);
/* Name of a type for messages ("string", "object", ...). */
const char *mmi_json_type_name(mmi_json_type type);


/* A number's value. Fails (MM_ERR_FORMAT, naming `where`) when v is not a number, or for
 * _int when it is not a whole number that fits in [min, max] ("1.0" and "1e2" are refused: a
 * count written with a fraction is a mistake, not a request). The conversion does not depend
 * on the C locale. */
mm_status mmi_json_int(const mmi_json_value *v, int64_t min, int64_t max, const char *where,
                       int64_t *out);
mm_status mmi_json_double(const mmi_json_value *v, const char *where, double *out);
/* The decimal number at s[0..len) ([+-]digits[.digits][(e|E)[+-]digits], digits on at least
 * one side of the point), converted without the C locale; *used (may be NULL) receives the
 * characters read, 0 when none form a number. Out of a double's range gives +-inf. */
double mmi_decimal_parse(const char *s, size_t len, size_t *used);

/* ---- writing ----
 * Appends to a growing buffer. The first failure (out of memory) sticks: later calls do
 * nothing and mmi_json_writer_finish reports it, so a writer runs without checks between
 * calls. The caller writes punctuation with _raw; strings are always escaped. */
typedef struct {
    char *data; /* NUL-terminated once anything is written */
    size_t len, cap;
    mm_status status;
} mmi_json_writer;

/* Literal JSON text (punctuation, keys known to need no escaping, true/false/null). */
void mmi_json_write_raw(mmi_json_writer *w, const char *text);
/* text[0..len) as a JSON string: quotes, backslashes and control characters escaped (\n, \t,
 * \u001f ...), everything else as UTF-8; each byte that is not part of a valid UTF-8 character
 * becomes U+FFFD, so the output is valid JSON whatever the input. */
void mmi_json_write_string(mmi_json_writer *w, const char *text, size_t len);
void mmi_json_write_int(mmi_json_writer *w, int64_t value);
/* MM_OK and the text (owned by the writer's caller: release with mmi_free(w->data)), or the
 * first failure, with w->data freed. */
mm_status mmi_json_writer_finish(mmi_json_writer *w);

#endif
