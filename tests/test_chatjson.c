/* The JSON parser, base64 / data-URL decoding and the chat-conversation reader (lib/chatjson.c),
 * against hand-checked values: RFC 8259 grammar cases, RFC 4648 section 10 test vectors, UTF-8
 * encodings from the Unicode standard (RFC 3629 table), and hostile inputs. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "chatjson.h"
#include "session.h"
#include "testutil.h"
#include "tiny_llama.h"

static char sentinel_byte;
#define SENTINEL_REQUEST ((mm_chat_request *)(void *)&sentinel_byte)

static mm_status parse(const char *text, mmi_json *doc)
{
    return mmi_json_parse(text, strlen(text), doc);
}

/* The parse fails with `expected` and a message that contains `needle`. */
static void check_rejects(const char *text, size_t len, mm_status expected, const char *needle)
{
    mmi_json doc;
    mm_status st = mmi_json_parse(text, len, &doc);
    ck_assert_msg(st == expected, "\"%.*s\": status %d, expected %d (%s)",
                  (int)(len > 60 ? 60 : len), text, (int)st, (int)expected, mm_last_error());
    ck_assert_msg(strstr(mm_last_error(), needle), "\"%.*s\": message \"%s\" lacks \"%s\"",
                  (int)(len > 60 ? 60 : len), text, mm_last_error(), needle);
    ck_assert_ptr_null(doc.values);
    ck_assert_ptr_null(doc.strings);
}

START_TEST(json_structure)
{
    mmi_json doc;
    ck_assert_ok(parse(" {\"a\": [1, -2.5e+3, true, false, null, \"x\"], \"b\": {}, \"c\": []} ",
                       &doc));
    const mmi_json_value *root = &doc.values[0], *a, *b, *c, *missing;
    ck_assert_int_eq(root->type, MMI_JSON_OBJECT);
    ck_assert_uint_eq(root->n_children, 3);
    ck_assert_uint_eq(doc.n_values, 1 + 3 + 3 + 6); /* root, 3 keys, a b c, a's 6 items */
    ck_assert_ok(mmi_json_member(&doc, root, "a", &a));
    ck_assert_ok(mmi_json_member(&doc, root, "b", &b));
    ck_assert_ok(mmi_json_member(&doc, root, "c", &c));
    ck_assert_ok(mmi_json_member(&doc, root, "zz", &missing));
    ck_assert_ptr_null(missing);
    ck_assert_int_eq(a->type, MMI_JSON_ARRAY);
    ck_assert_uint_eq(a->n_children, 6);
    ck_assert_int_eq(b->type, MMI_JSON_OBJECT);
    ck_assert_uint_eq(b->n_children, 0);
    ck_assert_int_eq(c->type, MMI_JSON_ARRAY);
    ck_assert_ptr_null(mmi_json_first(&doc, c));
    static const mmi_json_type types[] = {MMI_JSON_NUMBER, MMI_JSON_NUMBER, MMI_JSON_TRUE,
                                          MMI_JSON_FALSE,  MMI_JSON_NULL,   MMI_JSON_STRING};
    int i = 0;
    for (const mmi_json_value *v = mmi_json_first(&doc, a); v; v = mmi_json_next(&doc, a, v), i++)
        ck_assert_int_eq(v->type, types[i]);
    ck_assert_int_eq(i, 6);
    const mmi_json_value *first = mmi_json_first(&doc, a);
    ck_assert_str_eq(first->str, "1");
    ck_assert_str_eq(mmi_json_next(&doc, a, first)->str, "-2.5e+3");
    ck_assert_uint_eq(first->offset, 8); /* byte offset of "1" in the text above */
    mmi_json_free(&doc);
}
END_TEST

START_TEST(json_nested_arrays_skip_subtrees)
{
    mmi_json doc;
    ck_assert_ok(parse("[[1,[2,3]],{\"k\":[4]},5]", &doc));
    const mmi_json_value *root = &doc.values[0];
    const mmi_json_value *x = mmi_json_first(&doc, root);
    ck_assert_int_eq(x->type, MMI_JSON_ARRAY);
    x = mmi_json_next(&doc, root, x);
    ck_assert_int_eq(x->type, MMI_JSON_OBJECT);
    x = mmi_json_next(&doc, root, x);
    ck_assert_str_eq(x->str, "5");
    ck_assert_ptr_null(mmi_json_next(&doc, root, x));
    mmi_json_free(&doc);
}
END_TEST

START_TEST(json_string_escapes_and_utf8)
{
    /* Expected bytes: U+00E9 = C3 A9, U+20AC = E2 82 AC, U+1F600 = F0 9F 98 80 (surrogate
     * pair D83D DE00), raw 4-byte U+10FFFF = F4 8F BF BF. */
    static const struct {
        const char *json, *bytes;
        size_t len;
    } cases[] = {
        {"\"\"", "", 0},
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8},
        {"\"\\u00e9\\u20AC\"", "\xc3\xa9\xe2\x82\xac", 5},
        {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4},
        {"\"\xf4\x8f\xbf\xbf\"", "\xf4\x8f\xbf\xbf", 4},
        {"\"a\\u0000b\"", "a\0b", 3},
        {"\"\xc3\xa9\xe2\x82\xac\"", "\xc3\xa9\xe2\x82\xac", 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mmi_json doc;
        ck_assert_ok(parse(cases[i].json, &doc));
        ck_assert_int_eq(doc.values[0].type, MMI_JSON_STRING);
        ck_assert_uint_eq(doc.values[0].len, cases[i].len);
        ck_assert_mem_eq(doc.values[0].str, cases[i].bytes, cases[i].len);
        ck_assert_int_eq(doc.values[0].str[cases[i].len], '\0');
        mmi_json_free(&doc);
    }
}
END_TEST

START_TEST(json_numbers)
{
    static const char *good[] = {"0", "-0", "0.0e0", "1E+2", "-12.5E-3", "123456789012345678901"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        mmi_json doc;
        ck_assert_ok(parse(good[i], &doc));
        ck_assert_int_eq(doc.values[0].type, MMI_JSON_NUMBER);
        ck_assert_str_eq(doc.values[0].str, good[i]);
        mmi_json_free(&doc);
    }
    /* Huge numbers are kept as text: no overflow, no conversion. */
    size_t n = 100000;
    char *big = malloc(n + 16);
    memset(big, '9', n);
    memcpy(big + n, "e999999999", 11);
    mmi_json doc;
    ck_assert_ok(mmi_json_parse(big, strlen(big), &doc));
    ck_assert_uint_eq(doc.values[0].len, n + 10);
    mmi_json_free(&doc);
    free(big);

    static const char *bad[] = {"01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "0x10",
                                "Infinity", "NaN", "1.e3", "-.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mmi_json d;
        ck_assert_msg(parse(bad[i], &d) == MM_ERR_FORMAT, "%s accepted", bad[i]);
    }
}
END_TEST

START_TEST(json_rejects_with_offsets)
{
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"", "unexpected end of input at offset 0"},
        {"   ", "unexpected end of input at offset 3"},
        {"[1,]", "unexpected character ']' at offset 3"},
        {"[1 2]", "',' or ']' expected at offset 3"},
        {"{\"a\":1,}", "object key expected at offset 7"},
        {"{\"a\" 1}", "':' expected at offset 5"},
        {"{a:1}", "object key expected at offset 1"},
        {"{'a':1}", "object key expected at offset 1"},
        {"[1] x", "unexpected data after the value at offset 4"},
        {"[1]]", "unexpected data after the value at offset 3"},
        {"[1", "unexpected end of input at offset 2"},
        {"{\"a\":1", "unexpected end of input at offset 6"},
        {"\"abc", "unterminated string at offset 0"},
        {"[\"a\tb\"]", "unescaped control character 0x09 in string at offset 3"},
        {"\"\\x\"", "invalid escape sequence at offset 1"},
        {"\"\\u12\"", "bad \\u escape (4 hex digits expected) at offset 5"},
        {"\"\\u12g4\"", "bad \\u escape"},
        {"\"\\udc00\"", "lone low surrogate escape at offset 1"},
        {"\"\\ud800\"", "high surrogate escape without its low surrogate at offset 1"},
        {"\"\\ud800\\u0041\"", "high surrogate escape without its low surrogate"},
        {"\"\\ud800x\"", "high surrogate escape without its low surrogate"},
        {"tru", "unexpected character 't' at offset 0"},
        {"nul", "unexpected character 'n' at offset 0"},
        {"[true false]", "',' or ']' expected at offset 6"},
        {"/* c */ 1", "unexpected character '/' at offset 0"},
        {"\xef\xbb\xbf[]", "unexpected byte 0xef at offset 0"},
        {"[1,\v2]", "unexpected byte 0x0b at offset 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_rejects(cases[i].json, strlen(cases[i].json), MM_ERR_FORMAT, cases[i].needle);
    /* A NUL byte inside the given length is data, not the end. */
    check_rejects("[1]\0", 4, MM_ERR_FORMAT, "unexpected data after the value at offset 3");
    check_rejects("\"a\0\"", 4, MM_ERR_FORMAT, "control character 0x00 in string at offset 2");
}
END_TEST

START_TEST(json_rejects_invalid_utf8)
{
    static const char *cases[] = {
        "\"\x80\"",             /* lone continuation byte */
        "\"\xc0\x80\"",         /* overlong NUL */
        "\"\xc1\xbf\"",         /* overlong */
        "\"\xe0\x80\xaf\"",     /* overlong '/' */
        "\"\xed\xa0\x80\"",     /* UTF-8-encoded surrogate U+D800 */
        "\"\xf4\x90\x80\x80\"", /* U+110000 */
        "\"\xf5\x80\x80\x80\"", /* not a lead byte */
        "\"\xff\"",
        "\"\xe2\x82\"",         /* truncated before the quote */
        "\"\xe2\x82",           /* truncated at the end of input */
        "\"\xc3\"",
        "\"\xf0\x9f\x98\"",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s = cases[i];
        /* "unterminated string" for the one cut at the end of input */
        mmi_json doc;
        mm_status st = mmi_json_parse(s, strlen(s), &doc);
        ck_assert_msg(st == MM_ERR_FORMAT, "case %zu accepted", i);
        ck_assert_msg(strstr(mm_last_error(), "invalid UTF-8 in string at offset 1"),
                      "case %zu: %s", i, mm_last_error());
    }
}
END_TEST

START_TEST(json_depth_limit)
{
    size_t n = 200000; /* far deeper than any stack would allow recursing */
    char *deep = malloc(2 * n + 1);
    for (int depth = MMI_JSON_MAX_DEPTH; depth <= MMI_JSON_MAX_DEPTH + 1; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        mmi_json doc;
        mm_status st = mmi_json_parse(deep, 2 * (size_t)depth, &doc);
        if (depth == MMI_JSON_MAX_DEPTH) {
            ck_assert_ok(st);
            ck_assert_uint_eq(doc.n_values, (size_t)depth);
            mmi_json_free(&doc);
        } else {
            ck_assert_int_eq(st, MM_ERR_LIMIT);
            ck_assert_ptr_nonnull(strstr(mm_last_error(), "nested deeper than 64 levels"));
        }
    }
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    check_rejects(deep, 2 * n, MM_ERR_LIMIT, "nested deeper than 64 levels at offset 64");
    for (size_t i = 0; i < n / 5; i++)
        memcpy(deep + 5 * i, "{\"a\":", 5);
    check_rejects(deep, n, MM_ERR_LIMIT, "nested deeper than 64 levels at offset 320");
    free(deep);
}
END_TEST

START_TEST(json_value_limit)
{
    size_t n = (size_t)MMI_JSON_MAX_VALUES + 1; /* "[0,0,...]": one value more than allowed */
    char *text = malloc(2 * n + 2);
    text[0] = '[';
    for (size_t i = 0; i < n; i++)
        memcpy(text + 1 + 2 * i, "0,", 2);
    text[2 * n] = ']';
    check_rejects(text, 2 * n + 1, MM_ERR_LIMIT, "more than 1048576 values");
    /* The array and MAX - 1 zeros are accepted. */
    text[2 * (n - 2)] = ']';
    mmi_json doc;
    ck_assert_ok(mmi_json_parse(text, 2 * (n - 2) + 1, &doc));
    ck_assert_uint_eq(doc.n_values, MMI_JSON_MAX_VALUES);
    mmi_json_free(&doc);
    free(text);
}
END_TEST

START_TEST(json_duplicate_key_refused_on_read)
{
    mmi_json doc;
    ck_assert_ok(parse("{\"role\":\"user\",\"x\":1,\"role\":\"system\"}", &doc));
    const mmi_json_value *v;
    ck_assert_int_eq(mmi_json_member(&doc, &doc.values[0], "role", &v), MM_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "duplicate key \"role\" at offset 21"));
    ck_assert_ok(mmi_json_member(&doc, &doc.values[0], "x", &v));
    ck_assert_str_eq(v->str, "1");
    mmi_json_free(&doc);
}
END_TEST

/* RFC 4648 section 10. */
START_TEST(base64_rfc4648_vectors)
{
    static const char *in[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *out[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    for (size_t i = 0; i < 7; i++) {
        uint8_t *bytes;
        size_t n;
        ck_assert_ok(mmi_base64_decode(in[i], strlen(in[i]), &bytes, &n));
        ck_assert_uint_eq(n, strlen(out[i]));
        ck_assert_mem_eq(bytes, out[i], n);
        mmi_free(bytes);
    }
    /* All 64 digits and the full byte range: "+/" are 62 and 63; "////" is three 0xff. */
    uint8_t *bytes;
    size_t n;
    ck_assert_ok(mmi_base64_decode("AP8+/w==", 8, &bytes, &n));
    ck_assert_uint_eq(n, 4);
    ck_assert_mem_eq(bytes, "\x00\xff\x3e\xff", 4);
    mmi_free(bytes);
}
END_TEST

START_TEST(base64_rejects)
{
    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"Zm9", "length 3 is not a multiple of 4"},
        {"Zm9vY", "length 5 is not a multiple of 4 (truncated?)"},
        {"Zg=", "length 3"},
        {"Zh==", "non-zero padding bits at offset 0"},
        {"Zm9=", "non-zero padding bits"},
        {"Z===", "invalid character '=' at offset 1"},
        {"====", "invalid character '=' at offset 0"},
        {"Zg==Zg==", "invalid character '=' at offset 2"},
        {"Zm9v\nYmFy", "length 9"},
        {"Zm9vYm\nF", "invalid byte 0x0a at offset 6"},
        {"Zm9v YmF", "invalid character ' ' at offset 4"},
        {"Zm9-", "invalid character '-' at offset 3"}, /* URL-safe alphabet is not accepted */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *bytes = (uint8_t *)"sentinel";
        size_t n = 7;
        ck_assert_int_eq(mmi_base64_decode(cases[i].text, strlen(cases[i].text), &bytes, &n),
                         MM_ERR_FORMAT);
        ck_assert_ptr_null(bytes);
        ck_assert_uint_eq(n, 0);
        ck_assert_msg(strstr(mm_last_error(), cases[i].needle), "%s: %s", cases[i].text,
                      mm_last_error());
    }
}
END_TEST

START_TEST(data_urls)
{
    const char *type;
    size_t type_len, n;
    uint8_t *bytes;
    const char *url = "data:image/png;base64,Zm9vYmFy";
    ck_assert_ok(mmi_data_url_decode(url, strlen(url), &type, &type_len, &bytes, &n));
    ck_assert_uint_eq(type_len, 9);
    ck_assert_mem_eq(type, "image/png", 9);
    ck_assert_uint_eq(n, 6);
    ck_assert_mem_eq(bytes, "foobar", 6);
    mmi_free(bytes);

    url = "DATA:image/jpeg;name=a.jpg;BASE64,Zg==";
    ck_assert_ok(mmi_data_url_decode(url, strlen(url), &type, &type_len, &bytes, &n));
    ck_assert_uint_eq(type_len, 10);
    ck_assert_mem_eq(type, "image/jpeg", 10);
    ck_assert_uint_eq(n, 1);
    mmi_free(bytes);

    static const struct {
        const char *url;
        mm_status st;
        const char *needle;
    } bad[] = {
        {"https://example.com/cat.png", MM_ERR_UNSUPPORTED, "scheme \"https\" is not supported"},
        {"file:///etc/passwd", MM_ERR_UNSUPPORTED, "scheme \"file\""},
        {"data:image/png,abc", MM_ERR_UNSUPPORTED, "not base64-encoded"},
        {"data:image/png;base64x,abc", MM_ERR_UNSUPPORTED, "not base64-encoded"},
        {"data:image/png;base64", MM_ERR_FORMAT, "without a ','"},
        {"data:", MM_ERR_FORMAT, "without a ','"},
        {"cat.png", MM_ERR_FORMAT, "not a URL"},
        {"", MM_ERR_FORMAT, "not a URL"},
        {"data:image/png;base64,Zm9vYmF", MM_ERR_FORMAT, "length 7 is not a multiple of 4"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(mmi_data_url_decode(bad[i].url, strlen(bad[i].url), &type, &type_len,
                                             &bytes, &n),
                         bad[i].st);
        ck_assert_ptr_null(bytes);
        ck_assert_msg(strstr(mm_last_error(), bad[i].needle), "%s: %s", bad[i].url,
                      mm_last_error());
    }
}
END_TEST

static const char openai_chat[] =
    "{\"model\": \"gpt-4o\", \"max_tokens\": 300, \"messages\": ["
    "  {\"role\": \"system\", \"content\": \"Be brief.\"},"
    "  {\"role\": \"user\", \"content\": ["
    "    {\"type\": \"text\", \"text\": \"What is in this image?\"},"
    "    {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,Zm9vYmFy\","
    "     \"detail\": \"low\"}}]},"
    "  {\"role\": \"assistant\", \"content\": \"A cat.\"},"
    "  {\"role\": \"user\", \"content\": [{\"type\": \"input_image\","
    "    \"image_url\": \"data:image/jpeg;base64,Zm8=\"}, {\"type\": \"input_text\","
    "    \"text\": \"And this one? \\u00e9\"}]}]}";

START_TEST(chat_openai_shape)
{
    mmi_chat chat;
    ck_assert_ok(mmi_chat_parse(openai_chat, strlen(openai_chat), &chat));
    ck_assert_uint_eq(chat.n_messages, 4);
    ck_assert_uint_eq(chat.n_parts, 6);
    static const mmi_chat_role roles[] = {MMI_ROLE_SYSTEM, MMI_ROLE_USER, MMI_ROLE_ASSISTANT,
                                          MMI_ROLE_USER};
    static const size_t counts[] = {1, 2, 1, 2};
    size_t first = 0;
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(chat.messages[i].role, roles[i]);
        ck_assert_uint_eq(chat.messages[i].first_part, first);
        ck_assert_uint_eq(chat.messages[i].n_parts, counts[i]);
        first += counts[i];
    }
    ck_assert_int_eq(chat.parts[0].kind, MMI_PART_TEXT);
    ck_assert_str_eq(chat.parts[0].text, "Be brief.");
    ck_assert_str_eq(chat.parts[1].text, "What is in this image?");
    ck_assert_int_eq(chat.parts[2].kind, MMI_PART_IMAGE);
    ck_assert_uint_eq(chat.parts[2].image_len, 6);
    ck_assert_mem_eq(chat.parts[2].image, "foobar", 6);
    ck_assert_str_eq(chat.parts[3].text, "A cat.");
    ck_assert_int_eq(chat.parts[4].kind, MMI_PART_IMAGE);
    ck_assert_mem_eq(chat.parts[4].image, "fo", 2);
    ck_assert_str_eq(chat.parts[5].text, "And this one? \xc3\xa9");
    ck_assert_uint_eq(chat.parts[5].text_len, 16);
    mmi_chat_free(&chat);
}
END_TEST

static const char anthropic_chat[] =
    "{\"model\": \"claude\", \"system\": [{\"type\": \"text\", \"text\": \"Be brief.\"}],"
    " \"messages\": [{\"role\": \"user\", \"content\": ["
    "   {\"type\": \"image\", \"source\": {\"type\": \"base64\", \"media_type\": \"image/png\","
    "    \"data\": \"Zm9vYg==\"}},"
    "   {\"type\": \"text\", \"text\": \"Describe it.\"}]}]}";

START_TEST(chat_anthropic_shape)
{
    mmi_chat chat;
    ck_assert_ok(mmi_chat_parse(anthropic_chat, strlen(anthropic_chat), &chat));
    ck_assert_uint_eq(chat.n_messages, 2);
    ck_assert_int_eq(chat.messages[0].role, MMI_ROLE_SYSTEM);
    ck_assert_uint_eq(chat.messages[0].n_parts, 1);
    ck_assert_str_eq(chat.parts[0].text, "Be brief.");
    ck_assert_int_eq(chat.messages[1].role, MMI_ROLE_USER);
    ck_assert_uint_eq(chat.messages[1].n_parts, 2);
    ck_assert_int_eq(chat.parts[1].kind, MMI_PART_IMAGE);
    ck_assert_uint_eq(chat.parts[1].image_len, 4);
    ck_assert_mem_eq(chat.parts[1].image, "foob", 4);
    ck_assert_str_eq(chat.parts[2].text, "Describe it.");
    mmi_chat_free(&chat);

    /* A bare array of messages; the system prompt as a plain string; "developer" role. */
    const char *bare = "[{\"role\":\"developer\",\"content\":\"x\"},{\"role\":\"user\","
                       "\"content\":[]}]";
    ck_assert_ok(mmi_chat_parse(bare, strlen(bare), &chat));
    ck_assert_uint_eq(chat.n_messages, 2);
    ck_assert_int_eq(chat.messages[0].role, MMI_ROLE_SYSTEM);
    ck_assert_uint_eq(chat.messages[1].n_parts, 0);
    mmi_chat_free(&chat);
    const char *sys = "{\"system\":\"s\",\"messages\":[]}";
    ck_assert_ok(mmi_chat_parse(sys, strlen(sys), &chat));
    ck_assert_uint_eq(chat.n_messages, 1);
    ck_assert_str_eq(chat.parts[0].text, "s");
    mmi_chat_free(&chat);
}
END_TEST

START_TEST(chat_rejects_with_places)
{
    static const struct {
        const char *json;
        mm_status st;
        const char *needle;
    } cases[] = {
        {"{}", MM_ERR_FORMAT, "conversation.messages: missing (array expected)"},
        {"\"hi\"", MM_ERR_FORMAT, "conversation: array expected, found string"},
        {"{\"messages\":{}}", MM_ERR_FORMAT, "conversation.messages: array expected, found object"},
        {"[1]", MM_ERR_FORMAT, "messages[0]: object expected, found number"},
        {"[{\"content\":\"x\"}]", MM_ERR_FORMAT, "messages[0].role: missing (string expected)"},
        {"[{\"role\":\"tool\",\"content\":\"x\"}]", MM_ERR_UNSUPPORTED,
         "messages[0].role \"tool\" is not supported"},
        {"[{\"role\":\"user\"}]", MM_ERR_FORMAT, "messages[0].content: missing (array expected)"},
        /* Names with a NUL inside are not the shorter name. */
        {"[{\"role\":\"user\\u0000\",\"content\":\"x\"}]", MM_ERR_FORMAT,
         "messages[0].role: \"user\\u0000...\" contains a NUL character"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"text\\u0000\",\"text\":\"x\"}]}]",
         MM_ERR_FORMAT, "messages[0].content[0]: \"text\\u0000...\" contains a NUL"},
        {"[{\"role\":\"user\",\"content\":null}]", MM_ERR_FORMAT,
         "messages[0].content: array expected, found null"},
        {"[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]", MM_ERR_FORMAT,
         "messages[0].content[0].type: missing"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"audio\"}]}]", MM_ERR_UNSUPPORTED,
         "messages[0].content[0].type \"audio\" is not supported"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":5}]}]", MM_ERR_FORMAT,
         "messages[0].content[0].text: string expected, found number"},
        {"[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]", MM_ERR_FORMAT,
         "messages[0].content: text contains a NUL character"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
         "{\"url\":\"https://x/y.png\"}}]}]",
         MM_ERR_UNSUPPORTED, "messages[0].content[0].image_url: URL scheme \"https\""},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]",
         MM_ERR_FORMAT, "messages[0].content[0].image_url.url: missing"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
         "\"data:text/plain;base64,Zm9v\"}]}]",
         MM_ERR_UNSUPPORTED, "image_url: media type \"text/plain\" is not an image"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
         "\"data:image/png;base64,Zm9vY\"}]}]",
         MM_ERR_FORMAT, "messages[0].content[0].image_url: base64: length 5"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"url\","
         "\"url\":\"https://x\"}}]}]",
         MM_ERR_UNSUPPORTED, "messages[0].content[0].source.type \"url\" is not supported"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\","
         "\"media_type\":\"image/png\",\"data\":\"Zm9v!\"}}]}]",
         MM_ERR_FORMAT, "messages[0].content[0].source: base64: length 5"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\","
         "\"media_type\":\"image/png\"}}]}]",
         MM_ERR_FORMAT, "messages[0].content[0].source.data: missing"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\","
         "\"media_type\":\"application/pdf\",\"data\":\"Zm9v\"}}]}]",
         MM_ERR_UNSUPPORTED, "media type \"application/pdf\" is not an image"},
        {"[{\"role\":\"user\",\"role\":\"system\",\"content\":\"x\"}]", MM_ERR_FORMAT,
         "duplicate key \"role\""},
        {"{\"system\":5,\"messages\":[]}", MM_ERR_FORMAT, "system: array expected, found number"},
        {"{\"system\":[{\"type\":\"image\"}],\"messages\":[]}", MM_ERR_FORMAT,
         "system[0].source: missing"},
        {"[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\",\"content\":[{\"type\":"
         "\"text\",\"text\":\"ok\"},{\"type\":\"image_url\",\"image_url\":\"data:image/png;"
         "base64,Zg==\"},{\"type\":\"image_url\",\"image_url\":\"data:image/png;base64,@@@@\"}]}]",
         MM_ERR_FORMAT, "messages[1].content[2].image_url: base64: invalid character '@'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mmi_chat chat;
        mm_status st = mmi_chat_parse(cases[i].json, strlen(cases[i].json), &chat);
        ck_assert_msg(st == cases[i].st, "case %zu: status %d, expected %d (%s)", i, (int)st,
                      (int)cases[i].st, mm_last_error());
        ck_assert_msg(strstr(mm_last_error(), cases[i].needle), "case %zu: \"%s\" lacks \"%s\"",
                      i, mm_last_error(), cases[i].needle);
        ck_assert_ptr_null(chat.parts);
        ck_assert_ptr_null(chat.messages);
    }
}
END_TEST

/* Every proper prefix of a conversation is malformed JSON (it ends in '}'), and every allocation
 * failure is reported; neither may crash or leak (ASan run). */
START_TEST(chat_truncated_at_every_byte)
{
    size_t len = strlen(openai_chat);
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut ? cut : 1); /* exact size: ASan catches any read past it */
        memcpy(copy, openai_chat, cut);
        mmi_chat chat;
        ck_assert_int_eq(mmi_chat_parse(copy, cut, &chat), MM_ERR_FORMAT);
        free(copy);
    }
}
END_TEST

START_TEST(chat_allocation_failures)
{
    for (long n = 1;; n++) {
        mmi_alloc_fail_at(n);
        mmi_chat chat;
        mm_status st = mmi_chat_parse(openai_chat, strlen(openai_chat), &chat);
        mmi_alloc_fail_at(0);
        if (st == MM_OK) {
            ck_assert_uint_eq(chat.n_parts, 6);
            mmi_chat_free(&chat);
            ck_assert_int_gt(n, 4); /* doc strings + values + messages + parts + 2 images */
            break;
        }
        ck_assert_int_eq(st, MM_ERR_NOMEM);
        ck_assert_ptr_nonnull(strstr(mm_last_error(), "out of memory"));
    }
}
END_TEST

/* Random byte mutations of valid conversations: each parse either succeeds or fails with a
 * message; never crashes, reads out of bounds or leaks. */
START_TEST(chat_mutations)
{
    const char *seeds[] = {openai_chat, anthropic_chat};
    uint64_t rng = 0x9e3779b97f4a7c15u;
    static const char interesting[] = "\"\\{}[],:0e-+=u\x80\xc3\xed\xf4\xff \x00";
    int ok = 0, failed = 0;
    for (int round = 0; round < 6000; round++) {
        const char *seed = seeds[round % 2];
        size_t len = strlen(seed);
        char *copy = malloc(len);
        memcpy(copy, seed, len);
        for (int k = 0; k < 1 + round % 3; k++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            copy[rng % len] = interesting[(rng >> 32) % (sizeof interesting - 1)];
        }
        mmi_chat chat;
        mm_status st = mmi_chat_parse(copy, len, &chat);
        if (st == MM_OK) {
            ok++;
            mmi_chat_free(&chat);
        } else {
            failed++;
            ck_assert_int_ne(mm_last_error()[0], '\0');
        }
        free(copy);
    }
    ck_assert_int_gt(ok, 0);
    ck_assert_int_gt(failed, 0);
}
END_TEST


/* ---- the JSON writer and number conversion ---- */

static char *written_string(const char *text, size_t len)
{
    mmi_json_writer w = {0};
    mmi_json_write_string(&w, text, len);
    ck_assert_ok(mmi_json_writer_finish(&w));
    return w.data;
}

/* Expected texts written by hand from RFC 8259 section 7: '"', '\\' and U+0000..U+001F must be
 * escaped; everything else may be UTF-8 as it is. */
START_TEST(json_writer_escapes)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"", 0, "\"\""},
        {"plain", 5, "\"plain\""},
        {"a\"b\\c/", 6, "\"a\\\"b\\\\c/\""},
        {"\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\""},
        {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\""},
        {"nul\0in", 6, "\"nul\\u0000in\""},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""},
        /* Not UTF-8: a lone continuation byte, an invalid lead, an overlong '/', a surrogate
         * (ED A0 80), a character cut off at the end: each becomes U+FFFD (EF BF BD). */
        {"a\x80" "b", 3, "\"a\xef\xbf\xbd" "b\""},
        {"\xff", 1, "\"\xef\xbf\xbd\""},
        {"\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"ok\xe2\x82", 4, "\"ok\xef\xbf\xbd\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = written_string(cases[i].in, cases[i].len);
        ck_assert_msg(strcmp(out, cases[i].out) == 0, "case %zu: %s", i, out);
        mmi_json doc; /* and the reader takes it back */
        ck_assert_ok(parse(out, &doc));
        mmi_json_free(&doc);
        mmi_free(out);
    }
    /* Every byte value, alone and after a lead byte, gives JSON the strict reader accepts. */
    for (int b = 0; b < 256; b++)
        for (int lead = 0; lead < 2; lead++) {
            char in[2] = {(char)0xe2, (char)b};
            char *out = written_string(in + !lead, 1 + lead);
            mmi_json doc;
            ck_assert_msg(parse(out, &doc) == MM_OK, "byte %02x: %s", b, mm_last_error());
            mmi_json_free(&doc);
            mmi_free(out);
        }
    mmi_json_writer w = {0};
    mmi_json_write_raw(&w, "{\"n\":");
    mmi_json_write_int(&w, INT64_MIN);
    mmi_json_write_raw(&w, "}");
    ck_assert_ok(mmi_json_writer_finish(&w));
    ck_assert_str_eq(w.data, "{\"n\":-9223372036854775808}");
    mmi_free(w.data);
    /* Out of memory sticks and frees what was written. */
    mmi_json_writer f = {0};
    mmi_alloc_fail_at(1);
    mmi_json_write_raw(&f, "x");
    mmi_alloc_fail_at(0);
    mmi_json_write_raw(&f, "y");
    ck_assert_int_eq(mmi_json_writer_finish(&f), MM_ERR_NOMEM);
    ck_assert_ptr_null(f.data);
}
END_TEST

START_TEST(json_number_values)
{
    mmi_json doc;
    ck_assert_ok(parse("[0, -7, 9223372036854775807, -9223372036854775808, 9223372036854775808,"
                       " 1.5, 2e3, 0.125, -1.25e-2, 12345678901234567890123, 1e400]", &doc));
    const mmi_json_value *root = &doc.values[0], *v = mmi_json_first(&doc, root);
    int64_t i;
    double d;
    ck_assert_ok(mmi_json_int(v, 0, 10, "a", &i));
    ck_assert_int_eq(i, 0);
    v = mmi_json_next(&doc, root, v);
    ck_assert_ok(mmi_json_int(v, INT64_MIN, INT64_MAX, "b", &i));
    ck_assert_int_eq(i, -7);
    ck_assert_int_eq(mmi_json_int(v, 0, 10, "b", &i), MM_ERR_FORMAT);
    ck_assert_str_eq(mm_last_error(), "b: a whole number in [0, 10] expected, found number -7 "
                                      "(offset 4)");
    v = mmi_json_next(&doc, root, v);
    ck_assert_ok(mmi_json_int(v, INT64_MIN, INT64_MAX, "c", &i));
    ck_assert_int_eq(i, INT64_MAX);
    v = mmi_json_next(&doc, root, v);
    ck_assert_ok(mmi_json_int(v, INT64_MIN, INT64_MAX, "d", &i));
    ck_assert_int_eq(i, INT64_MIN);
    v = mmi_json_next(&doc, root, v); /* 2^63 */
    ck_assert_int_eq(mmi_json_int(v, INT64_MIN, INT64_MAX, "e", &i), MM_ERR_FORMAT);
    v = mmi_json_next(&doc, root, v); /* 1.5: not a whole number, but a number */
    ck_assert_int_eq(mmi_json_int(v, 0, 10, "f", &i), MM_ERR_FORMAT);
    ck_assert_ok(mmi_json_double(v, "f", &d));
    ck_assert(d == 1.5);
    v = mmi_json_next(&doc, root, v); /* 2e3: refused as a count */
    ck_assert_int_eq(mmi_json_int(v, 0, 10000, "g", &i), MM_ERR_FORMAT);
    ck_assert_ok(mmi_json_double(v, "g", &d));
    ck_assert(d == 2000.0);
    v = mmi_json_next(&doc, root, v);
    ck_assert_ok(mmi_json_double(v, "h", &d));
    ck_assert(d == 0.125);
    v = mmi_json_next(&doc, root, v);
    ck_assert_ok(mmi_json_double(v, "i", &d));
    ck_assert_double_eq_tol(d, -0.0125, 1e-17);
    v = mmi_json_next(&doc, root, v);
    ck_assert_ok(mmi_json_double(v, "j", &d));
    ck_assert_double_eq_tol(d, 1.2345678901234568e22, 1e7); /* a few ulps */
    v = mmi_json_next(&doc, root, v);
    ck_assert_int_eq(mmi_json_double(v, "k", &d), MM_ERR_FORMAT);
    ck_assert_int_eq(mmi_json_double(root, "root", &d), MM_ERR_FORMAT);
    ck_assert_int_eq(mmi_json_double(NULL, "none", &d), MM_ERR_FORMAT);
    mmi_json_free(&doc);
}
END_TEST

/* ---- requests ---- */

static mm_chat_request *request(const char *json)
{
    mm_chat_request *rq;
    ck_assert_ok(mm_chat_request_parse(json, strlen(json), &rq));
    return rq;
}

START_TEST(request_settings_openai)
{
    mm_chat_request *rq = request(
        "{\"model\": \"gpt-x\", \"max_tokens\": 17, \"temperature\": 0.5, \"top_p\": 0.9,"
        " \"seed\": 42, \"stop\": [\"END\", \"\\n\\n\"], \"n\": 1, \"stream\": true,"
        " \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\","
        " \"image_url\": {\"url\": \"data:image/png;base64,Zm9v\", \"detail\": \"low\"}},"
        " {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,Zm9v\"}},"
        " {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,Zm9v\","
        " \"detail\": \"high\"}}]}]}");
    ck_assert_int_eq(mm_chat_request_api(rq), MM_CHAT_API_OPENAI);
    const mm_options *o = mm_chat_request_options(rq);
    int64_t i;
    double d;
    ck_assert_ok(mm_options_get_int(o, MM_OPT_MAX_TOKENS, &i));
    ck_assert_int_eq(i, 17);
    ck_assert_ok(mm_options_get_int(o, MM_OPT_SEED, &i));
    ck_assert_int_eq(i, 42);
    ck_assert_ok(mm_options_get_int(o, MM_OPT_TOP_K, &i));
    ck_assert_int_eq(i, 0); /* not given: the default */
    ck_assert_ok(mm_options_get_float(o, MM_OPT_TEMPERATURE, &d));
    ck_assert(d == 0.5);
    ck_assert_ok(mm_options_get_float(o, MM_OPT_TOP_P, &d));
    ck_assert(d == 0.9);
    ck_assert_uint_eq(mm_chat_request_n_stop(rq), 2);
    ck_assert_str_eq(mm_chat_request_stop(rq, 0), "END");
    ck_assert_str_eq(mm_chat_request_stop(rq, 1), "\n\n");
    ck_assert_str_eq(mm_chat_request_model(rq), "gpt-x");
    ck_assert_int_eq(mm_chat_request_stream(rq), 1);
    /* Each image keeps its detail (absent: auto). */
    ck_assert_uint_eq(rq->chat.n_parts, 3);
    ck_assert_int_eq(rq->chat.parts[0].detail, MMI_CHAT_DETAIL_LOW);
    ck_assert_int_eq(rq->chat.parts[1].detail, MMI_CHAT_DETAIL_AUTO);
    ck_assert_int_eq(rq->chat.parts[2].detail, MMI_CHAT_DETAIL_HIGH);
    ck_assert_ok(mm_chat_request_set_api(rq, MM_CHAT_API_ANTHROPIC));
    ck_assert_int_eq(mm_chat_request_api(rq), MM_CHAT_API_ANTHROPIC);
    mm_chat_request_free(rq);

    /* A single stop string; max_completion_tokens (OpenAI's newer name); nulls are absent. */
    rq = request("{\"messages\": [], \"stop\": \"x\", \"max_completion_tokens\": 3,"
                 " \"temperature\": null, \"seed\": null, \"model\": null}");
    ck_assert_uint_eq(mm_chat_request_n_stop(rq), 1);
    ck_assert_str_eq(mm_chat_request_stop(rq, 0), "x");
    ck_assert_ok(mm_options_get_int(mm_chat_request_options(rq), MM_OPT_MAX_TOKENS, &i));
    ck_assert_int_eq(i, 3);
    ck_assert_ptr_null(mm_chat_request_model(rq));
    ck_assert_int_eq(mm_chat_request_stream(rq), 0);
    mm_chat_request_free(rq);
    /* A bare array of messages is a request with no settings. */
    rq = request("[{\"role\": \"user\", \"content\": \"hi\"}]");
    ck_assert_int_eq(mm_chat_request_api(rq), MM_CHAT_API_OPENAI);
    ck_assert_ok(mm_options_get_int(mm_chat_request_options(rq), MM_OPT_MAX_TOKENS, &i));
    ck_assert_int_eq(i, 256);
    ck_assert_uint_eq(mm_chat_request_n_stop(rq), 0);
    mm_chat_request_free(rq);
}
END_TEST

START_TEST(request_settings_anthropic)
{
    static const char *anthropic[] = {
        "{\"system\": \"S\", \"messages\": []}",
        "{\"stop_sequences\": [\"a\", \"bc\"], \"top_k\": 5, \"max_tokens\": 9,"
        " \"messages\": []}",
        "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\", \"source\":"
        " {\"type\": \"base64\", \"media_type\": \"image/png\", \"data\": \"Zm9v\"}}]}]}",
    };
    for (size_t k = 0; k < 3; k++) {
        mm_chat_request *rq = request(anthropic[k]);
        ck_assert_msg(mm_chat_request_api(rq) == MM_CHAT_API_ANTHROPIC, "case %zu", k);
        mm_chat_request_free(rq);
    }
    mm_chat_request *rq = request(anthropic[1]);
    int64_t i;
    ck_assert_uint_eq(mm_chat_request_n_stop(rq), 2);
    ck_assert_str_eq(mm_chat_request_stop(rq, 1), "bc");
    ck_assert_ok(mm_options_get_int(mm_chat_request_options(rq), MM_OPT_TOP_K, &i));
    ck_assert_int_eq(i, 5);
    mm_chat_request_free(rq);
}
END_TEST

START_TEST(request_rejects_with_places)
{
    static const struct {
        const char *json;
        mm_status st;
        const char *message;
    } cases[] = {
        {"{\"messages\":[],\"max_tokens\":0}", MM_ERR_FORMAT,
         "max_tokens: a whole number in [1, 2147483647] expected, found number 0 (offset 28)"},
        {"{\"messages\":[],\"max_tokens\":1.5}", MM_ERR_FORMAT,
         "max_tokens: a whole number in [1, 2147483647] expected, found number 1.5 (offset 28)"},
        {"{\"messages\":[],\"max_tokens\":\"5\"}", MM_ERR_FORMAT,
         "max_tokens: a whole number in [1, 2147483647] expected, found string (offset 28)"},
        {"{\"messages\":[],\"seed\":-1}", MM_ERR_FORMAT,
         "seed: a whole number in [0, 9223372036854775807] expected, found number -1"},
        {"{\"messages\":[],\"temperature\":-0.5}", MM_ERR_FORMAT,
         "temperature: option 'temperature': value -0.5 outside [0, 1e+06]"},
        {"{\"messages\":[],\"top_p\":0}", MM_ERR_FORMAT,
         "top_p: option 'top_p': value 0 outside"},
        {"{\"messages\":[],\"top_p\":true}", MM_ERR_FORMAT,
         "top_p: a number expected, found true (offset 23)"},
        {"{\"messages\":[],\"stop\":5}", MM_ERR_FORMAT,
         "stop (a string or an array of strings): array expected, found number"},
        {"{\"messages\":[],\"stop\":[\"a\",\"\"]}", MM_ERR_FORMAT,
         "stop[1]: a stop string must be non-empty"},
        {"{\"messages\":[],\"stop_sequences\":[\"a\\u0000b\"]}", MM_ERR_FORMAT,
         "stop_sequences[0]: a stop string must be non-empty text without NUL"},
        {"{\"messages\":[],\"stop_sequences\":\"a\"}", MM_ERR_FORMAT,
         "stop_sequences: array expected, found string"},
        {"{\"messages\":[],\"n\":3}", MM_ERR_UNSUPPORTED, "n: 3 choices asked for, only 1"},
        {"{\"messages\":[],\"stream\":1}", MM_ERR_FORMAT, "stream: true or false expected"},
        {"{\"messages\":[],\"model\":7}", MM_ERR_FORMAT, "model: string expected, found number"},
        {"{\"messages\":[],\"seed\":1,\"seed\":2}", MM_ERR_FORMAT, "duplicate key \"seed\""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
         "{\"url\":\"data:image/png;base64,Zm9v\",\"detail\":\"max\"}}]}]}", MM_ERR_FORMAT,
         "messages[0].content[0].image_url.detail \"max\" is not \"auto\", \"low\" or \"high\""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
         "{\"url\":\"data:image/png;base64,Zm9v\",\"detail\":1}}]}]}", MM_ERR_FORMAT,
         "messages[0].content[0].image_url.detail: string expected, found number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mm_chat_request *rq = SENTINEL_REQUEST;
        mm_status st = mm_chat_request_parse(cases[i].json, strlen(cases[i].json), &rq);
        ck_assert_msg(st == cases[i].st, "case %zu: %d (%s)", i, (int)st, mm_last_error());
        ck_assert_msg(strstr(mm_last_error(), cases[i].message), "case %zu: \"%s\" lacks \"%s\"",
                      i, mm_last_error(), cases[i].message);
        ck_assert_ptr_null(rq);
    }
}
END_TEST

START_TEST(request_allocation_failures)
{
    const char *json = "{\"model\":\"m\",\"max_tokens\":4,\"temperature\":0.2,\"stop\":[\"a\","
                       "\"b\"],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    for (long n = 1;; n++) {
        mm_chat_request *rq;
        mmi_alloc_fail_at(n);
        mm_status st = mm_chat_request_parse(json, strlen(json), &rq);
        mmi_alloc_fail_at(0);
        if (st == MM_OK) {
            ck_assert_uint_eq(mm_chat_request_n_stop(rq), 2);
            mm_chat_request_free(rq);
            break;
        }
        ck_assert_int_eq(st, MM_ERR_NOMEM);
        ck_assert_ptr_null(rq);
    }
}
END_TEST

/* ---- feeding a session ---- */

/* A tiny random llama with the LLaMA SentencePiece vocabulary (tests/vectors/tokenizer). */
static mm_model *text_model;

static void load_text_model(void)
{
    tiny_llama c = tiny_llama_default;
    c.vocab_path = test_vectors_path("tokenizer/ggml-vocab-llama-spm.gguf");
    c.n_ctx = 128;
    ck_assert_ok(tiny_llama_load(&c, &text_model));
}

static void free_text_model(void)
{
    mm_model_free(text_model);
}

static mm_session *new_session(const char *template_name, int n_ctx)
{
    mm_options *o;
    mm_session *s;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_string(o, MM_OPT_CHAT_TEMPLATE, template_name));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_N_CTX, n_ctx));
    ck_assert_ok(mm_session_create(text_model, o, &s));
    mm_options_free(o);
    return s;
}

/* The two sessions hold the same conversation: same positions and bit-identical logits. */
static void assert_same_state(mm_session *a, mm_session *b)
{
    ck_assert_int_eq(mm_session_n_past(a), mm_session_n_past(b));
    const float *la, *lb;
    size_t na, nb;
    ck_assert_ok(mm_session_logits(a, &la, &na));
    ck_assert_ok(mm_session_logits(b, &lb, &nb));
    ck_assert_uint_eq(na, nb);
    ck_assert_mem_eq(la, lb, na * sizeof *la);
}

static void add(mm_session *s, const char *role, const char *text)
{
    ck_assert_ok(mm_session_add_message(s, role, text, strlen(text)));
}

static mm_status add_json(mm_session *s, const char *json)
{
    return mm_session_add_messages_json(s, json, strlen(json), NULL);
}

/* A JSON conversation is the same as the same messages added one by one, for each template. */
START_TEST(session_json_equals_messages)
{
    static const char *templates[] = {"llava", "chatml", "llama2", "raw"};
    const char *json =
        "{\"model\": \"x\", \"messages\": ["
        "{\"role\": \"system\", \"content\": \"Be brief.\"},"
        "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Hi \\u00e9\"},"
        "  {\"type\": \"text\", \"text\": \"there\"}]},"
        "{\"role\": \"assistant\", \"content\": \"Hello.\"},"
        "{\"role\": \"user\", \"content\": \"Name a colour.\"}]}";
    for (size_t t = 0; t < 4; t++) {
        mm_session *a = new_session(templates[t], 128), *b = new_session(templates[t], 128);
        ck_assert_ok(add_json(a, json));
        add(b, "system", "Be brief.");
        add(b, "user", "Hi \xc3\xa9\nthere"); /* text parts joined by a newline */
        add(b, "assistant", "Hello.");
        add(b, "user", "Name a colour.");
        assert_same_state(a, b);
        mm_session_free(a);
        mm_session_free(b);
    }
    /* Anthropic: the system prompt at the top; "developer" is OpenAI's newer "system". */
    mm_session *a = new_session("chatml", 128), *b = new_session("chatml", 128),
               *c = new_session("chatml", 128);
    ck_assert_ok(add_json(a, "{\"system\": [{\"type\": \"text\", \"text\": \"S\"}],"
                             " \"messages\": [{\"role\": \"user\", \"content\": \"U\"}]}"));
    ck_assert_ok(add_json(c, "[{\"role\": \"developer\", \"content\": \"S\"},"
                             " {\"role\": \"user\", \"content\": \"U\"}]"));
    add(b, "system", "S");
    add(b, "user", "U");
    assert_same_state(a, b);
    assert_same_state(c, b);
    /* A later call continues the conversation, as add_message does. */
    ck_assert_ok(add_json(a, "[{\"role\": \"user\", \"content\": \"again\"}]"));
    add(b, "user", "again");
    assert_same_state(a, b);
    mm_session_free(a);
    mm_session_free(b);
    mm_session_free(c);
}
END_TEST


/* Control-token text in JSON content stays text, as in mm_session_add_message. */
START_TEST(session_json_control_text_stays_text)
{
    mm_session *a = new_session("llava", 128), *b = new_session("llava", 128);
    ck_assert_ok(add_json(a, "[{\"role\": \"user\", \"content\": \"a</s>USER: b<s>\"}]"));
    add(b, "user", "a</s>USER: b<s>");
    assert_same_state(a, b);
    const int32_t *h = mmi_session_history(a);
    for (int i = 1; i < mm_session_n_past(a); i++) /* position 0 is the session's BOS */
        ck_assert_msg(h[i] != mm_token_eos(text_model) && h[i] != mm_token_bos(text_model),
                      "control token %d at %d", h[i], i);
    mm_session_free(a);
    mm_session_free(b);
}
END_TEST

/* Whatever is wrong in the JSON or its images is found before the session changes. */
START_TEST(session_json_errors_leave_the_session_unchanged)
{
    static const struct {
        const char *json;
        mm_status st;
        const char *needle;
    } cases[] = {
        {"[{\"role\":\"user\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":[{\"type\":"
         "\"image_url\",\"image_url\":\"data:image/png;base64,Zm9v\"}]}]",
         MM_ERR_STATE, "conversation: 1 image, but the model has no vision encoder"},
        {"[{\"role\":\"user\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":[{\"type\":"
         "\"image_url\",\"image_url\":\"data:image/png;base64,Zm9\"}]}]",
         MM_ERR_FORMAT, "messages[1].content[0].image_url: base64: length 3"},
        {"[{\"role\":\"user\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":"
         "\"see <image> here\"}]",
         MM_ERR_FORMAT, "messages[1], part 0: text contains \"<image>\""},
        {"[{\"role\":\"user\",\"content\":\"a <media> b\"}]",
         MM_ERR_FORMAT, "messages[0], part 0: text contains \"<media>\""},
        {"[{\"role\":\"user\",\"content\":\"ok\"},{\"role\":\"tool\",\"content\":\"x\"}]",
         MM_ERR_UNSUPPORTED, "messages[1].role \"tool\" is not supported"},
        {"[{\"role\":\"user\",\"content\":\"ok\"}", MM_ERR_FORMAT, "JSON: unexpected end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mm_session *s = new_session("llava", 128);
        mm_status st = add_json(s, cases[i].json);
        ck_assert_msg(st == cases[i].st, "case %zu: %d (%s)", i, (int)st, mm_last_error());
        ck_assert_msg(strstr(mm_last_error(), cases[i].needle), "case %zu: \"%s\" lacks \"%s\"",
                      i, mm_last_error(), cases[i].needle);
        ck_assert_int_eq(mm_session_n_past(s), 0);
        mm_session_free(s);
    }
    mm_session *s = new_session("llava", 128);
    ck_assert_int_eq(mm_session_add_messages_json(NULL, "[]", 2, NULL), MM_ERR_ARG);
    ck_assert_int_eq(mm_session_add_messages_json(s, NULL, 2, NULL), MM_ERR_ARG);
    ck_assert_int_eq(mm_session_add_messages_json(s, NULL, 0, NULL), MM_ERR_FORMAT); /* "" */
    ck_assert_ok(mm_session_add_messages_json(s, "[]", 2, NULL));
    ck_assert_int_eq(mm_session_n_past(s), 0);
    mm_session_free(s);
}
END_TEST

/* The session refuses the second message (context full): the first one stays, and the error
 * says so. */
START_TEST(session_json_context_full_part_way)
{
    mm_session *a = new_session("chatml", 40), *b = new_session("chatml", 40);
    add(b, "user", "Hi");
    ck_assert_int_lt(mm_session_n_past(b), 40);
    const char *json = "[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"user\","
                       "\"content\":\"a much longer message that cannot fit in what is left\"}]";
    ck_assert_int_eq(add_json(a, json), MM_ERR_CTX_FULL);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "messages[1] (1 earlier message was added)"));
    assert_same_state(a, b);
    mm_session_free(a);
    mm_session_free(b);
}
END_TEST

START_TEST(session_json_allocation_failures)
{
    const char *json = "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\","
                       "\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
                       "\"text\":\"b\"}]}]";
    mm_session *b = new_session("chatml", 64);
    add(b, "system", "S");
    add(b, "user", "a\nb");
    for (long n = 1;; n++) {
        mm_session *s = new_session("chatml", 64);
        mmi_alloc_fail_at(n);
        mm_status st = add_json(s, json);
        mmi_alloc_fail_at(0);
        if (st == MM_OK) {
            assert_same_state(s, b);
            mm_session_free(s);
            break;
        }
        ck_assert_int_eq(st, MM_ERR_NOMEM);
        mm_session_free(s);
    }
    mm_session_free(b);
}
END_TEST

/* ---- images: their cost is counted before any is decoded ---- */

static mm_model *llava;

static void load_llava(void)
{
    tiny_llama c = tiny_llama_default; /* a vision file of 4 positions per image */
    c.vocab_path = test_vectors_path("tokenizer/ggml-vocab-llama-spm.gguf");
    ck_assert_ok(tiny_llava_load(&c, &llava));
}

static void free_llava(void)
{
    mm_model_free(llava);
}

/* One user message holding the file at `path` n times, then a question (malloc'ed). */
static char *json_with_images(const char *path, int n)
{
    char *b64 = test_file_base64(path);
    size_t cap = (size_t)n * (strlen(b64) + 100) + 200, len = 0;
    char *json = malloc(cap);
    len += (size_t)snprintf(json + len, cap - len, "[{\"role\":\"user\",\"content\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(json + len, cap - len, "{\"type\":\"image_url\",\"image_url\":"
                                "{\"url\":\"data:image/jpeg;base64,%s\"}},", b64);
    snprintf(json + len, cap - len, "{\"type\":\"text\",\"text\":\"What is it?\"}]}]");
    free(b64);
    return json;
}

static mm_session *llava_session(int n_ctx)
{
    mm_options *o;
    mm_session *s;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_N_CTX, n_ctx));
    ck_assert_ok(mm_session_create(llava, o, &s));
    mm_options_free(o);
    return s;
}

/* A dozen 394-byte JPEGs declaring 16384x4096 each (tests/data/gen_bombs.py): refused by the
 * pixel budget of the call from their headers, before any pixel memory is asked for. */
START_TEST(json_image_budget_before_decoding)
{
    char *json = json_with_images("tests/data/images/bomb_baseline.jpg", 12);
    ck_assert_uint_lt(strlen(json), 12 * 1024);
    mm_session *s = llava_session(64);
    mmi_alloc_largest();
    ck_assert_status(mm_session_add_messages_json(s, json, strlen(json), NULL), MM_ERR_LIMIT);
    ck_assert_uint_lt(mmi_alloc_largest(), 1 << 20);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "messages[0], part 2"));
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "MM_OPT_IMAGE_MAX_TOTAL_PIXELS = 134217728"));
    ck_assert_int_eq(mm_session_n_past(s), 0);
    free(json);

    /* The budget counts width x height: two bombs are 2 x 64 Mi pixels, within the default;
     * one pixel less of budget refuses them. */
    json = json_with_images("tests/data/images/bomb_baseline.jpg", 2);
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_TOTAL_PIXELS, 2 * 16384 * 4096 - 1));
    ck_assert_status(mm_session_add_messages_json(s, json, strlen(json), o), MM_ERR_LIMIT);
    /* Within it, the first is decoded and found cut short: nothing is added. */
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_TOTAL_PIXELS, 2 * 16384 * 4096));
    ck_assert_status(mm_session_add_messages_json(s, json, strlen(json), o), MM_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "premature end of data segment"));
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "messages[0] (0 earlier messages were added): "
                                                  "messages[0], part 0: <memory>: JPEG"));
    ck_assert_int_eq(mm_session_n_past(s), 0);
    free(json);

    /* Images that cannot fit in the context are refused before any is decoded: 17 images of 4
     * positions in 64 (were one decoded, the bomb would fail with MM_ERR_FORMAT). */
    json = json_with_images("tests/data/images/bomb_progressive.jpg", 17);
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_TOTAL_PIXELS, (int64_t)1 << 40));
    ck_assert_status(mm_session_add_messages_json(s, json, strlen(json), o), MM_ERR_CTX_FULL);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "17 media take 68 positions"));
    ck_assert_int_eq(mm_session_n_past(s), 0);
    free(json);
    mm_options_free(o);
    mm_session_free(s);
}
END_TEST

/* ---- responses ---- */

static const mmi_json_value *field(const mmi_json *doc, const mmi_json_value *object,
                                   const char *key)
{
    const mmi_json_value *v;
    ck_assert_ok(mmi_json_member(doc, object, key, &v));
    ck_assert_msg(v != NULL, "response lacks \"%s\"", key);
    return v;
}

static void assert_string_field(const mmi_json *doc, const mmi_json_value *object,
                                const char *key, const char *expected, size_t len)
{
    const mmi_json_value *v = field(doc, object, key);
    ck_assert_int_eq(v->type, MMI_JSON_STRING);
    ck_assert_msg(v->len == len && memcmp(v->str, expected, len) == 0,
                  "%s: \"%s\", expected \"%.*s\"", key, v->str, (int)len, expected);
}

static void assert_int_field(const mmi_json *doc, const mmi_json_value *object, const char *key,
                             int64_t expected)
{
    int64_t value;
    ck_assert_ok(mmi_json_int(field(doc, object, key), INT64_MIN, INT64_MAX, key, &value));
    ck_assert_int_eq(value, expected);
}

/* The reference: the same conversation through mm_session_add_message and mm_session_next,
 * token by token, with the same settings; what a response must report. */
typedef struct {
    char text[4096];
    size_t len;
    int n_prompt, n_generated;
    mm_stop_reason why;
} reference_answer;

static void reference(const char *user_text, int max_tokens, const char *stop,
                      reference_answer *out)
{
    mm_session *s = new_session("chatml", 128);
    add(s, "user", user_text);
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_MAX_TOKENS, max_tokens));
    ck_assert_ok(mm_session_set_options(s, o));
    mm_options_free(o);
    if (stop)
        ck_assert_ok(mm_session_add_stop_string(s, stop));
    out->n_prompt = mm_session_n_past(s);
    out->len = 0;
    out->n_generated = 0;
    for (;;) {
        int32_t token;
        const char *piece;
        size_t len;
        ck_assert_ok(mm_session_next(s, &token, &piece, &len));
        if (!piece)
            break;
        out->n_generated++;
        ck_assert_uint_lt(out->len + len, sizeof out->text);
        memcpy(out->text + out->len, piece, len);
        out->len += len;
    }
    out->text[out->len] = '\0';
    out->why = mm_session_stop_reason(s);
    mm_session_free(s);
}

typedef struct {
    char text[4096];
    size_t len;
} streamed;

static int stream_piece(void *user, const char *piece, size_t len)
{
    streamed *st = user;
    memcpy(st->text + st->len, piece, len);
    st->len += len;
    return 0;
}

/* Answer `json` in a fresh chatml session; the response parsed into doc. */
static void respond(const char *json, mmi_json *doc, streamed *out)
{
    mm_session *s = new_session("chatml", 128);
    mm_chat_request *rq = request(json);
    ck_assert_ok(mm_session_add_chat_request(s, rq, NULL));
    ck_assert_ok(mm_session_add_stop_string(s, "never-generated"));
    const char *response;
    size_t len;
    out->len = 0;
    ck_assert_ok(mm_session_generate_response(s, rq, NULL, stream_piece, out, &response, &len));
    ck_assert_uint_eq(strlen(response), len);
    ck_assert_ok(mmi_json_parse(response, len, doc));
    /* The request's stop strings were for that call only; the session's own stays. */
    ck_assert_uint_eq(mmi_session_n_stop_strings(s), 1);
    mm_session_free(s);
    mm_chat_request_free(rq);
}

START_TEST(response_openai_shape)
{
    reference_answer ref;
    reference("Name a colour.", 12, NULL, &ref);
    ck_assert_int_eq(ref.why, MM_STOP_MAX_TOKENS); /* the random model runs to the budget */
    ck_assert_uint_gt(ref.len, 0);
    mmi_json doc;
    streamed out;
    respond("{\"model\": \"tiny\", \"max_tokens\": 12, \"messages\": [{\"role\": \"user\","
            " \"content\": \"Name a colour.\"}]}", &doc, &out);
    const mmi_json_value *root = &doc.values[0];
    ck_assert_int_eq(root->type, MMI_JSON_OBJECT);
    const mmi_json_value *id = field(&doc, root, "id");
    ck_assert_int_eq(id->type, MMI_JSON_STRING);
    ck_assert_int_eq(strncmp(id->str, "chatcmpl-", 9), 0);
    assert_string_field(&doc, root, "object", "chat.completion", 15);
    ck_assert_int_eq(field(&doc, root, "created")->type, MMI_JSON_NUMBER);
    assert_string_field(&doc, root, "model", "tiny", 4);
    const mmi_json_value *choices = field(&doc, root, "choices");
    ck_assert_int_eq(choices->type, MMI_JSON_ARRAY);
    ck_assert_uint_eq(choices->n_children, 1);
    const mmi_json_value *choice = mmi_json_first(&doc, choices);
    assert_int_field(&doc, choice, "index", 0);
    const mmi_json_value *message = field(&doc, choice, "message");
    assert_string_field(&doc, message, "role", "assistant", 9);
    assert_string_field(&doc, message, "content", ref.text, ref.len);
    assert_string_field(&doc, choice, "finish_reason", "length", 6);
    const mmi_json_value *usage = field(&doc, root, "usage");
    assert_int_field(&doc, usage, "prompt_tokens", ref.n_prompt);
    assert_int_field(&doc, usage, "completion_tokens", 12);
    assert_int_field(&doc, usage, "total_tokens", ref.n_prompt + 12);
    /* The text streamed to the callback is the content. */
    ck_assert_uint_eq(out.len, ref.len);
    ck_assert_mem_eq(out.text, ref.text, ref.len);
    mmi_json_free(&doc);
}
END_TEST

/* A stop string from the middle of the free answer: the answer ends before it. */
START_TEST(response_stop_strings)
{
    reference_answer free_run, stopped;
    reference("Name a colour.", 40, NULL, &free_run);
    /* Two printable ASCII bytes from the second half, written into the JSON as they are. */
    size_t k = free_run.len / 2;
    while (k + 1 < free_run.len &&
           !(free_run.text[k] > 0x20 && free_run.text[k] < 0x7f && free_run.text[k] != '"' &&
             free_run.text[k] != '\\' && free_run.text[k + 1] > 0x20 &&
             free_run.text[k + 1] < 0x7f && free_run.text[k + 1] != '"' &&
             free_run.text[k + 1] != '\\'))
        k++;
    ck_assert_msg(k + 1 < free_run.len, "no ASCII pair in \"%s\"", free_run.text);
    char stop[3] = {free_run.text[k], free_run.text[k + 1], '\0'};
    size_t expected_len = (size_t)(strstr(free_run.text, stop) - free_run.text);
    reference("Name a colour.", 40, stop, &stopped);
    ck_assert_int_eq(stopped.why, MM_STOP_STRING);
    ck_assert_uint_eq(stopped.len, expected_len);

    char json[512];
    snprintf(json, sizeof json, "{\"max_tokens\": 40, \"stop\": [\"%s\"], \"messages\":"
             " [{\"role\": \"user\", \"content\": \"Name a colour.\"}]}", stop);
    mmi_json doc;
    streamed out;
    respond(json, &doc, &out);
    const mmi_json_value *root = &doc.values[0];
    const mmi_json_value *choice = mmi_json_first(&doc, field(&doc, root, "choices"));
    assert_string_field(&doc, field(&doc, choice, "message"), "content", free_run.text,
                        expected_len);
    assert_string_field(&doc, choice, "finish_reason", "stop", 4);
    assert_int_field(&doc, field(&doc, root, "usage"), "completion_tokens",
                     stopped.n_generated);
    ck_assert_uint_eq(out.len, expected_len); /* the stop text never reached the callback */
    mmi_json_free(&doc);

    /* Anthropic-shaped: content blocks, stop_reason and the stop sequence that ended it. */
    snprintf(json, sizeof json, "{\"max_tokens\": 40, \"stop_sequences\": [\"zzzz\", \"%s\"],"
             " \"messages\": [{\"role\": \"user\", \"content\": \"Name a colour.\"}]}", stop);
    respond(json, &doc, &out);
    root = &doc.values[0];
    ck_assert_int_eq(strncmp(field(&doc, root, "id")->str, "msg_", 4), 0);
    assert_string_field(&doc, root, "type", "message", 7);
    assert_string_field(&doc, root, "role", "assistant", 9);
    assert_string_field(&doc, root, "model", "libmm", 5);
    const mmi_json_value *content = field(&doc, root, "content");
    ck_assert_uint_eq(content->n_children, 1);
    const mmi_json_value *block = mmi_json_first(&doc, content);
    assert_string_field(&doc, block, "type", "text", 4);
    assert_string_field(&doc, block, "text", free_run.text, expected_len);
    assert_string_field(&doc, root, "stop_reason", "stop_sequence", 13);
    assert_string_field(&doc, root, "stop_sequence", stop, 2);
    const mmi_json_value *usage = field(&doc, root, "usage");
    assert_int_field(&doc, usage, "input_tokens", stopped.n_prompt);
    assert_int_field(&doc, usage, "output_tokens", stopped.n_generated);
    mmi_json_free(&doc);

    /* Anthropic at the budget: max_tokens, stop_sequence null. */
    respond("{\"system\": \"\", \"max_tokens\": 3, \"messages\": [{\"role\": \"user\","
            " \"content\": \"Name a colour.\"}]}", &doc, &out);
    root = &doc.values[0];
    assert_string_field(&doc, root, "stop_reason", "max_tokens", 10);
    ck_assert_int_eq(field(&doc, root, "stop_sequence")->type, MMI_JSON_NULL);
    mmi_json_free(&doc);
}
END_TEST

/* The request's settings override the caller's; the caller's fill what it leaves out. */
START_TEST(response_settings_override_options)
{
    mm_chat_request *rq = request("{\"max_tokens\": 2, \"messages\": [{\"role\": \"user\","
                                  " \"content\": \"Hi\"}]}");
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_MAX_TOKENS, 7));
    mm_session *s = new_session("chatml", 128);
    ck_assert_ok(mm_session_add_chat_request(s, rq, NULL));
    const char *response;
    ck_assert_ok(mm_session_generate_response(s, rq, o, NULL, NULL, &response, NULL));
    ck_assert_ptr_nonnull(strstr(response, "\"completion_tokens\":2,"));
    mm_session_free(s);
    mm_chat_request_free(rq);
    rq = request("[{\"role\": \"user\", \"content\": \"Hi\"}]");
    s = new_session("chatml", 128);
    ck_assert_ok(mm_session_add_chat_request(s, rq, NULL));
    ck_assert_ok(mm_session_generate_response(s, rq, o, NULL, NULL, &response, NULL));
    ck_assert_ptr_nonnull(strstr(response, "\"completion_tokens\":7,"));
    mm_session_free(s);
    mm_chat_request_free(rq);
    mm_options_free(o);
}
END_TEST

/* The context running out ends the answer with "length", not an error. */
START_TEST(response_context_full_is_length)
{
    mm_chat_request *rq = request("{\"max_tokens\": 500, \"messages\": [{\"role\": \"user\","
                                  " \"content\": \"Hi\"}]}");
    mm_session *s = new_session("chatml", 48);
    ck_assert_ok(mm_session_add_chat_request(s, rq, NULL));
    int n_prompt = mm_session_n_past(s);
    const char *response;
    ck_assert_ok(mm_session_generate_response(s, rq, NULL, NULL, NULL, &response, NULL));
    ck_assert_ptr_nonnull(strstr(response, "\"finish_reason\":\"length\""));
    char usage[96];
    snprintf(usage, sizeof usage, "\"prompt_tokens\":%d,\"completion_tokens\":%d,", n_prompt,
             48 - n_prompt + 1); /* the last token sampled needs no position */
    ck_assert_msg(strstr(response, usage), "%s lacks %s", response, usage);
    mm_session_free(s);
    mm_chat_request_free(rq);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("chatjson");
    TCase *tc = tcase_create("chatjson");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, json_structure);
    tcase_add_test(tc, json_nested_arrays_skip_subtrees);
    tcase_add_test(tc, json_string_escapes_and_utf8);
    tcase_add_test(tc, json_numbers);
    tcase_add_test(tc, json_rejects_with_offsets);
    tcase_add_test(tc, json_rejects_invalid_utf8);
    tcase_add_test(tc, json_depth_limit);
    tcase_add_test(tc, json_value_limit);
    tcase_add_test(tc, json_duplicate_key_refused_on_read);
    tcase_add_test(tc, base64_rfc4648_vectors);
    tcase_add_test(tc, base64_rejects);
    tcase_add_test(tc, data_urls);
    tcase_add_test(tc, chat_openai_shape);
    tcase_add_test(tc, chat_anthropic_shape);
    tcase_add_test(tc, chat_rejects_with_places);
    tcase_add_test(tc, chat_truncated_at_every_byte);
    tcase_add_test(tc, chat_allocation_failures);
    tcase_add_test(tc, chat_mutations);
    tcase_add_test(tc, json_writer_escapes);
    tcase_add_test(tc, json_number_values);
    tcase_add_test(tc, request_settings_openai);
    tcase_add_test(tc, request_settings_anthropic);
    tcase_add_test(tc, request_rejects_with_places);
    tcase_add_test(tc, request_allocation_failures);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("session");
    tcase_set_timeout(ts, 60);
    tcase_add_unchecked_fixture(ts, load_text_model, free_text_model);
    tcase_add_test(ts, session_json_equals_messages);
    tcase_add_test(ts, session_json_control_text_stays_text);
    tcase_add_test(ts, session_json_errors_leave_the_session_unchanged);
    tcase_add_test(ts, session_json_context_full_part_way);
    TCase *ti = tcase_create("images");
    tcase_set_timeout(ti, 60);
    tcase_add_unchecked_fixture(ti, load_llava, free_llava);
    tcase_add_test(ti, json_image_budget_before_decoding);
    suite_add_tcase(s, ti);
    tcase_add_test(ts, session_json_allocation_failures);
    tcase_add_test(ts, response_openai_shape);
    tcase_add_test(ts, response_stop_strings);
    tcase_add_test(ts, response_settings_override_options);
    tcase_add_test(ts, response_context_full_is_length);
    suite_add_tcase(s, ts);
    return test_run_suite(s);
}
