/* A program outside the tree that uses an installed libmm: tests/install/run.sh builds it with
 * nothing but `pkg-config --cflags --libs libmm`, tests/install/meson-subproject.sh with libmm as
 * a meson subproject. It checks that the header it compiled against matches the library it runs
 * with, and exercises one call that fails and one that succeeds. */
#include <mm.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    if (mm_abi_version() != MM_ABI_VERSION || mm_version_number() != MM_VERSION_NUMBER) {
        fprintf(stderr, "header %d/%d, library %d/%u\n", MM_ABI_VERSION, MM_VERSION_NUMBER,
                mm_abi_version(), mm_version_number());
        return 1;
    }
    mm_options *options;
    if (mm_options_create(&options) != MM_OK)
        return 1;
    int64_t n_ctx = -1;
    if (mm_options_set_int(options, MM_OPT_N_CTX, -5) != MM_ERR_ARG ||
        strstr(mm_last_error(), "n_ctx") == NULL ||
        mm_options_set_int(options, MM_OPT_N_CTX, 4096) != MM_OK ||
        mm_options_get_int(options, MM_OPT_N_CTX, &n_ctx) != MM_OK || n_ctx != 4096) {
        fprintf(stderr, "options misbehave: %s\n", mm_last_error());
        return 1;
    }
    mm_options_free(options);
    printf("libmm %s from an out-of-tree program: ok\n", mm_version_string());
    return 0;
}
