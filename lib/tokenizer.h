/* PLACEHOLDER interface, to be replaced by the helper that owns lib/tokenizer.c. */
#ifndef MMI_TOKENIZER_H
#define MMI_TOKENIZER_H

#include "model.h"

mm_status mmi_tokenizer_load(const mmi_gguf *g, mmi_tokenizer **out);
void mmi_tokenizer_free(mmi_tokenizer *x);

#endif
