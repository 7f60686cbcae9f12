/* Sessions (see session.h): input goes into the KV cache as it is added; generation samples
 * from the last logits, streams text, and stops at end-of-generation tokens, stop strings or
 * the token budget.
 *
 * Every add_* call is all-or-nothing: it counts the positions it needs before any work
 * (MM_ERR_CTX_FULL), and on failure or cancellation rolls the sequence back to where it was.
 * The last sampled token is evaluated lazily ("pending"): it enters the cache with the next
 * input or generation step, so an answer ending in </s> leaves </s> in the conversation. */
#include "session.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "decoder.h"
#include "media.h"
#include "model.h"
#include "options.h"
#include "sampler.h"
#include "status.h"
#include "tokenizer.h"

/* Rows one forward pass takes; longer inputs run in chunks of this many. */
#define SESSION_BATCH 512

typedef struct {
    int active;        /* a generation is under way */
    int finished;      /* its last token is out; the next step reports the end */
    int n_generated;   /* tokens sampled in it */
    size_t stop_index; /* the stop string that ended it (stop_reason MM_STOP_STRING) */
    char *held;        /* text not yet emitted: it may be the start of a stop string */
    size_t n_held;
    char *emit;        /* the piece handed to the caller */
    size_t cap;        /* capacity of held and emit */
} generation;

struct mm_session {
    mm_model *model;   /* one reference held */
    const mmi_decoder *dec;
    const mmi_tokenizer *tok; /* NULL: the model takes token ids only */
    const mmi_chat_template *tmpl;
    mmi_decoder_state state;
    mmi_exec exec;            /* the threads and scratch this conversation computes with */
    float *saved_logits;      /* [V] restored when an input fails half-way */
    int32_t *history;         /* [n_ctx] token at each position, -1 for embedding rows */
    int32_t pending;          /* sampled, not yet evaluated; -1 if none */
    atomic_int cancel;

    int max_tokens;
    mmi_sampler sampler;
    mmi_media_params media_params;

    /* chat state */
    int answer_open;          /* a user message opened the model's answer; not closed yet */
    char *held_system;        /* system_in_user templates: the system text waiting for the
                                 user message it goes into; NULL if none */
    int n_user_messages;

    char **stops;
    size_t n_stops, max_stop_len;
    mmi_detok_stream detok;   /* only with a tokenizer */
    generation gen;
    int in_callback;          /* the caller's piece callback is running: no re-entry */
    mm_stop_reason stop_reason;
};

/* ---- creation ---- */

const mm_model *mmi_session_model(const mm_session *s)
{
    return s->model;
}

const mmi_media_params *mmi_session_media_params(const mm_session *s)
{
    return &s->media_params;
}

mm_status mmi_session_check_reentry(const mm_session *s, const char *fn)
{
    if (s->in_callback)
        return mmi_fail(MM_ERR_STATE, "%s: called from inside this session's own callback (only "
                        "mm_session_cancel may be)", fn);
    return MM_OK;
}

static const char *file_chat_template(const mm_model *m)
{
    for (int i = 0; i < 2; i++) {
        const char *t;
        if (m->files[i] && mmi_gguf_has(m->files[i], "tokenizer.chat_template") &&
            mmi_gguf_get_string(m->files[i], "tokenizer.chat_template", &t, NULL) == MM_OK)
            return t;
    }
    return NULL;
}

/* Held/emit buffers big enough for the longest stop string plus one step's text. */
static mm_status reserve_text(mm_session *s)
{
    size_t step = s->tok ? s->detok.out_cap : 0;
    size_t cap = s->max_stop_len + step + 4;
    if (cap <= s->gen.cap)
        return MM_OK;
    char *held = mmi_realloc(s->gen.held, cap);
    if (held)
        s->gen.held = held;
    char *emit = held ? mmi_realloc(s->gen.emit, cap) : NULL;
    if (!emit)
        return mmi_fail(MM_ERR_NOMEM, "session: out of memory for %zu bytes of text", cap);
    s->gen.emit = emit;
    s->gen.cap = cap;
    return MM_OK;
}

mm_status mmi_session_set_options(mm_session *s, const mm_options *options)
{
    MMI_TRY(mmi_media_params_from_options(options, &s->media_params));
    mmi_sampler_params p;
    mmi_sampler_params_from_options(&p, options);
    mmi_sampler_set_params(&s->sampler, &p);
    s->max_tokens = (int)mmi_opt_int(options, MM_OPT_MAX_TOKENS);
    return MM_OK;
}

mm_status mmi_session_create(mm_model *model, const mm_options *options, mm_session **out)
{
    *out = NULL;
    if (!model->decoder)
        return mmi_fail(MM_ERR_STATE, "mm_session_create: the model has no language model");
    const mmi_decoder_config *c = &model->decoder->config;
    int n_ctx = (int)mmi_opt_int(options, MM_OPT_N_CTX);
    if (n_ctx == 0)
        n_ctx = c->n_ctx_train;
    const mmi_chat_template *tmpl;
    /* BLIP-2 takes its image in front of the prompt, BOS included (HF prepends the projected
     * queries to the embedded text), and plain-text prompts rather than LLaVA's template. */
    int llava_like = model->vision != NULL && !mmi_media_first(model);
    MMI_TRY(mmi_chat_template_choose(mmi_opt_string(options, MM_OPT_CHAT_TEMPLATE),
                                     file_chat_template(model), llava_like, &tmpl));

    mm_session *s = mmi_calloc(1, sizeof *s);
    if (!s)
        return mmi_fail(MM_ERR_NOMEM, "mm_session_create: out of memory");
    mmi_model_retain(model);
    s->model = model;
    s->dec = model->decoder;
    s->tok = model->tokenizer;
    s->tmpl = tmpl;
    s->pending = -1;
    atomic_init(&s->cancel, 0);
    mm_status st = mmi_decoder_state_init(&s->state, s->dec, n_ctx, SESSION_BATCH);
    if (st == MM_OK)
        st = mmi_exec_init(&s->exec, (int)mmi_opt_int(options, MM_OPT_N_THREADS));
    if (st == MM_OK)
        st = mmi_exec_set_precision(&s->exec,
                                    mmi_opt_string(options, MM_OPT_MATMUL_PRECISION));
    if (st == MM_OK)
        st = mmi_sampler_init(&s->sampler, c->n_vocab);
    if (st == MM_OK && s->tok)
        st = mmi_detok_stream_init(&s->detok, s->tok, 0);
    if (st == MM_OK) {
        s->saved_logits = mmi_array((size_t)c->n_vocab, sizeof(float));
        s->history = mmi_array((size_t)n_ctx, sizeof(int32_t));
        if (!s->saved_logits || !s->history)
            st = mmi_fail(MM_ERR_NOMEM, "mm_session_create: out of memory for %d positions",
                          n_ctx);
    }
    if (st == MM_OK)
        st = reserve_text(s);
    if (st == MM_OK)
        st = mmi_session_set_options(s, options);
    if (st != MM_OK) {
        mmi_session_free(s);
        return st;
    }
    *out = s;
    return MM_OK;
}

void mmi_session_free(mm_session *s)
{
    if (!s)
        return;
    mmi_session_clear_stop_strings(s);
    mmi_free(s->stops);
    mmi_free(s->held_system);
    mmi_free(s->gen.held);
    mmi_free(s->gen.emit);
    if (s->tok)
        mmi_detok_stream_free(&s->detok);
    mmi_sampler_free(&s->sampler);
    mmi_free(s->saved_logits);
    mmi_free(s->history);
    mmi_decoder_state_free(&s->state);
    mmi_exec_free(&s->exec);
    mmi_model_release(s->model);
    mmi_free(s);
}

/* ---- evaluating input ---- */


/* MM_OK when the pending token and every part fit in the context and every id is valid. */
static mm_status check_parts(const mm_session *s, const mmi_part *parts, size_t n_parts,
                             const char *what)
{
    const mmi_decoder_state *ds = &s->state;
    int n_vocab = s->dec->config.n_vocab;
    /* The fit first (a count can be anything, so the sum saturates), then the ids: a count
     * larger than the caller's array is refused before the array is read. */
    size_t need = s->pending >= 0;
    for (size_t i = 0; i < n_parts; i++)
        need = parts[i].n > SIZE_MAX - need ? SIZE_MAX : need + parts[i].n;
    size_t free_rows = (size_t)(ds->n_ctx - ds->n_past);
    if (need > free_rows)
        return mmi_fail(MM_ERR_CTX_FULL, "%s needs %zu positions but only %zu of the context's "
                        "%d are free (%d in use)", what, need, free_rows, ds->n_ctx, ds->n_past);
    for (size_t i = 0; i < n_parts; i++)
        for (size_t j = 0; parts[i].ids && j < parts[i].n; j++)
            if (parts[i].ids[j] < 0 || parts[i].ids[j] >= n_vocab)
                return mmi_fail(MM_ERR_ARG, "%s: token id %d is outside the vocabulary (%d)",
                                what, (int)parts[i].ids[j], n_vocab);
    return MM_OK;
}

/* mmi_decoder_eval_at of n rows on the session's threads (pos NULL: the next positions). */
static mm_status eval(mm_session *s, const int32_t *ids, const float *embd, const int32_t *pos,
                      int n)
{
    const mmi_exec *previous = mmi_exec_bind(&s->exec);
    mm_status st = mmi_decoder_eval_at(s->dec, &s->state, ids, embd, pos, n, NULL, &s->cancel);
    mmi_exec_bind(previous);
    return st;
}

/* A part's rows on its grid (Qwen2-VL's M-RoPE), placed after the positions so far. */
static mm_status eval_grid_part(mm_session *s, const mmi_part *part)
{
    const int *g = part->plan->grid;
    int32_t *pos = mmi_array(part->n, (size_t)s->dec->config.n_pos_dims * sizeof(int32_t));
    if (!pos)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for the positions of %zu rows", part->n);
    mmi_decoder_grid_positions(s->dec, s->state.n_past + s->state.pos_delta, g[0], g[1], g[2],
                               pos);
    mm_status st = eval(s, NULL, part->rows, pos, (int)part->n);
    mmi_free(pos);
    return st;
}

/* The pending token, then every part, as one all-or-nothing addition. */
static mm_status eval_parts(mm_session *s, const mmi_part *parts, size_t n_parts, const char *what)
{
    mmi_decoder_state *ds = &s->state;
    int n_vocab = s->dec->config.n_vocab;
    MMI_TRY(check_parts(s, parts, n_parts, what));
    if (mmi_cancelled(&s->cancel))
        return mmi_fail(MM_ERR_CANCELLED, "%s: cancelled", what);

    int past0 = ds->n_past, delta0 = ds->pos_delta;
    memcpy(s->saved_logits, ds->logits, (size_t)n_vocab * sizeof(float));
    mm_status st = MM_OK;
    if (s->pending >= 0) {
        s->history[ds->n_past] = s->pending;
        st = eval(s, &s->pending, NULL, NULL, 1);
    }
    for (size_t i = 0; i < n_parts && st == MM_OK; i++) {
        if (parts[i].n == 0)
            continue;
        for (size_t j = 0; j < parts[i].n; j++)
            s->history[(size_t)ds->n_past + j] = parts[i].ids ? parts[i].ids[j] : -1;
        if (parts[i].plan && parts[i].plan->grid[0] && s->dec->config.n_pos_dims > 1)
            st = eval_grid_part(s, &parts[i]);
        else
            st = eval(s, parts[i].ids, parts[i].rows, NULL, (int)parts[i].n);
    }
    if (st != MM_OK) {
        ds->n_past = past0;
        ds->pos_delta = delta0;
        memcpy(ds->logits, s->saved_logits, (size_t)n_vocab * sizeof(float));
        return st;
    }
    s->pending = -1;
    s->gen.active = 0; /* new input ends any generation in progress */
    return MM_OK;
}

/* With a system message held for the next user message, nothing else may come first. */
static mm_status check_no_held_system(const mm_session *s, const char *fn)
{
    if (s->held_system)
        return mmi_fail(MM_ERR_STATE, "%s: the %s template puts the system message inside the "
                        "next user message: add that first", fn, s->tmpl->name);
    return MM_OK;
}

/* BOS goes first in a sequence the library starts from text, when the vocabulary wants it. */
static int wants_bos(const mm_session *s)
{
    return s->tok && s->state.n_past == 0 && s->pending < 0 && mmi_tokenizer_adds_bos(s->tok) &&
           mmi_token_bos(s->tok) >= 0;
}

mm_status mmi_session_add_tokens(mm_session *s, const int32_t *ids, size_t n)
{
    atomic_store(&s->cancel, 0);
    MMI_TRY(check_no_held_system(s, "mm_session_add_tokens"));
    mmi_part p = {.ids = ids, .n = n};
    return eval_parts(s, &p, 1, "mm_session_add_tokens");
}

mm_status mmi_session_add_embeddings(mm_session *s, const float *embd, size_t n_rows,
                                     size_t n_embd)
{
    atomic_store(&s->cancel, 0);
    MMI_TRY(check_no_held_system(s, "mm_session_add_embeddings"));
    if (n_embd != (size_t)s->dec->config.n_embd)
        return mmi_fail(MM_ERR_ARG, "mm_session_add_embeddings: rows of %zu values, the model "
                        "takes %d", n_embd, s->dec->config.n_embd);
    int32_t bos = s->tok ? mmi_token_bos(s->tok) : -1;
    mmi_part parts[2] = {{.ids = &bos, .n = wants_bos(s)}, {.rows = embd, .n = n_rows}};
    return eval_parts(s, parts, 2, "mm_session_add_embeddings");
}

/* Before tokenizing: text of len bytes becomes at least mmi_tokenizer_min_tokens() tokens, so
 * one that cannot fit beside `rows` other positions is refused at once, whatever its length,
 * instead of after the tokenizer's work and memory. */
static mm_status check_text_fits(const mm_session *s, size_t len, size_t rows, const char *what)
{
    size_t min_tokens = mmi_tokenizer_min_tokens(s->tok, len);
    size_t need = rows > SIZE_MAX - min_tokens ? SIZE_MAX : min_tokens + rows;
    need += need < SIZE_MAX && s->pending >= 0;
    size_t free_rows = (size_t)(s->state.n_ctx - s->state.n_past);
    if (need > free_rows)
        return mmi_fail(MM_ERR_CTX_FULL, "%s: %zu bytes of text make at least %zu tokens, so it "
                        "needs at least %zu positions but only %zu of the context's %d are free "
                        "(%d in use); nothing was tokenized", what, len, min_tokens, need,
                        free_rows, s->state.n_ctx, s->state.n_past);
    return MM_OK;
}

static mm_status need_tokenizer(const mm_session *s, const char *fn)
{
    if (!s->tok)
        return mmi_fail(MM_ERR_STATE, "%s: the model has no tokenizer (add token ids instead)",
                        fn);
    return MM_OK;
}

mm_status mmi_session_add_text(mm_session *s, const char *text, size_t len, unsigned flags)
{
    atomic_store(&s->cancel, 0);
    MMI_TRY(need_tokenizer(s, "mm_session_add_text"));
    MMI_TRY(check_no_held_system(s, "mm_session_add_text"));
    if (flags & ~(unsigned)MM_TOKENIZE_PARSE_SPECIAL)
        return mmi_fail(MM_ERR_ARG, "mm_session_add_text: flags 0x%x (only "
                        "MM_TOKENIZE_PARSE_SPECIAL applies)", flags);
    MMI_TRY(check_text_fits(s, len, (size_t)wants_bos(s), "mm_session_add_text"));
    mmi_tokens ids = {0};
    mm_status st = MM_OK;
    if (wants_bos(s) && (st = mmi_tokens_reserve(&ids, 1)) == MM_OK)
        ids.ids[ids.n++] = mmi_token_bos(s->tok);
    if (st == MM_OK)
        st = mmi_tokenize(s->tok, text, len, flags, &ids);
    if (st == MM_OK) {
        mmi_part p = {.ids = ids.ids, .n = ids.n};
        st = eval_parts(s, &p, 1, "mm_session_add_text");
    }
    mmi_tokens_free(&ids);
    return st;
}

/* ---- chat messages ---- */

/* A growing string for the text of one message. */
typedef struct {
    char *p;
    size_t n, cap;
    int failed;
} strbuf;

static void sb_add(strbuf *b, const char *text, size_t len)
{
    if (b->failed || len == 0)
        return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = 2 * (b->n + len + 1);
        char *p = mmi_realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, text, len);
    b->n += len;
}

static void sb_str(strbuf *b, const char *text)
{
    sb_add(b, text, strlen(text));
}

/* The whole message as text with a marker where each image goes: the close of an open answer,
 * the role's prefix, the content, its suffix (and for a user message the generation prompt).
 * literal[] receives the spans of the caller's text (the content, a held system text), which
 * must stay text: only the template's markup may produce control tokens. */
static void render_message(const mm_session *s, mmi_chat_role role, const char *text,
                           size_t len, size_t n_media, strbuf *b, mmi_text_span literal[2],
                           size_t *n_literal)
{
    *n_literal = 0;
    const mmi_chat_template *t = s->tmpl;
    int continues_answer = s->answer_open && role == MMI_ROLE_ASSISTANT;
    if (s->answer_open && !continues_answer) {
        if (!(s->pending >= 0 && mmi_token_is_eog(s->tok, s->pending)))
            sb_str(b, t->end_token);
        sb_str(b, t->after_end);
    }
    if (role == MMI_ROLE_USER && s->n_user_messages > 0)
        sb_str(b, t->turn_start);
    if (role == MMI_ROLE_USER && s->held_system) {
        sb_str(b, t->prefix[MMI_ROLE_SYSTEM]);
        literal[(*n_literal)++] = (mmi_text_span){b->n, b->n + strlen(s->held_system)};
        sb_str(b, s->held_system);
        sb_str(b, t->suffix[MMI_ROLE_SYSTEM]);
    } else if (!continues_answer) {
        sb_str(b, t->prefix[role]);
    }
    if (n_media > 0 && mmi_media_count_markers(text, len) == 0)
        for (size_t i = 0; i < n_media; i++) {
            sb_str(b, MMI_MEDIA_MARKER);
            sb_str(b, t->image_suffix);
        }
    literal[(*n_literal)++] = (mmi_text_span){b->n, b->n + len};
    sb_add(b, text, len);
    sb_str(b, t->suffix[role]);
    if (role == MMI_ROLE_USER)
        sb_str(b, t->generation_prompt);
    if (role == MMI_ROLE_ASSISTANT) {
        sb_str(b, t->end_token);
        sb_str(b, t->after_end);
    }
}

mm_status mmi_session_add_message(mm_session *s, mmi_chat_role role, const char *text, size_t len,
                                  const mmi_media *media, size_t n_media)
{
    static const char fn[] = "mm_session_add_message";
    atomic_store(&s->cancel, 0);
    MMI_TRY(need_tokenizer(s, fn));
    if (role != MMI_ROLE_USER)
        MMI_TRY(check_no_held_system(s, fn));
    if (role == MMI_ROLE_SYSTEM && s->tmpl->system_in_user) {
        if (n_media > 0)
            return mmi_fail(MM_ERR_UNSUPPORTED, "%s: images in a %s system message", fn,
                            s->tmpl->name);
        s->held_system = mmi_malloc(len + 1);
        if (!s->held_system)
            return mmi_fail(MM_ERR_NOMEM, "%s: out of memory", fn);
        memcpy(s->held_system, text, len);
        s->held_system[len] = '\0';
        return MM_OK;
    }
    int first = n_media > 0 && mmi_media_first(s->model); /* else each item at its marker */
    MMI_TRY(mmi_media_check_markers(text, len, n_media, first, fn));
    /* The message's own text (the template only adds to it; markers become media) must fit
     * beside the rows given with it before anything is rendered, planned or tokenized. */
    size_t text_bytes = len, marker_len, rows = (size_t)wants_bos(s);
    for (const char *p = text; (p = mmi_media_find_marker(p, len - (size_t)(p - text),
                                                          &marker_len)); p += marker_len)
        text_bytes -= marker_len;
    for (size_t i = 0; i < n_media; i++) /* counts can be anything: the sum saturates */
        rows = media[i].n_rows > SIZE_MAX - rows ? SIZE_MAX : rows + media[i].n_rows;
    MMI_TRY(check_text_fits(s, text_bytes, rows, fn));

    /* Plan the whole message, check that it fits, then encode, then evaluate. */
    strbuf b = {0};
    mmi_text_span literal[2];
    size_t n_literal;
    render_message(s, role, text, len, first ? 0 : n_media, &b, literal, &n_literal);
    mmi_message msg = {0};
    mm_status st = MM_OK;
    if (b.failed)
        st = mmi_fail(MM_ERR_NOMEM, "%s: out of memory", fn);
    if (st == MM_OK)
        st = mmi_message_plan(&msg, s->model, &s->media_params, b.p ? b.p : "", b.n, literal,
                              n_literal, wants_bos(s) ? mmi_token_bos(s->tok) : -1, media, n_media,
                              first, s->dec->config.n_embd, fn);
    if (st == MM_OK)
        st = check_parts(s, msg.parts, msg.n_parts, fn);
    if (st == MM_OK) { /* on the session's threads */
        const mmi_exec *previous = mmi_exec_bind(&s->exec);
        st = mmi_message_encode(&msg, s->model, &s->media_params, media, &s->cancel, fn);
        mmi_exec_bind(previous);
    }
    if (st == MM_OK)
        st = eval_parts(s, msg.parts, msg.n_parts, fn);
    mmi_message_free(&msg);
    mmi_free(b.p);
    if (st != MM_OK)
        return st;
    s->answer_open = role == MMI_ROLE_USER;
    s->n_user_messages += role == MMI_ROLE_USER;
    if (role == MMI_ROLE_USER) {
        mmi_free(s->held_system);
        s->held_system = NULL;
    }
    return MM_OK;
}

mm_status mmi_session_add_message_images(mm_session *s, mmi_chat_role role, const char *text,
                                         size_t len, const mm_image *const *images,
                                         size_t n_images)
{
    mmi_media *media = mmi_calloc(n_images + 1, sizeof *media);
    if (!media)
        return mmi_fail(MM_ERR_NOMEM, "mm_session_add_message_images: out of memory");
    for (size_t i = 0; i < n_images; i++)
        media[i] = (mmi_media){.ops = &mmi_image_ops, .source = images[i]};
    mm_status st = mmi_session_add_message(s, role, text, len, media, n_images);
    mmi_free(media);
    return st;
}

/* ---- stop strings ---- */

mm_status mmi_session_add_stop_string(mm_session *s, const char *stop)
{
    size_t len = strlen(stop);
    if (len == 0)
        return mmi_fail(MM_ERR_ARG, "mm_session_add_stop_string: empty stop string");
    char *copy = mmi_strdup(stop);
    char **stops = copy ? mmi_realloc(s->stops, (s->n_stops + 1) * sizeof *stops) : NULL;
    if (!stops) {
        mmi_free(copy);
        return mmi_fail(MM_ERR_NOMEM, "mm_session_add_stop_string: out of memory");
    }
    s->stops = stops;
    size_t max_before = s->max_stop_len;
    if (len > s->max_stop_len)
        s->max_stop_len = len;
    mm_status st = reserve_text(s);
    if (st != MM_OK) {
        s->max_stop_len = max_before;
        mmi_free(copy);
        return st;
    }
    s->stops[s->n_stops++] = copy;
    return MM_OK;
}

void mmi_session_clear_stop_strings(mm_session *s)
{
    mmi_session_drop_stop_strings(s, 0);
}

size_t mmi_session_n_stop_strings(const mm_session *s)
{
    return s->n_stops;
}

void mmi_session_drop_stop_strings(mm_session *s, size_t keep)
{
    s->max_stop_len = 0;
    for (size_t i = 0; i < s->n_stops; i++) {
        size_t len = strlen(s->stops[i]);
        if (i >= keep)
            mmi_free(s->stops[i]);
        else if (len > s->max_stop_len)
            s->max_stop_len = len;
    }
    if (keep < s->n_stops)
        s->n_stops = keep;
}

/* ---- generation ---- */

/* Move the held text that can no longer become a stop string to the emit buffer; with
 * `all`, everything held. Returns 1 when a stop string was found (text before it emitted). */
static int release_text(mm_session *s, int all, size_t *n_emit)
{
    generation *g = &s->gen;
    size_t cut = g->n_held, keep = 0;
    int stopped = 0;
    for (size_t i = 0; i < s->n_stops; i++) {
        size_t len = strlen(s->stops[i]);
        const char *at = memmem(g->held, g->n_held, s->stops[i], len);
        if (at && (size_t)(at - g->held) < cut) {
            cut = (size_t)(at - g->held);
            stopped = 1;
            g->stop_index = i;
        }
        /* Longest tail of the held text that begins this stop string. */
        for (size_t k = len - 1; !all && k > keep; k--)
            if (k <= g->n_held && memcmp(g->held + g->n_held - k, s->stops[i], k) == 0) {
                keep = k;
                break;
            }
    }
    if (!stopped)
        cut = g->n_held - keep;
    memcpy(g->emit, g->held, cut);
    *n_emit = cut;
    if (stopped) {
        g->n_held = 0;
    } else {
        memmove(g->held, g->held + cut, g->n_held - cut);
        g->n_held -= cut;
    }
    return stopped;
}

static void hold_text(mm_session *s, const char *text, size_t len)
{
    memcpy(s->gen.held + s->gen.n_held, text, len);
    s->gen.n_held += len;
}

static void begin_generation(mm_session *s)
{
    generation *g = &s->gen;
    g->active = 1;
    g->finished = 0;
    g->n_generated = 0;
    g->n_held = 0;
    s->stop_reason = MM_STOP_NONE;
    if (s->tok) { /* restart the stream: the answer's first space is dropped */
        const char *unused;
        size_t n;
        mmi_detok_stream_finish(&s->detok, &unused, &n);
    }
}

static void finish(mm_session *s, mm_stop_reason why)
{
    s->gen.finished = 1;
    s->stop_reason = why;
}

/* One token of the generation (see mm_session_next). Does not clear the cancel flag, so a
 * cancel between two steps of mm_session_generate is seen. */
static mm_status step(mm_session *s, int32_t *token, const char **piece, size_t *len)
{
    generation *g = &s->gen;
    mmi_decoder_state *ds = &s->state;
    *token = -1;
    *piece = NULL;
    *len = 0;
    if (!g->active) {
        MMI_TRY(check_no_held_system(s, "generation"));
        if (ds->n_past == 0 && s->pending < 0)
            return mmi_fail(MM_ERR_STATE, "generation: nothing to continue: add input first");
        begin_generation(s);
    }
    if (g->finished || g->n_generated >= s->max_tokens) {
        if (!g->finished)
            s->stop_reason = MM_STOP_MAX_TOKENS;
        g->active = 0;
        return MM_OK;
    }
    if (s->pending >= 0) {
        if (ds->n_past >= ds->n_ctx) {
            g->active = 0;
            return mmi_fail(MM_ERR_CTX_FULL, "generation: the context is full (%d of %d "
                            "positions)", ds->n_past, ds->n_ctx);
        }
        s->history[ds->n_past] = s->pending;
        mm_status st = eval(s, &s->pending, NULL, NULL, 1);
        if (st != MM_OK) {
            g->active = 0;
            return st;
        }
        s->pending = -1;
    }
    if (mmi_cancelled(&s->cancel)) {
        g->active = 0;
        return mmi_fail(MM_ERR_CANCELLED, "generation: cancelled");
    }
    int32_t t = mmi_sampler_sample(&s->sampler, ds->logits, s->history, (size_t)ds->n_past);
    s->pending = t;
    g->n_generated++;
    *token = t;

    int eog = s->tok && mmi_token_is_eog(s->tok, t);
    /* An id past the tokenizer's list (padding rows of the embedding) gives no text. */
    if (s->tok && !eog && t < mmi_tokenizer_n_vocab(s->tok)) {
        const char *text;
        size_t n;
        mmi_detok_stream_push(&s->detok, t, &text, &n); /* in range: cannot fail */
        hold_text(s, text, n);
    }
    int last = eog || g->n_generated >= s->max_tokens;
    if (last && s->tok) { /* a character cut off at the end comes out as U+FFFD */
        const char *text;
        size_t n;
        mmi_detok_stream_finish(&s->detok, &text, &n);
        hold_text(s, text, n);
    }
    size_t n_emit;
    if (release_text(s, last, &n_emit))
        finish(s, MM_STOP_STRING);
    else if (eog)
        finish(s, MM_STOP_EOG);
    else if (last)
        finish(s, MM_STOP_MAX_TOKENS);
    *piece = g->emit;
    *len = n_emit;
    return MM_OK;
}

mm_status mmi_session_next(mm_session *s, int32_t *token, const char **piece, size_t *len)
{
    atomic_store(&s->cancel, 0);
    return step(s, token, piece, len);
}

mm_status mmi_session_generate(mm_session *s, const mm_options *options, mm_piece_fn fn,
                               void *user)
{
    atomic_store(&s->cancel, 0);
    if (options)
        MMI_TRY(mmi_session_set_options(s, options));
    s->gen.active = 0; /* each call is a generation of its own */
    for (;;) {
        int32_t token;
        const char *piece;
        size_t len;
        MMI_TRY(step(s, &token, &piece, &len));
        if (!piece)
            return MM_OK;
        s->in_callback = 1;
        int stop = len > 0 && fn && fn(user, piece, len) != 0;
        s->in_callback = 0;
        if (stop) {
            s->gen.active = 0;
            s->stop_reason = MM_STOP_CALLBACK;
            return MM_OK;
        }
    }
}

mm_stop_reason mmi_session_stop_reason(const mm_session *s)
{
    return s->stop_reason;
}

int mmi_session_n_generated(const mm_session *s)
{
    return s->gen.n_generated;
}

const char *mmi_session_matched_stop(const mm_session *s)
{
    if (s->stop_reason != MM_STOP_STRING || s->gen.stop_index >= s->n_stops)
        return NULL;
    return s->stops[s->gen.stop_index];
}

/* ---- state ---- */

mm_status mmi_session_logits(const mm_session *s, const float **logits, size_t *n_vocab)
{
    if (s->state.n_past == 0)
        return mmi_fail(MM_ERR_STATE, "mm_session_logits: no position evaluated yet");
    *logits = s->state.logits;
    *n_vocab = (size_t)s->dec->config.n_vocab;
    return MM_OK;
}

int mmi_session_n_ctx(const mm_session *s)
{
    return s->state.n_ctx;
}

int mmi_session_n_past(const mm_session *s)
{
    return s->state.n_past;
}

int mmi_session_n_embd(const mm_session *s)
{
    return s->dec->config.n_embd;
}

const char *mmi_session_template_name(const mm_session *s)
{
    return s->tmpl->name;
}

const int32_t *mmi_session_history(const mm_session *s)
{
    return s->history;
}

void mmi_session_cancel(mm_session *s)
{
    atomic_store(&s->cancel, 1);
}

void mmi_session_reset(mm_session *s)
{
    s->state.n_past = 0;
    s->state.pos_delta = 0;
    s->pending = -1;
    s->answer_open = 0;
    mmi_free(s->held_system);
    s->held_system = NULL;
    s->n_user_messages = 0;
    s->gen.active = 0;
    s->stop_reason = MM_STOP_NONE;
}
