/* Exported entry points for the library's handles: argument checks, then the stage that does
 * the work. (Status and log functions live in status.c, the options bag in options.c.) */
#include "mm.h"

unsigned mm_version_number(void)
{
    return MM_VERSION_NUMBER;
}

#define MMI_STR2(x) #x
#define MMI_STR(x) MMI_STR2(x)

const char *mm_version_string(void)
{
    return MMI_STR(MM_VERSION_MAJOR) "." MMI_STR(MM_VERSION_MINOR) "." MMI_STR(MM_VERSION_PATCH);
}

int mm_abi_version(void)
{
    return MM_ABI_VERSION;
}
