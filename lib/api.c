/* Exported entry points for the library's handles: argument checks, then the stage that does
 * the work. (Status and log functions live in status.c, the options bag in options.c.) */
#include "mm.h"
#include "model.h"
#include "status.h"

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

/* ---- models ---- */

mm_status mm_model_load(const char *path, const char *mmproj_path, const mm_options *options,
                        mm_model **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_model_load: out is NULL");
    *out = NULL;
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mm_model_load: path is NULL");
    return mmi_model_load(path, mmproj_path, options, out);
}

void mm_model_free(mm_model *model)
{
    mmi_model_release(model);
}

/* ---- images ---- */

/* ---- vision encoding and CLIP ---- */

/* ---- tokenizer ---- */

/* ---- sessions and generation ---- */
