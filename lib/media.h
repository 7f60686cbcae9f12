/* One path for the media of a message (images today; audio, video and points later).
 *
 * A message is an ordered list of parts: stretches of text (token ids) and media, each media
 * item at a marker in the text (or all in front of it for models that take them there). Every
 * part has a plan -- the rows it adds, the positions they take -- computed before any work, so
 * the caller can refuse a message that does not fit before anything is decoded or encoded.
 * Each kind of media is one row of ops (plan, encode); the session evaluates parts without
 * knowing their kind. Calls flow one way: session -> media -> tower_* -> encoder/connector. */
#ifndef MMI_MEDIA_H
#define MMI_MEDIA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "preprocess.h"
#include "tokenizer.h"

/* Where a media item goes in a message's text; "<image>" (MMI_IMAGE_MARKER) and "<audio>" are
 * aliases. */
#define MMI_MEDIA_MARKER "<media>"
#define MMI_AUDIO_MARKER "<audio>"

/* What a media item costs, known before it is encoded. */
typedef struct {
    size_t n_rows; /* embedding rows it adds to the context */
    int n_pos;     /* how far the positions of the text after it move on: n_rows, or with
                      M-RoPE max(t, h, w) of its grid (llama.cpp mtmd's n_pos) */
    int n_views;   /* views the tower runs on: 1, or the tiles plus the overview */
    int n_embd;    /* width of each row */
    int grid[3];   /* rows laid out on a grid of (t, h, w) cells (Qwen2-VL), placed with
                      mmi_decoder_grid_positions; all 0 for rows in a line */
} mmi_media_plan;

/* The caller's choices that shape a plan. */
typedef struct {
    mmi_detail detail; /* images: one view, or the model's tiling */
} mmi_media_params;

/* MM_OPT_IMAGE_DETAIL: "low", or "high" / "auto" (the default; the same: the model's tiling
 * when it has one, else one view). MM_ERR_ARG names another value. */
mm_status mmi_media_params_from_options(const mm_options *o, mmi_media_params *out);

/* One row per kind of media. plan must give exactly what encode then produces. */
typedef struct {
    const char *kind; /* "image" */
    mm_status (*plan)(const mm_model *m, const void *source, const mmi_media_params *p,
                      mmi_media_plan *out);
    /* rows[plan->n_rows][plan->n_embd]; cancel (may be NULL) is read between layers. */
    mm_status (*encode)(const mm_model *m, const void *source, const mmi_media_params *p,
                        const mmi_media_plan *plan, float *rows, const atomic_int *cancel);
} mmi_media_ops;

extern const mmi_media_ops mmi_image_ops; /* tower_vision.c: source is an mm_image */
/* The image row's plan from the size alone (what mm_image_token_count reports). */
mm_status mmi_image_plan(const mm_model *m, int width, int height, const mmi_media_params *p,
                         mmi_media_plan *out);
extern const mmi_media_ops mmi_audio_ops; /* tower_audio.c: source is an mm_audio */

/* The public handle of one media item: what it is and the image or clip it borrows. */
struct mm_media {
    const mmi_media_ops *ops;
    const void *source;
};

/* A PNG or JPEG file's bytes, decoded with options' limits only while it is encoded. */
typedef struct {
    const void *data;
    size_t size;
    const mm_options *options;
    const char *place; /* put in front of its errors, e.g. "messages[2], part 1" */
} mmi_image_bytes;
extern const mmi_media_ops mmi_image_bytes_ops; /* tower_vision.c: source is mmi_image_bytes */

/* A media item of a message: rows given by the caller (ops NULL), or a source its ops plan
 * and encode, with its own params (e.g. a chat JSON part's "detail") or, when NULL, the
 * message's. */
typedef struct {
    const float *rows;
    size_t n_rows;
    const mmi_media_ops *ops;
    const void *source;
    const mmi_media_params *params;
} mmi_media;

/* A run of a message's input: token ids, or rows of one media item (ids NULL). */
typedef struct {
    const int32_t *ids;
    const float *rows; /* NULL until encoded */
    size_t n;          /* ids or rows */
    int n_pos;         /* positions the part takes */
    const mmi_media_plan *plan; /* a media part's plan (in its message); NULL for text */
} mmi_part;

typedef struct {
    mmi_part *parts;
    size_t n_parts;
    mmi_media_plan *plans; /* [n_media] */
    size_t n_media;
    mmi_tokens ids;        /* every text part's ids, one after another */
    float **encoded;       /* [n_media] rows mmi_message_encode made */
} mmi_message;

/* The next marker in text[0..len) (either spelling) and its length; NULL when none. */
const char *mmi_media_find_marker(const char *text, size_t len, size_t *marker_len);
size_t mmi_media_count_markers(const char *text, size_t len);

/* A message's own text against its media: markers for all of them or none (then they go at
 * the start); none at all when the model takes media in front of the text. */
mm_status mmi_media_check_markers(const char *text, size_t len, size_t n_media, int first,
                                  const char *fn);

/* Whether the model takes its media in front of the text, BOS included (BLIP-2). */
int mmi_media_first(const mm_model *m);

/* Plan every media item, then split text (a rendered message: its first n_media markers are
 * where the media go, unless `first`) into parts, each stretch between markers tokenized on its
 * own as llama.cpp's multimodal tool does; the `literal` spans of text (the caller's words) stay
 * text, so only the template's markup produces control tokens; bos (>= 0) goes in front of the
 * text. Nothing is encoded. */
mm_status mmi_message_plan(mmi_message *msg, const mm_model *m, const mmi_media_params *p,
                           const char *text, size_t len, const mmi_text_span *literal,
                           size_t n_literal, int32_t bos, const mmi_media *media, size_t n_media,
                           int first, int n_embd, const char *fn);
/* Encode the media items that have no rows yet into the parts. */
mm_status mmi_message_encode(mmi_message *msg, const mm_model *m, const mmi_media_params *p,
                             const mmi_media *media, const atomic_int *cancel, const char *fn);
void mmi_message_free(mmi_message *msg);

#endif
