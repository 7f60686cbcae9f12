/* The language model: a decoder-only transformer read from a text-model GGUF. One code path
 * serves every family; a family is a row of the table in decoder.c (mmi_family below), found by
 * general.architecture, and the block branches only on its fields and the file's keys:
 *  - `llama` (docs/model-format.md §1): token embeddings, pre-RMSNorm blocks, RoPE on adjacent
 *    pairs (llama.cpp's ordering; Q/K rows are stored permuted), grouped- or multi-query
 *    attention, SwiGLU feed-forward, tied or separate output head;
 *  - `opt` (§2, BLIP-2's language model): learned absolute positions (row p + offset), LayerNorm
 *    with bias, pre-LN or post-LN blocks, plain feed-forward with the file's activation (ReLU),
 *    biases everywhere, final LayerNorm when present, tied head;
 *  - `qwen2` (§1b): llama's block with Q/K/V biases and RoPE on halves (NEOX ordering: the
 *    Q/K rows are stored as HF has them);
 *  - `qwen2vl` (§1e, Qwen2-VL's language model): qwen2's block with M-RoPE, positions of three
 *    numbers given by the caller for image rows (mmi_decoder_eval_at);
 *  - `phi3` (§1c): llama's block with Q, K, V in one attn_qkv tensor and gate, up in one
 *    ffn_up tensor (views at load), RoPE on halves, possibly on part of each head.
 *
 * Three things kept apart, as llama2.c does:
 *  - mmi_decoder_config: hyperparameters read from `<arch>.*` keys;
 *  - mmi_decoder_weights: f32 views of the tensors (in the mapped file, or converted once);
 *  - mmi_decoder_state: activations, KV cache and logits of one conversation, allocated once
 *    when the state is created; evaluation never allocates.
 * A loaded mmi_decoder is read-only, so many states (sessions) on many threads may share it. */
#ifndef MMI_DECODER_H
#define MMI_DECODER_H

#include <stdatomic.h>
#include <stdint.h>

#include "ops.h"
#include "weights.h"

/* How a family gives the model positions. */
typedef enum {
    MMI_POS_LEARNED, /* rows of position_embd added to the input (opt) */
    MMI_ROPE_NORM,   /* RoPE on adjacent pairs (2i, 2i+1): llama.cpp's `llama` ordering */
    MMI_ROPE_NEOX,   /* RoPE on halves (i, i + n_rot/2): HF's rotate_half */
    MMI_ROPE_MULTI   /* NEOX with three positions per row (time, height, width), each rotating
                        its section of the pairs (M-RoPE, Qwen2-VL) */
} mmi_pos_kind;

/* A decoder family: what its blocks hold and how they compute, as data. */
typedef struct {
    const char *arch;           /* general.architecture, also the prefix of its keys */
    mmi_pos_kind pos;
    int layer_norm;             /* LayerNorm with optional bias; 0: RMSNorm */
    const char *eps_key;        /* `<arch>.<eps_key>`: the norm epsilon */
    double eps_default;         /* when the key is absent; 0: the key is required */
    int gated_ffn;              /* down(silu(gate(h)) * up(h)); 0: down(act(up(h))) */
    int qkv_bias;               /* attn_q/k/v.bias are required (else optional) */
    int fused_qkv;              /* attn_qkv.weight holds Q, K, V rows: split into views */
    int fused_gate_up;          /* ffn_up.weight holds gate then up rows: split into views */
    int output_norm_optional;   /* post-LN files may end without output_norm */
} mmi_family;

/* The family row of general.architecture `arch`, or NULL. */
const mmi_family *mmi_family_find(const char *arch);

typedef struct {
    const mmi_family *family;
    int n_vocab;     /* V: rows of token_embd and of the output head */
    int n_embd;      /* E: residual width */
    int n_layer;     /* L */
    int n_ff;        /* F: feed-forward width */
    int n_head;      /* H query heads */
    int n_head_kv;   /* H_kv key/value heads; H is a multiple of it */
    int head_dim;    /* hd; query width H*hd, key/value width H_kv*hd */
    int n_rot;       /* leading dims of each head that RoPE rotates (even, <= hd) */
    int n_ctx_train; /* context the model was trained for (the default KV cache size) */
    float norm_eps;  /* RMSNorm or LayerNorm epsilon */
    float rope_base; /* theta_i = pos * base^(-2i/n_rot) */
    int n_pos_dims;  /* numbers per position: 1, or 3 with M-RoPE */
    int rope_sections[3]; /* M-RoPE: pairs rotated by time, height, width (sum n_rot/2) */
    int n_swa;       /* sliding window (<arch>.attention.sliding_window): a query at p sees
                        keys p - n_swa + 1 .. p; 0: every earlier key */
    /* What the file chooses within its family: */
    int pos_offset;  /* learned positions: position p reads row p + pos_offset */
    int n_pos;       /* learned positions: positions the table covers (rows - pos_offset) */
    int norm_before; /* 1: pre-LN blocks, x += f(norm(x)); 0: post-LN, x = norm(x + f(x)) */
    mmi_act ffn_act; /* act of the plain feed-forward */
} mmi_decoder_config;

typedef struct {
    const float *attn_norm;         /* [E] */
    const float *attn_norm_b;       /* [E] LayerNorm bias, or NULL */
    mmi_matrix wq, wk, wv, wo;      /* [E -> H*hd], [E -> H_kv*hd] x2, [H*hd -> E] */
    const float *bq, *bk, *bv, *bo; /* optional biases of the same output widths, or NULL */
    const float *ffn_norm;          /* [E] */
    const float *ffn_norm_b;        /* [E] LayerNorm bias, or NULL */
    mmi_matrix ffn_gate, ffn_up;    /* [E -> F]; ffn_gate only when gated */
    mmi_matrix ffn_down;            /* [F -> E] */
    const float *b_gate, *b_up, *b_down; /* optional, or NULL */
} mmi_decoder_layer;

typedef struct {
    mmi_matrix token_embd;     /* [V][E], rows read one token at a time */
    const float *pos_embd;     /* [pos_offset + n_pos][E] learned positions, or NULL (RoPE) */
    mmi_decoder_layer *layers; /* [L] */
    const float *output_norm;  /* [E]; NULL when an opt model has no final norm */
    const float *output_norm_b; /* [E] LayerNorm bias, or NULL */
    mmi_matrix output;         /* [E -> V]; token_embd itself when the embeddings are tied */
} mmi_decoder_weights;

typedef struct mmi_decoder mmi_decoder;
struct mmi_decoder {
    mmi_decoder_config config;
    mmi_decoder_weights weights;
    mmi_weights store; /* owns tensors converted to f32 at load */
};

/* Read the config and weights of a text-model file. MM_ERR_UNSUPPORTED for an architecture
 * other than llama or opt (or RoPE scaling, or OPT's project_in/out), MM_ERR_FORMAT naming the
 * key or tensor for anything missing, inconsistent or out of range. */
mm_status mmi_decoder_load(const mmi_gguf *g, mmi_decoder **out);
void mmi_decoder_free(mmi_decoder *d);

/* The run state of one sequence. Rows 0 .. n_past-1 of the KV cache hold the keys and values
 * of every position evaluated so far. */
typedef struct {
    int n_ctx;        /* KV cache rows: the most positions the sequence may hold */
    int n_batch;      /* the most rows one forward pass takes; longer inputs run in chunks */
    int n_past;       /* positions in the cache */
    int pos_delta;    /* rows added without explicit positions sit at n_past + i + pos_delta
                         on every dimension (HF's rope_deltas; 0 until positions are given) */
    float *x;         /* [n_batch][E] residual stream */
    float *xn;        /* [n_batch][E] normed input of a sublayer, then its output */
    float *q;         /* [n_batch][H*hd] queries */
    float *att;       /* [n_batch][H*hd] attention output before wo */
    float *gate, *up; /* [n_batch][F] */
    float *scores;    /* [n_batch][n_ctx] attention scratch */
    int32_t *pos;     /* [n_batch][n_pos_dims] positions of the rows in flight */
    float *k_cache;   /* [L][n_ctx][H_kv*hd], keys already rotated */
    float *v_cache;   /* [L][n_ctx][H_kv*hd] */
    float *logits;    /* [V] of the last evaluated position */
} mmi_decoder_state;

/* The largest context a state may hold (a count of positions, not a width: MMI_MAX_DIM bounds
 * widths). */
#define MMI_MAX_CTX (1 << 24)

/* Allocate a state for n_ctx positions (1 .. MMI_MAX_CTX, and at most n_pos with learned positions)
 * evaluated n_batch rows at a time (clamped to 1 .. n_ctx). MM_ERR_NOMEM names the size that
 * failed. */
mm_status mmi_decoder_state_init(mmi_decoder_state *s, const mmi_decoder *d, int n_ctx,
                                 int n_batch);
void mmi_decoder_state_free(mmi_decoder_state *s);

/* Append n rows at positions n_past .. n_past+n-1 and run them through the model; afterwards
 * s->logits holds the last row's logits and n_past has grown by n. Each row is tokens[i] (ids
 * checked by the caller to be < V) when tokens != NULL, else embd[i][0..E) (e.g. an image
 * embedding). all_logits, if not NULL, receives [n][V] logits of every row.
 * cancel (may be NULL) is read between layers: MM_ERR_CANCELLED. On any failure the sequence
 * is as before the call (n_past and logits unchanged). MM_ERR_CTX_FULL if n_past + n > n_ctx. */
mm_status mmi_decoder_eval(const mmi_decoder *d, mmi_decoder_state *s, const int32_t *tokens,
                           const float *embd, int n, float *all_logits, const atomic_int *cancel);
/* Positions pos[n][n_pos_dims] of the n = t*h*w rows of an image (or video) grid of t frames
 * of h x w cells (after any merging) starting at text position `start`: with M-RoPE the row of
 * cell (ti, hi, wi), in that order, is at (start + ti, start + hi, start + wi), as HF's
 * get_rope_index places image tokens; otherwise rows are start, start + 1, ... Returns the
 * position of the text that follows (start + max(t, h, w), or start + n). */
int64_t mmi_decoder_grid_positions(const mmi_decoder *d, int start, int t, int h, int w,
                                   int32_t *pos);

/* The same with the rows' positions given: pos[n][n_pos_dims] (NULL: as mmi_decoder_eval).
 * Later rows without positions continue after the largest given one (pos_delta), as HF's
 * get_rope_index and rope_deltas place text after an image. MM_ERR_ARG for a model with
 * learned positions. */
mm_status mmi_decoder_eval_at(const mmi_decoder *d, mmi_decoder_state *s, const int32_t *tokens,
                              const float *embd, const int32_t *pos, int n, float *all_logits,
                              const atomic_int *cancel);

#endif
