/* Chat conversations given as JSON in the shapes of the OpenAI and Anthropic chat APIs: a strict,
 * bounds-checked JSON parser, base64 and data-URL decoding, and the reader that turns a
 * conversation into messages of text and image parts.
 *
 * Everything here works on untrusted input: any malformed byte yields MM_ERR_FORMAT with a
 * message naming the problem and its byte offset (or its place in the conversation, such as
 * "messages[2].content[1]"); sizes beyond the limits below yield MM_ERR_LIMIT. */
#ifndef MMI_CHATJSON_H
#define MMI_CHATJSON_H

#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "mm.h"

/* ---- JSON (RFC 8259, strict) ----
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

/* ---- base64 (RFC 4648, standard alphabet, padded) and data URLs (RFC 2397) ----
 * Decoded bytes are allocated with mmi_malloc; the caller frees them with mmi_free. The base64
 * text must be canonical: length a multiple of 4, '=' only as the final one or two characters,
 * unused bits zero. */
mm_status mmi_base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len);
/* "data:<media type>[;param=value]*;base64,<data>". *media_type points into url (not
 * NUL-terminated; length *media_type_len). Non-base64 data URLs are MM_ERR_UNSUPPORTED. */
mm_status mmi_data_url_decode(const char *url, size_t len, const char **media_type,
                              size_t *media_type_len, uint8_t **out, size_t *out_len);

/* ---- conversations ----
 * Accepted shapes: a JSON array of messages, or an object with "messages" (an array) and an
 * optional "system" (Anthropic: a string or an array of text blocks), other keys ignored
 * ("model", "max_tokens", ...). A message is {"role": "system"|"developer"|"user"|"assistant",
 * "content": string | array of parts}. Parts:
 *   {"type":"text","text":"..."}                 (OpenAI, Anthropic; "input_text" too)
 *   {"type":"image_url","image_url":{"url":"data:image/png;base64,..."}}   (OpenAI; the
 *       image_url may also be the URL string itself; "input_image" too)
 *   {"type":"image","source":{"type":"base64","media_type":"image/png","data":"..."}}
 *       (Anthropic)
 *   {"type":"input_audio","input_audio":{"data":"<base64 WAV>","format":"wav"}}   (OpenAI)
 * Images and audio must be inline (data URLs / base64): remote URLs are never fetched
 * (MM_ERR_UNSUPPORTED). Text may not contain NUL characters. */

typedef enum { MMI_PART_TEXT, MMI_PART_IMAGE, MMI_PART_AUDIO } mmi_chat_part_kind;

typedef struct {
    mmi_chat_part_kind kind;
    const char *text;    /* TEXT: UTF-8, NUL-terminated, owned by the conversation's document */
    size_t text_len;
    uint8_t *image;      /* IMAGE, AUDIO: the encoded file's bytes (PNG, JPEG; WAV), owned */
    size_t image_len;
} mmi_chat_part;

typedef struct {
    mmi_chat_role role;         /* chat.h */
    size_t json_index;          /* index in "messages"; MMI_CHAT_SYSTEM for the top "system" */
    size_t first_part, n_parts; /* into mmi_chat.parts */
} mmi_chat_message;

#define MMI_CHAT_SYSTEM SIZE_MAX

typedef struct {
    mmi_json doc;
    mmi_chat_message *messages;
    size_t n_messages;
    mmi_chat_part *parts;
    size_t n_parts;
} mmi_chat;

/* Parse and check a whole conversation, decoding every image's bytes, before anything uses it. */
mm_status mmi_chat_parse(const char *json, size_t len, mmi_chat *out);
void mmi_chat_free(mmi_chat *chat);

/* Add a parsed conversation to a session, message by message, through its chat template.
 * Every text is checked and every image decoded (limits from options) first, so that bad input
 * fails the call before the session changes; the session encodes each message's images as it
 * adds the message. In a message, images that come before all of its text go where the
 * template puts images (LLaVA: first, each followed by a newline); otherwise each image is
 * marked at its place in the text. Consecutive text parts are joined by a newline. Text may
 * not contain the image marker "<image>" (MM_ERR_FORMAT). When the session refuses a message
 * (MM_ERR_CTX_FULL, MM_ERR_CANCELLED, ...) the messages before it stay added; the error message
 * says how many. */
mm_status mmi_chat_add_to_session(mm_session *session, const mmi_chat *chat,
                                  const mm_options *options);

#endif
