/* PLACEHOLDER until the tokenizer lands: refuses every file. */
#include "tokenizer.h"

#include "status.h"

mm_status mmi_tokenizer_load(const mmi_gguf *g, mmi_tokenizer **out)
{
    *out = NULL;
    return mmi_fail(MM_ERR_UNSUPPORTED, "%s: tokenizer not implemented yet", mmi_gguf_path(g));
}

void mmi_tokenizer_free(mmi_tokenizer *x)
{
    (void)x;
}
