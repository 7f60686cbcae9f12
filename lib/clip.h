/* PLACEHOLDER interface, to be replaced by the helper that owns lib/clip.c. */
#ifndef MMI_CLIP_H
#define MMI_CLIP_H

#include "model.h"

mm_status mmi_clip_text_load(const mmi_gguf *g, mmi_clip_text **out);
void mmi_clip_text_free(mmi_clip_text *x);

#endif
