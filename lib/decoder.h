/* PLACEHOLDER interface, to be replaced by the helper that owns lib/decoder.c. */
#ifndef MMI_DECODER_H
#define MMI_DECODER_H

#include "model.h"

mm_status mmi_decoder_load(const mmi_gguf *g, mmi_decoder **out);
void mmi_decoder_free(mmi_decoder *x);

#endif
