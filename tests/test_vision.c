/* Vision stages that the HF parity cases do not reach on their own: position-table resizing
 * (against PyTorch), patch embedding on a hand-computed case. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "clip.h"
#include "data/bicubic_ref.h"
#include "gguf.h"
#include "mm.h"
#include "model.h"
#include "patchify.h"
#include "testutil.h"
#include "vit.h"

/* Reference: torch in float64 on the same inputs; float32 weights and sums here stay within
 * 2e-6 (torch's own float32 path differs from float64 by up to 1e-6 on these cases). */
START_TEST(bicubic_matches_torch)
{
    static const float *const src[] = {bicubic_src0, bicubic_src1, bicubic_src2, bicubic_src3};
    static const float *const dst[] = {bicubic_dst0, bicubic_dst1, bicubic_dst2, bicubic_dst3};
    static const int *const cases[] = {bicubic_case0, bicubic_case1, bicubic_case2,
                                       bicubic_case3};
    ck_assert_int_eq(BICUBIC_N_CASES, 4);
    for (int n = 0; n < BICUBIC_N_CASES; n++) {
        const int *c = cases[n];
        float out[256];
        int count = c[3] * c[4] * c[2];
        ck_assert_int_le(count, 256);
        mmi_resize_bicubic(src[n], c[0], c[1], c[2], out, c[3], c[4]);
        for (int i = 0; i < count; i++)
            ck_assert_msg(fabsf(out[i] - dst[n][i]) <= 2e-6f, "case %d [%d]: %.9g vs torch %.9g",
                          n, i, (double)out[i], (double)dst[n][i]);
    }
}
END_TEST

START_TEST(patchify_hand_case)
{
    /* 3 channels of 4×2 pixels, P = 2: 2 patches (top, bottom), D = 2. Filter 0 sums the red
     * patch, filter 1 takes the blue top-right pixel. Pixels: channel c, row y, col x holds
     * 100c + 10y + x. */
    float chw[3 * 4 * 2];
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 2; x++)
                chw[(c * 4 + y) * 2 + x] = (float)(100 * c + 10 * y + x);
    float w[2 * 12] = {0};
    for (int i = 0; i < 4; i++)
        w[i] = 1; /* filter 0, channel 0, all (ky, kx) */
    w[12 + 2 * 4 + 0 * 2 + 1] = 1; /* filter 1, channel 2, ky 0, kx 1 */
    const float bias[2] = {0.5f, -1};
    const float class_embd[2] = {7, 8};
    /* Table for a 1×1 grid is resized to the 2×1 grid: a constant stays constant. */
    const float pos[2 * 2] = {0.25f, 0.75f, 1000, 2000};
    mmi_patch_embed pe = {.patch_size = 2, .n_embd = 2, .pos_grid = 1,
                          .weight = {w, 12, 2}, .bias = bias, .class_embd = class_embd,
                          .pos = pos};
    ck_assert_int_eq(mmi_patch_tokens(&pe, 2, 4), 3);
    ck_assert_int_eq(mmi_patch_tokens(&pe, 3, 5), 3); /* partial patches dropped */
    float scratch[64], x[6];
    ck_assert_uint_le(mmi_patch_scratch_floats(&pe, 2, 4), 64);
    mmi_patchify(&pe, chw, 2, 4, x, scratch);
    /* top patch red sum: 0+1+10+11 = 22; bottom: 20+21+30+31 = 102. Blue (c=2) top-right:
     * 201 (row 0) and 221 (row 2). */
    const float want[6] = {7.25f, 8.75f, 22 + 0.5f + 1000, 201 - 1 + 2000, 102 + 0.5f + 1000,
                           221 - 1 + 2000};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq_tol(x[i], want[i], 1e-3f);
}
END_TEST

START_TEST(patchify_resizes_positions_as_torch)
{
    /* Trained grid 3×3 (torch case 0's source table), input grid 5 rows × 4 columns: the
     * patch rows get torch's resized table, row-major over the grid; the class row keeps
     * position row 0. Zero filters isolate the positions. P = 1, D = 2. */
    ck_assert_int_eq(bicubic_case0[0], 3);
    ck_assert_int_eq(bicubic_case0[2], 2);
    float pos[2 + 18];
    pos[0] = 0.5f;
    pos[1] = -0.5f;
    memcpy(pos + 2, bicubic_src0, sizeof bicubic_src0);
    const float zero_w[2 * 3] = {0};
    const float class_embd[2] = {1, 2};
    mmi_patch_embed pe = {.patch_size = 1, .n_embd = 2, .pos_grid = 3,
                          .weight = {zero_w, 3, 2}, .class_embd = class_embd, .pos = pos};
    int H = bicubic_case0[3], W = bicubic_case0[4];
    float chw[3 * 5 * 4];
    for (int i = 0; i < 3 * H * W; i++)
        chw[i] = (float)i;
    float x[2 * 21], scratch[256];
    ck_assert_int_eq(mmi_patch_tokens(&pe, W, H), 21);
    ck_assert_uint_le(mmi_patch_scratch_floats(&pe, W, H), 256);
    mmi_patchify(&pe, chw, W, H, x, scratch);
    ck_assert_float_eq_tol(x[0], 1.5f, 1e-6f);
    ck_assert_float_eq_tol(x[1], 1.5f, 1e-6f);
    for (int i = 0; i < 40; i++)
        ck_assert_msg(fabsf(x[2 + i] - bicubic_dst0[i]) <= 2e-6f, "[%d] %.9g vs torch %.9g", i,
                      (double)x[2 + i], (double)bicubic_dst0[i]);
}
END_TEST

/* ---- tiny vision files built with the GGUF writer ---- */

/* What to put in a tiny file; the defaults give a LLaVA-style mmproj: CLIP tower with class
 * token and pre_ln, MLP projector. */
typedef struct {
    int D, F, H, L, S, P, E;
    int siglip;               /* no class token / pre_ln; patch bias, post_ln, pooling head */
    int clip_text;            /* add a CLIP text tower and projections */
    int clip_tokenizer;       /* and a CLIP tokenizer over 8 one-letter words */
    const char *act;          /* clip.vision.hidden_act, NULL: none written */
    const char *projector;    /* clip.projector_type, NULL: no projector */
    int n_feature_layers;     /* clip.vision.feature_layer entries (0: no key) */
    int32_t feature_layers[4];
    const char *omit;         /* a tensor left out */
    int64_t head_count;       /* 0: H */
    int merger;               /* Qwen2-VL (qwen2vl_merger): per-frame kernels, no positions,
                                 mm.0 over 2x2 patches, unless merger_in says otherwise */
    int merger_in;
} tiny_cfg;

static const tiny_cfg llava_cfg = {.D = 8, .F = 12, .H = 2, .L = 2, .S = 8, .P = 4, .E = 6,
                                   .act = "quick_gelu", .projector = "mlp"};
static const tiny_cfg qwen2vl_cfg = {.D = 8, .F = 12, .H = 2, .L = 2, .S = 8, .P = 4, .E = 6,
                                     .act = "quick_gelu", .projector = "qwen2vl_merger",
                                     .merger = 1};

static unsigned tiny_seed;

static void add_tensor(mmi_gguf_writer *w, const tiny_cfg *c, const char *name, uint32_t n_dims,
                       uint64_t ne0, uint64_t ne1, uint64_t ne2, uint64_t ne3)
{
    if (c->omit && strcmp(c->omit, name) == 0)
        return;
    const uint64_t ne[4] = {ne0, ne1, ne2, ne3};
    size_t n = 1;
    for (uint32_t i = 0; i < n_dims; i++)
        n *= ne[i];
    float *v = malloc(n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < n; i++) {
        tiny_seed = tiny_seed * 1103515245u + 12345u;
        v[i] = (float)((tiny_seed >> 16) & 0x7fff) / 32768.0f * 0.4f - 0.2f;
    }
    ck_assert_ok(mmi_gguf_writer_add_tensor(w, name, MMI_TENSOR_F32, n_dims, ne, v));
    free(v);
}

static void add_blocks(mmi_gguf_writer *w, const tiny_cfg *c, const char *p, int L, int D, int F)
{
    static const char *const square[] = {"attn_q", "attn_k", "attn_v", "attn_out"};
    static const char *const vec[] = {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias",
                                      "attn_q.bias", "attn_k.bias", "attn_v.bias",
                                      "attn_out.bias", "ffn_down.bias"};
    char name[64];
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < 4; j++) {
            snprintf(name, sizeof name, "%s.blk.%d.%s.weight", p, i, square[j]);
            add_tensor(w, c, name, 2, D, D, 1, 1);
        }
        for (int j = 0; j < 9; j++) {
            snprintf(name, sizeof name, "%s.blk.%d.%s", p, i, vec[j]);
            add_tensor(w, c, name, 1, D, 1, 1, 1);
        }
        snprintf(name, sizeof name, "%s.blk.%d.ffn_up.weight", p, i);
        add_tensor(w, c, name, 2, D, F, 1, 1);
        snprintf(name, sizeof name, "%s.blk.%d.ffn_up.bias", p, i);
        add_tensor(w, c, name, 1, F, 1, 1, 1);
        snprintf(name, sizeof name, "%s.blk.%d.ffn_down.weight", p, i);
        add_tensor(w, c, name, 2, F, D, 1, 1);
    }
}

/* A writer holding the whole file. */
static mmi_gguf_writer *tiny_writer(const tiny_cfg *c)
{
    mmi_gguf_writer *w;
    tiny_seed = 7;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    ck_assert_ok(mmi_gguf_writer_add_string(w, "general.architecture", "clip"));
    ck_assert_ok(mmi_gguf_writer_add_bool(w, "clip.has_vision_encoder", 1));
    ck_assert_ok(mmi_gguf_writer_add_bool(w, "clip.has_text_encoder", c->clip_text));
    ck_assert_ok(mmi_gguf_writer_add_bool(w, "clip.has_llava_projector", c->projector != NULL));
    if (c->projector)
        ck_assert_ok(mmi_gguf_writer_add_string(w, "clip.projector_type", c->projector));
    if (c->act)
        ck_assert_ok(mmi_gguf_writer_add_string(w, "clip.vision.hidden_act", c->act));
    const struct { const char *key; int64_t v; } ints[] = {
        {"clip.vision.image_size", c->S}, {"clip.vision.patch_size", c->P},
        {"clip.vision.embedding_length", c->D}, {"clip.vision.feed_forward_length", c->F},
        {"clip.vision.block_count", c->L},
        {"clip.vision.attention.head_count", c->head_count ? c->head_count : c->H},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        ck_assert_ok(mmi_gguf_writer_add_int(w, ints[i].key, MMI_GGUF_UINT32, ints[i].v));
    ck_assert_ok(mmi_gguf_writer_add_float(w, "clip.vision.attention.layer_norm_epsilon",
                                           MMI_GGUF_FLOAT32, 1e-5));
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.2f, 0.3f};
    ck_assert_ok(mmi_gguf_writer_add_array(w, "clip.vision.image_mean", MMI_GGUF_FLOAT32, mean, 3));
    ck_assert_ok(mmi_gguf_writer_add_array(w, "clip.vision.image_std", MMI_GGUF_FLOAT32, std, 3));
    if (c->n_feature_layers)
        ck_assert_ok(mmi_gguf_writer_add_array(w, "clip.vision.feature_layer", MMI_GGUF_INT32,
                                               c->feature_layers, (uint64_t)c->n_feature_layers));
    int D = c->D, G = c->S / c->P;
    add_tensor(w, c, "v.patch_embd.weight", 4, c->P, c->P, 3, D);
    if (c->merger) {
        add_tensor(w, c, "v.patch_embd.weight.1", 4, c->P, c->P, 3, D);
        add_tensor(w, c, "v.post_ln.weight", 1, D, 1, 1, 1);
        add_tensor(w, c, "v.post_ln.bias", 1, D, 1, 1, 1);
        add_blocks(w, c, "v", c->L, D, c->F);
        int in = c->merger_in ? c->merger_in : 4 * D;
        add_tensor(w, c, "mm.0.weight", 2, in, 4 * D, 1, 1);
        add_tensor(w, c, "mm.0.bias", 1, 4 * D, 1, 1, 1);
        add_tensor(w, c, "mm.2.weight", 2, 4 * D, c->E, 1, 1);
        add_tensor(w, c, "mm.2.bias", 1, c->E, 1, 1, 1);
        return w;
    }
    add_tensor(w, c, "v.position_embd.weight", 2, D, G * G + !c->siglip, 1, 1);
    if (c->siglip) {
        add_tensor(w, c, "v.patch_embd.bias", 1, D, 1, 1, 1);
        add_tensor(w, c, "v.head.probe", 1, D, 1, 1, 1);
        static const char *const hv[] = {"attn_q.bias", "attn_k.bias", "attn_v.bias",
                                         "attn_out.bias", "ln.weight", "ln.bias",
                                         "ffn_down.bias"};
        static const char *const hm[] = {"attn_q", "attn_k", "attn_v", "attn_out"};
        char name[64];
        for (int i = 0; i < 7; i++) {
            snprintf(name, sizeof name, "v.head.%s", hv[i]);
            add_tensor(w, c, name, 1, D, 1, 1, 1);
        }
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "v.head.%s.weight", hm[i]);
            add_tensor(w, c, name, 2, D, D, 1, 1);
        }
        add_tensor(w, c, "v.head.ffn_up.weight", 2, D, c->F, 1, 1);
        add_tensor(w, c, "v.head.ffn_up.bias", 1, c->F, 1, 1, 1);
        add_tensor(w, c, "v.head.ffn_down.weight", 2, c->F, D, 1, 1);
    } else {
        add_tensor(w, c, "v.class_embd", 1, D, 1, 1, 1);
        add_tensor(w, c, "v.pre_ln.weight", 1, D, 1, 1, 1);
        add_tensor(w, c, "v.pre_ln.bias", 1, D, 1, 1, 1);
    }
    if (!c->projector) {
        add_tensor(w, c, "v.post_ln.weight", 1, D, 1, 1, 1);
        add_tensor(w, c, "v.post_ln.bias", 1, D, 1, 1, 1);
    }
    add_blocks(w, c, "v", c->L, D, c->F);
    if (c->projector) {
        int k = c->n_feature_layers ? c->n_feature_layers : 1;
        add_tensor(w, c, "mm.0.weight", 2, D * k, c->E, 1, 1);
        add_tensor(w, c, "mm.0.bias", 1, c->E, 1, 1, 1);
        add_tensor(w, c, "mm.2.weight", 2, c->E, c->E, 1, 1);
        add_tensor(w, c, "mm.2.bias", 1, c->E, 1, 1, 1);
    }
    if (c->clip_text) {
        const struct { const char *key; int64_t v; } t[] = {
            {"clip.text.vocab_size", 10}, {"clip.text.context_length", 5},
            {"clip.text.embedding_length", D}, {"clip.text.feed_forward_length", c->F},
            {"clip.text.block_count", 1}, {"clip.text.attention.head_count", c->H},
            {"clip.text.projection_dim", 4}, {"clip.text.eos_token_id", 9},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            ck_assert_ok(mmi_gguf_writer_add_int(w, t[i].key, MMI_GGUF_UINT32, t[i].v));
        ck_assert_ok(mmi_gguf_writer_add_float(w, "clip.text.attention.layer_norm_epsilon",
                                               MMI_GGUF_FLOAT32, 1e-5));
        ck_assert_ok(mmi_gguf_writer_add_string(w, "clip.text.hidden_act", "quick_gelu"));
        ck_assert_ok(mmi_gguf_writer_add_float(w, "clip.logit_scale", MMI_GGUF_FLOAT32,
                                               log(100.0)));
        add_tensor(w, c, "t.token_embd.weight", 2, D, 10, 1, 1);
        add_tensor(w, c, "t.position_embd.weight", 2, D, 5, 1, 1);
        add_tensor(w, c, "t.post_ln.weight", 1, D, 1, 1, 1);
        add_tensor(w, c, "t.post_ln.bias", 1, D, 1, 1, 1);
        add_tensor(w, c, "t.proj.weight", 2, D, 4, 1, 1);
        add_tensor(w, c, "v.proj.weight", 2, D, 4, 1, 1);
        add_blocks(w, c, "t", 1, D, c->F);
    }
    if (c->clip_tokenizer) {
        /* CLIP BPE without merges over single letters: "b a" -> <start> b</w> a</w> <end> */
        const char *const tokens[10] = {"a</w>", "b</w>", "c</w>", "d</w>", "e</w>",
                                        "f</w>", "g</w>", "h</w>", "<|startoftext|>",
                                        "<|endoftext|>"};
        const int32_t types[10] = {1, 1, 1, 1, 1, 1, 1, 1, 3, 3};
        ck_assert_ok(mmi_gguf_writer_add_string(w, "tokenizer.ggml.model", "clip"));
        ck_assert_ok(mmi_gguf_writer_add_string(w, "tokenizer.ggml.pre", "clip"));
        ck_assert_ok(mmi_gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, 10));
        ck_assert_ok(mmi_gguf_writer_add_array(w, "tokenizer.ggml.token_type", MMI_GGUF_INT32,
                                               types, 10));
        ck_assert_ok(mmi_gguf_writer_add_string_array(w, "tokenizer.ggml.merges", NULL, 0));
        ck_assert_ok(mmi_gguf_writer_add_int(w, "tokenizer.ggml.bos_token_id", MMI_GGUF_UINT32, 8));
        ck_assert_ok(mmi_gguf_writer_add_int(w, "tokenizer.ggml.eos_token_id", MMI_GGUF_UINT32, 9));
        ck_assert_ok(mmi_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1));
        ck_assert_ok(mmi_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 1));
    }
    return w;
}

/* The file in memory, opened. */
static mmi_gguf *tiny_file(const tiny_cfg *c)
{
    mmi_gguf_writer *w = tiny_writer(c);
    void *data;
    size_t size;
    ck_assert_ok(mmi_gguf_writer_write_memory(w, &data, &size));
    mmi_gguf_writer_free(w);
    mmi_gguf *g;
    ck_assert_ok(mmi_gguf_open_memory(data, size, &g));
    mmi_free(data);
    return g;
}

/* Load must fail with `status` and a message containing `needle`. */
static void expect_load_error(const tiny_cfg *c, mm_status status, const char *needle)
{
    mmi_gguf *g = tiny_file(c);
    mmi_vision *v = (mmi_vision *)1;
    ck_assert_status(mmi_vision_load(g, &v), status);
    ck_assert_ptr_null(v);
    ck_assert_msg(strstr(mm_last_error(), needle), "message '%s' lacks '%s'", mm_last_error(),
                  needle);
    mmi_gguf_close(g);
}

START_TEST(load_refuses_bad_files)
{
    tiny_cfg c = llava_cfg;
    c.omit = "v.blk.1.attn_k.weight";
    expect_load_error(&c, MM_ERR_FORMAT, "v.blk.1.attn_k.weight");
    c = llava_cfg;
    c.omit = "mm.0.weight";
    expect_load_error(&c, MM_ERR_FORMAT, "mm.0.weight");
    c = llava_cfg;
    c.act = "swish";
    expect_load_error(&c, MM_ERR_UNSUPPORTED, "swish");
    c = llava_cfg;
    c.projector = "ldp";
    expect_load_error(&c, MM_ERR_UNSUPPORTED, "ldp");
    c = llava_cfg;
    c.head_count = 3; /* 8 is not a multiple of 3 */
    expect_load_error(&c, MM_ERR_FORMAT, "head count");
    c = llava_cfg;
    c.head_count = 1 << 30;
    expect_load_error(&c, MM_ERR_FORMAT, "head_count");
    c = llava_cfg;
    c.n_feature_layers = 1;
    c.feature_layers[0] = 3; /* only 2 blocks stored */
    expect_load_error(&c, MM_ERR_FORMAT, "feature_layer");
}
END_TEST

/* Qwen2-VL's tower in llama.cpp's layout: it loads, and each missing or mis-sized piece is
 * refused by name. */
START_TEST(merger_files)
{
    tiny_cfg c = qwen2vl_cfg;
    mmi_gguf *g = tiny_file(&c);
    mmi_vision *v;
    ck_assert_ok(mmi_vision_load(g, &v));
    ck_assert_int_eq(v->grid.merge, 2);
    ck_assert_int_eq(v->rows_embd.n_in, 3 * 2 * 4 * 4);
    int n, E;
    ck_assert_ok(mmi_vision_output_shape(v, 16, 8, &n, &E)); /* 4 x 2 patches, 2 windows */
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(E, 6);
    mmi_vision_free(v);
    mmi_gguf_close(g);
    static const char *const required[] = {"v.patch_embd.weight.1", "v.patch_embd.weight",
                                           "v.post_ln.weight", "mm.2.weight",
                                           "v.blk.1.attn_q.weight"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        c = qwen2vl_cfg;
        c.omit = required[i];
        expect_load_error(&c, MM_ERR_FORMAT, required[i]);
    }
    c = qwen2vl_cfg;
    c.merger_in = c.D; /* one patch wide, not 2x2 */
    expect_load_error(&c, MM_ERR_FORMAT, "mm.0.weight");
    c = qwen2vl_cfg;
    c.D = 6; /* head size 3: no 2-D rotary halves */
    expect_load_error(&c, MM_ERR_FORMAT, "multiple of 4");
}
END_TEST

START_TEST(feature_layers_and_class_token)
{
    /* Two feature layers (0 and -1 = 2) concatenated per token, class token dropped: the
     * projector input is [hidden_states[0] | hidden_states[2]] of the 4 patch tokens. */
    tiny_cfg c = llava_cfg;
    c.n_feature_layers = 2;
    c.feature_layers[0] = 0;
    c.feature_layers[1] = -1;
    mmi_gguf *g = tiny_file(&c);
    mmi_vision *v;
    ck_assert_ok(mmi_vision_load(g, &v));
    ck_assert_int_eq(v->n_feature_layers, 2);
    ck_assert_int_eq(v->feature_layers[1], 2);
    ck_assert_int_eq(v->drop_class, 1);
    int n, e;
    ck_assert_ok(mmi_vision_output_shape(v, 8, 8, &n, &e));
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(e, 6);

    float chw[3 * 8 * 8];
    for (int i = 0; i < 3 * 64; i++)
        chw[i] = sinf(0.37f * i);
    float states[5 * 16], out[4 * 6], want[4 * 6], hidden[4 * 6];
    ck_assert_ok(mmi_vision_hidden_states(v, chw, 8, 8, v->feature_layers, 2, states, NULL));
    ck_assert_ok(mmi_vision_encode(v, chw, 8, 8, out, NULL));
    /* The MLP written out with plain loops on rows 1..4 of the states. */
    const mmi_connector *k = &v->connector;
    for (int t = 0; t < 4; t++)
        for (int o = 0; o < 6; o++) {
            double acc = k->mm0_b[o];
            for (int i = 0; i < 16; i++)
                acc += (double)((const float *)k->mm0.data)[o * 16 + i] * states[(t + 1) * 16 + i];
            hidden[t * 6 + o] = (float)(0.5 * acc * (1.0 + erf(acc / sqrt(2.0))));
        }
    for (int t = 0; t < 4; t++)
        for (int o = 0; o < 6; o++) {
            double acc = k->mm2_b[o];
            for (int i = 0; i < 6; i++)
                acc += (double)((const float *)k->mm2.data)[o * 6 + i] * hidden[t * 6 + i];
            want[t * 6 + o] = (float)acc;
        }
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq_tol(out[i], want[i], 1e-5f);

    /* The class row of hidden_states[0] does not depend on the pixels. */
    float other[3 * 8 * 8], states2[5 * 16];
    for (int i = 0; i < 3 * 64; i++)
        other[i] = cosf(1.3f * i);
    ck_assert_ok(mmi_vision_hidden_states(v, other, 8, 8, v->feature_layers, 1, states2, NULL));
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(states2[i], states[i]);
    mmi_vision_free(v);
    mmi_gguf_close(g);
}
END_TEST

START_TEST(encode_other_sizes_and_limits)
{
    mmi_gguf *g = tiny_file(&llava_cfg);
    mmi_vision *v;
    ck_assert_ok(mmi_vision_load(g, &v));
    int n, e;
    /* 12×20 pixels: 3×5 patches (positions resized), a partial patch row is dropped. */
    ck_assert_ok(mmi_vision_output_shape(v, 20, 14, &n, &e));
    ck_assert_int_eq(n, 15);
    float *chw = calloc(3 * 20 * 14, sizeof(float)), *out = malloc(sizeof(float) * 15 * 6);
    ck_assert_ok(mmi_vision_encode(v, chw, 20, 14, out, NULL));
    for (int i = 0; i < 15 * 6; i++)
        ck_assert(isfinite(out[i]));
    ck_assert_status(mmi_vision_output_shape(v, 3, 100, &n, &e), MM_ERR_ARG);
    ck_assert_status(mmi_vision_output_shape(v, 100000, 100000, &n, &e), MM_ERR_LIMIT);
    atomic_int cancel = 1;
    ck_assert_status(mmi_vision_encode(v, chw, 20, 14, out, &cancel), MM_ERR_CANCELLED);
    free(chw);
    free(out);
    mmi_vision_free(v);
    mmi_gguf_close(g);
}
END_TEST

START_TEST(load_survives_allocation_failures)
{
    tiny_cfg c = llava_cfg;
    c.siglip = 1;
    c.projector = NULL;
    mmi_gguf *g = tiny_file(&c);
    int failures = 0;
    for (long n = 1;; n++) {
        mmi_vision *v;
        mmi_alloc_fail_at(n);
        mm_status st = mmi_vision_load(g, &v);
        float chw[3 * 64], out[8];
        for (int i = 0; i < 3 * 64; i++)
            chw[i] = 0.01f * i;
        if (st == MM_OK)
            st = mmi_vision_pooled(v, chw, 8, 8, out, NULL);
        mmi_alloc_fail_at(0);
        mmi_vision_free(v);
        if (st == MM_OK)
            break;
        ck_assert_status(st, MM_ERR_NOMEM);
        failures++;
    }
    ck_assert_int_ge(failures, 2);
    mmi_gguf_close(g);
}
END_TEST

START_TEST(linear_projector)
{
    /* projector_type linear: one Linear (mm.0) and nothing else, whatever else the file has. */
    tiny_cfg c = llava_cfg;
    c.projector = "linear";
    mmi_gguf *g = tiny_file(&c);
    mmi_vision *v;
    ck_assert_ok(mmi_vision_load(g, &v));
    ck_assert_int_eq(v->connector.kind, MMI_CONNECTOR_LINEAR);
    float chw[3 * 8 * 8], states[5 * 8], out[4 * 6];
    for (int i = 0; i < 3 * 64; i++)
        chw[i] = cosf(0.11f * i);
    int layer = 2;
    ck_assert_ok(mmi_vision_hidden_states(v, chw, 8, 8, &layer, 1, states, NULL));
    ck_assert_ok(mmi_vision_encode(v, chw, 8, 8, out, NULL));
    const mmi_connector *k = &v->connector;
    for (int t = 0; t < 4; t++)
        for (int o = 0; o < 6; o++) {
            double acc = k->mm0_b[o];
            for (int i = 0; i < 8; i++)
                acc += (double)((const float *)k->mm0.data)[o * 8 + i] * states[(t + 1) * 8 + i];
            ck_assert_float_eq_tol(out[t * 6 + o], acc, 1e-5);
        }
    mmi_vision_free(v);
    mmi_gguf_close(g);
}
END_TEST

START_TEST(text_pooling_rules)
{
    /* HF: the first eos (98) — or position 0 when there is none; legacy configs: the first
     * position of the largest id. */
    mmi_clip_text c = {.eos_id = 98};
    const int32_t two_eos[6] = {97, 5, 98, 7, 98, 0}, no_eos[3] = {97, 5, 6};
    const int32_t legacy[5] = {1, 40, 3, 40, 2};
    ck_assert_int_eq(mmi_clip_text_pool_index(&c, two_eos, 6), 2);
    ck_assert_int_eq(mmi_clip_text_pool_index(&c, no_eos, 3), 0);
    c.pool_argmax = 1;
    ck_assert_int_eq(mmi_clip_text_pool_index(&c, legacy, 5), 1);
    ck_assert_int_eq(mmi_clip_text_pool_index(&c, two_eos, 6), 2);
}
END_TEST

/* The tiny file loaded through the public API (mm_model_load takes a path). */
static mm_model *tiny_model(const tiny_cfg *c)
{
    char path[] = "/tmp/mm_test_vision_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    mmi_gguf_writer *w = tiny_writer(c);
    ck_assert_ok(mmi_gguf_writer_write_file(w, path));
    mmi_gguf_writer_free(w);
    mm_model *m;
    mm_status st = mm_model_load(path, NULL, NULL, &m);
    unlink(path);
    ck_assert_ok(st);
    return m;
}

START_TEST(public_api_checks)
{
    tiny_cfg c = llava_cfg;
    c.projector = NULL;
    c.clip_text = 1;
    mm_model *m = tiny_model(&c);

    ck_assert_uint_eq(mm_clip_embedding_size(m), 4);
    ck_assert_uint_eq(mm_clip_embedding_size(NULL), 0);
    float scale;
    ck_assert_ok(mm_clip_logit_scale(m, &scale));
    ck_assert_float_eq_tol(scale, 100.0f, 1e-3f);

    /* Causal attention and first-eos pooling: tokens after the first eos (9) change nothing. */
    const int32_t ids[5] = {1, 4, 9, 7, 9}, prefix[3] = {1, 4, 9};
    float a[4], b[4];
    ck_assert_ok(mm_clip_text_embedding_tokens(m, ids, 5, a, 4));
    ck_assert_ok(mm_clip_text_embedding_tokens(m, prefix, 3, b, 4));
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq_tol(a[i], b[i], 1e-6f);
    ck_assert_float_eq_tol(mm_clip_similarity(a, a, 4), 1.0f, 1e-6f);
    double norm = 0;
    for (int i = 0; i < 4; i++)
        norm += a[i] * a[i];
    ck_assert_float_eq_tol(norm, 1.0, 1e-6);
    const int32_t other[3] = {1, 5, 9};
    ck_assert_ok(mm_clip_text_embedding_tokens(m, other, 3, b, 4));
    ck_assert_float_lt(mm_clip_similarity(a, b, 4), 0.99999f);

    /* Misuse. */
    const int32_t bad_id[2] = {1, 10}, too_long[6] = {1, 2, 3, 4, 5, 9};
    ck_assert_status(mm_clip_text_embedding_tokens(m, ids, 5, a, 3), MM_ERR_ARG);
    ck_assert_status(mm_clip_text_embedding_tokens(m, bad_id, 2, a, 4), MM_ERR_ARG);
    ck_assert_status(mm_clip_text_embedding_tokens(m, too_long, 6, a, 4), MM_ERR_ARG);
    ck_assert_status(mm_clip_text_embedding_tokens(m, NULL, 2, a, 4), MM_ERR_ARG);
    ck_assert_status(mm_clip_text_embedding_tokens(NULL, ids, 2, a, 4), MM_ERR_ARG);
    ck_assert_status(mm_clip_text_embedding(m, "a cat", a, 4), MM_ERR_UNSUPPORTED);
    mm_embeddings *e = (mm_embeddings *)1;
    float chw[3 * 8 * 8] = {0};
    ck_assert_status(mm_image_encode_pixels(m, NULL, 8, 8, NULL, &e), MM_ERR_ARG);
    ck_assert_ptr_null(e);
    ck_assert_status(mm_image_encode_pixels(NULL, chw, 8, 8, NULL, &e), MM_ERR_ARG);
    ck_assert_status(mm_image_encode_pixels(m, chw, 0, 8, NULL, &e), MM_ERR_ARG);
    ck_assert_status(mm_image_encode_pixels(m, chw, 8, 8, NULL, NULL), MM_ERR_ARG);
    ck_assert_uint_eq(mm_embeddings_n_tokens(NULL), 0);
    ck_assert_ptr_null(mm_embeddings_data(NULL));
    mm_embeddings_free(NULL);

    /* Without projector a CLIP tower's encoding is its last hidden state, class token first. */
    ck_assert_ok(mm_image_encode_pixels(m, chw, 8, 8, NULL, &e));
    ck_assert_uint_eq(mm_embeddings_n_tokens(e), 5);
    ck_assert_uint_eq(mm_embeddings_n_embd(e), 8);
    float last[5 * 8];
    int layer = m->vision->enc.n_layer;
    ck_assert_ok(mmi_vision_hidden_states(m->vision, chw, 8, 8, &layer, 1, last, NULL));
    ck_assert_mem_eq(mm_embeddings_data(e), last, sizeof last);
    mm_embeddings_free(e);
    float img[4];
    ck_assert_ok(mm_clip_image_embedding_pixels(m, chw, 8, 8, img, 4));
    ck_assert_status(mm_clip_image_embedding_pixels(m, chw, 8, 8, img, 5), MM_ERR_ARG);
    mm_model_free(m);
}
END_TEST

START_TEST(images_through_preprocessing)
{
    /* An mm_image goes through the file's preprocessing (shortest edge 8, centre crop,
     * mean/std) and then the same path as planar pixels. */
    tiny_cfg c = llava_cfg;
    c.projector = NULL;
    c.clip_text = 1;
    c.clip_tokenizer = 1;
    mm_model *m = tiny_model(&c);
    uint8_t rgb[12 * 9 * 3];
    for (int i = 0; i < 12 * 9 * 3; i++)
        rgb[i] = (uint8_t)(i * 37 % 251);
    mm_image *img;
    ck_assert_ok(mm_image_from_pixels(rgb, 12, 9, 12 * 3, MM_PIXEL_RGB8, &img));
    mmi_views views;
    ck_assert_ok(mmi_vision_preprocess(m->vision, img, &views));
    ck_assert_int_eq(views.n_views, 1);
    ck_assert_int_eq(views.size, 8);
    mm_embeddings *a, *b;
    ck_assert_ok(mm_image_encode(m, img, NULL, &a));
    ck_assert_ok(mm_image_encode_pixels(m, views.pixels, 8, 8, NULL, &b));
    ck_assert_uint_eq(mm_embeddings_n_tokens(a), 5);
    ck_assert_mem_eq(mm_embeddings_data(a), mm_embeddings_data(b), 5 * 8 * sizeof(float));
    mm_embeddings_free(a);
    mm_embeddings_free(b);

    /* Zero-shot: softmax over labels of logit_scale · cos, the labels tokenized by the file's
     * CLIP tokenizer ("b a" -> <start> b</w> a</w> <end>). */
    float image[4], text[4], probs[3];
    ck_assert_ok(mm_clip_image_embedding(m, img, image, 4));
    const char *labels[3] = {"b a", "h", "C  d"};
    const int32_t ids[3][4] = {{8, 1, 0, 9}, {8, 7, 9}, {8, 2, 3, 9}};
    const int n_ids[3] = {4, 3, 4};
    double logits[3], max = -1e30, sum = 0;
    for (int i = 0; i < 3; i++) {
        float from_text[4];
        ck_assert_ok(mm_clip_text_embedding_tokens(m, ids[i], (size_t)n_ids[i], text, 4));
        ck_assert_ok(mm_clip_text_embedding(m, labels[i], from_text, 4));
        ck_assert_mem_eq(from_text, text, sizeof text);
        logits[i] = 100.0 * mm_clip_similarity(image, text, 4);
        max = logits[i] > max ? logits[i] : max;
    }
    for (int i = 0; i < 3; i++)
        sum += exp(logits[i] - max);
    ck_assert_ok(mm_clip_classify(m, img, labels, 3, probs));
    for (int i = 0; i < 3; i++)
        ck_assert_float_eq_tol(probs[i], exp(logits[i] - max) / sum, 1e-5);
    ck_assert_status(mm_clip_classify(m, img, labels, 0, probs), MM_ERR_ARG);
    ck_assert_status(mm_clip_classify(m, NULL, labels, 3, probs), MM_ERR_ARG);
    /* Text longer than the context (5) is cut, keeping the end token. */
    const int32_t cut[5] = {8, 0, 1, 2, 9};
    ck_assert_ok(mm_clip_text_embedding_tokens(m, cut, 5, text, 4));
    float long_text[4];
    ck_assert_ok(mm_clip_text_embedding(m, "a b c d e f g", long_text, 4));
    ck_assert_mem_eq(long_text, text, sizeof text);
    mmi_views_free(&views);
    mm_image_free(img);
    mm_model_free(m);
}
END_TEST

static Suite *vision_suite(void)
{
    Suite *s = suite_create("vision");
    TCase *tc = tcase_create("stages");
    tcase_add_test(tc, bicubic_matches_torch);
    tcase_add_test(tc, patchify_hand_case);
    tcase_add_test(tc, patchify_resizes_positions_as_torch);
    TCase *files = tcase_create("files");
    tcase_add_test(files, load_refuses_bad_files);
    tcase_add_test(files, merger_files);
    tcase_add_test(files, feature_layers_and_class_token);
    tcase_add_test(files, encode_other_sizes_and_limits);
    tcase_add_test(files, load_survives_allocation_failures);
    tcase_add_test(files, linear_projector);
    tcase_add_test(files, text_pooling_rules);
    tcase_add_test(files, public_api_checks);
    tcase_add_test(files, images_through_preprocessing);
    suite_add_tcase(s, files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(vision_suite());
}
