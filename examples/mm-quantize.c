/* mm-quantize: write a quantized copy of a GGUF model file, in llama.cpp's layout.
 *
 *   mm-quantize IN.gguf OUT.gguf TYPE
 *
 * TYPE is Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, or one of llama.cpp's mixes Q4_K_M
 * and Q5_K_M. Matrices (two-dimensional tensors) take the type, with llama-quantize's rules:
 *   - the output head (or the token embedding when the head is tied to it) becomes Q6_K,
 *     except for Q8_0, which keeps Q8_0 everywhere;
 *   - Q4_K_M / Q5_K_M: Q4_K / Q5_K, but attn_v and ffn_down become Q6_K in the layers
 *     use_more_bits picks (the first and last eighth, and every third layer in between);
 *   - a K type needs rows that are a multiple of 256: other rows fall back to Q5_0 (for Q4_K),
 *     Q5_1 (Q5_K) or Q8_0 (Q6_K); rows that fit no block stay as they are.
 * Everything else (norms, biases, position tables, convolution kernels) is copied as stored,
 * as are all metadata keys; general.file_type and general.quantization_version are set as
 * llama.cpp sets them. The quantizers are libmm's reference ones (lib/core/quant.c), which give
 * llama.cpp's bytes from the same floats. A tensor holding inf or NaN is refused.
 *
 * Links the static library: it uses the GGUF reader and writer and the type table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"

typedef struct {
    const char *name;
    mmi_tensor_type base;
    int mix;        /* 1: attn_v / ffn_down get Q6_K where use_more_bits says */
    int file_type;  /* llama.cpp's general.file_type (llama_ftype) */
} target;

static const target targets[] = {
    {"Q4_0", MMI_TENSOR_Q4_0, 0, 2},   {"Q4_1", MMI_TENSOR_Q4_1, 0, 3},
    {"Q8_0", MMI_TENSOR_Q8_0, 0, 7},   {"Q5_0", MMI_TENSOR_Q5_0, 0, 8},
    {"Q5_1", MMI_TENSOR_Q5_1, 0, 9},   {"Q4_K", MMI_TENSOR_Q4_K, 0, 14},
    {"Q4_K_M", MMI_TENSOR_Q4_K, 1, 15}, {"Q5_K", MMI_TENSOR_Q5_K, 0, 16},
    {"Q5_K_M", MMI_TENSOR_Q5_K, 1, 17}, {"Q6_K", MMI_TENSOR_Q6_K, 0, 18},
};

static void die(const char *what)
{
    fprintf(stderr, "mm-quantize: %s: %s\n", what, mm_last_error());
    exit(1);
}

/* llama.cpp's choice of layers that get more bits in the mixes. */
static int use_more_bits(int layer, int n_layers)
{
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/* The layer number of "blk.N.<suffix>", or -1 when name is not such a tensor. */
static int layer_of(const char *name, const char *suffix)
{
    int layer, end = 0;
    if (sscanf(name, "blk.%d.%n", &layer, &end) != 1 || !end || strcmp(name + end, suffix))
        return -1;
    return layer;
}

static mmi_tensor_type fallback(mmi_tensor_type type)
{
    switch (type) {
    case MMI_TENSOR_Q4_K: return MMI_TENSOR_Q5_0;
    case MMI_TENSOR_Q5_K: return MMI_TENSOR_Q5_1;
    case MMI_TENSOR_Q6_K: return MMI_TENSOR_Q8_0;
    default: return type;
    }
}

/* The type tensor t gets, or its own type to copy it unchanged. */
static mmi_tensor_type choose(const target *tg, const mmi_gguf *g, const mmi_tensor *t,
                              int n_layers)
{
    if (t->n_dims != 2 || strstr(t->name, "position_embd"))
        return t->type;
    mmi_tensor_type type = tg->base;
    int head = strcmp(t->name, "output.weight") == 0 ||
               (strcmp(t->name, "token_embd.weight") == 0 && !mmi_gguf_find_tensor(g, "output.weight"));
    if (head && type != MMI_TENSOR_Q8_0)
        type = MMI_TENSOR_Q6_K;
    int layer = layer_of(t->name, "attn_v.weight");
    if (layer < 0)
        layer = layer_of(t->name, "ffn_down.weight");
    if (tg->mix && layer >= 0 && use_more_bits(layer, n_layers))
        type = MMI_TENSOR_Q6_K;
    if (t->ne[0] % mmi_type(type)->block_elems)
        type = fallback(type);
    return t->ne[0] % mmi_type(type)->block_elems ? t->type : type;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: mm-quantize IN.gguf OUT.gguf TYPE\n"
                 "TYPE: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K Q4_K_M Q5_K_M\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 4) {
        usage(stderr);
        return 2;
    }
    const target *tg = NULL;
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        if (strcmp(argv[3], targets[i].name) == 0)
            tg = &targets[i];
    if (!tg) {
        fprintf(stderr, "mm-quantize: unknown type %s\n", argv[3]);
        return 2;
    }
    mmi_gguf *g;
    mmi_gguf_writer *w;
    if (mmi_gguf_open(argv[1], 1, &g) != MM_OK)
        die(argv[1]);
    if (mmi_gguf_writer_create(&w) != MM_OK)
        die("writer");

    for (uint64_t i = 0; i < mmi_gguf_n_kv(g); i++) {
        const char *key = mmi_gguf_key(g, i);
        mmi_gguf_type type;
        const void *data;
        size_t size;
        if (!strcmp(key, "general.file_type") || !strcmp(key, "general.quantization_version"))
            continue;
        if (!strcmp(key, "general.alignment")) {
            int64_t a;
            if (mmi_gguf_get_int(g, key, &a) != MM_OK ||
                mmi_gguf_writer_set_alignment(w, (uint32_t)a) != MM_OK)
                die(key);
            continue;
        }
        if (mmi_gguf_get_raw(g, key, &type, &data, &size) != MM_OK ||
            mmi_gguf_writer_add_raw(w, key, type, data, size) != MM_OK)
            die(key);
    }
    if (mmi_gguf_writer_add_int(w, "general.file_type", MMI_GGUF_UINT32, tg->file_type) != MM_OK ||
        mmi_gguf_writer_add_int(w, "general.quantization_version", MMI_GGUF_UINT32, 2) != MM_OK)
        die("metadata");

    int n_layers = 0;
    for (uint64_t i = 0; i < mmi_gguf_n_tensors(g); i++)
        n_layers += layer_of(mmi_gguf_tensor(g, i)->name, "attn_v.weight") >= 0;
    for (uint64_t i = 0; i < mmi_gguf_n_tensors(g); i++) {
        const mmi_tensor *t = mmi_gguf_tensor(g, i);
        mmi_tensor_type type = choose(tg, g, t, n_layers);
        mm_status st;
        if (type == t->type) {
            st = mmi_gguf_writer_add_tensor_raw(w, t->name, type, t->n_dims, t->ne, t->data,
                                                t->n_bytes);
        } else {
            float *values = malloc((size_t)t->n_elements * sizeof *values);
            if (!values) {
                fprintf(stderr, "mm-quantize: out of memory for %s\n", t->name);
                return 1;
            }
            st = mmi_tensor_to_f32(t, 0, t->n_elements, values);
            for (uint64_t k = 0; st == MM_OK && k < t->n_elements; k++)
                if (!isfinite(values[k])) {
                    fprintf(stderr, "mm-quantize: %s: value %llu is not finite\n", t->name,
                            (unsigned long long)k);
                    return 1;
                }
            if (st == MM_OK)
                st = mmi_gguf_writer_add_tensor(w, t->name, type, t->n_dims, t->ne, values);
            free(values);
        }
        if (st != MM_OK)
            die(t->name);
        printf("%-32s %-6s -> %s\n", t->name, mmi_tensor_type_name(t->type),
               mmi_tensor_type_name(type));
    }
    if (mmi_gguf_writer_write_file(w, argv[2]) != MM_OK)
        die(argv[2]);
    mmi_gguf_writer_free(w);
    mmi_gguf_close(g);
    return 0;
}
