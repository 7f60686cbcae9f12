/* The projector from vision features into the language model's embedding space
 * (docs/model-format.md §3 "LLaVA projector"): `linear` (mm.0) or `mlp` (mm.0 -> act -> mm.2).
 * The Q-Former and Perceiver kinds dispatch from here too once they land. */
#ifndef MMI_CONNECTOR_H
#define MMI_CONNECTOR_H

#include <stddef.h>

#include "gguf.h"
#include "ops.h"
#include "weights.h"

typedef enum {
    MMI_CONNECTOR_NONE,   /* the file has no projector: features are the output */
    MMI_CONNECTOR_LINEAR,
    MMI_CONNECTOR_MLP
} mmi_connector_kind;

typedef struct {
    mmi_connector_kind kind;
    int n_in, n_out;     /* feature width in, embedding width out (mm.0's ne) */
    mmi_act act;         /* between mm.0 and mm.2 */
    mmi_matrix mm0, mm2; /* [n_in -> n_out], [n_out -> n_out] */
    const float *mm0_b, *mm2_b;
} mmi_connector;

/* Read clip.projector_type (absent with clip.has_llava_projector = true: `mlp`, as llama.cpp
 * assumes) and the mm.* tensors for features of width n_in. MM_ERR_UNSUPPORTED names an
 * unknown projector type. */
mm_status mmi_connector_load(mmi_connector *c, const mmi_gguf *g, mmi_weights *w, int n_in);

/* Tokens out for n feature tokens in, and the width of each. */
int mmi_connector_n_tokens(const mmi_connector *c, int n);
int mmi_connector_n_embd(const mmi_connector *c);
size_t mmi_connector_scratch_floats(const mmi_connector *c, int n);

/* out[n_tokens][n_embd] from x[n][n_in]. */
void mmi_connector_run(const mmi_connector *c, const float *x, int n, float *out, float *scratch);

#endif
