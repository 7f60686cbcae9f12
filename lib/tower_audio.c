/* The Whisper-style audio tower and its connector (see tower_audio.h). */
#include "tower_audio.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "audio.h"
#include "resample.h"
#include "media.h"
#include "status.h"

#define MAX_MELS 512
#define MAX_CTX 16384 /* positions per chunk: Whisper has 1500 */

/* ---- loading ---- */

/* conv{i}: HF [D][C][3] (ggml ne [3, C, D]) read as a matrix [D][3 C]: out row, then
 * (channel, tap) — the order the frames are unfolded in. */
static mm_status load_conv(mmi_audio_tower *t, int i, int C, int D, mmi_matrix *w,
                           const float **b)
{
    const uint64_t ne[3] = {3, (uint64_t)C, (uint64_t)D};
    const float *data;
    MMI_TRY(mmi_weights_get(&t->weights, 1, &data, 3, ne, "a.conv1d.%d.weight", i));
    *w = (mmi_matrix){data, 3 * C, D, MMI_TENSOR_F32};
    return mmi_weights_vector(&t->weights, 1, b, D, "a.conv1d.%d.bias", i);
}

static mm_status projector_type(const mmi_gguf *g, const char **out)
{
    const char *key = mmi_gguf_has(g, "clip.audio.projector_type") ? "clip.audio.projector_type"
                                                                    : "clip.projector_type";
    return mmi_gguf_get_string(g, key, out, NULL);
}

static mm_status load(mmi_audio_tower *t, const mmi_gguf *g)
{
    const char *path = mmi_gguf_path(g);
    mmi_weights_init(&t->weights, g);
    const char *type;
    MMI_TRY(projector_type(g, &type));
    if (strcmp(type, "qwen2a") != 0)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: audio projector type '%s' is not supported "
                        "(supported: qwen2a)", path, type);
    t->pool = 2;
    MMI_TRY(mmi_weights_dim(g, "clip.audio.num_mel_bins", MAX_MELS, &t->n_mels));
    MMI_TRY(mmi_encoder_load(&t->enc, g, &t->weights, "clip.audio", "a"));
    /* Whisper's activation is exact GELU; a file may say otherwise. */
    t->enc.act = MMI_ACT_GELU;
    if (mmi_gguf_has(g, "clip.audio.hidden_act"))
        MMI_TRY(mmi_tower_act(g, "clip.audio", &t->enc.act));
    int D = t->enc.n_embd;
    const mmi_tensor *pos = mmi_gguf_find_tensor(g, "a.position_embd.weight");
    if (!pos || pos->ne[1] < 1 || pos->ne[1] > MAX_CTX)
        return mmi_fail(MM_ERR_FORMAT, "%s: a.position_embd.weight is missing or has more than "
                        "%d rows", path, MAX_CTX);
    t->n_ctx = (int)pos->ne[1];
    const uint64_t pos_ne[2] = {(uint64_t)D, (uint64_t)t->n_ctx};
    MMI_TRY(mmi_weights_get(&t->weights, 1, &t->pos, 2, pos_ne, "a.position_embd.weight"));
    MMI_TRY(load_conv(t, 1, t->n_mels, D, &t->conv1, &t->conv1_b));
    MMI_TRY(load_conv(t, 2, D, D, &t->conv2, &t->conv2_b));
    MMI_TRY(mmi_weights_vector(&t->weights, 1, &t->post_ln_w, D, "a.post_ln.weight"));
    MMI_TRY(mmi_weights_vector(&t->weights, 1, &t->post_ln_b, D, "a.post_ln.bias"));
    const mmi_tensor *fc = mmi_gguf_find_tensor(g, "mm.a.fc.weight");
    if (!fc || fc->n_dims != 2 || fc->ne[1] < 1 || fc->ne[1] > MMI_MAX_DIM)
        return mmi_fail(MM_ERR_FORMAT, "%s: mm.a.fc.weight is missing or not a matrix", path);
    t->n_out = (int)fc->ne[1];
    MMI_TRY(mmi_weights_matrix(&t->weights, 1, &t->proj, D, t->n_out, "mm.a.fc.weight"));
    MMI_TRY(mmi_weights_vector(&t->weights, 0, &t->proj_b, t->n_out, "mm.a.fc.bias"));
    return mmi_mel_init(&t->mel, t->n_mels, 2 * t->n_ctx);
}

mm_status mmi_audio_tower_load(const mmi_gguf *g, mmi_audio_tower **out)
{
    mmi_audio_tower *t = mmi_calloc(1, sizeof *t);
    if (!t)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the audio tower", mmi_gguf_path(g));
    mm_status st = load(t, g);
    if (st != MM_OK) {
        mmi_audio_tower_free(t);
        return st;
    }
    *out = t;
    return MM_OK;
}

void mmi_audio_tower_free(mmi_audio_tower *t)
{
    if (!t)
        return;
    mmi_mel_free(&t->mel);
    mmi_encoder_free(&t->enc);
    mmi_weights_free(&t->weights);
    mmi_free(t);
}

/* ---- sizes ---- */

size_t mmi_audio_chunk_samples(const mmi_audio_tower *t)
{
    return (size_t)t->mel.n_frames * MMI_MEL_HOP;
}

/* Real conv2 rows of a chunk with n_frames real frames (stride 2, pad 1, kernel 3). */
static int real_rows(int n_frames)
{
    return (n_frames - 1) / 2 + 1;
}

size_t mmi_audio_tower_rows(const mmi_audio_tower *t, size_t n)
{
    size_t chunk = mmi_audio_chunk_samples(t), rows = 0;
    for (size_t at = 0; at < n; at += chunk) {
        size_t len = n - at < chunk ? n - at : chunk;
        int frames = (int)((len + MMI_MEL_HOP - 1) / MMI_MEL_HOP);
        rows += (size_t)(real_rows(frames) / t->pool);
    }
    return rows;
}

/* ---- running ---- */

/* u[t][c·3 + j] = x[t·stride + j - 1][c] of x[n_in][C] (rows outside are zeros): the frames a
 * kernel-3, pad-1 convolution reads for output t, so that the convolution is one GEMM. The
 * features come in as [C][n_in] (bands first): transposed says so. */
static void unfold(float *u, const float *x, int n_in, int C, int stride, int n_out,
                   int transposed)
{
    for (int t = 0; t < n_out; t++)
        for (int c = 0; c < C; c++)
            for (int j = 0; j < 3; j++) {
                int s = t * stride + j - 1;
                float v = 0.0f;
                if (s >= 0 && s < n_in)
                    v = transposed ? x[(size_t)c * n_in + s] : x[(size_t)s * C + c];
                u[((size_t)t * C + c) * 3 + j] = v;
            }
}

/* Run state of one chunk: x[n_ctx][D], then a scratch that serves the convolutions (conv1's
 * output, then the unfolded input of conv1 and later of conv2) and, after them, the blocks. */
static size_t chunk_floats(const mmi_audio_tower *t)
{
    size_t F = (size_t)t->mel.n_frames, D = (size_t)t->enc.n_embd, T = (size_t)t->n_ctx;
    size_t unfolded = F * 3 * (size_t)t->n_mels > T * 3 * D ? F * 3 * (size_t)t->n_mels
                                                           : T * 3 * D;
    size_t conv = F * D + unfolded, blocks = mmi_encoder_scratch_floats(&t->enc, t->n_ctx, 1);
    return T * D + (conv > blocks ? conv : blocks);
}

mm_status mmi_audio_tower_chunk(const mmi_audio_tower *t, const float *features, int n_frames,
                                int n_rows, float *x0, float *enc_out, float *out,
                                const atomic_int *cancel)
{
    const int F = t->mel.n_frames, T = t->n_ctx, D = t->enc.n_embd, C = t->n_mels;
    const int n_keys = real_rows(n_frames);
    float *state = mmi_array(chunk_floats(t), sizeof(float));
    if (!state)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for the audio tower's run state");
    float *x = state, *scratch = state + (size_t)T * D;

    /* conv1 over all frames, conv2 (stride 2) over its output, both through GELU */
    float *h1 = scratch, *u = scratch + (size_t)F * D;
    unfold(u, features, F, C, 1, F, 1);
    mmi_linear(h1, u, F, &t->conv1, t->conv1_b);
    mmi_gelu(h1, (size_t)F * D);
    unfold(u, h1, F, D, 2, T, 0);
    mmi_linear(x, u, T, &t->conv2, t->conv2_b);
    mmi_gelu(x, (size_t)T * D);
    mmi_add(x, t->pos, (size_t)T * D);
    if (x0)
        memcpy(x0, x, sizeof(float) * T * D);

    mm_status st = MM_OK;
    for (int l = 0; l < t->enc.n_layer && st == MM_OK; l++) {
        if (mmi_cancelled(cancel))
            st = mmi_fail(MM_ERR_CANCELLED, "audio encoding cancelled at block %d", l);
        else
            mmi_encoder_block_keys(&t->enc, l, x, n_rows, n_keys, scratch);
    }
    if (st == MM_OK) {
        /* average pool rows in place, then post_ln and the projector */
        int n_tok = n_rows / t->pool;
        for (int r = 0; r < n_tok; r++)
            for (int d = 0; d < D; d++) {
                float sum = 0.0f;
                for (int k = 0; k < t->pool; k++)
                    sum += x[(size_t)(r * t->pool + k) * D + d];
                x[(size_t)r * D + d] = sum / t->pool;
            }
        mmi_layernorm(x, x, n_tok, D, t->post_ln_w, t->post_ln_b, t->enc.eps);
        if (enc_out)
            memcpy(enc_out, x, sizeof(float) * n_tok * D);
        if (out)
            mmi_linear(out, x, n_tok, &t->proj, t->proj_b);
    }
    mmi_free(state);
    return st;
}

mm_status mmi_audio_tower_encode(const mmi_audio_tower *t, const float *samples, size_t n,
                                 float *out, const atomic_int *cancel)
{
    size_t chunk = mmi_audio_chunk_samples(t);
    float *features = mmi_array((size_t)t->n_mels * t->mel.n_frames, sizeof(float));
    float *scratch = mmi_array(mmi_mel_scratch_floats(&t->mel), sizeof(float));
    mm_status st = MM_OK;
    if (!features || !scratch)
        st = mmi_fail(MM_ERR_NOMEM, "out of memory for audio features");
    for (size_t at = 0; at < n && st == MM_OK; at += chunk) {
        int frames = mmi_log_mel(&t->mel, samples + at, n - at, features, scratch);
        int rows = real_rows(frames);
        st = mmi_audio_tower_chunk(t, features, frames, rows, NULL, NULL, out, cancel);
        out += (size_t)(rows / t->pool) * t->n_out;
    }
    mmi_free(features);
    mmi_free(scratch);
    return st;
}

/* ---- clips as media parts (media.h) ---- */

static mm_status audio_plan(const mm_model *m, const void *source, const mmi_media_params *p,
                            mmi_media_plan *out)
{
    (void)p;
    const mmi_audio_tower *t = m->audio;
    const mm_audio *a = source;
    if (!t)
        return mmi_fail(MM_ERR_STATE, "the model has no audio encoder (load an mmproj file "
                        "with one)");
    if (a->sample_rate != MMI_MEL_RATE && !mmi_resampling_available())
        return mmi_fail(MM_ERR_UNSUPPORTED, "audio at %d Hz needs resampling to %d Hz, and "
                        "this libmm was built without libsoxr", a->sample_rate, MMI_MEL_RATE);
    double n = mmi_resampled_length(a->n_samples, a->sample_rate, MMI_MEL_RATE);
    if (n > (double)(SIZE_MAX / sizeof(float)))
        return mmi_fail(MM_ERR_LIMIT, "an audio clip of %.0f samples at %d Hz", n, MMI_MEL_RATE);
    size_t rows = mmi_audio_tower_rows(t, (size_t)n);
    if (rows == 0)
        return mmi_fail(MM_ERR_ARG, "an audio clip of %zu samples at %d Hz is too short to "
                        "give the encoder one row", a->n_samples, a->sample_rate);
    if (rows > INT_MAX)
        return mmi_fail(MM_ERR_LIMIT, "an audio clip of %zu rows", rows);
    *out = (mmi_media_plan){rows, (int)rows, 1, t->n_out, {0, 0, 0}};
    return MM_OK;
}

static mm_status audio_encode(const mm_model *m, const void *source, const mmi_media_params *p,
                              const mmi_media_plan *plan, float *rows, const atomic_int *cancel)
{
    (void)p;
    const mm_audio *a = source;
    float *x;
    size_t n;
    MMI_TRY(mmi_resample_audio(a->samples, a->n_samples, a->sample_rate, MMI_MEL_RATE, &x, &n));
    mm_status st = MM_OK;
    if (mmi_audio_tower_rows(m->audio, n) != plan->n_rows)
        st = mmi_fail(MM_ERR_UNSUPPORTED, "audio: %zu samples at %d Hz were planned as %zu "
                      "rows", n, MMI_MEL_RATE, plan->n_rows);
    if (st == MM_OK)
        st = mmi_audio_tower_encode(m->audio, x, n, rows, cancel);
    mmi_free(x);
    return st;
}

const mmi_media_ops mmi_audio_ops = {"audio clip", audio_plan, audio_encode};
