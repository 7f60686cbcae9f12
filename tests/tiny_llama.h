/* Tiny random-weight `llama` text models written with libmm's own GGUF writer, for the decoder
 * and session suites. Weights come from a fixed-seed generator (matrices stored f32, f16 or
 * bf16); a hook may overwrite any tensor; the tokenizer keys may be copied from a vocabulary
 * GGUF (tests/vectors/tokenizer). */
#ifndef MM_TINY_LLAMA_H
#define MM_TINY_LLAMA_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "gguf.h"
#include "mm.h"
#include "status.h"

typedef struct {
    int n_vocab;           /* ignored when vocab_path is given: the vocabulary's size */
    int n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim, n_ctx;
    float rope_base;
    int tied;              /* no output.weight: the head is token_embd */
    int with_biases;       /* q/k/v/o and feed-forward biases */
    const char *vocab_path;
    int extra_rows;        /* token_embd / output rows beyond the vocabulary's size (may be < 0) */
    const char *chat_template; /* tokenizer.chat_template, or NULL */
    uint32_t seed;
    const char *arch;          /* general.architecture, also the keys' prefix; NULL: "llama" */
    int fused;                 /* phi3's layout: attn_qkv [E, Eq+2Ekv], ffn_up [E, 2F] */
    int fused_rows_extra;      /* rows added to attn_qkv (a fused tensor of the wrong size) */
    int32_t rope_sections[4];  /* written as <arch>.rope.dimension_sections when any is set */
    int32_t media_tokens[2];   /* <arch>.vision_start/end_token_id when set (Qwen2-VL) */
    const char *set_key;       /* an integer key written with set_value instead (added if new) */
    int64_t set_value;
    const char *set_float_key; /* a float key added with set_float_value */
    double set_float_value;
    const char *drop_tensor;   /* a tensor left out */
    mmi_tensor_type matrix_type; /* how the 2-D tensors are stored: F32 (0), F16 or BF16 */
    /* Called for every tensor after it is filled: may change the n values. */
    void (*hook)(const char *name, float *values, size_t n, void *user);
    void *hook_user;
} tiny_llama;

static const tiny_llama tiny_llama_default = {
    .n_vocab = 50, .n_embd = 32, .n_layer = 2, .n_ff = 48, .n_head = 4, .n_head_kv = 2,
    .head_dim = 8, .n_ctx = 64, .rope_base = 10000.0f, .seed = 1,
};

static float tiny_random(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / 16777216.0f - 0.5f; /* uniform in [-0.5, 0.5) */
}

/* A file name for this test process under $TMPDIR. */
static const char *tiny_temp_path(const char *name)
{
    static char path[512];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/mm_%ld_%s", dir ? dir : "/tmp", (long)getpid(), name);
    return path;
}

static mm_status tiny_add_tensor(mmi_gguf_writer *w, const tiny_llama *c, uint32_t *rng,
                                 const char *name, int n_in, int n_out, float center,
                                 float scale)
{
    size_t n = (size_t)n_in * (n_out ? n_out : 1);
    if (c->drop_tensor && strcmp(name, c->drop_tensor) == 0)
        return MM_OK;
    float *v = malloc(n * sizeof *v);
    if (!v)
        return MM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        v[i] = center + scale * tiny_random(rng);
    if (c->hook)
        c->hook(name, v, n, c->hook_user);
    const uint64_t ne[2] = {(uint64_t)n_in, (uint64_t)n_out};
    mm_status st = mmi_gguf_writer_add_tensor(w, name, n_out ? c->matrix_type : MMI_TENSOR_F32,
                                              n_out ? 2 : 1, ne, v);
    free(v);
    return st;
}

static mm_status tiny_copy_vocab(mmi_gguf_writer *w, const char *path, int *n_vocab)
{
    mmi_gguf *g;
    MMI_TRY(mmi_gguf_open(path, 1, &g));
    mmi_gguf_type type;
    uint64_t n = 0;
    mm_status st = mmi_gguf_get_array_info(g, "tokenizer.ggml.tokens", &type, &n);
    const char **tokens = calloc(n + 1, sizeof *tokens);
    float *scores = malloc((n + 1) * sizeof *scores);
    int64_t *types64 = malloc((n + 1) * sizeof *types64);
    int32_t *types = malloc((n + 1) * sizeof *types);
    if (st == MM_OK && (!tokens || !scores || !types64 || !types))
        st = MM_ERR_NOMEM;
    for (uint64_t i = 0; i < n && st == MM_OK; i++)
        st = mmi_gguf_get_array_string(g, "tokenizer.ggml.tokens", i, &tokens[i], NULL);
    if (st == MM_OK)
        st = mmi_gguf_get_float_array(g, "tokenizer.ggml.scores", scores, n);
    if (st == MM_OK)
        st = mmi_gguf_get_int_array(g, "tokenizer.ggml.token_type", types64, n);
    for (uint64_t i = 0; i < n && st == MM_OK; i++)
        types[i] = (int32_t)types64[i];
    const char *model = NULL;
    if (st == MM_OK)
        st = mmi_gguf_get_string(g, "tokenizer.ggml.model", &model, NULL);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_string(w, "tokenizer.ggml.model", model);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, n);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_array(w, "tokenizer.ggml.scores", MMI_GGUF_FLOAT32, scores, n);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_array(w, "tokenizer.ggml.token_type", MMI_GGUF_INT32, types, n);
    static const char *const ids[] = {"tokenizer.ggml.bos_token_id",
                                      "tokenizer.ggml.eos_token_id",
                                      "tokenizer.ggml.unknown_token_id"};
    for (size_t i = 0; i < 3 && st == MM_OK; i++) {
        int64_t v;
        if (mmi_gguf_has(g, ids[i]) && (st = mmi_gguf_get_int(g, ids[i], &v)) == MM_OK)
            st = mmi_gguf_writer_add_int(w, ids[i], MMI_GGUF_UINT32, v);
    }
    int add_bos = 0;
    if (st == MM_OK)
        st = mmi_gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", 0, &add_bos);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    *n_vocab = (int)n;
    free(tokens);
    free(scores);
    free(types64);
    free(types);
    mmi_gguf_close(g);
    return st;
}

/* Write the model to path. */
static mm_status tiny_llama_write(const tiny_llama *c, const char *path)
{
    mmi_gguf_writer *w;
    MMI_TRY(mmi_gguf_writer_create(&w));
    uint32_t rng = c->seed;
    int n_vocab = c->n_vocab;
    mm_status st = MM_OK;
    if (c->vocab_path)
        st = tiny_copy_vocab(w, c->vocab_path, &n_vocab);
    n_vocab += c->extra_rows;
    if (st == MM_OK && c->chat_template)
        st = mmi_gguf_writer_add_string(w, "tokenizer.chat_template", c->chat_template);
    struct { const char *key; int64_t v; } dims[] = {
        {"vocab_size", n_vocab},          {"context_length", c->n_ctx},
        {"embedding_length", c->n_embd},  {"block_count", c->n_layer},
        {"feed_forward_length", c->n_ff}, {"attention.head_count", c->n_head},
        {"attention.head_count_kv", c->n_head_kv},
        {"attention.key_length", c->head_dim},
        {"rope.dimension_count", c->head_dim},
    };
    const char *arch = c->arch ? c->arch : "llama";
    char key[96];
    if (st == MM_OK)
        st = mmi_gguf_writer_add_string(w, "general.architecture", arch);
    int set = 0;
    for (size_t i = 0; i < sizeof dims / sizeof dims[0] && st == MM_OK; i++) {
        int64_t v = dims[i].v;
        snprintf(key, sizeof key, "%s.%s", arch, dims[i].key);
        if (c->set_key && strcmp(c->set_key, key) == 0) {
            v = c->set_value;
            set = 1;
        }
        st = mmi_gguf_writer_add_int(w, key, MMI_GGUF_INT64, v);
    }
    if (st == MM_OK && c->set_key && !set)
        st = mmi_gguf_writer_add_int(w, c->set_key, MMI_GGUF_INT64, c->set_value);
    snprintf(key, sizeof key, "%s.rope.dimension_sections", arch);
    if (st == MM_OK && (c->rope_sections[0] || c->rope_sections[1] || c->rope_sections[2]))
        st = mmi_gguf_writer_add_array(w, key, MMI_GGUF_INT32, c->rope_sections, 4);
    static const char *const media_keys[2] = {"vision_start_token_id", "vision_end_token_id"};
    for (int i = 0; i < 2 && st == MM_OK && c->media_tokens[i]; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, media_keys[i]);
        st = mmi_gguf_writer_add_int(w, key, MMI_GGUF_UINT32, c->media_tokens[i]);
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_float(w, key, MMI_GGUF_FLOAT32, 1e-5);
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_float(w, key, MMI_GGUF_FLOAT32, c->rope_base);
    if (st == MM_OK && c->set_float_key)
        st = mmi_gguf_writer_add_float(w, c->set_float_key, MMI_GGUF_FLOAT32, c->set_float_value);

    int e = c->n_embd, eq = c->n_head * c->head_dim, ekv = c->n_head_kv * c->head_dim;
    if (st == MM_OK)
        st = tiny_add_tensor(w, c, &rng, "token_embd.weight", e, n_vocab, 0, 2);
    for (int l = 0; l < c->n_layer && st == MM_OK; l++) {
        /* fused: 1 only in phi3's layout, -1 only in the separate one, 0 in both */
        struct { const char *name; int n_in, n_out; float center, scale; int bias, fused; } t[] = {
            {"attn_norm.weight", e, 0, 1, 0.2f, 0, 0},
            {"attn_qkv.weight", e, eq + 2 * ekv + c->fused_rows_extra, 0, 0.6f, 0, 1},
            {"attn_q.weight", e, eq, 0, 0.6f, 0, -1},   {"attn_k.weight", e, ekv, 0, 0.6f, 0, -1},
            {"attn_v.weight", e, ekv, 0, 0.6f, 0, -1},
            {"attn_output.weight", eq, e, 0, 0.4f, 0, 0}, {"ffn_norm.weight", e, 0, 1, 0.2f, 0, 0},
            {"ffn_up.weight", e, 2 * c->n_ff, 0, 0.6f, 0, 1},
            {"ffn_gate.weight", e, c->n_ff, 0, 0.6f, 0, -1},
            {"ffn_up.weight", e, c->n_ff, 0, 0.6f, 0, -1},
            {"ffn_down.weight", c->n_ff, e, 0, 0.4f, 0, 0},
            {"attn_q.bias", eq, 0, 0, 0.2f, 1, 0},   {"attn_k.bias", ekv, 0, 0, 0.2f, 1, 0},
            {"attn_v.bias", ekv, 0, 0, 0.2f, 1, 0},  {"attn_output.bias", e, 0, 0, 0.2f, 1, 0},
            {"ffn_gate.bias", c->n_ff, 0, 0, 0.2f, 1, 0},
            {"ffn_up.bias", c->n_ff, 0, 0, 0.2f, 1, 0}, {"ffn_down.bias", e, 0, 0, 0.2f, 1, 0},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0] && st == MM_OK; i++) {
            if ((t[i].bias && !c->with_biases) || t[i].fused == (c->fused ? -1 : 1))
                continue;
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, t[i].name);
            st = tiny_add_tensor(w, c, &rng, name, t[i].n_in, t[i].n_out, t[i].center,
                                 t[i].scale);
        }
    }
    if (st == MM_OK)
        st = tiny_add_tensor(w, c, &rng, "output_norm.weight", e, 0, 1, 0.2f);
    if (st == MM_OK && !c->tied)
        st = tiny_add_tensor(w, c, &rng, "output.weight", e, n_vocab, 0, 1);
    if (st == MM_OK)
        st = mmi_gguf_writer_write_file(w, path);
    mmi_gguf_writer_free(w);
    return st;
}

/* ---- a tiny LLaVA-style vision file: CLIP tower (by default image 16, patch 8, width 8,
 * 2 blocks; feature layer = blocks - 1, class token dropped: 4 image tokens) and an MLP
 * projector to n_embd_text ---- */

typedef struct {
    int image_size, patch, n_embd, n_ff, n_layer, n_head;
    int no_projector; /* a bare CLIP vision tower: no projector keys or mm.* tensors */
    int tiled; /* LLaVA-1.6: pinpoints (S, 2S), (2S, S), (2S, 2S), spatial_unpad, newline */
    int merger; /* Qwen2-VL (qwen2vl_merger): two frame kernels, 2-D RoPE, no positions or
                   class token, ln_q as post_ln, mm.0 over 2x2 patches; 64 to 4096 pixels */
} tiny_vision;

static const tiny_vision tiny_vision_default = {16, 8, 8, 16, 2, 2, 0, 0, 0};

static inline mm_status tiny_vision_tensor(mmi_gguf_writer *w, uint32_t *rng, const char *name,
                                    uint32_t n_dims, const uint64_t *ne, float center, float scale)
{
    size_t n = 1;
    for (uint32_t i = 0; i < n_dims; i++)
        n *= (size_t)ne[i];
    float *v = malloc(n * sizeof *v);
    if (!v)
        return MM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        v[i] = center + scale * tiny_random(rng);
    mm_status st = mmi_gguf_writer_add_tensor(w, name, MMI_TENSOR_F32, n_dims, ne, v);
    free(v);
    return st;
}

/* Block l of a pre-LN encoder under prefix ("v", "a"): width D, feed-forward F. */
static inline mm_status tiny_block_write(mmi_gguf_writer *w, uint32_t *rng, const char *prefix,
                                         int l, uint64_t D, uint64_t F, int k_bias)
{
    struct { const char *name; uint32_t n_dims; uint64_t ne[2]; float center, scale; } b[] = {
        {"ln1.weight", 1, {D}, 1, 0.2f},      {"ln1.bias", 1, {D}, 0, 0.2f},
        {"ln2.weight", 1, {D}, 1, 0.2f},      {"ln2.bias", 1, {D}, 0, 0.2f},
        {"attn_q.weight", 2, {D, D}, 0, 0.6f}, {"attn_q.bias", 1, {D}, 0, 0.2f},
        {"attn_k.weight", 2, {D, D}, 0, 0.6f}, {"attn_k.bias", 1, {D}, 0, 0.2f},
        {"attn_v.weight", 2, {D, D}, 0, 0.6f}, {"attn_v.bias", 1, {D}, 0, 0.2f},
        {"attn_out.weight", 2, {D, D}, 0, 0.6f}, {"attn_out.bias", 1, {D}, 0, 0.2f},
        {"ffn_up.weight", 2, {D, F}, 0, 0.6f}, {"ffn_up.bias", 1, {F}, 0, 0.2f},
        {"ffn_down.weight", 2, {F, D}, 0, 0.4f}, {"ffn_down.bias", 1, {D}, 0, 0.2f},
    };
    mm_status st = MM_OK;
    for (size_t i = 0; i < sizeof b / sizeof b[0] && st == MM_OK; i++) {
        if (!k_bias && !strcmp(b[i].name, "attn_k.bias"))
            continue;
        char name[64];
        snprintf(name, sizeof name, "%s.blk.%d.%s", prefix, l, b[i].name);
        st = tiny_vision_tensor(w, rng, name, b[i].n_dims, b[i].ne, b[i].center, b[i].scale);
    }
    return st;
}

static inline mm_status tiny_vision_write_sized(const char *path, int n_embd_text,
                                               const tiny_vision *v)
{
    const int S = v->image_size, P = v->patch, D = v->n_embd, F = v->n_ff, L = v->n_layer;
    mmi_gguf_writer *w;
    MMI_TRY(mmi_gguf_writer_create(&w));
    uint32_t rng = 99;
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.3f, 0.2f};
    const int32_t feature_layer[1] = {L - 1}; /* the last block but one, as LLaVA-1.5 */
    mm_status st = mmi_gguf_writer_add_string(w, "general.architecture", "clip");
    if (st == MM_OK)
        st = mmi_gguf_writer_add_bool(w, "clip.has_vision_encoder", 1);
    if (st == MM_OK && !v->no_projector)
        st = mmi_gguf_writer_add_bool(w, "clip.has_llava_projector", 1);
    if (st == MM_OK && !v->no_projector)
        st = mmi_gguf_writer_add_string(w, "clip.projector_type",
                                        v->merger ? "qwen2vl_merger" : "mlp");
    if (st == MM_OK && v->merger)
        st = mmi_gguf_writer_add_int(w, "clip.vision.image_min_pixels", MMI_GGUF_UINT32, 64);
    if (st == MM_OK && v->merger)
        st = mmi_gguf_writer_add_int(w, "clip.vision.image_max_pixels", MMI_GGUF_UINT32, 4096);
    struct { const char *key; int64_t v; } dims[] = {
        {"clip.vision.image_size", S}, {"clip.vision.patch_size", P},
        {"clip.vision.embedding_length", D}, {"clip.vision.feed_forward_length", F},
        {"clip.vision.block_count", L}, {"clip.vision.attention.head_count", v->n_head},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0] && st == MM_OK; i++)
        st = mmi_gguf_writer_add_int(w, dims[i].key, MMI_GGUF_UINT32, dims[i].v);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_float(w, "clip.vision.attention.layer_norm_epsilon",
                                       MMI_GGUF_FLOAT32, 1e-5);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_array(w, "clip.vision.image_mean", MMI_GGUF_FLOAT32, mean, 3);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_array(w, "clip.vision.image_std", MMI_GGUF_FLOAT32, std, 3);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_array(w, "clip.vision.feature_layer", MMI_GGUF_INT32,
                                       feature_layer, 1);
    struct { const char *name; uint32_t n_dims; uint64_t ne[4]; float center, scale; } t[] = {
        {"v.patch_embd.weight", 4, {P, P, 3, D}, 0, 0.3f}, {"v.class_embd", 1, {D}, 0, 1},
        {"v.position_embd.weight", 2, {D, (S / P) * (S / P) + 1}, 0, 0.5f},
        {"v.pre_ln.weight", 1, {D}, 1, 0.2f}, {"v.pre_ln.bias", 1, {D}, 0, 0.2f},
        {"mm.0.weight", 2, {D, (uint64_t)n_embd_text}, 0, 0.6f},
        {"mm.0.bias", 1, {(uint64_t)n_embd_text}, 0, 0.2f},
        {"mm.2.weight", 2, {(uint64_t)n_embd_text, (uint64_t)n_embd_text}, 0, 0.4f},
        {"mm.2.bias", 1, {(uint64_t)n_embd_text}, 0, 0.2f},
    };
    const uint64_t E = (uint64_t)n_embd_text, M4 = 4 * (uint64_t)D;
    struct { const char *name; uint32_t n_dims; uint64_t ne[4]; float center, scale; } m[] = {
        {"v.patch_embd.weight", 4, {P, P, 3, D}, 0, 0.3f},
        {"v.patch_embd.weight.1", 4, {P, P, 3, D}, 0, 0.3f},
        {"v.post_ln.weight", 1, {D}, 1, 0.2f}, {"v.post_ln.bias", 1, {D}, 0, 0.2f},
        {"mm.0.weight", 2, {M4, M4}, 0, 0.4f}, {"mm.0.bias", 1, {M4}, 0, 0.2f},
        {"mm.2.weight", 2, {M4, E}, 0, 0.4f}, {"mm.2.bias", 1, {E}, 0, 0.2f},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0] && st == MM_OK && !v->merger; i++)
        if (!v->no_projector || strncmp(t[i].name, "mm.", 3) != 0)
            st = tiny_vision_tensor(w, &rng, t[i].name, t[i].n_dims, t[i].ne, t[i].center,
                                    t[i].scale);
    for (size_t i = 0; i < sizeof m / sizeof m[0] && st == MM_OK && v->merger; i++)
        st = tiny_vision_tensor(w, &rng, m[i].name, m[i].n_dims, m[i].ne, m[i].center,
                                m[i].scale);
    if (v->tiled && st == MM_OK) {
        const int32_t pinpoints[6] = {S, 2 * S, 2 * S, S, 2 * S, 2 * S};
        const uint64_t ne[1] = {(uint64_t)n_embd_text};
        st = mmi_gguf_writer_add_array(w, "clip.vision.image_grid_pinpoints", MMI_GGUF_INT32,
                                       pinpoints, 6);
        if (st == MM_OK)
            st = mmi_gguf_writer_add_string(w, "clip.vision.mm_patch_merge_type",
                                            "spatial_unpad");
        if (st == MM_OK)
            st = tiny_vision_tensor(w, &rng, "model.image_newline", 1, ne, 0, 1);
    }
    for (int l = 0; l < L && st == MM_OK; l++)
        st = tiny_block_write(w, &rng, "v", l, (uint64_t)D, (uint64_t)F, 1);
    if (st == MM_OK)
        st = mmi_gguf_writer_write_file(w, path);
    mmi_gguf_writer_free(w);
    return st;
}

static inline mm_status tiny_vision_write(const char *path, int n_embd_text)
{
    return tiny_vision_write_sized(path, n_embd_text, &tiny_vision_default);
}

/* ---- a tiny Qwen2-Audio-style audio file (llama.cpp's qwen2a layout): n_mels bands,
 * n_ctx positions per chunk (chunks of 2 n_ctx frames), width 16, 2 blocks, a projector to
 * n_embd_text; `projector` names the projector type (NULL: qwen2a) and `drop` a tensor left
 * out (NULL: none), for the loader's error paths ---- */

static inline mm_status tiny_audio_write_with(const char *path, int n_embd_text, int n_mels,
                                              int n_ctx, const char *projector, const char *drop)
{
    const uint64_t D = 16, F = 24, M = (uint64_t)n_mels, E = (uint64_t)n_embd_text;
    mmi_gguf_writer *w;
    MMI_TRY(mmi_gguf_writer_create(&w));
    uint32_t rng = 7;
    mm_status st = mmi_gguf_writer_add_string(w, "general.architecture", "clip");
    if (st == MM_OK)
        st = mmi_gguf_writer_add_bool(w, "clip.has_audio_encoder", 1);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_string(w, "clip.projector_type",
                                        projector ? projector : "qwen2a");
    struct { const char *key; int64_t v; } dims[] = {
        {"clip.audio.num_mel_bins", n_mels}, {"clip.audio.embedding_length", (int64_t)D},
        {"clip.audio.feed_forward_length", (int64_t)F}, {"clip.audio.block_count", 2},
        {"clip.audio.attention.head_count", 2}, {"clip.audio.projection_dim", n_embd_text},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0] && st == MM_OK; i++)
        st = mmi_gguf_writer_add_int(w, dims[i].key, MMI_GGUF_UINT32, dims[i].v);
    if (st == MM_OK)
        st = mmi_gguf_writer_add_float(w, "clip.audio.attention.layer_norm_epsilon",
                                       MMI_GGUF_FLOAT32, 1e-5);
    struct { const char *name; uint32_t n_dims; uint64_t ne[3]; float center, scale; } t[] = {
        {"a.conv1d.1.weight", 3, {3, M, D}, 0, 0.3f}, {"a.conv1d.1.bias", 1, {D}, 0, 0.2f},
        {"a.conv1d.2.weight", 3, {3, D, D}, 0, 0.3f}, {"a.conv1d.2.bias", 1, {D}, 0, 0.2f},
        {"a.position_embd.weight", 2, {D, (uint64_t)n_ctx}, 0, 0.5f},
        {"a.post_ln.weight", 1, {D}, 1, 0.2f}, {"a.post_ln.bias", 1, {D}, 0, 0.2f},
        {"mm.a.fc.weight", 2, {D, E}, 0, 0.5f}, {"mm.a.fc.bias", 1, {E}, 0, 0.2f},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0] && st == MM_OK; i++)
        if (!drop || strcmp(drop, t[i].name))
            st = tiny_vision_tensor(w, &rng, t[i].name, t[i].n_dims, t[i].ne, t[i].center,
                                    t[i].scale);
    for (int l = 0; l < 2 && st == MM_OK; l++)
        st = tiny_block_write(w, &rng, "a", l, D, F, 0); /* Whisper: no k bias */
    if (st == MM_OK)
        st = mmi_gguf_writer_write_file(w, path);
    mmi_gguf_writer_free(w);
    return st;
}

static inline mm_status tiny_audio_write(const char *path, int n_embd_text, int n_mels, int n_ctx)
{
    return tiny_audio_write_with(path, n_embd_text, n_mels, n_ctx, NULL, NULL);
}

/* The text model and a vision file `v` for it, loaded as a pair; the files are removed at
 * once. */
static inline mm_status tiny_pair_load(const tiny_llama *c, const tiny_vision *v, mm_model **out)
{
    char text_path[512];
    snprintf(text_path, sizeof text_path, "%s", tiny_temp_path("text.gguf"));
    const char *vision_path = tiny_temp_path("vision.gguf");
    mm_status st = tiny_llama_write(c, text_path);
    if (st == MM_OK)
        st = tiny_vision_write_sized(vision_path, c->n_embd, v);
    if (st == MM_OK)
        st = mm_model_load(text_path, vision_path, NULL, out);
    unlink(text_path);
    unlink(vision_path);
    return st;
}

/* The same with the default vision file. */
static inline mm_status tiny_llava_load(const tiny_llama *c, mm_model **out)
{
    return tiny_pair_load(c, &tiny_vision_default, out);
}

/* Write the model to a temporary file and load it; the file is removed at once. */
static inline mm_status tiny_llama_load(const tiny_llama *c, mm_model **out)
{
    const char *path = tiny_temp_path("tiny.gguf");
    MMI_TRY(tiny_llama_write(c, path));
    mm_status st = mm_model_load(path, NULL, NULL, out);
    unlink(path);
    return st;
}

#endif
