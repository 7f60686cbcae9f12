/* BLIP-2's Q-Former (docs/model-format.md §6): Nq learned queries pass through BERT-style
 * post-LN blocks — self-attention over the queries, cross-attention to the vision features on
 * every `cross_attention_frequency`-th block, feed-forward — and the language projection maps
 * them to Nq embeddings for the language model, whatever the number of vision tokens. */
#ifndef MMI_QFORMER_H
#define MMI_QFORMER_H

#include <stddef.h>

#include "gguf.h"
#include "ops.h"
#include "weights.h"

typedef struct {
    int n_embd;     /* Dq */
    int n_ff;       /* Fq */
    int n_block;    /* Lq */
    int n_head;     /* Hq; head dim Dq/Hq in self- and cross-attention */
    int n_query;    /* Nq: queries in = embeddings out */
    int n_vision;   /* D: width of the vision features the cross-attention reads */
    int n_out;      /* E: width of the language model's embeddings */
    int cross_freq; /* block i has cross-attention iff i % cross_freq == 0 */
    float eps;      /* every LayerNorm */
    mmi_act act;    /* feed-forward activation */
} mmi_qformer_config;

/* One attention sublayer with its residual LayerNorm: x = ln(x + out(attn(q(x), k(y), v(y)))). */
typedef struct {
    mmi_matrix q, k, v, out;     /* [Dq -> Dq]; k, v read Dq (self) or D (cross) wide rows */
    const float *q_b, *k_b, *v_b, *out_b; /* [Dq] each */
    const float *ln_w, *ln_b;    /* [Dq] */
} mmi_qformer_attn;

typedef struct {
    mmi_qformer_attn self;
    mmi_qformer_attn cross;       /* all NULL on blocks without cross-attention */
    mmi_matrix ffn_up, ffn_down;  /* [Dq -> Fq], [Fq -> Dq] */
    const float *ffn_up_b, *ffn_down_b, *ffn_ln_w, *ffn_ln_b;
} mmi_qformer_block;

typedef struct {
    mmi_qformer_config cfg;
    const float *query;                 /* [Nq][Dq] */
    const float *embd_ln_w, *embd_ln_b; /* [Dq], applied to the queries first */
    mmi_qformer_block *blocks;          /* [Lq], owned */
    mmi_matrix proj;                    /* [Dq -> E] language projection */
    const float *proj_b;                /* [E] */
} mmi_qformer;

/* Read clip.qformer.* and the qformer.* / mm.proj tensors of g for vision features n_vision
 * wide (must equal clip.qformer.encoder_width). Converted tensors are owned by w. On failure
 * nothing needs freeing but w. */
mm_status mmi_qformer_load(mmi_qformer *qf, const mmi_gguf *g, mmi_weights *w, int n_vision);
void mmi_qformer_free(mmi_qformer *qf);

/* Floats of scratch for n_vision_tokens feature rows (run and encode alike). */
size_t mmi_qformer_scratch_floats(const mmi_qformer *qf, int n_vision_tokens);

/* hidden[Nq][Dq] = the Q-Former's last hidden state for vision[n][D] (HF qformer_output). */
void mmi_qformer_encode(const mmi_qformer *qf, const float *vision, int n, float *hidden,
                        float *scratch);
/* out[Nq][E] = language projection of the encoding: the image's embeddings. */
void mmi_qformer_run(const mmi_qformer *qf, const float *vision, int n, float *out,
                     float *scratch);

#endif
