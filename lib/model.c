/* Opening the model files and handing each to the towers it holds, by its metadata. */
#include "model.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "clip.h"
#include "decoder.h"
#include "options.h"
#include "status.h"
#include "tokenizer.h"
#include "tower_audio.h"
#include "vit.h"

/* Read the towers one file holds. A `clip` file holds a vision encoder and/or a CLIP text
 * encoder; any other architecture is a language model for the decoder. */
static mm_status load_file(mm_model *m, const mmi_gguf *g)
{
    const char *arch;
    MMI_TRY(mmi_gguf_get_string(g, "general.architecture", &arch, NULL));
    if (strcmp(arch, "clip") == 0) {
        int has_vision, has_text, has_audio;
        MMI_TRY(mmi_gguf_get_bool_or(g, "clip.has_audio_encoder", 0, &has_audio));
        /* Files without the key are vision files, unless they say they hold audio. */
        MMI_TRY(mmi_gguf_get_bool_or(g, "clip.has_vision_encoder", !has_audio, &has_vision));
        MMI_TRY(mmi_gguf_get_bool_or(g, "clip.has_text_encoder", 0, &has_text));
        if (has_audio) {
            if (m->audio)
                return mmi_fail(MM_ERR_FORMAT, "%s: a second audio encoder", mmi_gguf_path(g));
            MMI_TRY(mmi_audio_tower_load(g, &m->audio));
        }
        if (has_vision) {
            if (m->vision)
                return mmi_fail(MM_ERR_FORMAT, "%s: a second vision encoder", mmi_gguf_path(g));
            MMI_TRY(mmi_vision_load(g, &m->vision));
        }
        if (has_text)
            MMI_TRY(mmi_clip_text_load(g, &m->clip_text));
    } else {
        if (m->decoder)
            return mmi_fail(MM_ERR_FORMAT, "%s: a second language model", mmi_gguf_path(g));
        MMI_TRY(mmi_decoder_load(g, &m->decoder));
    }
    if (!m->tokenizer && mmi_gguf_has(g, "tokenizer.ggml.model")) {
        mm_status st = mmi_tokenizer_load(g, &m->tokenizer);
        /* A CLIP model stays usable from token ids when its tokenizer kind is unknown. */
        if (st == MM_ERR_UNSUPPORTED && !m->decoder) {
            mmi_log(MM_LOG_WARN, "%s; text must be given as token ids", mm_last_error());
            return MM_OK;
        }
        MMI_TRY(st);
    }
    return MM_OK;
}

/* The files loaded together must fit each other: the tokenizer's vocabulary is the decoder's
 * (token and output rows), and a vision file used with a language model has a projector that
 * maps into the model's embedding width. Checked once every file is read. */
static mm_status check_towers_agree(const mm_model *m)
{
    const char *paths[2] = {NULL, NULL}; /* [0] the language model's file, [1] the vision file */
    for (int i = 0; i < 2; i++) {
        const char *arch;
        if (m->files[i] && mmi_gguf_get_string(m->files[i], "general.architecture", &arch,
                                               NULL) == MM_OK)
            paths[strcmp(arch, "clip") == 0] = mmi_gguf_path(m->files[i]);
    }
    if (m->decoder && m->tokenizer &&
        mmi_tokenizer_n_vocab(m->tokenizer) != m->decoder->config.n_vocab)
        return mmi_fail(MM_ERR_FORMAT, "%s: the vocabulary has %d tokens but token_embd.weight "
                        "and the output have %d rows", paths[0],
                        (int)mmi_tokenizer_n_vocab(m->tokenizer), m->decoder->config.n_vocab);
    if (!m->decoder || !m->vision)
        return MM_OK;
    const mmi_vision *v = m->vision;
    if (v->connector.kind == MMI_CONNECTOR_NONE)
        return mmi_fail(MM_ERR_FORMAT, "%s is a vision encoder without a projector (no "
                        "clip.projector_type, clip.has_llava_projector or mm.* tensors): it "
                        "cannot be the mmproj of the language model %s, which needs %d-wide "
                        "image embeddings", paths[1], paths[0], m->decoder->config.n_embd);
    /* A patch-row tower takes any size: one merge window is enough to learn the width. */
    int side = v->grid.merge ? v->grid.patch * v->grid.merge : v->preprocess.image_size;
    int n_tokens, n_embd;
    MMI_TRY(mmi_vision_output_shape(v, side, side, &n_tokens, &n_embd));
    if (n_embd != m->decoder->config.n_embd)
        return mmi_fail(MM_ERR_FORMAT, "%s projects images to %d values but the language model "
                        "%s takes %d-wide embeddings", paths[1], n_embd, paths[0],
                        m->decoder->config.n_embd);
    return MM_OK;
}

static void model_free(mm_model *m)
{
    mmi_vision_free(m->vision);
    mmi_audio_tower_free(m->audio);
    mmi_clip_text_free(m->clip_text);
    mmi_tokenizer_free(m->tokenizer);
    mmi_decoder_free(m->decoder);
    for (int i = 0; i < 2; i++)
        mmi_gguf_close(m->files[i]);
    mmi_free(m);
}

/* A token around media: `<arch>.<key>` in the language model's file (libmm's converter writes
 * it), else the token whose text is `text` (llama.cpp's files, as its mtmd finds it). */
static mm_status media_token(const mm_model *m, const char *key, const char *text, int32_t *out)
{
    const mmi_gguf *g = m->files[0];
    const char *arch;
    char name[96];
    int64_t id = -1;
    MMI_TRY(mmi_gguf_get_string(g, "general.architecture", &arch, NULL));
    snprintf(name, sizeof name, "%s.%s", arch, key);
    if (mmi_gguf_has(g, name)) {
        MMI_TRY(mmi_gguf_get_int(g, name, &id));
        if (id < 0 || id >= m->decoder->config.n_vocab)
            return mmi_fail(MM_ERR_FORMAT, "%s: %s = %lld is not a token of the %d in the "
                            "vocabulary", mmi_gguf_path(g), name, (long long)id,
                            m->decoder->config.n_vocab);
    } else if (m->tokenizer) {
        id = mmi_token_lookup(m->tokenizer, text, strlen(text));
    }
    *out = (int32_t)id;
    return MM_OK;
}

/* Qwen2-VL's image rows sit between vision start and end tokens. */
static mm_status load_media_tokens(mm_model *m)
{
    m->media_begin = m->media_end = -1;
    if (!m->vision || !m->vision->grid.merge || !m->decoder)
        return MM_OK;
    MMI_TRY(media_token(m, "vision_start_token_id", "<|vision_start|>", &m->media_begin));
    return media_token(m, "vision_end_token_id", "<|vision_end|>", &m->media_end);
}

mm_status mmi_model_load(const char *path, const char *mmproj_path, const mm_options *options,
                         mm_model **out)
{
    mm_model *m = mmi_calloc(1, sizeof *m);
    if (!m)
        return mmi_fail(MM_ERR_NOMEM, "loading %s: out of memory", path);
    atomic_init(&m->refs, 1);
    const char *paths[2] = {path, mmproj_path};
    int use_mmap = (int)mmi_opt_int(options, MM_OPT_USE_MMAP);
    mm_status st = MM_OK;
    /* Open both files first so that progress can count every tensor, then read the towers. */
    uint64_t total = 0, done = 0;
    for (int i = 0; i < 2 && st == MM_OK; i++)
        if (paths[i]) {
            st = mmi_gguf_open(paths[i], use_mmap, &m->files[i]);
            total += st == MM_OK ? mmi_gguf_n_tensors(m->files[i]) : 0;
        }
    if (st == MM_OK)
        st = mmi_progress(options, MM_PROGRESS_MODEL_LOAD, 0, total);
    for (int i = 0; i < 2 && st == MM_OK; i++)
        if (m->files[i]) {
            st = load_file(m, m->files[i]);
            done += mmi_gguf_n_tensors(m->files[i]);
            if (st == MM_OK)
                st = mmi_progress(options, MM_PROGRESS_MODEL_LOAD, done, total);
        }
    if (st == MM_OK && !m->vision && !m->audio && !m->decoder && !m->clip_text)
        st = mmi_fail(MM_ERR_FORMAT, "%s: no vision, audio or text encoder, or language model",
                      path);
    if (st == MM_OK)
        st = check_towers_agree(m);
    if (st == MM_OK && m->files[0])
        st = load_media_tokens(m);
    if (st != MM_OK) {
        model_free(m);
        return st;
    }
    *out = m;
    return MM_OK;
}

void mmi_model_retain(mm_model *m)
{
    atomic_fetch_add(&m->refs, 1);
}

void mmi_model_release(mm_model *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1)
        model_free(m);
}

/* ---- metadata ---- */

size_t mmi_model_meta_count(const mm_model *m)
{
    size_t n = 0;
    for (int f = 0; f < 2; f++)
        n += m->files[f] ? (size_t)mmi_gguf_n_kv(m->files[f]) : 0;
    return n;
}

const mmi_gguf *mmi_model_meta_file(const mm_model *m, size_t *index)
{
    for (int f = 0; f < 2; f++) {
        size_t n = m->files[f] ? (size_t)mmi_gguf_n_kv(m->files[f]) : 0;
        if (*index < n)
            return m->files[f];
        *index -= n;
    }
    return NULL;
}

size_t mmi_model_tensor_count(const mm_model *m)
{
    size_t n = 0;
    for (int f = 0; f < 2; f++)
        n += m->files[f] ? (size_t)mmi_gguf_n_tensors(m->files[f]) : 0;
    return n;
}

const mmi_tensor *mmi_model_tensor(const mm_model *m, size_t index)
{
    for (int f = 0; f < 2; f++) {
        size_t n = m->files[f] ? (size_t)mmi_gguf_n_tensors(m->files[f]) : 0;
        if (index < n)
            return mmi_gguf_tensor(m->files[f], index);
        index -= n;
    }
    return NULL;
}

void mmi_model_weight_bytes(const mm_model *m, uint64_t *in_files, uint64_t *converted)
{
    *in_files = 0;
    for (size_t i = 0, n = mmi_model_tensor_count(m); i < n; i++)
        *in_files += mmi_model_tensor(m, i)->n_bytes;
    *converted = (m->vision ? m->vision->weights.owned_bytes : 0) +
                 (m->clip_text ? m->clip_text->weights.owned_bytes : 0) +
                 (m->decoder ? m->decoder->store.owned_bytes : 0);
}
