/* CLIP dual encoder (docs/model-format.md §4): the text tower (token + position embeddings,
 * causal pre-LN blocks, final LayerNorm, pooling at the end-of-text token, projection) and the
 * image projection of the vision tower's pooled output, in one joint space. */
#ifndef MMI_CLIP_H
#define MMI_CLIP_H

#include "tokenizer.h"
#include "vit.h"
#include "weights.h"

typedef struct mmi_clip_text mmi_clip_text; /* CLIP text tower and projections */
struct mmi_clip_text {
    /* config */
    int n_vocab, n_ctx, n_proj; /* Vt, Ct, Pj */
    int eos_id;
    int pool_argmax;            /* legacy pooling: at the largest id, not the first eos */
    float logit_scale;          /* raw, as learned: logits use exp(logit_scale) */
    mmi_encoder enc;            /* causal */
    /* weights */
    const float *tok_embd;      /* [Vt][Dt] */
    const float *pos_embd;      /* [Ct][Dt] */
    const float *post_ln_w, *post_ln_b; /* [Dt] */
    mmi_matrix text_proj;       /* [Dt -> Pj] */
    mmi_matrix visual_proj;     /* [D -> Pj] (D: the vision tower's width) */
    mmi_weights weights;
};

mm_status mmi_clip_text_load(const mmi_gguf *g, mmi_clip_text **out);
void mmi_clip_text_free(mmi_clip_text *c);

/* Row of the text tower's output that is pooled for these ids (HF's rule for this model). */
int mmi_clip_text_pool_index(const mmi_clip_text *c, const int32_t *ids, int n);
/* last_hidden_state out[n][Dt] (after the final LayerNorm) for token ids[0..n). MM_ERR_ARG for
 * an id outside the vocabulary, n < 1 or n > Ct. */
mm_status mmi_clip_text_hidden(const mmi_clip_text *c, const int32_t *ids, int n, float *out);
/* Projected text embedding out[Pj]; L2-normalised when normalize != 0. */
mm_status mmi_clip_text_embed(const mmi_clip_text *c, const int32_t *ids, int n, float *out,
                              int normalize);
/* The same for text through the tokenizer (start/end tokens added). Text longer than the
 * context is cut to Ct tokens whose last is the end token, as HF's truncation leaves it. */
mm_status mmi_clip_text_embed_string(const mmi_clip_text *c, const mmi_tokenizer *tok,
                                     const char *text, float *out, int normalize);
/* Projected image embedding out[Pj] from the tower's pooled output. */
mm_status mmi_clip_image_embed(const mmi_clip_text *c, const mmi_vision *v, const float *chw,
                               int width, int height, float *out, int normalize);
/* Scale x[n] to unit L2 norm (left as is when zero). */
void mmi_l2_normalize(float *x, int n);

#endif
