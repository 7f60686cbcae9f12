/* Sessions: one conversation on a model — its KV cache, chat state, sampler and generation
 * loop. The exported mm_session_* functions in api.c check their arguments and call these.
 * A session is used by one thread at a time; mmi_session_cancel may come from any thread. */
#ifndef MMI_SESSION_H
#define MMI_SESSION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "media.h"
#include "mm.h"

mm_status mmi_session_create(mm_model *model, const mm_options *options, mm_session **out);
/* The model the session runs on. */
const mm_model *mmi_session_model(const mm_session *s);
/* The choices media of this session are planned with (detail). */
const mmi_media_params *mmi_session_media_params(const mm_session *s);
void mmi_session_free(mm_session *s);
/* MM_ERR_STATE, naming fn, while the session's piece callback runs: a callback must not use
 * its own session (mm_session_cancel excepted). */
mm_status mmi_session_check_reentry(const mm_session *s, const char *fn);
mm_status mmi_session_set_options(mm_session *s, const mm_options *options);

mm_status mmi_session_add_text(mm_session *s, const char *text, size_t len, unsigned flags);
mm_status mmi_session_add_tokens(mm_session *s, const int32_t *ids, size_t n);
mm_status mmi_session_add_embeddings(mm_session *s, const float *embd, size_t n_rows,
                                     size_t n_embd);

/* A chat message: the template's text for `role` around text[0..len), with media[i] at the
 * i-th media marker (MMI_MEDIA_MARKER or MMI_IMAGE_MARKER; when the text has none, each at the
 * start followed by the template's image_suffix). The whole message is planned and checked
 * against the context before any media is encoded, and encoded before anything is evaluated. */
mm_status mmi_session_add_message(mm_session *s, mmi_chat_role role, const char *text, size_t len,
                                  const mmi_media *media, size_t n_media);
/* The same with pictures (mmi_image_ops), encoded at the session's detail level. */
mm_status mmi_session_add_message_images(mm_session *s, mmi_chat_role role, const char *text,
                                         size_t len, const mm_image *const *images,
                                         size_t n_images);

mm_status mmi_session_add_stop_string(mm_session *s, const char *stop);
void mmi_session_clear_stop_strings(mm_session *s);
/* Stop strings are kept in the order added; drop all but the first `keep` (a call that adds
 * its own for one generation takes them away again). */
size_t mmi_session_n_stop_strings(const mm_session *s);
void mmi_session_drop_stop_strings(mm_session *s, size_t keep);

mm_status mmi_session_next(mm_session *s, int32_t *token, const char **piece, size_t *len);
mm_status mmi_session_generate(mm_session *s, const mm_options *options, mm_piece_fn fn,
                               void *user);
mm_stop_reason mmi_session_stop_reason(const mm_session *s);
/* Tokens sampled by the current or last generation (the end-of-generation token included). */
int mmi_session_n_generated(const mm_session *s);
/* The stop string that ended the last generation; NULL when it ended otherwise. */
const char *mmi_session_matched_stop(const mm_session *s);

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
