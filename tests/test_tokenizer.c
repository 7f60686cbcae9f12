/* Tokenizer: tiny vocabularies built with the GGUF writer and checked against hand-worked
 * merges, the pre-tokenizer regexes on hand-split text, streaming decode, bad input, allocation
 * failures, the public wrappers, and round trips on llama.cpp's vocab test files. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "gguf.h"
#include "mm.h"
#include "model.h"
#include "pretokenize.h"
#include "testutil.h"
#include "tokenizer.h"
#include "unicode.h"

/* ---- building vocabularies ---- */

typedef struct {
    const char *model;          /* "llama" or "gpt2" */
    const char *pre;            /* NULL: no key */
    const char *const *tokens;
    const float *scores;        /* NULL: no key */
    const int32_t *types;       /* NULL: no key */
    size_t n;
    size_t n_types;             /* 0: n */
    const char *const *merges;  /* gpt2 */
    size_t n_merges;
    int add_eos;                /* 1: write add_eos_token = true */
    int32_t bos_plus_one;       /* 0: no bos_token_id key */
} vocab_spec;

/* Write the spec as GGUF in memory and open it; the caller closes it. */
static mmi_gguf *write_vocab(const vocab_spec *v)
{
    mmi_gguf_writer *w;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    ck_assert_ok(mmi_gguf_writer_add_string(w, "general.architecture", "llama"));
    ck_assert_ok(mmi_gguf_writer_add_string(w, "tokenizer.ggml.model", v->model));
    if (v->pre)
        ck_assert_ok(mmi_gguf_writer_add_string(w, "tokenizer.ggml.pre", v->pre));
    ck_assert_ok(mmi_gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", v->tokens, v->n));
    if (v->scores)
        ck_assert_ok(mmi_gguf_writer_add_array(w, "tokenizer.ggml.scores", MMI_GGUF_FLOAT32,
                                               v->scores, v->n));
    if (v->types)
        ck_assert_ok(mmi_gguf_writer_add_array(w, "tokenizer.ggml.token_type", MMI_GGUF_INT32,
                                               v->types, v->n_types ? v->n_types : v->n));
    if (v->merges)
        ck_assert_ok(mmi_gguf_writer_add_string_array(w, "tokenizer.ggml.merges", v->merges,
                                                      v->n_merges));
    if (v->add_eos)
        ck_assert_ok(mmi_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 1));
    if (v->bos_plus_one)
        ck_assert_ok(mmi_gguf_writer_add_int(w, "tokenizer.ggml.bos_token_id", MMI_GGUF_UINT32,
                                             v->bos_plus_one - 1));
    void *data;
    size_t size;
    ck_assert_ok(mmi_gguf_writer_write_memory(w, &data, &size));
    mmi_gguf_writer_free(w);
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(data, size, &g));
    mmi_free(data);
    return g;
}

static mmi_tokenizer *load_vocab(const vocab_spec *v)
{
    mmi_gguf *g = write_vocab(v);
    mmi_tokenizer *tok;
    ck_assert_ok(mmi_tokenizer_load(g, &tok));
    mmi_gguf_close(g);
    return tok;
}

static mm_status load_status(const vocab_spec *v)
{
    mmi_gguf *g = write_vocab(v);
    mmi_tokenizer *tok = NULL;
    mm_status st = mmi_tokenizer_load(g, &tok);
    ck_assert(st == MM_OK ? tok != NULL : tok == NULL);
    mmi_tokenizer_free(tok);
    mmi_gguf_close(g);
    return st;
}

/* SentencePiece test vocabulary: ids 0-2 <unk> <s> </s>, 3-258 the byte tokens <0x00>..<0xFF>,
 * then the pieces below (SPM_FIRST + index), with their scores. */
#define SPM_FIRST 259
enum { P_SPACE, P_A, P_B, P_C, P_SA, P_AB, P_BC, P_SAB, P_AA, P_AAAA, P_S, P_USER, N_PIECES };
static const char *const spm_pieces[N_PIECES] = {
    "\xE2\x96\x81", "a", "b", "c", "\xE2\x96\x81" "a", "ab", "bc", "\xE2\x96\x81" "ab", "aa", "aaaa",
    "s", "<img>"};
#define SPM_N (SPM_FIRST + N_PIECES)
#define ID(p) (SPM_FIRST + (p))

typedef struct {
    const char *tokens[SPM_N];
    char bytes[256][8];
    float scores[SPM_N];
    int32_t types[SPM_N];
    vocab_spec spec;
} spm_vocab;

/* score_ab / score_bc: the priorities of "ab" and "bc", so tests can flip which merges first. */
static void make_spm(spm_vocab *v, float score_ab, float score_bc)
{
    memset(v, 0, sizeof *v);
    v->tokens[0] = "<unk>";
    v->tokens[1] = "<s>";
    v->tokens[2] = "</s>";
    v->types[0] = MMI_TOKEN_UNKNOWN;
    v->types[1] = v->types[2] = MMI_TOKEN_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(v->bytes[b], sizeof v->bytes[b], "<0x%02X>", b);
        v->tokens[3 + b] = v->bytes[b];
        v->types[3 + b] = MMI_TOKEN_BYTE;
    }
    for (int p = 0; p < N_PIECES; p++) {
        v->tokens[ID(p)] = spm_pieces[p];
        v->types[ID(p)] = MMI_TOKEN_NORMAL;
        v->scores[ID(p)] = -5.0f;
    }
    v->types[ID(P_USER)] = MMI_TOKEN_USER_DEFINED;
    v->scores[ID(P_SA)] = -2.0f;
    v->scores[ID(P_AB)] = score_ab;
    v->scores[ID(P_BC)] = score_bc;
    v->scores[ID(P_SAB)] = -0.5f;
    v->scores[ID(P_AA)] = -1.0f;
    v->scores[ID(P_AAAA)] = -0.5f;
    v->spec = (vocab_spec){"llama", NULL, v->tokens, v->scores, v->types, SPM_N, 0, NULL, 0, 0, 0};
}

static mmi_tokenizer *spm_tokenizer(float score_ab, float score_bc)
{
    spm_vocab v;
    make_spm(&v, score_ab, score_bc);
    return load_vocab(&v.spec);
}

/* Encode and compare with the expected ids. */
static void expect_ids(const mmi_tokenizer *tok, const char *text, unsigned flags,
                       const int32_t *want, size_t n_want)
{
    mmi_tokens t = {0};
    ck_assert_ok(mmi_tokenize(tok, text, strlen(text), flags, &t));
    int same = t.n == n_want && (n_want == 0 || memcmp(t.ids, want, n_want * sizeof *want) == 0);
    if (!same) {
        char got[512] = "";
        for (size_t i = 0; i < t.n && strlen(got) < 480; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), " %d", (int)t.ids[i]);
        ck_abort_msg("\"%s\" (flags %u): got%s (%zu ids, expected %zu)", text, flags, got, t.n,
                     n_want);
    }
    mmi_tokens_free(&t);
}

#define EXPECT(tok, text, flags, ...)                                                         \
    do {                                                                                      \
        const int32_t want_[] = {__VA_ARGS__};                                                \
        expect_ids(tok, text, flags, want_, sizeof want_ / sizeof want_[0]);                  \
    } while (0)
#define EXPECT_NONE(tok, text, flags) expect_ids(tok, text, flags, NULL, 0)

/* ---- SentencePiece ---- */

START_TEST(spm_merges_by_score_then_leftmost)
{
    /* "▁abc": pairs ▁a (-2), ab, bc. With ab best: ▁ ab c; then ▁ab (-0.5) joins ▁ + ab. */
    mmi_tokenizer *tok = spm_tokenizer(-1.0f, -3.0f);
    EXPECT(tok, "abc", 0, ID(P_SAB), ID(P_C));
    mmi_tokenizer_free(tok);
    /* With bc best: ▁ a bc, then ▁a (-2): ▁a bc. */
    tok = spm_tokenizer(-3.0f, -1.0f);
    EXPECT(tok, "abc", 0, ID(P_SA), ID(P_BC));
    mmi_tokenizer_free(tok);
    /* Equal scores: the leftmost pair (ab) merges first, as above. */
    tok = spm_tokenizer(-1.0f, -1.0f);
    EXPECT(tok, "abc", 0, ID(P_SAB), ID(P_C));
    /* Spaces are ▁ and one is put in front: " ab" is ▁▁ab -> ▁ ▁ab. */
    EXPECT(tok, " ab", 0, ID(P_SPACE), ID(P_SAB));
    EXPECT(tok, "c c", 0, ID(P_SPACE), ID(P_C), ID(P_SPACE), ID(P_C));
    mmi_tokenizer_free(tok);
}
END_TEST

START_TEST(spm_byte_fallback_and_specials)
{
    mmi_tokenizer *tok = spm_tokenizer(-1.0f, -3.0f);
    /* é (C3 A9) and € (E2 82 AC) have no piece: their bytes. */
    EXPECT(tok, "\xC3\xA9", 0, ID(P_SPACE), 3 + 0xC3, 3 + 0xA9);
    EXPECT(tok, "a\xE2\x82\xAC", 0, ID(P_SA), 3 + 0xE2, 3 + 0x82, 3 + 0xAC);
    EXPECT_NONE(tok, "", 0);
    EXPECT(tok, "", MM_TOKENIZE_ADD_SPECIAL, 1);
    EXPECT(tok, "c", MM_TOKENIZE_ADD_SPECIAL, 1, ID(P_SPACE), ID(P_C));
    /* "</s>" is text unless special tokens are parsed; text after it gets its own ▁. */
    EXPECT(tok, "a</s>c", 0, ID(P_SA), 3 + '<', 3 + '/', ID(P_S), 3 + '>', ID(P_C));
    EXPECT(tok, "a</s>c", MM_TOKENIZE_PARSE_SPECIAL, ID(P_SA), 2, ID(P_SPACE), ID(P_C));
    EXPECT(tok, "<s></s>", MM_TOKENIZE_PARSE_SPECIAL, 1, 2);
    EXPECT(tok, "<unk>", MM_TOKENIZE_PARSE_SPECIAL, 0);
    /* User-defined tokens are matched either way, as llama.cpp does. */
    EXPECT(tok, "a<img>", 0, ID(P_SA), ID(P_USER));
    EXPECT(tok, "<img>c", 0, ID(P_USER), ID(P_SPACE), ID(P_C));
    ck_assert_int_eq(mmi_token_bos(tok), 1);
    ck_assert_int_eq(mmi_token_eos(tok), 2);
    ck_assert(mmi_token_is_eog(tok, 2));
    ck_assert(!mmi_token_is_eog(tok, 1));
    ck_assert_int_eq(mmi_token_lookup(tok, "ab", 2), ID(P_AB));
    ck_assert_int_eq(mmi_token_lookup(tok, "abc", 3), -1);
    mmi_tokenizer_free(tok);

    /* add_eos_token = true appends </s>. */
    spm_vocab v;
    make_spm(&v, -1.0f, -3.0f);
    v.spec.add_eos = 1;
    tok = load_vocab(&v.spec);
    EXPECT(tok, "c", MM_TOKENIZE_ADD_SPECIAL, 1, ID(P_SPACE), ID(P_C), 2);
    mmi_tokenizer_free(tok);
}
END_TEST

static void expect_decode(const mmi_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                          const char *want)
{
    mmi_detok_stream s;
    ck_assert_ok(mmi_detok_stream_init(&s, tok, flags));
    char got[256];
    size_t len = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *text;
        size_t k;
        if (i < n)
            ck_assert_ok(mmi_detok_stream_push(&s, ids[i], &text, &k));
        else
            mmi_detok_stream_finish(&s, &text, &k);
        ck_assert_uint_lt(len + k, sizeof got);
        memcpy(got + len, text, k);
        len += k;
    }
    got[len] = '\0';
    ck_assert_str_eq(got, want);
    mmi_detok_stream_free(&s);
}

START_TEST(spm_decode)
{
    mmi_tokenizer *tok = spm_tokenizer(-1.0f, -3.0f);
    const int32_t ids[] = {1, ID(P_SAB), ID(P_SPACE), ID(P_C), 2};
    expect_decode(tok, ids, 5, 0, "ab c");
    expect_decode(tok, ids, 5, MM_DETOKENIZE_KEEP_LEADING_SPACE, " ab c");
    expect_decode(tok, ids, 5, MM_DETOKENIZE_RENDER_SPECIAL, "<s>ab c</s>");
    /* After a special token the encoder adds a ▁, which decoding takes away again. */
    const int32_t after[] = {ID(P_SA), 2, ID(P_SPACE), ID(P_C)};
    expect_decode(tok, after, 4, MM_DETOKENIZE_RENDER_SPECIAL, "a</s>c");
    /* Byte tokens, unknown (U+2585 as llama.cpp writes it), user-defined. */
    const int32_t bytes[] = {ID(P_SA), 3 + 0xC3, 3 + 0xA9, 0, ID(P_USER)};
    expect_decode(tok, bytes, 5, 0, "a\xC3\xA9\xE2\x96\x85<img>");
    size_t len;
    ck_assert(memcmp(mmi_token_piece(tok, ID(P_SAB), &len), " ab", 3) == 0);
    ck_assert_uint_eq(len, 3);
    const char *t = mmi_token_text(tok, ID(P_SAB), &len);
    ck_assert_uint_eq(len, 5);
    ck_assert(memcmp(t, "\xE2\x96\x81" "ab", 5) == 0);
    ck_assert_ptr_null(mmi_token_text(tok, SPM_N, &len));
    mmi_tokenizer_free(tok);
}
END_TEST

START_TEST(stream_holds_split_characters)
{
    mmi_tokenizer *tok = spm_tokenizer(-1.0f, -3.0f);
    mmi_detok_stream s;
    ck_assert_ok(mmi_detok_stream_init(&s, tok, 0));
    const char *text;
    size_t len;
    /* € = E2 82 AC, one byte token at a time: nothing until the last byte. */
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0xE2, &text, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0x82, &text, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0xAC, &text, &len));
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(text, "\xE2\x82\xAC", 3) == 0);
    /* A start byte followed by a piece that does not continue it: U+FFFD, then the piece. */
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0xC3, &text, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ok(mmi_detok_stream_push(&s, ID(P_SA), &text, &len));
    ck_assert_uint_eq(len, 5);
    ck_assert(memcmp(text, "\xEF\xBF\xBD a", 5) == 0);
    /* A lone continuation byte, and bytes that can never start a character. */
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0xA9, &text, &len));
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(text, "\xEF\xBF\xBD", 3) == 0);
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0xFF, &text, &len));
    ck_assert_uint_eq(len, 3);
    /* A surrogate (ED A0 ..) is invalid at its second byte: U+FFFD for ED, then for A0. */
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0xED, &text, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0xA0, &text, &len));
    ck_assert_uint_eq(len, 6);
    /* A character cut off at the end comes out as U+FFFD when the stream finishes. */
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0xF0, &text, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ok(mmi_detok_stream_push(&s, 3 + 0x9F, &text, &len));
    ck_assert_uint_eq(len, 0);
    mmi_detok_stream_finish(&s, &text, &len);
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(text, "\xEF\xBF\xBD", 3) == 0);
    /* Ids outside the vocabulary are refused and change nothing. */
    ck_assert_status(mmi_detok_stream_push(&s, SPM_N, &text, &len), MM_ERR_ARG);
    ck_assert_status(mmi_detok_stream_push(&s, -1, &text, &len), MM_ERR_ARG);
    mmi_detok_stream_free(&s);
    mmi_tokenizer_free(tok);
}
END_TEST

START_TEST(invalid_utf8_is_refused)
{
    mmi_tokenizer *tok = spm_tokenizer(-1.0f, -3.0f);
    static const char *const bad[] = {
        "a\xC3(",          /* start byte without its continuation */
        "\xE2\x82",        /* cut off at the end */
        "\xC0\xAF",        /* overlong / */
        "\xED\xA0\x80",    /* UTF-16 surrogate */
        "\xF4\x90\x80\x80", /* above U+10FFFF */
        "\xFF",
        "\x80",
    };
    mmi_tokens t = {0};
    ck_assert_ok(mmi_tokenize(tok, "c", 1, 0, &t));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_status(mmi_tokenize(tok, bad[i], strlen(bad[i]), 0, &t), MM_ERR_FORMAT);
        ck_assert_uint_eq(t.n, 2); /* what was there before is kept */
        ck_assert_ptr_nonnull(strstr(mm_last_error(), "UTF-8"));
    }
    /* The largest valid forms pass. */
    ck_assert_ok(mmi_tokenize(tok, "\xF4\x8F\xBF\xBF\xEF\xBF\xBF\x7F", 8, 0, &t));
    mmi_tokens_free(&t);
    mmi_tokenizer_free(tok);
}
END_TEST

/* ---- byte-level BPE ---- */

/* GPT-2 style vocabulary: ids 0-255 are the byte characters in byte order (so id == byte),
 * then merged tokens. Ranks: 0 "h e", 1 "Ġ t", 2 "Ġt he", 3 "t he", 4 "r e", 5 "a a",
 * 6 "aa aa". */
enum { B_HE = 256, B_GT, B_GTHE, B_THE, B_RE, B_AA, B_AAAA, B_EOT, B_USER, B_XYZ, BPE_N };
static const char *const bpe_merges[] = {"h e", "\xC4\xA0 t", "\xC4\xA0t he", "t he", "r e",
                                         "a a", "aa aa"};

typedef struct {
    const char *tokens[BPE_N];
    char chars[256][4];
    int32_t types[BPE_N];
    vocab_spec spec;
} bpe_vocab;

static void make_bpe(bpe_vocab *v, const char *pre)
{
    memset(v, 0, sizeof *v);
    for (unsigned b = 0; b < 256; b++) {
        /* GPT-2's byte-to-unicode map, written out independently of the library's. */
        unsigned cp = b;
        if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
            unsigned n = 0;
            for (unsigned c = 0; c < b; c++)
                n += !((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE);
            cp = 256 + n;
        }
        mmi_utf8_encode(cp, v->chars[b]);
        v->tokens[b] = v->chars[b];
        v->types[b] = MMI_TOKEN_NORMAL;
    }
    static const char *const merged[] = {"he", "\xC4\xA0t", "\xC4\xA0the", "the", "re", "aa",
                                         "aaaa", "<|im_end|>", "<tool>", "xyz"};
    for (int i = B_HE; i < BPE_N; i++) {
        v->tokens[i] = merged[i - B_HE];
        v->types[i] = MMI_TOKEN_NORMAL;
    }
    v->types[B_EOT] = MMI_TOKEN_CONTROL;
    v->types[B_USER] = MMI_TOKEN_USER_DEFINED;
    v->spec = (vocab_spec){"gpt2", pre, v->tokens, NULL, v->types, BPE_N, 0, bpe_merges,
                           sizeof bpe_merges / sizeof bpe_merges[0], 0, 0};
}

START_TEST(bpe_merges_by_rank)
{
    bpe_vocab v;
    make_bpe(&v, "gpt-2");
    mmi_tokenizer *tok = load_vocab(&v.spec);
    /* "the" -> t he (rank 0) -> the (3). */
    EXPECT(tok, "the", 0, B_THE);
    /* " there" = Ġ t h e r e: he (0), Ġt (1), Ġt he (2); "t he" is stale; re (4). */
    EXPECT(tok, " there", 0, B_GTHE, B_RE);
    EXPECT(tok, "the there", 0, B_THE, B_GTHE, B_RE);
    /* Bytes with no merge stay single: ids are the bytes. */
    EXPECT(tok, "x\n", 0, 'x', '\n');
    EXPECT(tok, "\xC3\xA9!", 0, 0xC3, 0xA9, '!');
    /* No BOS for gpt2 vocabularies unless the file asks. */
    EXPECT(tok, "x", MM_TOKENIZE_ADD_SPECIAL, 'x');
    /* Control tokens only when parsed; user-defined always. */
    EXPECT(tok, "<|im_end|>", MM_TOKENIZE_PARSE_SPECIAL, B_EOT);
    EXPECT(tok, "x<tool>", 0, 'x', B_USER);
    ck_assert_int_eq(mmi_token_eot(tok), B_EOT);
    ck_assert(mmi_token_is_eog(tok, B_EOT));
    ck_assert_int_eq(mmi_token_bos(tok), -1);
    /* Decoding maps the byte characters back: Ġ is a space. */
    const int32_t ids[] = {B_THE, B_GTHE, B_RE, 0xC3, 0xA9, B_EOT};
    expect_decode(tok, ids, 6, 0, "the there\xC3\xA9");
    expect_decode(tok, ids, 6, MM_DETOKENIZE_RENDER_SPECIAL, "the there\xC3\xA9<|im_end|>");
    size_t len;
    ck_assert(memcmp(mmi_token_piece(tok, ' ', &len), " ", 1) == 0);
    ck_assert_uint_eq(len, 1);
    /* "xyz" is an entry no merge produces. */
    EXPECT(tok, "xyz", 0, 'x', 'y', 'z');
    mmi_tokenizer_free(tok);

    /* LLaMA 3 style: a word that is an entry is taken whole, and BOS is added. */
    make_bpe(&v, "llama-bpe");
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_FORMAT); /* adds BOS but names none */
    v.spec.bos_plus_one = B_EOT + 1;
    tok = load_vocab(&v.spec);
    EXPECT(tok, "xyz the", MM_TOKENIZE_ADD_SPECIAL, B_EOT, B_XYZ, B_GTHE);
    EXPECT(tok, "12345", 0, '1', '2', '3', '4', '5'); /* \p{N}{1,3}: "123" "45", no merges */
    mmi_tokenizer_free(tok);
}
END_TEST

START_TEST(bpe_loader_refuses_what_it_cannot_do)
{
    bpe_vocab v;
    make_bpe(&v, NULL); /* no pre-tokenizer named */
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_UNSUPPORTED);
    make_bpe(&v, "default");
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_UNSUPPORTED);
    make_bpe(&v, "some-future-regex");
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "some-future-regex"));
    make_bpe(&v, "gpt-2");
    v.spec.model = "clip"; /* a clip vocabulary with another pattern */
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_UNSUPPORTED);
    make_bpe(&v, "gpt-2");
    v.spec.model = "bert";
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_UNSUPPORTED);
    make_bpe(&v, "gpt-2");
    v.spec.merges = NULL;
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_FORMAT);
    static const char *const bad_merge[] = {"he"};
    make_bpe(&v, "gpt-2");
    v.spec.merges = bad_merge;
    v.spec.n_merges = 1;
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_FORMAT);
    make_bpe(&v, "gpt-2");
    v.tokens[B_RE] = "he"; /* duplicate entry */
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_FORMAT);
    make_bpe(&v, "gpt-2");
    v.types[3] = 9; /* no such token type */
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_FORMAT);
    make_bpe(&v, "gpt-2"); /* a special id one past the last entry */
    v.spec.bos_plus_one = (int32_t)v.spec.n + 1;
    ck_assert_int_eq(load_status(&v.spec), MM_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "bos_token_id"));
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "outside the vocabulary"));

    spm_vocab s;
    make_spm(&s, -1.0f, -1.0f);
    s.tokens[3] = "<0xZZ>";
    ck_assert_int_eq(load_status(&s.spec), MM_ERR_FORMAT);
    make_spm(&s, -1.0f, -1.0f);
    s.spec.n_types = SPM_N - 1; /* one type short of the token count */
    ck_assert_int_eq(load_status(&s.spec), MM_ERR_FORMAT);
}
END_TEST

/* ---- CLIP ---- */

/* CLIP style vocabulary: ids 0-255 the byte characters (id == byte), 256-511 the same followed
 * by "</w>" (id == 256 + byte), then merged tokens. Ranks: 0 "c a", 1 "ca t</w>", 2 "t h",
 * 3 "th e</w>". */
enum { C_CA = 512, C_CAT, C_TH, C_THE, C_SOT, C_EOT, CLIP_N };
static const char *const clip_merges[] = {"c a", "ca t</w>", "t h", "th e</w>"};

typedef struct {
    const char *tokens[CLIP_N];
    char chars[512][8];
    int32_t types[CLIP_N];
    vocab_spec spec;
} clip_vocab;

static mmi_tokenizer *clip_tokenizer(void)
{
    static clip_vocab v; /* the tokenizer copies what it needs */
    bpe_vocab b;
    make_bpe(&b, NULL);
    for (int i = 0; i < 256; i++) {
        snprintf(v.chars[i], sizeof v.chars[i], "%s", b.chars[i]);
        snprintf(v.chars[256 + i], sizeof v.chars[256 + i], "%s</w>", b.chars[i]);
        v.tokens[i] = v.chars[i];
        v.tokens[256 + i] = v.chars[256 + i];
    }
    static const char *const merged[] = {"ca", "cat</w>", "th", "the</w>", "<|startoftext|>",
                                         "<|endoftext|>"};
    for (int i = C_CA; i < CLIP_N; i++)
        v.tokens[i] = merged[i - C_CA];
    for (int i = 0; i < CLIP_N; i++)
        v.types[i] = i >= C_SOT ? MMI_TOKEN_CONTROL : MMI_TOKEN_NORMAL;
    v.spec = (vocab_spec){"clip", "clip", v.tokens, NULL, v.types, CLIP_N, 0, clip_merges,
                          sizeof clip_merges / sizeof clip_merges[0], 0, 0};
    return load_vocab(&v.spec);
}

START_TEST(clip_normalizes_splits_and_marks_word_ends)
{
    mmi_tokenizer *tok = clip_tokenizer();
    /* Lowercased; words "the", "cat", "'s", "1", "2" (digits one at a time); spaces dropped. */
    EXPECT(tok, "  The\tCAT's 12 ", 0, C_THE, C_CAT, '\'', 256 + 's', 256 + '1', 256 + '2');
    /* NFC: e + U+0301 becomes é (C3 A9) inside the word; without NFC the accent would be a
     * word of its own. */
    EXPECT(tok, "Cafe\xCC\x81", 0, C_CA, 'f', 0xC3, 256 + 0xA9);
    EXPECT(tok, "caf\xC3\xA9", 0, C_CA, 'f', 0xC3, 256 + 0xA9);
    /* Lowercase beyond ASCII: ÄÖ -> äö (C3 A4 C3 B6); İ -> i + U+0307 (a mark: its own word). */
    EXPECT(tok, "\xC3\x84\xC3\x96", 0, 0xC3, 0xA4, 0xC3, 256 + 0xB6);
    EXPECT(tok, "\xC4\xB0", 0, 256 + 'i', 0xCC, 256 + 0x87);
    /* The special texts are words of the pattern; as tokens only when parsed. */
    EXPECT(tok, "<|endoftext|>x", MM_TOKENIZE_PARSE_SPECIAL, C_EOT, 256 + 'x');
    EXPECT(tok, "a<|endoftext|>", 0, 256 + 'a', '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x',
           't', '|', 256 + '>');
    /* "</w>" decodes as the space after a word. */
    const int32_t ids[] = {C_THE, C_CAT, '\'', 256 + 's'};
    expect_decode(tok, ids, 4, 0, "the cat 's ");
    mmi_tokenizer_free(tok);
}
END_TEST

/* ---- pre-tokenizers ---- */

/* Split text with the pre-tokenizer and compare with the words joined by '|'. */
static void expect_split(mmi_pre_kind kind, const char *text, const char *want)
{
    uint32_t cp[256];
    uint8_t cls[256];
    size_t off[257], n = 0, len = strlen(text);
    for (size_t i = 0; i < len; n++) {
        int k = mmi_utf8_decode((const unsigned char *)text + i, len - i, &cp[n]);
        ck_assert_int_gt(k, 0);
        cls[n] = (uint8_t)mmi_unicode_class(cp[n]);
        off[n] = i;
        i += (size_t)k;
    }
    off[n] = len;
    char got[1024] = "";
    for (size_t i = 0; i < n;) {
        size_t k = mmi_pretokenize_next(kind, cp, cls, i, n);
        ck_assert_uint_gt(k, 0);
        ck_assert_uint_le(i + k, n);
        if (i)
            strcat(got, "|");
        strncat(got, text + off[i], off[i + k] - off[i]);
        i += k;
    }
    ck_assert_str_eq(got, want);
}

START_TEST(pretokenizers_split_as_their_regex)
{
    expect_split(MMI_PRE_GPT2, "Hello world's  123 !!\n\n x",
                 "Hello| world|'s| | 123| !!|\n\n| x");
    expect_split(MMI_PRE_GPT2, "I'M 'sa'll", "I|'|M| '|sa|'ll");
    expect_split(MMI_PRE_GPT2, "a  \t\tb  ", "a|  \t|\t|b|  ");
    /* Letters and digits of other scripts; a combining accent is not a letter (\p{L}). */
    expect_split(MMI_PRE_GPT2, "na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xD9\xA3\xD9\xA4",
                 "na\xC3\xAFve| caf\xC3\xA9| \xE6\x97\xA5\xE6\x9C\xAC| \xD9\xA3\xD9\xA4");
    expect_split(MMI_PRE_GPT2, "e\xCC\x81x", "e|\xCC\x81|x");
    /* U+00A0 and U+3000 are \s; U+200B (zero width space) is not. */
    expect_split(MMI_PRE_GPT2, "a\xC2\xA0\xC2\xA0" "b\xE3\x80\x80", "a|\xC2\xA0|\xC2\xA0|b|\xE3\x80\x80");
    expect_split(MMI_PRE_GPT2, "a\xE2\x80\x8B" "b", "a|\xE2\x80\x8B|b");

    expect_split(MMI_PRE_LLAMA3, "I'LL 12345 a\n\n  b", "I|'LL| |123|45| a|\n\n| | b");
    expect_split(MMI_PRE_LLAMA3, "(hello) \"x\"!!\n\ny", "(hello|)| \"|x|\"!!\n\n|y");
    expect_split(MMI_PRE_LLAMA3, "a \n \n  b\t", "a| \n \n| | b|\t");
    expect_split(MMI_PRE_QWEN2, "x12345 y", "x|1|2|3|4|5| y");
    expect_split(MMI_PRE_CLIP, "a<|endoftext|>'s'x 12!? b", "a|<|endoftext|>|'s|'|x| |1|2|!?| |b");
}
END_TEST

/* ---- Unicode tables: values from the Unicode standard ---- */

static void expect_nfc(const uint32_t *in, size_t n, const uint32_t *want, size_t n_want)
{
    uint32_t buf[32];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += mmi_unicode_decompose(in[i], buf + m);
    m = mmi_unicode_compose(buf, m);
    ck_assert_uint_eq(m, n_want);
    for (size_t i = 0; i < m; i++)
        ck_assert_uint_eq(buf[i], want[i]);
}

#define NFC(in, ...)                                                                          \
    do {                                                                                      \
        const uint32_t in_[] = in, want_[] = {__VA_ARGS__};                                   \
        expect_nfc(in_, sizeof in_ / sizeof in_[0], want_, sizeof want_ / sizeof want_[0]);   \
    } while (0)
#define CPS(...) {__VA_ARGS__}

START_TEST(unicode_classes_nfc_and_lowercase)
{
    ck_assert_int_eq(mmi_unicode_class('a'), MMI_UC_LETTER);
    ck_assert_int_eq(mmi_unicode_class(0x4E00), MMI_UC_LETTER);   /* CJK ideograph, Lo */
    ck_assert_int_eq(mmi_unicode_class(0x02B0), MMI_UC_LETTER);   /* modifier letter, Lm */
    ck_assert_int_eq(mmi_unicode_class(0x0663), MMI_UC_NUMBER);   /* Arabic-Indic three, Nd */
    ck_assert_int_eq(mmi_unicode_class(0x2163), MMI_UC_NUMBER);   /* Roman numeral four, Nl */
    ck_assert_int_eq(mmi_unicode_class(0x00BD), MMI_UC_NUMBER);   /* one half, No */
    ck_assert_int_eq(mmi_unicode_class(0x3000), MMI_UC_SPACE);
    ck_assert_int_eq(mmi_unicode_class(0x0085), MMI_UC_SPACE);
    ck_assert_int_eq(mmi_unicode_class(0x200B), MMI_UC_OTHER);    /* zero width space, Cf */
    ck_assert_int_eq(mmi_unicode_class(0x0301), MMI_UC_OTHER);    /* combining acute, Mn */
    ck_assert_int_eq(mmi_unicode_class(0x1F600), MMI_UC_OTHER);   /* emoji, So */
    ck_assert_int_eq(mmi_unicode_class(0x10FFFF), MMI_UC_OTHER);

    NFC(CPS('A', 0x030A), 0x00C5);                 /* A + ring above */
    NFC(CPS(0x212B), 0x00C5);                      /* Angstrom sign: a singleton */
    NFC(CPS(0x1100, 0x1161, 0x11A8), 0xAC01);      /* Hangul L V T */
    NFC(CPS(0xAC01), 0xAC01);
    NFC(CPS('A', 0x0307, 0x0323), 0x1EA0, 0x0307); /* reordered: dot below (220) first */
    NFC(CPS('a', 0x0301, 0x0301), 0x00E1, 0x0301); /* the second accent is blocked */
    NFC(CPS(0x0958), 0x0915, 0x093C);              /* excluded from composition */
    NFC(CPS(0x1E0B, 0x0323), 0x1E0D, 0x0307);      /* d dot above + dot below */

    uint32_t low[2];
    ck_assert_uint_eq(mmi_unicode_lower('A', low), 1);
    ck_assert_uint_eq(low[0], 'a');
    ck_assert_uint_eq(mmi_unicode_lower(0x00C4, low), 1);
    ck_assert_uint_eq(low[0], 0x00E4);
    ck_assert_uint_eq(mmi_unicode_lower(0x03A3, low), 1); /* Σ -> σ, one character alone */
    ck_assert_uint_eq(low[0], 0x03C3);
    ck_assert_uint_eq(mmi_unicode_lower(0x0102, low), 1); /* Latin Extended-A pairs */
    ck_assert_uint_eq(low[0], 0x0103);
    ck_assert_uint_eq(mmi_unicode_lower(0x0103, low), 1);
    ck_assert_uint_eq(low[0], 0x0103);
    ck_assert_uint_eq(mmi_unicode_lower(0x1E9E, low), 1); /* capital sharp s */
    ck_assert_uint_eq(low[0], 0x00DF);
    ck_assert_uint_eq(mmi_unicode_lower(0x2160, low), 1); /* Roman numeral one */
    ck_assert_uint_eq(low[0], 0x2170);
    ck_assert_uint_eq(mmi_unicode_lower(0x13A0, low), 1); /* Cherokee */
    ck_assert_uint_eq(low[0], 0xAB70);
    ck_assert_uint_eq(mmi_unicode_lower(0x0130, low), 2);
    ck_assert_uint_eq(low[0], 'i');
    ck_assert_uint_eq(low[1], 0x0307);
    ck_assert_uint_eq(mmi_unicode_lower('1', low), 1);
    ck_assert_uint_eq(low[0], '1');
}
END_TEST

/* ---- size, time, faults ---- */

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

START_TEST(long_input_is_not_quadratic)
{
    /* A million a's: "aa" pairs merge left to right and each two "aa" become "aaaa" (a higher
     * score for SPM, the next rank for BPE), so 4k+2 a's are k "aaaa" and one "aa". */
    enum { K = 250000, N = 4 * K + 2 };
    char *text = malloc(N + 1);
    memset(text, 'a', N);
    text[N] = '\0';
    mmi_tokenizer *spm = spm_tokenizer(-1.0f, -3.0f);
    bpe_vocab v;
    make_bpe(&v, "gpt-2");
    mmi_tokenizer *bpe = load_vocab(&v.spec);
    for (int kind = 0; kind < 2; kind++) {
        mmi_tokens t = {0};
        double t0 = seconds();
        ck_assert_ok(mmi_tokenize(kind ? bpe : spm, text, N, 0, &t));
        double dt = seconds() - t0;
        size_t first = kind ? 0 : 1; /* SPM starts with the ▁ prefix */
        ck_assert_uint_eq(t.n, first + K + 1);
        if (!kind)
            ck_assert_int_eq(t.ids[0], ID(P_SPACE));
        for (size_t i = first; i < first + K; i++)
            ck_assert_int_eq(t.ids[i], kind ? B_AAAA : ID(P_AAAA));
        ck_assert_int_eq(t.ids[first + K], kind ? B_AA : ID(P_AA));
        ck_assert_msg(dt < 5.0 * test_time_scale(), "%s took %.2f s for %d bytes",
                      kind ? "bpe" : "spm", dt, N);
        mmi_tokens_free(&t);
    }
    free(text);
    mmi_tokenizer_free(spm);
    mmi_tokenizer_free(bpe);
}
END_TEST

START_TEST(allocation_failures_are_reported)
{
    spm_vocab s;
    bpe_vocab b;
    make_spm(&s, -1.0f, -3.0f);
    make_bpe(&b, "gpt-2");
    const vocab_spec *specs[2] = {&s.spec, &b.spec};
    for (int k = 0; k < 2; k++) {
        mmi_gguf *g = write_vocab(specs[k]);
        int loaded = 0;
        for (long n = 1; !loaded; n++) {
            mmi_tokenizer *tok = NULL;
            mmi_alloc_fail_at(n);
            mm_status st = mmi_tokenizer_load(g, &tok);
            mmi_alloc_fail_at(0);
            if (st == MM_OK) {
                loaded = 1;
            } else {
                ck_assert_int_eq(st, MM_ERR_NOMEM);
                ck_assert_ptr_null(tok);
            }
            mmi_tokenizer_free(tok);
            ck_assert_int_lt(n, 1000);
        }
        mmi_tokenizer *tok;
        ck_assert_ok(mmi_tokenizer_load(g, &tok));
        const char *text = "<s>abc the there \xC3\xA9 <|im_end|> aaaa";
        mmi_tokens ref = {0};
        ck_assert_ok(mmi_tokenize(tok, text, strlen(text), 3, &ref));
        int done = 0;
        for (long n = 1; !done; n++) {
            mmi_tokens t = {0};
            mmi_alloc_fail_at(n);
            mm_status st = mmi_tokenize(tok, text, strlen(text), 3, &t);
            mmi_alloc_fail_at(0);
            if (st == MM_OK) {
                done = 1;
                ck_assert_uint_eq(t.n, ref.n);
                ck_assert(memcmp(t.ids, ref.ids, t.n * sizeof *t.ids) == 0);
            } else {
                ck_assert_int_eq(st, MM_ERR_NOMEM);
                ck_assert_uint_eq(t.n, 0);
            }
            mmi_tokens_free(&t);
            ck_assert_int_lt(n, 1000);
        }
        mmi_detok_stream stream;
        mmi_alloc_fail_at(1);
        ck_assert_status(mmi_detok_stream_init(&stream, tok, 0), MM_ERR_NOMEM);
        mmi_alloc_fail_at(0);
        mmi_tokens_free(&ref);
        mmi_tokenizer_free(tok);
        mmi_gguf_close(g);
    }
}
END_TEST

/* ---- public wrappers ---- */

START_TEST(public_api_conventions)
{
    mm_model model;
    memset(&model, 0, sizeof model);
    int32_t ids[8];
    size_t n = 99;
    char text[64];
    ck_assert_status(mm_tokenize(&model, "a", 1, 0, ids, 8, &n), MM_ERR_STATE);
    ck_assert_int_eq(mm_n_vocab(&model), 0);
    ck_assert_int_eq(mm_token_bos(&model), -1);
    ck_assert_int_eq(mm_token_bos(NULL), -1);
    ck_assert_status(mm_tokenize(NULL, "a", 1, 0, ids, 8, &n), MM_ERR_ARG);

    model.tokenizer = spm_tokenizer(-1.0f, -3.0f);
    ck_assert_int_eq(mm_n_vocab(&model), SPM_N);
    ck_assert_int_eq(mm_token_bos(&model), 1);
    ck_assert_int_eq(mm_token_eos(&model), 2);
    ck_assert(mm_token_is_eog(&model, 2));
    ck_assert_status(mm_tokenize(&model, "abc", 3, 0, ids, 8, NULL), MM_ERR_ARG);
    ck_assert_status(mm_tokenize(&model, NULL, 3, 0, ids, 8, &n), MM_ERR_ARG);
    ck_assert_status(mm_tokenize(&model, "abc", 3, 4, ids, 8, &n), MM_ERR_ARG);
    /* Size query: capacity 0 returns MM_ERR_ARG with the count needed. */
    ck_assert_status(mm_tokenize(&model, "abc", 3, MM_TOKENIZE_ADD_SPECIAL, NULL, 0, &n),
                     MM_ERR_ARG);
    ck_assert_uint_eq(n, 3);
    ck_assert_status(mm_tokenize(&model, "abc", 3, MM_TOKENIZE_ADD_SPECIAL, ids, 2, &n),
                     MM_ERR_ARG);
    ck_assert_uint_eq(n, 3);
    ck_assert_ok(mm_tokenize(&model, "abc", 3, MM_TOKENIZE_ADD_SPECIAL, ids, 3, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(ids[1], ID(P_SAB));
    ck_assert_int_eq(ids[2], ID(P_C));
    ck_assert_ok(mm_tokenize(&model, NULL, 0, 0, NULL, 0, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert_status(mm_tokenize(&model, "\xFF", 1, 0, ids, 8, &n), MM_ERR_FORMAT);

    size_t len;
    ck_assert_status(mm_detokenize(&model, ids, 3, 0, NULL, 0, &len), MM_ERR_ARG);
    ck_assert_uint_eq(len, 3);
    ck_assert_status(mm_detokenize(&model, ids, 3, 0, text, 3, &len), MM_ERR_ARG); /* no NUL room */
    ck_assert_ok(mm_detokenize(&model, ids, 3, 0, text, 4, &len));
    ck_assert_str_eq(text, "abc");
    ck_assert_ok(mm_detokenize(&model, ids, 3, MM_DETOKENIZE_RENDER_SPECIAL, text, 64, &len));
    ck_assert_str_eq(text, "<s>abc");
    const int32_t bad[] = {1, SPM_N};
    ck_assert_status(mm_detokenize(&model, bad, 2, 0, text, 64, &len), MM_ERR_ARG);
    ck_assert_status(mm_detokenize(&model, ids, 3, 8, text, 64, &len), MM_ERR_ARG);

    ck_assert_ok(mm_token_to_piece(&model, ID(P_SAB), text, 3, &len));
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(text, " ab", 3) == 0);
    ck_assert_status(mm_token_to_piece(&model, ID(P_SAB), text, 2, &len), MM_ERR_ARG);
    ck_assert_uint_eq(len, 3);
    ck_assert_ok(mm_token_to_piece(&model, 3 + 0xE2, text, 1, &len));
    ck_assert_uint_eq(len, 1);
    ck_assert_uint_eq((unsigned char)text[0], 0xE2);
    ck_assert_status(mm_token_to_piece(&model, -1, text, 8, &len), MM_ERR_ARG);
    mmi_tokenizer_free(model.tokenizer);
}
END_TEST

/* ---- llama.cpp's vocabularies: round trips and threads ---- */

/* The .inp test strings of a shared vocabulary (see tests/tokenizer_vectors.c for the format). */
typedef struct {
    char *data;
    const char *s[128];
    size_t len[128];
    size_t n;
} test_strings;

static void read_strings(const char *path, test_strings *t)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    t->data = calloc(1, 1 << 16);
    size_t size = fread(t->data, 1, (1 << 16) - 2, f);
    fclose(f);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t start = 0;
    t->n = 0;
    for (size_t i = 0; i + strlen(sep) <= size && t->n < 128; i++) {
        if (memcmp(t->data + i, sep, strlen(sep)) == 0) {
            t->s[t->n] = t->data + start;
            t->len[t->n++] = i - start;
            i += strlen(sep) - 1;
            start = i + 1;
        }
    }
    ck_assert_uint_gt(t->n, 10);
}

static mmi_tokenizer *shared_vocab(const char *name, mmi_gguf **g)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizer/%s", name);
    ck_assert_ok(mmi_gguf_open(test_vectors_path(rel), 1, g));
    mmi_tokenizer *tok;
    ck_assert_ok(mmi_tokenizer_load(*g, &tok));
    return tok;
}

START_TEST(shared_vocabs_round_trip)
{
    static const char *const names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"};
    for (int v = 0; v < 2; v++) {
        mmi_gguf *g;
        mmi_tokenizer *tok = shared_vocab(names[v], &g);
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizer/%s.inp", names[v]);
        test_strings t;
        read_strings(test_vectors_path(rel), &t);
        mmi_detok_stream s;
        ck_assert_ok(mmi_detok_stream_init(&s, tok, 0));
        for (size_t i = 0; i < t.n; i++) {
            mmi_tokens ids = {0};
            ck_assert_ok(mmi_tokenize(tok, t.s[i], t.len[i], MM_TOKENIZE_ADD_SPECIAL, &ids));
            /* Streaming one id at a time gives back exactly the string. */
            char out[4096];
            size_t n = 0;
            for (size_t k = 0; k <= ids.n; k++) {
                const char *piece;
                size_t len;
                if (k < ids.n)
                    ck_assert_ok(mmi_detok_stream_push(&s, ids.ids[k], &piece, &len));
                else
                    mmi_detok_stream_finish(&s, &piece, &len);
                ck_assert_uint_lt(n + len, sizeof out);
                memcpy(out + n, piece, len);
                n += len;
            }
            ck_assert_msg(n == t.len[i] && memcmp(out, t.s[i], n) == 0,
                          "%s: string %zu \"%.*s\" came back as \"%.*s\"", names[v], i + 1,
                          (int)t.len[i], t.s[i], (int)n, out);
            mmi_tokens_free(&ids);
        }
        mmi_detok_stream_free(&s);
        free(t.data);
        mmi_tokenizer_free(tok);
        mmi_gguf_close(g);
    }
}
END_TEST

START_TEST(shared_vocab_specials)
{
    mmi_gguf *g;
    mmi_tokenizer *tok = shared_vocab("ggml-vocab-llama-spm.gguf", &g);
    /* Ids from llama.cpp's test vectors for "Hello world" (15043 3186), BOS 1 in front. */
    EXPECT(tok, "Hello world", MM_TOKENIZE_ADD_SPECIAL, 1, 15043, 3186);
    EXPECT(tok, "<s>Hello world</s>", MM_TOKENIZE_PARSE_SPECIAL, 1, 15043, 3186, 2);
    ck_assert(mmi_token_is_eog(tok, 2));
    ck_assert_int_eq(mmi_tokenizer_adds_bos(tok), 1);
    ck_assert_int_eq(mmi_tokenizer_adds_eos(tok), 0);
    mmi_tokenizer_free(tok);
    mmi_gguf_close(g);
    tok = shared_vocab("ggml-vocab-gpt-2.gguf", &g);
    /* "Hello world" is 15496 995 in GPT-2; <|endoftext|> is 50256. */
    EXPECT(tok, "Hello world<|endoftext|>", MM_TOKENIZE_PARSE_SPECIAL, 15496, 995, 50256);
    ck_assert_int_eq(mmi_token_eos(tok), 50256);
    ck_assert(mmi_token_is_eog(tok, 50256));
    mmi_tokenizer_free(tok);
    mmi_gguf_close(g);
}
END_TEST

/* Random text (ASCII, Latin, CJK, emoji, whitespace) round-trips through encode and a
 * streaming decode; random id sequences always decode to valid UTF-8. */
static uint32_t next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*state >> 33);
}

START_TEST(random_round_trips)
{
    static const char *const names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"};
    static const uint32_t ranges[][2] = {{0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0x17F},
                                         {0x400, 0x4FF}, {0x4E00, 0x4FFF}, {0x1F600, 0x1F64F},
                                         {0x2000, 0x206F}};
    uint64_t rng = 12345;
    for (int v = 0; v < 2; v++) {
        mmi_gguf *g;
        mmi_tokenizer *tok = shared_vocab(names[v], &g);
        mmi_detok_stream s;
        ck_assert_ok(mmi_detok_stream_init(&s, tok, 0));
        for (int round = 0; round < 300; round++) {
            char text[400], out[2048];
            size_t len = 0, n = 0;
            for (int c = (int)(next_random(&rng) % 60); c > 0; c--) {
                const uint32_t *r = ranges[next_random(&rng) % 7];
                uint32_t cp = r[0] + next_random(&rng) % (r[1] - r[0] + 1);
                len += mmi_utf8_encode(cp, text + len);
            }
            mmi_tokens ids = {0};
            ck_assert_ok(mmi_tokenize(tok, text, len, 0, &ids));
            for (size_t k = 0; k <= ids.n; k++) {
                const char *piece;
                size_t plen;
                if (k < ids.n)
                    ck_assert_ok(mmi_detok_stream_push(&s, ids.ids[k], &piece, &plen));
                else
                    mmi_detok_stream_finish(&s, &piece, &plen);
                ck_assert_uint_lt(n + plen, sizeof out);
                memcpy(out + n, piece, plen);
                n += plen;
            }
            ck_assert_msg(n == len && memcmp(out, text, n) == 0, "%s: \"%.*s\" came back as "
                          "\"%.*s\"", names[v], (int)len, text, (int)n, out);
            mmi_tokens_free(&ids);
            /* Any ids at all: the output is valid UTF-8. */
            n = 0;
            for (int k = 0; k <= 40; k++) {
                const char *piece;
                size_t plen;
                if (k < 40)
                    ck_assert_ok(mmi_detok_stream_push(
                        &s, (int32_t)(next_random(&rng) % (uint32_t)mmi_tokenizer_n_vocab(tok)),
                        &piece, &plen));
                else
                    mmi_detok_stream_finish(&s, &piece, &plen);
                if (n + plen < sizeof out) {
                    memcpy(out + n, piece, plen);
                    n += plen;
                }
            }
            ck_assert_uint_eq(mmi_utf8_check(out, n), n);
        }
        mmi_detok_stream_free(&s);
        mmi_tokenizer_free(tok);
        mmi_gguf_close(g);
    }
}
END_TEST

/* Damaged vocabulary files: random bytes changed in a serialized vocabulary must give an
 * error or a working tokenizer, never a crash or an out-of-bounds access (run under ASan). */
static void fuzz_vocab(const vocab_spec *v, uint64_t seed, int rounds)
{
    mmi_gguf_writer *w;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    ck_assert_ok(mmi_gguf_writer_add_string(w, "tokenizer.ggml.model", v->model));
    if (v->pre)
        ck_assert_ok(mmi_gguf_writer_add_string(w, "tokenizer.ggml.pre", v->pre));
    ck_assert_ok(mmi_gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", v->tokens, v->n));
    if (v->scores)
        ck_assert_ok(mmi_gguf_writer_add_array(w, "tokenizer.ggml.scores", MMI_GGUF_FLOAT32,
                                               v->scores, v->n));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "tokenizer.ggml.token_type", MMI_GGUF_INT32,
                                           v->types, v->n));
    if (v->merges)
        ck_assert_ok(mmi_gguf_writer_add_string_array(w, "tokenizer.ggml.merges", v->merges,
                                                      v->n_merges));
    ck_assert_ok(mmi_gguf_writer_add_int(w, "tokenizer.ggml.bos_token_id", MMI_GGUF_UINT32, 1));
    void *data;
    size_t size;
    ck_assert_ok(mmi_gguf_writer_write_memory(w, &data, &size));
    mmi_gguf_writer_free(w);
    unsigned char *copy = malloc(size);
    int loaded = 0;
    for (int r = 0; r < rounds; r++) {
        memcpy(copy, data, size);
        for (int k = 1 + (int)(next_random(&seed) % 4); k > 0; k--)
            copy[24 + next_random(&seed) % (uint32_t)(size - 24)] = (unsigned char)next_random(&seed);
        mmi_gguf *g;
        if (mmi_gguf_open_memory(copy, size, &g) != MM_OK)
            continue;
        mmi_tokenizer *tok;
        if (mmi_tokenizer_load(g, &tok) == MM_OK) {
            loaded++;
            const char *text = "<s>Hello the cat \xC3\xA9 aaaa <|im_end|>";
            mmi_tokens t = {0};
            ck_assert_ok(mmi_tokenize(tok, text, strlen(text), 3, &t));
            mmi_detok_stream s;
            ck_assert_ok(mmi_detok_stream_init(&s, tok, MM_DETOKENIZE_RENDER_SPECIAL));
            for (int32_t id = 0; id < mmi_tokenizer_n_vocab(tok); id++) {
                const char *piece;
                size_t len;
                ck_assert_ok(mmi_detok_stream_push(&s, id, &piece, &len));
                ck_assert_uint_eq(mmi_utf8_check(piece, len), len);
            }
            mmi_detok_stream_free(&s);
            mmi_tokens_free(&t);
            mmi_tokenizer_free(tok);
        }
        mmi_gguf_close(g);
    }
    ck_assert_int_gt(loaded, 0); /* some damage (in texts, scores) still loads */
    free(copy);
    mmi_free(data);
}

START_TEST(damaged_vocab_files_are_safe)
{
    spm_vocab s;
    make_spm(&s, -1.0f, -3.0f);
    fuzz_vocab(&s.spec, 1, 400);
    bpe_vocab b;
    make_bpe(&b, "gpt-2");
    fuzz_vocab(&b.spec, 2, 400);
}
END_TEST

typedef struct {
    const mmi_tokenizer *tok;
    const char *text;
    mmi_tokens out;
} thread_job;

static void *tokenize_in_thread(void *arg)
{
    thread_job *job = arg;
    for (int i = 0; i < 20; i++) {
        job->out.n = 0;
        if (mmi_tokenize(job->tok, job->text, strlen(job->text), 3, &job->out) != MM_OK)
            return arg;
    }
    return NULL;
}

START_TEST(concurrent_use_of_one_tokenizer)
{
    mmi_gguf *g;
    mmi_tokenizer *tok = shared_vocab("ggml-vocab-gpt-2.gguf", &g);
    const char *text = "The quick brown fox <|endoftext|> jumps over 123 lazy dogs. \xC3\xA9\xE6\x97\xA5";
    mmi_tokens ref = {0};
    ck_assert_ok(mmi_tokenize(tok, text, strlen(text), 3, &ref));
    thread_job jobs[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){tok, text, {0}};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, tokenize_in_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(threads[i], &ret);
        ck_assert_ptr_null(ret);
        ck_assert_uint_eq(jobs[i].out.n, ref.n);
        ck_assert(memcmp(jobs[i].out.ids, ref.ids, ref.n * sizeof *ref.ids) == 0);
        mmi_tokens_free(&jobs[i].out);
    }
    mmi_tokens_free(&ref);
    mmi_tokenizer_free(tok);
    mmi_gguf_close(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, spm_merges_by_score_then_leftmost);
    tcase_add_test(tc, spm_byte_fallback_and_specials);
    tcase_add_test(tc, spm_decode);
    tcase_add_test(tc, stream_holds_split_characters);
    tcase_add_test(tc, invalid_utf8_is_refused);
    tcase_add_test(tc, bpe_merges_by_rank);
    tcase_add_test(tc, bpe_loader_refuses_what_it_cannot_do);
    tcase_add_test(tc, clip_normalizes_splits_and_marks_word_ends);
    tcase_add_test(tc, pretokenizers_split_as_their_regex);
    tcase_add_test(tc, unicode_classes_nfc_and_lowercase);
    tcase_add_test(tc, long_input_is_not_quadratic);
    tcase_add_test(tc, allocation_failures_are_reported);
    tcase_add_test(tc, public_api_conventions);
    tcase_add_test(tc, shared_vocabs_round_trip);
    tcase_add_test(tc, shared_vocab_specials);
    tcase_add_test(tc, random_round_trips);
    tcase_add_test(tc, damaged_vocab_files_are_safe);
    tcase_add_test(tc, concurrent_use_of_one_tokenizer);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
