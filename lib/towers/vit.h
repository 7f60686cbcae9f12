/* The ViT image encoder of a `clip` file (docs/model-format.md §3-5): patch embeddings, a stack
 * of pre-LN transformer blocks (the same stack serves the CLIP text tower, causally), feature
 * layer selection, post-layernorm, SigLIP's attention-pooling head, and the connector into the
 * language model.
 *
 * hidden_states indices follow HF: 0 = the embeddings after pre_ln, k = the output of block
 * k-1. Inputs are planar normalized pixels chw[3][height][width]; every function allocates its
 * run state once per call, so a loaded mmi_vision is read-only and may be shared by threads. */
#ifndef MMI_VIT_H
#define MMI_VIT_H

#include <stdatomic.h>

#include "connector.h"
#include "mm.h"
#include "patchify.h"
#include "preprocess.h"
#include "weights.h"

/* One pre-LN block: x += out(attn(ln1(x))); x += fc2(act(fc1(ln2(x)))). */
typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* [D] */
    mmi_matrix qkv;               /* [D -> 3D] fused Q|K|V (data NULL when split) */
    const float *qkv_b;           /* [3D] or NULL */
    mmi_matrix q, k, v;           /* [D -> D] each when split */
    const float *q_b, *k_b, *v_b; /* [D] or NULL */
    mmi_matrix out;               /* [D -> D] */
    const float *out_b;
    mmi_matrix fc1, fc2;          /* [D -> F], [F -> D] */
    const float *fc1_b, *fc2_b;
} mmi_block;

typedef struct {
    int n_embd, n_ff, n_head, n_layer; /* D, F, heads, blocks */
    float eps;
    mmi_act act;
    int causal;
    float rope_base;   /* > 0: 2-D RoPE on Q and K at each token's (row, column) (Qwen2-VL) */
    mmi_block *blocks;
} mmi_encoder;

/* Dimensions from `<key_prefix>.embedding_length`, .feed_forward_length, .block_count,
 * .attention.head_count, .attention.layer_norm_epsilon; then the `<prefix>.blk.{i}.*`
 * tensors. act and causal are the caller's to set. */
mm_status mmi_encoder_load(mmi_encoder *enc, const mmi_gguf *g, mmi_weights *w,
                           const char *key_prefix, const char *prefix);
void mmi_encoder_free(mmi_encoder *enc);
size_t mmi_encoder_scratch_floats(const mmi_encoder *enc, int n_tokens, int n_seq);
/* Block `layer` in place on x[n][D], n_seq sequences of n / n_seq tokens one after another:
 * attention within each, every matrix product over all n rows. pos[n][2]: each token's (row,
 * column) when enc->rope_base is set, else NULL. */
void mmi_encoder_block(const mmi_encoder *enc, int layer, float *x, int n, int n_seq,
                       const int32_t *pos, float *scratch);
/* One sequence of n rows whose queries all attend to its first n_keys rows only (n_keys <= n):
 * the key padding mask of Whisper-style encoders, whose rows past n_keys are padding. */
void mmi_encoder_block_keys(const mmi_encoder *enc, int layer, float *x, int n, int n_keys,
                            float *scratch);
/* The activation a vision or text tower uses: `<key_prefix>.hidden_act`, else llama.cpp's
 * clip.use_silu / clip.use_gelu switches, else quick-GELU. */
mm_status mmi_tower_act(const mmi_gguf *g, const char *key_prefix, mmi_act *out);

#define MMI_MAX_FEATURE_LAYERS 8

/* SigLIP's pooling head: probe attends over the tokens, then a residual MLP. */
typedef struct {
    const float *probe;                   /* [D] */
    mmi_matrix q, k, v, out, fc1, fc2;
    const float *q_b, *k_b, *v_b, *out_b, *fc1_b, *fc2_b;
    const float *ln_w, *ln_b;
} mmi_pool_head;

typedef struct mmi_vision mmi_vision; /* preprocess config, ViT, connector */
struct mmi_vision {
    /* config */
    mmi_preprocess_config preprocess; /* image -> normalized pixels, from clip.vision.* keys */
    int image_size;            /* S: trained input side */
    int n_feature_layers;      /* hidden_states concatenated for the connector */
    int feature_layers[MMI_MAX_FEATURE_LAYERS];
    int drop_class;            /* feature_select = default: the class token is not a feature */
    mmi_encoder enc;
    mmi_patch_embed patch;
    /* weights (the block weights live in enc) */
    const float *pre_ln_w, *pre_ln_b;   /* [D] or NULL */
    const float *post_ln_w, *post_ln_b; /* [D] or NULL */
    mmi_pool_head head;                 /* probe NULL when absent */
    mmi_connector connector;
    const float *image_newline;         /* [connector width] LLaVA-1.6 (spatial_unpad): ends
                                           every row of tile features; NULL otherwise */
    /* Qwen2-VL (clip.projector_type qwen2vl_merger, §1e): patch rows in, 2-D RoPE in the
     * blocks, post_ln (the merger's ln_q), then the connector on 2x2 patches side by side */
    mmi_patch_grid grid;                /* merge 0 for the towers of fixed input size */
    mmi_matrix rows_embd;               /* [3·T·P·P -> D]: the Conv3d kernel on a patch row */
    float *rows_kernel;                 /* its data: the file's per-frame kernels interleaved */
    mmi_weights weights;                /* owns converted tensors */
};

mm_status mmi_vision_load(const mmi_gguf *g, mmi_vision **out);
void mmi_vision_free(mmi_vision *v);

/* Tokens the tower runs on for a width×height input (MM_ERR_ARG / MM_ERR_LIMIT when the input
 * is smaller than a patch or too large). */
mm_status mmi_vision_tower_tokens(const mmi_vision *v, int width, int height, int *n_tokens);

/* out[t][j·D .. j·D+D) = hidden_states[layers[j]][t] for every tower token t. cancel (may be
 * NULL) is checked between blocks: MM_ERR_CANCELLED when set. */
mm_status mmi_vision_hidden_states(const mmi_vision *v, const float *chw, int width, int height,
                                   const int *layers, int n_layers, float *out,
                                   const atomic_int *cancel);

/* post_layernorm on rows of x[n][D] in place; MM_ERR_FORMAT when the file has none. */
mm_status mmi_vision_post_ln(const mmi_vision *v, float *x, int n);

/* The pooled image vector out[D]: SigLIP's head on post_ln(last state) when the file has the
 * head, else post_ln(class token of the last state) (CLIP). */
mm_status mmi_vision_pooled(const mmi_vision *v, const float *chw, int width, int height,
                            float *out, const atomic_int *cancel);

/* What mmi_vision_encode produces for a width×height input. */
mm_status mmi_vision_output_shape(const mmi_vision *v, int width, int height, int *n_tokens,
                                  int *n_embd);
/* The image embeddings out[n_tokens][n_embd]: with a projector, the projected feature tokens
 * (what replaces the image in the language model's input); without one, the tower's last
 * hidden state as HF's vision model returns it (post_ln applied only for towers without a class
 * token, i.e. SigLIP). A Q-Former or resampler reads that last state too: post_ln applied,
 * class token kept. */
mm_status mmi_vision_encode(const mmi_vision *v, const float *chw, int width, int height,
                            float *out, const atomic_int *cancel);
/* The same for n_views views chw[n_views][3][height][width] run as one batch:
 * out[n_views][n_tokens][n_embd], view by view. */
mm_status mmi_vision_encode_views(const mmi_vision *v, const float *chw, int n_views, int width,
                                  int height, float *out, const atomic_int *cancel);

/* Qwen2-VL: pos[t·h·w][2], the (row, column) of each patch row of grid (t, h, w) in
 * merge-window order, the same for every frame (what the 2-D RoPE turns by). */
void mmi_vision_patch_positions(const mmi_vision *v, const int grid[3], int32_t *pos);
/* Qwen2-VL: the last block's output x[t·h·w][D] for patch rows[t·h·w][3·T·P·P] in
 * merge-window order (mmi_preprocess_patch_rows) of grid (t, h, w) patches; each frame's
 * patches attend to each other. MM_ERR_ARG for a grid the tower cannot take. */
mm_status mmi_vision_patch_rows_hidden(const mmi_vision *v, const float *rows, const int grid[3],
                                       float *x, const atomic_int *cancel);
/* The image embeddings out[t·h·w / merge²][n_embd]: the merger on those states. */
mm_status mmi_vision_encode_patch_rows(const mmi_vision *v, const float *rows, const int grid[3],
                                       float *out, const atomic_int *cancel);

/* Preprocess an image as the file says (one view of the whole image) into views. */
mm_status mmi_vision_preprocess(const mmi_vision *v, const mm_image *image, mmi_views *views);

#endif
