/* The projector from vision features into the language model's embedding space
 * (docs/model-format.md §3 "LLaVA projector"): `linear` (mm.0) or `mlp` (mm.0 -> act -> mm.2;
 * Qwen2-VL's `qwen2vl_merger` is one, on rows of 2x2 patches side by side);
 * the `qformer` (qformer.h) and `perceiver` (resampler.h) kinds dispatch from here. */
#ifndef MMI_CONNECTOR_H
#define MMI_CONNECTOR_H

#include <stddef.h>

#include "gguf.h"
#include "ops.h"
#include "qformer.h"
#include "resampler.h"
#include "weights.h"

typedef enum {
    MMI_CONNECTOR_NONE,   /* the file has no projector: features are the output */
    MMI_CONNECTOR_LINEAR,
    MMI_CONNECTOR_MLP,
    MMI_CONNECTOR_QFORMER,  /* BLIP-2: Nq tokens out */
    MMI_CONNECTOR_PERCEIVER /* Idefics2 / Flamingo resampler: Nl tokens out */
} mmi_connector_kind;

typedef struct {
    mmi_connector_kind kind;
    int n_in, n_out;     /* feature width in, embedding width out (mm.0's or mm.2's ne) */
    int n_hidden;        /* mm.0's output width */
    mmi_act act;         /* between mm.0 and mm.2 */
    mmi_matrix mm0, mm2; /* [n_in -> n_hidden], [n_hidden -> n_out] */
    const float *mm0_b, *mm2_b;
    int images_first;        /* the image goes in front of the prompt, BOS included (BLIP-2:
                                a Q-Former and no clip.image_token_id) */
    mmi_qformer qformer;     /* MMI_CONNECTOR_QFORMER */
    mmi_resampler resampler; /* MMI_CONNECTOR_PERCEIVER */
} mmi_connector;

/* Read clip.projector_type (absent with clip.has_llava_projector = true: `mlp`, as llama.cpp
 * assumes) and the mm.* tensors for features of width n_in. MM_ERR_UNSUPPORTED names an
 * unknown projector type. Free with mmi_connector_free (also after a failed load). */
mm_status mmi_connector_load(mmi_connector *c, const mmi_gguf *g, mmi_weights *w, int n_in);
void mmi_connector_free(mmi_connector *c);

/* Whether the connector reads the tower's output as HF's vision model returns it
 * (last_hidden_state: post_ln applied, class token kept) rather than LLaVA-style features. */
int mmi_connector_reads_last_state(const mmi_connector *c);

/* Tokens out for n feature tokens in, and the width of each. */
int mmi_connector_n_tokens(const mmi_connector *c, int n);
int mmi_connector_n_embd(const mmi_connector *c);
size_t mmi_connector_scratch_floats(const mmi_connector *c, int n);

/* out[n_tokens][n_embd] from x[n][n_in]. */
void mmi_connector_run(const mmi_connector *c, const float *x, int n, float *out, float *scratch);

#endif
