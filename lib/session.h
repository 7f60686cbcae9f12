/* Sessions: one conversation on a model — its KV cache, chat state, sampler and generation
 * loop. The exported mm_session_* functions in api.c check their arguments and call these.
 * A session is used by one thread at a time; mmi_session_cancel may come from any thread. */
#ifndef MMI_SESSION_H
#define MMI_SESSION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "mm.h"

mm_status mmi_session_create(mm_model *model, const mm_options *options, mm_session **out);
/* The model the session runs on. */
const mm_model *mmi_session_model(const mm_session *s);
void mmi_session_free(mm_session *s);
/* MM_ERR_STATE, naming fn, while the session's piece callback runs: a callback must not use
 * its own session (mm_session_cancel excepted). */
mm_status mmi_session_check_reentry(const mm_session *s, const char *fn);
mm_status mmi_session_set_options(mm_session *s, const mm_options *options);

mm_status mmi_session_add_text(mm_session *s, const char *text, size_t len, unsigned flags);
mm_status mmi_session_add_tokens(mm_session *s, const int32_t *ids, size_t n);
mm_status mmi_session_add_embeddings(mm_session *s, const float *embd, size_t n_rows,
                                     size_t n_embd);

/* A message's image: n_rows rows of the model's embedding width, given (embd) or, when embd
 * is NULL, produced by the message's encoder into a buffer the session provides. */
typedef struct {
    const float *embd;
    size_t n_rows;
} mmi_media;

/* Fills out[n_rows][n_embd] for image `index`; reads cancel between layers. */
typedef mm_status (*mmi_media_encoder)(void *user, size_t index, float *out,
                                       const atomic_int *cancel);

/* A chat message: the template's text for `role` around text[0..len), with media[i] at the
 * i-th MMI_IMAGE_MARKER (or, when the text has no marker, each at the start followed by the
 * template's image_suffix). Images without embd are encoded (encode(user, i, ...)) after the
 * whole message is known to fit in the context, before anything is evaluated. */
mm_status mmi_session_add_message(mm_session *s, mmi_chat_role role, const char *text, size_t len,
                                  const mmi_media *media, size_t n_media,
                                  mmi_media_encoder encode, void *user);
/* The same with pictures, each preprocessed and encoded by the model's vision tower (one view
 * of the trained size per image). */
mm_status mmi_session_add_message_images(mm_session *s, mmi_chat_role role, const char *text,
                                         size_t len, const mm_image *const *images,
                                         size_t n_images);

/* The same with images decoded on demand: decode(user, i, &image) runs for image i once the
 * message is known to fit, just before that image is encoded, and the image is freed once
 * preprocessed: one decoded picture is in memory at a time. */
typedef mm_status (*mmi_image_decoder)(void *user, size_t index, mm_image **out);
mm_status mmi_session_add_message_decoding(mm_session *s, mmi_chat_role role, const char *text,
                                           size_t len, size_t n_images, mmi_image_decoder decode,
                                           void *user);
/* Positions one image takes in this session (0 without a vision encoder). */
mm_status mmi_session_image_positions(const mm_session *s, int *n);

mm_status mmi_session_add_stop_string(mm_session *s, const char *stop);
void mmi_session_clear_stop_strings(mm_session *s);

mm_status mmi_session_next(mm_session *s, int32_t *token, const char **piece, size_t *len);
mm_status mmi_session_generate(mm_session *s, const mm_options *options, mm_piece_fn fn,
                               void *user);
mm_stop_reason mmi_session_stop_reason(const mm_session *s);

mm_status mmi_session_logits(const mm_session *s, const float **logits, size_t *n_vocab);
int mmi_session_n_ctx(const mm_session *s);
int mmi_session_n_past(const mm_session *s);
int mmi_session_n_embd(const mm_session *s); /* width of an embedding row */
const char *mmi_session_template_name(const mm_session *s);
/* What each position 0 .. n_past-1 holds: a token id, or -1 for an embedding row. */
const int32_t *mmi_session_history(const mm_session *s);

void mmi_session_cancel(mm_session *s);
void mmi_session_reset(mm_session *s);

#endif
