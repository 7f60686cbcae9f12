/* PLACEHOLDER until the CLIP text encoder lands: refuses every file. */
#include "clip.h"

#include "status.h"

mm_status mmi_clip_text_load(const mmi_gguf *g, mmi_clip_text **out)
{
    *out = NULL;
    return mmi_fail(MM_ERR_UNSUPPORTED, "%s: CLIP text encoder not implemented yet", mmi_gguf_path(g));
}

void mmi_clip_text_free(mmi_clip_text *x)
{
    (void)x;
}
