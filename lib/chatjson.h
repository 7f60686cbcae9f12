/* Chat conversations given as JSON in the shapes of the OpenAI and Anthropic chat APIs: base64
 * and data-URL decoding, the reader that turns a request into messages of text and image parts
 * and generation settings, and the writer of the API's response object. The JSON itself is
 * json.c's.
 *
 * Everything here works on untrusted input: any malformed byte yields MM_ERR_FORMAT with a
 * message naming the problem and its byte offset (or its place in the conversation, such as
 * "messages[2].content[1]"); sizes beyond the limits below yield MM_ERR_LIMIT. */
#ifndef MMI_CHATJSON_H
#define MMI_CHATJSON_H

#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "json.h"
#include "mm.h"

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

/* OpenAI's image_url.detail: how finely the image is to be looked at. */
typedef enum { MMI_CHAT_DETAIL_AUTO, MMI_CHAT_DETAIL_LOW, MMI_CHAT_DETAIL_HIGH } mmi_chat_detail;

typedef struct {
    mmi_chat_part_kind kind;
    const char *text;    /* TEXT: UTF-8, NUL-terminated, owned by the conversation's document */
    size_t text_len;
    uint8_t *image;      /* IMAGE, AUDIO: the encoded file's bytes (PNG, JPEG; WAV), owned */
    size_t image_len;
    mmi_chat_detail detail; /* IMAGE: "detail" of the part (AUTO when absent) */
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
    int anthropic_parts; /* some part had a shape only Anthropic uses ({"type": "image"}) */
} mmi_chat;

/* Parse and check a whole conversation, decoding every image's base64 into the file's bytes
 * (not its pixels), before anything uses it. */
mm_status mmi_chat_parse(const char *json, size_t len, mmi_chat *out);
void mmi_chat_free(mmi_chat *chat);

/* Add a parsed conversation to a session, message by message, through its chat template.
 * The cost is checked first, before the session changes or any pixel is decoded: every text,
 * every image's header (MM_OPT_IMAGE_MAX_SIDE, MM_OPT_IMAGE_MAX_PIXELS), the pixels of all images
 * together (MM_OPT_IMAGE_MAX_TOTAL_PIXELS) and their positions against the free context. The
 * session then decodes and encodes each message's images one at a time as it adds the message. In a message, images that come before all of its text go where the
 * template puts images (LLaVA: first, each followed by a newline); otherwise each image is
 * marked at its place in the text. Consecutive text parts are joined by a newline. Text may
 * not contain the image marker "<image>" (MM_ERR_FORMAT). When the session refuses a message
 * (MM_ERR_CTX_FULL, MM_ERR_CANCELLED, ...) the messages before it stay added; the error message
 * says how many. */
mm_status mmi_chat_add_to_session(mm_session *session, const mmi_chat *chat,
                                  const mm_options *options);

/* ---- requests and responses ---- */

struct mm_chat_request {
    mmi_chat chat;
    mm_chat_api api;
    mm_options *settings; /* only the keys the request gives */
    const char **stops;   /* into chat.doc */
    size_t n_stops;
    const char *model;    /* "model", into chat.doc; NULL when absent */
    int stream;
    char *response;       /* the last response written, NUL-terminated */
    size_t response_len;
};

/* Parse a request: the conversation (as mmi_chat_parse), the generation settings and the
 * API shape (Anthropic when it has a top-level "system" or "stop_sequences", or an Anthropic
 * image part; OpenAI otherwise). */
mm_status mmi_chat_request_parse(const char *json, size_t len, mm_chat_request **out);
void mmi_chat_request_free(mm_chat_request *request);

/* Generate the answer with the request's settings over `options` and its stop strings (for
 * this call only), and write the response object into request->response. */
mm_status mmi_chat_generate_response(mm_session *session, mm_chat_request *request,
                                     const mm_options *options, mm_piece_fn fn, void *user);

#endif
