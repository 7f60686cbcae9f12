/* Media parts of a message (see media.h): markers, plans, parts, encoding. */
#include "media.h"

#include <string.h>

#include "alloc.h"
#include "chat.h"
#include "options.h"
#include "status.h"
#include "vit.h"

mm_status mmi_media_params_from_options(const mm_options *o, mmi_media_params *out)
{
    const char *detail = mmi_opt_string(o, MM_OPT_IMAGE_DETAIL);
    out->detail = MMI_DETAIL_HIGH;
    if (!detail || strcmp(detail, "auto") == 0 || strcmp(detail, "high") == 0)
        return MM_OK;
    if (strcmp(detail, "low") == 0) {
        out->detail = MMI_DETAIL_LOW;
        return MM_OK;
    }
    return mmi_fail(MM_ERR_ARG, "image_detail '%s' (expected \"low\", \"high\" or \"auto\")",
                    detail);
}

const char *mmi_media_find_marker(const char *text, size_t len, size_t *marker_len)
{
    static const char *const markers[] = {MMI_MEDIA_MARKER, MMI_IMAGE_MARKER, MMI_AUDIO_MARKER};
    const char *best = NULL;
    for (size_t i = 0; i < sizeof markers / sizeof *markers; i++) {
        size_t m = strlen(markers[i]);
        const char *at = memmem(text, len, markers[i], m);
        if (at && (!best || at < best)) {
            best = at;
            *marker_len = m;
        }
    }
    return best;
}

size_t mmi_media_count_markers(const char *text, size_t len)
{
    size_t n = 0, m;
    for (const char *p = text, *end = text + len; (p = mmi_media_find_marker(p, (size_t)(end - p),
                                                                             &m)); p += m)
        n++;
    return n;
}

int mmi_media_first(const mm_model *m)
{
    return m->vision && m->vision->connector.images_first;
}

static mm_status plan_media(const mm_model *m, const mmi_media_params *p, const mmi_media *media,
                            size_t i, int n_embd, mmi_media_plan *plan, const char *fn)
{
    if (media->ops) {
        MMI_TRY(media->ops->plan(m, media->source, media->params ? media->params : p, plan));
        if (plan->n_embd != n_embd)
            return mmi_fail(MM_ERR_FORMAT, "%s: %s %zu encodes to rows of %d values, the "
                            "language model takes %d", fn, media->ops->kind, i, plan->n_embd,
                            n_embd);
    } else {
        *plan = (mmi_media_plan){media->n_rows, (int)media->n_rows, 0, n_embd, {0, 0, 0}};
        if (!media->rows)
            return mmi_fail(MM_ERR_ARG, "%s: media %zu has no embeddings", fn, i);
    }
    if (plan->n_rows == 0)
        return mmi_fail(MM_ERR_ARG, "%s: media %zu has no embeddings", fn, i);
    return MM_OK;
}

mm_status mmi_media_check_markers(const char *text, size_t len, size_t n_media, int first,
                                  const char *fn)
{
    size_t markers = mmi_media_count_markers(text, len);
    if (first && markers > 0)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: this model takes its image in front of the "
                        "text, not at %s markers", fn, MMI_IMAGE_MARKER);
    if (markers > 0 && markers != n_media)
        return mmi_fail(MM_ERR_ARG, "%s: the text has %zu markers (%s, %s or %s) for %zu media",
                        fn, markers, MMI_MEDIA_MARKER, MMI_IMAGE_MARKER, MMI_AUDIO_MARKER,
                        n_media);
    return MM_OK;
}

/* Tokenize the stretch [at, stop) of text with control tokens parsed outside the literal spans
 * (offsets into text). */
static mm_status tokenize_stretch(const mmi_tokenizer *tok, const char *text, const char *at,
                                  const char *stop, const mmi_text_span *literal,
                                  size_t n_literal, mmi_tokens *ids)
{
    size_t from = (size_t)(at - text), to = (size_t)(stop - text);
    mmi_text_span local[2];
    size_t n_local = 0;
    for (size_t i = 0; i < n_literal && n_local < 2; i++) {
        size_t a = literal[i].start > from ? literal[i].start : from;
        size_t z = literal[i].end < to ? literal[i].end : to;
        if (a < z)
            local[n_local++] = (mmi_text_span){a - from, z - from};
    }
    return mmi_tokenize_literal(tok, at, (size_t)(stop - at), MM_TOKENIZE_PARSE_SPECIAL, local,
                                n_local, ids);
}

static mm_status push_token(mmi_tokens *ids, int32_t id)
{
    MMI_TRY(mmi_tokens_reserve(ids, 1));
    ids->ids[ids->n++] = id;
    return MM_OK;
}

mm_status mmi_message_plan(mmi_message *msg, const mm_model *m, const mmi_media_params *p,
                           const char *text, size_t len, const mmi_text_span *literal,
                           size_t n_literal, int32_t bos, const mmi_media *media, size_t n_media,
                           int first, int n_embd, const char *fn)
{
    memset(msg, 0, sizeof *msg);
    size_t n_inline = first ? 0 : n_media; /* media at markers */
    msg->n_media = n_media;
    msg->parts = mmi_array(2 * n_media + 1, sizeof *msg->parts);
    msg->plans = mmi_array(n_media + 1, sizeof *msg->plans);
    msg->encoded = mmi_calloc(n_media + 1, sizeof *msg->encoded);
    if (!msg->parts || !msg->plans || !msg->encoded)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t i = 0; i < n_media; i++)
        MMI_TRY(plan_media(m, p, &media[i], i, n_embd, &msg->plans[i], fn));

    if (bos >= 0)
        MMI_TRY(push_token(&msg->ids, bos));
    /* Tokenize every stretch first (ids may move while growing), then point parts into it. */
    size_t *ends = mmi_array(n_inline + 1, sizeof *ends); /* ids after each stretch */
    if (!ends)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory", fn);
    const char *at = text, *end = text + len;
    mm_status st = MM_OK;
    for (size_t i = 0; i <= n_inline && st == MM_OK; i++) {
        size_t m_len = 0;
        const char *stop = i < n_inline ? mmi_media_find_marker(at, (size_t)(end - at), &m_len)
                                        : end;
        if (i > 0 && m->media_end >= 0)
            st = push_token(&msg->ids, m->media_end);
        if (stop > at && st == MM_OK)
            st = tokenize_stretch(m->tokenizer, text, at, stop, literal, n_literal, &msg->ids);
        if (i < n_inline && m->media_begin >= 0 && st == MM_OK)
            st = push_token(&msg->ids, m->media_begin);
        ends[i] = msg->ids.n;
        at = stop + m_len;
    }
    for (size_t i = 0; first && st == MM_OK && i < n_media; i++)
        msg->parts[msg->n_parts++] = (mmi_part){NULL, media[i].rows, msg->plans[i].n_rows,
                                                msg->plans[i].n_pos, &msg->plans[i]};
    size_t start = 0;
    for (size_t i = 0; i <= n_inline && st == MM_OK; i++) {
        /* No ids at all (an empty message): ids.ids is NULL and every stretch is empty. */
        size_t n = ends[i] - start;
        msg->parts[msg->n_parts++] = (mmi_part){n ? msg->ids.ids + start : NULL, NULL, n, (int)n,
                                                NULL};
        start = ends[i];
        if (i < n_inline)
            msg->parts[msg->n_parts++] = (mmi_part){NULL, media[i].rows, msg->plans[i].n_rows,
                                                    msg->plans[i].n_pos, &msg->plans[i]};
    }
    mmi_free(ends);
    return st;
}

mm_status mmi_message_encode(mmi_message *msg, const mm_model *m, const mmi_media_params *p,
                             const mmi_media *media, const atomic_int *cancel, const char *fn)
{
    for (size_t k = 0; k < msg->n_parts; k++) {
        mmi_part *part = &msg->parts[k];
        if (!part->plan || part->rows)
            continue;
        const mmi_media_plan *plan = part->plan;
        size_t i = (size_t)(plan - msg->plans);
        msg->encoded[i] = mmi_array(plan->n_rows * (size_t)plan->n_embd, sizeof(float));
        if (!msg->encoded[i])
            return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %zu rows of %s %zu", fn,
                            plan->n_rows, media[i].ops->kind, i);
        MMI_TRY(media[i].ops->encode(m, media[i].source, media[i].params ? media[i].params : p,
                                     plan, msg->encoded[i], cancel));
        part->rows = msg->encoded[i];
    }
    return MM_OK;
}

void mmi_message_free(mmi_message *msg)
{
    for (size_t i = 0; msg->encoded && i < msg->n_media; i++)
        mmi_free(msg->encoded[i]);
    mmi_free(msg->encoded);
    mmi_free(msg->parts);
    mmi_free(msg->plans);
    mmi_tokens_free(&msg->ids);
    memset(msg, 0, sizeof *msg);
}
