/* Tokenizers as llama.cpp runs them: loading the vocabulary, splitting out special tokens,
 * SentencePiece-style BPE ("llama") and byte-level BPE ("gpt2"), and detokenizing; and HF's
 * CLIPTokenizer ("clip": byte-level BPE on lowercased NFC text, words ending in "</w>").
 *
 * Both BPE variants merge adjacent symbols through a priority queue of candidate pairs (best
 * score / lowest merge rank first, leftmost on ties), so encoding is O(n log n) in the input. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pretokenize.h"
#include "status.h"
#include "unicode.h"

/* Longest text one call encodes; keeps every index in 32 bits. */
#define MAX_TEXT_BYTES ((size_t)1 << 28)
#define MAX_VOCAB ((uint64_t)1 << 24)
#define MAX_EOG 16

typedef enum { VOCAB_SPM = 1, VOCAB_BPE = 2 } vocab_kind;

/* Open-addressing hash of BPE merges: the pair of token ids -> merge rank and result id. */
typedef struct {
    uint64_t pair; /* (left << 32 | right) + 1; 0 marks an empty slot */
    int32_t rank;
    int32_t result;
} merge_slot;

struct mmi_tokenizer {
    vocab_kind kind;
    mmi_pre_kind pre;          /* BPE only */
    int32_t n_vocab;
    char *text;                /* every entry, NUL-terminated, entry i at text + text_off[i] */
    uint32_t *text_off;        /* n_vocab + 1 offsets */
    uint8_t *type;             /* mmi_token_type of each entry */
    float *score;              /* SPM merge priority of each entry */
    char *piece;               /* output bytes of each entry (see mmi_token_piece) */
    uint32_t *piece_off;       /* n_vocab + 1 offsets */
    size_t max_piece;
    size_t max_text;           /* longest entry */
    uint32_t *map;             /* text -> id + 1 (0: empty slot) */
    size_t map_mask;
    merge_slot *merges;        /* BPE only */
    size_t merge_mask;
    int32_t byte_token[256];   /* SPM: <0xNN>; BPE: the byte's stand-in character; -1 if none */
    int32_t *specials;         /* control/unknown/user-defined ids, longest text first */
    size_t n_specials;
    int has_user_defined;
    int32_t bos, eos, eot, eom, unk;
    int32_t eog[MAX_EOG];
    int n_eog;
    int add_bos, add_eos, add_space_prefix, ignore_merges;
    int clip;                  /* normalize to lowercase NFC; last symbol of a word ends "</w>" */
    int32_t byte_token_eow[256]; /* clip: the byte's character + "</w>"; -1 if none */
};

#define END_OF_WORD "</w>"

/* ---- vocabulary lookup ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static size_t entry_len(const mmi_tokenizer *tok, int32_t id)
{
    return tok->text_off[id + 1] - tok->text_off[id] - 1;
}

int32_t mmi_token_lookup(const mmi_tokenizer *tok, const char *text, size_t len)
{
    for (size_t i = hash_bytes(text, len) & tok->map_mask;; i = (i + 1) & tok->map_mask) {
        uint32_t slot = tok->map[i];
        if (!slot)
            return -1;
        int32_t id = (int32_t)slot - 1;
        if (entry_len(tok, id) == len && memcmp(tok->text + tok->text_off[id], text, len) == 0)
            return id;
    }
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static const merge_slot *find_merge(const mmi_tokenizer *tok, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
    for (size_t i = mix64(key) & tok->merge_mask;; i = (i + 1) & tok->merge_mask) {
        if (tok->merges[i].pair == key)
            return &tok->merges[i];
        if (!tok->merges[i].pair)
            return NULL;
    }
}

/* Table size: a power of two at least twice n. */
static size_t table_size(size_t n)
{
    size_t size = 16;
    while (size < 2 * n)
        size *= 2;
    return size;
}

/* ---- loading ---- */

/* GPT-2's byte-level stand-ins: printable bytes stand for themselves, the other 68 bytes for
 * U+0100 onwards in byte order, so every byte has a visible character. */
static uint32_t byte_to_unicode(unsigned b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    unsigned rank = b <= 0x20 ? b : b <= 0xA0 ? b - 0x7F + 0x21 : 0x21 + 0x22;
    return 0x100 + rank;
}

/* Inverse of byte_to_unicode; -1 for a code point that stands for no byte. */
static int unicode_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return byte_to_unicode(cp) == cp ? (int)cp : -1;
    if (cp < 0x100 + 0x21)
        return (int)(cp - 0x100);
    if (cp < 0x100 + 0x21 + 0x22)
        return (int)(cp - 0x100 - 0x21 + 0x7F);
    return cp == 0x100 + 0x43 ? 0xAD : -1;
}

static mm_status load_texts(mmi_tokenizer *tok, const mmi_gguf *g)
{
    const char *key = "tokenizer.ggml.tokens";
    mmi_gguf_type elem;
    uint64_t n;
    MMI_TRY(mmi_gguf_get_array_info(g, key, &elem, &n));
    if (elem != MMI_GGUF_STRING || n == 0 || n > MAX_VOCAB)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s must be a non-empty string array of at most %llu "
                        "entries (type %d, %llu entries)", mmi_gguf_path(g), key,
                        (unsigned long long)MAX_VOCAB, (int)elem, (unsigned long long)n);
    tok->n_vocab = (int32_t)n;
    tok->text_off = mmi_array(n + 1, sizeof *tok->text_off);
    if (!tok->text_off)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the vocabulary", mmi_gguf_path(g));
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        MMI_TRY(mmi_gguf_get_array_string(g, key, i, &s, &len));
        tok->text_off[i] = (uint32_t)total;
        total += len + 1;
        if (len > tok->max_text)
            tok->max_text = len;
        if (total > UINT32_MAX)
            return mmi_fail(MM_ERR_FORMAT, "%s: %s holds more than 4 GiB of text",
                            mmi_gguf_path(g), key);
    }
    tok->text_off[n] = (uint32_t)total;
    tok->text = mmi_malloc(total);
    if (!tok->text)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the vocabulary", mmi_gguf_path(g));
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        MMI_TRY(mmi_gguf_get_array_string(g, key, i, &s, &len));
        memcpy(tok->text + tok->text_off[i], s, len + 1);
    }
    return MM_OK;
}

/* Read an optional per-token numeric array into the int64 or float destination. */
static mm_status load_token_array(const mmi_gguf *g, const char *key, int32_t n_vocab,
                                  int64_t *ints, float *floats, int *present)
{
    *present = mmi_gguf_has(g, key);
    if (!*present)
        return MM_OK;
    mmi_gguf_type elem;
    uint64_t n;
    MMI_TRY(mmi_gguf_get_array_info(g, key, &elem, &n));
    if (n != (uint64_t)n_vocab)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s has %llu entries, the vocabulary %d",
                        mmi_gguf_path(g), key, (unsigned long long)n, (int)n_vocab);
    return ints ? mmi_gguf_get_int_array(g, key, ints, n)
                : mmi_gguf_get_float_array(g, key, floats, n);
}

static mm_status load_types_and_scores(mmi_tokenizer *tok, const mmi_gguf *g)
{
    int32_t n = tok->n_vocab;
    int present;
    tok->type = mmi_array((size_t)n, 1);
    tok->score = mmi_calloc((size_t)n, sizeof *tok->score);
    int64_t *types = mmi_array((size_t)n, sizeof *types);
    mm_status st = MM_OK;
    if (!tok->type || !tok->score || !types)
        st = mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the vocabulary", mmi_gguf_path(g));
    if (st == MM_OK)
        st = load_token_array(g, "tokenizer.ggml.token_type", n, types, NULL, &present);
    for (int32_t i = 0; st == MM_OK && i < n; i++) {
        int64_t t = present ? types[i] : MMI_TOKEN_NORMAL;
        if (t < 0 || t > MMI_TOKEN_BYTE)
            st = mmi_fail(MM_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%d] = %lld is not a "
                          "token type (0-6)", mmi_gguf_path(g), (int)i, (long long)t);
        else
            tok->type[i] = (uint8_t)t;
    }
    mmi_free(types);
    if (st == MM_OK && tok->kind == VOCAB_SPM)
        st = load_token_array(g, "tokenizer.ggml.scores", n, NULL, tok->score, &present);
    return st;
}

static mm_status build_map(mmi_tokenizer *tok, const mmi_gguf *g)
{
    size_t size = table_size((size_t)tok->n_vocab);
    tok->map = mmi_calloc(size, sizeof *tok->map);
    if (!tok->map)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the vocabulary", mmi_gguf_path(g));
    tok->map_mask = size - 1;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        const char *s = tok->text + tok->text_off[id];
        size_t len = entry_len(tok, id);
        if (len == 0) /* empty entries can never match text */
            continue;
        if (mmi_token_lookup(tok, s, len) >= 0)
            return mmi_fail(MM_ERR_FORMAT, "%s: duplicate token \"%s\" (ids %d and %d)",
                            mmi_gguf_path(g), s, (int)mmi_token_lookup(tok, s, len), (int)id);
        size_t i = hash_bytes(s, len) & tok->map_mask;
        while (tok->map[i])
            i = (i + 1) & tok->map_mask;
        tok->map[i] = (uint32_t)id + 1;
    }
    return MM_OK;
}

static mm_status load_merges(mmi_tokenizer *tok, const mmi_gguf *g)
{
    const char *key = "tokenizer.ggml.merges";
    mmi_gguf_type elem;
    uint64_t n;
    MMI_TRY(mmi_gguf_get_array_info(g, key, &elem, &n));
    if (elem != MMI_GGUF_STRING || n > MAX_VOCAB)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s must be a string array of at most %llu entries",
                        mmi_gguf_path(g), key, (unsigned long long)MAX_VOCAB);
    size_t size = table_size((size_t)n);
    tok->merges = mmi_calloc(size, sizeof *tok->merges);
    if (!tok->merges)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the merges", mmi_gguf_path(g));
    tok->merge_mask = size - 1;
    /* Room for the two sides of a merge written together, to find the entry it produces. */
    char *both = mmi_malloc(2 * tok->max_text + 1);
    if (!both)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the merges", mmi_gguf_path(g));
    mm_status st = MM_OK;
    uint64_t n_unusable = 0;
    for (uint64_t rank = 0; rank < n && st == MM_OK; rank++) {
        const char *s;
        size_t len;
        st = mmi_gguf_get_array_string(g, key, rank, &s, &len);
        if (st != MM_OK)
            break;
        /* "left right", split at the first space after the first byte (as llama.cpp does) */
        const char *space = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!space) {
            st = mmi_fail(MM_ERR_FORMAT, "%s: %s[%llu] = \"%s\" is not two tokens and a space",
                          mmi_gguf_path(g), key, (unsigned long long)rank, s);
            break;
        }
        size_t left_len = (size_t)(space - s), right_len = len - left_len - 1;
        int32_t left = mmi_token_lookup(tok, s, left_len);
        int32_t right = mmi_token_lookup(tok, space + 1, right_len);
        int32_t result = -1;
        if (left >= 0 && right >= 0) {
            memcpy(both, s, left_len);
            memcpy(both + left_len, space + 1, right_len);
            result = mmi_token_lookup(tok, both, left_len + right_len);
        }
        if (result < 0) { /* a merge into no token can never be part of the output */
            n_unusable++;
            continue;
        }
        uint64_t pair = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
        size_t i = mix64(pair) & tok->merge_mask;
        while (tok->merges[i].pair && tok->merges[i].pair != pair)
            i = (i + 1) & tok->merge_mask;
        if (tok->merges[i].pair) /* a repeated pair keeps its first (best) rank */
            continue;
        tok->merges[i] = (merge_slot){pair, (int32_t)rank, result};
    }
    mmi_free(both);
    if (st != MM_OK)
        return st;
    if (n_unusable)
        mmi_log(MM_LOG_WARN, "%s: %llu of %llu merges name or produce no token; ignored",
                mmi_gguf_path(g), (unsigned long long)n_unusable, (unsigned long long)n);
    return MM_OK;
}

/* Output bytes of a normal entry's text s[0..len) into dst (NULL: only measured). */
static size_t normal_piece(const mmi_tokenizer *tok, const char *s, size_t len, char *dst)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (tok->kind == VOCAB_SPM) {
            int space = i + 3 <= len && memcmp(s + i, "\xE2\x96\x81", 3) == 0; /* ▁ */
            if (dst)
                dst[n] = space ? ' ' : s[i];
            n++;
            i += space ? 3 : 1;
            continue;
        }
        /* Byte-level: each character stands for one byte; keep any other as it is. */
        uint32_t cp;
        int clen = mmi_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        int byte = clen > 0 ? unicode_to_byte(cp) : -1;
        size_t take = clen > 0 ? (size_t)clen : 1;
        if (byte >= 0) {
            if (dst)
                dst[n] = (char)byte;
            n++;
        } else {
            if (dst)
                memcpy(dst + n, s + i, take);
            n += take;
        }
        i += take;
    }
    return n;
}

/* Output bytes of one entry, written to dst (NULL: only measured); returns the length. */
static size_t entry_piece(const mmi_tokenizer *tok, int32_t id, char *dst)
{
    const char *s = tok->text + tok->text_off[id];
    size_t len = entry_len(tok, id), eow = strlen(END_OF_WORD);
    switch (tok->type[id]) {
    case MMI_TOKEN_NORMAL:
        /* CLIP: a word's last token ends in "</w>", which stands for the space after it. */
        if (tok->clip && len >= eow && memcmp(s + len - eow, END_OF_WORD, eow) == 0) {
            size_t n = normal_piece(tok, s, len - eow, dst);
            if (dst)
                dst[n] = ' ';
            return n + 1;
        }
        return normal_piece(tok, s, len, dst);
    case MMI_TOKEN_BYTE:
        if (dst)
            dst[0] = (char)strtol(s + 3, NULL, 16); /* "<0xNN>", checked at load */
        return 1;
    case MMI_TOKEN_UNKNOWN:
        if (dst)
            memcpy(dst, "\xE2\x96\x85", 3); /* ▅, as llama.cpp writes it */
        return 3;
    case MMI_TOKEN_CONTROL:
    case MMI_TOKEN_USER_DEFINED:
        if (dst)
            memcpy(dst, s, len);
        return len;
    default: /* unused and undefined entries stand for nothing */
        return 0;
    }
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

static mm_status build_pieces(mmi_tokenizer *tok, const mmi_gguf *g)
{
    int32_t n = tok->n_vocab;
    tok->piece_off = mmi_array((size_t)n + 1, sizeof *tok->piece_off);
    if (!tok->piece_off)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the vocabulary", mmi_gguf_path(g));
    size_t total = 0;
    for (int32_t id = 0; id < n; id++) {
        const char *s = tok->text + tok->text_off[id];
        if (tok->type[id] == MMI_TOKEN_BYTE &&
            !(entry_len(tok, id) == 6 && memcmp(s, "<0x", 3) == 0 && is_hex(s[3]) &&
              is_hex(s[4]) && s[5] == '>'))
            return mmi_fail(MM_ERR_FORMAT, "%s: byte token %d is \"%s\", not <0xNN>",
                            mmi_gguf_path(g), (int)id, s);
        size_t len = entry_piece(tok, id, NULL);
        tok->piece_off[id] = (uint32_t)total;
        total += len;
        if (total > UINT32_MAX)
            return mmi_fail(MM_ERR_FORMAT, "%s: the vocabulary's pieces exceed 4 GiB",
                            mmi_gguf_path(g));
        if (len > tok->max_piece)
            tok->max_piece = len;
    }
    tok->piece_off[n] = (uint32_t)total;
    tok->piece = mmi_malloc(total ? total : 1);
    if (!tok->piece)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the vocabulary", mmi_gguf_path(g));
    for (int32_t id = 0; id < n; id++)
        entry_piece(tok, id, tok->piece + tok->piece_off[id]);
    return MM_OK;
}

static void find_byte_tokens(mmi_tokenizer *tok)
{
    for (unsigned b = 0; b < 256; b++) {
        char text[16];
        size_t len;
        if (tok->kind == VOCAB_SPM) {
            static const char hex[] = "0123456789ABCDEF";
            memcpy(text, "<0x", 3);
            text[3] = hex[b >> 4];
            text[4] = hex[b & 15];
            text[5] = '>';
            tok->byte_token[b] = mmi_token_lookup(tok, text, 6);
            if (tok->byte_token[b] >= 0)
                continue;
            text[0] = (char)b; /* llama.cpp falls back to the byte itself as an entry */
            len = 1;
        } else {
            len = mmi_utf8_encode(byte_to_unicode(b), text);
            memcpy(text + len, END_OF_WORD, strlen(END_OF_WORD));
            tok->byte_token_eow[b] = mmi_token_lookup(tok, text, len + strlen(END_OF_WORD));
        }
        tok->byte_token[b] = mmi_token_lookup(tok, text, len);
    }
}

typedef struct {
    size_t len;
    int32_t id;
} special_entry;

static int longest_first(const void *a, const void *b)
{
    const special_entry *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static mm_status find_specials(mmi_tokenizer *tok, const mmi_gguf *g)
{
    size_t n = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        int t = tok->type[id];
        if ((t == MMI_TOKEN_CONTROL || t == MMI_TOKEN_UNKNOWN || t == MMI_TOKEN_USER_DEFINED) &&
            entry_len(tok, id) > 0)
            n++;
    }
    special_entry *list = mmi_array(n ? n : 1, sizeof *list);
    tok->specials = mmi_array(n ? n : 1, sizeof *tok->specials);
    if (!list || !tok->specials) {
        mmi_free(list);
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the vocabulary", mmi_gguf_path(g));
    }
    n = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        int t = tok->type[id];
        if ((t == MMI_TOKEN_CONTROL || t == MMI_TOKEN_UNKNOWN || t == MMI_TOKEN_USER_DEFINED) &&
            entry_len(tok, id) > 0) {
            list[n++] = (special_entry){entry_len(tok, id), id};
            tok->has_user_defined |= t == MMI_TOKEN_USER_DEFINED;
        }
    }
    qsort(list, n, sizeof *list, longest_first);
    for (size_t i = 0; i < n; i++)
        tok->specials[i] = list[i].id;
    tok->n_specials = n;
    mmi_free(list);
    return MM_OK;
}

/* A special id from `key`, else `def`; an id outside the vocabulary is a format error. */
static mm_status load_special_id(const mmi_tokenizer *tok, const mmi_gguf *g, const char *key,
                                 int32_t def, int32_t *out)
{
    int64_t v;
    MMI_TRY(mmi_gguf_get_int_or(g, key, def, &v));
    if (v < -1 || v >= tok->n_vocab)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s = %lld is outside the vocabulary (%d tokens)",
                        mmi_gguf_path(g), key, (long long)v, (int)tok->n_vocab);
    *out = (int32_t)v;
    return MM_OK;
}

/* The first of `texts` that is in the vocabulary, or -1. */
static int32_t lookup_any(const mmi_tokenizer *tok, const char *const *texts)
{
    for (; *texts; texts++) {
        int32_t id = mmi_token_lookup(tok, *texts, strlen(*texts));
        if (id >= 0)
            return id;
    }
    return -1;
}

static void add_eog(mmi_tokenizer *tok, int32_t id)
{
    if (id < 0 || tok->n_eog == MAX_EOG || mmi_token_is_eog(tok, id))
        return;
    tok->eog[tok->n_eog++] = id;
}

static mm_status load_specials(mmi_tokenizer *tok, const mmi_gguf *g)
{
    int spm = tok->kind == VOCAB_SPM;
    /* llama.cpp's defaults for SentencePiece vocabularies when the keys are absent. */
    MMI_TRY(load_special_id(tok, g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, &tok->bos));
    MMI_TRY(load_special_id(tok, g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, &tok->eos));
    MMI_TRY(load_special_id(tok, g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &tok->unk));
    MMI_TRY(load_special_id(tok, g, "tokenizer.ggml.eot_token_id", -1, &tok->eot));
    MMI_TRY(load_special_id(tok, g, "tokenizer.ggml.eom_token_id", -1, &tok->eom));
    /* Chat models whose files name no end-of-turn token: find it by its text. */
    static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>",
                                            "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                                            "<EOT>", NULL};
    static const char *const eom_texts[] = {"<|eom_id|>", NULL};
    if (tok->eot < 0)
        tok->eot = lookup_any(tok, eot_texts);
    if (tok->eom < 0)
        tok->eom = lookup_any(tok, eom_texts);
    add_eog(tok, tok->eos);
    add_eog(tok, tok->eot);
    add_eog(tok, tok->eom);
    for (const char *const *t = eot_texts; *t; t++)
        add_eog(tok, mmi_token_lookup(tok, *t, strlen(*t)));

    MMI_TRY(mmi_gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", tok->add_bos, &tok->add_bos));
    MMI_TRY(mmi_gguf_get_bool_or(g, "tokenizer.ggml.add_eos_token", tok->add_eos, &tok->add_eos));
    if (tok->add_bos && tok->bos < 0)
        return mmi_fail(MM_ERR_FORMAT, "%s: tokenizer.ggml.add_bos_token is set but there is no "
                        "tokenizer.ggml.bos_token_id", mmi_gguf_path(g));
    if (tok->add_eos && tok->eos < 0)
        return mmi_fail(MM_ERR_FORMAT, "%s: tokenizer.ggml.add_eos_token is set but there is no "
                        "tokenizer.ggml.eos_token_id", mmi_gguf_path(g));
    return MM_OK;
}

/* The pre-tokenizer names llama.cpp maps to the regexes written out in pretokenize.c. Any
 * other name is refused rather than tokenized with the wrong regex. */
static mm_status choose_pretokenizer(mmi_tokenizer *tok, const mmi_gguf *g)
{
    static const struct {
        const char *name;
        mmi_pre_kind kind;
    } known[] = {
        {"gpt-2", MMI_PRE_GPT2},      {"phi-2", MMI_PRE_GPT2},       {"mpt", MMI_PRE_GPT2},
        {"olmo", MMI_PRE_GPT2},       {"llama3", MMI_PRE_LLAMA3},    {"llama-v3", MMI_PRE_LLAMA3},
        {"llama-bpe", MMI_PRE_LLAMA3}, {"falcon3", MMI_PRE_LLAMA3},  {"pixtral", MMI_PRE_LLAMA3},
        {"qwen2", MMI_PRE_QWEN2},     {"deepseek-r1-qwen", MMI_PRE_QWEN2},
        {"megrez", MMI_PRE_QWEN2},
    };
    const char *pre = "";
    if (mmi_gguf_has(g, "tokenizer.ggml.pre"))
        MMI_TRY(mmi_gguf_get_string(g, "tokenizer.ggml.pre", &pre, NULL));
    if (tok->clip) { /* CLIP has its own pattern, whatever the key says */
        if (*pre && strcmp(pre, "clip") != 0)
            return mmi_fail(MM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre = \"%s\" is not "
                            "supported for a clip tokenizer (clip)", mmi_gguf_path(g), pre);
        tok->pre = MMI_PRE_CLIP;
        return MM_OK;
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(pre, known[i].name) == 0) {
            tok->pre = known[i].kind;
            /* LLaMA 3 style vocabularies take a whole word that is an entry as it is, and
             * start with BOS unless the file says otherwise. */
            tok->ignore_merges = tok->add_bos = known[i].kind == MMI_PRE_LLAMA3;
            return MM_OK;
        }
    }
    return mmi_fail(MM_ERR_UNSUPPORTED, "%s: pre-tokenizer tokenizer.ggml.pre = \"%s\" is not "
                    "supported (known: gpt-2 and its kin, llama3 and its kin, qwen2)",
                    mmi_gguf_path(g), pre);
}

mm_status mmi_tokenizer_load(const mmi_gguf *g, mmi_tokenizer **out)
{
    *out = NULL;
    const char *model;
    MMI_TRY(mmi_gguf_get_string(g, "tokenizer.ggml.model", &model, NULL));
    vocab_kind kind;
    int clip = strcmp(model, "clip") == 0;
    if (strcmp(model, "llama") == 0)
        kind = VOCAB_SPM;
    else if (strcmp(model, "gpt2") == 0 || clip)
        kind = VOCAB_BPE;
    else
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model = \"%s\" is not supported "
                        "(llama, gpt2, clip)", mmi_gguf_path(g), model);
    int remove_extra_ws;
    MMI_TRY(mmi_gguf_get_bool_or(g, "tokenizer.ggml.remove_extra_whitespaces", 0,
                                 &remove_extra_ws));
    if (remove_extra_ws)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.remove_extra_whitespaces is "
                        "not supported", mmi_gguf_path(g));

    mmi_tokenizer *tok = mmi_calloc(1, sizeof *tok);
    if (!tok)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the tokenizer", mmi_gguf_path(g));
    tok->kind = kind;
    tok->clip = clip;
    tok->add_bos = kind == VOCAB_SPM;
    tok->add_space_prefix = kind == VOCAB_SPM;
    mm_status st = kind == VOCAB_BPE ? choose_pretokenizer(tok, g) : MM_OK;
    if (st == MM_OK && kind == VOCAB_SPM)
        st = mmi_gguf_get_bool_or(g, "tokenizer.ggml.add_space_prefix", 1,
                                  &tok->add_space_prefix);
    if (st == MM_OK)
        st = load_texts(tok, g);
    if (st == MM_OK)
        st = load_types_and_scores(tok, g);
    if (st == MM_OK)
        st = build_map(tok, g);
    if (st == MM_OK && kind == VOCAB_BPE)
        st = load_merges(tok, g);
    if (st == MM_OK)
        st = build_pieces(tok, g);
    if (st == MM_OK)
        st = find_specials(tok, g);
    if (st == MM_OK)
        st = load_specials(tok, g);
    if (st != MM_OK) {
        mmi_tokenizer_free(tok);
        return st;
    }
    find_byte_tokens(tok);
    *out = tok;
    return MM_OK;
}

void mmi_tokenizer_free(mmi_tokenizer *tok)
{
    if (!tok)
        return;
    mmi_free(tok->text);
    mmi_free(tok->text_off);
    mmi_free(tok->type);
    mmi_free(tok->score);
    mmi_free(tok->piece);
    mmi_free(tok->piece_off);
    mmi_free(tok->map);
    mmi_free(tok->merges);
    mmi_free(tok->specials);
    mmi_free(tok);
}

/* ---- queries ---- */

size_t mmi_tokenizer_min_tokens(const mmi_tokenizer *tok, size_t len)
{
    /* Every token stands for at most max_text bytes of the text: an entry's text is at least as
     * long as the input it matches (SentencePiece writes a space as 3-byte "▁", byte-level BPE
     * a byte as 1 or 2 bytes). Not so when the normalizer folds text away (CLIP) or a byte
     * without a token and without <unk> is dropped: then no bound. */
    if (tok->clip || tok->max_text == 0)
        return 0;
    for (int b = 0; b < 256 && tok->unk < 0; b++)
        if (tok->byte_token[b] < 0)
            return 0;
    return (len + tok->max_text - 1) / tok->max_text;
}

int32_t mmi_tokenizer_n_vocab(const mmi_tokenizer *tok)
{
    return tok->n_vocab;
}

int32_t mmi_token_bos(const mmi_tokenizer *tok)
{
    return tok->bos;
}

int32_t mmi_token_eos(const mmi_tokenizer *tok)
{
    return tok->eos;
}

int32_t mmi_token_eot(const mmi_tokenizer *tok)
{
    return tok->eot;
}

int mmi_tokenizer_adds_bos(const mmi_tokenizer *tok)
{
    return tok->add_bos;
}

int mmi_tokenizer_adds_eos(const mmi_tokenizer *tok)
{
    return tok->add_eos;
}

int mmi_token_is_eog(const mmi_tokenizer *tok, int32_t id)
{
    for (int i = 0; i < tok->n_eog; i++)
        if (tok->eog[i] == id)
            return 1;
    return 0;
}

mmi_token_type mmi_token_get_type(const mmi_tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->n_vocab ? (mmi_token_type)tok->type[id] : (mmi_token_type)0;
}

const char *mmi_token_text(const mmi_tokenizer *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->n_vocab)
        return NULL;
    if (len)
        *len = entry_len(tok, id);
    return tok->text + tok->text_off[id];
}

const char *mmi_token_piece(const mmi_tokenizer *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->n_vocab) {
        *len = 0;
        return "";
    }
    *len = tok->piece_off[id + 1] - tok->piece_off[id];
    return tok->piece + tok->piece_off[id];
}

/* ---- token arrays ---- */

void mmi_tokens_free(mmi_tokens *t)
{
    mmi_free(t->ids);
    *t = (mmi_tokens){0};
}

mm_status mmi_tokens_reserve(mmi_tokens *t, size_t extra)
{
    if (extra <= t->cap - t->n)
        return MM_OK;
    if (extra > SIZE_MAX / sizeof *t->ids / 2 - t->n)
        return mmi_fail(MM_ERR_NOMEM, "token array of %zu + %zu ids is too large", t->n, extra);
    size_t cap = t->cap ? t->cap : 16;
    while (cap - t->n < extra)
        cap *= 2;
    int32_t *ids = mmi_realloc(t->ids, cap * sizeof *ids);
    if (!ids)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu token ids", cap);
    t->ids = ids;
    t->cap = cap;
    return MM_OK;
}

static mm_status push_id(mmi_tokens *t, int32_t id)
{
    if (t->n == t->cap)
        MMI_TRY(mmi_tokens_reserve(t, 1));
    t->ids[t->n++] = id;
    return MM_OK;
}

/* ---- encoding ---- */

/* A symbol of the text being merged: a byte span, the entry it is (-1: none) and its
 * neighbours in the chain that merging shortens. */
typedef struct {
    int32_t prev, next;
    uint32_t start, len;
    int32_t id;
} symbol;

/* A candidate merge of two neighbouring symbols. `len` is their combined length when it was
 * queued: if either has changed since, the candidate is stale. */
typedef struct {
    int32_t left, right;
    double priority; /* SPM: the entry's score; BPE: minus the merge rank */
    uint32_t len;
    int32_t result;
} bigram;

typedef struct {
    bigram *items;
    size_t n, cap;
} bigram_heap;

/* Does a go before b: higher priority, then the leftmost. */
static int before(const bigram *a, const bigram *b)
{
    return a->priority > b->priority || (a->priority == b->priority && a->left < b->left);
}

/* Grows on demand: the queue seldom holds more than one pair per symbol, though merges may
 * queue up to two more each. */
static mm_status heap_push(bigram_heap *h, bigram b)
{
    if (h->n == h->cap) {
        bigram *items = mmi_realloc(h->items, 2 * h->cap * sizeof *items);
        if (!items)
            return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu merge candidates", 2 * h->cap);
        h->items = items;
        h->cap *= 2;
    }
    size_t i = h->n++;
    while (i > 0 && before(&b, &h->items[(i - 1) / 2])) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = b;
    return MM_OK;
}

static bigram heap_pop(bigram_heap *h)
{
    bigram top = h->items[0], last = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(&h->items[c + 1], &h->items[c]))
            c++;
        if (!before(&h->items[c], &last))
            break;
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->n)
        h->items[i] = last;
    return top;
}

/* Scratch for one encode call, sized for the whole text up front. */
typedef struct {
    char *buf;        /* SPM: the fragment with its space prefix and ▁ for spaces */
    symbol *syms;
    bigram_heap heap;
    uint32_t *cps;    /* BPE: code points, their classes and byte offsets of a fragment */
    uint8_t *cls;
    uint32_t *offs;
} scratch;

static mm_status alloc_scratch(const mmi_tokenizer *tok, size_t len, scratch *w)
{
    *w = (scratch){0};
    /* SPM: the text grows to 3 bytes per space plus the prefix; BPE (ignore_merges): 2 bytes
     * per byte. Symbols: one per character or byte; queued pairs: n - 1 to start with. */
    size_t n = len + 1;
    w->buf = mmi_array(3, n);
    w->syms = mmi_array(n, sizeof *w->syms);
    w->heap.items = mmi_array(n, sizeof *w->heap.items);
    w->heap.cap = n;
    if (tok->kind == VOCAB_BPE) {
        w->cps = mmi_array(n, sizeof *w->cps);
        w->cls = mmi_array(n, sizeof *w->cls);
        w->offs = mmi_array(n, sizeof *w->offs);
    }
    if (!w->buf || !w->syms || !w->heap.items ||
        (tok->kind == VOCAB_BPE && (!w->cps || !w->cls || !w->offs)))
        return mmi_fail(MM_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
    return MM_OK;
}

static void free_scratch(scratch *w)
{
    mmi_free(w->buf);
    mmi_free(w->syms);
    mmi_free(w->heap.items);
    mmi_free(w->cps);
    mmi_free(w->cls);
    mmi_free(w->offs);
}

/* Queue the merge of symbols l and r if one exists. */
static mm_status try_pair(const mmi_tokenizer *tok, scratch *w, const char *text, int32_t l,
                          int32_t r)
{
    if (l < 0 || r < 0)
        return MM_OK;
    const symbol *a = &w->syms[l], *b = &w->syms[r];
    bigram bg = {l, r, 0, a->len + b->len, -1};
    if (tok->kind == VOCAB_SPM) {
        bg.result = mmi_token_lookup(tok, text + a->start, bg.len);
        if (bg.result < 0)
            return MM_OK;
        bg.priority = tok->score[bg.result];
    } else {
        const merge_slot *m = find_merge(tok, a->id, b->id);
        if (!m)
            return MM_OK;
        bg.priority = -(double)m->rank;
        bg.result = m->result;
    }
    return heap_push(&w->heap, bg);
}

/* Merge symbols 0..n-1 (already chained) until no queued pair remains. */
static mm_status merge_symbols(const mmi_tokenizer *tok, scratch *w, const char *text,
                               int32_t n)
{
    w->heap.n = 0;
    for (int32_t i = 1; i < n; i++)
        MMI_TRY(try_pair(tok, w, text, i - 1, i));
    while (w->heap.n) {
        bigram bg = heap_pop(&w->heap);
        symbol *l = &w->syms[bg.left], *r = &w->syms[bg.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != bg.len)
            continue;
        l->len += r->len;
        l->id = bg.result;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->syms[r->next].prev = bg.left;
        MMI_TRY(try_pair(tok, w, text, l->prev, bg.left));
        MMI_TRY(try_pair(tok, w, text, bg.left, l->next));
    }
    return MM_OK;
}

/* An id for a byte no entry covers: its byte token, else the unknown token, else nothing. */
static mm_status push_byte(const mmi_tokenizer *tok, unsigned char b, mmi_tokens *out)
{
    int32_t id = tok->byte_token[b] >= 0 ? tok->byte_token[b] : tok->unk;
    return id >= 0 ? push_id(out, id) : MM_OK;
}

static mm_status encode_spm(const mmi_tokenizer *tok, scratch *w, const char *frag, size_t len,
                            int prefix_space, mmi_tokens *out)
{
    /* The text SentencePiece sees: a leading space if asked, every space written as ▁. */
    char *buf = w->buf;
    size_t n = 0;
    if (prefix_space) {
        memcpy(buf, "\xE2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (frag[i] == ' ') {
            memcpy(buf + n, "\xE2\x96\x81", 3);
            n += 3;
        } else {
            buf[n++] = frag[i];
        }
    }
    int32_t n_syms = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int clen = mmi_utf8_decode((const unsigned char *)buf + i, n - i, &cp); /* valid */
        symbol *s = &w->syms[n_syms];
        *s = (symbol){n_syms - 1, i + (size_t)clen < n ? n_syms + 1 : -1, (uint32_t)i,
                      (uint32_t)clen, mmi_token_lookup(tok, buf + i, (size_t)clen)};
        n_syms++;
        i += (size_t)clen;
    }
    MMI_TRY(merge_symbols(tok, w, buf, n_syms));
    for (int32_t i = 0; n_syms > 0 && i >= 0; i = w->syms[i].next) {
        const symbol *s = &w->syms[i];
        if (s->id >= 0) {
            MMI_TRY(push_id(out, s->id));
            continue;
        }
        for (uint32_t k = 0; k < s->len; k++)
            MMI_TRY(push_byte(tok, (unsigned char)buf[s->start + k], out));
    }
    return MM_OK;
}

/* One pre-tokenized word of a byte-level vocabulary: one symbol per byte to begin with. */
static mm_status encode_bpe_word(const mmi_tokenizer *tok, scratch *w, const char *word,
                                 size_t len, mmi_tokens *out)
{
    if (tok->ignore_merges) {
        /* The word as byte-level characters: at most 2 bytes each. */
        size_t n = 0;
        for (size_t i = 0; i < len; i++)
            n += mmi_utf8_encode(byte_to_unicode((unsigned char)word[i]), w->buf + n);
        int32_t id = mmi_token_lookup(tok, w->buf, n);
        if (id >= 0)
            return push_id(out, id);
    }
    for (size_t i = 0; i < len; i++)
        w->syms[i] = (symbol){(int32_t)i - 1, i + 1 < len ? (int32_t)i + 1 : -1, (uint32_t)i, 1,
                              tok->byte_token[(unsigned char)word[i]]};
    if (tok->clip)
        w->syms[len - 1].id = tok->byte_token_eow[(unsigned char)word[len - 1]];
    MMI_TRY(merge_symbols(tok, w, word, (int32_t)len));
    for (int32_t i = 0; i >= 0; i = w->syms[i].next) {
        const symbol *s = &w->syms[i];
        if (s->id >= 0) {
            MMI_TRY(push_id(out, s->id));
            continue;
        }
        for (uint32_t k = 0; k < s->len; k++)
            MMI_TRY(push_byte(tok, (unsigned char)word[s->start + k], out));
    }
    return MM_OK;
}

static mm_status encode_words(const mmi_tokenizer *tok, scratch *w, const char *frag, size_t len,
                              mmi_tokens *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        uint32_t cp;
        int clen = mmi_utf8_decode((const unsigned char *)frag + i, len - i, &cp); /* valid */
        w->cps[n] = cp;
        w->cls[n] = (uint8_t)mmi_unicode_class(cp);
        w->offs[n] = (uint32_t)i;
        i += (size_t)clen;
    }
    w->offs[n] = (uint32_t)len;
    for (size_t i = 0; i < n;) {
        size_t k = mmi_pretokenize_next(tok->pre, w->cps, w->cls, i, n);
        if (!(tok->clip && w->cls[i] == MMI_UC_SPACE)) /* CLIP drops the space between words */
            MMI_TRY(encode_bpe_word(tok, w, frag + w->offs[i], w->offs[i + k] - w->offs[i], out));
        i += k;
    }
    return MM_OK;
}

/* CLIP's normalizer: NFC, then lowercase (its folding of whitespace runs into one space needs
 * no code: the pre-tokenizer drops whitespace). Returns a new buffer for mmi_free. */
static mm_status normalize_clip(const char *text, size_t len, char **out, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)text;
    uint32_t cp, parts[MMI_UNICODE_MAX_DECOMPOSITION], lower[2];
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < len;) {
        i += (size_t)mmi_utf8_decode(u + i, len - i, &cp); /* valid: checked by the caller */
        n += mmi_unicode_decompose(cp, parts);
    }
    uint32_t *cps = mmi_array(n ? n : 1, sizeof *cps);
    if (!cps)
        return mmi_fail(MM_ERR_NOMEM, "out of memory normalizing %zu bytes", len);
    n = 0;
    for (size_t i = 0; i < len;) {
        i += (size_t)mmi_utf8_decode(u + i, len - i, &cp);
        n += mmi_unicode_decompose(cp, cps + n);
    }
    n = mmi_unicode_compose(cps, n);
    char utf8[4];
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0, m = mmi_unicode_lower(cps[i], lower); k < m; k++)
            bytes += mmi_utf8_encode(lower[k], utf8);
    *out = mmi_malloc(bytes ? bytes : 1);
    if (!*out) {
        mmi_free(cps);
        return mmi_fail(MM_ERR_NOMEM, "out of memory normalizing %zu bytes", len);
    }
    *out_len = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0, m = mmi_unicode_lower(cps[i], lower); k < m; k++)
            *out_len += mmi_utf8_encode(lower[k], *out + *out_len);
    mmi_free(cps);
    return MM_OK;
}

/* Byte-level BPE of one run of plain text. */
static mm_status encode_bpe(const mmi_tokenizer *tok, scratch *w, const char *frag, size_t len,
                            mmi_tokens *out)
{
    if (!tok->clip)
        return encode_words(tok, w, frag, len, out);
    /* The normalized text may be longer than the original: scratch of its own. */
    char *norm = NULL;
    size_t norm_len = 0;
    MMI_TRY(normalize_clip(frag, len, &norm, &norm_len));
    scratch clip_scratch;
    mm_status st = alloc_scratch(tok, norm_len, &clip_scratch);
    if (st == MM_OK)
        st = encode_words(tok, &clip_scratch, norm, norm_len, out);
    free_scratch(&clip_scratch);
    mmi_free(norm);
    return st;
}

/* The text cut into runs of plain text and special tokens, as a chain in an array. */
typedef struct {
    uint32_t start, len;
    int32_t id;   /* -1: plain text */
    int32_t next; /* -1: last */
} fragment;

typedef struct {
    fragment *items;
    size_t n, cap;
} fragment_list;

static mm_status add_fragment(fragment_list *f, fragment x, int32_t *index)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        fragment *items = mmi_realloc(f->items, cap * sizeof *items);
        if (!items)
            return mmi_fail(MM_ERR_NOMEM, "out of memory splitting special tokens");
        f->items = items;
        f->cap = cap;
    }
    f->items[f->n] = x;
    *index = (int32_t)f->n++;
    return MM_OK;
}

/* Whether text[at, at + n) overlaps a literal span (where no control token may start or end). */
static int in_literal(const mmi_text_span *literal, size_t n_literal, size_t at, size_t n)
{
    for (size_t i = 0; i < n_literal; i++)
        if (at < literal[i].end && at + n > literal[i].start)
            return 1;
    return 0;
}

/* Cut out every occurrence of each special token, longest tokens first (as llama.cpp does,
 * so that a longer token wins over a shorter one inside it). Control tokens are not looked for
 * where they would overlap a literal span. */
static mm_status split_specials(const mmi_tokenizer *tok, const char *text, size_t len,
                                int parse_special, const mmi_text_span *literal,
                                size_t n_literal, fragment_list *f)
{
    int32_t first;
    f->n = 0;
    MMI_TRY(add_fragment(f, (fragment){0, (uint32_t)len, -1, -1}, &first));
    if (!parse_special && !tok->has_user_defined)
        return MM_OK;
    for (size_t s = 0; s < tok->n_specials; s++) {
        int32_t id = tok->specials[s];
        if (!parse_special && tok->type[id] != MMI_TOKEN_USER_DEFINED)
            continue;
        const char *needle = tok->text + tok->text_off[id];
        size_t nlen = entry_len(tok, id);
        for (int32_t i = first; i >= 0; i = f->items[i].next) {
            if (f->items[i].id >= 0 || f->items[i].len < nlen)
                continue;
            const char *hay = text + f->items[i].start, *hay_end = hay + f->items[i].len;
            const char *hit = memmem(hay, f->items[i].len, needle, nlen);
            while (hit && tok->type[id] != MMI_TOKEN_USER_DEFINED &&
                   in_literal(literal, n_literal, (size_t)(hit - text), nlen))
                hit = memmem(hit + 1, (size_t)(hay_end - hit - 1), needle, nlen);
            if (!hit)
                continue;
            /* [before][token][after]: `i` keeps the part before, or becomes the token. */
            uint32_t at = (uint32_t)(hit - text);
            uint32_t end = f->items[i].start + f->items[i].len;
            int32_t next = f->items[i].next, tail = next, mid;
            if (at + nlen < end) {
                MMI_TRY(add_fragment(f, (fragment){at + (uint32_t)nlen,
                                                   end - at - (uint32_t)nlen, -1, next}, &tail));
            }
            if (at > f->items[i].start) {
                MMI_TRY(add_fragment(f, (fragment){at, (uint32_t)nlen, id, tail}, &mid));
                f->items[i].len = at - f->items[i].start;
                f->items[i].next = mid;
                i = mid; /* continue the search after the token */
            } else {
                f->items[i] = (fragment){at, (uint32_t)nlen, id, tail};
            }
        }
    }
    return MM_OK;
}


static mm_status encode(const mmi_tokenizer *tok, const char *text, size_t len, unsigned flags,
                        const mmi_text_span *literal, size_t n_literal, scratch *w,
                        fragment_list *f, mmi_tokens *out)
{
    int add_special = (flags & MM_TOKENIZE_ADD_SPECIAL) != 0;
    if (add_special && tok->add_bos)
        MMI_TRY(push_id(out, tok->bos));
    if (len > 0) {
        if (!tok->clip)
            MMI_TRY(alloc_scratch(tok, len, w));
        MMI_TRY(split_specials(tok, text, len, (flags & MM_TOKENIZE_PARSE_SPECIAL) != 0, literal,
                               n_literal, f));
        int after_special = 1; /* SPM puts a space before text at the start or after a token */
        for (int32_t i = 0; i >= 0; i = f->items[i].next) {
            const fragment *x = &f->items[i];
            if (x->id >= 0) {
                MMI_TRY(push_id(out, x->id));
                after_special = 1;
            } else if (tok->kind == VOCAB_SPM) {
                MMI_TRY(encode_spm(tok, w, text + x->start, x->len,
                                   after_special && tok->add_space_prefix, out));
                after_special = 0;
            } else {
                MMI_TRY(encode_bpe(tok, w, text + x->start, x->len, out));
            }
        }
    }
    if (add_special && tok->add_eos)
        MMI_TRY(push_id(out, tok->eos));
    return MM_OK;
}

mm_status mmi_tokenize(const mmi_tokenizer *tok, const char *text, size_t len, unsigned flags,
                       mmi_tokens *out)
{
    return mmi_tokenize_literal(tok, text, len, flags, NULL, 0, out);
}

mm_status mmi_tokenize_literal(const mmi_tokenizer *tok, const char *text, size_t len,
                               unsigned flags, const mmi_text_span *literal, size_t n_literal,
                               mmi_tokens *out)
{
    if (len > MAX_TEXT_BYTES)
        return mmi_fail(MM_ERR_LIMIT, "text of %zu bytes is longer than the %zu bytes one "
                        "tokenize call takes", len, MAX_TEXT_BYTES);
    size_t bad = mmi_utf8_check(text, len);
    if (bad < len)
        return mmi_fail(MM_ERR_FORMAT, "text is not valid UTF-8 at byte %zu (0x%02X)", bad,
                        (unsigned)(unsigned char)text[bad]);
    size_t n_before = out->n;
    scratch w = {0};
    fragment_list f = {0};
    mm_status st = encode(tok, text, len, flags, literal, n_literal, &w, &f, out);
    free_scratch(&w);
    mmi_free(f.items);
    if (st != MM_OK)
        out->n = n_before;
    return st;
}

/* ---- streaming detokenizer ---- */

mm_status mmi_detok_stream_init(mmi_detok_stream *s, const mmi_tokenizer *tok, unsigned flags)
{
    /* Worst case of one push: the held bytes and the piece, every byte replaced by U+FFFD. */
    *s = (mmi_detok_stream){tok, flags, 0, {0}, 0, NULL, 3 * (sizeof s->pending + tok->max_piece)};
    s->strip_space = tok->add_space_prefix && !(flags & MM_DETOKENIZE_KEEP_LEADING_SPACE);
    s->out = mmi_malloc(s->out_cap);
    if (!s->out)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for a detokenizer");
    return MM_OK;
}

void mmi_detok_stream_free(mmi_detok_stream *s)
{
    mmi_free(s->out);
    s->out = NULL;
}

/* Append bytes to the held ones and move every complete character to out; invalid bytes
 * become U+FFFD. Returns the new output length. */
static size_t flow_bytes(mmi_detok_stream *s, const char *bytes, size_t n, size_t n_out)
{
    for (size_t i = 0; i < n; i++) {
        s->pending[s->n_pending++] = (unsigned char)bytes[i];
        while (s->n_pending) {
            uint32_t cp;
            int len = mmi_utf8_decode(s->pending, s->n_pending, &cp);
            if (len == 0)
                break; /* wait for the rest of the character */
            size_t used = len > 0 ? (size_t)len : (size_t)-len;
            if (len > 0) {
                memcpy(s->out + n_out, s->pending, used);
                n_out += used;
            } else {
                memcpy(s->out + n_out, "\xEF\xBF\xBD", 3);
                n_out += 3;
            }
            memmove(s->pending, s->pending + used, s->n_pending - used);
            s->n_pending -= used;
        }
    }
    return n_out;
}

mm_status mmi_detok_stream_push(mmi_detok_stream *s, int32_t id, const char **text, size_t *len)
{
    const mmi_tokenizer *tok = s->tok;
    *text = s->out;
    *len = 0;
    if (id < 0 || id >= tok->n_vocab)
        return mmi_fail(MM_ERR_ARG, "token id %d is outside the vocabulary (%d tokens)", (int)id,
                        (int)tok->n_vocab);
    size_t n;
    const char *piece = mmi_token_piece(tok, id, &n);
    int type = tok->type[id];
    if (type == MMI_TOKEN_CONTROL || type == MMI_TOKEN_USER_DEFINED ||
        type == MMI_TOKEN_UNKNOWN) {
        /* Text after a special token was encoded with its own space prefix. */
        s->strip_space = tok->add_space_prefix && !(s->flags & MM_DETOKENIZE_KEEP_LEADING_SPACE);
        if (type == MMI_TOKEN_CONTROL && !(s->flags & MM_DETOKENIZE_RENDER_SPECIAL))
            return MM_OK;
    } else if (n > 0) {
        if (s->strip_space && piece[0] == ' ') {
            piece++;
            n--;
        }
        s->strip_space = 0;
    }
    *len = flow_bytes(s, piece, n, 0);
    return MM_OK;
}

void mmi_detok_stream_finish(mmi_detok_stream *s, const char **text, size_t *len)
{
    *text = s->out;
    *len = 0;
    if (s->n_pending) { /* a valid start whose character never completed */
        memcpy(s->out, "\xEF\xBF\xBD", 3);
        *len = 3;
    }
    s->n_pending = 0;
    s->strip_space = s->tok->add_space_prefix &&
                     !(s->flags & MM_DETOKENIZE_KEEP_LEADING_SPACE);
}
