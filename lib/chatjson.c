/* Chat requests as JSON: base64 / data-URL decoding, the reader for the OpenAI and Anthropic
 * request shapes and the writer of their response objects. See chatjson.h. */
#include "chatjson.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "audio.h"
#include "image.h"
#include "media.h"
#include "model.h"
#include "options.h"
#include "session.h"
#include "status.h"

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

/* A string compared as a name (role, type): a NUL inside would compare as a shorter C string,
 * so "user\u0000" is refused rather than taken as "user". */
static mm_status expect_name(const mmi_json_value *v, const char *where)
{
    MMI_TRY(expect(v, MMI_JSON_STRING, where));
    if (memchr(v->str, '\0', v->len))
        return mmi_fail(MM_ERR_FORMAT, "%s: \"%.64s\\u0000...\" contains a NUL character "
                        "(offset %zu)", where, v->str, v->offset);
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
    mmi_chat_part part = {MMI_PART_TEXT, text->str, text->len, NULL, 0, MMI_CHAT_DETAIL_AUTO};
    return push_part(r, part);
}

static mm_status check_image_type(const char *type, size_t len, const char *where)
{
    if (!prefix_nocase(type, len, "image/"))
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: media type \"%.*s\" is not an image", where,
                        (int)(len > 64 ? 64 : len), type);
    return MM_OK;
}

static mm_status push_media(chat_reader *r, mmi_chat_part_kind kind, uint8_t *bytes, size_t n,
                            mmi_chat_detail detail)
{
    mmi_chat_part part = {kind, NULL, 0, bytes, n, detail};
    mm_status st = push_part(r, part);
    if (st != MM_OK)
        mmi_free(bytes);
    return st;
}

/* OpenAI's "detail": "auto" | "low" | "high", or null / absent (auto). */
static mm_status read_detail(const mmi_json_value *v, const char *where, mmi_chat_detail *out)
{
    static const char *const names[] = {"auto", "low", "high"};
    char place[192];
    snprintf(place, sizeof place, "%s.detail", where);
    if (!v || v->type == MMI_JSON_NULL)
        return MM_OK;
    MMI_TRY(expect(v, MMI_JSON_STRING, place));
    for (int i = 0; i < 3; i++)
        if (strcmp(v->str, names[i]) == 0) {
            *out = (mmi_chat_detail)i;
            return MM_OK;
        }
    return mmi_fail(MM_ERR_FORMAT, "%s \"%.64s\" is not \"auto\", \"low\" or \"high\"", place,
                    v->str);
}

/* OpenAI: "image_url": {"url": "data:...", "detail": "low"} or "image_url": "data:...". */
static mm_status read_image_url(chat_reader *r, const mmi_json_value *part, const char *where)
{
    const mmi_json *doc = &r->chat->doc;
    char place[160];
    snprintf(place, sizeof place, "%s.image_url", where);
    const mmi_json_value *image_url, *url = NULL, *detail_value = NULL;
    mmi_chat_detail detail = MMI_CHAT_DETAIL_AUTO;
    MMI_TRY(mmi_json_member(doc, part, "image_url", &image_url));
    if (image_url && image_url->type == MMI_JSON_OBJECT) {
        MMI_TRY(member(doc, image_url, "url", MMI_JSON_STRING, place, &url));
        MMI_TRY(mmi_json_member(doc, image_url, "detail", &detail_value));
        MMI_TRY(read_detail(detail_value, place, &detail));
    } else {
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
    return push_media(r, MMI_PART_IMAGE, bytes, n, detail);
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
    MMI_TRY(expect_name(type, place));
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
    r->chat->anthropic_parts = 1;
    return push_media(r, MMI_PART_IMAGE, bytes, n, MMI_CHAT_DETAIL_AUTO);
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
    return push_media(r, MMI_PART_AUDIO, bytes, n, MMI_CHAT_DETAIL_AUTO);
}

static mm_status read_part(chat_reader *r, const mmi_json_value *part, const char *where)
{
    const mmi_json *doc = &r->chat->doc;
    const mmi_json_value *type, *text;
    MMI_TRY(expect(part, MMI_JSON_OBJECT, where));
    MMI_TRY(member(doc, part, "type", MMI_JSON_STRING, where, &type));
    MMI_TRY(expect_name(type, where));
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
    MMI_TRY(expect_name(role, where));
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

/* Check one part before anything is added: text must not hold a media marker; an image's
 * header is read (size limits from options) and its pixel count returned, no pixel decoded
 * (clips were read, their limits checked, before). */
static mm_status check_part(const mmi_chat_part *part, const mm_options *options,
                            uint64_t *pixels)
{
    *pixels = 0;
    if (part->kind == MMI_PART_AUDIO)
        return MM_OK;
    if (part->kind == MMI_PART_IMAGE) {
        int width, height;
        MMI_TRY(mmi_image_size_memory(part->image, part->image_len, options, &width, &height));
        *pixels = (uint64_t)width * (uint64_t)height;
        return MM_OK;
    }
    size_t n;
    const char *marker = mmi_media_find_marker(part->text, part->text_len, &n);
    if (marker)
        return mmi_fail(MM_ERR_FORMAT, "text contains \"%.*s\", which marks media positions",
                        (int)n, marker);
    return MM_OK;
}

/* The text of message m for the session: text parts joined by newlines, with a media marker
 * for every image or clip, unless all come before all text (then the template places them). */
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

/* An image part's "detail" as its own media params; NULL (auto) leaves the session's. */
static const mmi_media_params *part_params(const mmi_chat_part *part)
{
    static const mmi_media_params low = {MMI_DETAIL_LOW}, high = {MMI_DETAIL_HIGH};
    return part->detail == MMI_CHAT_DETAIL_LOW    ? &low
           : part->detail == MMI_CHAT_DETAIL_HIGH ? &high
                                                  : NULL;
}

/* The cost of the whole conversation, before the session changes or any pixel is decoded:
 * every part checked, every image's size read from its header and counted against the pixel
 * budget of the call, and the positions of all images against the free context. */
static mm_status check_cost(mm_session *session, const mmi_chat *chat, const mm_options *options,
                            const mmi_media *media, size_t n_images)
{
    uint64_t max_total = (uint64_t)mmi_opt_int(options, MM_OPT_IMAGE_MAX_TOTAL_PIXELS);
    uint64_t total = 0;
    char where[64], place[96];
    for (size_t i = 0; i < chat->n_messages; i++) {
        const mmi_chat_message *m = &chat->messages[i];
        for (size_t j = 0; j < m->n_parts; j++) {
            uint64_t pixels;
            message_place(m, where, sizeof where);
            snprintf(place, sizeof place, "%s, part %zu", where, j);
            mm_status st = check_part(&chat->parts[m->first_part + j], options, &pixels);
            if (st != MM_OK)
                return at(st, place);
            total += pixels;
            if (total > max_total)
                return mmi_fail(MM_ERR_LIMIT, "%s: the images up to this one have %llu pixels, "
                                "over the budget of one call (MM_OPT_IMAGE_MAX_TOTAL_PIXELS = "
                                "%llu); nothing was decoded", place, (unsigned long long)total,
                                (unsigned long long)max_total);
        }
    }
    uint64_t need = 0;
    for (size_t k = 0; k < n_images; k++) {
        mmi_media_plan plan;
        const mmi_media_params *p = media[k].params ? media[k].params
                                                    : mmi_session_media_params(session);
        MMI_TRY(media[k].ops->plan(mmi_session_model(session), media[k].source, p, &plan));
        need += (uint64_t)plan.n_pos;
    }
    int free_positions = mmi_session_n_ctx(session) - mmi_session_n_past(session);
    if (need > (uint64_t)free_positions)
        return mmi_fail(MM_ERR_CTX_FULL, "conversation: %zu media take %llu positions, but only "
                        "%d of the context's %d are free; nothing was decoded", n_images,
                        (unsigned long long)need, free_positions, mmi_session_n_ctx(session));
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
    /* Images stay in their files' bytes: each is decoded only while the session encodes it.
     * Clips are read here (their length limit checked from the header first). */
    typedef char place[64];
    size_t n_media = n_images + n_clips;
    mmi_image_bytes *sources = mmi_calloc(n_media + 1, sizeof *sources);
    mmi_media *media = mmi_calloc(n_media + 1, sizeof *media);
    place *places = mmi_calloc(n_media + 1, sizeof *places);
    mm_status st = sources && media && places ? MM_OK
                 : mmi_fail(MM_ERR_NOMEM, "conversation: out of memory for %zu media", n_media);
    size_t k = 0;
    for (size_t i = 0; i < chat->n_messages && st == MM_OK; i++) {
        const mmi_chat_message *m = &chat->messages[i];
        for (size_t j = 0; j < m->n_parts && st == MM_OK; j++) {
            const mmi_chat_part *part = &chat->parts[m->first_part + j];
            if (part->kind == MMI_PART_TEXT)
                continue;
            char where[32];
            message_place(m, where, sizeof where);
            snprintf(places[k], sizeof places[k], "%s, part %zu", where, j);
            if (part->kind == MMI_PART_IMAGE) {
                sources[k] = (mmi_image_bytes){part->image, part->image_len, options, places[k]};
                media[k] = (mmi_media){.ops = &mmi_image_bytes_ops, .source = &sources[k],
                                       .params = part_params(part)};
            } else {
                mm_audio *clip;
                st = mmi_audio_load_memory(part->image, part->image_len, options, &clip);
                if (st == MM_OK)
                    media[k] = (mmi_media){.ops = &mmi_audio_ops, .source = clip};
                else
                    st = at(st, places[k]);
            }
            k++;
        }
    }
    if (st == MM_OK)
        st = check_cost(session, chat, options, media, n_media);
    /* Then message by message; the session decodes and encodes each image in turn once it
     * knows the message fits (and mm_session_cancel() reaches the encoding too). */
    char where[64];
    k = 0;
    for (size_t i = 0; i < chat->n_messages && st == MM_OK; i++) {
        const mmi_chat_message *m = &chat->messages[i];
        size_t n = 0;
        for (size_t j = 0; j < m->n_parts; j++)
            n += chat->parts[m->first_part + j].kind != MMI_PART_TEXT;
        char *text = NULL;
        size_t len = 0;
        message_place(m, where, sizeof where);
        st = message_text(chat, m, where, &text, &len);
        if (st != MM_OK)
            break;
        st = mmi_session_add_message(session, m->role, text, len, media + k, n);
        mmi_free(text);
        k += n;
        if (st != MM_OK) {
            char place[128];
            snprintf(place, sizeof place, "%s (%zu earlier message%s added)", where, i,
                     i == 1 ? " was" : "s were");
            st = at(st, place);
        }
    }
    for (size_t i = 0; media && i < n_media; i++)
        if (media[i].ops == &mmi_audio_ops)
            mmi_audio_free((mm_audio *)media[i].source);
    mmi_free(sources);
    mmi_free(media);
    mmi_free(places);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Requests: the conversation and the generation settings
 * ------------------------------------------------------------------------------------------- */

/* A member that may be absent; null counts as absent, as the APIs treat it. */
static mm_status optional(const mmi_json *doc, const mmi_json_value *object, const char *key,
                          const mmi_json_value **out)
{
    MMI_TRY(mmi_json_member(doc, object, key, out));
    if (*out && (*out)->type == MMI_JSON_NULL)
        *out = NULL;
    return MM_OK;
}

/* A setting the options bag refuses (out of its range) is bad input, named by its key. */
static mm_status setting_status(mm_status st, const char *key)
{
    return st == MM_ERR_ARG ? at(MM_ERR_FORMAT, key) : st;
}

static mm_status read_int_setting(mm_chat_request *rq, const mmi_json_value *root,
                                  const char *key, mm_opt opt, int64_t min, int64_t max)
{
    const mmi_json_value *v;
    int64_t value;
    MMI_TRY(optional(&rq->chat.doc, root, key, &v));
    if (!v)
        return MM_OK;
    MMI_TRY(mmi_json_int(v, min, max, key, &value));
    return setting_status(mm_options_set_int(rq->settings, opt, value), key);
}

static mm_status read_float_setting(mm_chat_request *rq, const mmi_json_value *root,
                                    const char *key, mm_opt opt)
{
    const mmi_json_value *v;
    double value;
    MMI_TRY(optional(&rq->chat.doc, root, key, &v));
    if (!v)
        return MM_OK;
    MMI_TRY(mmi_json_double(v, key, &value));
    return setting_status(mm_options_set_float(rq->settings, opt, value), key);
}

static mm_status push_stop(mm_chat_request *rq, const mmi_json_value *v, const char *where)
{
    MMI_TRY(expect(v, MMI_JSON_STRING, where));
    if (v->len == 0 || memchr(v->str, '\0', v->len))
        return mmi_fail(MM_ERR_FORMAT, "%s: a stop string must be non-empty text without NUL "
                        "(offset %zu)", where, v->offset);
    rq->stops[rq->n_stops++] = v->str;
    return MM_OK;
}

/* OpenAI "stop": a string or an array of them; Anthropic "stop_sequences": an array. */
static mm_status read_stops(mm_chat_request *rq, const mmi_json_value *root)
{
    const mmi_json *doc = &rq->chat.doc;
    const mmi_json_value *stop, *sequences;
    MMI_TRY(optional(doc, root, "stop", &stop));
    MMI_TRY(optional(doc, root, "stop_sequences", &sequences));
    if (stop && stop->type != MMI_JSON_STRING)
        MMI_TRY(expect(stop, MMI_JSON_ARRAY, "stop (a string or an array of strings)"));
    if (sequences)
        MMI_TRY(expect(sequences, MMI_JSON_ARRAY, "stop_sequences"));
    size_t n = (stop ? (stop->type == MMI_JSON_STRING ? 1 : stop->n_children) : 0) +
               (sequences ? sequences->n_children : 0);
    rq->stops = mmi_calloc(n ? n : 1, sizeof *rq->stops);
    if (!rq->stops)
        return mmi_fail(MM_ERR_NOMEM, "request: out of memory for %zu stop strings", n);
    if (stop && stop->type == MMI_JSON_STRING)
        return push_stop(rq, stop, "stop");
    const mmi_json_value *arrays[2] = {stop, sequences};
    const char *names[2] = {"stop", "stop_sequences"};
    for (int a = 0; a < 2; a++) {
        size_t i = 0;
        for (const mmi_json_value *v = arrays[a] ? mmi_json_first(doc, arrays[a]) : NULL; v;
             v = mmi_json_next(doc, arrays[a], v), i++) {
            char where[64];
            snprintf(where, sizeof where, "%s[%zu]", names[a], i);
            MMI_TRY(push_stop(rq, v, where));
        }
    }
    return MM_OK;
}

static mm_status read_request(mm_chat_request *rq)
{
    const mmi_json *doc = &rq->chat.doc;
    const mmi_json_value *root = &doc->values[0], *v;
    MMI_TRY(mm_options_create(&rq->settings));
    MMI_TRY(read_int_setting(rq, root, "max_tokens", MM_OPT_MAX_TOKENS, 1, INT32_MAX));
    MMI_TRY(read_int_setting(rq, root, "max_completion_tokens", MM_OPT_MAX_TOKENS, 1,
                             INT32_MAX));
    MMI_TRY(read_int_setting(rq, root, "top_k", MM_OPT_TOP_K, 0, INT32_MAX));
    MMI_TRY(read_int_setting(rq, root, "seed", MM_OPT_SEED, 0, INT64_MAX));
    MMI_TRY(read_float_setting(rq, root, "temperature", MM_OPT_TEMPERATURE));
    MMI_TRY(read_float_setting(rq, root, "top_p", MM_OPT_TOP_P));
    MMI_TRY(read_stops(rq, root));
    MMI_TRY(optional(doc, root, "n", &v));
    int64_t n_choices = 1;
    if (v)
        MMI_TRY(mmi_json_int(v, 1, INT32_MAX, "n", &n_choices));
    if (n_choices != 1)
        return mmi_fail(MM_ERR_UNSUPPORTED, "n: %" PRId64 " choices asked for, only 1 is "
                        "produced", n_choices);
    MMI_TRY(optional(doc, root, "model", &v));
    if (v) {
        MMI_TRY(expect(v, MMI_JSON_STRING, "model"));
        rq->model = v->str;
    }
    MMI_TRY(optional(doc, root, "stream", &v));
    if (v && v->type != MMI_JSON_TRUE && v->type != MMI_JSON_FALSE)
        return mmi_fail(MM_ERR_FORMAT, "stream: true or false expected, found %s (offset %zu)",
                        mmi_json_type_name(v->type), v->offset);
    rq->stream = v && v->type == MMI_JSON_TRUE;
    const mmi_json_value *system, *sequences;
    MMI_TRY(mmi_json_member(doc, root, "system", &system));
    MMI_TRY(mmi_json_member(doc, root, "stop_sequences", &sequences));
    rq->api = system || sequences || rq->chat.anthropic_parts ? MM_CHAT_API_ANTHROPIC
                                                              : MM_CHAT_API_OPENAI;
    return MM_OK;
}

mm_status mmi_chat_request_parse(const char *json, size_t len, mm_chat_request **out)
{
    *out = NULL;
    mm_chat_request *rq = mmi_calloc(1, sizeof *rq);
    if (!rq)
        return mmi_fail(MM_ERR_NOMEM, "request: out of memory");
    mm_status st = mmi_chat_parse(json, len, &rq->chat);
    if (st == MM_OK)
        st = read_request(rq);
    if (st != MM_OK) {
        mmi_chat_request_free(rq);
        return st;
    }
    *out = rq;
    return MM_OK;
}

void mmi_chat_request_free(mm_chat_request *rq)
{
    if (!rq)
        return;
    mmi_chat_free(&rq->chat);
    mm_options_free(rq->settings);
    mmi_free(rq->stops);
    mmi_free(rq->response);
    mmi_free(rq);
}

/* ---------------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------------- */

/* The answer's text as generated, passed on to the caller's callback. */
typedef struct {
    char *text;
    size_t len, cap;
    mm_status status;
    mm_piece_fn fn;
    void *user;
} answer;

static int collect_piece(void *user, const char *piece, size_t len)
{
    answer *a = user;
    if (a->len + len > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        while (cap < a->len + len)
            cap *= 2;
        char *text = mmi_realloc(a->text, cap);
        if (!text) {
            a->status = mmi_fail(MM_ERR_NOMEM, "response: out of memory for %zu bytes", cap);
            return 1;
        }
        a->text = text;
        a->cap = cap;
    }
    memcpy(a->text + a->len, piece, len);
    a->len += len;
    return a->fn ? a->fn(a->user, piece, len) : 0;
}

/* A response id unlikely to repeat: a counter, the time and an address, mixed (splitmix64). */
static void response_id(const char *prefix, char *out, size_t size)
{
    static atomic_uint_fast64_t counter;
    uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)&x << 20) ^
                 (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15u);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    x ^= x >> 31;
    snprintf(out, size, "%s%016" PRIx64, prefix, x);
}

static void write_openai(mmi_json_writer *w, const mm_chat_request *rq, const answer *a,
                         mm_stop_reason why, int n_prompt, int n_completion)
{
    char id[48];
    response_id("chatcmpl-", id, sizeof id);
    const char *model = rq->model ? rq->model : "libmm";
    mmi_json_write_raw(w, "{\"id\":");
    mmi_json_write_string(w, id, strlen(id));
    mmi_json_write_raw(w, ",\"object\":\"chat.completion\",\"created\":");
    mmi_json_write_int(w, (int64_t)time(NULL));
    mmi_json_write_raw(w, ",\"model\":");
    mmi_json_write_string(w, model, strlen(model));
    mmi_json_write_raw(w, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                          "\"content\":");
    mmi_json_write_string(w, a->text ? a->text : "", a->len);
    mmi_json_write_raw(w, why == MM_STOP_MAX_TOKENS ? "},\"finish_reason\":\"length\"}]"
                                                    : "},\"finish_reason\":\"stop\"}]");
    mmi_json_write_raw(w, ",\"usage\":{\"prompt_tokens\":");
    mmi_json_write_int(w, n_prompt);
    mmi_json_write_raw(w, ",\"completion_tokens\":");
    mmi_json_write_int(w, n_completion);
    mmi_json_write_raw(w, ",\"total_tokens\":");
    mmi_json_write_int(w, (int64_t)n_prompt + n_completion);
    mmi_json_write_raw(w, "}}");
}

static void write_anthropic(mmi_json_writer *w, const mm_chat_request *rq, const answer *a,
                            mm_stop_reason why, const char *stop, int n_prompt,
                            int n_completion)
{
    char id[48];
    response_id("msg_", id, sizeof id);
    const char *model = rq->model ? rq->model : "libmm";
    mmi_json_write_raw(w, "{\"id\":");
    mmi_json_write_string(w, id, strlen(id));
    mmi_json_write_raw(w, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    mmi_json_write_string(w, model, strlen(model));
    mmi_json_write_raw(w, ",\"content\":[{\"type\":\"text\",\"text\":");
    mmi_json_write_string(w, a->text ? a->text : "", a->len);
    mmi_json_write_raw(w, "}],\"stop_reason\":");
    mmi_json_write_raw(w, why == MM_STOP_MAX_TOKENS ? "\"max_tokens\""
                        : stop                      ? "\"stop_sequence\""
                                                    : "\"end_turn\"");
    mmi_json_write_raw(w, ",\"stop_sequence\":");
    if (stop)
        mmi_json_write_string(w, stop, strlen(stop));
    else
        mmi_json_write_raw(w, "null");
    mmi_json_write_raw(w, ",\"usage\":{\"input_tokens\":");
    mmi_json_write_int(w, n_prompt);
    mmi_json_write_raw(w, ",\"output_tokens\":");
    mmi_json_write_int(w, n_completion);
    mmi_json_write_raw(w, "}}");
}

mm_status mmi_chat_generate_response(mm_session *session, mm_chat_request *rq,
                                     const mm_options *options, mm_piece_fn fn, void *user)
{
    mm_options *settings;
    MMI_TRY(mm_options_create(&settings));
    mm_status st = mmi_options_merge(settings, options);
    if (st == MM_OK)
        st = mmi_options_merge(settings, rq->settings);
    size_t keep = mmi_session_n_stop_strings(session);
    for (size_t i = 0; i < rq->n_stops && st == MM_OK; i++)
        st = mmi_session_add_stop_string(session, rq->stops[i]);
    int n_prompt = mmi_session_n_past(session);
    answer a = {NULL, 0, 0, MM_OK, fn, user};
    if (st == MM_OK)
        st = mmi_session_generate(session, settings, collect_piece, &a);
    if (st == MM_OK)
        st = a.status;
    mm_stop_reason why = mmi_session_stop_reason(session);
    if (st == MM_ERR_CTX_FULL) { /* the APIs report a full context as a length limit */
        why = MM_STOP_MAX_TOKENS;
        st = MM_OK;
    }
    if (st == MM_OK) {
        int n_completion = mmi_session_n_generated(session);
        mmi_json_writer w = {0};
        if (rq->api == MM_CHAT_API_ANTHROPIC)
            write_anthropic(&w, rq, &a, why, mmi_session_matched_stop(session), n_prompt,
                            n_completion);
        else
            write_openai(&w, rq, &a, why, n_prompt, n_completion);
        st = mmi_json_writer_finish(&w);
        if (st == MM_OK) {
            mmi_free(rq->response);
            rq->response = w.data;
            rq->response_len = w.len;
        }
    }
    mmi_session_drop_stop_strings(session, keep);
    mmi_free(a.text);
    mm_options_free(settings);
    return st;
}

