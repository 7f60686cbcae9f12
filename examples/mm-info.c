/* mm-info: what a model file holds and what it will cost, or (without a model) the library's
 * version and the option keys it knows.
 *
 *   mm-info MODEL.gguf [MMPROJ.gguf] [--all]
 *   mm-info -m MODEL.gguf [--mmproj MMPROJ.gguf] [-c N_CTX] [--all]
 *   mm-info
 *
 * For a model: the architecture and its sizes (layers, width, heads, key/value heads,
 * vocabulary, context), the tensor types with their counts, the chat template, the vision
 * settings (image size, patch, projector), the image tokens one image takes, and the memory:
 * weights plus the KV cache at the context size. --all lists every metadata entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "mm.h"

#define MAX_TYPES 16

static int fail(const char *what, mm_status st)
{
    fprintf(stderr, "mm-info: %s: %s: %s\n", what, mm_status_str(st), mm_last_error());
    return 1;
}

static int print_library(void)
{
    printf("libmm %s (version number %u, ABI %d)\n", mm_version_string(), mm_version_number(),
           mm_abi_version());
    if (mm_abi_version() != MM_ABI_VERSION) {
        fprintf(stderr, "built against ABI %d but running with %d\n", MM_ABI_VERSION,
                mm_abi_version());
        return 1;
    }
    printf("options:\n");
    static const char *type_names[] = {"?", "int", "float", "string"};
    for (int key = 0; key < 1000; key++) {
        mm_opt_type type;
        if (mm_option_type((mm_opt)key, &type) == MM_OK)
            printf("  %3d  %-18s %s\n", key, mm_option_name((mm_opt)key), type_names[type]);
    }
    return 0;
}

/* The value of metadata `key` as text in buf (the first entry with that key); NULL if absent
 * or longer than the buffer. */
static const char *meta(const mm_model *m, const char *key, char *buf, size_t size)
{
    for (size_t i = 0, n = mm_model_meta_count(m); i < n; i++)
        if (strcmp(mm_model_meta_key(m, i), key) == 0)
            return mm_model_meta_value(m, i, buf, size, NULL) == MM_OK ? buf : NULL;
    return NULL;
}

/* The language model's sizes, from "<architecture>.<name>" keys. */
static void print_sizes(const mm_model *m, const char *arch)
{
    static const struct {
        const char *label, *key;
    } sizes[] = {
        {"layers", "block_count"},
        {"width", "embedding_length"},
        {"heads", "attention.head_count"},
        {"kv heads", "attention.head_count_kv"},
        {"feed-forward", "feed_forward_length"},
        {"context", "context_length"},
    };
    printf("  sizes:        ");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char key[128], value[64];
        snprintf(key, sizeof key, "%s.%s", arch, sizes[i].key);
        const char *v = meta(m, key, value, sizeof value);
        if (v)
            printf("%s %s, ", sizes[i].label, v);
    }
    printf("vocabulary %d\n", (int)mm_n_vocab(m));
}

static void print_tensor_types(const mm_model *m)
{
    const char *names[MAX_TYPES];
    size_t counts[MAX_TYPES] = {0}, n_types = 0;
    for (size_t i = 0, n = mm_model_tensor_count(m); i < n; i++) {
        const char *type;
        if (mm_model_tensor_info(m, i, NULL, &type, NULL) != MM_OK)
            continue;
        size_t k = 0;
        while (k < n_types && strcmp(names[k], type) != 0)
            k++;
        if (k == n_types && n_types < MAX_TYPES)
            names[n_types++] = type;
        if (k < n_types)
            counts[k]++;
    }
    printf("  tensors:      %zu (", mm_model_tensor_count(m));
    for (size_t k = 0; k < n_types; k++)
        printf("%s%s x %zu", k ? ", " : "", names[k], counts[k]);
    printf(")\n");
}

/* Positions (and views) an image of a few sizes takes in the context at each detail level,
 * counted without encoding (mm_image_token_count). */
static void print_image_tokens(const mm_model *m)
{
    static const int sizes[][2] = {{224, 224}, {336, 336}, {640, 480}, {1024, 768}, {1920, 1080},
                                   {300, 1000}};
    static const char *const details[] = {"low", "high"};
    printf("  image tokens: positions in the context (views) by detail\n");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        printf("    %4dx%-4d", sizes[i][0], sizes[i][1]);
        for (int d = 0; d < 2; d++) {
            mm_options *o = NULL;
            size_t n = 0;
            int views = 0;
            mm_status st = mm_options_create(&o);
            if (st == MM_OK)
                st = mm_options_set_string(o, MM_OPT_IMAGE_DETAIL, details[d]);
            if (st == MM_OK)
                st = mm_image_token_count(m, sizes[i][0], sizes[i][1], o, &n, &views);
            mm_options_free(o);
            if (st != MM_OK) {
                printf("  (%s)\n", mm_last_error());
                return;
            }
            printf("  %s %5zu (%d)", details[d], n, views);
        }
        printf("\n");
    }
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static int print_model(mm_model *m, int n_ctx, int all)
{
    char arch[64], value[256], *text = NULL;
    if (!meta(m, "general.architecture", arch, sizeof arch))
        snprintf(arch, sizeof arch, "?");
    const char *name = meta(m, "general.name", value, sizeof value);
    const char *family = mm_model_family(m);
    printf("  architecture: %s%s%s%s%s\n", arch, family ? ", family " : "", family ? family : "",
           name ? ", name " : "", name ? name : "");
    if (strcmp(arch, "clip") != 0)
        print_sizes(m, arch);
    print_tensor_types(m);

    /* The file's template in full (it may be long Jinja text), and the one libmm uses. */
    for (size_t i = 0, n = mm_model_meta_count(m); i < n && !text; i++) {
        size_t len;
        if (strcmp(mm_model_meta_key(m, i), "tokenizer.chat_template") != 0)
            continue;
        mm_model_meta_value(m, i, NULL, 0, &len); /* asks the length */
        text = malloc(len + 1);
        if (text && mm_model_meta_value(m, i, text, len + 1, NULL) != MM_OK)
            text[0] = '\0';
    }
    mm_options *one;
    mm_session *s = NULL;
    if (mm_options_create(&one) == MM_OK && mm_options_set_int(one, MM_OPT_N_CTX, 1) == MM_OK &&
        mm_options_set_int(one, MM_OPT_N_THREADS, 1) == MM_OK &&
        mm_session_create(m, one, &s) == MM_OK)
        printf("  chat template: %s (libmm's), file's: %s\n", mm_session_chat_template(s),
               text ? text : "(none)");
    mm_session_free(s);
    mm_options_free(one);
    free(text);

    static const struct {
        const char *label, *key;
    } vision[] = {
        {"image size", "clip.vision.image_size"},
        {"patch", "clip.vision.patch_size"},
        {"width", "clip.vision.embedding_length"},
        {"layers", "clip.vision.block_count"},
        {"projector", "clip.projector_type"},
    };
    int has_vision = 0;
    for (size_t i = 0; i < sizeof vision / sizeof vision[0]; i++) {
        const char *v = meta(m, vision[i].key, value, sizeof value);
        if (v)
            printf("%s%s %s", has_vision++ ? ", " : "  vision:       ", vision[i].label, v);
    }
    if (has_vision) {
        printf("\n");
        print_image_tokens(m);
    }

    uint64_t weights, kv;
    mm_status st = mm_model_memory(m, n_ctx, &weights, &kv);
    if (st != MM_OK)
        return fail("memory", st);
    printf("  memory:       %.1f MiB weights", mib(weights));
    if (kv) {
        char key[96], ctx[32];
        snprintf(key, sizeof key, "%s.context_length", arch);
        snprintf(ctx, sizeof ctx, "%d", n_ctx);
        const char *positions = n_ctx ? ctx : meta(m, key, value, sizeof value);
        printf(" + %.1f MiB KV cache at %s positions = %.1f MiB", mib(kv),
               positions ? positions : "the trained context's", mib(weights + kv));
    }
    printf("\n");

    if (all) {
        printf("metadata:\n");
        for (size_t i = 0, n = mm_model_meta_count(m); i < n; i++) {
            size_t len;
            mm_model_meta_value(m, i, NULL, 0, &len);
            char *v = malloc(len + 1);
            if (v && mm_model_meta_value(m, i, v, len + 1, NULL) == MM_OK)
                printf("  %s = %s\n", mm_model_meta_key(m, i), v);
            free(v);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *mmproj_path = NULL, *positional[2];
    long long n_ctx = 0;
    int all = 0;
    const arg_spec specs[] = {
        ARG_MODEL(&model_path),
        ARG_MMPROJ(&mmproj_path),
        {"-c, --ctx-size", "N", ARG_INT, &n_ctx, (mm_opt)0, 0, 1 << 24,
         "context the KV cache is sized for (default: the model's)"},
        {"-a, --all", NULL, ARG_SWITCH, &all, (mm_opt)0, 0, 0, "also list every metadata entry"},
    };
    arg_parser parser = {"mm-info", "[MODEL.gguf [MMPROJ.gguf]] [options]",
                         "What a model holds and what it will cost; without a model, the "
                         "library's version and option keys.",
                         specs, sizeof specs / sizeof specs[0], NULL, positional, 0, 2, 0};
    int rc = args_parse(&parser, argc, argv);
    if (rc < 0)
        rc = args_model_files(&parser, &model_path, &mmproj_path);
    if (rc >= 0)
        return rc;
    if (!model_path)
        return print_library();

    mm_options *options;
    mm_model *model;
    mm_status st = mm_options_create(&options);
    if (st == MM_OK)
        st = mm_options_set_progress(options, args_progress, NULL);
    if (st == MM_OK)
        st = mm_model_load(model_path, mmproj_path, options, &model);
    mm_options_free(options);
    if (st != MM_OK)
        return fail(model_path, st);
    printf("%s%s%s\n", model_path, mmproj_path ? " + " : "", mmproj_path ? mmproj_path : "");
    rc = print_model(model, (int)n_ctx, all);
    mm_model_free(model);
    return rc;
}
