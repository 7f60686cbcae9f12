/* mm-info: print the library's version and the option keys it knows.
 * The smallest libmm program; it links the shared library like any user program. */
#include <stdio.h>

#include "mm.h"

int main(void)
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
