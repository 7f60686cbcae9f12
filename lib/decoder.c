/* PLACEHOLDER until the language model lands: refuses every file. */
#include "decoder.h"

#include "status.h"

mm_status mmi_decoder_load(const mmi_gguf *g, mmi_decoder **out)
{
    *out = NULL;
    return mmi_fail(MM_ERR_UNSUPPORTED, "%s: language model not implemented yet", mmi_gguf_path(g));
}

void mmi_decoder_free(mmi_decoder *x)
{
    (void)x;
}
