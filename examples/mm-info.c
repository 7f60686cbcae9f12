/* mm-info: print the library's version and the option keys it knows; given a model (and its
 * mmproj file), what images of a few sizes cost in its context at each detail level.
 *   mm-info [MODEL.gguf [MMPROJ.gguf]]
 * The smallest libmm program; it links the shared library like any user program. */
#include <stdio.h>

#include "mm.h"

/* Positions (and views) an image takes, per size and MM_OPT_IMAGE_DETAIL. */
static int print_image_costs(const char *path, const char *mmproj)
{
    mm_model *model;
    if (mm_model_load(path, mmproj, NULL, &model) != MM_OK) {
        fprintf(stderr, "mm-info: %s\n", mm_last_error());
        return 1;
    }
    static const int sizes[][2] = {{224, 224}, {336, 336}, {640, 480}, {1024, 768}, {1920, 1080},
                                   {300, 1000}};
    printf("image positions in the context (views) by detail:\n");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        printf("  %4dx%-4d", sizes[i][0], sizes[i][1]);
        static const char *const details[] = {"low", "high"};
        for (int d = 0; d < 2; d++) {
            mm_options *o = NULL;
            size_t n = 0;
            int views = 0;
            mm_status st = mm_options_create(&o);
            if (st == MM_OK)
                st = mm_options_set_string(o, MM_OPT_IMAGE_DETAIL, details[d]);
            if (st == MM_OK)
                st = mm_image_token_count(model, sizes[i][0], sizes[i][1], o, &n, &views);
            mm_options_free(o);
            if (st != MM_OK) {
                fprintf(stderr, "\nmm-info: %s\n", mm_last_error());
                mm_model_free(model);
                return 1;
            }
            printf("  %s %5zu (%d)", details[d], n, views);
        }
        printf("\n");
    }
    mm_model_free(model);
    return 0;
}

int main(int argc, char **argv)
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
    return argc > 1 ? print_image_costs(argv[1], argc > 2 ? argv[2] : NULL) : 0;
}
