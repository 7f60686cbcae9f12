/* The JSON parser, base64 / data-URL decoding and the chat-conversation reader (lib/chatjson.c),
 * against hand-checked values: RFC 8259 grammar cases, RFC 4648 section 10 test vectors, UTF-8
 * encodings from the Unicode standard (RFC 3629 table), and hostile inputs. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "chatjson.h"
#include "testutil.h"
#include "tiny_llama.h"

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

/* ---- feeding a session ---- */

/* A tiny random llama with the LLaMA SentencePiece vocabulary (../shared/vectors/tokenizer). */
static mm_model *text_model;

static void load_text_model(void)
{
    tiny_llama c = tiny_llama_default;
    c.vocab_path = test_shared_path("vectors/tokenizer/ggml-vocab-llama-spm.gguf");
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
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("session");
    tcase_set_timeout(ts, 60);
    tcase_add_unchecked_fixture(ts, load_text_model, free_text_model);
    tcase_add_test(ts, session_json_equals_messages);
    tcase_add_test(ts, session_json_errors_leave_the_session_unchanged);
    tcase_add_test(ts, session_json_context_full_part_way);
    tcase_add_test(ts, session_json_allocation_failures);
    suite_add_tcase(s, ts);
    return test_run_suite(s);
}
