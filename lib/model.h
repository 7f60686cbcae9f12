/* A loaded model: the GGUF files and the towers read from them. Immutable after load, so any
 * number of sessions on any threads may share it; sessions hold a reference. */
#ifndef MMI_MODEL_H
#define MMI_MODEL_H

#include <stdatomic.h>

#include "clip.h"
#include "decoder.h"
#include "gguf.h"
#include "mm.h"
#include "tokenizer.h"
#include "tower_audio.h"
#include "vit.h"

struct mm_model {
    mmi_gguf *files[2];        /* the text/CLIP file and the optional mmproj file */
    mmi_vision *vision;        /* NULL when no file holds a vision encoder */
    mmi_audio_tower *audio;    /* NULL when no file holds an audio encoder */
    mmi_clip_text *clip_text;  /* NULL unless a CLIP file holds a text encoder */
    mmi_tokenizer *tokenizer;  /* NULL when no file holds tokenizer.ggml.* keys */
    mmi_decoder *decoder;      /* NULL for a CLIP-only model */
    int32_t media_begin, media_end; /* tokens around every media item (Qwen2-VL's
                                       <|vision_start|>, <|vision_end|>); -1 when none */
    atomic_int refs;
};

mm_status mmi_model_load(const char *path, const char *mmproj_path, const mm_options *options,
                         mm_model **out);
void mmi_model_retain(mm_model *m);
/* Metadata and tensors of both files, the main file's first (see mm_model_meta_count). */
size_t mmi_model_meta_count(const mm_model *m);
const mmi_gguf *mmi_model_meta_file(const mm_model *m, size_t *index); /* index: in the file */
size_t mmi_model_tensor_count(const mm_model *m);
const mmi_tensor *mmi_model_tensor(const mm_model *m, size_t index);
/* Bytes of the tensors' data in the files and of the copies converted at load. */
void mmi_model_weight_bytes(const mm_model *m, uint64_t *in_files, uint64_t *converted);
void mmi_model_release(mm_model *m);

#endif
