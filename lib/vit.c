/* PLACEHOLDER until the vision encoder lands: refuses every file. */
#include "vit.h"

#include "status.h"

mm_status mmi_vision_load(const mmi_gguf *g, mmi_vision **out)
{
    *out = NULL;
    return mmi_fail(MM_ERR_UNSUPPORTED, "%s: vision encoder not implemented yet", mmi_gguf_path(g));
}

void mmi_vision_free(mmi_vision *x)
{
    (void)x;
}
