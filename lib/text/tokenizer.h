/* Tokenizers as llama.cpp stores them in GGUF (tokenizer.ggml.*):
 *  - "llama": SentencePiece-style BPE over scored pieces, `▁` for spaces, <0xNN> byte fallback;
 *  - "gpt2":  byte-level BPE with ranked merges after a pre-tokenizer regex (tokenizer.ggml.pre:
 *             gpt-2 and the names llama.cpp gives the same regex, llama3 and kin, qwen2 and kin);
 *  - "clip":  HF's CLIPTokenizer as the converter writes it (docs/model-format.md §8): byte-level
 *             BPE on lowercased NFC text, CLIP's word pattern, "</w>" on each word's last token.
 *
 * A tokenizer is immutable after load: every function here may run on any thread at once.
 * Encoding allocates scratch per call; token -> piece lookups and the streaming detokenizer
 * never allocate after their init, so they are safe in the per-token generation loop. */
#ifndef MMI_TOKENIZER_H
#define MMI_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "mm.h"

typedef struct mmi_tokenizer mmi_tokenizer; /* opaque: tokenizer.c */

/* Token types, numbered as tokenizer.ggml.token_type stores them. */
typedef enum {
    MMI_TOKEN_NORMAL = 1,
    MMI_TOKEN_UNKNOWN = 2,
    MMI_TOKEN_CONTROL = 3,      /* <s>, </s>, <|im_end|>: never produced from plain text */
    MMI_TOKEN_USER_DEFINED = 4, /* added tokens: always matched in text, like llama.cpp */
    MMI_TOKEN_UNUSED = 5,
    MMI_TOKEN_BYTE = 6          /* <0xNN> byte-fallback pieces */
} mmi_token_type;

mm_status mmi_tokenizer_load(const mmi_gguf *g, mmi_tokenizer **out);
void mmi_tokenizer_free(mmi_tokenizer *tok);

/* A growing array of token ids (zero-initialise it; free with mmi_tokens_free). */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} mmi_tokens;

void mmi_tokens_free(mmi_tokens *t);
/* Make room for `extra` more ids without changing n. MM_ERR_NOMEM on failure. */
mm_status mmi_tokens_reserve(mmi_tokens *t, size_t extra);

/* Encode text[0..len) and append the ids to *out. flags: MM_TOKENIZE_ADD_SPECIAL (BOS/EOS as
 * the file's add_bos_token/add_eos_token say), MM_TOKENIZE_PARSE_SPECIAL (control and unknown
 * tokens written in the text, e.g. "<|im_end|>", become those tokens; user-defined tokens are
 * always matched). Errors: MM_ERR_FORMAT if text is not valid UTF-8 (the message gives the
 * byte offset), MM_ERR_NOMEM. On failure out->n is what it was before the call. */
mm_status mmi_tokenize(const mmi_tokenizer *tok, const char *text, size_t len, unsigned flags,
                       mmi_tokens *out);

/* A lower bound of the tokens text of len bytes becomes (0 when the vocabulary gives none), so
 * that a text too long for the context is refused before it is tokenized. */
size_t mmi_tokenizer_min_tokens(const mmi_tokenizer *tok, size_t len);
/* A byte range [start, end) of a text. */
typedef struct {
    size_t start, end;
} mmi_text_span;

/* mmi_tokenize, where the `literal` spans of the text (e.g. a user's message inside a chat
 * template's markup) stay text whatever they hold: no control token is matched across any of
 * their bytes, so only the text around them can produce control tokens. The text is still
 * tokenized as one piece, so without control-token text inside the spans the ids equal
 * mmi_tokenize's. */
mm_status mmi_tokenize_literal(const mmi_tokenizer *tok, const char *text, size_t len,
                               unsigned flags, const mmi_text_span *literal, size_t n_literal,
                               mmi_tokens *out);

int32_t mmi_tokenizer_n_vocab(const mmi_tokenizer *tok);
/* Special ids, -1 when the vocabulary has none. eot: the end-of-turn token of chat models
 * (tokenizer.ggml.eot_token_id, else a control token such as <|eot_id|> or <|im_end|>). */
int32_t mmi_token_bos(const mmi_tokenizer *tok);
int32_t mmi_token_eos(const mmi_tokenizer *tok);
int32_t mmi_token_eot(const mmi_tokenizer *tok);
/* Whether ADD_SPECIAL prepends BOS / appends EOS for this vocabulary. */
int mmi_tokenizer_adds_bos(const mmi_tokenizer *tok);
int mmi_tokenizer_adds_eos(const mmi_tokenizer *tok);
/* True for every token that ends generation (eos, eot, eom). */
int mmi_token_is_eog(const mmi_tokenizer *tok, int32_t id);
/* Type of a token; 0 for an id out of range (or an entry of undefined type). */
mmi_token_type mmi_token_get_type(const mmi_tokenizer *tok, int32_t id);
/* The vocabulary entry as stored (e.g. "▁Hello", "<0x0A>", "<|im_end|>"); NULL out of range. */
const char *mmi_token_text(const mmi_tokenizer *tok, int32_t id, size_t *len);
/* Id of the entry whose stored text is exactly text[0..len), or -1. */
int32_t mmi_token_lookup(const mmi_tokenizer *tok, const char *text, size_t len);

/* The bytes a token stands for in output text: `▁` turned into spaces (SPM), byte-level
 * characters turned back into bytes (gpt2), <0xNN> into one byte, control tokens into their
 * text, unknown into U+2585 as llama.cpp does. May end or start mid-character. Owned by tok;
 * empty (len 0, non-NULL) for an id out of range. */
const char *mmi_token_piece(const mmi_tokenizer *tok, int32_t id, size_t *len);

/* Streaming detokenizer: feed ids one at a time, get back only complete, valid UTF-8. Bytes of
 * a character split across tokens are held until it completes; bytes that cannot form valid
 * UTF-8 come out as U+FFFD. flags: MM_DETOKENIZE_RENDER_SPECIAL (write control tokens' text,
 * else they produce nothing), MM_DETOKENIZE_KEEP_LEADING_SPACE (else, for vocabularies that
 * add a space prefix when encoding, the first text piece at the start and after each control
 * token loses one leading space, so detokenize(tokenize(s)) == s). */
typedef struct {
    const mmi_tokenizer *tok;
    unsigned flags;
    int strip_space;          /* drop a leading space from the next text piece */
    unsigned char pending[4]; /* start of a UTF-8 character still waiting for its last bytes */
    size_t n_pending;
    char *out;                /* holds the text one push returns */
    size_t out_cap;
} mmi_detok_stream;

/* Allocates the output buffer once (MM_ERR_NOMEM); push never allocates. */
mm_status mmi_detok_stream_init(mmi_detok_stream *s, const mmi_tokenizer *tok, unsigned flags);
void mmi_detok_stream_free(mmi_detok_stream *s);
/* Feed one id; *text and *len receive the newly completed text (valid until the next call; len
 * may be 0). MM_ERR_ARG for an id out of range (the stream is unchanged). */
mm_status mmi_detok_stream_push(mmi_detok_stream *s, int32_t id, const char **text, size_t *len);
/* End of input: a held incomplete character comes out as U+FFFD. Resets the stream to its
 * start state so it can be reused. */
void mmi_detok_stream_finish(mmi_detok_stream *s, const char **text, size_t *len);

#endif
