/* The audio tower of a `clip` file with clip.has_audio_encoder (llama.cpp's mmproj layout:
 * clip.audio.* keys, a.* and mm.a.* tensors; docs/model-format.md): Whisper's encoder and
 * Qwen2-Audio's connector.
 *
 *   clip (16 kHz) -> chunks of 2 · n_ctx feature frames (30 s for Whisper's 1500 positions)
 *   each chunk: log-mel [n_mels][2 n_ctx] (mel.h)
 *     -> conv1 (k 3, pad 1) -> GELU -> conv2 (k 3, stride 2, pad 1) -> GELU   [n_ctx][D]
 *        (each a GEMM over unfolded frames)
 *     -> + a.position_embd -> pre-LN blocks (the ViT's, mmi_encoder) -> avg pool (k 2, s 2,
 *        qwen2a) -> a.post_ln -> mm.a.fc                                        [n_tok][E]
 *
 * Rows whose frames lie past the clip's end are padding: the blocks' keys stop at the last
 * real conv2 row (HF's key padding mask), and only the real rows are encoded and kept,
 * ((L - 1) / 2 + 1 - 2) / 2 + 1 of them for L real frames (HF's num_audio_tokens). */
#ifndef MMI_TOWER_AUDIO_H
#define MMI_TOWER_AUDIO_H

#include <stdatomic.h>

#include "gguf.h"
#include "mel.h"
#include "ops.h"
#include "vit.h"
#include "weights.h"

typedef struct mmi_audio_tower mmi_audio_tower;

struct mmi_audio_tower {
    /* config */
    int n_mels;      /* feature bands: clip.audio.num_mel_bins */
    int n_ctx;       /* encoder positions per chunk (rows of a.position_embd) */
    int pool;        /* rows averaged after the blocks: 2 (qwen2a) */
    int n_out;       /* embedding width out (the projector's) */
    mmi_mel mel;     /* per chunk: n_mels × 2 n_ctx frames */
    mmi_encoder enc;
    /* weights (the block weights live in enc) */
    mmi_matrix conv1, conv2;       /* [3 n_mels -> D], [3 D -> D]: rows out, (channel, tap) in */
    const float *conv1_b, *conv2_b; /* [D] */
    const float *pos;              /* [n_ctx][D] */
    const float *post_ln_w, *post_ln_b;
    mmi_matrix proj;               /* mm.a.fc: [D -> n_out] */
    const float *proj_b;
    mmi_weights weights;
};

mm_status mmi_audio_tower_load(const mmi_gguf *g, mmi_audio_tower **out);
void mmi_audio_tower_free(mmi_audio_tower *t);

/* Samples of one chunk at 16 kHz. */
size_t mmi_audio_chunk_samples(const mmi_audio_tower *t);
/* Embedding rows of n samples (16 kHz) of audio: the sum over its chunks. */
size_t mmi_audio_tower_rows(const mmi_audio_tower *t, size_t n);

/* One chunk, from its features [n_mels][2 n_ctx] with n_frames real frames: the encoder input
 * x0[n_ctx][D] (conv + positions; may be NULL), then n_rows rows (the real ones, or all n_ctx
 * for a caller that wants the padding rows too) through the blocks, pooled into
 * enc_out[n_rows / pool][D] (after post_ln) and projected into out[n_rows / pool][n_out].
 * x0 and enc_out may be NULL. cancel is read between blocks. */
mm_status mmi_audio_tower_chunk(const mmi_audio_tower *t, const float *features, int n_frames,
                                int n_rows, float *x0, float *enc_out, float *out,
                                const atomic_int *cancel);

/* All rows of a 16 kHz clip: out[mmi_audio_tower_rows(t, n)][n_out]. */
mm_status mmi_audio_tower_encode(const mmi_audio_tower *t, const float *samples, size_t n,
                                 float *out, const atomic_int *cancel);

#endif
