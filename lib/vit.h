/* PLACEHOLDER interface, to be replaced by the helper that owns lib/vit.c. */
#ifndef MMI_VIT_H
#define MMI_VIT_H

#include "model.h"

mm_status mmi_vision_load(const mmi_gguf *g, mmi_vision **out);
void mmi_vision_free(mmi_vision *x);

#endif
