/* Perceiver resampler (docs/model-format.md §7): Nl learned latents cross-attend to
 * [context; latents] through Lr blocks and come out as Nl image tokens, whatever the number of
 * context rows. Two forms, told apart by the file:
 *   Idefics2 — RMSNorm (`clip.perceiver.norm = rms`), grouped KV heads, gated MLP
 *              (`ffn_gate` present: down(act(gate(m)) * up(m)), SwiGLU with silu);
 *   Flamingo — LayerNorm with bias (`norm = layer`), plain MLP (no `ffn_gate`: down(act(up(m)))),
 *              GELU. */
#ifndef MMI_RESAMPLER_H
#define MMI_RESAMPLER_H

#include <stddef.h>

#include "gguf.h"
#include "ops.h"
#include "weights.h"

typedef struct {
    int n_embd;    /* Dr: width of context rows, latents and output */
    int n_block;   /* Lr */
    int n_latent;  /* Nl: tokens out */
    int n_head;    /* Hr query heads */
    int n_head_kv; /* Hr_kv key/value heads (query head h reads KV head h / (Hr/Hr_kv)) */
    int head_dim;  /* hd_r, need not be Dr/Hr; scores scaled by 1/sqrt(hd_r) */
    int n_ff;      /* Fr */
    int layer_norm; /* 0: RMSNorm (weight only); 1: LayerNorm (weight and bias) */
    int gated;     /* 1: down(act(gate(m)) * up(m)); 0: down(act(up(m))) */
    float eps;
    mmi_act act;
} mmi_resampler_config;

typedef struct {
    const float *w, *b; /* [Dr]; b NULL for RMSNorm */
} mmi_resampler_norm;

typedef struct {
    mmi_resampler_norm ln_latents, ln_context, ffn_norm;
    mmi_matrix attn_q;     /* [Dr -> Hr*hd] */
    mmi_matrix attn_k, attn_v; /* [Dr -> Hr_kv*hd] */
    mmi_matrix attn_out;   /* [Hr*hd -> Dr] */
    mmi_matrix ffn_gate;   /* [Dr -> Fr], data NULL when not gated */
    mmi_matrix ffn_up;     /* [Dr -> Fr] */
    mmi_matrix ffn_down;   /* [Fr -> Dr] */
} mmi_resampler_block;

typedef struct {
    mmi_resampler_config cfg;
    const float *latents;          /* [Nl][Dr] */
    mmi_resampler_block *blocks;   /* [Lr], owned */
    mmi_resampler_norm post_ln;
} mmi_resampler;

/* Read clip.perceiver.* and the perceiver.* tensors of g for context rows n_in wide (must equal
 * clip.perceiver.embedding_length). Converted tensors are owned by w. On failure nothing needs
 * freeing but w. */
mm_status mmi_resampler_load(mmi_resampler *r, const mmi_gguf *g, mmi_weights *w, int n_in);
void mmi_resampler_free(mmi_resampler *r);

size_t mmi_resampler_scratch_floats(const mmi_resampler *r, int n_context);

/* out[Nl][Dr] for context[n][Dr], n >= 1. Every context row is attended: to apply a padding
 * mask, pass only the unmasked rows (masked keys get zero weight, so the result is the same). */
void mmi_resampler_run(const mmi_resampler *r, const float *context, int n, float *out,
                       float *scratch);

#endif
